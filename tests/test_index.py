"""index writer: presets equal to the tools they are named after; IR -> index -> IR; 16-bit masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CATEGORIES, FIXTURES, rgb2id, write_panoptic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from roundtrip import canonical, read_back, scenes, semantic, write_scenes

import segconvert
from segconvert.errors import SourceError
from segconvert.model.ir import Category, Segmentation, SegmentInfo

PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[*settings.default.suppress_health_check,
                                           HealthCheck.function_scoped_fixture])


# --- the tools' algorithms, written out from their published source (neither installs from PyPI here)

def detectron2_semantic(pan: np.ndarray, segments: list[dict], categories: list[dict]) -> np.ndarray:
    """detectron2 datasets/prepare_panoptic_fpn.py: separate_coco_semantic_from_panoptic's id_map
    (stuff 1..K in category order, things 0) and _process_panoptic_to_semantic's loop (start 255)."""
    stuff = [c["id"] for c in categories if c["isthing"] == 0]
    id_map = {cid: k for k, cid in enumerate(stuff, start=1)}
    id_map.update({c["id"]: 0 for c in categories if c["isthing"] == 1})
    out = np.zeros(pan.shape, np.uint8) + 255
    for seg in segments:
        out[pan == seg["id"]] = id_map[seg["category_id"]]
    return out


def panopticapi_semantic(pan: np.ndarray, segments: list[dict]) -> np.ndarray:
    """panopticapi converters/panoptic2semantic_segmentation.py, PNG branch without things_other."""
    semantic = np.zeros(pan.shape, np.uint8)
    for info in segments:
        semantic[pan == info["id"]] = info["category_id"]
    return semantic


def mmseg_reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """mmseg LoadAnnotations(reduce_zero_label=True) on a background-0 label map."""
    label = label.copy()
    label[label == 0] = 255
    label = label - 1
    label[label == 254] = 255
    return label


@st.composite
def panoptic_images(draw):
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    n = draw(st.integers(0, 8))
    ids = draw(st.lists(st.integers(1, (1 << 24) - 1), min_size=n, max_size=n, unique=True))
    cats = draw(st.lists(st.sampled_from([c["id"] for c in CATEGORIES]), min_size=n, max_size=n))
    values = [0, *ids]
    pick = draw(st.lists(st.integers(0, len(values) - 1), min_size=h * w, max_size=h * w))
    pan = np.array([values[p] for p in pick], np.int64).reshape(h, w)
    return pan, [{"id": i, "category_id": c, "iscrowd": 0} for i, c in zip(ids, cats)]


def _convert(src, out, **options):
    summary = segconvert.convert(src, out, from_format="coco-panoptic", to_format="index", jobs=1, **options)
    assert summary.ok, summary.failures
    return np.asarray(Image.open(out / "masks" / "img.png"))


@PROPERTY
@given(image=panoptic_images())
def test_presets_equal_their_tools(tmp_path_factory, image):
    pan, infos = image
    root = tmp_path_factory.mktemp("idx")
    src = write_panoptic(root, [("img", pan, infos)])
    decoded = rgb2id(np.asarray(Image.open(root / "panoptic" / "img.png").convert("RGB")))
    assert np.array_equal(_convert(src, root / "d2", preset="detectron2"),
                          detectron2_semantic(decoded, infos, CATEGORIES))
    assert np.array_equal(_convert(src, root / "pa", preset="panopticapi"), panopticapi_semantic(decoded, infos))
    plain = _convert(src, root / "plain")
    position = {c["id"]: k for k, c in enumerate(CATEGORIES, start=1)}
    want = np.zeros(pan.shape, np.uint8)
    for info in infos:
        want[decoded == info["id"]] = position[info["category_id"]]
    assert np.array_equal(plain, want)
    assert np.array_equal(_convert(src, root / "mm", preset="mmseg"), mmseg_reduce_zero_label(plain))


