"""Cityscapes: a folder of ``*_gtFine_polygons.json`` (``imgHeight``, ``imgWidth``, ``objects``).

The pixels are cityscapesScripts' ``json2labelImg`` / ``json2instanceImg``: PIL's
``ImageDraw.polygon`` per object, in file order (later on top), ``deleted`` objects
skipped, labels looked up in the Cityscapes label table (embedded below, so that
cityscapesScripts is only a test dependency), negative ids (``license plate``) not
drawn, and an unknown label ending in ``group`` (``cargroup``) taken as its class
without ``group`` and not as an instance. ``polegroup`` is a class of its own in the
table, so it stays one.

Raw ids: every drawn object gets its own (file position among drawn objects + 1), so
one PIL pass gives both views: instance mode keeps the objects of classes with
``hasInstances`` (not groups), as ``json2instanceImg`` numbers them; stuff classes and
groups become one segment per class (``pixel_ids`` = their objects), and objects
labelled ``unlabeled`` (id 0) paint void, as the reference's background value.

Void classes: ``ego vehicle``, ``rectification border``, ``out of roi`` and ``static``
(label ids 1-4, category ``void``, ignored in evaluation) mark where nothing is
annotated; they paint void (background 0, in their place in the painter's order) unless
``--keep-void-classes`` keeps them as the classes json2labelImg writes (ids 1-4). The
category table keeps them either way, so stable semantic indices equal the label ids.

``--overlap small-on-top`` / ``error`` draw each object on a canvas cropped to its box
and hand the runs to :mod:`segconvert.codecs.raster`; the default ``paint`` draws straight into
one image, exactly as the reference does.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import click
import numpy as np
import PIL.Image
import PIL.ImageDraw

from segconvert.codecs import limits, png, raster
from segconvert.codecs.shapes import check_overlap, declared_size, images_option, labels_option
from segconvert.errors import ItemError, SourceError, opt
from segconvert.interfaces.format import Format, Reader
from segconvert.io import sources
from segconvert.io.sources import UrlPath, location
from segconvert.model.ir import Category, Item, Segmentation, SegmentInfo

#: coordinates further than FAR * max(width, height) + FAR_PIXELS outside the image are an error
FAR = 10
FAR_PIXELS = 1000


class Label(NamedTuple):
    """One row of cityscapesScripts' ``helpers/labels.py``."""

    name: str
    id: int
    train_id: int
    category: str
    category_id: int
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]


