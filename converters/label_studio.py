"""Label Studio: the JSON export of a project (a list of tasks), polygons, rectangles, brushes.

Each task of the export holds ``data`` (the image's URL or path) and ``annotations``
(older exports: ``completions``), each with a ``result`` list of regions::

    {"original_width": 640, "original_height": 480, "image_rotation": 0, "id": "r1",
     "from_name": "label", "to_name": "image", "type": "polygonlabels",
     "value": {"points": [[x%, y%], ...], "polygonlabels": ["car"]}}

Pixels:

- ``polygonlabels``: points in percent of ``original_width`` / ``original_height``,
  scaled to pixels (x·W/100, y·H/100, float64) and rasterised by pycocotools
  (``frPyObjects``), the rule of every polygon reader here (COCO, CVAT, YOLO).
- ``rectanglelabels``: ``x``, ``y`` (top-left corner), ``width``, ``height`` in percent,
  ``rotation`` in degrees clockwise about the top-left corner, as Label Studio defines it
  (label-studio-converter's ``convert_annotation_to_yolo_obb``: corners (x, y),
  (x + w·cos, y + w·sin), (x + w·cos − h·sin, y + w·sin + h·cos), (x − h·sin, y + h·cos),
  in pixels); the four corners are a polygon through pycocotools, which for an unrotated
  box is exactly pycocotools' own box rasterisation.
- ``brushlabels`` (``format: "rle"``): Label Studio's brush RLE (thi.ng rle-pack over the
  RGBA bytes of the brush layer), decoded exactly as
  ``label_studio_converter.brush.decode_rle`` does (:func:`decode_brush_rle`); the mask
  is the alpha channel (``reshape(H, W, 4)[:, :, 3]``, as its ``decode_from_annotation``)
  at or above ``--brush-threshold`` (default 1: every painted pixel).
- Results of type ``labels`` (a generic ``<Labels>`` tag) are read by their value's keys.
  Other result types (choices, text, keypoints, ellipses, relations...) have no mask
  here: those with the ``id`` of a region become its ``attributes`` metadata
  (``{from_name: value}``, Label Studio's per-region classifications); the rest are
  counted in a warning.

Decisions:

- Which annotation: cancelled ones (``was_cancelled`` or ``skipped``) never; of the others
  ``--annotation latest`` (default: the newest ``created_at``, compared as times, ties
  and unreadable times to the first listed;
  label-studio-converter also puts the newest first) or ``first`` (the first listed).
  A task without one fails its item (``--unannotated skip`` leaves such tasks out:
  an all-background mask would claim the image has nothing in it). ``predictions``
  (model pre-annotations) are not read.
- reference_id: from ``data.image`` (else the first string value of ``data``), the
  stem of the URL's file name, URL-decoded: ``/data/upload/1/3f2a9c1e-street.jpg`` →
  ``street`` (Label Studio prefixes uploads with 8 hex digits and a dash; that prefix is
  dropped, ``--upload-prefix keep`` keeps it), ``/data/local-files/?d=dir/street.jpg`` →
  ``street`` (the ``d`` parameter is the path), ``s3://bucket/a/street.jpg`` → ``street``.
  No usable name (a data: URI, empty data) gives ``task-<id>``. A reference_id that an
  earlier task already has fails the later task, naming both.
- Image size: ``original_width`` / ``original_height`` of the results (they must agree);
  an annotation with no region result has no size unless ``--images DIR`` has the image.
  ``image_rotation`` other than 0 fails the item (its coordinates are of the rotated view).
- Labels: a region's first label (more than one: a warning); an empty label list: skipped
  with a warning. Classes: ``--labels FILE`` (shapes.load_label_table; a label not in it
  fails the item), else every label named in the file, in order of first appearance (one
  regular-expression pass over the raw bytes, before converting, for stable semantic
  indices; it may include labels of predictions and cancelled annotations).
- Background and void, as in the LabelMe and CVAT readers: a label that
  :func:`segconvert.codecs.shapes.label_convention` reserves for background
  (``background``, ``_background_``, ...) is no class: it is left out of the categories
  (of ``--labels`` as of the labels found in the file; the classes after it keep ids
  1..n), needs no entry in ``--labels``, and its regions paint background 0 in their
  place in the painter's order (a background polygon drawn after a car cuts a hole in
  it). A void label (``__ignore__``) paints void: background 0 by default, or one
  segment ``ignore`` per image with ``--void ignore`` (kept in every mode; the table's
  own ``ignore`` class when it has one, else a class after the table's).
- Instances: one per region result (of a class), painted in result order (later on top,
  as Label Studio draws; background and void regions in their place), or as
  ``--overlap`` says. Metadata: ``task_id``,
  ``annotation_id``, ``region_id``, ``from_name``, ``shape``, ``rotation`` (rectangles),
  ``attributes``.
- The export is streamed (:func:`segconvert.codecs.jsonindex.array_items`, the standard
  library's parser one task at a time, one task and a 64 kB read in memory), so memory
  stays flat with the number of tasks; the main process only picks the annotation and
  names the item, the worker checks and rasterises it.

Bad input fails its task, naming the JSON, the task and the region (``task 3
('street.jpg'), annotation 7, result[2] (polygonlabels, id 'r1')``): missing keys,
non-numeric or infinite coordinates, percentages outside [0, 100] by more than
``PERCENT_TOLERANCE`` (Label Studio's own float noise, like 100.00000000000001, is
within it), a negative rectangle size, sizes that disagree or are not positive integers,
an unknown label, a brush RLE that does not decode (bad bytes, a literal run past the
end, data ending mid-value, values above 255) or whose length is not W·H·4. An unusable
source (not a JSON list, no tasks, a JSON-MIN export) is a SourceError, and so is JSON
that stops being valid at some task (a bare NaN, which Label Studio never writes, is not
JSON; nor is an escape of half a surrogate pair, or bytes that are not UTF-8): the
stream cannot go on past it. Every task before it is read (and converted) first; the
message names the task that breaks (``in task[5]``, or ``after task[4]`` when what
follows a whole task is wrong), the byte, and says when the file ends there (cut short).
"""

