"""Packing: the one-loop path for counted uint8 label maps must pack exactly as the general path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segconvert.errors import ItemError
from segconvert.model import pack as pack_module
from segconvert.model.ir import Segmentation, SegmentInfo
from segconvert.model.pack import pack


@st.composite
def counted_segmentations(draw):
    """uint8 label maps with the reader's histogram and a segment table that is mostly the common
    case (one raw id per segment, all present) and sometimes not: ids without pixels, ids listed
    twice or dropped, pixels without a segment, several ids per segment, ids outside 1..255,
    metadata with the keys packing treats specially, a histogram that disagrees with the map."""
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    values = draw(st.lists(st.integers(0, 255), min_size=1, max_size=8, unique=True))
    label_map = np.array(draw(st.lists(st.sampled_from(values), min_size=h * w, max_size=h * w)),
                         np.uint8).reshape(h, w)
    pool = values + draw(st.lists(st.integers(-1, 300), max_size=3))
    clean = draw(st.booleans())  # the common case: each non-zero value once, maybe one odd thing
    present = sorted(set(label_map.ravel().tolist()) - {0})
    raws = present if clean else draw(st.lists(st.sampled_from(pool), max_size=8))
    if clean and raws and draw(st.integers(0, 3)) == 0:
        raws[draw(st.integers(0, len(raws) - 1))] = draw(st.sampled_from(pool))
    segments = []
    for raw in raws:
        if draw(st.integers(0, 9)) == 0 and not clean:
            pixel_ids = tuple(draw(st.lists(st.sampled_from(pool), min_size=0, max_size=3)))
        elif draw(st.booleans()):
            pixel_ids = (raw,)
        else:
            pixel_ids = None
        metadata = draw(st.dictionaries(st.sampled_from(["voc_object", "area", "segment_id", "instances",
                                                          "category_id", "supercategory"]),
                                        st.integers(0, 9), max_size=2))
        segments.append(SegmentInfo(
            id=raw if pixel_ids is None or clean or draw(st.booleans()) else draw(st.integers(1, 300)),
            label=draw(st.sampled_from(["a", "b", "ignore"])),
            category_id=draw(st.one_of(st.none(), st.integers(1, 9))),
            isthing=draw(st.sampled_from([True, False, 1, 0])),
            iscrowd=draw(st.booleans()),
            metadata=metadata,
            pixel_ids=pixel_ids,
        ))
    others = [0, 255, *(v for v in pool if v not in raws)]
    dropped = frozenset(draw(st.lists(st.sampled_from(others if clean else pool), max_size=2)))
    counts = np.bincount(label_map.ravel(), minlength=256).astype(np.int64)
    if draw(st.integers(0, 19)) == 0:
        counts[draw(st.integers(0, 255))] += 1  # a reader's histogram that disagrees with the map
    return Segmentation("img", label_map, segments, source="img.png", dropped_ids=dropped,
                        warnings=[], pixel_counts=counts)


def _outcome(seg: Segmentation, renumber: bool):
    try:
        packed = pack(seg, renumber=renumber)
    except ItemError as exc:
        return "error", str(exc)
    return packed.mask.tolist(), packed.mask.dtype, packed.segments, list(packed.warnings)


def _copy(seg: Segmentation) -> Segmentation:
    return Segmentation(seg.reference_id, seg.label_map.copy(), [SegmentInfo(*s.__reduce__()[1]) for s in seg.segments],
                        source=seg.source, dropped_ids=seg.dropped_ids, warnings=[],
                        pixel_counts=seg.pixel_counts)


@settings(max_examples=400, deadline=None)
@given(counted_segmentations(), st.booleans())
def test_one_loop_path_packs_as_the_general_path(seg, renumber):
    fast = _outcome(_copy(seg), renumber)
    saved = pack_module._pack_counted_uint8
    pack_module._pack_counted_uint8 = lambda *args: None
    try:
        general = _outcome(_copy(seg), renumber)
    finally:
        pack_module._pack_counted_uint8 = saved
    assert fast == general


def test_the_one_loop_path_takes_the_common_case():
    """A VOC-like image (objects 1..2, a stuff value, void dropped) is packed by the one-loop path,
    and its dropped void pixels become 0 through one LUT pass."""
    label_map = np.array([[1, 1, 2], [3, 255, 0]], np.uint8)
    segments = [SegmentInfo(1, "cat", 8, True, False, {"voc_object": 1}),
                SegmentInfo(2, "dog", 12, True, False, {"voc_object": 2}),
                SegmentInfo(3, "sky", 40, False)]
    seg = Segmentation("img", label_map, segments, dropped_ids=frozenset({255}),
                       pixel_counts=np.bincount(label_map.ravel(), minlength=256).astype(np.int64))
    packed = pack_module._pack_counted_uint8(seg, True, "background")
    assert packed is not None
    assert packed.mask.tolist() == [[1, 1, 2], [3, 0, 0]]
    assert packed.segments[1] == {"label": "cat", "index": 1, "metadata": {
        "category_id": 8, "isthing": True, "iscrowd": False, "voc_object": 1, "segment_id": 1, "area": 2}}
    assert packed.segments[3]["metadata"] == {"category_id": 40, "isthing": False, "iscrowd": False,
                                              "segment_id": 3, "area": 1}


@pytest.mark.parametrize("label_map", [[[1, 7]], [[1, 0]]])
def test_uncovered_or_empty_goes_the_general_way(label_map):
    """A pixel value without a segment fails the image with the values named; a segment without
    pixels is a warning: both are the general path's (the one-loop path declines them)."""
    lm = np.array(label_map, np.uint8)
    seg = Segmentation("img", lm, [SegmentInfo(1, "cat"), SegmentInfo(2, "dog")],
                       pixel_counts=np.bincount(lm.ravel(), minlength=256).astype(np.int64))
    assert pack_module._pack_counted_uint8(seg, True, "background") is None
    if 7 in lm:
        with pytest.raises(ItemError, match="7 \\(1 px\\)"):
            pack(seg, renumber=True)
    else:
        assert pack(seg, renumber=True).warnings == ["segment id 2 (dog) has no pixels in the mask"]