def test_presets_on_the_fixture_and_labels_json(tmp_path):
    src = FIXTURES / "coco-panoptic" / "panoptic.json"
    doc = json.loads(src.read_text())
    out = tmp_path / "d2"
    assert segconvert.convert(src, out, to_format="index", preset="detectron2", jobs=2).ok
    for ann in doc["annotations"]:
        pan = rgb2id(np.asarray(Image.open(src.with_suffix("") / ann["file_name"]).convert("RGB")))
        got = np.asarray(Image.open(out / "masks" / ann["file_name"]))
        assert np.array_equal(got, detectron2_semantic(pan, ann["segments_info"], doc["categories"]))
    labels = json.loads((out / "labels.json").read_text())
    stuff = [c["name"] for c in doc["categories"] if not c["isthing"]]
    assert labels == {"0": "things", **{str(k): n for k, n in enumerate(stuff, start=1)}, "255": "void"}
    colors = json.loads((out / "colors.json").read_text())
    assert colors["1"] == next(c["color"] for c in doc["categories"] if c["name"] == stuff[0])


@PROPERTY
@given(seg=scenes())
def test_index_round_trip(tmp_path_factory, seg):
    """IR -> index -> IR (read back by the rgb reader with labels.json) keeps the semantic view."""
    out = tmp_path_factory.mktemp("index")
    assert write_scenes([seg], "index", out).ok
    (back,) = read_back(out / "masks", "rgb", encoding="palette", labels=out / "labels.json").values()
    want_segments, want_map = canonical(semantic(seg), ("label",))
    got_segments, got_map = canonical(back, ("label",))
    assert got_segments == want_segments and np.array_equal(got_map, want_map)


def test_more_than_255_classes_make_16_bit_masks(tmp_path):
    categories = [Category(k, f"c{k}", False) for k in range(1, 301)]
    label_map = np.array([[0, 1, 2], [3, 4, 4]], np.uint16)
    segments = [SegmentInfo(1, "c1", 1, False), SegmentInfo(2, "c299", 299, False), SegmentInfo(3, "c300", 300),
                SegmentInfo(4, "c256", 256)]
    seg = Segmentation("big", label_map, segments)
    assert write_scenes([seg], "index", tmp_path / "o", categories=categories).ok
    mask = np.asarray(Image.open(tmp_path / "o" / "masks" / "big.png"))
    assert mask.dtype.itemsize == 2 or mask.dtype == np.int32  # Pillow: I;16
    assert mask.astype(np.int64).tolist() == [[0, 1, 299], [300, 256, 256]]
    (back,) = read_back(tmp_path / "o" / "masks", "rgb", encoding="palette",
                        labels=tmp_path / "o" / "labels.json").values()
    assert sorted(s.label for s in back.segments) == ["c1", "c256", "c299", "c300"]


def test_value_conflicts_are_refused(tmp_path):
    seg = Segmentation("a", np.zeros((2, 2), np.uint8), [])
    with pytest.raises(SourceError, match="void_value=2 is also the value of a class"):
        write_scenes([seg], "index", tmp_path / "o", void_value=2)
    with pytest.raises(SourceError, match="does not go with preset="):
        write_scenes([seg], "index", tmp_path / "o", preset="mmseg", void_value=9)
    with pytest.raises(SourceError, match="need a dataset-wide category table"):
        write_scenes([seg], "index", tmp_path / "o", categories=None)
    out = tmp_path / "v"
    lm = np.array([[0, 5]], np.uint8)
    assert write_scenes([Segmentation("a", lm, [SegmentInfo(5, "car", 3)])], "index", out, void_value=200).ok
    assert np.asarray(Image.open(out / "masks" / "a.png")).tolist() == [[200, 2]]
    assert json.loads((out / "labels.json").read_text())["200"] == "background"


def test_index_from_the_cli(tmp_path):
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    src = FIXTURES / "coco-panoptic" / "panoptic.json"
    result = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "o"), "--to", "index", "--preset",
                                       "panopticapi", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o" / "masks").iterdir()) == [
        "example_000.png", "example_001.png", "example_002.png"]
