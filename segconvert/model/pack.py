"""Pack a (mode-transformed) segmentation into a uint8 index mask and its Segment list.

This is where Nucleus' limits bite, so it is where they are enforced: at most 255
segments besides background 0 (an image with more fails with its count, it is never
truncated or wrapped), every pixel id must belong to a segment, and a segment with no
pixels is reported rather than listed.

Raw ids first become one code per raw id (so absent ids can be found in all modes,
even when semantic merges them into classes), then codes become final indices with a
256-entry LUT — a no-op in the common panoptic case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segconvert.codecs.lut import MAX_CODE, count_codes_uint8, lookup_u8, to_codes
from segconvert.codecs.opencv import cv2
from segconvert.errors import ItemError
from segconvert.model.ir import Segmentation, SegmentInfo
from segconvert.model.modes import MAX_INDEX


@dataclass
class PackedMask:
    reference_id: str
    mask: np.ndarray  # (H, W) uint8
    segments: list[dict[str, Any]]  # Nucleus Segment payloads, background first
    warnings: list[str] = field(default_factory=list)


def _segment_metadata(s: SegmentInfo, area: int, renumbered: bool) -> dict[str, Any]:
    # runs once per segment of every image: one dict literal, then only what differs
    source = s.metadata
    # True if x else False is bool(x) without a type call (~1k instructions each under CPython 3.11)
    if "instances" in source:  # classes (semantic) have no crowd flag
        meta: dict[str, Any] = {"category_id": s.category_id, "isthing": True if s.isthing else False}
    else:
        meta = {"category_id": s.category_id, "isthing": True if s.isthing else False,
                "iscrowd": True if s.iscrowd else False}
    if s.category_id is None:
        del meta["category_id"]
    if source:
        meta.update(source)
    if renumbered and "segment_id" not in meta:  # the index is new: keep the id the source knows it by
        meta["segment_id"] = s.id
    source_area = meta.pop("area", None)
    meta["area"] = area  # pixels of this index in the mask (visible area, after overlaps)
    if source_area is not None and source_area != area:
        meta["source_area"] = source_area  # e.g. COCO's polygon area, occluded parts included
    return meta


@dataclass
class CodeTable:
    """One code per raw id of a segmentation: ``codes`` raw id -> code (0 for void and the
    dropped ids), ``owner`` code -> position in ``seg.segments`` (-1 for code 0),
    ``raw_of_code`` code -> raw id. ``one_each``: every segment has exactly one raw id, so
    segment ``pos`` has code ``pos + 1`` (nearly every image; packing skips its general loops)."""

    codes: dict[int, int]
    owner: list[int]
    raw_of_code: list[int]
    one_each: bool = False


def code_table(seg: Segmentation, *, check_indices: bool = False) -> CodeTable:
    """The :class:`CodeTable` of ``seg``; ItemError for a raw id listed twice (or 0), and with
    ``check_indices`` (segment ids are the mask values) for an id outside 1..255.

    ``pack`` and ``segconvert.checks.stats`` both count pixels through this table, so that the two
    agree on what a segment is and fail an image with the same message.
    """
    codes: dict[int, int] = {0: 0}
    dropped = seg.dropped_ids
    for raw in dropped:
        codes[raw] = 0
    owner: list[int] = [-1]  # code -> position in `segments`
    raw_of_code: list[int] = [0]
    one_each = True
    for pos, s in enumerate(seg.segments):
        if check_indices and not 1 <= s.id <= MAX_INDEX:
            raise ItemError(f"segment {s.label!r} has index {s.id}, outside 1..{MAX_INDEX}",
                            item=seg.reference_id, file=seg.source)
        pixels = s.pixel_ids
        if pixels is None:
            pixels = (s.id,)
        elif len(pixels) != 1:
            one_each = False
        for raw in pixels:
            if raw == 0 or (raw in codes and raw not in dropped):
                raise ItemError(f"segment id {raw} is listed twice (or is 0, which means void)",
                                item=seg.reference_id, file=seg.source)
            codes[raw] = len(owner)
            owner.append(pos)
            raw_of_code.append(raw)
    return CodeTable(codes, owner, raw_of_code, one_each)


def count_codes(seg: Segmentation, codes: dict[int, int]) -> tuple[np.ndarray | None, np.ndarray]:
    """(code map, pixels per code) of ``seg``'s label map; the code map is None for a uint8
    label map, whose counts come from its values' histogram (one LUT pass makes the mask)."""
    where = {"item": seg.reference_id, "file": seg.source}
    if seg.label_map.ndim == 2 and seg.label_map.dtype == np.uint8:
        return None, count_codes_uint8(seg.label_map, codes, seg.pixel_counts, **where)
    return to_codes(seg.label_map, codes, **where)


