"""CVAT for images 1.1: one XML of ``<image>`` elements holding polygons, boxes and masks.

Pixels follow CVAT's own "Segmentation mask 1.1" export, which hands the shapes to
Datumaro: polygons become pycocotools RLE through ``frPyObjects`` (Datumaro's
``polygons_to_masks``), a box is the polygon of its four corners through the same
function (``boxes_to_masks``; a rotated box is first turned into its rotated polygon,
as CVAT's ``RotatedBoxesToPolygons`` does), an ellipse the 720-point polygon of
Datumaro's ``Ellipse.as_polygon`` (rotated when it has a ``rotation``), and a mask is
CVAT's RLE: comma-separated run lengths, row-major over its ``width`` x ``height`` box
at (``left``, ``top``), starting with a run of 0s. Shapes are painted by ascending
``z_order``, ties in document order (Datumaro's ``CompiledMask`` sorts stably by
z_order), unless ``--overlap`` says otherwise (``segconvert.codecs.raster``).

Instances: one per shape, except that shapes sharing a ``group_id`` and a label are one
instance (CVAT's "group" is "these shapes are one object"; Datumaro's
``merge_instance_segments`` also merges a group into one mask). Segment ids are 1..n
in document order. Metadata: ``occluded``, ``z_order``, ``attributes`` (the
``<attribute name=...>`` children), ``source`` and ``group_id`` when present, and
``shape`` (polygon / box / mask / ellipse).

The XML is streamed with ``iterparse`` and every ``<image>`` is dropped once read, so a
file of 100,000 images needs the memory of one. The reader only collects strings;
numbers are parsed and checked in ``Item.load`` (in the worker).

Categories come from ``<meta>``'s ``<labels>`` (ids 1..n in that order, colours
kept), or from ``--labels FILE`` (same forms as the LabelMe reader's). A shape whose
label is in neither fails its image; without either table any label is accepted.

Background and void, as in the LabelMe reader: a label that
:func:`segconvert.codecs.shapes.label_convention` reserves for background (a CVAT
project's ``background`` label, which CVAT's own Segmentation mask export makes class 0
of its labelmap.txt; ``_background_``, ...) is no class: it is left out of the
categories (the classes after it keep ids 1..n), and its shapes paint background 0 in
their place in the painter's order. A void label (``__ignore__``) paints void:
background 0 by default, or one segment ``ignore`` per image with ``--void ignore``
(kept in every mode; the table's own ``ignore`` class when it has one, else a class
after the table's).

Bad input fails its image, naming the XML, the image and the shape (``<polygon> #3
(label 'car')``): NaN / infinite / non-numeric coordinates, a non-integer
``z_order``, a mask whose runs do not cover its box, a point or mask box more than an
image size outside the image (a wrong size, not a slip of the mouse), an unknown label,
a missing size (unless ``--images DIR`` has the image), a reference id (name stem)
already used by an earlier image (the message names both images, with their subset and
task in a project export). A shape with an empty (or no) label is skipped with a warning,
as Datumaro's CVAT import leaves it unlabelled. A polygon of fewer than 3 points is
skipped with a warning; coordinates outside the image are clipped with a warning per shape.

Project exports: the XML of a CVAT project lists its subsets in ``<meta><project>
<subsets>`` (one per line) and gives every ``<image>`` a ``subset`` (and ``task_id``);
the same image names often appear in several subsets. ``--subset NAME`` converts the
images of one subset (reference_id = name stem, as for a task). Without it, when the
project has more than one subset, every image is converted and its reference_id is
``<subset>_<stem>`` (``train_frame_000``): reference_ids become output file names, so
they hold no ``/``. With one subset (or a task export), reference_id = stem.
Polylines, points, cuboids and skeletons have no area: they are skipped with a
warning; ``<tag>`` (an image-level label) is ignored. "CVAT for video" files
(``<track>``) are refused as a whole: export the task as "CVAT for images 1.1".
"""

from __future__ import annotations

import contextlib
import math
import mmap
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import quoteattr

import click
import numpy as np
from pycocotools import mask as mask_utils

