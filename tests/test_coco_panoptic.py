"""coco-panoptic -> nucleus: every mode checked against an independent decode of the PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CATEGORIES, read_mask, read_payloads, rgb2id, write_panoptic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import segconvert

CAT_INDEX = {c["id"]: k for k, c in enumerate(CATEGORIES, start=1)}  # stable semantic index


def expected_panoptic(ids: np.ndarray, infos: list[dict], mode: str) -> tuple[np.ndarray, list[int]]:
    """Index mask and the source ids in index order, computed the slow obvious way."""
    mask = np.zeros(ids.shape, np.uint8)
    order = []
    for info in infos:
        isthing = next(c["isthing"] for c in CATEGORIES if c["id"] == info["category_id"])
        if mode == "instance" and not isthing:
            continue
        if not (ids == info["id"]).any():
            continue
        order.append(info["id"])
        mask[ids == info["id"]] = len(order)
    return mask, order


@st.composite
def scenes(draw):
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    n = draw(st.integers(0, 12))
    seg_ids = draw(st.lists(st.integers(1, (1 << 24) - 1), min_size=n, max_size=n, unique=True))
    cats = draw(st.lists(st.sampled_from([c["id"] for c in CATEGORIES]), min_size=n, max_size=n))
    values = [0, *seg_ids]
    pick = draw(st.lists(st.integers(0, len(values) - 1), min_size=h * w, max_size=h * w))
    ids = np.array([values[p] for p in pick], dtype=np.int64).reshape(h, w)
    infos = [{"id": s, "category_id": c, "iscrowd": 0} for s, c in zip(seg_ids, cats)]
    return ids, infos


@settings(max_examples=40, deadline=None,
          suppress_health_check=[*settings.default.suppress_health_check, HealthCheck.function_scoped_fixture])
@given(scene=scenes(), mode=st.sampled_from(["panoptic", "instance", "semantic"]))
def test_every_mode_matches_independent_decode(tmp_path_factory, scene, mode):
    ids, infos = scene
    root = tmp_path_factory.mktemp("pan")
    src = write_panoptic(root, [("img", ids, infos)])
    summary = segconvert.convert(src, root / "out", from_format="coco-panoptic", mode=mode, jobs=1)
    assert summary.ok and summary.converted == 1
    mask = read_mask(root / "out" / "masks" / "img.png")
    decoded = rgb2id(np.asarray(Image.open(root / "panoptic" / "img.png").convert("RGB")))
    assert (decoded == ids).all()  # the fixture itself round-trips
    (payload,) = read_payloads(root / "out")
    segments = payload["annotations"]
    assert segments[0] == {"label": "background", "index": 0}
    if mode == "semantic":
        want = np.zeros(ids.shape, np.uint8)
        for info in infos:
            want[ids == info["id"]] = CAT_INDEX[info["category_id"]]
        assert (mask == want).all()
        listed = {s["index"] for s in segments[1:]}
        assert listed == set(np.unique(want)) - {0}
        for s in segments[1:]:
            cat = CATEGORIES[s["index"] - 1]
            assert s["label"] == cat["name"] and s["metadata"]["category_id"] == cat["id"]
            assert s["metadata"]["area"] == int((want == s["index"]).sum())
    else:
        want, order = expected_panoptic(ids, infos, mode)
        assert (mask == want).all()
        assert [s["metadata"]["segment_id"] for s in segments[1:]] == order
        assert [s["index"] for s in segments[1:]] == list(range(1, len(order) + 1))
        for s in segments[1:]:
            assert s["metadata"]["area"] == int((ids == s["metadata"]["segment_id"]).sum())


def test_real_coco_samples_all_modes(shared_dir, tmp_path):
    src = shared_dir / "data" / "coco-panoptic-sample" / "panoptic.json"
    doc = json.loads(src.read_text())
    cats = {c["id"]: c for c in doc["categories"]}
    stable = {c["id"]: k for k, c in enumerate(doc["categories"], start=1)}
    for mode in ("panoptic", "instance", "semantic"):
        out = tmp_path / mode
        summary = segconvert.convert(src, out, from_format="coco-panoptic", mode=mode, jobs=1)
        assert summary.ok and summary.converted == 2 and not summary.warnings
        for ann, payload in zip(doc["annotations"], read_payloads(out)):
            ids = rgb2id(np.asarray(Image.open(src.with_suffix("") / ann["file_name"])))
            mask = read_mask(out / "masks" / (Path(ann["file_name"]).stem + ".png"))
            want = np.zeros(ids.shape, np.uint8)
            k = 0
            for info in ann["segments_info"]:
                cat = cats[info["category_id"]]
                if mode == "semantic":
                    want[ids == info["id"]] = stable[cat["id"]]
                elif mode == "panoptic" or cat["isthing"]:
                    k += 1
                    want[ids == info["id"]] = k
                    seg = payload["annotations"][k]
                    assert seg["metadata"]["area"] == info["area"]  # COCO's own area agrees
                    assert seg["metadata"]["bbox"] == info["bbox"]
                    assert seg["label"] == cat["name"]
            assert (mask == want).all()


def test_payloads_are_what_the_nucleus_client_accepts(shared_dir, tmp_path):
    from nucleus import SegmentationAnnotation

    src = shared_dir / "data" / "coco-panoptic-sample" / "panoptic.json"
    segconvert.convert(src, tmp_path / "local", from_format="coco-panoptic", jobs=1)
    segconvert.convert(src, tmp_path / "s3", from_format="coco-panoptic", jobs=1,
                       mask_url_prefix="s3://bucket/masks/", background_label="void")
    for line in (tmp_path / "local" / "annotations.jsonl").read_text().splitlines():
        ann = SegmentationAnnotation.from_json(json.loads(line))
        # what the client would send, key for key and in its order (compact separators)
        assert json.loads(line) == json.loads(json.dumps(ann.to_payload()))
        assert list(json.loads(line)) == list(ann.to_payload())
        assert ann.has_local_files_to_upload()  # local path: the client uploads the mask itself
        assert Path(ann.mask_url).is_absolute() and Path(ann.mask_url).is_file()
    for line in (tmp_path / "s3" / "annotations.jsonl").read_text().splitlines():
        ann = SegmentationAnnotation.from_json(json.loads(line))
        assert ann.mask_url == f"s3://bucket/masks/{ann.reference_id}.png"
        assert not ann.has_local_files_to_upload()
        assert ann.annotations[0].label == "void" and ann.annotations[0].index == 0


def test_bundled_example_converts(tmp_path):
    from conftest import FIXTURES

    src = FIXTURES / "coco-panoptic" / "panoptic.json"
    summary = segconvert.convert(src, tmp_path, from_format="coco-panoptic", jobs=1)
    assert summary.ok and summary.converted == len(json.loads(src.read_text())["annotations"])


def test_masks_dir_option_and_default(tmp_path):
    ids = np.array([[0, 5], [5, 6]])
    infos = [{"id": 5, "category_id": 1}, {"id": 6, "category_id": 7}]
    src = write_panoptic(tmp_path, [("a", ids, infos)])
    moved = tmp_path / "elsewhere"
    (tmp_path / "panoptic").rename(moved)
    with pytest.raises(segconvert.SourceError, match="no such folder .the PNGs. folder beside the JSON"):
        segconvert.convert(src, tmp_path / "o1", from_format="coco-panoptic", jobs=1)
    summary = segconvert.convert(src, tmp_path / "o2", from_format="coco-panoptic", jobs=1, masks_dir=moved)
    assert summary.ok


@pytest.mark.parametrize("index", ["compact", "category-id"])
def test_semantic_index_policies(tmp_path, index):
    ids = np.array([[0, 5, 5], [6, 6, 8]])
    infos = [{"id": 5, "category_id": 9}, {"id": 6, "category_id": 3}, {"id": 8, "category_id": 3}]
    src = write_panoptic(tmp_path, [("a", ids, infos)])
    summary = segconvert.convert(src, tmp_path / "o", from_format="coco-panoptic", mode="semantic",
                                 index=index, jobs=1)
    assert summary.ok
    mask = read_mask(tmp_path / "o" / "masks" / "a.png")
    (payload,) = read_payloads(tmp_path / "o")
    if index == "compact":  # classes present, in category-table order: car (3) then road (9)
        assert mask.tolist() == [[0, 2, 2], [1, 1, 1]]
        assert [(s["label"], s["index"]) for s in payload["annotations"]] == [
            ("background", 0), ("car", 1), ("road", 2)]
        assert payload["annotations"][1]["metadata"]["instances"] == 2
    else:
        assert mask.tolist() == [[0, 9, 9], [3, 3, 3]]
        assert [(s["label"], s["index"]) for s in payload["annotations"]] == [
            ("background", 0), ("car", 3), ("road", 9)]


@pytest.mark.parametrize(("bad_id", "ok"), [(3.0, True), (3.5, False), ("3", False), (True, False), (None, False)])
def test_segment_ids_must_be_integers_not_silently_rounded(tmp_path, bad_id, ok):
    ids = np.array([[0, 3], [3, 3]])
    src = write_panoptic(tmp_path, [("img", ids, [{"id": 3, "category_id": CATEGORIES[0]["id"]}])])
    doc = json.loads(src.read_text())
    doc["annotations"][0]["segments_info"][0]["id"] = bad_id
    src.write_text(json.dumps(doc))
    summary = segconvert.convert(src, tmp_path / "out", from_format="coco-panoptic", jobs=1)
    if ok:
        assert summary.converted == 1
    else:
        assert summary.failed == 1
        assert "segments_info[0] needs integer 'id' and 'category_id'" in summary.failures[0]


@pytest.mark.parametrize(
    ("segments_info", "message"),
    [({"id": 3}, "'segments_info' is not a list"), ([{"id": 3, "category_id": 999}], "category_id 999")],
)
def test_bad_segments_info_names_the_json(tmp_path, segments_info, message):
    ids = np.array([[0, 3], [3, 3]])
    src = write_panoptic(tmp_path, [("img", ids, [{"id": 3, "category_id": CATEGORIES[0]["id"]}])])
    doc = json.loads(src.read_text())
    doc["annotations"][0]["segments_info"] = segments_info
    src.write_text(json.dumps(doc))
    for jobs in (1, 2):
        summary = segconvert.convert(src, tmp_path / f"out{jobs}", from_format="coco-panoptic", jobs=jobs)
        assert summary.failed == 1
        assert message in summary.failures[0] and str(src) in summary.failures[0] and "[img]" in summary.failures[0]


@pytest.mark.parametrize("category_id", [[1], {"a": 1}, "1", 1.5])
def test_odd_category_ids_fail_the_item_with_jobs_1_and_2(tmp_path, category_id):
    ids = np.array([[0, 3], [3, 3]])
    src = write_panoptic(tmp_path, [("img", ids, [{"id": 3, "category_id": CATEGORIES[0]["id"]}])])
    doc = json.loads(src.read_text())
    doc["annotations"][0]["segments_info"][0]["category_id"] = category_id
    src.write_text(json.dumps(doc))
    for jobs in (1, 2):
        summary = segconvert.convert(src, tmp_path / f"out{jobs}", from_format="coco-panoptic", jobs=jobs)
        assert summary.failed == 1
        assert "needs integer 'id' and 'category_id'" in summary.failures[0]