def _pack_counted_uint8(seg: Segmentation, renumber: bool, background_label: str) -> PackedMask | None:
    """:func:`pack` for the common case, in one loop over the segments: a uint8 label map whose
    histogram the reader gave (``pixel_counts``), one raw id per segment, every segment with
    pixels, no segment claiming a dropped id, every pixel covered. None when the image is not
    that case (or is wrong): the general path then packs it, or names what is wrong.

    The general path's code table, counts, areas, index and LUT loops each ran once per
    segment (~0.4 M instructions per image of 25 segments, most of packing); this is ~0.1 M."""
    raw_counts = seg.pixel_counts
    label_map = seg.label_map
    if raw_counts is None or label_map.dtype != np.uint8 or label_map.ndim != 2 or len(raw_counts) != 256:
        return None
    raw = raw_counts.tolist()
    dropped = seg.dropped_ids
    payloads: list[dict[str, Any]] = [{"label": background_label, "index": 0}]
    seen: set[int] = set()
    covered = raw[0]
    identity = True
    final = bytearray(256)  # raw value -> index, for the LUT pass when values are not the indices
    rank = 0
    for s in seg.segments:
        ids = s.pixel_ids
        if ids is None:
            value = s.id
        elif len(ids) == 1:
            value = ids[0]
        else:
            return None
        if not 0 < value < 256 or value in seen or value in dropped:
            return None
        area = raw[value]
        if area == 0:
            return None
        seen.add(value)
        covered += area
        if renumber:
            rank += 1
            index = rank
        else:
            index = s.id
            if not 1 <= index <= MAX_INDEX:
                return None
        if index != value:
            identity = False
        final[value] = index
        source = s.metadata
        if renumber and s.category_id is not None and "area" not in source and "segment_id" not in source \
                and "instances" not in source:  # the literal _segment_metadata builds in this case
            # (x if ... else ...: bool() is a type call, ~1k instructions under CPython 3.11; one
            # source key, as VOC's voc_object, spelled out: a dict display of known size)
            if len(source) == 1:
                for key in source:
                    meta = {"category_id": s.category_id, "isthing": True if s.isthing else False,
                            "iscrowd": True if s.iscrowd else False, key: source[key], "segment_id": s.id,
                            "area": area}
            else:
                meta = {"category_id": s.category_id, "isthing": True if s.isthing else False,
                        "iscrowd": True if s.iscrowd else False, **source, "segment_id": s.id, "area": area}
        elif not renumber and s.category_id is not None and "instances" in source and "area" not in source:
            # a class of semantic mode: the literal _segment_metadata builds in this case
            meta = {"category_id": s.category_id, "isthing": True if s.isthing else False, **source, "area": area}
        else:
            meta = _segment_metadata(s, area, renumber)
        payloads.append({"label": s.label, "index": index, "metadata": meta})
    if rank > MAX_INDEX:
        return None
    for value in dropped:
        if 0 < value < 256 and raw[value]:
            covered += raw[value]
            identity = False  # dropped pixels become 0
    if covered != label_map.size or covered != sum(raw):
        return None  # values without a segment: the general path names them
    mask = label_map if identity else lookup_u8(np.ascontiguousarray(label_map), np.frombuffer(final, np.uint8))
    return PackedMask(seg.reference_id, np.ascontiguousarray(mask), payloads, seg.warnings)