from __future__ import annotations

import json
import math
import mmap
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import click
import numpy as np
from pycocotools import mask as mask_utils

from segconvert.codecs import jsonindex, raster
from segconvert.codecs.shapes import (
    BACKGROUND,
    LabelSpec,
    ReservedShapes,
    bad_number,
    check_overlap,
    check_void,
    declared_size,
    find_image,
    ignore_category,
    image_size,
    images_option,
    label_convention,
    labels_option,
    load_label_table,
    name_segments,
    outside_count,
    resolve_label,
    void_option,
)
from segconvert.errors import ItemError, SourceError, opt
from segconvert.execution.nametable import NameTable
from segconvert.interfaces.format import Format, Reader
from segconvert.io.paths import file_stem
from segconvert.model.ir import Category, FailedItem, Item, Segmentation, SegmentInfo

#: how far (in percent) a coordinate may lie outside [0, 100]: float noise, not a mistake
PERCENT_TOLERANCE = 1e-4
#: result types with a mask, and the value key naming their labels
AREA_TYPES = {"polygonlabels": "polygon", "rectanglelabels": "rectangle", "brushlabels": "brush"}
#: bytes read at a time from the export: the memory the stream holds besides one task
#: (grown only for a larger task)
READ_CHUNK = 1 << 16
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")
#: a label list in the raw export: "polygonlabels": ["car", "a \"quoted\" name"]
_LABEL_LISTS = re.compile(
    rb'"(?:polygonlabels|rectanglelabels|brushlabels|labels)"\s*:\s*(\[(?:\s*"(?:[^"\\]|\\.)*"\s*,?)*\s*\])'
)


# --------------------------------------------------------------------------- brush RLE


class BrushRleError(ValueError):
    """Label Studio brush RLE that does not decode."""


