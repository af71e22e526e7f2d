"""COCO panoptic: a JSON of ``segments_info`` per image plus RGB PNGs of segment ids.

The conventions are the COCO panoptic API's (panopticapi): id = R + 256·G + 256²·B,
0 is void, the PNG folder defaults to the JSON's path without ``.json``. The main
process only matches each annotation to its image entry; its ``segments_info`` go to
the worker as parsed (plain lists and dicts pickle in C), where ``load`` checks them
(ids, categories, duplicates) and then the PNG (mode, size, ids without an entry):
with several workers the main process is the bottleneck, so it does the least. Either
way a broken image fails alone, naming the file that is wrong (JSON or PNG).

The writer makes ``OUTPUT/panoptic.json`` and ``OUTPUT/panoptic/<reference_id>.png``
(see :class:`CocoPanopticWriter` for how segment and category ids are chosen).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson

from segconvert.codecs import cocojson, png
from segconvert.codecs.writing import CategoryTable, segment_pixels, warn_empty, write_coco_json
from segconvert.errors import ItemError, SourceError, opt
from segconvert.interfaces.format import Format, Reader, Writer, Written, read_ends
from segconvert.io import paths
from segconvert.io.paths import output_stem
from segconvert.model.ir import FailedItem, Item, Segmentation, SegmentInfo
from segconvert.model.modes import ModePlan

#: the entry of an image id that 'images' lists twice

#: category id -> (name, isthing, supercategory): tuples pickle in C, once per batch of items
CategoryRows = dict[int, tuple[str, bool, str | None]]


@dataclass
class PanopticItem(Item):
    reference_id: str
    source: str  # the PNG
    width: int
    height: int
    segments_info: list[Any]  # as parsed from the JSON, checked in load()
    categories: CategoryRows
    index_file: str  # the JSON, named in messages about segments_info

    def load(self) -> Segmentation:
        try:
            segments = segments_from_info(self.segments_info, self.categories)
        except ItemError as exc:
            raise exc.located(item=self.reference_id, file=self.index_file) from None
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
        return Segmentation(self.reference_id, rgb, segments, source=self.source)


def segments_from_info(infos: list[Any], categories: CategoryRows) -> list[SegmentInfo]:
    """One image's ``segments_info`` as SegmentInfo, checked: integer ids in 1..2^24-1, each
    once, with a known category."""
    segments: list[SegmentInfo] = []
    seen: set[int] = set()
    for j, info in enumerate(infos):
        try:
            sid, cat_id = cocojson.integer(info["id"]), cocojson.integer(info["category_id"])
        except (KeyError, TypeError, ValueError):
            raise ItemError(f"segments_info[{j}] needs integer 'id' and 'category_id'") from None
        if sid in seen:
            raise ItemError(f"segment id {sid} appears twice in segments_info")
        if sid <= 0 or sid >= 1 << 24:
            raise ItemError(f"segment id {sid} is outside 1..16777215 (ids are R + 256*G + 256^2*B)")
        seen.add(sid)
        cat = categories.get(cat_id)
        if cat is None:
            raise ItemError(f"segment {sid} has category_id {cat_id}, which is not in categories")
        name, isthing, supercategory = cat
        meta: dict[str, Any] = {} if supercategory is None else {"supercategory": supercategory}
        bbox = info.get("bbox")
        if bbox is not None:
            meta["bbox"] = bbox
        # positional: this runs for every segment of every image
        segments.append(SegmentInfo(sid, name, cat_id, isthing, bool(info.get("iscrowd", 0)), meta))
    return segments


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
    source_kind = "file"

    def __init__(self, source: str | Path, masks_dir: str | Path | None = None) -> None:
        super().__init__(source)
        self.masks_dir = str(masks_dir) if masks_dir else str(self.source.with_suffix(""))
        self._source_str = str(self.source)
        self.categories = cocojson.parse_categories(cocojson.table(self.source, "categories"), self.source)
        if not self.categories:
            raise SourceError("no 'categories'; is this a COCO panoptic JSON?", file=self.source)
        self._category_rows: CategoryRows = {c.id: (c.name, c.isthing, c.supercategory) for c in self.categories}
        # image id -> (reference_id, width, height), ~45 bytes per image (the JSON's dicts pass one by one)
        self._images = cocojson.ImageTable(cocojson.table_items(self.source, "images"))
        if self._images:  # one up-front error, not one "PNG not found" per image
            paths.require_dir(self.masks_dir, opt("masks-dir") if masks_dir else "the PNGs' folder beside the JSON; "
                              f"name yours with {opt('masks-dir')}")

    def __len__(self) -> int:
        return len(self._images)

    def items(self) -> Iterator[Item]:
        for k, ann in enumerate(cocojson.stream(self.source, "annotations.item")):
            if k == 0 and isinstance(ann, dict) and "segments_info" not in ann:
                hint = f" (COCO instances read with {opt('from', 'coco-instances')})" if "segmentation" in ann else ""
                raise SourceError(f"annotations have no 'segments_info': not COCO panoptic{hint}", file=self.source)
            yield self._item(k, ann)

    def _item(self, k: int, ann: Any) -> Item:
        if not isinstance(ann, dict) or not isinstance(ann.get("file_name"), str):
            name = f"annotations[{k}]"
            return FailedItem(name, ItemError("annotation without a 'file_name'", item=name, file=self.source))
        png_path = os.path.join(self.masks_dir, ann["file_name"])
        ref = os.path.splitext(os.path.basename(ann["file_name"]))[0]
        try:
            paths.resolve_inside(self.masks_dir, ann["file_name"])  # no ../ or absolute file_name
            image_id = ann.get("image_id")
            image = self._images.get(image_id) if isinstance(image_id, int | str) else None
            if image is None:
                raise ItemError(f"image_id {image_id!r} has no entry in 'images'")
            if image is cocojson.LISTED_TWICE:
                raise ItemError(f"image id {image_id!r} appears twice in 'images'")
            ref = image[0] or ref
            width, height = image[1], image[2]
            if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
                raise ItemError(f"image {ann.get('image_id')!r} has no positive integer width/height")
            infos = ann.get("segments_info")
            if infos is None:
                infos = []
            elif not isinstance(infos, list):
                raise ItemError("'segments_info' is not a list")
        except ItemError as exc:
            return FailedItem(ref, exc.located(item=ref, file=self.source), source=png_path)
        return PanopticItem(ref, png_path, width, height, infos, self._categories_of(infos), self._source_str)

    def _categories_of(self, infos: list[Any]) -> CategoryRows:
        """The category rows an item's segments use: a handful of tuples to pickle per item
        where the whole table (133 for COCO) cost 0.02 ms of main-process time per item. An
        id the table lacks stays out, and the worker reports it as unknown."""
        rows = self._category_rows
        try:
            used = {info["category_id"] for info in infos}
        except (KeyError, TypeError):  # odd segments_info: let the worker name the problem
            return rows
        return {cid: rows[cid] for cid in used if cid in rows}


def sniff(path: Path) -> bool:
    return path.suffix.lower() == ".json" and path.is_file() and b'"segments_info"' in read_ends(path)


MAX_ID = (1 << 24) - 1


def png_ids(segments: list[SegmentInfo]) -> list[int]:
    """The id each segment gets in the PNG, by one rule (the first that holds for every segment):

    1. the ``segment_id`` in its metadata (the source's id, which the Nucleus writer keeps
       when it renumbers), when all have one, distinct and in 1..2^24-1: a set that went
       COCO panoptic -> Nucleus -> COCO panoptic gets its ids back;
    2. the IR id (the source's own id, or the class index in semantic mode), when all fit 24 bits;
    3. 1..n in table order.
    """
    kept = [s.metadata.get("segment_id") for s in segments]
    usable = [k for k in kept if type(k) is int and 0 < k <= MAX_ID]  # a list, not all(): once per image
    if len(usable) == len(kept) and len(set(kept)) == len(kept):
        return kept  # type: ignore[return-value]
    if all(0 < s.id <= MAX_ID for s in segments):
        return [s.id for s in segments]
    return list(range(1, len(segments) + 1))


class CocoPanopticWriter(Writer):
    """Writes ``panoptic.json`` + ``panoptic/<reference_id>.png`` (RGB ids, 0 = void).

    Per image (in the workers): the PNG, and a record of each segment's id, class, area
    and bbox, both computed from the pixels (``bbox`` = [x, y, width, height] of the
    segment's pixels, as panopticapi's converters compute it). A listed segment without
    pixels is left out with a warning (panopticapi refuses a JSON segment missing from
    the PNG). In ``finish``: the categories (:class:`segconvert.codecs.writing.CategoryTable`:
    the reader's table with its ids, then new ids by label in source order) and the JSON.
    """

    options = (
        click.Option(
            ["--image-ext"], default=".jpg", show_default=True,
            help="Extension of the images' file_name in 'images' (COCO's are .jpg); reference_id = its stem.",
        ),
    )

    def __init__(self, output: str | Path, plan: ModePlan, image_ext: str = ".jpg") -> None:
        super().__init__(output, plan)
        if not image_ext.startswith(".") or len(image_ext) < 2 or "/" in image_ext:
            raise SourceError(f"{opt('image-ext')} must look like .jpg, not {image_ext!r}")
        self.image_ext = image_ext

    def prepare(self) -> None:
        self.store.makedirs("panoptic")

    def write(self, seg: Segmentation) -> Written:
        ref = output_stem(seg.reference_id, source=seg.source)
        pixels = segment_pixels(seg)
        warn_empty(seg, pixels)
        present = pixels.present()
        segments = [seg.segments[pos] for pos in present]
        ids = png_ids(segments)
        data, boxes = pixels.id_png_and_boxes(present, ids)
        stamp = self.store.put(f"panoptic/{ref}.png", data)
        counts = pixels.counts
        rows = []
        for pos, sid, s in zip(present, ids, segments):
            x0, y0, x1, y1 = boxes[pos + 1]
            rows.append([sid, s.label, s.category_id, bool(s.isthing), int(bool(s.iscrowd)), counts[pos + 1],
                         [x0, y0, x1 - x0 + 1, y1 - y0 + 1], s.metadata.get("supercategory")])
        record = orjson.dumps([ref, seg.width, seg.height, rows]).decode()
        return Written(record, (stamp,))

    def finish(self, records: Iterator[str]) -> None:
        def annotations(k: int, record: list[Any], table: CategoryTable) -> list[dict[str, Any]]:
            ref, _, _, rows = record
            infos = [{"id": sid, "category_id": table.id_of(label, cid), "iscrowd": crowd, "bbox": bbox, "area": area}
                     for sid, label, cid, _, crowd, area, bbox, _ in rows]
            return [{"image_id": k, "file_name": f"{ref}.png", "segments_info": infos}]

        write_coco_json(self.store, "panoptic.json", records, self.plan.categories, self.image_ext,
                        lambda row: (row[1], row[2], row[3], row[7]), annotations)


FORMAT = Format(
    name="coco-panoptic",
    description="COCO panoptic JSON + RGB id PNGs (id = R + 256*G + 256^2*B)",
    reader=CocoPanopticReader,
    writer=CocoPanopticWriter,
    sniff=sniff,
)