def pack(seg: Segmentation, *, renumber: bool, background_label: str = "background") -> PackedMask:
    """``renumber``: number segments 1..n in table order (panoptic/instance); else use ids.

    Runs once per image over a few dozen segments: plain loops over Python ints and lists (a
    numpy scalar costs more than a loop step), and the common case -- one raw id per segment,
    every segment present, renumbered -- skips the general bookkeeping."""
    fast = _pack_counted_uint8(seg, renumber, background_label)
    if fast is not None:
        return fast
    where = {"item": seg.reference_id, "file": seg.source}
    segments = seg.segments
    table = code_table(seg, check_indices=not renumber)
    codes, owner, raw_of_code = table.codes, table.owner, table.raw_of_code
    n_codes = len(owner)
    if n_codes - 1 > MAX_CODE:
        raise ItemError(f"{n_codes - 1} segment ids in one image is more than segconvert handles", **where)
    code_map, counts = count_codes(seg, codes)

    warnings = seg.warnings  # the IR carries its warnings to the pipeline's summary
    count_list = counts.tolist()  # Python ints: the loops below run once per segment
    if table.one_each:  # code = position + 1
        areas = count_list[1:n_codes]
    else:
        areas = [0] * len(segments)
        for code in range(1, n_codes):
            areas[owner[code]] += count_list[code]
    for code in range(1, n_codes):
        if count_list[code] == 0:
            s = segments[owner[code]]
            warnings.append(f"segment id {raw_of_code[code]} ({s.label}) has no pixels in the mask")

    all_kept = 0 not in areas
    kept = range(len(segments)) if all_kept else [pos for pos in range(len(segments)) if areas[pos] > 0]
    if renumber and len(kept) > MAX_INDEX:
        raise ItemError(
            f"{len(kept)} segments do not fit one uint8 Nucleus mask (at most {MAX_INDEX} besides "
            f"background 0); nothing was written for this image",
            **where,
        )
    if renumber:
        index_of_pos = [0] * len(segments)  # position -> index (0: not kept)
        for rank, pos in enumerate(kept, start=1):
            index_of_pos[pos] = rank
    else:
        index_of_pos = [s.id if areas[pos] > 0 else 0 for pos, s in enumerate(segments)]
    # one raw id per segment and every segment present: codes 1..n already are the indices
    codes_are_indices = renumber and table.one_each and all_kept
    if code_map is not None and code_map.dtype == np.uint8 and codes_are_indices:
        mask = code_map  # the common panoptic case: no LUT pass at all
    else:
        index_of_code = [0, *(index_of_pos[owner[code]] for code in range(1, n_codes))]
        if code_map is None:  # a uint8 label map: raw value -> index in one 256-entry LUT
            in_range = [(raw, index_of_code[code]) for raw, code in codes.items() if 0 <= raw < 256]
            if all(raw == index for raw, index in in_range):  # other values are absent
                mask = seg.label_map
            else:
                final = bytearray(256)
                for raw, index in in_range:
                    final[raw] = index
                mask = cv2().LUT(seg.label_map, np.frombuffer(final, np.uint8))
        else:
            lut = np.array(index_of_code, np.uint8)
            if code_map.dtype == np.uint8:
                identity = bool((lut == np.arange(n_codes, dtype=np.uint8)).all())
                mask = code_map if identity else cv2().LUT(code_map, np.pad(lut, (0, 256 - n_codes)))
            else:
                mask = lut[code_map]

    payloads: list[dict[str, Any]] = [{"label": background_label, "index": 0}]
    for pos in kept:
        s = segments[pos]
        payloads.append(
            {"label": s.label, "index": index_of_pos[pos], "metadata": _segment_metadata(s, areas[pos], renumber)}
        )
    return PackedMask(seg.reference_id, np.ascontiguousarray(mask), payloads, warnings)