from segconvert.codecs import limits, raster
from segconvert.codecs.shapes import (
    BACKGROUND,
    LabelSpec,
    ReservedShapes,
    check_overlap,
    check_void,
    far_outside,
    find_image,
    ignore_category,
    image_size,
    images_option,
    label_convention,
    labels_option,
    load_label_table,
    merge_by_segment,
    outside_count,
    patch_rle,
    resolve_label,
    void_option,
)
from segconvert.errors import ItemError, SourceError, opt
from segconvert.execution.nametable import NameTable
from segconvert.interfaces.format import Format, Reader
from segconvert.io.paths import file_stem
from segconvert.io.sources import UrlPath, location, open_binary, read_head
from segconvert.model.ir import Category, FailedItem, Item, Segmentation, SegmentInfo

AREA_SHAPES = ("polygon", "box", "mask", "ellipse")
NO_AREA_SHAPES = ("polyline", "points", "cuboid", "skeleton")
ELLIPSE_POINTS = 720  # Datumaro's Ellipse.as_polygon default
DEFAULT_SUBSET = "default"  # what CVAT (and Datumaro) call an image without a subset
SUBSET_SEPARATOR = "_"  # reference_id = <subset>_<stem> in a project export of several subsets


@dataclass
class CvatShape:
    """One shape as the XML has it: strings only, parsed in the worker."""

    kind: str
    index: int  # position among the <image>'s children, for messages
    label: str
    spec: LabelSpec | None  # None for a background / void label (``convention``)
    attrs: dict[str, str]
    attributes: dict[str, str] = field(default_factory=dict)
    convention: str | None = None  # shapes.label_convention of the label


