"""Label Studio reader: brushes against label_studio_converter.brush, polygons and boxes against
pycocotools, the annotation / reference_id rules, every bad input, the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pycocotools import mask as mask_utils

from segconvert.converters.label_studio import (
    FORMAT,
    BrushRleError,
    LabelStudioReader,
    decode_brush_rle,
    image_reference,
    sniff,
)
from segconvert.errors import ItemError, SourceError
from segconvert.interfaces import registry
from segconvert.interfaces.cli import main

brush = pytest.importorskip("label_studio_converter.brush")
ls_utils = pytest.importorskip("label_studio_converter.utils")

# pycocotools' decode (a reference here) trips a numpy 2 DeprecationWarning
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "label-studio"
EXPORT = FIXTURES / "export.json"


def read_grid(path: Path) -> np.ndarray:
    return np.array([[0 if c == "." else int(c) for c in row] for row in path.read_text().splitlines()])


def region(kind: str, value: dict, w: int = 20, h: int = 10, rid: str = "r", **extra) -> dict:
    return {"original_width": w, "original_height": h, "image_rotation": 0, "value": value, "id": rid,
            "from_name": "label", "to_name": "image", "type": kind, **extra}


def poly(points, label="car", **kw) -> dict:
    return region("polygonlabels", {"points": points, "polygonlabels": [label]}, **kw)


def rect(x, y, bw, bh, rotation=0.0, label="car", **kw) -> dict:
    value = {"x": x, "y": y, "width": bw, "height": bh, "rotation": rotation, "rectanglelabels": [label]}
    return region("rectanglelabels", value, **kw)


def brush_region(mask: np.ndarray, label="road", **kw) -> dict:
    h, w = mask.shape
    value = {"format": "rle", "rle": brush.mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [label]}
    return region("brushlabels", value, w=w, h=h, **kw)


def task(results, image="/data/upload/1/3f2a9c1e-a.jpg", id_=1, **ann) -> dict:
    return {"id": id_, "data": {"image": image}, "annotations": [{"id": 100 + id_, "result": results, **ann}]}


def write(tmp_path: Path, tasks, name="export.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(tasks))
    return path


def load_one(path: Path, **options):
    (item,) = list(LabelStudioReader(path, **options).items())
    return item.load()


def coco_polygon(xy: list[float], h: int, w: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.frPyObjects([xy], h, w)[0]).astype(bool)


# ----------------------------------------------------------------- fixture


@pytest.mark.parametrize("ref", ["street", "park one"])
def test_fixture_matches_expected_masks(ref):
    items = {it.reference_id: it for it in LabelStudioReader(EXPORT).items()}
    assert list(items) == ["street", "park one"]
    seg = items[ref].load()
    np.testing.assert_array_equal(seg.label_map, read_grid(FIXTURES / "expected" / f"{ref}.txt"))
    assert seg.warnings == []


def test_fixture_labels_metadata_and_annotation_choice():
    reader = LabelStudioReader(EXPORT)
    assert [(c.id, c.name) for c in reader.categories] == [(1, "road"), (2, "car"), (3, "person")]
    assert reader.default_mode == "instance"
    street, park = (it.load() for it in reader.items())
    # the newest annotation of task 1 (id 10) is cancelled: annotation 11 is used
    assert [(s.label, s.category_id) for s in street.segments] == [("road", 1), ("car", 2), ("person", 3)]
    person = street.segments[2].metadata
    assert person == {"task_id": 1, "annotation_id": 11, "region_id": "r3", "from_name": "label",
                      "shape": "rectangle", "rotation": 0, "attributes": {"action": {"choices": ["walking"]}}}
    assert park.segments[0].metadata["annotation_id"] == 21  # --annotation latest: created 2024-05-03
    first = list(LabelStudioReader(EXPORT, annotation="first").items())[1].load()
    assert first.segments[0].metadata["annotation_id"] == 20 and first.segments[0].metadata["shape"] == "polygon"


def test_items_are_light_and_picklable():
    import pickle

    for item in LabelStudioReader(EXPORT).items():
        assert pickle.loads(pickle.dumps(item)).load().reference_id == item.reference_id


# ----------------------------------------------------------------- brush RLE against label_studio_converter


def encode_tokens(tokens, word_size: int, rle_sizes: list[int]) -> list[int]:
    """A brush RLE stream written token by token (rle-pack's layout), padded to bytes."""
    bits = [f"{sum(len(v) if not r else n for r, n, v in tokens):032b}", f"{word_size - 1:05b}"]
    bits += [f"{s - 1:04b}" for s in rle_sizes]
    for repeat, n, values in tokens:
        which = next(k for k, s in enumerate(rle_sizes) if n - 1 < (1 << s))
        bits.append(("1" if repeat else "0") + f"{which:02b}" + format(n - 1, f"0{rle_sizes[which]}b"))
        bits += [format(v, f"0{word_size}b") for v in values]
    text = "".join(bits)
    text += "0" * (-len(text) % 8)
    return [int(text[i : i + 8], 2) for i in range(0, len(text), 8)]


@st.composite
def token_streams(draw):
    word_size = draw(st.integers(1, 8))
    rle_sizes = sorted(draw(st.lists(st.integers(1, 10), min_size=4, max_size=4)))
    longest = (1 << rle_sizes[-1])
    word = st.integers(0, (1 << word_size) - 1)
    tokens = []
    for _ in range(draw(st.integers(0, 12))):
        n = draw(st.integers(1, min(longest, 40)))
        if draw(st.booleans()):
            tokens.append((True, n, [draw(word)]))
        else:
            tokens.append((False, n, draw(st.lists(word, min_size=n, max_size=n))))
    return encode_tokens(tokens, word_size, rle_sizes)


@settings(max_examples=150)
@given(rle=token_streams())
def test_decoder_equals_label_studio_converter_on_any_stream(rle):
    expected = brush.decode_rle(rle)
    got = decode_brush_rle(rle)
    assert got.dtype == expected.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=60)
