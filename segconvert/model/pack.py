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

from segconvert.codecs.lut import MAX_CODE, count_codes_uint8, to_codes
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
    if "instances" in source:  # classes (semantic) have no crowd flag
        meta: dict[str, Any] = {"category_id": s.category_id, "isthing": bool(s.isthing)}
    else:
        meta = {"category_id": s.category_id, "isthing": bool(s.isthing), "iscrowd": bool(s.iscrowd)}
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
    ``raw_of_code`` code -> raw id."""

    codes: dict[int, int]
    owner: list[int]
    raw_of_code: list[int]


def code_table(seg: Segmentation, *, check_indices: bool = False) -> CodeTable:
    """The :class:`CodeTable` of ``seg``; ItemError for a raw id listed twice (or 0), and with
    ``check_indices`` (segment ids are the mask values) for an id outside 1..255.

    ``pack`` and ``segconvert.checks.stats`` both count pixels through this table, so that the two
    agree on what a segment is and fail an image with the same message.
    """
    where = {"item": seg.reference_id, "file": seg.source}
    codes: dict[int, int] = {0: 0}
    for raw in seg.dropped_ids:
        codes[raw] = 0
    owner: list[int] = [-1]  # code -> position in `segments`
    raw_of_code: list[int] = [0]
    for pos, s in enumerate(seg.segments):
        if check_indices and not 1 <= s.id <= MAX_INDEX:
            raise ItemError(f"segment {s.label!r} has index {s.id}, outside 1..{MAX_INDEX}", **where)
        for raw in s.pixels:
            if raw == 0 or (raw in codes and raw not in seg.dropped_ids):
                raise ItemError(f"segment id {raw} is listed twice (or is 0, which means void)", **where)
            codes[raw] = len(owner)
            owner.append(pos)
            raw_of_code.append(raw)
    return CodeTable(codes, owner, raw_of_code)


def count_codes(seg: Segmentation, codes: dict[int, int]) -> tuple[np.ndarray | None, np.ndarray]:
    """(code map, pixels per code) of ``seg``'s label map; the code map is None for a uint8
    label map, whose counts come from its values' histogram (one LUT pass makes the mask)."""
    where = {"item": seg.reference_id, "file": seg.source}
    if seg.label_map.ndim == 2 and seg.label_map.dtype == np.uint8:
        return None, count_codes_uint8(seg.label_map, codes, seg.pixel_counts, **where)
    return to_codes(seg.label_map, codes, **where)


def pack(seg: Segmentation, *, renumber: bool, background_label: str = "background") -> PackedMask:
    """``renumber``: number segments 1..n in table order (panoptic/instance); else use ids."""
    where = {"item": seg.reference_id, "file": seg.source}
    segments = seg.segments
    table = code_table(seg, check_indices=not renumber)
    codes, owner, raw_of_code = table.codes, table.owner, table.raw_of_code
    if len(owner) - 1 > MAX_CODE:
        raise ItemError(f"{len(owner) - 1} segment ids in one image is more than segconvert handles", **where)
    code_map, counts = count_codes(seg, codes)

    warnings = seg.warnings  # the IR carries its warnings to the pipeline's summary
    areas = [0] * len(segments)
    count_list = counts.tolist()  # Python ints: the loops below run once per segment
    for code in range(1, len(owner)):
        n = count_list[code]
        if n == 0:
            s = segments[owner[code]]
            warnings.append(f"segment id {raw_of_code[code]} ({s.label}) has no pixels in the mask")
        areas[owner[code]] += n

    kept = [pos for pos in range(len(segments)) if areas[pos] > 0]
    if renumber and len(kept) > MAX_INDEX:
        raise ItemError(
            f"{len(kept)} segments do not fit one uint8 Nucleus mask (at most {MAX_INDEX} besides "
            f"background 0); nothing was written for this image",
            **where,
        )
    index_of_pos: dict[int, int] = {}
    for rank, pos in enumerate(kept, start=1):
        index_of_pos[pos] = rank if renumber else segments[pos].id
    # one raw id per segment and every segment present: codes 1..n already are the indices
    codes_are_indices = renumber and len(kept) == len(segments) == len(owner) - 1
    if code_map is not None and code_map.dtype == np.uint8 and codes_are_indices:
        mask = code_map  # the common panoptic case: no LUT pass at all
    else:
        lut = np.array([0, *(index_of_pos.get(owner[code], 0) for code in range(1, len(owner)))], np.uint8)
        if code_map is None:
            final = np.zeros(256, np.uint8)
            for raw, code in codes.items():
                final[raw] = lut[code]
            identity = all(int(final[raw]) == raw for raw in codes if 0 <= raw < 256)  # other values are absent
            mask = seg.label_map if identity else cv2().LUT(seg.label_map, final)
        elif code_map.dtype == np.uint8:
            identity = bool((lut == np.arange(len(owner), dtype=np.uint8)).all())
            mask = code_map if identity else cv2().LUT(code_map, np.pad(lut, (0, 256 - len(owner))))
        else:
            mask = lut[code_map]

    payloads: list[dict[str, Any]] = [{"label": background_label, "index": 0}]
    for pos in kept:
        s = segments[pos]
        payloads.append(
            {"label": s.label, "index": index_of_pos[pos], "metadata": _segment_metadata(s, areas[pos], renumber)}
        )
    return PackedMask(seg.reference_id, np.ascontiguousarray(mask), payloads, warnings)