def decode_brush_rle(rle: Sequence[int] | bytes, expected: int | None = None) -> np.ndarray:
    """Label Studio's brush RLE decoded to its uint8 values, as ``brush.decode_rle`` does.

    The stream (thi.ng rle-pack, bits MSB first): 32 bits value count, 5 bits word size
    − 1, four 4-bit run-length field sizes − 1; then tokens: 1 bit repeat flag, 2 bits
    choosing a field size, that many bits length − 1, then one word (repeat: the value
    for the whole run, which may run past the end and is cut there) or ``length``
    words (literals). Same values as the reference for every stream it decodes; where
    it would crash (a literal run past the end, values above 255 into its uint8 array)
    or read a value from fewer bits than it needs (data ending mid-value), this raises
    BrushRleError instead. ``expected``: the number of values the caller needs (W·H·4),
    checked against the header before decoding (a wrong header must not allocate 2^32 bytes).
    """
    if isinstance(rle, (bytes, bytearray)):
        data = bytes(rle)
    else:
        arr = np.asarray(rle)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise BrushRleError("'rle' must be a list of byte values (integers 0..255)")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise BrushRleError("'rle' holds values outside 0..255")
        data = arr.astype(np.uint8).tobytes()
    nbits = len(data) * 8
    buf = data + bytes(8)  # every read takes a 5-byte window
    pos = 0
    bits: np.ndarray | None = None

    def read(k: int) -> int:
        nonlocal pos
        if pos + k > nbits:
            raise BrushRleError(f"the data ends in the middle of a value (bit {pos} of {nbits})")
        b = pos >> 3
        value = (int.from_bytes(buf[b : b + 5], "big") >> (40 - (pos & 7) - k)) & ((1 << k) - 1)
        pos += k
        return value

    num = read(32)
    word_size = read(5) + 1
    rle_sizes = [read(4) + 1 for _ in range(4)]
    if expected is not None and num != expected:
        raise BrushRleError(f"it holds {num} values but the image's RGBA layer has {expected}")
    weights = 1 << np.arange(word_size - 1, -1, -1, dtype=np.int64)
    values: list[int] = []
    counts: list[int] = []
    i = 0
    while i < num:
        repeat = read(1)
        n = 1 + read(rle_sizes[read(2)])
        if repeat:
            values.append(read(word_size))
            counts.append(n)
            i += n
            continue
        if i + n > num:
            raise BrushRleError(f"a run of {n} literal values at value {i} goes past the end ({num} values)")
        if pos + n * word_size > nbits:
            raise BrushRleError(f"the data ends in the middle of a value (bit {pos} of {nbits})")
        if n <= 4:
            values.extend(read(word_size) for _ in range(n))
        else:
            if bits is None:
                bits = np.unpackbits(np.frombuffer(data, np.uint8))  # one byte per bit, made once
            words = bits[pos : pos + n * word_size].reshape(n, word_size).astype(np.int64) @ weights
            values.extend(words.tolist())
            pos += n * word_size
        counts.extend([1] * n)
        i += n
    vals = np.asarray(values, dtype=np.int64)
    if vals.size and vals.max() > 255:
        raise BrushRleError(f"it holds the value {int(vals.max())}; brush values are bytes (0..255)")
    return np.repeat(vals.astype(np.uint8), np.asarray(counts, dtype=np.int64))[:num]


# --------------------------------------------------------------------------- the item