@given(values=arrays(np.uint8, st.integers(1, 300), elements=st.sampled_from([0, 0, 0, 7, 255, 255, 128])))
def test_decoder_equals_reference_on_its_own_encoder(values):
    # (its encoder cannot encode an empty array)
    rle = brush.encode_rle(values)
    np.testing.assert_array_equal(decode_brush_rle(rle), brush.decode_rle(rle))


def test_repeat_run_past_the_end_is_cut_as_the_reference_cuts_it():
    rle = encode_tokens([(True, 5, [9])], 8, [3, 4, 8, 16])
    rle[3] = 3  # the header says 3 values; the run says 5
    np.testing.assert_array_equal(decode_brush_rle(rle), brush.decode_rle(rle))
    assert decode_brush_rle(rle).tolist() == [9, 9, 9]


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ([1, 2], "ends in the middle of a value"),
        (encode_tokens([(False, 3, [1, 2, 3])], 8, [3, 4, 8, 16])[:-2], "ends in the middle of a value"),
        ([0, 0, 1, 0] + [0] * 4, None),  # 256 values claimed, nothing follows
        ([300, 0], "outside 0..255"),
        (["a"], "list of byte values"),
        (encode_tokens([(True, 2, [300])], 9, [3, 4, 8, 16]), "brush values are bytes"),
    ],
)
def test_bad_streams_raise_where_the_reference_crashes_or_guesses(rle, message):
    with pytest.raises(BrushRleError, match=message or "ends in the middle"):
        decode_brush_rle(rle)


def test_literal_run_past_the_end_is_an_error():
    rle = encode_tokens([(False, 3, [1, 2, 3])], 8, [3, 4, 8, 16])
    rle[3] = 2  # header: 2 values, the literal run has 3
    with pytest.raises(IndexError):
        brush.decode_rle(rle)
    with pytest.raises(BrushRleError, match="goes past the end"):
        decode_brush_rle(rle)


@settings(max_examples=40)
@given(alpha=arrays(np.uint8, st.tuples(st.integers(1, 14), st.integers(1, 14)),
                    elements=st.sampled_from([0, 0, 1, 100, 200, 255])),
       threshold=st.sampled_from([1, 128, 255]))
def test_brush_masks_through_the_reader_equal_the_reference(tmp_path_factory, alpha, threshold):
    h, w = alpha.shape
    rgba = np.stack([np.full_like(alpha, 30), np.full_like(alpha, 60), alpha, alpha], axis=-1)
    rle = brush.encode_rle(rgba.ravel())
    value = {"format": "rle", "rle": rle, "brushlabels": ["road"]}
    path = write(tmp_path_factory.mktemp("ls"), [task([region("brushlabels", value, w=w, h=h)])])
    expected = np.reshape(brush.decode_rle(rle), [h, w, 4])[:, :, 3] >= threshold
    seg = load_one(path, brush_threshold=threshold)
    np.testing.assert_array_equal(seg.label_map, expected.astype(int))


# ----------------------------------------------------------------- polygons and rectangles against pycocotools

percent = st.floats(0, 100, allow_nan=False)
sizes = st.tuples(st.integers(1, 40), st.integers(1, 40))


@settings(max_examples=80)
@example(size=(14, 31), points=[(0.0, 0.0), (0.0, 20.0), (30.0, 0.0)])  # rounding order (found by this test)
@given(size=sizes, points=st.lists(st.tuples(percent, percent), min_size=3, max_size=8))
def test_polygons_equal_pycocotools(tmp_path_factory, size, points):
    h, w = size
    path = write(tmp_path_factory.mktemp("ls"), [task([poly([list(p) for p in points], w=w, h=h)])])
    xy = [v for x, y in points for v in (x / 100 * w, y / 100 * h)]
    np.testing.assert_array_equal(load_one(path).label_map, coco_polygon(xy, h, w).astype(int))


@settings(max_examples=60)
@given(size=sizes, corner=st.tuples(percent, percent), extent=st.tuples(percent, percent))
def test_unrotated_rectangles_equal_pycocotools_boxes(tmp_path_factory, size, corner, extent):
    h, w = size
    x, y = corner
    bw, bh = min(extent[0], 100 - x), min(extent[1], 100 - y)
    path = write(tmp_path_factory.mktemp("ls"), [task([rect(x, y, bw, bh, w=w, h=h)])])
    box = np.array([[x / 100 * w, y / 100 * h, bw / 100 * w, bh / 100 * h]])
    expected = mask_utils.decode(mask_utils.frPyObjects(box, h, w)[0]).astype(int)
    np.testing.assert_array_equal(load_one(path).label_map, expected)


@settings(max_examples=60)
@given(size=sizes, corner=st.tuples(percent, percent), extent=st.tuples(percent, percent),
       rotation=st.floats(-360, 360, allow_nan=False))
def test_rotated_rectangles_turn_about_the_top_left_corner(tmp_path_factory, size, corner, extent, rotation):
    h, w = size
    (x, y), (bw, bh) = corner, extent
    assume(rotation != 0 or (x + bw <= 100 and y + bh <= 100))  # an unrotated box must end inside
    path = write(tmp_path_factory.mktemp("ls"), [task([rect(x, y, bw, bh, rotation, w=w, h=h)])])
    px, py, pw, ph = x / 100 * w, y / 100 * h, bw / 100 * w, bh / 100 * h
    c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    corners = [(px, py), (px + pw * c, py + pw * s), (px + pw * c - ph * s, py + pw * s + ph * c),
               (px - ph * s, py + ph * c)]
    # the same corners as label-studio-converter's YOLO OBB export (normalised there)
    label = {"original_width": w, "original_height": h, "x": x, "y": y, "width": bw, "height": bh,
             "rotation": rotation}
    obb = ls_utils.convert_annotation_to_yolo_obb(label)
    np.testing.assert_allclose([(cx * w, cy * h) for cx, cy in obb], corners, atol=1e-9)
    expected = coco_polygon([v for p in corners for v in p], h, w).astype(int)
    np.testing.assert_array_equal(load_one(path).label_map, expected)


