"""SA-1B reader: pixels against pycocotools.mask.decode, SAM's nesting, every bad input, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pycocotools import mask as mask_utils

from segconvert.converters.sa1b import FORMAT, Sa1bReader, sniff
from segconvert.errors import ItemError, SourceError
from segconvert.interfaces import registry
from segconvert.interfaces.cli import main

# pycocotools' decode (the reference here) trips a numpy 2 DeprecationWarning
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sa1b"


def encode(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}


def reference(rles: list[dict], overlap: str) -> np.ndarray:
    """pycocotools' decode of each RLE, painted with ids 1..n (larger first for small-on-top)."""
    masks = [mask_utils.decode(r).astype(bool) for r in rles]
    h, w = rles[0]["size"]
    out = np.zeros((h, w), np.int64)
    order = list(range(len(masks)))
    if overlap == "small-on-top":
        order.sort(key=lambda k: -int(masks[k].sum()))  # stable: ties in file order
    for k in order:
        out[masks[k]] = k + 1
    return out


def write_json(folder: Path, name: str, anns: list[dict], width: int, height: int, **image) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"image": {"image_id": 1, "width": width, "height": height, "file_name": f"{name}.jpg", **image},
           "annotations": anns}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def load_one(folder: Path, **options):
    (item,) = list(Sa1bReader(folder, **options).items())
    return item.load()


def read_grid(path: Path) -> np.ndarray:
    return np.array([[0 if c == "." else int(c) for c in row] for row in path.read_text().split()])


# ----------------------------------------------------------------- fixture


def test_fixture_small_on_top_matches_expected_and_pycocotools():
    items = {it.reference_id: it for it in Sa1bReader(FIXTURES).items()}
    assert list(items) == ["sa_1", "sa_2"]
    seg = items["sa_1"].load()
    expected = read_grid(FIXTURES / "expected" / "sa_1.txt")
    np.testing.assert_array_equal(seg.label_map, expected)
    doc = json.loads((FIXTURES / "sa_1.json").read_text())
    np.testing.assert_array_equal(seg.label_map, reference([a["segmentation"] for a in doc["annotations"]],
                                                           "small-on-top"))
    assert [s.label for s in seg.segments] == ["object"] * 4
    first = seg.segments[0].metadata
    assert first["annotation_id"] == 101 and first["predicted_iou"] == 0.91 and first["stability_score"] == 0.95
    assert first["point_coords"] == [[3.5, 3.5]] and first["crop_box"] == [0, 0, 12, 10] and first["area"] == 16
    assert seg.warnings == []


def test_paint_policy_keeps_file_order():
    seg = Sa1bReader(FIXTURES, overlap="paint").items().__next__().load()
    doc = json.loads((FIXTURES / "sa_1.json").read_text())
    np.testing.assert_array_equal(seg.label_map, reference([a["segmentation"] for a in doc["annotations"]], "paint"))
    assert seg.label_map[2, 2] == 2 and seg.label_map[3, 3] == 3  # the whole (2nd) covers the part (1st)


def test_label_option_and_categories():
    reader = Sa1bReader(FIXTURES, label="segment")
    assert [c.name for c in reader.categories] == ["segment"] and reader.default_mode == "instance"
    seg = next(reader.items()).load()
    assert {s.label for s in seg.segments} == {"segment"} and {s.category_id for s in seg.segments} == {1}


masks_strategy = st.integers(1, 16).flatmap(
    lambda h: st.integers(1, 16).flatmap(
        lambda w: st.lists(arrays(np.bool_, (h, w)), min_size=1, max_size=6)
    )
)


@settings(max_examples=60)
@given(masks=masks_strategy, overlap=st.sampled_from(["small-on-top", "paint"]))
def test_random_masks_equal_pycocotools(tmp_path_factory, masks, overlap):
    folder = tmp_path_factory.mktemp("sa")
    h, w = masks[0].shape
    rles = [encode(m) for m in masks]
    write_json(folder, "sa_9", [{"id": k, "segmentation": r} for k, r in enumerate(rles)], w, h)
    seg = load_one(folder, overlap=overlap)
    np.testing.assert_array_equal(seg.label_map, reference(rles, overlap))