@dataclass
class LabelStudioItem(Item):
    reference_id: str
    source: str  # the export JSON
    task: str  # how the task is named in messages: task 3 ('street.jpg')
    image_name: str  # the image's file name, for --images
    results: list[Any]
    meta: dict[str, Any]  # task_id, annotation_id: every segment's metadata
    labels: dict[str, LabelSpec] | None = None
    overlap: str = "paint"
    brush_threshold: int = 1
    images_dir: str | None = None
    void: str = BACKGROUND
    #: the category id of the ``ignore`` segment (``--void ignore`` with a class table)
    ignore_id: int | None = None

    def _fail(self, message: str) -> ItemError:
        return ItemError(f"{self.task}: {message}", item=self.reference_id, file=self.source)

    def load(self) -> Segmentation:
        warnings: list[str] = []
        regions: list[tuple[int, dict[str, Any], str, str]] = []  # (k, result, kind, where)
        others: list[tuple[Any, str, str, Any]] = []  # results without a mask: (id, from_name, type, value)
        for k, res in enumerate(self.results):
            if not isinstance(res, dict):
                raise self._fail(f"result[{k}] is not an object")
            value = res.get("value")
            kind = _kind(res.get("type"), value)
            if kind is None:
                others.append((res.get("id"), str(res.get("from_name")), str(res.get("type")), value))
                continue
            where = f"result[{k}] ({res.get('type')}, id {res.get('id')!r})"
            if not isinstance(value, dict):
                raise self._fail(f"{where}: no 'value' object")
            regions.append((k, res, kind, where))
        # per-region classifications share their region's id; other results have no mask here
        region_ids = {_region_key(res.get("id")) for _, res, _, _ in regions}
        attributes: dict[Any, dict[str, Any]] = {}
        skipped: dict[str, int] = {}
        for rid, from_name, type_, value in others:
            rid = _region_key(rid)
            if rid is not None and rid in region_ids and isinstance(value, dict):
                attributes.setdefault(rid, {})[from_name] = value
            else:
                skipped[type_] = skipped.get(type_, 0) + 1
        warnings += [f"{n} result(s) of type {t!r} have no mask; skipped" for t, n in skipped.items()]
        height, width = self._size(regions)
        shapes: list[raster.Shape] = []
        segments: list[SegmentInfo] = []
        names: dict[int, str] = {}
        reserved = ReservedShapes(self.void, self.ignore_id)
        for _k, res, kind, where in regions:
            value = res["value"]
            label = self._label(value, kind, where, warnings)
            if label is None:
                continue
            convention = label_convention(label)  # background / void: no class, painted in its place
            spec = self._spec(label, where) if convention is None else None
            if kind == "polygon":
                geom = self._polygon(value, where, height, width, warnings)
            elif kind == "rectangle":
                geom = self._rectangle(value, where, height, width, warnings)
            else:
                geom = self._brush(value, where, height, width)
            if geom is None:
                continue
            sid = len(shapes) + 1
            shapes.append((sid, geom))
            names[sid] = where
            if convention is not None:
                reserved.add(sid, convention, label, segments)
                continue
            assert spec is not None  # looked up above for every class label
            meta: dict[str, Any] = dict(self.meta)
            meta.update(region_id=res.get("id"), from_name=res.get("from_name"), shape=kind)
            if kind == "rectangle":
                meta["rotation"] = value.get("rotation", 0)
            if _region_key(res.get("id")) in attributes:
                meta["attributes"] = attributes[_region_key(res.get("id"))]
            segments.append(SegmentInfo(id=sid, label=spec.name, category_id=spec.id, isthing=spec.isthing,
                                        metadata=meta))
        try:
            label_map = raster.paint(height, width, shapes, self.overlap)
        except ItemError as exc:
            raise self._fail(name_segments(exc.message, names)) from None
        return Segmentation(self.reference_id, label_map, segments, source=self.source,
                            dropped_ids=frozenset(reserved.dropped), warnings=warnings)

    def _size(self, regions: list[tuple[int, dict[str, Any], str, str]]) -> tuple[int, int]:
        size: tuple[int, int] | None = None
        for _k, res, _kind, where in regions:
            w, h = res.get("original_width"), res.get("original_height")
            try:
                hw = declared_size(h, w, "original_width/original_height", width_first=True)
            except ValueError as exc:
                raise self._fail(f"{where}: {exc}") from None
            if size is not None and hw != size:
                raise self._fail(
                    f"{where}: original size {hw[1]}x{hw[0]} differs from the earlier results' {size[1]}x{size[0]}"
                )
            rotation = res.get("image_rotation", 0)
            if rotation not in (0, None):
                raise self._fail(f"{where}: image_rotation {rotation!r} is not supported (only 0)")
            size = hw
        if size is not None:
            return size
        if self.images_dir is not None:
            found = find_image(self.images_dir, self.image_name, Path(self.image_name).stem)
            read = image_size(found) if found is not None else None
            if read is not None:
                return read
            raise self._fail(f"no region gives the image size, and no readable image {self.image_name!r} in "
                             f"{self.images_dir}")
        raise self._fail(f"no region gives the image size (original_width/height); pass "
                         f"{opt('images', 'DIR')} to read it "
                         "from the image")

    def _label(self, value: dict[str, Any], kind: str, where: str, warnings: list[str]) -> str | None:
        """The region's label (the first of its list), or None when it has none (skipped, with a warning)."""
        names = value.get(_LABEL_KEY[kind], value.get("labels"))
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise self._fail(f"{where}: {_LABEL_KEY[kind]!r} must be a list of label names, got {names!r}")
        if not names:
            warnings.append(f"{where}: no label; skipped")
            return None
        if len(names) > 1:
            warnings.append(f"{where}: {len(names)} labels {names!r}; the first is used")
        if not names[0].strip():  # Nucleus needs a label: skipped, as an empty label list
            warnings.append(f"{where}: empty label; skipped")
            return None
        label: str = names[0]
        return label

    def _spec(self, label: str, where: str) -> LabelSpec:
        try:
            return resolve_label(label, self.labels)
        except KeyError:
            raise self._fail(f"{where}: label {label!r} is not in the {opt('labels')} table") from None

    def _percent(self, value: Any, where: str, name: str, low: float = 0.0) -> float:
        if bad_number(value):
            raise self._fail(f"{where}: {name} {value!r} is not a finite number")
        if not low - PERCENT_TOLERANCE <= value <= 100 + PERCENT_TOLERANCE:
            raise self._fail(f"{where}: {name} {value!r} is outside [{low:g}, 100] (percent of the image)")
        return float(value)

    def _polygon(self, value: dict[str, Any], where: str, height: int, width: int, warnings: list[str]) -> Any:
        points = value.get("points")
        if not isinstance(points, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in points):
            raise self._fail(f"{where}: 'points' must be a list of [x, y] pairs (percent)")
        if len(points) < 3:
            warnings.append(f"{where}: a polygon of {len(points)} points (fewer than 3); skipped")
            return None
        for j, (x, y) in enumerate(points):
            self._percent(x, where, f"point {j} x")
            self._percent(y, where, f"point {j} y")
        # x / 100 * width, in that order, as label-studio-converter's COCO export computes it
        # (x * (width / 100) rounds differently: 30% of 31 px gave 9.3 instead of 9.299999...)
        xy = np.asarray(points, dtype=np.float64) / 100 * [width, height]
        return mask_utils.frPyObjects([xy.ravel().tolist()], height, width)[0]

    def _rectangle(self, value: dict[str, Any], where: str, height: int, width: int, warnings: list[str]) -> Any:
        for key in ("x", "y", "width", "height"):
            if key not in value:
                raise self._fail(f"{where}: no {key!r}")
        x, y = self._percent(value["x"], where, "x"), self._percent(value["y"], where, "y")
        w, h = self._percent(value["width"], where, "width"), self._percent(value["height"], where, "height")
        rotation = value.get("rotation", 0)
        if bad_number(rotation):
            raise self._fail(f"{where}: rotation {rotation!r} is not a finite number")
        angle = math.radians(rotation)
        if rotation == 0:  # (not angle == 0: a tiny rotation such as 5e-324 is 0.0 in radians, yet rotated)
            if x + w > 100 + PERCENT_TOLERANCE or y + h > 100 + PERCENT_TOLERANCE:
                raise self._fail(f"{where}: the box ends at ({x + w:g}, {y + h:g}) %, outside the image")
        px, py, pw, ph = x * width / 100, y * height / 100, w * width / 100, h * height / 100
        c, s = math.cos(angle), math.sin(angle)
        xy = np.array([
            [px, py],
            [px + pw * c, py + pw * s],
            [px + pw * c - ph * s, py + pw * s + ph * c],
            [px - ph * s, py + ph * c],
        ], dtype=np.float64)
        n = outside_count(xy, height, width)
        if n:
            warnings.append(f"{where}: {n} of 4 corners of the rotated box outside the {width}x{height} image; clipped")
        return mask_utils.frPyObjects([xy.ravel().tolist()], height, width)[0]

    def _brush(self, value: dict[str, Any], where: str, height: int, width: int) -> np.ndarray:
        fmt = value.get("format", "rle")
        if fmt != "rle" or "rle" not in value:
            raise self._fail(f"{where}: brush format {fmt!r} is not supported (Label Studio's 'rle' only)")
        try:
            values = decode_brush_rle(value["rle"], expected=height * width * 4)
        except BrushRleError as exc:
            raise self._fail(f"{where}: brush RLE of the {width}x{height} image does not decode: {exc}") from None
        return values[3::4].reshape(height, width) >= self.brush_threshold