def test_later_regions_are_painted_on_top_and_overlap_policies(tmp_path):
    big, small = rect(0, 0, 100, 100, label="road"), rect(25, 20, 50, 60, label="car")
    path = write(tmp_path, [task([small, big])])
    assert set(np.unique(load_one(path).label_map)) == {2}
    assert set(np.unique(load_one(path, overlap="small-on-top").label_map)) == {1, 2}
    with pytest.raises(ItemError, match=r"shapes overlap .*segment 1 = result\[0\] \(rectanglelabels, id 'r'\)"):
        load_one(path, overlap="error")


# ----------------------------------------------------------------- reference ids, annotations, labels


@pytest.mark.parametrize(
    ("data", "ref", "name"),
    [
        ({"image": "/data/upload/1/3f2a9c1e-street.jpg"}, "street", "street.jpg"),
        ({"image": "/data/upload/12/3f2a9c1e-my%20photo.v2.png"}, "my photo.v2", "my photo.v2.png"),
        ({"image": "/data/upload/1/street.jpg"}, "street", "street.jpg"),
        ({"image": "/data/local-files/?d=data%2Fimages%2F3f2a9c1e-x.jpg"}, "3f2a9c1e-x", "3f2a9c1e-x.jpg"),
        ({"image": "s3://bucket/a/b/c%2B1.jpg"}, "c+1", "c+1.jpg"),
        ({"image": "https://host/img/p.jpeg?token=abc"}, "p", "p.jpeg"),
        ({"text": 3, "img": "images\\win.jpg"}, "win", "win.jpg"),
        ({"image": "data:image/png;base64,iVBOR"}, "task-7", ""),
        ({}, "task-7", ""),
    ],
)
def test_reference_id_rule(data, ref, name):
    assert image_reference(data, 7) == (ref, name)


def test_upload_prefix_keep_and_duplicates(tmp_path):
    tasks = [task([poly([[0, 0], [50, 0], [0, 50]])], image="/data/upload/1/3f2a9c1e-a.jpg", id_=1),
             task([poly([[0, 0], [50, 0], [0, 50]])], image="/data/upload/1/aaaaaaaa-a.jpg", id_=2)]
    path = write(tmp_path, tasks)
    first, second = LabelStudioReader(path).items()
    first.load()
    with pytest.raises(ItemError, match=r"task 2 \('a.jpg'\): reference id 'a' is already used by task 1 "
                                        r"\('a.jpg'\) \(upload_prefix=\"keep\""):
        second.load()
    refs = [it.reference_id for it in LabelStudioReader(path, upload_prefix="keep").items()]
    assert refs == ["3f2a9c1e-a", "aaaaaaaa-a"]


@pytest.mark.parametrize(
    ("times", "chosen"),
    [
        (["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.500000Z"], 1),  # as strings the first sorts later
        (["2024-05-01T12:00:00+02:00", "2024-05-01T11:00:00Z"], 1),
        (["2024-05-01T10:00:00", "2024-05-01T10:00:00Z"], 0),  # naive is UTC: a tie, the first listed
        ([None, "not a time"], 0),
        (["not a time", "2020-01-01T00:00:00Z"], 1),
    ],
)
def test_latest_annotation_by_created_at_as_times(tmp_path, times, chosen):
    anns = [{"id": k, "created_at": t, "result": [poly([[0, 0], [50, 0], [0, 50]])]} for k, t in enumerate(times)]
    path = write(tmp_path, [{"id": 1, "data": {"image": "a.jpg"}, "annotations": anns}])
    assert load_one(path).segments[0].metadata["annotation_id"] == chosen


def test_unannotated_tasks_fail_or_are_left_out(tmp_path):
    tasks = [{"id": 1, "data": {"image": "a.jpg"}, "annotations": []},
             {"id": 2, "data": {"image": "b.jpg"}, "annotations": [{"id": 5, "result": [], "was_cancelled": True}]},
             task([poly([[0, 0], [50, 0], [0, 50]])], image="c.jpg", id_=3)]
    path = write(tmp_path, tasks)
    a, b, c = LabelStudioReader(path).items()
    with pytest.raises(ItemError,
                       match=r"task 1 \('a.jpg'\): no annotation; nothing to convert \(unannotated=\"skip\""):
        a.load()
    with pytest.raises(ItemError, match=r"task 2 \('b.jpg'\): all 1 annotation\(s\) are cancelled"):
        b.load()
    assert c.load().segments[0].label == "car"
    assert [it.reference_id for it in LabelStudioReader(path, unannotated="skip").items()] == ["c"]


def test_empty_result_needs_images_for_its_size(tmp_path):
    path = write(tmp_path, [task([], image="/data/upload/1/3f2a9c1e-a.jpg")])
    with pytest.raises(ItemError, match="no region gives the image size .*pass images=<dir>"):
        load_one(path)
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (7, 5)).save(tmp_path / "imgs" / "a.jpg")
    seg = load_one(path, images=tmp_path / "imgs")
    assert seg.label_map.shape == (5, 7) and not seg.label_map.any()


def test_labels_table_and_label_warnings(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"car": 4, "person": 2}))
    results = [poly([[0, 0], [50, 0], [0, 50]], "car"),
               region("polygonlabels", {"points": [[0, 0], [9, 0], [0, 9]], "polygonlabels": []}),
               region("polygonlabels", {"points": [[0, 0], [9, 0], [0, 9]], "polygonlabels": ["person", "car"]}),
               region("keypointlabels", {"x": 1, "y": 1, "keypointlabels": ["car"]}, rid="k")]
    path = write(tmp_path, [task(results)])
    seg = load_one(path, labels=labels)
    assert [(s.label, s.category_id) for s in seg.segments] == [("car", 4), ("person", 2)]
    assert any("no label; skipped" in w for w in seg.warnings)
    assert any("2 labels ['person', 'car']; the first is used" in w for w in seg.warnings)
    assert any("1 result(s) of type 'keypointlabels' have no mask; skipped" in w for w in seg.warnings)
    path = write(tmp_path, [task([poly([[0, 0], [50, 0], [0, 50]], "bus")])])
    with pytest.raises(ItemError, match=r"result\[0\] \(polygonlabels, id 'r'\): label 'bus' is not in the labels"):
        load_one(path, labels=labels)


