"""COCO panoptic: a JSON of ``segments_info`` per image plus RGB PNGs of segment ids.

The conventions are the COCO panoptic API's (panopticapi): id = R + 256·G + 256²·B,
0 is void, the PNG folder defaults to the JSON's path without ``.json``. Everything
that can be checked without decoding a PNG (image entry, categories, duplicate ids)
is checked here in the main process; the rest (PNG mode, size, ids without an entry)
in ``load`` in the worker. Either way a broken image fails alone, with its file name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from segconvert import cocojson, png
from segconvert.errors import ItemError, SourceError
from segconvert.format import Format, Reader, read_ends
from segconvert.ir import FailedItem, Item, Segmentation, SegmentInfo


@dataclass
class PanopticItem(Item):
    reference_id: str
    source: str  # the PNG
    width: int
    height: int
    segments: list[SegmentInfo]

    def load(self) -> Segmentation:
        where = {"item": self.reference_id, "file": self.source}
        try:
            data = png.read_bytes(self.source)
        except FileNotFoundError:
            raise ItemError("PNG not found", **where) from None
        except OSError as exc:
            raise ItemError(f"cannot read PNG: {exc.strerror or exc}", **where) from None
        try:
            header = png.read_header(data)
        except ValueError as exc:
            raise ItemError(str(exc), **where) from None
        if header.color_type != 2 or header.bit_depth != 8:
            raise ItemError(f"PNG is {header.description}; COCO panoptic PNGs are 8-bit RGB", **where)
        if (header.width, header.height) != (self.width, self.height):
            raise ItemError(
                f"PNG is {header.width}x{header.height} but the JSON says {self.width}x{self.height}", **where
            )
        try:
            rgb = png.decode_rgb8(data)  # RGB-packed ids: the IR takes them as they are
        except ValueError as exc:
            raise ItemError(str(exc), **where) from None
        return Segmentation(self.reference_id, rgb, self.segments, source=self.source)


class CocoPanopticReader(Reader):
    """Reads COCO panoptic JSON + PNG folder."""

    options = (
        click.Option(
            ["--masks-dir"],
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Folder of the panoptic PNGs [default: the JSON's path without .json].",
        ),
    )
    default_mode = "panoptic"

    def __init__(self, source: str | Path, masks_dir: str | Path | None = None) -> None:
        super().__init__(source)
        self.masks_dir = str(masks_dir) if masks_dir else str(self.source.with_suffix(""))
        self.categories = cocojson.parse_categories(cocojson.table(self.source, "categories"), self.source)
        if not self.categories:
            raise SourceError("no 'categories'; is this a COCO panoptic JSON?", file=self.source)
        self._by_cat = {c.id: c for c in self.categories}
        # image id -> (reference_id, width, height): a small tuple per image, not the JSON's dict
        self._images: dict[Any, tuple[str | None, Any, Any]] = {}
        for img in cocojson.table(self.source, "images"):
            if isinstance(img, dict):
                name = img.get("file_name")
                ref = os.path.splitext(os.path.basename(name))[0] if isinstance(name, str) else None
                self._images[img.get("id")] = (ref, img.get("width"), img.get("height"))

    def __len__(self) -> int:
        return len(self._images)

    def items(self) -> Iterator[Item]:
        for k, ann in enumerate(cocojson.stream(self.source, "annotations.item")):
            if k == 0 and isinstance(ann, dict) and "segments_info" not in ann:
                hint = " (COCO instances read with --from coco-instances)" if "segmentation" in ann else ""
                raise SourceError(f"annotations have no 'segments_info': not COCO panoptic{hint}", file=self.source)
            yield self._item(k, ann)

    def _item(self, k: int, ann: Any) -> Item:
        if not isinstance(ann, dict) or not isinstance(ann.get("file_name"), str):
            name = f"annotations[{k}]"
            return FailedItem(name, ItemError("annotation without a 'file_name'", item=name, file=self.source))
        png_path = os.path.join(self.masks_dir, ann["file_name"])
        ref = os.path.splitext(os.path.basename(ann["file_name"]))[0]
        try:
            image = self._images.get(ann.get("image_id"))
            if image is None:
                raise ItemError(f"image_id {ann.get('image_id')!r} has no entry in 'images'")
            ref = image[0] or ref
            width, height = image[1], image[2]
            if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
                raise ItemError(f"image {ann.get('image_id')!r} has no positive integer width/height")
            segments = self._segments(ann.get("segments_info") or [])
        except ItemError as exc:
            return FailedItem(ref, exc.located(item=ref, file=self.source), source=png_path)
        return PanopticItem(ref, png_path, width, height, segments)

    def _segments(self, infos: list[Any]) -> list[SegmentInfo]:
        segments: list[SegmentInfo] = []
        seen: set[int] = set()
        by_cat = self._by_cat
        for j, info in enumerate(infos):
            try:
                sid, cat_id = _integer(info["id"]), _integer(info["category_id"])
            except (KeyError, TypeError, ValueError):
                raise ItemError(f"segments_info[{j}] needs integer 'id' and 'category_id'") from None
            if sid in seen:
                raise ItemError(f"segment id {sid} appears twice in segments_info")
            if sid <= 0 or sid >= 1 << 24:
                raise ItemError(f"segment id {sid} is outside 1..16777215 (ids are R + 256*G + 256^2*B)")
            seen.add(sid)
            cat = by_cat.get(cat_id)
            if cat is None:
                raise ItemError(f"segment {sid} has category_id {cat_id}, which is not in categories")
            meta: dict[str, Any] = {} if cat.supercategory is None else {"supercategory": cat.supercategory}
            bbox = info.get("bbox")
            if bbox is not None:
                meta["bbox"] = bbox
            # positional: this runs for every segment of every image
            segments.append(SegmentInfo(sid, cat.name, cat.id, cat.isthing, bool(info.get("iscrowd", 0)), meta))
        return segments


def _integer(value: Any) -> int:
    """An id from the JSON: an int, or a float with an integral value (3.0); anything else
    (3.5, "3", true) is an error rather than a silently different id."""
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError(f"not an integer: {value!r}")


def sniff(path: Path) -> bool:
    return path.suffix.lower() == ".json" and path.is_file() and b'"segments_info"' in read_ends(path)


FORMAT = Format(
    name="coco-panoptic",
    description="COCO panoptic JSON + RGB id PNGs (id = R + 256*G + 256^2*B)",
    reader=CocoPanopticReader,
    sniff=sniff,
)
