"""SA-1B (Segment Anything): a folder of per-image JSONs of class-less masks in COCO RLE.

Each ``sa_<n>.json`` (as the SA-1B tars unpack, beside ``sa_<n>.jpg``; also what SAM's
``amg.py --convert-to-rle`` writes) is::

    {"image": {"image_id", "width", "height", "file_name"},
     "annotations": [{"id", "segmentation": {"size": [h, w], "counts": "..."}, "area",
                      "bbox", "predicted_iou", "stability_score", "point_coords", "crop_box"}]}

Pixels are pycocotools' ``mask.decode`` of each ``segmentation`` (compressed string
counts, or an uncompressed list), painted by ``segconvert.codecs.raster`` (same runs, tested
against ``pycocotools.mask.decode``).

Decisions:

- SAM's masks have no class: every mask is one instance of ``--label NAME`` (default
  ``object``), category id 1. Default mode instance.
- SAM's masks nest (a whole, its parts, their parts) and overlap freely, so the default
  ``--overlap`` is ``small-on-top``: larger areas are painted first and every smaller
  mask stays visible on top (ties in file order). ``paint`` (file order) and ``error``
  are there too. A mask wholly covered by smaller ones keeps no pixels and is dropped
  from the payload by packing.
- Segment ids are 1..n in file order. Metadata: ``annotation_id``, ``predicted_iou``,
  ``stability_score``, ``bbox``, ``point_coords``, ``crop_box`` when present, and SAM's
  ``area`` (packing keeps it as ``source_area`` when the visible area differs).
- reference_id is the JSON's stem (``sa_1``), known without opening the file; when
  ``image.file_name`` has another stem the item warns. JSONs are found recursively
  (several unpacked tars side by side), in sorted order; two JSONs with one stem fail the
  second, naming the first.
- More than 255 masks on an image fails that image (the Nucleus mask is uint8), as for
  every reader.

Bad input fails the image, naming the JSON and the annotation (``annotations[3] (id
123)``): unreadable or invalid JSON (NaN is invalid JSON), no ``image`` / ``annotations``,
a width/height that is not a positive integer, an RLE without ``size`` / ``counts``, an
RLE size other than the image's, counts that do not decode or do not cover the image, a
``predicted_iou`` / ``stability_score`` that is not a finite number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson

from segconvert.codecs import raster
from segconvert.codecs.png import read_bytes
from segconvert.codecs.shapes import check_overlap, declared_size, name_segments
from segconvert.errors import ItemError, SourceError, opt
from segconvert.interfaces.format import Format, Reader
from segconvert.io import sources
from segconvert.io.sources import UrlPath
from segconvert.model.ir import Category, FailedItem, Item, Segmentation, SegmentInfo

#: annotation keys copied into segment metadata as they are
_META_KEYS = ("predicted_iou", "stability_score", "bbox", "point_coords", "crop_box", "area")
_SCORES = ("predicted_iou", "stability_score")


@dataclass
class Sa1bItem(Item):
    reference_id: str
    source: str  # the JSON
    label: str = "object"
    overlap: str = "small-on-top"

    def _fail(self, message: str) -> ItemError:
        return ItemError(message, item=self.reference_id, file=self.source)

    def _read(self) -> dict[str, Any]:
        try:
            data = read_bytes(self.source)
        except OSError as exc:
            raise self._fail(f"cannot read: {exc.strerror or exc}") from None
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise self._fail(f"not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("image"), dict):
            raise self._fail("no 'image' object; is this an SA-1B JSON?")
        if not isinstance(doc.get("annotations"), list):
            raise self._fail("no 'annotations' list; is this an SA-1B JSON?")
        return doc

    def _size(self, image: dict[str, Any]) -> tuple[int, int]:
        try:
            return declared_size(image.get("height"), image.get("width"), "image width/height", width_first=True)
        except ValueError as exc:
            raise self._fail(str(exc)) from None

    def load(self) -> Segmentation:
        doc = self._read()
        image = doc["image"]
        height, width = self._size(image)
        warnings: list[str] = []
        file_name = image.get("file_name")
        if isinstance(file_name, str) and Path(file_name.replace("\\", "/")).stem != self.reference_id:
            warnings.append(f"image.file_name {file_name!r} differs from the JSON's name; reference_id is its stem")
        shapes: list[raster.Shape] = []
        segments: list[SegmentInfo] = []
        names: dict[int, str] = {}
        for k, ann in enumerate(doc["annotations"]):
            if not isinstance(ann, dict):
                raise self._fail(f"annotations[{k}] is not an object")
            where = f"annotations[{k}] (id {ann['id']!r})" if "id" in ann else f"annotations[{k}]"
            rle = self._rle(ann.get("segmentation"), where, height, width)
            meta: dict[str, Any] = {}
            if "id" in ann:
                meta["annotation_id"] = ann["id"]
            for key in _META_KEYS:
                if key in ann:
                    meta[key] = ann[key]
            for key in _SCORES:
                value = ann.get(key)
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                ):
                    raise self._fail(f"{where}: {key} {value!r} is not a finite number")
            sid = k + 1
            names[sid] = where
            shapes.append((sid, rle))
            segments.append(SegmentInfo(id=sid, label=self.label, category_id=1, metadata=meta))
        try:
            label_map = raster.paint(height, width, shapes, self.overlap)
        except ItemError as exc:
            raise self._fail(name_segments(exc.message, names)) from None
        return Segmentation(self.reference_id, label_map, segments, source=self.source, warnings=warnings)

    def _rle(self, seg: Any, where: str, height: int, width: int) -> dict[str, Any]:
        """The annotation's RLE, its size checked here so that the message names the annotation."""
        if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
            raise self._fail(f"{where}: 'segmentation' must be a COCO RLE object with 'size' and 'counts'")
        size = seg["size"]
        if (
            not isinstance(size, list)
            or len(size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in size)
        ):
            raise self._fail(f"{where}: RLE size {size!r} is not [height, width]")
        if size != [height, width]:
            raise self._fail(
                f"{where}: RLE size is {size[1]}x{size[0]} (WxH) but the image is {width}x{height}"
            )
        counts = seg["counts"]
        if not isinstance(counts, (str, list)):
            raise self._fail(f"{where}: RLE counts must be a compressed string or a list of integers")
        if isinstance(counts, str) and not counts.isascii():
            raise self._fail(f"{where}: compressed RLE counts hold characters outside '0'..'o'")
        return seg


