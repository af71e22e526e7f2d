"""coco-instances writer: IR -> COCO instances -> IR, RLE and polygons checked with pycocotools."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from roundtrip import canonical, read_back, scenes, write_scenes

from segconvert.model.ir import Segmentation, SegmentInfo

PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[*settings.default.suppress_health_check,
                                           HealthCheck.function_scoped_fixture])
FIELDS = ("label", "category_id", "iscrowd")  # COCO instances has no isthing per annotation


@PROPERTY
@given(seg=scenes(), segmentation=st.sampled_from(["rle", "polygon"]))
def test_round_trip_and_pycocotools_fields(tmp_path_factory, seg, segmentation):
    out = tmp_path_factory.mktemp("ci")
    assert write_scenes([seg], "coco-instances", out, segmentation=segmentation).ok
    (back,) = read_back(out / "instances.json", "coco-instances").values()
    assert canonical(back, FIELDS)[0] == canonical(seg, FIELDS)[0]
    assert np.array_equal(canonical(back, FIELDS)[1], canonical(seg, FIELDS)[1])
    doc = json.loads((out / "instances.json").read_text())
    ids = seg.ids()
    present = [s for s in seg.segments if (ids == s.id).any()]
    assert len(doc["annotations"]) == len(present)
    for ann, s in zip(doc["annotations"], present):
        mask = np.asfortranarray((ids == s.id).astype(np.uint8))
        rle = mask_utils.encode(mask)
        assert ann["area"] == int(mask_utils.area(rle)) and ann["bbox"] == mask_utils.toBbox(rle).tolist()
        assert ann["iscrowd"] == int(s.iscrowd) and ann["category_id"] == s.category_id
        geometry = ann["segmentation"]
        if isinstance(geometry, dict):
            assert geometry["counts"] == rle["counts"].decode()
        else:  # a polygon is only written when pycocotools draws exactly the segment's pixels
            assert segmentation == "polygon" and not s.iscrowd
            h, w = mask.shape
            drawn = mask_utils.decode([mask_utils.merge(mask_utils.frPyObjects(geometry, h, w))])[:, :, 0]
            assert np.array_equal(drawn, mask)


def test_polygons_where_exact_rle_for_holes_and_counted(tmp_path):
    lm = np.zeros((12, 12), np.uint8)
    lm[1:5, 1:6] = 1  # a rectangle: exact polygon
    lm[6:11, 6:11] = 2
    lm[8, 8] = 0  # a ring: its outline would fill the hole
    segs = [SegmentInfo(1, "car", 3), SegmentInfo(2, "person", 1)]
    summary = write_scenes([Segmentation("a", lm, segs)], "coco-instances", tmp_path, segmentation="polygon")
    assert summary.ok
    (warning,) = summary.warnings
    assert "1 of 2 segments written as RLE" in warning and warning.endswith("segment ids 2")
    anns = json.loads((tmp_path / "instances.json").read_text())["annotations"]
    assert anns[0]["segmentation"] == [[1.0, 1.0, 1.0, 5.0, 6.0, 5.0, 6.0, 1.0]]
    assert isinstance(anns[1]["segmentation"], dict)