@dataclass
class CvatItem(Item):
    reference_id: str
    source: str  # the XML
    image: str  # how the image is named in messages: name (id)
    name: str
    width: str | None
    height: str | None
    shapes: list[CvatShape]
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # warnings the reader found
    overlap: str = "paint"
    images_dir: str | None = None
    void: str = BACKGROUND
    #: the category id of the ``ignore`` segment (``--void ignore`` with a class table)
    ignore_id: int | None = None

    def _fail(self, message: str) -> ItemError:
        return ItemError(f"image {self.image}: {message}", item=self.reference_id, file=self.source)

    def _size(self) -> tuple[int, int]:
        if self.width is not None or self.height is not None:
            try:
                w, h = int(self.width or ""), int(self.height or "")
            except ValueError:
                raise self._fail(f"width/height must be integers, got {self.width!r} x {self.height!r}") from None
            problem = raster.size_problem(h, w)
            if problem is not None:
                raise self._fail(problem)
            return h, w
        if self.images_dir is not None:
            found = find_image(self.images_dir, self.name, Path(self.name).stem)
            size = image_size(found) if found is not None else None
            if size is None:
                raise self._fail(f"no width/height, and no readable image {self.name!r} in {self.images_dir}")
            return size
        raise self._fail(f"no image size: width/height missing; pass {opt('images', 'DIR')} to read it from the images")

    def load(self) -> Segmentation:
        height, width = self._size()
        limits.check_pixels(width, height)  # before any mask of that size is allocated
        warnings = [f"{n} {kind} shape(s) have no area; skipped" for kind, n in self.skipped.items()]
        warnings += self.notes
        instances: dict[tuple[str, str], int] = {}
        segments: list[SegmentInfo] = []
        painted: list[tuple[int, int, raster.Shape]] = []  # (z_order, document order, shape)
        reserved = ReservedShapes(self.void, self.ignore_id)
        for j, shape in enumerate(self.shapes):
            where = f"<{shape.kind}> #{shape.index} (label {shape.label!r})"
            z_text = shape.attrs.get("z_order", "0")
            try:
                z_order = int(z_text)
            except ValueError:
                raise self._fail(f"{where}: z_order {z_text!r} is not an integer") from None
            mask, clipped = self._rasterise(shape, where, height, width, warnings)
            if mask is None:
                continue
            if clipped:
                warnings.append(f"{where}: {clipped} outside the {width}x{height} image; clipped")
            group = shape.attrs.get("group_id", "")
            key = (shape.label, group) if group not in ("", "0") else (shape.label, f"#{j}")
            sid = instances.get(key)
            if sid is None:
                sid = instances[key] = len(instances) + 1
                if shape.convention is None:
                    segments.append(self._segment(sid, shape, z_order))
                else:
                    reserved.add(sid, shape.convention, shape.label, segments)
            painted.append((z_order, j, (sid, mask)))
        painted.sort(key=lambda t: (t[0], t[1]))
        shapes = [s for _, _, s in painted]
        if self.overlap != "paint":
            shapes = merge_by_segment(shapes, height, width)
        label_map = raster.paint(height, width, shapes, self.overlap, item=self.reference_id, file=self.source)
        return Segmentation(self.reference_id, label_map, segments, source=self.source,
                            dropped_ids=frozenset(reserved.dropped), warnings=warnings)

    def _numbers(self, shape: CvatShape, where: str, names: tuple[str, ...]) -> list[float]:
        out = []
        for name in names:
            text = shape.attrs.get(name)
            if text is None:
                raise self._fail(f"{where}: no {name!r}")
            out.append(self._number(text, where, name))
        return out

    def _number(self, text: str, where: str, name: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise self._fail(f"{where}: {name} {text!r} is not a number") from None
        if not math.isfinite(value):
            raise self._fail(f"{where}: {name} is {text!r}, not a finite number")
        return value

    def _rasterise(
        self, shape: CvatShape, where: str, height: int, width: int, warnings: list[str]
    ) -> tuple[np.ndarray | dict | None, str]:
        """The shape's mask (bool array or pycocotools RLE) and what was clipped ('' if nothing)."""
        if shape.kind == "mask":
            return self._mask(shape, where, height, width)
        if shape.kind == "polygon":
            xy = self._points(shape, where)
            if len(xy) < 3:
                warnings.append(f"{where}: a polygon of {len(xy)} points (fewer than 3); skipped")
                return None, ""
        elif shape.kind == "box":
            x0, y0, x1, y1 = self._numbers(shape, where, ("xtl", "ytl", "xbr", "ybr"))
            xy = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            xy = _rotate(xy, shape, (x0 + x1) / 2, (y0 + y1) / 2, self, where)
        else:  # ellipse
            cx, cy, rx, ry = self._numbers(shape, where, ("cx", "cy", "rx", "ry"))
            theta = np.linspace(0, 2 * np.pi, num=ELLIPSE_POINTS)
            xy = np.stack([cx + rx * np.cos(theta), cy + ry * np.sin(theta)], axis=1)
            xy = _rotate(xy, shape, cx, cy, self, where)
        far = far_outside(xy, height, width)
        if far is not None:
            raise self._fail(
                f"{where}: point ({far[0]:g}, {far[1]:g}) is more than an image size outside the "
                f"{width}x{height} image; is the image size right?"
            )
        n = outside_count(xy, height, width)
        rle = mask_utils.frPyObjects([xy.ravel().tolist()], height, width)[0]
        return rle, (f"{n} of {len(xy)} points" if n else "")

    def _points(self, shape: CvatShape, where: str) -> np.ndarray:
        text = shape.attrs.get("points")
        if text is None:
            raise self._fail(f"{where}: no 'points'")
        values = []
        for pair in filter(None, (p.strip() for p in text.split(";"))):
            parts = pair.split(",")
            if len(parts) != 2:
                raise self._fail(f"{where}: point {pair!r} is not 'x,y'")
            values.extend(self._number(p.strip(), where, "coordinate") for p in parts)
        return np.asarray(values, dtype=np.float64).reshape(-1, 2)

    def _mask(self, shape: CvatShape, where: str, height: int, width: int) -> tuple[dict, str]:
        box = []
        for name in ("left", "top", "width", "height"):
            text = shape.attrs.get(name)
            try:
                box.append(int(text))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise self._fail(f"{where}: {name} {text!r} is not an integer") from None
        left, top, bw, bh = box
        if bw <= 0 or bh <= 0:
            raise self._fail(f"{where}: mask box {bw}x{bh} is empty")
        far = far_outside(np.array([[left, top], [left + bw, top + bh]], dtype=np.float64), height, width)
        if far is not None:  # checked before decoding: the runs may claim any size
            raise self._fail(
                f"{where}: mask box corner ({far[0]:g}, {far[1]:g}) is more than an image size outside "
                f"the {width}x{height} image; is the image size right?"
            )
        text = shape.attrs.get("rle", "")
        try:
            runs = np.array([int(v) for v in text.split(",") if v.strip()], dtype=np.int64)
        except ValueError:
            raise self._fail(f"{where}: rle is not a comma-separated list of integers") from None
        if (runs < 0).any():
            raise self._fail(f"{where}: rle has a negative run length")
        if int(runs.sum()) != bw * bh:
            raise self._fail(f"{where}: rle covers {int(runs.sum())} pixels but the mask box is {bw}x{bh} = {bw * bh}")
        values = (np.arange(len(runs)) % 2).astype(bool)  # runs alternate 0, 1, 0, ... from a 0-run
        patch = np.repeat(values, runs).reshape(bh, bw)
        rle, clipped = patch_rle(patch, left, top, height, width)
        return rle, ("its mask box" if clipped else "")

    @staticmethod
    def _segment(sid: int, shape: CvatShape, z_order: int) -> SegmentInfo:
        meta: dict[str, Any] = {"shape": shape.kind, "z_order": z_order}
        meta["occluded"] = shape.attrs.get("occluded", "0") in ("1", "true", "True")
        if shape.attributes:
            meta["attributes"] = dict(shape.attributes)
        if "source" in shape.attrs:
            meta["source"] = shape.attrs["source"]
        if shape.attrs.get("group_id", "") not in ("", "0"):
            meta["group_id"] = shape.attrs["group_id"]
        spec = shape.spec
        assert spec is not None  # background / void shapes have no segment of their own
        return SegmentInfo(id=sid, label=spec.name, category_id=spec.id, isthing=spec.isthing, metadata=meta)


def _rotate(xy: np.ndarray, shape: CvatShape, cx: float, cy: float, item: CvatItem, where: str) -> np.ndarray:
    """Rotate points about (cx, cy) by the shape's ``rotation`` (degrees, clockwise on screen)."""
    text = shape.attrs.get("rotation")
    if text is None:
        return xy
    angle = math.radians(item._number(text, where, "rotation"))
    if angle == 0:
        return xy
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xy[:, 0] - cx, xy[:, 1] - cy
    return np.stack([cx + c * dx - s * dy, cy + s * dx + c * dy], axis=1)


# --------------------------------------------------------------------------- the reader


_VIDEO = "this is a 'CVAT for video' file (it has <track>s); export the task as 'CVAT for images 1.1'"


def _parse_error(exc: Exception, path: Path | UrlPath) -> SourceError:
    if isinstance(exc, LookupError):  # expat: an encoding="..." it does not know (found by fuzzing)
        return SourceError(f"not readable XML: {exc}, named in its XML declaration", file=path)
    return SourceError(f"not well-formed XML: {exc}", file=path)


def _meta_subsets(meta: ET.Element) -> list[str]:
    """A project's subsets: ``<project><subsets>`` holds their names, one per line."""
    text = meta.findtext("project/subsets") or ""
    names: list[str] = []
    for line in text.splitlines():
        name = line.strip()
        if name and name not in names:
            names.append(name)
    return names


def _meta_categories(meta: ET.Element) -> list[Category] | None:
    """The classes of ``<labels>``, ids 1..n in order; None when it lists no label.

    Names that :func:`label_convention` reserves (a CVAT project's ``background``, which
    CVAT's own Segmentation mask export writes as class 0 of its labelmap.txt) are not
    classes: their shapes are background or void.
    """
    cats: list[Category] = []
    seen: set[str] = set()
    for label in meta.iterfind(".//labels/label"):
        name = (label.findtext("name") or "").strip()
        if not name or name in seen:
            continue
        seen.add(name)
        if label_convention(name) is not None:
            continue
        color = None
        text = (label.findtext("color") or "").strip()
        if re.fullmatch(r"#[0-9a-fA-F]{6}", text):
            color = (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))
        cats.append(Category(id=len(cats) + 1, name=name, color=color))
    return cats if seen else None