def _region_key(region_id: Any) -> str | int | None:
    """A result's ``id`` as a key joining a region and its per-region choices: Label Studio
    writes strings; an id of another kind (a list, an object) joins nothing rather than
    failing the task with an unhashable-type error."""
    if isinstance(region_id, (str, int)) and not isinstance(region_id, bool):
        return region_id
    return None


_LABEL_KEY = {"polygon": "polygonlabels", "rectangle": "rectanglelabels", "brush": "brushlabels"}


def _kind(type_: Any, value: Any) -> str | None:
    """polygon / rectangle / brush for a result with a mask, None for one without."""
    if isinstance(type_, str) and type_.lower() in AREA_TYPES:
        return AREA_TYPES[type_.lower()]
    if type_ == "labels" and isinstance(value, dict):  # a generic <Labels> tag: the value's keys tell
        if "points" in value:
            return "polygon"
        if "rle" in value:
            return "brush"
        if "width" in value and "x" in value:
            return "rectangle"
    return None


# --------------------------------------------------------------------------- the reader


def image_reference(data: Any, task_id: Any, keep_upload_prefix: bool = False) -> tuple[str, str]:
    """(reference_id, image file name) of a task, by the rule in the module docstring."""
    value = data.get("image") if isinstance(data, dict) else None
    if not isinstance(value, str) and isinstance(data, dict):
        value = next((v for v in data.values() if isinstance(v, str)), None)
    fallback = f"task-{task_id}"
    if not isinstance(value, str) or not value or value.startswith("data:"):
        return fallback, ""
    parts = urlsplit(value)
    local = parse_qs(parts.query).get("d") if parts.path.startswith("/data/") else None
    path = local[0] if local else unquote(parts.path if parts.scheme or parts.netloc else value.split("?")[0])
    name = path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if not keep_upload_prefix and "/data/upload/" in parts.path:
        m = _UPLOAD_PREFIX.match(name)
        if m:
            name = m.group(1)
    stem = file_stem(name)
    return (stem or fallback), name