def test_labels_seen_in_order_of_first_appearance_with_escapes(tmp_path):
    results = [poly([[0, 0], [50, 0], [0, 50]], 'a "quoted" ]label'), poly([[0, 0], [50, 0], [0, 50]], "car")]
    path = write(tmp_path, [task(results), task([poly([[0, 0], [50, 0], [0, 50]], "zebra")], id_=2,
                                                image="b.jpg")])
    assert [c.name for c in LabelStudioReader(path).categories] == ['a "quoted" ]label', "car", "zebra"]


def test_generic_labels_tag_is_read_by_its_value(tmp_path):
    value = {"points": [[0, 0], [50, 0], [0, 50]], "labels": ["car"]}
    path = write(tmp_path, [task([region("labels", value)])])
    seg = load_one(path)
    assert seg.segments[0].label == "car" and seg.label_map.any()


def test_percent_noise_is_accepted(tmp_path):
    path = write(tmp_path, [task([poly([[0, 0], [100.00000000000001, 0], [100, 100], [-1e-12, 100]])])])
    assert load_one(path).label_map.all()


# ----------------------------------------------------------------- bad input

WHERE = r"task 1 \('a.jpg'\), annotation 101: result\[0\] \(polygonlabels, id 'r'\)"


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (poly([[0, 0], [100.5, 0], [0, 50]]), WHERE + r": point 1 x 100.5 is outside \[0, 100\]"),
        (poly([[0, -3], [10, 0], [0, 50]]), WHERE + r": point 0 y -3 is outside"),
        (poly([[0, "a"], [10, 0], [0, 50]]), WHERE + r": point 0 y 'a' is not a finite number"),
        (poly([[0, True], [10, 0], [0, 50]]), WHERE + r": point 0 y True is not a finite number"),
        (poly([[0, 0, 1], [10, 0], [0, 50]]), WHERE + r": 'points' must be a list of \[x, y\] pairs"),
        (region("polygonlabels", {"polygonlabels": ["car"]}), WHERE + r": 'points' must be"),
        (region("polygonlabels", None), WHERE + r": no 'value' object"),
        (region("polygonlabels", {"points": [[0, 0], [1, 0], [0, 1]], "polygonlabels": "car"}),
         WHERE + r": 'polygonlabels' must be a list of label names"),
        (poly([[0, 0], [10, 0], [0, 50]], w=0), WHERE + r": image size 0x10 is empty"),
        (poly([[0, 0], [10, 0], [0, 50]], w=20.5), WHERE + r": original_width/original_height must be integers"),
        (poly([[0, 0], [10, 0], [0, 50]], image_rotation=90), WHERE + r": image_rotation 90 is not supported"),
    ],
)
def test_bad_polygon_names_file_task_and_region(tmp_path, result, message):
    path = write(tmp_path, [task([result], image="a.jpg")])
    with pytest.raises(ItemError, match=message) as info:
        load_one(path)
    assert info.value.file == str(path) and info.value.item == "a"


RWHERE = r"task 1 \('a.jpg'\), annotation 101: result\[0\] \(rectanglelabels, id 'r'\)"


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (rect(60, 0, 50, 10), RWHERE + r": the box ends at \(110, 10\) %, outside the image"),
        (rect(10, 0, -5, 10), RWHERE + r": width -5 is outside \[0, 100\]"),
        (rect(10, 0, 5, 10, rotation="x"), RWHERE + r": rotation 'x' is not a finite number"),
        (region("rectanglelabels", {"x": 1, "y": 1, "width": 3, "rectanglelabels": ["car"]}), RWHERE + ": no 'height'"),
    ],
)
def test_bad_rectangle_names_the_region(tmp_path, result, message):
    path = write(tmp_path, [task([result], image="a.jpg")])
    with pytest.raises(ItemError, match=message):
        load_one(path)


def test_rotated_box_leaving_the_image_is_clipped_with_a_warning(tmp_path):
    path = write(tmp_path, [task([rect(50, 50, 50, 50, rotation=45)])])
    seg = load_one(path)
    assert any("corners of the rotated box outside the 20x10 image; clipped" in w for w in seg.warnings)


BWHERE = r"task 1 \('a.jpg'\), annotation 101: result\[0\] \(brushlabels, id 'r'\)"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"format": "rle", "rle": brush.mask2rle(np.zeros((3, 4), np.uint8)), "brushlabels": ["road"]},
         BWHERE + r": brush RLE of the 20x10 image does not decode: it holds 48 values but the image's RGBA layer "
                  r"has 800"),
        ({"format": "rle", "rle": [1, 2, 3], "brushlabels": ["road"]}, BWHERE + r": .*ends in the middle of a value"),
        ({"format": "rle", "rle": [1, 2, 300], "brushlabels": ["road"]}, BWHERE + r": .*outside 0..255"),
        ({"format": "png", "rle": [1], "brushlabels": ["road"]}, BWHERE + r": brush format 'png' is not supported"),
        ({"format": "rle", "brushlabels": ["road"]}, BWHERE + r": brush format 'rle' is not supported"),
    ],
)
def test_bad_brush_names_the_region(tmp_path, value, message):
    path = write(tmp_path, [task([region("brushlabels", value)], image="a.jpg")])
    with pytest.raises(ItemError, match=message):
        load_one(path)


def test_sizes_that_disagree_fail(tmp_path):
    results = [poly([[0, 0], [10, 0], [0, 50]]), poly([[0, 0], [10, 0], [0, 50]], w=30, rid="r2")]
    path = write(tmp_path, [task(results, image="a.jpg")])
    with pytest.raises(ItemError, match=r"result\[1\] \(polygonlabels, id 'r2'\): original size 30x10 differs "
                                        r"from the earlier results' 20x10"):
        load_one(path)


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([3], r"task\[0\] is not an object"),
        ([{"id": 4, "data": "x.jpg", "annotations": []}], r"task 4 \(''\): no 'data' object"),
        ([{"id": 4, "data": {"image": "x.jpg"}, "annotations": {}}], r"task 4 \('x.jpg'\): no 'annotations' list"),
        ([{"id": 4, "data": {"image": "x.jpg"}, "annotations": [{"id": 1}]}], r"annotation has no 'result' list"),
    ],
)
def test_bad_tasks_fail_their_item(tmp_path, tasks, message):
    path = write(tmp_path, tasks)
    with pytest.raises(ItemError, match=message):
        load_one(path)