#: how much of a remote XML is fetched at a time (s3fs would read ahead 50 MB)
XML_BLOCK = 1 << 23


def _read_meta(xml: Any, source: Path | UrlPath) -> tuple[list[Category] | None, list[str]]:
    """Categories (None: <meta> lists no labels) and a project's subsets from <meta>, reading only
    up to the first <image> (or <track>)."""
    cats: list[Category] | None = None
    subsets: list[str] = []
    for event, elem in ET.iterparse(xml, events=("start", "end")):
        if event == "start":
            if elem.tag == "track":
                raise SourceError(_VIDEO, file=source)
            if elem.tag == "image":
                break
        elif elem.tag == "meta":
            cats = _meta_categories(elem)
            subsets = _meta_subsets(elem)
            elem.clear()
    return cats, subsets


def _count_streamed(fh: IO[bytes], pattern: re.Pattern[bytes], chunk: int = XML_BLOCK) -> int:
    """Matches of ``pattern`` (an ``<image ...>`` start tag) in a stream read in chunks, as the
    mmap count gives them: each chunk is counted up to its last ``<`` and the rest carried
    over, so no tag is cut (a tag holds no second ``<``: attribute values escape it)."""
    count, carry = 0, b""
    while True:
        data = fh.read(chunk)
        if not data:
            return count + sum(1 for _ in pattern.finditer(carry))
        buf = carry + data
        cut = buf.rfind(b"<")
        cut = cut if cut > 0 else 0
        count += sum(1 for _ in pattern.finditer(buf, 0, cut))
        carry = buf[cut:]