def _pick(annotations: list[Any], how: str) -> tuple[int, dict[str, Any]] | None:
    usable = [
        (k, a) for k, a in enumerate(annotations)
        if isinstance(a, dict) and not a.get("was_cancelled") and not a.get("skipped")
    ]
    if not usable:
        return None
    if how == "first":
        return usable[0]
    times = [_created(a) for _, a in usable]
    return usable[times.index(max(times))]  # index: the first of equals


def _created(annotation: dict[str, Any]) -> float:
    """``created_at`` as a POSIX time (ISO 8601, 'Z' or an offset; naive = UTC); -inf when
    missing or unreadable. Compared as times, not strings: '10:00:00Z' is older than
    '10:00:00.5Z' though it sorts after it."""
    text = annotation.get("created_at")
    if not isinstance(text, str):
        return -math.inf
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return -math.inf
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


class LabelStudioReader(Reader):
    """Reads Label Studio's JSON export (a list of tasks), streamed."""

    options = (
        raster.overlap_option(),
        labels_option(),
        void_option("What regions labelled with a void name (__ignore__) become: background 0, or a segment "
                    "'ignore' (kept in every mode). Background names (background, _background_, ...) are "
                    "always background 0."),
        images_option("Folder of the images, to read sizes from when an annotation has no region."),
        click.Option(
            ["--annotation"], type=click.Choice(["latest", "first"]), default="latest", show_default=True,
            help="Which of a task's annotations (cancelled ones never): the newest by created_at, or the first listed.",
        ),
        click.Option(
            ["--unannotated"], type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
            help="A task without an annotation (or only cancelled ones): fail its item, or leave it out.",
        ),
        click.Option(
            ["--upload-prefix"], type=click.Choice(["strip", "keep"]), default="strip", show_default=True,
            help="Label Studio names uploads '<8 hex>-name.jpg': reference_id 'name' (strip) or keep the prefix.",
        ),
        click.Option(
            ["--brush-threshold"], type=click.IntRange(1, 255), default=1, show_default=True,
            help="A brush pixel is in the mask when its alpha is at least this (1: every painted pixel).",
        ),
    )
    default_mode = "instance"

    def __init__(
        self,
        source: str | Path,
        overlap: str = "paint",
        labels: str | Path | None = None,
        images: str | Path | None = None,
        annotation: str = "latest",
        unannotated: str = "fail",
        upload_prefix: str = "strip",
        brush_threshold: int = 1,
        void: str = BACKGROUND,
    ) -> None:
        super().__init__(source)
        if not self.source.is_file():
            raise SourceError("file not found (a Label Studio source is its JSON export, one file)", file=self.source)
        if images is not None and not Path(images).is_dir():
            raise SourceError(f"{opt('images')} must be a folder", file=images)
        for name, given, choices in (("--annotation", annotation, ("latest", "first")),
                                     ("--unannotated", unannotated, ("fail", "skip")),
                                     ("--upload-prefix", upload_prefix, ("strip", "keep"))):
            if given not in choices:
                raise SourceError(f"{name} must be one of {', '.join(choices)}, got {given!r}")
        if isinstance(brush_threshold, bool) or not isinstance(brush_threshold, int) or not 1 <= brush_threshold <= 255:
            raise SourceError(f"{opt('brush-threshold')} must be an integer in 1..255, got {brush_threshold!r}")
        self.overlap = check_overlap(overlap)
        self.void = check_void(void)
        self.images_dir = str(images) if images is not None else None
        self.annotation = annotation
        self.unannotated = unannotated
        self.keep_upload_prefix = upload_prefix == "keep"
        self.brush_threshold = brush_threshold
        self._check_head()
        self.labels: dict[str, LabelSpec] | None
        if labels is not None:
            self.labels, self.categories = load_label_table(labels)
        else:  # background / void names are no classes: the classes after them keep ids 1..n
            names = [n for n in self._labels_seen() if label_convention(n) is None]
            self.labels = {n: LabelSpec(i + 1, n) for i, n in enumerate(names)}
            self.categories = [Category(id=i + 1, name=n) for i, n in enumerate(names)]
        self.ignore_id, self.categories = ignore_category(self.void, self.labels, self.categories)

    def _check_head(self) -> None:
        """A JSON list whose first task has 'data' and annotations: else nothing here is convertible."""
        with open(self.source, "rb") as fh:
            head = fh.read(4096).lstrip()
            if head.startswith(b"\xef\xbb\xbf"):
                head = head[3:].lstrip()
            if not head.startswith(b"["):
                raise SourceError("expected a JSON list of tasks (Label Studio's JSON export)", file=self.source)
            fh.seek(0)
            try:
                first = next(jsonindex.array_items(fh, str(self.source), strict=True, chunk=READ_CHUNK), None)
            except jsonindex.InvalidJson as exc:
                raise _broken(exc, self.source) from None
        if first is None:
            raise SourceError("the export lists no tasks", file=self.source)
        if isinstance(first, dict) and "data" not in first and not {"annotations", "completions"} & set(first):
            raise SourceError(
                "tasks have no 'data' / 'annotations': is this a JSON-MIN or CSV-like export? Export the project "
                "as 'JSON'", file=self.source,
            )

    def _labels_seen(self) -> list[str]:
        """Every label named in the file, in order of first appearance: one regex pass over the raw bytes
        (background / void names among them too: the caller leaves those out)."""
        seen: dict[str, None] = {}
        with open(self.source, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for m in _LABEL_LISTS.finditer(mm):  # type: ignore[call-overload]
                try:
                    names = json.loads(m.group(1))
                except ValueError:
                    continue
                for name in names:
                    seen.setdefault(name, None)
        return list(seen)

    def items(self) -> Iterator[Item]:
        seen = NameTable()  # reference id -> (it, the task that gave it): ~32 bytes per task, not ~200
        source = str(self.source)
        try:
            with open(self.source, "rb") as fh:
                # one task parsed at a time, each given out before the next is parsed: a break in
                # the JSON stops the stream at the task that breaks, after every task before it
                for k, task in enumerate(jsonindex.array_items(fh, source, strict=True, chunk=READ_CHUNK)):
                    item = self._item(k, task, seen, source)
                    if item is not None:
                        yield item
        except jsonindex.InvalidJson as exc:
            raise _broken(exc, self.source) from None
        finally:
            seen.close()

    def _item(self, k: int, task: Any, seen: NameTable, source: str) -> Item | None:
        if not isinstance(task, dict):
            ref = f"task[{k}]"
            return FailedItem(ref, ItemError(f"task[{k}] is not an object", item=ref, file=source), source=source)
        task_id = task.get("id", k)
        ref, name = image_reference(task.get("data"), task_id, self.keep_upload_prefix)
        desc = f"task {task_id} ({name!r})"

        def fail(message: str) -> FailedItem:
            return FailedItem(ref, ItemError(f"{desc}: {message}", item=ref, file=source), source=source)

        if not isinstance(task.get("data"), dict):
            return fail("no 'data' object")
        annotations = task.get("annotations", task.get("completions"))
        if not isinstance(annotations, list):
            return fail("no 'annotations' list")
        picked = _pick(annotations, self.annotation)
        if picked is None:
            if self.unannotated == "skip":
                return None
            cancelled = len(annotations)
            why = f"all {cancelled} annotation(s) are cancelled" if cancelled else "no annotation"
            return fail(f"{why}; nothing to convert ({opt('unannotated', 'skip')} leaves such tasks out)")
        pos, ann = picked
        earlier = seen.get(ref)
        if earlier is not None:
            hint = f" ({opt('upload-prefix', 'keep')} tells uploads apart)" if not self.keep_upload_prefix else ""
            return fail(f"reference id {ref!r} is already used by {earlier[1]}{hint}")
        seen[ref] = (ref, desc)
        aid = ann.get("id", f"#{pos}")
        desc = f"{desc}, annotation {aid}"
        results = ann.get("result")
        if not isinstance(results, list):
            return fail("annotation has no 'result' list")
        return LabelStudioItem(
            reference_id=ref, source=source, task=desc, image_name=name, results=results,
            meta={"task_id": task_id, "annotation_id": ann.get("id")}, labels=self.labels, overlap=self.overlap,
            brush_threshold=self.brush_threshold, images_dir=self.images_dir, void=self.void,
            ignore_id=self.ignore_id,
        )


def _broken(exc: jsonindex.InvalidJson, source: str | PathLike[str]) -> SourceError:
    """The message for an export whose JSON stops being valid: the task that breaks (every
    task before it has been read), why and where, and what probably happened."""
    where = ""
    if exc.element is not None:
        where = f" in task[{exc.element}]"
    elif exc.after is not None:
        where = f" after task[{exc.after}]"
    at = f", at byte {exc.byte}" if exc.byte is not None else ""
    message = f"not valid {exc.what}{where} ({exc.reason}{at})"
    if exc.cut_short:
        ends = "in the middle of this task" if exc.element is not None else "there"
        message += f"; the file ends {ends}: was the export cut short (a partial download)?"
    elif exc.reason.endswith("is not JSON"):
        message += "; Label Studio never writes NaN or Infinity"
    return SourceError(message, file=source)


def sniff(path: Path) -> bool:
    """A .json whose head is a list of tasks with 'data' and annotations (Label Studio's export)."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    return (
        head.startswith(b"[")
        and b'"data"' in head
        and (b'"annotations"' in head or b'"completions"' in head or b'"predictions"' in head)
    )


FORMAT = Format(
    name="label-studio",
    description="Label Studio JSON export: polygons, (rotated) rectangles and brush RLE masks",
    reader=LabelStudioReader,
    sniff=sniff,
)
