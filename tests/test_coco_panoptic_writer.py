"""coco-panoptic writer: the output obeys the COCO panoptic API's conventions, checked independently."""

from __future__ import annotations

import json

import numpy as np
from conftest import rgb2id
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from roundtrip import CATEGORIES, scenes, write_scenes

from segconvert.codecs import lut
from segconvert.model.ir import Segmentation, SegmentInfo

PROPERTY = settings(max_examples=30, deadline=None,
                    suppress_health_check=[*settings.default.suppress_health_check,
                                           HealthCheck.function_scoped_fixture])


def get_bounding_box(mask: np.ndarray) -> tuple[int, list[int]]:
    """panopticapi's area and bbox of a segment (converters' get_bounding_box), written out."""
    area = int(np.sum(mask))
    hor_idx = np.nonzero(np.sum(mask, axis=0))[0]
    vert_idx = np.nonzero(np.sum(mask, axis=1))[0]
    x, y = int(hor_idx[0]), int(vert_idx[0])
    return area, [x, y, int(hor_idx[-1] - x + 1), int(vert_idx[-1] - y + 1)]


@PROPERTY
@given(seg=scenes(), mode=st.sampled_from(["panoptic", "instance", "semantic"]))
def test_output_follows_panopticapi_conventions(tmp_path_factory, seg, mode):
    out = tmp_path_factory.mktemp("pw")
    assert write_scenes([seg], "coco-panoptic", out, mode=mode).ok
    doc = json.loads((out / "panoptic.json").read_text())
    (image,), (ann,) = doc["images"], doc["annotations"]
    assert image == {"id": 1, "file_name": "scene.jpg", "width": seg.width, "height": seg.height}
    assert ann["image_id"] == 1 and ann["file_name"] == "scene.png"
    img = Image.open(out / "panoptic" / ann["file_name"])
    assert img.mode == "RGB" and img.size == (seg.width, seg.height)
    pan = rgb2id(np.asarray(img))
    infos = ann["segments_info"]
    # pq_compute's checks: every PNG id is in the JSON and every JSON segment is in the PNG
    assert set(np.unique(pan).tolist()) - {0} == {i["id"] for i in infos}
    categories = {c["id"]: c for c in doc["categories"]}
    assert [c["id"] for c in doc["categories"]] == [c.id for c in CATEGORIES]
    for info in infos:
        assert (info["area"], info["bbox"]) == get_bounding_box(pan == info["id"])
        assert info["category_id"] in categories
    # the pixels of each class are where the IR put them
    ids = seg.ids()
    for c in CATEGORIES:
        raws = [s.id for s in seg.segments if s.category_id == c.id and (mode != "instance" or s.isthing)]
        want = np.isin(ids, raws)
        got = np.isin(pan, [i["id"] for i in infos if i["category_id"] == c.id])
        assert np.array_equal(got, want)


def test_labels_without_category_ids_get_ids_after_the_table(tmp_path):
    lm = np.array([[1, 2, 3, 0]], np.uint8)
    segs = [SegmentInfo(1, "zebra", None), SegmentInfo(2, "car", None), SegmentInfo(3, "alpaca", None, False)]
    assert write_scenes([Segmentation("a", lm, segs)], "coco-panoptic", tmp_path).ok
    doc = json.loads((tmp_path / "panoptic.json").read_text())
    assert [(c["id"], c["name"], c["isthing"]) for c in doc["categories"][len(CATEGORIES):]] == [
        (10, "zebra", 1), (11, "alpaca", 0)]
    assert [i["category_id"] for i in doc["annotations"][0]["segments_info"]] == [10, 3, 11]


def test_segment_without_pixels_is_left_out_with_a_warning(tmp_path):
    lm = np.array([[1, 1]], np.uint8)
    summary = write_scenes([Segmentation("a", lm, [SegmentInfo(1, "car", 3), SegmentInfo(2, "sky", 7, False)])],
                           "coco-panoptic", tmp_path)
    assert summary.ok and "segment id 2 (sky) has no pixels" in summary.warnings[0]
    doc = json.loads((tmp_path / "panoptic.json").read_text())
    assert [i["id"] for i in doc["annotations"][0]["segments_info"]] == [1]


@settings(max_examples=60, deadline=None)
@given(codes=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=40),
                        elements=st.integers(0, 6)))
def test_code_boxes_match_numpy(codes):
    boxes = lut.code_boxes(codes, 8)
    h, w = codes.shape
    for k in range(8):
        where = np.argwhere(codes == k)
        want = [w, h, -1, -1] if not len(where) else [where[:, 1].min(), where[:, 0].min(), where[:, 1].max(),
                                                      where[:, 0].max()]
        assert boxes[k].tolist() == [int(v) for v in want]


def test_png_id_rule():
    from segconvert.converters.coco_panoptic import png_ids

    kept = [SegmentInfo(1, "a", metadata={"segment_id": 500}), SegmentInfo(2, "b", metadata={"segment_id": 7})]
    assert png_ids(kept) == [500, 7]  # the source's ids, kept by the Nucleus writer
    clash = [SegmentInfo(1, "a", metadata={"segment_id": 5}), SegmentInfo(2, "b", metadata={"segment_id": 5})]
    assert png_ids(clash) == [1, 2]  # not distinct: the IR ids
    wide = [SegmentInfo(1 << 24, "a"), SegmentInfo(3, "b")]
    assert png_ids(wide) == [1, 2]  # an id beyond 24 bits: 1..n