# fmt: off
LABELS: tuple[Label, ...] = (
    Label("unlabeled",              0, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("ego vehicle",            1, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("rectification border",   2, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("out of roi",             3, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("static",                 4, 255, "void",         0, False, True,  (0, 0, 0)),
    Label("dynamic",                5, 255, "void",         0, False, True,  (111, 74, 0)),
    Label("ground",                 6, 255, "void",         0, False, True,  (81, 0, 81)),
    Label("road",                   7,   0, "flat",         1, False, False, (128, 64, 128)),
    Label("sidewalk",               8,   1, "flat",         1, False, False, (244, 35, 232)),
    Label("parking",                9, 255, "flat",         1, False, True,  (250, 170, 160)),
    Label("rail track",            10, 255, "flat",         1, False, True,  (230, 150, 140)),
    Label("building",              11,   2, "construction", 2, False, False, (70, 70, 70)),
    Label("wall",                  12,   3, "construction", 2, False, False, (102, 102, 156)),
    Label("fence",                 13,   4, "construction", 2, False, False, (190, 153, 153)),
    Label("guard rail",            14, 255, "construction", 2, False, True,  (180, 165, 180)),
    Label("bridge",                15, 255, "construction", 2, False, True,  (150, 100, 100)),
    Label("tunnel",                16, 255, "construction", 2, False, True,  (150, 120, 90)),
    Label("pole",                  17,   5, "object",       3, False, False, (153, 153, 153)),
    Label("polegroup",             18, 255, "object",       3, False, True,  (153, 153, 153)),
    Label("traffic light",         19,   6, "object",       3, False, False, (250, 170, 30)),
    Label("traffic sign",          20,   7, "object",       3, False, False, (220, 220, 0)),
    Label("vegetation",            21,   8, "nature",       4, False, False, (107, 142, 35)),
    Label("terrain",               22,   9, "nature",       4, False, False, (152, 251, 152)),
    Label("sky",                   23,  10, "sky",          5, False, False, (70, 130, 180)),
    Label("person",                24,  11, "human",        6, True,  False, (220, 20, 60)),
    Label("rider",                 25,  12, "human",        6, True,  False, (255, 0, 0)),
    Label("car",                   26,  13, "vehicle",      7, True,  False, (0, 0, 142)),
    Label("truck",                 27,  14, "vehicle",      7, True,  False, (0, 0, 70)),
    Label("bus",                   28,  15, "vehicle",      7, True,  False, (0, 60, 100)),
    Label("caravan",               29, 255, "vehicle",      7, True,  True,  (0, 0, 90)),
    Label("trailer",               30, 255, "vehicle",      7, True,  True,  (0, 0, 110)),
    Label("train",                 31,  16, "vehicle",      7, True,  False, (0, 80, 100)),
    Label("motorcycle",            32,  17, "vehicle",      7, True,  False, (0, 0, 230)),
    Label("bicycle",               33,  18, "vehicle",      7, True,  False, (119, 11, 32)),
    Label("license plate",         -1,  -1, "vehicle",      7, False, True,  (0, 0, 142)),
)
# fmt: on
NAME_TO_LABEL = {lab.name: lab for lab in LABELS}
VOID_ID = 0  # json2labelImg's background: 'unlabeled'
#: ego vehicle, rectification border, out of roi, static: void unless --keep-void-classes
VOID_CLASS_IDS = frozenset({1, 2, 3, 4})

#: the dataset-wide category table: every label json2labelImg can write besides the background
CATEGORIES = [
    Category(id=lab.id, name=lab.name, isthing=lab.has_instances, supercategory=lab.category, color=lab.color)
    for lab in LABELS
    if lab.id > VOID_ID
]

SUFFIXES = ("_gtFine_polygons.json", "_gtCoarse_polygons.json", "_polygons.json")


def reference_id(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@dataclass
class CityscapesItem(Item):
    reference_id: str
    source: str  # the *_polygons.json
    overlap: str = "paint"
    mapping: dict[str, str] = field(default_factory=dict)  # --labels: source label -> table label
    images_dir: str | None = None
    keep_void_classes: bool = False

    def _fail(self, message: str) -> ItemError:
        return ItemError(message, item=self.reference_id, file=self.source)

    def load(self) -> Segmentation:
        doc = self._read()
        height, width = self._size(doc)
        limits.check_pixels(width, height)  # before any mask of that size is allocated
        objects = doc.get("objects")
        if not isinstance(objects, list):
            raise self._fail("no 'objects' list")
        warnings: list[str] = []
        drawn: list[tuple[int, list[tuple[float, float]]]] = []  # (raw id, polygon), file order
        object_of: dict[int, int] = {}  # raw id -> position in 'objects'
        segments: list[SegmentInfo] = []
        classes: dict[int, SegmentInfo] = {}  # stuff / groups, one segment per class
        void_ids: list[int] = []
        counters: dict[str, int] = {}
        for k, obj in enumerate(objects):
            where = f"objects[{k}]"
            if not isinstance(obj, dict):
                raise self._fail(f"{where} is not an object")
            if obj.get("deleted"):
                continue
            label, is_group = self._label(obj.get("label"), where)
            if label.id < 0:
                continue
            polygon = self._polygon(obj.get("polygon"), where, label.name, height, width, warnings)
            if polygon is None:
                continue
            raw = len(drawn) + 1
            drawn.append((raw, polygon))
            object_of[raw] = k
            if label.id == VOID_ID or (label.id in VOID_CLASS_IDS and not self.keep_void_classes):
                void_ids.append(raw)
            elif label.has_instances and not is_group:
                n = counters.get(label.name, 0)
                counters[label.name] = n + 1
                meta = {"supercategory": label.category, "object": k, "instance": n}
                segments.append(
                    SegmentInfo(id=raw, label=label.name, category_id=label.id, isthing=True, metadata=meta)
                )
            else:
                seg = classes.get(label.id)
                if seg is None:
                    meta = {"supercategory": label.category}
                    seg = SegmentInfo(
                        id=raw, label=label.name, category_id=label.id, isthing=False, metadata=meta,
                        pixel_ids=(),
                    )
                    classes[label.id] = seg
                    segments.append(seg)
                seg.pixel_ids = (*seg.pixels, raw)
        if self.overlap == "paint":
            label_map = self._draw_in_order(height, width, drawn)
        else:
            label_map = self._draw_with_policy(height, width, drawn, object_of)
        return Segmentation(
            self.reference_id, label_map, segments, source=self.source, dropped_ids=frozenset(void_ids),
            warnings=warnings,
        )

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(png.read_bytes(self.source).decode("utf-8"))  # a path or a URL
        except FileNotFoundError:
            raise self._fail("file not found") from None
        except OSError as exc:
            raise self._fail(f"cannot read: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self._fail(f"not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise self._fail("expected a JSON object with imgHeight, imgWidth and objects")
        return doc

    def _size(self, doc: dict[str, Any]) -> tuple[int, int]:
        h, w = doc.get("imgHeight"), doc.get("imgWidth")
        if h is not None or w is not None:  # given: it must be right (the image is no second opinion)
            try:
                return declared_size(h, w, "imgHeight/imgWidth")
            except ValueError as exc:
                raise self._fail(str(exc)) from None
        if self.images_dir is None:
            raise self._fail(f"no imgHeight/imgWidth; pass {opt('images', 'DIR')} to read sizes from the images")
        image = find_image(location(self.images_dir), self.reference_id)
        if image is None:
            raise self._fail(f"no imgHeight/imgWidth, and no image for it in {self.images_dir}")
        try:
            width, height = sources.probe(image, _image_size)  # the header only, also at a URL
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
            raise self._fail(f"no imgHeight/imgWidth, and cannot read {image}: {exc}") from None
        return int(height), int(width)

    def _label(self, name: Any, where: str) -> tuple[Label, bool]:
        if not isinstance(name, str):
            raise self._fail(f"{where} has no 'label' string")
        source = name
        name = self.mapping.get(name, name)
        label = NAME_TO_LABEL.get(name)
        if label is not None:
            return label, False
        if name.endswith("group"):
            label = NAME_TO_LABEL.get(self.mapping.get(name[: -len("group")], name[: -len("group")]))
            if label is not None:
                return label, True
        raise self._fail(
            f"{where}: label {source!r} is not in the Cityscapes label table (map it with {opt('labels')})")

    def _polygon(
        self, polygon: Any, where: str, label: str, height: int, width: int, warnings: list[str]
    ) -> list[tuple[float, float]] | None:
        if not isinstance(polygon, list):
            raise self._fail(f"{where} ({label}): 'polygon' must be a list of [x, y] points")
        points: list[tuple[float, float]] = []
        for p in polygon:
            if not isinstance(p, (list, tuple)) or len(p) != 2:
                raise self._fail(f"{where} ({label}): polygon point {p!r} is not [x, y]")
            for v in p:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise self._fail(f"{where} ({label}): coordinate {v!r} is not a number")
                if not math.isfinite(v):
                    raise self._fail(f"{where} ({label}): NaN or infinite coordinate")
            points.append((p[0], p[1]))
        if len(points) < 3:
            warnings.append(f"{where} ({label}): polygon of {len(points)} points (fewer than 3), skipped")
            return None
        xy = np.asarray(points, np.float64)
        far = FAR * max(height, width) + FAR_PIXELS
        x, y = xy[:, 0], xy[:, 1]
        if (x < -far).any() or (y < -far).any() or (x > width + far).any() or (y > height + far).any():
            raise self._fail(
                f"{where} ({label}): coordinates lie more than {FAR}x the image size outside the "
                f"{width}x{height} image"
            )
        outside = int(np.count_nonzero((x < 0) | (y < 0) | (x > width - 1) | (y > height - 1)))
        if outside:
            warnings.append(f"{where} ({label}): {outside} points outside the {width}x{height} image, clipped")
        return points

    @staticmethod
    def _draw_in_order(height: int, width: int, drawn: list[tuple[int, list[tuple[float, float]]]]) -> np.ndarray:
        """json2labelImg's own procedure: one image, ImageDraw.polygon per object in file order."""
        canvas = PIL.Image.new("I", (width, height), 0)
        draw = PIL.ImageDraw.Draw(canvas)
        for raw, polygon in drawn:
            draw.polygon(polygon, fill=raw)
        ids = np.asarray(canvas)
        return ids.astype(np.uint16 if len(drawn) < 65536 else np.uint32)

    def _draw_with_policy(
        self, height: int, width: int, drawn: list[tuple[int, list[tuple[float, float]]]], object_of: dict[int, int]
    ) -> np.ndarray:
        """Each object drawn alone on its box, as runs, painted by raster in the policy's order."""
        shapes: list[raster.Shape] = []
        for raw, polygon in drawn:
            shapes.append((raw, _polygon_rle(polygon, height, width)))
        try:
            return raster.paint(height, width, shapes, self.overlap)
        except ItemError as exc:
            def objects(m: re.Match[str]) -> str:
                return f"{object_of[int(m[1])]} & {object_of[int(m[2])]} ("

            message = re.sub(r"(\d+) & (\d+) \(", objects, exc.message)
            raise self._fail(message.replace("segment ids", "objects")) from None


CROP_MARGIN = 8


def _polygon_rle(polygon: list[tuple[float, float]], height: int, width: int) -> dict[str, Any]:
    """The object's pixels as PIL draws them, as an uncompressed column-major RLE of the image.

    PIL draws on a canvas cropped to the polygon's box, the coordinates shifted by the
    box's integer origin (a translation by whole pixels, exact for Cityscapes' integer
    coordinates). The box keeps CROP_MARGIN pixels around the polygon (clipped to the
    image): PIL clips edges at the canvas border, and a border 1-2 pixels away changed
    pixels inside (29 of 20,000 random polygons with a margin of 1-2; none with 8).
    """
    xy = np.asarray(polygon, np.float64)
    x0 = max(int(math.floor(xy[:, 0].min())) - CROP_MARGIN, 0)
    y0 = max(int(math.floor(xy[:, 1].min())) - CROP_MARGIN, 0)
    x1 = min(int(math.ceil(xy[:, 0].max())) + CROP_MARGIN, width)
    y1 = min(int(math.ceil(xy[:, 1].max())) + CROP_MARGIN, height)
    if x1 <= x0 or y1 <= y0:
        return {"size": [height, width], "counts": [height * width]}
    canvas = PIL.Image.new("L", (x1 - x0, y1 - y0), 0)
    PIL.ImageDraw.Draw(canvas).polygon([(x - x0, y - y0) for x, y in polygon], fill=1)
    crop = np.asarray(canvas)
    ch = crop.shape[0]
    # column-major, one zero row appended so that no run crosses a column
    cols = np.zeros((crop.shape[1], ch + 1), np.int8)
    cols[:, :ch] = crop.T
    flat = cols.ravel()
    edges = np.flatnonzero(np.diff(flat, prepend=0))
    local = edges
    cx, cy = local // (ch + 1), local % (ch + 1)
    pos = (x0 + cx) * height + y0 + cy  # global column-major positions of run starts / ends
    bounds = np.concatenate([[0], pos, [height * width]])
    return {"size": [height, width], "counts": np.diff(bounds).tolist()}


def _image_size(fh: str | IO[bytes]) -> tuple[int, int]:
    with PIL.Image.open(fh) as im:
        return im.size


def find_image(images_dir: Path | UrlPath, ref: str) -> Path | UrlPath | None:
    """The leftImg8bit image of a reference id: DIR/<ref>_leftImg8bit.png, DIR/<city>/..., DIR/<ref>.*"""
    city = ref.split("_")[0]
    for cand in (
        images_dir / f"{ref}_leftImg8bit.png",
        images_dir / city / f"{ref}_leftImg8bit.png",
        images_dir / f"{ref}.png",
        images_dir / f"{ref}.jpg",
    ):
        if cand.is_file():
            return cand
    return None


def _load_mapping(path: Path) -> dict[str, str]:
    """``--labels FILE``: JSON object {source label: Cityscapes table label}."""
    try:
        doc = json.loads(location(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourceError(f"cannot read labels file: {exc.strerror or exc}", file=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"labels file is not valid JSON: {exc}", file=path) from None
    if not isinstance(doc, dict) or not doc:
        raise SourceError('labels file must be a JSON object {"source label": "cityscapes label"}', file=path)
    for key, target in doc.items():
        if not isinstance(target, str) or target not in NAME_TO_LABEL:
            raise SourceError(f"labels[{key!r}] = {target!r} is not a Cityscapes label name", file=path)
    return dict(doc)


class CityscapesReader(Reader):
    """Reads a folder (searched recursively) of Cityscapes ``*_polygons.json`` files."""

    options = (
        raster.overlap_option(),
        labels_option(
            'JSON object mapping labels outside the Cityscapes table to table labels, e.g. {"van": "car"}.'
        ),
        images_option("Folder of the leftImg8bit images, to read sizes from when a JSON has no imgHeight/imgWidth."),
        click.Option(
            ["--keep-void-classes"], is_flag=True, default=False,
            help="Keep ego vehicle, rectification border, out of roi and static (label ids 1-4) as classes, "
            "as json2labelImg writes them; by default they are void (background 0).",
        ),
    )
    default_mode = "instance"

    def __init__(
        self,
        source: str | Path,
        overlap: str = "paint",
        labels: str | Path | None = None,
        images: str | Path | None = None,
        keep_void_classes: bool = False,
    ) -> None:
        super().__init__(source)
        self.overlap = check_overlap(overlap)
        self.keep_void_classes = bool(keep_void_classes)
        self.mapping = _load_mapping(location(labels)) if labels is not None else {}
        self.images_dir = str(images) if images is not None else None
        self.categories = list(CATEGORIES)
        if self.source.is_file():
            self._files = [self.source]
        elif self.source.is_dir():
            self._files = sorted(self.source.rglob("*_polygons.json"))
            if not self._files:
                raise SourceError("no *_polygons.json files in this folder", file=self.source)
        else:
            raise SourceError("not found", file=self.source)

    def __len__(self) -> int:
        return len(self._files)

    def items(self) -> Iterator[Item]:
        for path in self._files:
            yield CityscapesItem(reference_id(path), str(path), self.overlap, self.mapping, self.images_dir,
                                 self.keep_void_classes)


def sniff(path: Path) -> bool:
    if path.is_dir():
        return next(path.rglob("*_polygons.json"), None) is not None
    return path.name.endswith("_polygons.json")


FORMAT = Format(
    name="cityscapes",
    description="Cityscapes gtFine *_polygons.json, drawn as cityscapesScripts' json2labelImg does",
    reader=CityscapesReader,
    sniff=sniff,
)