@settings(max_examples=30)
@given(mask=arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_uncompressed_counts_equal_pycocotools(tmp_path_factory, mask):
    folder = tmp_path_factory.mktemp("sa")
    h, w = mask.shape
    col = mask.T.ravel().astype(np.int8)  # column-major, runs alternating from a (maybe empty) run of 0s
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(col)) + 1, [col.size]])
    counts = ([0] if col[0] else []) + np.diff(bounds).tolist()
    raw = {"size": [h, w], "counts": counts}
    write_json(folder, "sa_9", [{"id": 1, "segmentation": raw}], w, h)
    expected = mask_utils.decode(mask_utils.frPyObjects(raw, h, w)).astype(bool)
    np.testing.assert_array_equal(expected, mask)  # the counts above are right
    np.testing.assert_array_equal(load_one(folder).label_map, expected.astype(int))


def test_file_name_with_another_stem_warns(tmp_path):
    write_json(tmp_path, "sa_5", [], 4, 3, file_name="other.jpg")
    seg = load_one(tmp_path)
    assert seg.reference_id == "sa_5" and "differs from the JSON's name" in seg.warnings[0]
    assert not seg.label_map.any()


def test_items_are_light_and_found_recursively_in_order(tmp_path):
    import pickle

    write_json(tmp_path / "b", "sa_3", [], 4, 3)
    write_json(tmp_path / "a", "sa_2", [], 4, 3)
    write_json(tmp_path, "sa_1", [], 4, 3)
    reader = Sa1bReader(tmp_path)
    items = list(reader.items())
    assert [it.reference_id for it in items] == ["sa_1", "sa_2", "sa_3"] and len(reader) == 3
    assert len(pickle.dumps(items[0])) < 400


def test_duplicate_stem_fails_the_second_naming_the_first(tmp_path):
    first = write_json(tmp_path / "a", "sa_1", [], 4, 3)
    write_json(tmp_path / "b", "sa_1", [], 4, 3)
    items = list(Sa1bReader(tmp_path).items())
    items[0].load()
    with pytest.raises(ItemError, match=f"reference id 'sa_1' is already used by {first}"):
        items[1].load()


# ----------------------------------------------------------------- bad input

GOOD = encode(np.eye(3, 4, dtype=bool))


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ({"id": 7}, r"annotations\[0\] \(id 7\): 'segmentation' must be a COCO RLE object"),
        ({"id": 7, "segmentation": [[0, 0, 1, 1, 2, 0]]}, r"\(id 7\): 'segmentation' must be a COCO RLE"),
        ({"id": 7, "segmentation": {"size": [4, 3], "counts": GOOD["counts"]}},
         r"\(id 7\): RLE size is 3x4 \(WxH\) but the image is 4x3"),
        ({"id": 7, "segmentation": {"size": [3], "counts": GOOD["counts"]}}, r"\(id 7\): RLE size \[3\] is not"),
        ({"id": 7, "segmentation": {"size": [3, 4], "counts": "0" * 3}},
         r"segment 1: RLE counts cover 0 pixels but the image has 4x3 = 12 .*segment 1 = annotations\[0\] \(id 7\)"),
        ({"id": 7, "segmentation": {"size": [3, 4], "counts": "a b"}},
         r"characters outside '0'..'o' \[segment 1 = annotations\[0\] \(id 7\)\]"),
        ({"id": 7, "segmentation": {"size": [3, 4], "counts": "0é"}}, r"\(id 7\): compressed RLE counts hold char"),
        ({"id": 7, "segmentation": {"size": [3, 4], "counts": 5}}, r"\(id 7\): RLE counts must be a compressed"),
        ({"id": 7, "segmentation": {"size": [3, 4], "counts": [5, 3]}}, r"cover 8 pixels but the image has 4x3"),
        ({"id": 7, "segmentation": GOOD, "predicted_iou": "high"}, r"\(id 7\): predicted_iou 'high' is not a finite"),
        ({"id": 7, "segmentation": GOOD, "stability_score": True}, r"\(id 7\): stability_score True is not a finite"),
    ],
)
def test_bad_annotation_names_file_item_and_annotation(tmp_path, annotation, message):
    path = write_json(tmp_path, "sa_1", [{"id": 6, "segmentation": GOOD}, annotation], 4, 3)
    message = message.replace("annotations[0]", "annotations[1]").replace(r"annotations\[0\]", r"annotations\[1\]")
    message = message.replace("segment 1", "segment 2")
    with pytest.raises(ItemError, match=message) as info:
        load_one(tmp_path)
    assert info.value.file == str(path) and info.value.item == "sa_1"
    assert str(path) in str(info.value) and "[sa_1]" in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"image": {"width": 4, "height": 3}, "annotations": [{"id": 1, "predicted_iou": NaN}]}', "not valid JSON"),
        ("[]", "no 'image' object; is this an SA-1B JSON?"),
        ('{"image": {"width": 4, "height": 3}}', "no 'annotations' list"),
        ('{"image": {"width": 4.5, "height": 3}, "annotations": []}', "width/height must be integers, got 4.5 x 3"),
        ('{"image": {"width": 0, "height": 3}, "annotations": []}', "image size 0x3 is empty"),
        ('{"image": {"width": 4, "height": 3}, "annotations": [3]}', r"annotations\[0\] is not an object"),
    ],
)
def test_bad_json_fails_its_item(tmp_path, text, message):
    (tmp_path / "sa_1.json").write_text(text)
    with pytest.raises(ItemError, match=message) as info:
        load_one(tmp_path)
    assert info.value.file == str(tmp_path / "sa_1.json")


