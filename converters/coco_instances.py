"""COCO instances: one JSON of ``images``, ``annotations`` (polygons or RLE) and ``categories``.

Pixels are what pycocotools says they are: a polygon list goes through ``frPyObjects``
and, when it has several parts, ``merge`` (their union, as COCO defines); an RLE
(``counts`` list as in COCO's crowd annotations, or a compressed ``counts`` string) is
decoded as ``decode`` would. Instances are painted in the order the JSON stores them
(later on top, as painting pycocotools' masks in order does) unless ``--overlap`` says
otherwise; :mod:`segconvert.raster` paints the RLE runs directly, without one full
mask per annotation.

Memory: the JSON is parsed once and the annotation dicts are never copied. The reader
keeps one array of annotation positions sorted by image; an item takes references to
its image's annotations when ``items()`` reaches it.

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
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
from pycocotools import mask as mask_utils

from segconvert import cocojson, limits, paths, raster
from segconvert.errors import ItemError, SourceError
from segconvert.format import Format, Reader, read_ends
from segconvert.ir import Category, FailedItem, Item, Segmentation, SegmentInfo
from segconvert.shapes import check_overlap, images_option, labels_option

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
    geoms: list[Any]  # each annotation's ``segmentation``, aligned with ``segments``
    segments: list[SegmentInfo]
    overlap: str = "paint"

    def load(self) -> Segmentation:
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


def _load_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise SourceError("file not found", file=path) from None
    except IsADirectoryError:
        raise SourceError("is a folder; coco-instances reads an instances JSON file", file=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"not valid JSON: {exc}", file=path) from None
    if not isinstance(doc, dict):
        raise SourceError("expected a JSON object with images, annotations and categories", file=path)
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise SourceError(f"no {key!r} list; is this a COCO instances JSON?", file=path)
    return doc


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
        doc = _load_json(self.source)
        self.categories = cocojson.parse_categories(doc["categories"], self.source)
        self._cats: dict[int, Category] = {c.id: c for c in self.categories}
        if labels is not None:
            self._cats.update(_load_label_map(Path(labels), self.categories))
        self._images: list[Any] = doc["images"]
        self._annotations: list[Any] = doc["annotations"]
        del doc  # the lists above are the only references kept
        # image of each annotation (position in `images`; -1 for none), then positions sorted by it
        first_seen: dict[Any, int] = {}
        self._duplicates: dict[int, Any] = {}
        for k, img in enumerate(self._images):
            key = _image_id_key(img.get("id")) if isinstance(img, dict) else None
            if key is None:
                continue
            if key in first_seen:
                self._duplicates[k] = key
            else:
                first_seen[key] = k
        owner = np.fromiter(
            (
                first_seen.get(_image_id_key(a.get("image_id")), -1) if isinstance(a, dict) else -1
                for a in self._annotations
            ),
            np.int64,
            len(self._annotations),
        )
        self._order = np.argsort(owner, kind="stable")
        n_orphans = int(np.searchsorted(owner[self._order], 0))
        self._orphans = self._order[:n_orphans]
        counts = np.bincount(owner[owner >= 0], minlength=len(self._images))
        self._bounds = (n_orphans + np.concatenate([[0], np.cumsum(counts)])).tolist()

    def __len__(self) -> int:
        return len(self._images) + len(self._orphan_groups())

    def items(self) -> Iterator[Item]:
        for k, image in enumerate(self._images):
            positions = self._order[self._bounds[k] : self._bounds[k + 1]].tolist()
            yield self._item(k, image, [self._annotations[i] for i in positions])
        for label, _ in self._orphan_groups().items():
            err = ItemError(f"annotations refer to {label}, which has no entry in 'images'", file=self.source)
            yield FailedItem(label, err.located(item=label), source=str(self.source))

    def _orphan_groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i in self._orphans.tolist():
            ann = self._annotations[i]
            label = f"image_id {ann.get('image_id')!r}" if isinstance(ann, dict) else f"annotations[{i}]"
            groups.setdefault(label, []).append(i)
        return groups

    def _failed(self, ref: str, message: str) -> FailedItem:
        return FailedItem(ref, ItemError(message, item=ref, file=self.source), source=str(self.source))

    def _item(self, k: int, image: Any, anns: list[Any]) -> Item:
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
                    f"image {image.get('id')!r} has no width/height; pass --images DIR to read sizes "
                    "from the images",
                )
            width = height = None
            try:
                image_path = paths.resolve_inside(self.images_dir, image["file_name"])
            except ItemError as exc:
                return self._failed(ref, exc.message)
        segments: list[SegmentInfo] = []
        geoms: list[Any] = []
        for pos, ann in enumerate(anns):
            aid = ann.get("id")
            cat = self._cats.get(_field_int(ann.get("category_id")))  # type: ignore[arg-type]
            if cat is None:
                return self._failed(
                    ref,
                    f"annotation {aid}: category_id {ann.get('category_id')!r} is not in categories "
                    "(map it with --labels)",
                )
            if "segmentation" not in ann:
                return self._failed(ref, f"annotation {aid}: no 'segmentation'")
            meta: dict[str, Any] = {"annotation_id": aid}
            if cat.supercategory is not None:
                meta["supercategory"] = cat.supercategory
            for key in ("area", "bbox"):
                if key in ann:
                    meta[key] = ann[key]
            segments.append(
                SegmentInfo(
                    id=pos + 1, label=cat.name, category_id=cat.id, isthing=True,
                    iscrowd=bool(ann.get("iscrowd", 0)), metadata=meta,
                )
            )
            geoms.append(ann["segmentation"])
        return CocoInstancesItem(
            ref, str(self.source), width, height, image_path, geoms, segments, self.overlap
        )


def sniff(path: Path) -> bool:
    """An instances JSON has 'segmentation' in its annotations, which follow a long 'images'
    list, so look at the head and the tail (where annotations end before 'categories')."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    text = read_ends(path)
    return b'"segmentation"' in text and b'"segments_info"' not in text and b'"images"' in text


FORMAT = Format(
    name="coco-instances",
    description="COCO instances JSON: polygons and RLE, rasterised exactly as pycocotools does",
    reader=CocoInstancesReader,
    sniff=sniff,
)