def test_unusable_sources(tmp_path):
    with pytest.raises(SourceError, match="file not found"):
        LabelStudioReader(tmp_path / "missing.json")
    with pytest.raises(SourceError, match="expected a JSON list of tasks"):
        LabelStudioReader(write(tmp_path, {"id": 1, "data": {}}))
    with pytest.raises(SourceError, match="the export lists no tasks"):
        LabelStudioReader(write(tmp_path, []))
    with pytest.raises(SourceError, match="JSON-MIN"):
        LabelStudioReader(write(tmp_path, [{"image": "/data/upload/1/a.jpg", "id": 1, "label": []}]))
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(SourceError, match="not valid JSON"):
        LabelStudioReader(tmp_path / "broken.json")
    with pytest.raises(SourceError, match="--annotation must be one of"):
        LabelStudioReader(EXPORT, annotation="last")
    with pytest.raises(SourceError, match="brush_threshold must be"):
        LabelStudioReader(EXPORT, brush_threshold=0)


def test_json_breaking_midway_names_the_task(tmp_path):
    first = task([poly([[0, 0], [10, 0], [0, 50]])])
    first["data"]["pad"] = "x" * 70_000  # past the stream's first 64 kB read: the break is in a later read
    second = task([poly([[0, 0], [10, 0], [0, 50]])], image="b.jpg", id_=2)
    second["data"]["pad"] = "y" * 70_000  # and the NaN in a read of its own
    second = json.dumps(second)
    (tmp_path / "nan.json").write_text(f"[{json.dumps(first)}, {second.replace('[0, 50]', '[0, NaN]')}]")
    items = LabelStudioReader(tmp_path / "nan.json").items()
    assert next(items).load().label_map.any()  # streamed: the first task is read before the second breaks
    with pytest.raises(SourceError, match=r"not valid JSON in task\[1\] \(NaN is not JSON\); Label Studio never"):
        next(items)


def test_export_cut_short_is_named_as_such(tmp_path):
    """A truncated export (a partial download) is said to end mid-task, not blamed on NaN."""
    tasks = [task([poly([[0, 0], [10, 0], [0, 50]])], image=f"{k}.jpg", id_=k) for k in range(3)]
    text = json.dumps(tasks)
    (tmp_path / "cut.json").write_text(text[: len(text) - 40])
    items = LabelStudioReader(tmp_path / "cut.json").items()
    with pytest.raises(SourceError, match=r"in task\[2\] .*ends in the middle of this task") as caught:
        list(items)
    assert "NaN" not in str(caught.value)


def nine_tasks() -> list[bytes]:
    """The JSON of 9 small tasks, task k with reference_id str(k)."""
    return [json.dumps(task([poly([[0, 0], [50, 0], [0, 50]])], image=f"/data/{k}.jpg", id_=k)).encode()
            for k in range(9)]


#: ways to break one task's JSON: (name, the broken text of task 5, the reason the message gives)
BREAKS = [
    ("cut in half", lambda t: t[: len(t) // 2], r"Expecting|Unterminated"),
    ("a bad token", lambda t: t.replace(b'"data"', b"data", 1), r"Expecting property name"),
    ("NaN", lambda t: t.replace(b"[0, 50]", b"[0, NaN]"), r"NaN is not JSON"),
    ("Infinity", lambda t: t.replace(b"[50, 0]", b"[-Infinity, 0]"), r"-Infinity is not JSON"),
    ("a byte that is not UTF-8", lambda t: t.replace(b"5.jpg", b"\xff.jpg"), r"invalid start byte"),
    ("half a surrogate pair", lambda t: t.replace(b"5.jpg", b"\\ud800.jpg"), r"the escape \\ud800 is half a"),
    ("a tab in a string", lambda t: t.replace(b"5.jpg", b"\t.jpg"), r"Invalid control character"),
]


@pytest.mark.parametrize("chunk", [7, 100, 1 << 16])  # reads cutting every task, some, none
@pytest.mark.parametrize(("name", "breaks", "reason"), BREAKS, ids=[b[0] for b in BREAKS])
def test_a_broken_task_in_the_middle_is_named_and_every_task_before_it_converts(
    tmp_path, monkeypatch, chunk, name, breaks, reason
):
    """The stream gives out each task before parsing the next: tasks 0-4 convert, and the
    error names task 5 (ijson decoded a whole 64 kB read first: it named task 0 and gave none)."""
    import segconvert.converters.label_studio as label_studio

    monkeypatch.setattr(label_studio, "READ_CHUNK", chunk)
    tasks = nine_tasks()
    tasks[5] = breaks(tasks[5])
    path = tmp_path / "export.json"
    path.write_bytes(b"[" + b", ".join(tasks) + b"]")
    done = []
    with pytest.raises(SourceError, match=rf"not valid (UTF-8 )?JSON in task\[5\] \(({reason})") as caught:
        for item in LabelStudioReader(path).items():
            done.append(item.load())
    assert [seg.reference_id for seg in done] == ["0", "1", "2", "3", "4"]
    assert all(seg.label_map.any() for seg in done)
    assert "cut short" not in str(caught.value)  # more tasks follow: the file is not cut


@pytest.mark.parametrize(("text", "whole", "message"), [
    (b"[" + b", ".join(nine_tasks()[:5]) + b" " + b", ".join(nine_tasks()[5:]) + b"]", 5,  # no comma after 4
     r"after task\[4\] \(expected ',' or '\]' after an element, at byte \d+\)"),
    (b"[" + b", ".join(nine_tasks()) + b"] x", 9, r"after task\[8\] \(extra data after the list, at byte \d+\)"),
])
def test_a_break_between_tasks_names_the_task_before_it(tmp_path, text, whole, message):
    path = tmp_path / "export.json"
    path.write_bytes(text)
    done = []
    with pytest.raises(SourceError, match=message):
        done.extend(item.reference_id for item in LabelStudioReader(path).items())
    assert done == [str(k) for k in range(whole)]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5), data=st.data(), chunk=st.integers(1, 300), indent=st.sampled_from([None, 1]))
