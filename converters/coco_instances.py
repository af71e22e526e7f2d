"""COCO instances: one JSON of ``images``, ``annotations`` (polygons or RLE) and ``categories``.

Pixels are what pycocotools says they are: a polygon list goes through ``frPyObjects``
and, when it has several parts, ``merge`` (their union, as COCO defines); an RLE
(``counts`` list as in COCO's crowd annotations, or a compressed ``counts`` string) is
decoded as ``decode`` would. Instances are painted in the order the JSON stores them
(later on top, as painting pycocotools' masks in order does) unless ``--overlap`` says
otherwise; :mod:`segconvert.codecs.raster` paints the RLE runs directly, without one full
mask per annotation.

Memory stays flat with the file (COCO train's 450 MB included): the JSON is read in one
streaming pass (:mod:`segconvert.codecs.jsonindex`, the standard library's parser one element at
a time) that keeps, per annotation, only where it is in the file (byte offset and length,
8 bytes) sorted by image, and per image where its entry is (8 bytes) and where its
annotations start in that order (8 bytes). ``items()`` re-reads each image's entry; an
item carries its annotations' byte ranges and the worker reads and parses them itself
(from the file, or by range from object storage). Problems the pass can see (an unknown
category_id, no 'segmentation') fail the image in the main process, as before.

IR segment ids are the annotation's position in its image's list + 1, not the
annotation id: COCO's crowd annotation ids (9001002xxxxx) do not fit a uint32 label
map, and small ids keep the label map uint16. The annotation id is kept in
``metadata["annotation_id"]`` and error messages name it.

Deliberate departures from a bare ``frPyObjects`` call, each reported: a polygon part
of fewer than 3 points is skipped with a warning (pycocotools would read a lone
4-number part as a box); NaN or non-numeric coordinates fail the image; points outside
the image are clipped by pycocotools and counted in a warning; coordinates absurdly far
outside (see ``FAR``) fail the image instead of letting pycocotools trace millions of
boundary points.

The writer (:class:`CocoInstancesWriter`) makes one annotation per segment, as RLE
(exact) or polygons where they are exact.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import click
import numpy as np
import orjson
import PIL.Image
from pycocotools import mask as mask_utils

from segconvert.codecs import cocojson, jsonindex, limits, raster
from segconvert.codecs.opencv import cv2
from segconvert.codecs.shapes import check_overlap, images_option, labels_option
from segconvert.codecs.writing import CategoryTable, segment_pixels, warn_empty, write_coco_json
from segconvert.errors import ItemError, SourceError, opt
from segconvert.interfaces.format import Format, Reader, Writer, Written, read_ends
from segconvert.io import paths
from segconvert.io.paths import output_stem
from segconvert.io.sources import open_binary
from segconvert.model.ir import Category, FailedItem, Item, Segmentation, SegmentInfo
from segconvert.model.modes import ModePlan

#: coordinates further than FAR * max(width, height) + FAR_PIXELS outside the image are an error
FAR = 10
FAR_PIXELS = 1000


@dataclass
class CocoInstancesItem(Item):
    """One image: its size (or where to read it), its annotations' geometry and segment table."""

    reference_id: str
    source: str  # the JSON, named in messages
    width: int | None
    height: int | None
    image_path: str | None  # read the size from here when the JSON has none
    ranges: list[tuple[int, int]]  # (byte offset, length) of each annotation in ``source``, in order
    categories: dict[int, Category]  # category_id -> class (after --labels); shared by the items
    overlap: str = "paint"
    geoms: list[Any] = field(default_factory=list)  # filled by load: each annotation's ``segmentation``
    segments: list[SegmentInfo] = field(default_factory=list)  # ... and its segment, aligned

    def load(self) -> Segmentation:
        self._read_annotations()
        height, width = self._size()
        limits.check_pixels(width, height)  # before any mask of that size is allocated
        warnings: list[str] = []
        given: dict[int, dict] = {}  # segment position -> RLE as stored
        parts: list[Any] = []  # every polygon part to draw, all annotations together
        owner: list[int] = []  # segment position of each part
        for pos, (info, geom) in enumerate(zip(self.segments, self.geoms, strict=True)):
            name = _name(info)
            if isinstance(geom, dict):
                given[pos] = self._checked_rle(geom, height, width, name)
                continue
            if not isinstance(geom, list):
                raise self._fail(f"{name}: segmentation must be a list of polygons or an RLE object")
            if not geom:
                warnings.append(f"{name}: empty segmentation, skipped")
            for j, part in enumerate(geom):
                if not isinstance(part, (list, tuple)):
                    kind = type(part).__name__
                    raise self._fail(f"{name}, polygon {j}: expected [x1, y1, x2, y2, ...], not {kind}")
                if part and isinstance(part[0], (list, tuple)):
                    raise self._fail(f"{name}, polygon {j}: points as [x, y] pairs; COCO wants [x1, y1, x2, ...]")
                if len(part) % 2:
                    raise self._fail(f"{name}, polygon {j}: odd number of coordinates ({len(part)})")
                if len(part) < 6:
                    warnings.append(f"{name}, polygon {j}: {len(part) // 2} points (fewer than 3), skipped")
                    continue
                parts.append(part)
                owner.append(pos)
        drawn = self._polygons(parts, owner, height, width, warnings) if parts else {}
        drawn.update(given)
        kept = [info for pos, info in enumerate(self.segments) if pos in drawn]
        shapes: list[raster.Shape] = [
            (info.id, drawn[pos]) for pos, info in enumerate(self.segments) if pos in drawn
        ]
        try:
            label_map = raster.paint(height, width, shapes, self.overlap)
        except ItemError as exc:
            raise self._fail(self._with_annotation_ids(exc.message)) from None
        return Segmentation(self.reference_id, label_map, kept, source=self.source, warnings=warnings)

    def _fail(self, message: str) -> ItemError:
        return ItemError(message, item=self.reference_id, file=self.source)

    def _read_annotations(self) -> None:
        """This image's annotations, read from their byte ranges and parsed here, in the worker."""
        try:
            raw = jsonindex.read_ranges(self.source, self.ranges)
        except OSError as exc:
            reason = exc.strerror or exc
            raise self._fail(f"cannot read the annotations again: {reason} (was the file changed?)") from None
        try:
            anns = [json.loads(b) for b in raw]
        except (ValueError, UnicodeDecodeError):
            raise self._fail("the annotations are not where they were: the file changed during the run") from None
        self.segments, self.geoms = [], []
        for pos, ann in enumerate(anns):
            problem = _annotation_problem(ann, self.categories)
            if problem is not None:
                raise self._fail(problem)
            cat = self.categories[_field_int(ann.get("category_id"))]  # type: ignore[index]
            meta: dict[str, Any] = {"annotation_id": ann.get("id")}
            if cat.supercategory is not None:
                meta["supercategory"] = cat.supercategory
            for key in ("area", "bbox"):
                if key in ann:
                    meta[key] = ann[key]
            self.segments.append(
                SegmentInfo(
                    id=pos + 1, label=cat.name, category_id=cat.id, isthing=True,
                    iscrowd=bool(ann.get("iscrowd", 0)), metadata=meta,
                )
            )
            self.geoms.append(ann["segmentation"])

    def _size(self) -> tuple[int, int]:
        if self.width is not None and self.height is not None:
            return self.height, self.width
        assert self.image_path is not None
        path = self.image_path
        try:
            with PIL.Image.open(path) as im:
                width, height = im.size
        except FileNotFoundError:
            raise self._fail(f"no width/height in 'images' and no image {path} to read it from") from None
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
            raise self._fail(f"no width/height in 'images' and cannot read {path}: {exc}") from None
        return int(height), int(width)

    def _polygons(
        self, parts: list[Any], owner: list[int], height: int, width: int, warnings: list[str]
    ) -> dict[int, dict]:
        """pycocotools RLE of every polygon annotation, all parts checked and converted in one go."""
        lengths = np.fromiter((len(p) for p in parts), np.int64, len(parts))
        try:
            flat = np.array(list(chain.from_iterable(parts)))
        except (TypeError, ValueError, OverflowError):
            flat = None
        if flat is None or flat.ndim != 1 or flat.dtype.kind not in "iuf" or not np.isfinite(flat).all():
            self._bad_coordinate(parts, owner)
        assert flat is not None
        flat = flat.astype(np.float64, copy=False)
        x, y = flat[0::2], flat[1::2]
        point_part = np.repeat(np.arange(len(parts)), lengths // 2)
        far = FAR * max(height, width) + FAR_PIXELS
        too_far = (x < -far) | (y < -far) | (x > width + far) | (y > height + far)
        if too_far.any():
            k = int(point_part[np.argmax(too_far)])
            raise self._fail(
                f"{self._part_name(parts, owner, k)}: coordinates lie more than {FAR}x the image size "
                f"outside the {width}x{height} image"
            )
        outside = (x < 0) | (y < 0) | (x > width) | (y > height)
        if outside.any():
            per_segment = np.bincount(np.asarray(owner)[point_part[outside]], minlength=len(self.segments))
            for pos in np.flatnonzero(per_segment).tolist():
                warnings.append(
                    f"{_name(self.segments[pos])}: {int(per_segment[pos])} polygon points outside the "
                    f"{width}x{height} image, clipped"
                )
        arrays = np.split(flat, np.cumsum(lengths)[:-1])
        rles = mask_utils.frPyObjects(arrays, height, width)
        grouped: dict[int, list[dict]] = {}
        for pos, rle in zip(owner, rles, strict=True):
            grouped.setdefault(pos, []).append(rle)
        return {pos: rs[0] if len(rs) == 1 else mask_utils.merge(rs) for pos, rs in grouped.items()}

    def _part_name(self, parts: list[Any], owner: list[int], k: int) -> str:
        pos = owner[k]
        j = [i for i, p in enumerate(self.geoms[pos]) if p is parts[k]][0]
        return f"{_name(self.segments[pos])}, polygon {j}"

    def _bad_coordinate(self, parts: list[Any], owner: list[int]) -> None:
        """Find and name the first coordinate that is not a finite number (the slow path)."""
        for k, part in enumerate(parts):
            for v in part:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise self._fail(f"{self._part_name(parts, owner, k)}: coordinate {v!r} is not a number")
                if isinstance(v, float) and not math.isfinite(v):
                    raise self._fail(f"{self._part_name(parts, owner, k)}: NaN or infinite coordinate")
                if abs(v) > 1e15:
                    raise self._fail(f"{self._part_name(parts, owner, k)}: coordinate {v!r} is out of range")
        raise self._fail("polygon coordinates are not all numbers")

    def _checked_rle(self, geom: dict, height: int, width: int, name: str) -> dict:
        if "counts" not in geom or "size" not in geom:
            raise self._fail(f"{name}: RLE segmentation needs 'size' and 'counts'")
        size = geom["size"]
        if not isinstance(size, (list, tuple)) or len(size) != 2 or list(size) != [height, width]:
            raise self._fail(f"{name}: RLE size {size!r} ([height, width]) but the image is {width}x{height}")
        if not isinstance(geom["counts"], (list, str, bytes)):
            raise self._fail(f"{name}: RLE counts must be a list of integers or a compressed string")
        return geom

    def _with_annotation_ids(self, message: str) -> str:
        """raster names segment ids; say which annotation each one is."""
        by_id = {s.id: s.metadata.get("annotation_id") for s in self.segments}
        mentioned = {int(m) for m in re.findall(r"\bsegment (\d+)", message)}
        mentioned |= {int(m) for pair in re.findall(r"(\d+) & (\d+) \(", message) for m in pair}
        legend = [f"segment {sid} = annotation {by_id[sid]}" for sid in sorted(mentioned) if sid in by_id]
        return f"{message} [{'; '.join(legend)}]" if legend else message


def _name(info: SegmentInfo) -> str:
    aid = info.metadata.get("annotation_id")
    return f"annotation {aid}" if aid is not None else f"annotation #{info.id}"


def _annotation_problem(ann: Any, categories: dict[int, Category]) -> str | None:
    """Why this annotation fails its image (None when it does not): the checks, in the
    order the reader has always made them, for the index pass and the worker alike."""
    cat = categories.get(_field_int(ann.get("category_id")))  # type: ignore[arg-type]
    if cat is None:
        return (
            f"annotation {ann.get('id')}: category_id {ann.get('category_id')!r} is not in categories "
            f"(map it with {opt('labels')})"
        )
    if "segmentation" not in ann:
        return f"annotation {ann.get('id')}: no 'segmentation'"
    return None


#: image ids of the index: ints as they are; any other id (a string, 3.5) gets a code from here on
_OTHER_IDS = 1 << 62


class _Index:
    """What the one pass over the JSON keeps (see the module docstring): byte ranges, codes."""

    def __init__(self) -> None:
        self.image_offsets = array("q")
        self.image_lengths = array("q")
        self.image_codes = array("q")  # image id codes, -1 for an image without an id
        self.ann_offsets = array("q")
        self.ann_lengths = array("q")
        self.ann_images = array("q")  # image id code of each annotation; -1 when not an object
        self.ann_categories: list[Any] = []  # category_id of each annotation (small ints are cached by Python)
        self.ann_no_segmentation = array("b")
        self.other_ids: dict[Any, int] = {}  # an id that is not a plain int -> its code
        self.categories_raw: Any = None
        self.members: dict[str, Any] = {}

    def code(self, value: Any) -> int:
        value = _image_id_key(value)
        if type(value) is int and -_OTHER_IDS < value < _OTHER_IDS:
            return value
        try:
            key: Any = value
            hash(key)
        except TypeError:
            key = ("unhashable", json.dumps(value, sort_keys=True, default=str))
        return self.other_ids.setdefault(key, _OTHER_IDS + len(self.other_ids))

    def decode(self, code: int) -> Any:
        if code < _OTHER_IDS:
            return code
        for key, c in self.other_ids.items():  # only for error messages
            if c == code:
                return key
        return None

    def on_element(self, key: str, element: Any, offset: int, length: int) -> None:
        if key == "annotations":
            self.ann_offsets.append(offset)
            self.ann_lengths.append(length)
            if isinstance(element, dict):
                self.ann_images.append(self.code(element.get("image_id")))
                self.ann_categories.append(element.get("category_id"))
                self.ann_no_segmentation.append("segmentation" not in element)
            else:
                self.ann_images.append(_NOT_OBJECT)
                self.ann_categories.append(None)
                self.ann_no_segmentation.append(True)
        elif key == "images":
            self.image_offsets.append(offset)
            self.image_lengths.append(length)
            ident = element.get("id") if isinstance(element, dict) else None
            self.image_codes.append(self.code(ident) if ident is not None else _NO_ID)
        elif key == "categories":
            if self.categories_raw is None:
                self.categories_raw = []
            self.categories_raw.append(element)


_NO_ID = -(1 << 63)  # image without an id (never matches an annotation)
_NOT_OBJECT = _NO_ID + 1  # annotation that is not a JSON object (nor ever an image's id)


def _index_json(path: Path) -> _Index:
    index = _Index()
    try:
        with open_binary(path) as fh:
            index.members = jsonindex.walk(fh, str(path), index.on_element)
    except FileNotFoundError:
        raise SourceError("file not found", file=path) from None
    except IsADirectoryError:
        raise SourceError("is a folder; coco-instances reads an instances JSON file", file=path) from None
    for key in ("images", "annotations", "categories"):
        if key not in index.members or (index.members[key] is not None):
            raise SourceError(f"no {key!r} list; is this a COCO instances JSON?", file=path)
    return index


def _load_label_map(path: Path, categories: list[Category]) -> dict[int, Category]:
    """``--labels FILE``: JSON object {source category id: target}.

    A target is an existing category's id (``{"91": 1}``) or name (``{"91": "person"}``),
    or a new category ``{"91": {"id": 200, "name": "other", "supercategory": "misc"}}``
    (appended to the category table). Keys may also be category names from the JSON.
    Mapping a known id merges it into the target class.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourceError(f"cannot read labels file: {exc.strerror or exc}", file=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"labels file is not valid JSON: {exc}", file=path) from None
    if not isinstance(doc, dict) or not doc:
        raise SourceError('labels file must be a JSON object {"source category id": target}', file=path)
    by_id = {c.id: c for c in categories}
    by_name = {c.name: c for c in categories}
    out: dict[int, Category] = {}
    for key, target in doc.items():
        src = by_name[key].id if key in by_name else _int_or_none(key)
        if src is None:
            raise SourceError(f"labels key {key!r} is neither a category id nor a category name", file=path)
        if isinstance(target, bool):
            cat = None
        elif isinstance(target, int):
            cat = by_id.get(target)
        elif isinstance(target, str):
            cat = by_name.get(target)
        elif isinstance(target, dict):
            try:
                new = Category(
                    id=int(target["id"]), name=str(target["name"]), isthing=True,
                    supercategory=target.get("supercategory"),
                )
            except (KeyError, TypeError, ValueError):
                raise SourceError(f"labels[{key!r}] needs an integer 'id' and a 'name'", file=path) from None
            old = by_id.get(new.id)
            if old is not None and old.name != new.name:
                raise SourceError(f"labels[{key!r}]: id {new.id} is already {old.name!r}", file=path)
            if old is None:
                categories.append(new)
                by_id[new.id] = by_name[new.name] = new
            cat = by_id[new.id]
        else:
            cat = None
        if cat is None:
            raise SourceError(
                f"labels[{key!r}] = {target!r}: not a category id or name of this JSON, nor a "
                '{"id": ..., "name": ...} object',
                file=path,
            )
        out[src] = cat
    return out


def _int_or_none(value: Any) -> int | None:
    """A labels-file key ("91") as an int; None when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _field_int(value: Any) -> int | None:
    """An annotation's category_id or an image's width/height; None unless it is an integer
    (cocojson.integer: 3.0 is 3, but 3.5 is not silently category 3)."""
    try:
        return cocojson.integer(value)
    except TypeError:
        return None


def _image_id_key(value: Any) -> Any:
    """Image ids compared as JSON gives them, but 3 and 3.0 are one id; a list or object is no id
    (None: the image is skipped, annotations naming it are orphans)."""
    if isinstance(value, list | dict):
        return None
    return int(value) if isinstance(value, float) and value.is_integer() else value


class CocoInstancesReader(Reader):
    """Reads a COCO instances JSON (``instances_*.json``) into one label map per image."""

    options = (
        raster.overlap_option(),
        labels_option(
            'JSON object mapping category ids to classes, e.g. {"91": "person"} or '
            '{"91": {"id": 200, "name": "other"}}; an unmapped unknown category_id fails its image.'
        ),
        images_option("Folder of the images, to read sizes from when 'images' has no width/height."),
    )
    default_mode = "instance"
    source_kind = "file"

    def __init__(
        self,
        source: str | Path,
        overlap: str = "paint",
        labels: str | Path | None = None,
        images: str | Path | None = None,
    ) -> None:
        super().__init__(source)
        self.overlap = check_overlap(overlap)
        self.images_dir = Path(images) if images is not None else None
        index = _index_json(self.source)
        self.categories = cocojson.parse_categories(index.categories_raw or [], self.source)
        self._cats: dict[int, Category] = {c.id: c for c in self.categories}
        if labels is not None:
            self._cats.update(_load_label_map(Path(labels), self.categories))
        self._source_str = str(self.source)
        n_images = len(index.image_codes)
        # image of each annotation (position in `images`; -1 for none), then positions sorted by it
        first_seen: dict[int, int] = {}
        self._duplicates: dict[int, Any] = {}
        for k, code in enumerate(index.image_codes):
            if code == _NO_ID:
                continue
            if code in first_seen:
                self._duplicates[k] = index.decode(code)
            else:
                first_seen[code] = k
        owner = np.fromiter((first_seen.get(c, -1) for c in index.ann_images), np.int64, len(index.ann_images))
        # the first annotation that fails its image (unknown category_id, no segmentation), per image
        known = set(self._cats)
        bad = np.fromiter(
            (_field_int(c) not in known for c in index.ann_categories), bool, len(index.ann_categories)
        ) | np.frombuffer(index.ann_no_segmentation, np.int8).astype(bool)
        del first_seen
        order = np.argsort(owner, kind="stable")
        n_orphans = int(np.searchsorted(owner[order], 0))
        counts = np.bincount(owner[owner >= 0], minlength=n_images)
        self._bounds = n_orphans + np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        small = np.uint32 if max(index.ann_offsets, default=0) < (1 << 32) else np.int64
        self._ann_offsets = np.frombuffer(index.ann_offsets, np.int64)[order].astype(small)
        self._ann_lengths = np.frombuffer(index.ann_lengths, np.int64)[order].astype(np.uint32)
        self._image_offsets = np.frombuffer(index.image_offsets, np.int64).astype(small)
        self._image_lengths = np.frombuffer(index.image_lengths, np.int64).astype(np.uint32)
        self._problems: dict[int, int] = {}  # image -> sorted position of its first failing annotation
        bad_sorted = bad[order]
        for pos in np.flatnonzero(bad_sorted[n_orphans:]).tolist():
            k = int(np.searchsorted(self._bounds, pos + n_orphans, side="right")) - 1
            self._problems.setdefault(k, pos + n_orphans)
        self._orphans: dict[str, None] = {}  # label of each unknown image_id, in order of first use
        for code, i in zip(np.asarray(index.ann_images)[order[:n_orphans]].tolist(), order[:n_orphans].tolist()):
            label = f"annotations[{i}]" if code == _NOT_OBJECT else f"image_id {index.decode(code)!r}"
            self._orphans.setdefault(label, None)
        del index

    def __len__(self) -> int:
        return len(self._image_offsets) + len(self._orphans)

    def items(self) -> Iterator[Item]:
        with open_binary(self.source) as fh:  # the images' entries again, one at a time, in order
            for k, (offset, length) in enumerate(zip(self._image_offsets.tolist(), self._image_lengths.tolist())):
                fh.seek(offset)
                yield self._item(k, json.loads(fh.read(length)))
        for label in self._orphans:
            err = ItemError(f"annotations refer to {label}, which has no entry in 'images'", file=self.source)
            yield FailedItem(label, err.located(item=label), source=self._source_str)

    def _failed(self, ref: str, message: str) -> FailedItem:
        return FailedItem(ref, ItemError(message, item=ref, file=self.source), source=self._source_str)

    def _item(self, k: int, image: Any) -> Item:
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
            return self._failed(f"images[{k}]", "image entry without a 'file_name'")
        ref = Path(image["file_name"].replace("\\", "/")).stem
        if k in self._duplicates:
            return self._failed(ref, f"image id {self._duplicates[k]!r} appears twice in 'images'")
        width, height = _field_int(image.get("width")), _field_int(image.get("height"))
        image_path = None
        if width is None or height is None or width <= 0 or height <= 0:
            if self.images_dir is None:
                return self._failed(
                    ref,
                    f"image {image.get('id')!r} has no width/height; pass {opt('images', 'DIR')} to read sizes "
                    "from the images",
                )
            width = height = None
            try:
                image_path = paths.resolve_inside(self.images_dir, image["file_name"])
            except ItemError as exc:
                return self._failed(ref, exc.message)
        lo, hi = int(self._bounds[k]), int(self._bounds[k + 1])
        ranges = list(zip(self._ann_offsets[lo:hi].tolist(), self._ann_lengths[lo:hi].tolist()))
        problem = self._problems.get(k)
        if problem is not None:  # known from the index pass: fail here, as the reader always has
            (raw,) = jsonindex.read_ranges(self._source_str, [ranges[problem - lo]])
            message = _annotation_problem(json.loads(raw), self._cats)
            assert message is not None
            return self._failed(ref, message)
        return CocoInstancesItem(
            ref, self._source_str, width, height, image_path, ranges, self._cats, self.overlap
        )


def sniff(path: Path) -> bool:
    """An instances JSON has 'segmentation' in its annotations, which follow a long 'images'
    list, so look at the head and the tail (where annotations end before 'categories')."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    text = read_ends(path)
    return b'"segmentation"' in text and b'"segments_info"' not in text and b'"images"' in text


def outline_polygons(mask: np.ndarray) -> list[list[float]]:
    """Polygons along the pixel edges of each outer contour of a 0/1 mask.

    pycocotools rasterises a polygon through pixel corners (x, y)..(x+1, y+1) to exactly
    that pixel, so the outline along the pixel edges is what gives the mask back. The
    contours of the mask upsampled 2x run through the centres of its edge sub-pixels;
    ``ceil(u / 2)`` moves each onto the pixel edge it belongs to. Holes are not kept (a
    COCO polygon list is a union): the caller checks the result and falls back to RLE.
    """
    up = cv2().resize(mask, None, fx=2, fy=2, interpolation=cv2().INTER_NEAREST)
    contours, _ = cv2().findContours(up, cv2().RETR_EXTERNAL, cv2().CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        points = (contour.reshape(-1, 2) + 1) // 2
        keep = np.ones(len(points), bool)
        keep[1:] = (points[1:] != points[:-1]).any(axis=1)
        points = points[keep]
        if len(points) > 1 and (points[0] == points[-1]).all():
            points = points[:-1]
        if len(points) >= 3:
            polygons.append(points.astype(float).ravel().tolist())
    return polygons


def _polygons_if_exact(mask: np.ndarray) -> list[list[float]] | None:
    """The outline polygons when pycocotools rasterises them back to exactly ``mask``, else None."""
    polygons = outline_polygons(mask)
    if not polygons:
        return None
    h, w = mask.shape
    drawn = mask_utils.decode([mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))])[:, :, 0]
    return polygons if np.array_equal(drawn, mask) else None


class CocoInstancesWriter(Writer):
    """Writes one COCO instances JSON (``OUTPUT/instances.json``): one annotation per segment.

    ``--segmentation rle`` (default): compressed RLE as ``pycocotools.mask.encode`` gives it
    (counts as a string), exact. ``polygon``: the outline polygons of each segment when
    pycocotools rasterises them back to exactly its pixels; else (holes, parts touching at a
    corner) that segment is written as RLE, and the image's warning says which and how
    many. Crowd segments are RLE either way, as in COCO. ``area`` and ``bbox`` are
    pycocotools' ``area`` and ``toBbox`` of the segment's RLE; categories as the COCO
    panoptic writer decides them (kept ids, new ids by label in source order), with
    ``isthing`` kept in each category.
    """

    options = (
        click.Option(
            ["--segmentation"], type=click.Choice(("rle", "polygon")), default="rle", show_default=True,
            help="RLE (exact), or polygons where they rasterise back exactly (RLE for the others).",
        ),
        click.Option(
            ["--image-ext"], default=".jpg", show_default=True,
            help="Extension of the images' file_name in 'images'; reference_id = its stem.",
        ),
    )

    def __init__(self, output: str | Path, plan: ModePlan, segmentation: str = "rle",
                 image_ext: str = ".jpg") -> None:
        super().__init__(output, plan)
        if segmentation not in ("rle", "polygon"):
            raise SourceError(f"{opt('segmentation')} must be rle or polygon, not {segmentation!r}")
        if not image_ext.startswith(".") or len(image_ext) < 2 or "/" in image_ext:
            raise SourceError(f"{opt('image-ext')} must look like .jpg, not {image_ext!r}")
        self.segmentation = segmentation
        self.image_ext = image_ext

    def write(self, seg: Segmentation) -> Written:
        ref = output_stem(seg.reference_id, source=seg.source)
        pixels = segment_pixels(seg)
        warn_empty(seg, pixels)
        rows = []
        as_rle = []
        for pos in pixels.present():
            s = seg.segments[pos]
            mask = np.asfortranarray((pixels.code_map == pos + 1).view(np.uint8))
            rle = mask_utils.encode(mask)
            geometry: Any = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            if self.segmentation == "polygon" and not s.iscrowd:
                polygons = _polygons_if_exact(mask)
                if polygons is not None:
                    geometry = polygons
                else:
                    as_rle.append(str(s.id))
            bbox = [float(v) for v in mask_utils.toBbox(rle)]
            rows.append([s.label, s.category_id, bool(s.isthing), int(bool(s.iscrowd)), geometry,
                         int(mask_utils.area(rle)), bbox, s.metadata.get("supercategory")])
        if as_rle:
            seg.warnings.append(
                f"{len(as_rle)} of {len(rows)} segments written as RLE: their polygons would not rasterise back "
                f"to their pixels (holes, or parts touching at a corner): segment ids {', '.join(as_rle[:20])}"
                + (" ..." if len(as_rle) > 20 else "")
            )
        return Written(orjson.dumps([ref, seg.width, seg.height, rows]).decode())

    def finish(self, records: Iterator[str]) -> None:
        next_id = iter(range(1, 1 << 62))  # annotation ids 1..M in source order

        def annotations(k: int, record: list[Any], table: CategoryTable) -> list[dict[str, Any]]:
            return [{"id": next(next_id), "image_id": k, "category_id": table.id_of(label, cid),
                     "segmentation": geometry, "area": area, "bbox": bbox, "iscrowd": crowd}
                    for label, cid, _, crowd, geometry, area, bbox, _ in record[3]]

        write_coco_json(self.store, "instances.json", records, self.plan.categories, self.image_ext,
                        lambda row: (row[0], row[1], row[2], row[7]), annotations, keep_colors=False)


FORMAT = Format(
    name="coco-instances",
    description="COCO instances JSON: polygons and RLE, rasterised exactly as pycocotools does",
    reader=CocoInstancesReader,
    writer=CocoInstancesWriter,
    sniff=sniff,
)