# --------------------------------------------------------------------------- the reader


def _json_files(root: Path | UrlPath) -> Iterator[Path | UrlPath]:
    """Every ``*.json`` under ``root``, in sorted order, one folder listing in memory at a time
    (a URL: the names of the whole tree, from one listing)."""
    for folder, dirs, files in sources.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(".json"):
                yield folder / name


class Sa1bReader(Reader):
    """Reads a folder of SA-1B per-image JSONs (searched recursively, sorted)."""

    options = (
        raster.overlap_option(default="small-on-top"),
        click.Option(
            ["--label"],
            default="object",
            show_default=True,
            help="The label of every mask (SAM's masks have no class).",
        ),
    )
    default_mode = "instance"

    def __init__(self, source: str | Path, overlap: str = "small-on-top", label: str = "object") -> None:
        super().__init__(source)
        if not self.source.is_dir():
            raise SourceError("an SA-1B source is a folder of per-image .json files", file=self.source)
        if not isinstance(label, str) or not label.strip():
            raise SourceError(f"{opt('label')} must be a non-empty name, got {label!r}")
        self.overlap = check_overlap(overlap)
        self.label = label
        self.categories = [Category(id=1, name=label)]
        #: a URL's listing, kept: it is one request per 1000 names, not worth making three times
        self._listed = list(_json_files(self.source)) if isinstance(self.source, UrlPath) else None
        if next(self._files(), None) is None:
            raise SourceError("no .json files in this folder (SA-1B has one JSON per image)", file=self.source)
        self._count: int | None = None

    def _files(self) -> Iterator[Path | UrlPath]:
        return iter(self._listed) if self._listed is not None else _json_files(self.source)

    def __len__(self) -> int:
        if self._count is None:
            self._count = sum(1 for _ in self._files())
        return self._count

    def items(self) -> Iterator[Item]:
        seen: dict[str, str] = {}
        for path in self._files():
            ref, source = path.stem, str(path)
            if ref in seen:
                err = ItemError(f"reference id {ref!r} is already used by {seen[ref]}", item=ref, file=source)
                yield FailedItem(ref, err, source=source)
                continue
            seen[ref] = source
            yield Sa1bItem(ref, source, self.label, self.overlap)


_COUNTS_STRING = re.compile(rb'"counts"\s*:\s*"')


def sniff(path: Path) -> bool:
    """A folder whose first JSON (by name, at its top or one folder down) starts like SA-1B's:
    an ``image`` and ``annotations`` with RLE string counts. Reads one file's first 64 kB."""
    if not path.is_dir():
        return False
    first = min((p for p in path.glob("*.json") if p.is_file()), default=None)
    if first is None:  # unpacked tars side by side: look into the first folder only
        sub = min((p for p in path.iterdir() if p.is_dir()), default=None)
        first = min((p for p in sub.glob("*.json") if p.is_file()), default=None) if sub else None
    if first is None:
        return False
    head = sources.read_head(first, 1 << 16)
    return b'"image"' in head and b'"annotations"' in head and _COUNTS_STRING.search(head) is not None


FORMAT = Format(
    name="sa1b",
    description="Segment Anything SA-1B: per-image JSONs of class-less COCO RLE masks (pycocotools-exact)",
    reader=Sa1bReader,
    sniff=sniff,
)