def test_an_export_cut_anywhere_gives_every_whole_task(tmp_path_factory, n, data, chunk, indent):
    """Cut at any byte (a partial download): the tasks whose text is whole convert, and the
    error names the first one that is not (or, cut right after a task, that task), as cut short."""
    import segconvert.converters.label_studio as label_studio

    texts = [json.dumps(task([rect(10 * k, 0, 5, 5)], image=f"/data/{k}.jpg", id_=k), indent=indent)
             for k in range(n)]
    whole = "[" + ", ".join(texts) + "]"
    ends = [len("[") + sum(len(t) + 2 for t in texts[:k]) + len(texts[k]) for k in range(n)]
    at = data.draw(st.integers(0, len(whole)), label="cut at")
    path = tmp_path_factory.mktemp("cut") / "export.json"
    path.write_text(whole[:at])
    old, label_studio.READ_CHUNK = label_studio.READ_CHUNK, chunk
    try:
        if at < ends[0]:
            with pytest.raises(SourceError, match=r"in task\[0\] .*was the export cut short|expected a JSON list"):
                LabelStudioReader(path)
            return
        done: list[str] = []
        whole_tasks = sum(1 for end in ends if end <= at)
        if at == len(whole):
            done.extend(item.reference_id for item in LabelStudioReader(path).items())
        else:
            where = rf"after task\[{whole_tasks - 1}\]" if at == ends[whole_tasks - 1] or at == len(whole) - 1 \
                else rf"in task\[{whole_tasks}\]"
            with pytest.raises(SourceError, match=rf"{where} .*the file ends .*was the export cut short"):
                done.extend(item.reference_id for item in LabelStudioReader(path).items())
        assert done == [str(k) for k in range(whole_tasks)]
    finally:
        label_studio.READ_CHUNK = old


def test_an_export_with_a_bom_is_read(tmp_path):
    path = tmp_path / "export.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([task([poly([[0, 0], [50, 0], [0, 50]])])]).encode())
    assert load_one(path).label_map.any()


# ----------------------------------------------------------------- background and void labels


def semantic(seg, categories):
    """The class index map of a Segmentation (0 = background), through the semantic mode."""
    from segconvert.model.modes import ModePlan

    return ModePlan("semantic", categories=categories).apply(seg).resolved_label_map(np.int64)


def box(x0: int, y0: int, x1: int, y1: int, label="car", kind="rectangle", rid="r") -> dict:
    """A region covering pixels [x0, x1) x [y0, y1) of the 20x10 image, as a rectangle, a
    polygon or a brush (5 % of the width and 10 % of the height per pixel)."""
    if kind == "rectangle":
        return rect(5 * x0, 10 * y0, 5 * (x1 - x0), 10 * (y1 - y0), label=label, rid=rid)
    if kind == "polygon":
        return poly([[5 * x0, 10 * y0], [5 * x1, 10 * y0], [5 * x1, 10 * y1], [5 * x0, 10 * y1]], label=label, rid=rid)
    mask = np.zeros((10, 20), bool)
    mask[y0:y1, x0:x1] = True
    return brush_region(mask, label=label, rid=rid)


@pytest.mark.parametrize("kind", ["rectangle", "polygon", "brush"])
@pytest.mark.parametrize("name", ["background", "Background", "_background_", "__background__", "unlabeled"])
def test_background_region_paints_background_in_its_place(tmp_path, kind, name):
    path = write(tmp_path, [task([
        box(0, 0, 10, 8),  # car, bottom
        box(2, 2, 6, 6, label=name, kind=kind),  # cuts a hole in the car
        box(4, 4, 8, 8, label="person"),  # painted over the hole
    ])])
    reader = LabelStudioReader(path)
    assert [(c.id, c.name) for c in reader.categories] == [(1, "car"), (2, "person")]
    seg = next(iter(reader.items())).load()
    assert [(s.label, s.category_id) for s in seg.segments] == [("car", 1), ("person", 2)]
    assert set(seg.dropped_ids) == {2}
    expect = np.zeros((10, 20), np.int64)
    expect[0:8, 0:10] = 1
    expect[2:6, 2:6] = 0
    expect[4:8, 4:8] = 2
    np.testing.assert_array_equal(semantic(seg, reader.categories), expect)
    # painted first, a background region changes nothing
    first = write(tmp_path, [task([box(2, 2, 6, 6, label=name, kind=kind), box(0, 0, 10, 8)])], name="first.json")
    expect[expect == 2] = 1
    expect[2:6, 2:6] = 1
    np.testing.assert_array_equal(semantic(load_one(first), LabelStudioReader(first).categories), expect)


def test_reserved_names_are_no_categories_and_need_no_table_entry(tmp_path):
    tasks = [task([box(0, 0, 4, 4, label="__ignore__"), box(0, 0, 2, 2), box(5, 5, 9, 9, label="_background_"),
                   box(10, 0, 12, 2, label="person")])]
    path = write(tmp_path, tasks)
    assert [(c.id, c.name) for c in LabelStudioReader(path).categories] == [(1, "car"), (2, "person")]
    labels_txt = tmp_path / "labels.txt"  # labelme2voc's, as it is: __ignore__ -1, _background_ 0
    labels_txt.write_text("__ignore__\n_background_\ncar\nperson\n")
    just_car = tmp_path / "labels.json"
    just_car.write_text(json.dumps(["car", "person", "background"]))
    for labels in (labels_txt, just_car):
        reader = LabelStudioReader(path, labels=labels)
        assert [(c.id, c.name) for c in reader.categories] == [(1, "car"), (2, "person")]
        seg = next(iter(reader.items())).load()
        assert [s.label for s in seg.segments] == ["car", "person"] and set(seg.dropped_ids) == {1, 3}


