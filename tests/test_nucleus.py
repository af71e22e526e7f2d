"""The nucleus reader: sources, mask lookup, RGB masks, pixel checks, category table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segconvert
from segconvert.errors import ItemError, SourceError
from segconvert.interfaces import api
from segconvert.model.ir import FailedItem


def _mask(path: Path, values: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(values)
    (img.convert(mode) if mode != "L" else img).save(path)


def _payload(ref: str, mask_url: str, segments: list[dict]) -> dict:
    return {"type": "mask", "mask_url": mask_url, "annotations": segments, "annotation_id": None,
            "reference_id": ref}


MASK = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)
SEGMENTS = [{"label": "background", "index": 0},
            {"label": "car", "index": 1, "metadata": {"category_id": 3, "iscrowd": True}},
            {"label": "road", "index": 2, "metadata": {"category_id": 9, "isthing": False, "supercategory": "ground"}}]


def _write_jsonl(root: Path, payloads: list[dict], name: str = "annotations.jsonl") -> Path:
    path = root / name
    path.write_text("".join(json.dumps(p) + "\n" for p in payloads))
    return path


def _load_all(source: Path, **options):
    reader = api.open_reader(source, "nucleus", **options)
    return reader, list(reader.items())


def test_folder_jsonl_and_json_list_read_the_same(tmp_path):
    _mask(tmp_path / "masks" / "a.png", MASK)
    payloads = [_payload("a", str(tmp_path / "masks" / "a.png"), SEGMENTS)]
    _write_jsonl(tmp_path, payloads)
    (tmp_path / "list.json").write_text(json.dumps(payloads))
    export = [{"item": {"reference_id": "a"}, "annotations": {"segmentation": {**payloads[0], "reference_id": None}
                                                              | {"reference_id": "a"}, "box": []}}]
    (tmp_path / "export.json").write_text(json.dumps(export))
    refloc = [{"item": {"reference_id": "a"}, "annotations": {"segmentation": [
        {k: v for k, v in payloads[0].items() if k != "reference_id"}]}}]
    (tmp_path / "refloc.json").write_text(json.dumps(refloc))
    loaded = []
    for source in (tmp_path, tmp_path / "annotations.jsonl", tmp_path / "list.json", tmp_path / "export.json",
                   tmp_path / "refloc.json"):
        _, items = _load_all(source)
        (item,) = items
        assert item.reference_id == "a"
        loaded.append(item.load())
    for seg in loaded:
        assert np.array_equal(seg.label_map, MASK)
        assert [(s.id, s.label, s.category_id, s.isthing, s.iscrowd) for s in seg.segments] == [
            (1, "car", 3, True, True), (2, "road", 9, False, False)]
        assert seg.segments[1].metadata == {"supercategory": "ground"}


def test_mask_found_relative_or_by_reference_id(tmp_path):
    _mask(tmp_path / "sub" / "x.png", MASK)
    _mask(tmp_path / "masks" / "b.png", MASK)
    _write_jsonl(tmp_path, [_payload("a", "sub/x.png", SEGMENTS),
                            _payload("b", "/nowhere/moved/b.png", SEGMENTS),
                            _payload("c", "/nowhere/c.png", SEGMENTS)])
    _, items = _load_all(tmp_path)
    assert np.array_equal(items[0].load().label_map, MASK)
    assert np.array_equal(items[1].load().label_map, MASK)
    with pytest.raises(ItemError, match=r"mask not found \(tried /nowhere/c.png, .*masks/c.png\)"):
        items[2].load()


def test_unreadable_remote_mask_fails_the_item_and_a_local_copy_is_used(tmp_path, monkeypatch):
    # an S3 endpoint on loopback where nothing listens (never a real cloud): connection refused
    fsspec = pytest.importorskip("fsspec")
    pytest.importorskip("s3fs")
    monkeypatch.setitem(fsspec.config.conf, "s3", {
        "endpoint_url": "http://127.0.0.1:9", "key": "testing", "secret": "testing",
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}})
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    from segconvert.io import sources
    monkeypatch.setattr(sources, "_filesystems", {})
    _write_jsonl(tmp_path, [_payload("a", "s3://bucket/masks/a.png", SEGMENTS)])
    _, (item,) = _load_all(tmp_path)
    with pytest.raises(ItemError, match="cannot read the remote mask .*credentials") as info:
        item.load()
    assert info.value.file == "s3://bucket/masks/a.png"
    _mask(tmp_path / "masks" / "a.png", MASK)  # a local copy in masks/ is used
    assert np.array_equal(item.load().label_map, MASK)


def test_rgb_mask_equal_channels_is_read_with_a_warning(tmp_path):
    _mask(tmp_path / "masks" / "a.png", MASK, "RGB")
    rgb = np.stack([MASK, MASK, MASK], -1)
    rgb[1, 2] = (0, 1, 0)
    _mask(tmp_path / "masks" / "b.png", rgb)
    _write_jsonl(tmp_path, [_payload("a", "masks/a.png", SEGMENTS), _payload("b", "masks/b.png", SEGMENTS)])
    _, (a, b) = _load_all(tmp_path)
    seg = a.load()
    assert np.array_equal(seg.label_map, MASK) and "first channel" in seg.warnings[0]
    with pytest.raises(ItemError, match=r"channels differ \(pixel x=2, y=1 is \(0, 1, 0\)\)"):
        b.load()


def test_pixel_without_segment_and_bad_segments_fail_the_item(tmp_path):
    _mask(tmp_path / "masks" / "a.png", np.array([[0, 1, 7, 7]], np.uint8))
    _write_jsonl(tmp_path, [
        _payload("a", "masks/a.png", SEGMENTS),
        _payload("a2", "masks/a.png", [{"label": "x", "index": 1}, {"label": "y", "index": 1}]),
        _payload("a3", "masks/a.png", [{"label": "x", "index": 300}]),
    ])
    _, items = _load_all(tmp_path)
    with pytest.raises(ItemError, match=r"1 pixel value\(s\) have no segment in the annotation: 7 \(2 px\)"):
        items[0].load()
    with pytest.raises(ItemError, match="index 1 is listed twice"):
        items[1].load()
    with pytest.raises(ItemError, match="index 300; indices are integers 0..255"):
        items[2].load()
    # where every segment has a category_id (the table is by id), a bad one fails its item
    (tmp_path / "ids").mkdir()
    _write_jsonl(tmp_path / "ids", [
        _payload("b", str(tmp_path / "masks" / "a.png"), [{"label": "x", "index": 1, "metadata": {"category_id": 2.5}},
                                                          {"label": "y", "index": 7, "metadata": {"category_id": 2}}])])
    _, (item,) = _load_all(tmp_path / "ids")
    with pytest.raises(ItemError, match="category_id 2.5 is not an integer"):
        item.load()


def test_bad_lines_fail_alone_and_summary_names_them(tmp_path):
    _mask(tmp_path / "masks" / "a.png", MASK)
    path = tmp_path / "annotations.jsonl"
    path.write_text(json.dumps(_payload("a", "masks/a.png", SEGMENTS)) + "\n{oops\n\n"
                    + json.dumps({"reference_id": "z"}) + "\n")
    _, items = _load_all(tmp_path)
    assert [type(i) for i in items[1:]] == [FailedItem, FailedItem]
    summary = segconvert.convert(tmp_path, tmp_path / "out", from_format="nucleus", jobs=1)
    assert summary.converted == 1 and summary.failed == 2
    assert any("line 2 is not valid JSON" in f for f in summary.failures)
    assert any("has no string 'mask_url'" in f for f in summary.failures)


def test_category_table_by_id_or_by_label(tmp_path):
    _mask(tmp_path / "masks" / "a.png", MASK)
    _write_jsonl(tmp_path, [_payload("a", "masks/a.png", SEGMENTS)])
    reader, _ = _load_all(tmp_path)
    assert [(c.id, c.name, c.isthing, c.supercategory) for c in reader.categories] == [
        (3, "car", True, None), (9, "road", False, "ground")]
    plain = [{"label": "background", "index": 0}, {"label": "sky", "index": 2}, {"label": "background", "index": 1}]
    (tmp_path / "b").mkdir()
    _mask(tmp_path / "b" / "masks" / "a.png", MASK)
    _write_jsonl(tmp_path / "b", [_payload("a", "masks/a.png", plain)])
    reader, (item,) = _load_all(tmp_path / "b")
    assert [(c.id, c.name, c.isthing) for c in reader.categories] == [(1, "sky", True), (2, "background", False)]
    seg = item.load()
    assert [(s.id, s.label, s.category_id, s.isthing) for s in seg.segments] == [
        (2, "sky", None, True), (1, "background", None, False)]
    # stable semantic indices follow that table
    out = tmp_path / "sem"
    assert segconvert.convert(tmp_path / "b", out, from_format="nucleus", mode="semantic", jobs=1).ok
    row = json.loads((out / "annotations.jsonl").read_text())
    assert [(s["label"], s["index"]) for s in row["annotations"]] == [("background", 0), ("sky", 1), ("background", 2)]


def test_not_a_nucleus_source(tmp_path):
    with pytest.raises(SourceError, match="no annotations.jsonl"):
        api.open_reader(tmp_path, "nucleus")


def test_auto_detects_a_nucleus_folder(tmp_path):
    from segconvert.interfaces import registry

    _mask(tmp_path / "masks" / "a.png", MASK)
    _write_jsonl(tmp_path, [_payload("a", "masks/a.png", SEGMENTS)])
    assert registry.detect(tmp_path) == "nucleus"


def test_export_rows_made_by_the_official_client(tmp_path):
    """Rows as a user saves Dataset.items_and_annotations(): the client's own objects' payloads."""
    nucleus = pytest.importorskip("nucleus")
    _mask(tmp_path / "masks" / "a.png", MASK)
    ann = nucleus.SegmentationAnnotation(
        mask_url=str(tmp_path / "masks" / "a.png"),
        annotations=[nucleus.Segment("background", 0), nucleus.Segment("car", 1, {"category_id": 3}),
                     nucleus.Segment("road", 2, {"category_id": 9, "isthing": False})],
        reference_id="a",
    )
    item = nucleus.DatasetItem(image_location="s3://bucket/a.jpg", reference_id="a")
    rows = [{"item": item.to_payload(), "annotations": {"segmentation": ann.to_payload(), "box": []}}]
    (tmp_path / "export.json").write_text(json.dumps(rows))
    _, (loaded,) = _load_all(tmp_path / "export.json")
    seg = loaded.load()
    assert loaded.reference_id == "a" and np.array_equal(seg.label_map, MASK)
    assert [(s.id, s.label, s.category_id, s.isthing) for s in seg.segments] == [(1, "car", 3, True),
                                                                                 (2, "road", 9, False)]


def test_background_label_goes_to_reader_and_writer(tmp_path):
    _mask(tmp_path / "masks" / "a.png", MASK)
    plain = [{"label": "bg", "index": 0}, {"label": "car", "index": 1}, {"label": "bg", "index": 2}]
    _write_jsonl(tmp_path, [_payload("a", "masks/a.png", plain)])
    out = tmp_path / "out"
    assert segconvert.convert(tmp_path, out, from_format="nucleus", mode="instance", background_label="bg",
                              jobs=1).ok
    row = json.loads((out / "annotations.jsonl").read_text())
    assert [(s["label"], s["index"]) for s in row["annotations"]] == [("bg", 0), ("car", 1)]  # stuff 'bg' dropped


def test_palette_mask_is_read_as_indices_and_other_modes_fail(tmp_path):
    pal = Image.fromarray(MASK, mode="P")
    pal.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10] + [0] * (256 * 3 - 9))
    (tmp_path / "masks").mkdir()
    pal.save(tmp_path / "masks" / "p.png")
    Image.fromarray(MASK.astype(np.uint16) * 300).save(tmp_path / "masks" / "w.png")
    _write_jsonl(tmp_path, [_payload("p", "masks/p.png", SEGMENTS), _payload("w", "masks/w.png", SEGMENTS)])
    _, (p, w) = _load_all(tmp_path)
    seg = p.load()
    assert np.array_equal(seg.label_map, MASK) and "palette" in seg.warnings[0]
    with pytest.raises(ItemError, match="mask is 16-bit grayscale; Nucleus masks are 8-bit grayscale PNGs"):
        w.load()