class CvatReader(Reader):
    """Reads a "CVAT for images 1.1" XML file."""

    options = (
        raster.overlap_option(),
        labels_option(),
        void_option("What shapes labelled with a void name (__ignore__) become: background 0, or a segment "
                    "'ignore' (kept in every mode). Background names (background, _background_, ...) are "
                    "always background 0."),
        images_option(),
        click.Option(
            ["--subset"], default=None, metavar="NAME",
            help="In a project export, convert the images of this subset only (reference_id = name stem). "
            "Without it, a project of several subsets converts every image as <subset>_<stem>.",
        ),
    )
    default_mode = "instance"
    source_kind = "file"

    def __init__(
        self,
        source: str | Path,
        overlap: str = "paint",
        labels: str | Path | None = None,
        images: str | Path | None = None,
        subset: str | None = None,
        void: str = BACKGROUND,
    ) -> None:
        super().__init__(source)
        if not self.source.is_file():
            raise SourceError("file not found (a CVAT source is one XML file)", file=self.source)
        if images is not None and not location(images).is_dir():
            raise SourceError(f"{opt('images')} must be a folder", file=images)
        self.overlap = check_overlap(overlap)
        self.void = check_void(void)
        self.images_dir = str(images) if images is not None else None
        meta_cats, self.subsets = self._read_meta()
        if subset is not None and self.subsets and subset not in self.subsets:
            raise SourceError(f"{opt('subset', subset)}: the project's subsets are {', '.join(self.subsets)}",
                              file=self.source)
        if subset is not None and not self.subsets:
            raise SourceError(f"{opt('subset', subset)}: this XML lists no subsets (a task export has none; "
                              f"{opt('subset')} is for a project export)", file=self.source)
        self.subset = subset
        #: a project of several subsets converted whole: reference_ids carry the subset
        self.prefix_subset = subset is None and len(self.subsets) > 1
        self.labels: dict[str, LabelSpec] | None
        self._label_source = f"the {opt('labels')} table"
        if labels is not None:
            self.labels, self.categories = load_label_table(labels)
        elif meta_cats is not None:
            self._label_source = "the task's labels in <meta>"
            self.categories = meta_cats
            self.labels = {c.name: LabelSpec(c.id, c.name, c.isthing) for c in meta_cats}
        else:
            self.categories, self.labels = None, None
        self.ignore_id, self.categories = ignore_category(self.void, self.labels, self.categories)
        self._count: int | None = None

    def _read_meta(self) -> tuple[list[Category] | None, list[str]]:
        """Categories and a project's subsets from <meta>, reading only up to the first <image> (or <track>)."""
        try:
            with self._xml() as xml:
                return _read_meta(xml, self.source)
        except (ET.ParseError, LookupError) as exc:
            raise _parse_error(exc, self.source) from None

    def _xml(self) -> contextlib.AbstractContextManager[Any]:
        """What ``iterparse`` reads: a local path as it is (expat reads the file itself), a URL as
        an fsspec file streamed in blocks (no local copy, no mmap of a remote object)."""
        if isinstance(self.source, UrlPath):
            return open_binary(self.source, block_size=XML_BLOCK)
        return contextlib.nullcontext(self.source)

    def __len__(self) -> int:
        if self._count is None:  # one pass over the bytes, no parsing: for the progress bar
            pattern = rb"<image[\s/>]"
            if self.subset is not None:  # CVAT writes each attribute in double quotes
                value = re.escape(quoteattr(self.subset).encode()[1:-1])
                pattern = rb'<image\s[^>]*\bsubset="' + value + rb'"'
            if isinstance(self.source, UrlPath):
                with open_binary(self.source, block_size=XML_BLOCK) as fh:
                    self._count = _count_streamed(fh, re.compile(pattern))
                return self._count
            with open(self.source, "rb") as fh:
                if fh.seek(0, 2) == 0:
                    return 0
                with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    self._count = sum(1 for _ in re.finditer(pattern, mm))  # type: ignore[arg-type]
        return self._count

    def items(self) -> Iterator[Item]:
        seen = NameTable()  # reference id -> (it, the image that gave it): ~32 bytes per image, not ~200
        try:
            with self._xml() as xml:
                yield from self._items(xml, seen)
        except (ET.ParseError, LookupError) as exc:
            raise _parse_error(exc, self.source) from None
        finally:
            seen.close()

    def _items(self, xml: Any, seen: NameTable) -> Iterator[Item]:
        root: ET.Element | None = None
        for event, elem in ET.iterparse(xml, events=("start", "end")):
            if event == "start":
                if root is None:
                    root = elem
                elif elem.tag == "track":
                    raise SourceError(_VIDEO, file=self.source)
                continue
            if elem.tag != "image":
                continue
            wanted = self.subset is None or (elem.get("subset") or DEFAULT_SUBSET) == self.subset
            item = self._item(elem, seen) if wanted else None
            if root is not None:
                root.clear()  # drop the images read so far: memory stays flat
            if item is not None:
                yield item

    def _item(self, elem: ET.Element, seen: NameTable) -> Item:
        name = elem.get("name") or ""
        where = [f"id {elem.get('id')}"]
        if elem.get("subset") is not None:
            where.append(f"subset {elem.get('subset')!r}")
        if elem.get("task_id") is not None:
            where.append(f"task {elem.get('task_id')}")
        image = f"{name!r} ({', '.join(where)})"
        ref = file_stem(name.replace("\\", "/")) or f"image-{elem.get('id')}"
        if self.prefix_subset:
            ref = f"{elem.get('subset') or DEFAULT_SUBSET}{SUBSET_SEPARATOR}{ref}"
        source = str(self.source)

        def fail(message: str) -> FailedItem:
            err = ItemError(f"image {image}: {message}", item=ref, file=source)
            return FailedItem(ref, err, source=source)

        if not name:
            return fail("no 'name'")
        earlier = seen.get(ref)
        if earlier is not None:
            return fail(f"reference id {ref!r} is already used by image {earlier[1]}")
        seen[ref] = (ref, image)
        shapes: list[CvatShape] = []
        skipped: dict[str, int] = {}
        notes: list[str] = []
        for j, child in enumerate(elem):
            kind = child.tag
            if kind in NO_AREA_SHAPES:
                skipped[kind] = skipped.get(kind, 0) + 1
                continue
            if kind not in AREA_SHAPES:
                continue  # <tag> and anything newer: no pixels
            label = child.get("label")
            if label is None or not label.strip():
                notes.append(f"<{kind}> #{j} has an empty label; skipped")
                continue
            convention = label_convention(label)
            spec: LabelSpec | None = None
            if convention is None:
                try:
                    spec = resolve_label(label, self.labels)
                except KeyError:
                    return fail(
                        f"<{kind}> #{j}: label {label!r} is not in {self._label_source}; "
                        f"pass {opt('labels', 'FILE')} to declare or map it"
                    )
            attributes = {a.get("name", ""): (a.text or "") for a in child.iterfind("attribute")}
            shapes.append(CvatShape(kind, j, label, spec, dict(child.attrib), attributes, convention))
        return CvatItem(
            reference_id=ref,
            source=source,
            image=image,
            name=name,
            width=elem.get("width"),
            height=elem.get("height"),
            shapes=shapes,
            skipped=skipped,
            notes=notes,
            overlap=self.overlap,
            images_dir=self.images_dir,
            void=self.void,
            ignore_id=self.ignore_id,
        )


def sniff(path: Path) -> bool:
    if path.suffix.lower() != ".xml" or not path.is_file():
        return False
    head = read_head(path, 1 << 16)
    return b"<annotations" in head and (b"<image " in head or b"<meta" in head)


FORMAT = Format(
    name="cvat",
    description='"CVAT for images 1.1" XML: polygons, boxes, ellipses and masks per image',
    reader=CvatReader,
    sniff=sniff,
)