@pytest.mark.parametrize("mode", ["panoptic", "instance", "semantic"])
def test_void_ignore_is_one_segment_kept_in_every_mode(tmp_path, mode):
    from segconvert.model.modes import ModePlan

    path = write(tmp_path, [task([
        box(0, 0, 2, 2, label="__ignore__", kind="polygon"),
        box(4, 4, 6, 6, label="person"),
        box(8, 0, 10, 2, label="__ignore__", kind="brush"),
        box(3, 3, 5, 5, label="__ignore__"),  # over the person
        box(12, 0, 14, 2),
    ])])
    reader = LabelStudioReader(path, void="ignore")
    assert [(c.id, c.name) for c in reader.categories] == [(1, "person"), (2, "car"), (3, "ignore")]
    seg = next(iter(reader.items())).load()
    assert [(s.label, s.category_id) for s in seg.segments] == [("ignore", 3), ("person", 1), ("car", 2)]
    assert seg.segments[0].pixels == (1, 3, 4) and not seg.dropped_ids
    assert seg.segments[0].metadata == {"source_label": "__ignore__"}
    kept = ModePlan(mode, categories=reader.categories).apply(seg)
    assert sorted(s.label for s in kept.segments) == ["car", "ignore", "person"]
    expect = np.zeros((10, 20), np.int64)
    expect[0:2, 0:2] = expect[0:2, 8:10] = 3
    expect[4:6, 4:6] = 1
    expect[3:5, 3:5] = 3  # painted last over the person
    expect[0:2, 12:14] = 2
    np.testing.assert_array_equal(semantic(seg, reader.categories), expect)
    default = load_one(path)  # --void background: void is background 0
    assert [s.label for s in default.segments] == ["person", "car"] and set(default.dropped_ids) == {1, 3, 4}
    expect[expect == 3] = 0
    np.testing.assert_array_equal(semantic(default, LabelStudioReader(path).categories), expect)


def test_void_ignore_uses_the_tables_own_ignore_class(tmp_path):
    path = write(tmp_path, [task([box(0, 0, 2, 2, label="__ignore__"), box(4, 4, 6, 6)])])
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"ignore": 7, "car": 1}))
    reader = LabelStudioReader(path, labels=labels, void="ignore")
    assert [(c.id, c.name) for c in reader.categories] == [(1, "car"), (7, "ignore")]
    assert [(s.label, s.category_id) for s in next(iter(reader.items())).load().segments] == [("ignore", 7),
                                                                                              ("car", 1)]


def test_bad_void_policy_is_refused():
    with pytest.raises(SourceError, match="void must be background or ignore, not 'skip'"):
        LabelStudioReader(EXPORT, void="skip")


@settings(max_examples=40, deadline=None)
@given(
    regions=st.lists(
        st.tuples(st.sampled_from(["car", "person", "background", "__ignore__"]),
                  st.sampled_from(["rectangle", "polygon", "brush"]),
                  st.integers(0, 17), st.integers(0, 8), st.integers(1, 6), st.integers(1, 6)),
        max_size=6,
    ),
    void=st.sampled_from(["background", "ignore"]),
)
def test_classes_equal_a_painter_of_the_class_ids(tmp_path_factory, regions, void):
    """Semantic classes = painting each region's class in result order (0 for background,
    void's own value), with each region's pixels from its own reference rasteriser."""
    regions = [(label, kind, x, y, min(w, 20 - x), min(h, 10 - y)) for label, kind, x, y, w, h in regions]
    results = [box(x, y, x + w, y + h, label=label, kind=kind, rid=f"r{k}")
               for k, (label, kind, x, y, w, h) in enumerate(regions)]
    path = write(tmp_path_factory.mktemp("v"), [task([box(0, 0, 1, 1, label="car"), box(0, 0, 1, 1, label="person"),
                                                      *results])])
    reader = LabelStudioReader(path, void=void)
    seg = next(iter(reader.items())).load()
    ids = {"car": 1, "person": 2, "background": 0, "__ignore__": 3 if void == "ignore" else 0}
    expect = np.zeros((10, 20), np.int64)
    expect[0, 0] = 2
    for (label, kind, _x, _y, _w, _h), res in zip(regions, results):
        value = res["value"]
        if kind == "brush":
            pixels = brush.decode_rle(value["rle"]).reshape(10, 20, 4)[:, :, 3] > 0
        else:
            corners = value["points"] if kind == "polygon" else [
                [value["x"], value["y"]], [value["x"] + value["width"], value["y"]],
                [value["x"] + value["width"], value["y"] + value["height"]], [value["x"], value["y"] + value["height"]]]
            pixels = coco_polygon((np.asarray(corners, float) / 100 * [20, 10]).ravel().tolist(), 10, 20)
        expect[pixels] = ids[label]
    np.testing.assert_array_equal(semantic(seg, reader.categories), expect)


def test_cli_void_ignore(tmp_path):
    path = write(tmp_path, [task([box(0, 0, 6, 6), box(2, 2, 4, 4, label="background"),
                                  box(8, 6, 12, 10, label="__ignore__")], image="/data/f.jpg")])
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["convert", str(path), str(out), "--from", "label-studio", "--mode", "semantic",
                                       "--void", "ignore", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(out / "masks" / "f.png"))
    (record,) = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    index = {a["label"]: a["index"] for a in record["annotations"]}
    assert set(index) == {"background", "car", "ignore"}
    expect = np.zeros((10, 20), np.uint8)
    expect[0:6, 0:6] = index["car"]
    expect[2:4, 2:4] = 0
    expect[6:10, 8:12] = index["ignore"]
    np.testing.assert_array_equal(mask, expect)


# ----------------------------------------------------------------- detection and CLI


def test_sniff(tmp_path):
    assert sniff(EXPORT) and registry.detect(EXPORT) == "label-studio" and FORMAT.name == "label-studio"
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert not sniff(coco) and not sniff(tmp_path) and not sniff(tmp_path / "missing.json")
    root = Path(__file__).resolve().parents[1] / "fixtures"
    assert not sniff(root / "coco-panoptic" / "panoptic.json")