def test_overlap_error_names_the_annotations(tmp_path):
    a, b = np.zeros((3, 4), bool), np.zeros((3, 4), bool)
    a[0:2, 0:2] = b[1:3, 1:3] = True
    write_json(tmp_path, "sa_1", [{"id": 11, "segmentation": encode(a)}, {"id": 12, "segmentation": encode(b)}], 4, 3)
    with pytest.raises(ItemError, match=r"segment ids 1 & 2 \(1 px\).*segment 1 = annotations\[0\] \(id 11\); "
                                        r"segment 2 = annotations\[1\] \(id 12\)"):
        load_one(tmp_path, overlap="error")


def test_unusable_sources(tmp_path):
    with pytest.raises(SourceError, match="a folder of per-image .json files"):
        Sa1bReader(tmp_path / "missing")
    with pytest.raises(SourceError, match="a folder of per-image .json files"):
        Sa1bReader(FIXTURES / "sa_1.json")
    with pytest.raises(SourceError, match="no .json files"):
        Sa1bReader(tmp_path)
    with pytest.raises(SourceError, match="label must be a non-empty name"):
        Sa1bReader(FIXTURES, label=" ")
    with pytest.raises(SourceError, match="unknown overlap policy"):
        Sa1bReader(FIXTURES, overlap="top")


# ----------------------------------------------------------------- detection and CLI


def test_sniff(tmp_path):
    assert sniff(FIXTURES) and registry.detect(FIXTURES) == "sa1b" and FORMAT.name == "sa1b"
    nested = tmp_path / "nested"
    shutil.copytree(FIXTURES, nested / "sa_000000")
    assert sniff(nested)
    root = Path(__file__).resolve().parents[1] / "fixtures"
    assert not sniff(root / "labelme" / "dataset") and not sniff(root / "cityscapes")
    assert not sniff(FIXTURES / "sa_1.json") and not sniff(tmp_path / "nothing")


def test_cli_batch_one_bad_item_fails_the_others_convert(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIXTURES, src)
    shutil.rmtree(src / "expected")
    doc = json.loads((src / "sa_2.json").read_text())
    doc["annotations"][0]["segmentation"]["size"] = [5, 8]
    (src / "sa_2.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["convert", str(src), str(out), "--jobs", "1"])
    assert result.exit_code == 1, result.output
    assert "reading" in result.output and "as sa1b" in result.output
    assert f"{src / 'sa_2.json'} [sa_2]: annotations[0] (id 201): RLE size is 8x5 (WxH) but the image is 8x6" \
        in result.output
    assert not (out / "masks" / "sa_2.png").exists()
    mask = np.asarray(Image.open(out / "masks" / "sa_1.png"))
    (payload,) = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    by_index = {s["index"]: s.get("metadata", {}).get("annotation_id", 0) for s in payload["annotations"]}
    expected = read_grid(FIXTURES / "expected" / "sa_1.txt")
    ids = [0, 101, 102, 103, 104]
    np.testing.assert_array_equal(np.vectorize(by_index.get)(mask), np.array(ids)[expected])
    whole = next(s for s in payload["annotations"] if s.get("metadata", {}).get("annotation_id") == 102)
    assert whole["label"] == "object"
    assert whole["metadata"]["area"] == 56 - 16 and whole["metadata"]["source_area"] == 56  # the part is on top


def test_impossibly_large_size_fails_naming_the_size(tmp_path):
    write_json(tmp_path, "sa_1", [], width=10**6, height=10**6)
    with pytest.raises(ItemError, match=r"image size 1000000x1000000 is .*32-bit"):
        load_one(tmp_path)