def test_cli_batch_one_bad_task_fails_the_others_convert(tmp_path):
    tasks = json.loads(EXPORT.read_text())
    bad = task([poly([[0, 0], [120, 0], [0, 50]])], image="/data/upload/1/3f2a9c1e-bad.jpg", id_=3)
    tasks.insert(1, bad)
    src = write(tmp_path, tasks)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["convert", str(src), str(out), "--jobs", "1"])
    assert result.exit_code == 1, result.output
    assert f"reading {src} as label-studio" in result.output
    assert (f"{src} [bad]: task 3 ('bad.jpg'), annotation 103: result[0] (polygonlabels, id 'r'): point 1 x 120 is "
            "outside [0, 100]") in result.output
    assert "converted 2" in result.output and "failed 1" in result.output
    assert not (out / "masks" / "bad.png").exists()
    payloads = {json.loads(line)["reference_id"]: json.loads(line)
                for line in (out / "annotations.jsonl").read_text().splitlines()}
    assert list(payloads) == ["street", "park one"]
    for ref, payload in payloads.items():
        mask = np.asarray(Image.open(out / "masks" / f"{ref}.png"))
        expected = read_grid(FIXTURES / "expected" / f"{ref}.txt")
        np.testing.assert_array_equal(mask, expected)  # instance mode: regions 1..n in result order
        assert [s["label"] for s in payload["annotations"]][0] == "background"


def test_cli_semantic_mode_uses_the_labels_seen(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["convert", str(EXPORT), str(out), "--mode", "semantic", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(out / "masks" / "street.png"))
    np.testing.assert_array_equal(mask, read_grid(FIXTURES / "expected" / "street.txt"))  # road 1, car 2, person 3
    shutil.rmtree(out)


def test_cli_reader_options_reach_the_reader(tmp_path):
    tasks = json.loads(EXPORT.read_text()) + [{"id": 9, "data": {"image": "empty.jpg"}, "annotations": []}]
    src = write(tmp_path, tasks)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["convert", str(src), str(out), "--from", "label-studio", "--jobs", "1",
                                       "--annotation", "first", "--unannotated", "skip", "--upload-prefix", "keep"])
    assert result.exit_code == 0, result.output
    payloads = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert [p["reference_id"] for p in payloads] == ["3f2a9c1e-street", "park one"]
    assert payloads[1]["annotations"][1]["metadata"]["annotation_id"] == 20  # the first listed


def test_empty_label_is_skipped_with_a_warning(tmp_path):
    """A Segment with label '' is one Nucleus refuses (validate's bad-label): skipped, as CVAT's."""
    path = write(tmp_path, [task([poly([[0, 0], [50, 0], [50, 50]], label=""),
                                  poly([[60, 60], [90, 60], [90, 90]], rid="s")])])
    seg = load_one(path)
    assert [s.label for s in seg.segments] == ["car"]
    assert any("result[0]" in w and "empty label; skipped" in w for w in seg.warnings)


def test_region_id_of_another_kind_joins_nothing_and_does_not_crash(tmp_path):
    choice = {"id": ["r"], "from_name": "colour", "to_name": "image", "type": "choices", "value": {"choices": ["red"]}}
    path = write(tmp_path, [task([poly([[0, 0], [50, 0], [50, 50]], rid=["r"]), choice])])
    seg = load_one(path)
    assert len(seg.segments) == 1 and "attributes" not in seg.segments[0].metadata
    assert any("'choices'" in w for w in seg.warnings)


def test_impossibly_large_size_fails_naming_the_size(tmp_path):
    path = write(tmp_path, [task([poly([[0, 0], [50, 0], [50, 50]], w=10**12, h=10**12)])])
    with pytest.raises(ItemError, match=r"result\[0\].*image size 1000000000000x1000000000000 is .*32-bit"):
        load_one(path)


def test_duplicate_messages_over_thousands_of_tasks(tmp_path):
    """The reader's table of reference ids (on disk, hashes in memory) names the earlier task as a dict did."""
    images = [f"/data/upload/1/3f2a9c1e-f{k}.jpg" for k in range(5000)]  # the table grows several times
    images[2500] = "/data/upload/2/aaaaaaaa-f3.jpg"
    images[4999] = "s3://bucket/f3.png"  # a third time: the first task is named
    tasks = [task([], image=im, id_=k + 1) for k, im in enumerate(images)]
    path = write(tmp_path, tasks)
    items = list(LabelStudioReader(path).items())
    failed = {k: it for k, it in enumerate(items) if hasattr(it, "error")}
    assert sorted(failed) == [2500, 4999]
    expected = {
        2500: "task 2501 ('f3.jpg'): reference id 'f3' is already used by task 4 ('f3.jpg') "
              '(upload_prefix="keep" tells uploads apart)',
        4999: "task 5000 ('f3.png'): reference id 'f3' is already used by task 4 ('f3.jpg') "
              '(upload_prefix="keep" tells uploads apart)',
    }
    for k, message in expected.items():
        with pytest.raises(ItemError) as err:
            failed[k].load()
        assert str(err.value) == f"{path} [f3]: {message}"


def test_half_a_surrogate_pair_is_a_source_error(tmp_path):
    """yajl raises UnicodeDecodeError, not a JSONError, for "\\udc00": a message, not a traceback."""
    good = [json.dumps(task([poly([[0, 0], [50, 0], [0, 50]])], image=f"/data/a{k}.jpg", id_=k)).encode()
            for k in range(400)]  # past the parser's first read, which the constructor's check parses
    broken = good[0].replace(b'"/data/a0.jpg"', b'"a\\udc00.jpg"')
    path = tmp_path / "export.json"
    path.write_bytes(b"[" + b", ".join([*good, broken]) + b"]")
    refs = []
    with pytest.raises(SourceError, match=r"not valid JSON in task\[400\] \(the escape \\udc00 is half a surrogate"):
        refs.extend(item.reference_id for item in LabelStudioReader(path).items())
    assert len(refs) == 400  # every task before the broken one
    path.write_bytes(b"[" + broken + b"]")
    with pytest.raises(SourceError, match=r"not valid JSON in task\[0\] \(the escape \\udc00 is half a surrogate"):
        LabelStudioReader(path)
