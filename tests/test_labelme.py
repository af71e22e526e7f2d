"""LabelMe reader: fixtures with expected masks, labelme's own rasteriser, every bad input.

labelme itself is compared pixel for pixel where it is installed. Its package imports
Qt and onnxruntime at import time, so the tests load just ``labelme/utils/shape.py``
(numpy + PIL only) from the installed package; ``pip install --no-deps labelme`` is
enough. Without it those tests skip and the hand-checked fixtures still run.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segconvert.codecs import raster
from segconvert.codecs.shapes import crop_rle
from segconvert.converters.labelme import (
    FORMAT,
    LabelmeItem,
    LabelmeReader,
    draw_shape,
    load_label_table,
    sniff,
)
from segconvert.errors import ItemError, SourceError
from segconvert.model.ir import Category

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "labelme"


def _load_labelme_shape() -> types.ModuleType | None:
    """labelme's ``utils/shape.py`` without the package's Qt imports, or None."""
    spec = importlib.util.find_spec("labelme")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "utils" / "shape.py"
    if not path.is_file():
        return None
    stubs = {
        "labelme": types.ModuleType("labelme"),
        "labelme._label_file": types.ModuleType("labelme._label_file"),
    }
    stubs["labelme._label_file"].ShapeDict = dict  # type: ignore[attr-defined]
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        mod_spec = importlib.util.spec_from_file_location("_labelme_shape_reference", path)
        assert mod_spec is not None and mod_spec.loader is not None
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    except Exception:  # a labelme too old or too new to load this way: compare nothing
        return None
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


LABELME = _load_labelme_shape()
needs_labelme = pytest.mark.skipif(LABELME is None, reason="labelme not installed (pip install --no-deps labelme)")


def read_grid(path: Path) -> np.ndarray:
    rows = path.read_text().split()
    return np.array([[0 if c == "." else int(c) for c in row] for row in rows])


def shape(label, points, shape_type="polygon", group_id=None, **extra):
    return {
        "label": label,
        "points": points,
        "group_id": group_id,
        "shape_type": shape_type,
        "flags": {},
        **extra,
    }


def write_json(folder: Path, name: str, shapes, height=10, width=12, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": f"{name}.jpg", "imageData": None}
    if height is not None:
        doc["imageHeight"] = height
    if width is not None:
        doc["imageWidth"] = width
    doc.update(extra)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def load_one(folder: Path, **options):
    (item,) = list(LabelmeReader(folder, **options).items())
    return item.load()


def b64_png(array: np.ndarray) -> str:
    buf = io.BytesIO()
    PIL.Image.fromarray(array.astype(np.uint8)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


# ----------------------------------------------------------------- fixtures, expected masks


@pytest.mark.parametrize("stem", ["shapes", "grouped", "mask"])
def test_fixture_matches_expected_mask(stem):
    items = {it.reference_id: it for it in LabelmeReader(FIXTURES / "dataset").items()}
    seg = items[stem].load()
    np.testing.assert_array_equal(seg.label_map, read_grid(FIXTURES / "expected" / f"{stem}.txt"))
    assert seg.label_map.dtype == np.uint16


@needs_labelme
@pytest.mark.parametrize("stem", ["shapes", "grouped", "mask"])
def test_fixture_matches_labelme_shapes_to_label(stem):
    path = FIXTURES / "dataset" / f"{stem}.json"
    doc = json.loads(path.read_text())
    shapes = [s for s in doc["shapes"] if s["shape_type"] != "point"]  # we skip points; labelme draws them
    for s in shapes:
        if s["shape_type"] == "mask":
            s["mask"] = np.asarray(PIL.Image.open(io.BytesIO(base64.b64decode(s["mask"])))).astype(bool)
    values = {s["label"]: i for i, s in enumerate(shapes, start=1)}
    _, ins = LABELME.shapes_to_label((doc["imageHeight"], doc["imageWidth"]), shapes, values)
    seg = LabelmeItem(stem, str(path)).load()
    np.testing.assert_array_equal(seg.label_map, ins)


def test_fixture_segment_table():
    items = {it.reference_id: it for it in LabelmeReader(FIXTURES / "dataset").items()}
    seg = items["grouped"].load()
    # (label, group_id) makes an instance, as in labelme's shapes_to_label: the two group-1
    # cars are one instance, the group-1 person another, the ungrouped car a third
    assert [(s.id, s.label, s.metadata.get("group_id")) for s in seg.segments] == [
        (1, "car", 1),
        (2, "tree", None),
        (3, "person", 1),
        (4, "car", None),
    ]
    assert all(s.isthing and s.category_id is None for s in seg.segments)
    shapes = items["shapes"].load()
    assert [s.metadata["shape_type"] for s in shapes.segments] == [
        "rectangle",
        "polygon",
        "circle",
        "line",
        "linestrip",
    ]


def test_reader_basics():
    reader = LabelmeReader(FIXTURES / "dataset")
    assert len(reader) == 3
    assert [it.reference_id for it in reader.items()] == ["grouped", "mask", "shapes"]
    assert reader.categories is None  # no dataset-wide table without --labels
    assert reader.default_mode == "instance"
    assert FORMAT.name == "labelme" and FORMAT.reader is LabelmeReader
    item = next(iter(reader.items()))
    assert pickle.loads(pickle.dumps(item)).load().segments == item.load().segments


def test_sniff(tmp_path):
    assert sniff(FIXTURES / "dataset")
    assert not sniff(tmp_path)
    (tmp_path / "a.json").write_text('{"images": [], "annotations": []}')
    assert not sniff(tmp_path)
    assert not sniff(FIXTURES / "dataset" / "shapes.json")


# ----------------------------------------------------------------- labelme's rasteriser


coord = st.floats(min_value=-15, max_value=60, allow_nan=False, allow_infinity=False)
half = st.integers(min_value=-30, max_value=120).map(lambda v: v / 2)  # x.5 values hit rounding edges
point = st.tuples(st.one_of(coord, half), st.one_of(coord, half))


@needs_labelme
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["polygon", "rectangle", "circle", "line", "linestrip"]),
    pts=st.lists(point, min_size=2, max_size=7),
    line_width=st.integers(min_value=1, max_value=12),
)
def test_draw_shape_matches_labelme_shape_to_mask(kind, pts, line_width):
    need = {"rectangle": 2, "circle": 2, "line": 2}.get(kind)
    if need:
        pts = pts[:need]
    if kind == "polygon" and len(pts) < 3:
        pts = [*pts, (pts[0][0] + 3.25, pts[1][1] - 2.5)]
    h, w = 37, 45
    ours = draw_shape(kind, np.asarray(pts, float), h, w, line_width)
    theirs = LABELME.shape_to_mask((h, w), [list(p) for p in pts], kind, line_width=line_width)
    np.testing.assert_array_equal(ours, theirs)


@needs_labelme
def test_draw_shape_matches_labelme_far_from_origin():
    # the crop offset is large here: the integer shift must not change PIL's rounding
    h, w = 900, 1300
    pts = [(1210.5, 850.25), (1290.75, 870.5), (1250.125, 899.5), (1199.5, 880.0)]
    for kind, p in [("polygon", pts), ("linestrip", pts), ("circle", pts[:2]), ("rectangle", pts[:2])]:
        ours = draw_shape(kind, np.asarray(p), h, w, 10)
        theirs = LABELME.shape_to_mask((h, w), [list(q) for q in p], kind)
        np.testing.assert_array_equal(ours, theirs, err_msg=kind)


@needs_labelme
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shapes=st.lists(
        st.tuples(st.sampled_from(["polygon", "rectangle", "circle", "line", "linestrip"]),
                  st.lists(point, min_size=3, max_size=6), st.sampled_from(["a", "b", "c"])),
        min_size=1, max_size=6,
    ),
)
def test_whole_image_matches_labelme_shapes_to_label(tmp_path_factory, shapes):
    """Painter's order over many float shapes, on the reader's own path (load), against labelme."""
    h, w = 37, 45
    doc_shapes = []
    for kind, pts, label in shapes:
        need = {"rectangle": 2, "circle": 2, "line": 2}.get(kind)
        doc_shapes.append({"label": label, "points": [list(p) for p in (pts[:need] if need else pts)],
                           "shape_type": kind, "group_id": None})
    root = tmp_path_factory.mktemp("lm")
    (root / "x.json").write_text(json.dumps({"shapes": doc_shapes, "imageHeight": h, "imageWidth": w}))
    (item,) = LabelmeReader(root).items()
    ours = item.load().label_map
    # labelme: instance ids by (label, group_id) -- every shape its own instance here, in file order
    _, theirs = LABELME.shapes_to_label((h, w), doc_shapes, {s["label"]: 1 for s in doc_shapes})
    np.testing.assert_array_equal(ours, theirs)


@settings(max_examples=200, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    data=st.data(),
)
def test_crop_rle_paints_the_crop_at_its_place(h, w, data):
    # crops touching the top and bottom rows make runs that meet across columns
    ch, cw = data.draw(st.integers(0, h)), data.draw(st.integers(0, w))
    top, left = data.draw(st.integers(0, h - ch)), data.draw(st.integers(0, w - cw))
    bits = data.draw(st.lists(st.booleans(), min_size=ch * cw, max_size=ch * cw))
    crop = np.array(bits, dtype=bool).reshape(ch, cw)
    expect = np.zeros((h, w), dtype=np.uint16)
    expect[top : top + ch, left : left + cw] = crop
    rle = crop_rle(crop, left, top, h, w)
    assert int(np.sum(rle["counts"])) == h * w
    np.testing.assert_array_equal(raster.paint(h, w, [(1, rle)]), expect)


def test_rectangle_and_circle_by_hand():
    rect = draw_shape("rectangle", np.array([[5.0, 4.0], [2.0, 1.0]]), 8, 8, 10)
    expect = np.zeros((8, 8), bool)
    expect[1:5, 2:6] = True  # PIL rectangles include both corners, in any point order
    np.testing.assert_array_equal(rect, expect)
    circle = draw_shape("circle", np.array([[10.0, 10.0], [10.0, 13.0]]), 21, 21, 10)
    ys, xs = np.nonzero(circle)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (7, 13, 7, 13)  # radius = distance of the points


# ----------------------------------------------------------------- instances and overlaps


def overlap_folder(tmp_path: Path) -> Path:
    write_json(
        tmp_path,
        "ov",
        [
            shape("big", [[0, 0], [9, 7]], "rectangle"),
            shape("small", [[2, 2], [4, 4]], "rectangle"),
            shape("mid", [[3, 3], [8, 6]], "rectangle"),
        ],
    )
    return tmp_path


def test_overlap_paint_keeps_file_order(tmp_path):
    seg = load_one(overlap_folder(tmp_path))
    assert seg.label_map[3, 3] == 3 and seg.label_map[2, 2] == 2 and seg.label_map[0, 0] == 1


def test_overlap_small_on_top(tmp_path):
    seg = load_one(overlap_folder(tmp_path), overlap="small-on-top")
    assert seg.label_map[3, 3] == 2  # "small" (9 px) is painted after "mid" (24 px)
    assert seg.label_map[6, 8] == 3 and seg.label_map[0, 0] == 1


def test_overlap_error_reports_pixels(tmp_path):
    with pytest.raises(ItemError) as err:
        load_one(overlap_folder(tmp_path), overlap="error")
    assert "ov.json" in str(err.value) and "[ov]" in str(err.value)
    assert "overlap" in str(err.value) and "px" in str(err.value)


def test_overlap_error_ignores_shapes_of_one_instance(tmp_path):
    write_json(
        tmp_path,
        "g",
        [
            shape("car", [[0, 0], [5, 5]], "rectangle", group_id=4),
            shape("car", [[3, 3], [8, 8]], "rectangle", group_id=4),
        ],
    )
    seg = load_one(tmp_path, overlap="error")  # one instance: its parts may overlap
    assert np.count_nonzero(seg.label_map == 1) == 6 * 6 + 6 * 6 - 3 * 3
    write_json(
        tmp_path,
        "g",
        [
            shape("car", [[0, 0], [5, 5]], "rectangle", group_id=4),
            shape("car", [[3, 3], [8, 8]], "rectangle", group_id=5),
        ],
    )
    with pytest.raises(ItemError, match="9 pixels"):
        load_one(tmp_path, overlap="error")


def test_small_on_top_uses_the_area_of_the_whole_instance(tmp_path):
    write_json(
        tmp_path,
        "g",
        [
            shape("a", [[0, 0], [1, 1]], "rectangle", group_id=1),  # 4 px ...
            shape("b", [[0, 0], [4, 4]], "rectangle"),  # 25 px
            shape("a", [[6, 0], [11, 9]], "rectangle", group_id=1),  # ... + 60 px: instance a is the larger
        ],
    )
    seg = load_one(tmp_path, overlap="small-on-top")
    assert seg.label_map[0, 0] == 2


def test_unknown_overlap_policy(tmp_path):
    with pytest.raises(SourceError, match="overlap"):
        LabelmeReader(overlap_folder(tmp_path), overlap="sideways")


def test_line_width_option(tmp_path):
    write_json(tmp_path, "l", [shape("wire", [[1, 5], [10, 5]], "line")], height=12, width=12)
    thin = load_one(tmp_path, line_width=1)
    assert np.count_nonzero(thin.label_map) == 10
    wide = load_one(tmp_path)  # labelme's default width: 10
    assert np.count_nonzero(wide.label_map) > 60


# ----------------------------------------------------------------- labels


def test_labels_list_gives_categories_and_ids(tmp_path):
    write_json(
        tmp_path / "d",
        "a",
        [shape("dog", [[0, 0], [2, 2]], "rectangle"), shape("cat", [[4, 4], [6, 6]], "rectangle")],
    )
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["cat", "dog"]))
    reader = LabelmeReader(tmp_path / "d", labels=labels)
    assert reader.categories == [Category(1, "cat"), Category(2, "dog")]
    seg = next(iter(reader.items())).load()
    assert [(s.label, s.category_id) for s in seg.segments] == [("dog", 2), ("cat", 1)]


def test_unknown_label_with_labels_is_an_item_error(tmp_path):
    write_json(
        tmp_path / "d",
        "a",
        [shape("cat", [[0, 0], [2, 2]], "rectangle"), shape("cow", [[4, 4], [6, 6]], "rectangle")],
    )
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"cat": 1}))
    with pytest.raises(ItemError, match=r"a\.json \[a\]: shapes\[1\] \('cow'\): label 'cow' is not in the labels"):
        load_one(tmp_path / "d", labels=labels)


def test_labels_map_several_labels_onto_one_class(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps(
            {
                "car": {"id": 1, "name": "vehicle"},
                "truck": {"id": 1, "name": "vehicle"},
                "sky": {"id": 2, "isthing": False},
            }
        )
    )
    table, cats = load_label_table(labels)
    assert cats == [Category(1, "vehicle"), Category(2, "sky", isthing=False)]
    write_json(
        tmp_path / "d",
        "a",
        [shape("truck", [[0, 0], [2, 2]], "rectangle"), shape("sky", [[4, 4], [6, 6]], "rectangle")],
    )
    seg = load_one(tmp_path / "d", labels=labels)
    assert [(s.label, s.category_id, s.isthing) for s in seg.segments] == [
        ("vehicle", 1, True),
        ("sky", 2, False),
    ]


def test_labels_text_file_like_labelme2voc(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("__ignore__\n_background_\ncat\ndog\n\n")
    _, cats = load_label_table(labels)
    assert [(c.id, c.name) for c in cats] == [(1, "cat"), (2, "dog")]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"cat": 1, "dog": 1}', "share an id"),
        ('{"cat": 0}', "positive integer id"),
        ('["cat", "cat"]', "twice"),
        ("[]", "no labels"),
        ('"cat"', "JSON list"),
    ],
)
def test_bad_labels_file_is_a_source_error(tmp_path, content, message):
    labels = tmp_path / "labels.json"
    labels.write_text(content)
    with pytest.raises(SourceError, match=message):
        load_label_table(labels)


# ----------------------------------------------------------------- bad input, each named


def test_polygon_of_two_points_is_skipped_with_a_warning(tmp_path):
    write_json(tmp_path, "p", [shape("a", [[0, 0], [5, 5]]), shape("b", [[1, 1], [3, 1], [3, 3]])])
    seg = load_one(tmp_path)
    assert [s.label for s in seg.segments] == ["b"] and seg.segments[0].id == 1
    assert seg.warnings == ["shapes[0] ('a'): a polygon of 2 points (fewer than 3); skipped"]


def test_point_is_skipped_with_a_warning(tmp_path):
    write_json(tmp_path, "p", [shape("pin", [[3, 3]], "point")])
    seg = load_one(tmp_path)
    assert seg.segments == [] and not seg.label_map.any()
    assert "point shapes have no area" in seg.warnings[0]


@pytest.mark.parametrize("bad", [float("nan"), "12", None, True, float("inf")])
def test_non_numeric_or_nan_coordinates_fail_the_item(tmp_path, bad):
    path = tmp_path / "n.json"
    write_json(tmp_path, "n", [shape("ok", [[0, 0], [2, 2]], "rectangle"), shape("bad", [[1, 1], [bad, 3], [4, 4]])])
    if isinstance(bad, float) and not math.isfinite(bad):  # json.dumps writes NaN/Infinity, json.load reads them
        assert ("NaN" in path.read_text()) or ("Infinity" in path.read_text())
    with pytest.raises(ItemError) as err:
        load_one(tmp_path)
    assert str(err.value).startswith(f"{path} [n]: shapes[1] ('bad'): coordinate")
    assert "not a finite number" in str(err.value)


def test_malformed_points_fail_the_item(tmp_path):
    write_json(tmp_path, "m", [shape("a", [[0, 0, 1], [2, 2]], "rectangle")])
    with pytest.raises(ItemError, match=r"shapes\[0\] \('a'\): 'points' must be a list of \[x, y\] pairs"):
        load_one(tmp_path)


def test_outside_coordinates_are_clipped_and_warned(tmp_path):
    write_json(
        tmp_path,
        "o",
        [shape("a", [[-3, -2], [8, -2], [8, 5], [-3, 5]]), shape("b", [[6, 6], [20, 9]], "rectangle")],
    )
    seg = load_one(tmp_path)
    assert seg.warnings == [
        "shapes[0] ('a'): 3 of 4 points outside the 12x10 image; clipped",
        "shapes[1] ('b'): 1 of 2 points outside the 12x10 image; clipped",
    ]
    assert seg.label_map[0, 0] == 1 and seg.label_map[9, 11] == 2 and seg.label_map.shape == (10, 12)


@pytest.mark.parametrize("points", [[[0, 0], [1e12, 0], [0, 4]], [[-13, 0], [5, 0], [0, 4]], [[0, 0], [5, 0], [0, 21]]])
def test_points_far_outside_fail_the_item(tmp_path, points):
    # PIL misdraws coordinates in the billions; one image size out means a wrong image size
    write_json(tmp_path, "f", [shape("a", points)])
    with pytest.raises(ItemError, match=r"shapes\[0\] \('a'\): point .* more than an image size outside the 12x10"):
        load_one(tmp_path)


def test_points_on_the_border_are_not_outside(tmp_path):
    write_json(tmp_path, "o", [shape("a", [[0, 0], [12, 10]], "rectangle")])
    assert load_one(tmp_path).warnings == []


def test_no_image_size_fails_the_item(tmp_path):
    path = write_json(tmp_path, "s", [shape("a", [[0, 0], [2, 2]], "rectangle")], height=None, width=None)
    with pytest.raises(ItemError) as err:
        load_one(tmp_path)
    assert str(err.value) == (
        f"{path} [s]: no image size: imageHeight/imageWidth missing and no readable image 's.jpg' beside the "
        "JSON; pass images=<dir> to read it from the images"
    )


def test_image_beside_the_json_gives_the_size(tmp_path):
    # labelme's LabelFile reads imagePath relative to the JSON when imageData is null, as in
    # labelme's own examples (no imageHeight/imageWidth in the older ones)
    write_json(tmp_path, "s", [shape("a", [[0, 0], [2, 2]], "rectangle")], height=None, width=None)
    PIL.Image.new("RGB", (7, 5)).save(tmp_path / "s.jpg")
    assert load_one(tmp_path).label_map.shape == (5, 7)


def test_images_dir_gives_the_size(tmp_path):
    write_json(tmp_path / "ann", "s", [shape("a", [[0, 0], [2, 2]], "rectangle")], height=None, width=None)
    (tmp_path / "img").mkdir()
    PIL.Image.new("RGB", (7, 5)).save(tmp_path / "img" / "s.jpg")
    seg = load_one(tmp_path / "ann", images=tmp_path / "img")
    assert seg.label_map.shape == (5, 7)


def test_images_dir_without_the_image_fails_the_item(tmp_path):
    write_json(tmp_path / "ann", "s", [], height=None, width=None)
    (tmp_path / "img").mkdir()
    with pytest.raises(ItemError, match="no readable image"):
        load_one(tmp_path / "ann", images=tmp_path / "img")


def test_embedded_image_data_gives_the_size(tmp_path):
    buf = io.BytesIO()
    PIL.Image.new("RGB", (9, 4)).save(buf, "PNG")
    write_json(tmp_path, "e", [], height=None, width=None, imageData=base64.b64encode(buf.getvalue()).decode())
    assert load_one(tmp_path).label_map.shape == (4, 9)


@pytest.mark.parametrize("h, w, message", [("10", 12, "must be integers"), (0, 12, "empty"), (10, None, "integers"),
                                           (10.5, 12, "must be integers"), (True, 12, "must be integers")])
def test_bad_image_size_fails_the_item(tmp_path, h, w, message):
    write_json(tmp_path, "s", [], height=h, width=w)
    with pytest.raises(ItemError, match=message):
        load_one(tmp_path)


def test_unknown_shape_type_fails_the_item(tmp_path):
    write_json(tmp_path, "u", [shape("a", [[0, 0], [2, 2]], "spline")])
    with pytest.raises(ItemError, match=r"shapes\[0\] \('a'\): unknown shape_type 'spline'"):
        load_one(tmp_path)


def test_mask_shape_placed_at_its_points(tmp_path):
    patch = np.array([[1, 0, 1], [0, 1, 0]])
    write_json(tmp_path, "m", [shape("m", [[4, 2], [6, 3]], "mask", mask=b64_png(patch))])
    seg = load_one(tmp_path)
    expect = np.zeros((10, 12), int)
    expect[2:4, 4:7] = patch
    np.testing.assert_array_equal(seg.label_map, expect)


def test_mask_shape_clipped_at_the_border(tmp_path):
    write_json(tmp_path, "m", [shape("m", [[10, 8], [13, 11]], "mask", mask=b64_png(np.ones((4, 4))))])
    seg = load_one(tmp_path)
    assert np.count_nonzero(seg.label_map) == 4 and seg.label_map[9, 11] == 1
    assert "outside the 12x10 image; clipped" in seg.warnings[0]


@pytest.mark.parametrize(
    "mask, message",
    [
        (None, "needs 'mask'"),
        ("not base64 at all!", "not a base64-encoded image"),
        (b64_png(np.ones((3, 3))), "mask image is 3x3 but its points span 3x2"),
        (b64_png(np.ones((2, 3, 3))), "one channel"),
    ],
)
def test_bad_mask_shape_fails_the_item(tmp_path, mask, message):
    write_json(tmp_path, "m", [shape("m", [[4, 2], [6, 3]], "mask", mask=mask)])
    with pytest.raises(ItemError, match=message):
        load_one(tmp_path)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"imageHeight": 4}', "no 'shapes' list"),
        ("[1, 2]", "no 'shapes' list"),
    ],
)
def test_broken_json_fails_only_its_item(tmp_path, content, message):
    write_json(tmp_path, "good", [])
    (tmp_path / "bad.json").write_text(content)
    items = list(LabelmeReader(tmp_path).items())
    with pytest.raises(ItemError, match=message):
        items[0].load()
    assert items[1].load().reference_id == "good"


def test_source_errors(tmp_path):
    with pytest.raises(SourceError, match="folder"):
        LabelmeReader(tmp_path / "missing")
    with pytest.raises(SourceError, match="images must be a folder"):
        LabelmeReader(tmp_path, images=tmp_path / "nope")


# ----------------------------------------------------------------- end to end


def test_convert_to_nucleus(tmp_path):
    segconvert = pytest.importorskip("segconvert")
    out = tmp_path / "out"
    summary = segconvert.convert(FIXTURES / "dataset", out, from_format="labelme", jobs=1)
    assert summary.ok and summary.converted == 3
    assert any("point shapes have no area" in w for w in summary.warnings)
    mask = np.asarray(PIL.Image.open(out / "masks" / "grouped.png"))
    np.testing.assert_array_equal(mask, read_grid(FIXTURES / "expected" / "grouped.txt"))
    records = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    by_ref = {r["reference_id"]: r for r in records}
    assert [(a["label"], a["index"]) for a in by_ref["grouped"]["annotations"]] == [
        ("background", 0),
        ("car", 1),
        ("tree", 2),
        ("person", 3),
        ("car", 4),
    ]


def test_convert_semantic_needs_labels_or_compact(tmp_path):
    segconvert = pytest.importorskip("segconvert")
    with pytest.raises(SourceError, match="compact"):
        segconvert.convert(FIXTURES / "dataset", tmp_path / "o1", from_format="labelme", mode="semantic", jobs=1)
    summary = segconvert.convert(
        FIXTURES / "dataset", tmp_path / "o2", from_format="labelme", mode="semantic", index="compact", jobs=1
    )
    assert summary.ok


# ----------------------------------------------------------------- labelme2voc's conventions

VOC_EXAMPLE = FIXTURES / "voc_example"  # labelme's examples/*_segmentation/data_annotated, imageData dropped
VOC_LABELS = VOC_EXAMPLE / "labels.txt"


def labelme2voc_class_ids(labels_file: Path) -> dict[str, int]:
    """labelme2voc's class_name_to_id: line i is class i - 1 (__ignore__ -1, _background_ 0)."""
    return {line.strip(): i - 1 for i, line in enumerate(labels_file.read_text().splitlines())}


def labelme2voc(json_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """labelme2voc's SegmentationClass PNG values and SegmentationObject ids for one JSON.

    As the script does: shapes_to_label with the labels.txt ids, ``ins[cls == -1] = 0``, and
    the class map saved as uint8 (lblsave), where class -1 becomes 255.
    """
    doc = json.loads(json_path.read_text())
    size = (doc.get("imageHeight"), doc.get("imageWidth"))
    if None in size:
        with PIL.Image.open(json_path.parent / doc["imagePath"]) as im:
            size = (im.height, im.width)
    cls, ins = LABELME.shapes_to_label(size, doc["shapes"], labelme2voc_class_ids(VOC_LABELS))
    ins[cls == -1] = 0
    return cls.astype(np.uint8), ins


def cli(*args: object):
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def payloads(out: Path) -> dict[str, dict]:
    return {r["reference_id"]: r for r in map(json.loads, (out / "annotations.jsonl").read_text().splitlines())}


def test_labelme2voc_labels_txt_is_accepted_as_it_is(tmp_path):
    # labelme's own example failed 2 of 3 images here: the reader dropped labels.txt's
    # __ignore__ line, so the __ignore__ shapes were labels "not in the --labels table"
    table, cats = load_label_table(VOC_LABELS)
    ids = labelme2voc_class_ids(VOC_LABELS)
    assert [(c.id, c.name) for c in cats] == [(i, n) for n, i in ids.items() if i > 0]
    assert "__ignore__" not in table and "_background_" not in table
    out = tmp_path / "o"
    result = cli("convert", VOC_EXAMPLE / "data_annotated", out, "--from", "labelme", "--labels", VOC_LABELS,
                 "--mode", "semantic", "-j", "1")
    assert result.exit_code == 0, result.output
    assert "converted 3, skipped 0 (done before), failed 0 of 3" in result.output


@needs_labelme
@pytest.mark.parametrize("void", ["background", "ignore"])
def test_semantic_equals_labelme2voc_segmentation_class(tmp_path, void):
    out = tmp_path / "o"
    result = cli("convert", VOC_EXAMPLE / "data_annotated", out, "--from", "labelme", "--labels", VOC_LABELS,
                 "--mode", "semantic", "--void", void, "-j", "1")
    assert result.exit_code == 0, result.output
    names = {i: n for n, i in labelme2voc_class_ids(VOC_LABELS).items()}
    ignore_index = max(names) + 1  # the ignore class follows the table
    records = payloads(out)
    for path in sorted((VOC_EXAMPLE / "data_annotated").glob("*.json")):
        voc, _ = labelme2voc(path)
        assert (voc == 255).any() == (path.stem != "2011_000025")  # the example's __ignore__ shapes
        ours = np.asarray(PIL.Image.open(out / "masks" / f"{path.stem}.png"))
        expect = np.where(voc == 255, 0 if void == "background" else ignore_index, voc)
        np.testing.assert_array_equal(ours, expect)
        labels = {a["index"]: a["label"] for a in records[path.stem]["annotations"]}
        want = {0: "background"} | {int(v): names[int(v)] for v in np.unique(voc) if 0 < v < 255}
        if void == "ignore" and (voc == 255).any():
            want[ignore_index] = "ignore"
        assert labels == want


@needs_labelme
@pytest.mark.parametrize("void", ["background", "ignore"])
def test_instances_equal_labelme2voc_segmentation_object(void):
    """The same objects as labelme2voc's SegmentationObject (renumbered 1..n), with its class per object."""
    reader = LabelmeReader(VOC_EXAMPLE / "data_annotated", labels=VOC_LABELS, void=void)
    for item in reader.items():
        seg = item.load()
        voc, ins = labelme2voc(Path(item.source))
        view = segconvert_modes("instance").apply(seg)
        values = np.zeros(int(seg.label_map.max()) + 1, np.int64)
        for s in view.segments:
            for raw in s.pixels:
                values[raw] = s.id
        ours = values[seg.label_map]
        ignored = (voc == 255) & (void == "ignore")
        theirs = np.where(ignored, -1, ins)  # the one ignore segment is no object of labelme2voc's
        pairs = np.unique(np.stack([ours.ravel(), theirs.ravel()]), axis=1)
        assert pairs.shape[1] == len(np.unique(ours)) == len(np.unique(theirs)), item.reference_id  # a bijection
        assert ((ours == 0) == (theirs == 0)).all()
        by_id = {s.id: s for s in view.segments}
        for o, t in pairs.T:
            if t > 0:
                assert by_id[o].category_id == int(np.bincount(voc[theirs == t]).argmax())
            elif t == -1:
                assert by_id[o].label == "ignore" and by_id[o].category_id == 21


def segconvert_modes(mode: str):
    from segconvert.model.modes import ModePlan

    return ModePlan(mode)


def test_background_shape_paints_background_in_its_place(tmp_path):
    # labelme2voc: class 0 where a _background_ shape is drawn, over what was below it
    write_json(tmp_path, "b", [
        shape("car", [[0, 0], [9, 7]], "rectangle"),
        shape("_background_", [[2, 2], [4, 4]], "rectangle"),
        shape("person", [[3, 3], [6, 6]], "rectangle"),
    ])
    for labels in (None, tmp_path / "labels.txt"):
        (tmp_path / "labels.txt").write_text("__ignore__\n_background_\ncar\nperson\n")
        seg = load_one(tmp_path, labels=labels)
        assert [s.label for s in seg.segments] == ["car", "person"]
        view = segconvert_modes("instance").apply(seg)
        from segconvert.model.pack import pack

        packed = pack(view, renumber=True)
        mask, segments = packed.mask, packed.segments
        assert mask[2, 2] == 0 and mask[4, 2] == 0 and mask[0, 0] == 1 and mask[3, 3] == 2 and mask[5, 5] == 2
        assert [(s["label"], s["index"]) for s in segments] == [("background", 0), ("car", 1), ("person", 2)]


def test_void_ignore_without_labels_is_one_segment_in_every_mode(tmp_path):
    write_json(tmp_path, "v", [
        shape("__ignore__", [[0, 0], [2, 2]], "rectangle"),
        shape("dog", [[4, 4], [6, 6]], "rectangle"),
        shape("__ignore__", [[8, 0], [9, 1]], "rectangle"),
    ])
    seg = load_one(tmp_path, void="ignore")
    assert [(s.label, s.category_id) for s in seg.segments] == [("ignore", None), ("dog", None)]
    assert len(seg.segments[0].pixels) == 2  # both __ignore__ shapes
    for mode in ("panoptic", "instance"):
        assert [s.label for s in segconvert_modes(mode).apply(seg).segments] == ["ignore", "dog"]
    background = load_one(tmp_path)  # the default: void is background
    assert [s.label for s in background.segments] == ["dog"]
    assert set(background.dropped_ids) == {1, 3}


def test_bad_void_policy_is_refused(tmp_path):
    write_json(tmp_path, "v", [])
    with pytest.raises(SourceError, match="void must be background or ignore, not 'skip'"):
        LabelmeReader(tmp_path, void="skip")


def test_jsons_in_subfolders_are_found(tmp_path):
    write_json(tmp_path / "train", "a", [shape("cat", [[0, 0], [2, 2]], "rectangle")])
    write_json(tmp_path / "val" / "deep", "b", [])
    write_json(tmp_path, "c", [])
    reader = LabelmeReader(tmp_path)
    assert [(it.reference_id, Path(it.source).relative_to(tmp_path).as_posix()) for it in reader.items()] == [
        ("c", "c.json"), ("a", "train/a.json"), ("b", "val/deep/b.json"),
    ]
    assert sniff(tmp_path / "val")


def test_one_stem_in_two_folders_fails_both_naming_the_files(tmp_path):
    write_json(tmp_path / "train", "a", [])
    write_json(tmp_path / "val", "a", [])
    write_json(tmp_path, "b", [])
    items = list(LabelmeReader(tmp_path).items())
    assert items[0].load().reference_id == "b"
    for item in items[1:]:
        with pytest.raises(ItemError) as err:
            item.load()
        for where in ("train", "val"):
            assert str(tmp_path / where / "a.json") in str(err.value)
        assert "reference_id 'a' comes from 2 files" in str(err.value)


def test_a_folder_without_labelme_json_is_an_unusable_source(tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("convert", tmp_path / "empty", tmp_path / "o", "--from", "labelme")
    assert result.exit_code == 2
    assert "no .json files in this folder or below" in result.output and "converted" not in result.output
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "instances.json").write_text('{"images": [], "annotations": []}')
    result = cli("convert", tmp_path / "coco", tmp_path / "o", "--from", "labelme")
    assert result.exit_code == 2
    assert "none of its 1 .json files is a LabelMe JSON" in result.output


def test_labelme_json_with_sorted_keys_is_recognised(tmp_path):
    # json.dump(sort_keys=True) puts 'shapes' after a long imageData
    buf = io.BytesIO()
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(buf, "PNG")
    doc = {"imageData": base64.b64encode(buf.getvalue()).decode(), "imagePath": "x.png", "shapes": []}
    (tmp_path / "x.json").write_text(json.dumps(doc, sort_keys=True))
    assert (tmp_path / "x.json").stat().st_size > 3 * (1 << 16)
    assert sniff(tmp_path) and len(LabelmeReader(tmp_path)) == 1


def test_batch_bad_item_fails_with_its_message_others_convert(tmp_path):
    src = tmp_path / "src"
    write_json(src, "good", [shape("_background_", [[0, 0], [2, 2]], "rectangle"),
                             shape("cat", [[4, 4], [6, 6]], "rectangle")])
    write_json(src / "sub", "bad", [shape("cat", [[0, 0], [float("nan"), 2], [3, 3]])])
    result = cli("convert", src, tmp_path / "o", "--from", "labelme", "-j", "1")
    assert result.exit_code == 1, result.output
    assert "converted 1, skipped 0 (done before), failed 1 of 2" in result.output
    bad = src / "sub" / "bad.json"
    assert f"{bad} [bad]: shapes[0] ('cat'): coordinate nan is not a finite number" in result.output
    assert list(payloads(tmp_path / "o")) == ["good"]


def test_labels_dict_with_labelme_reserved_ids(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"__ignore__": -1, "_background_": 0, "cat": 1, "dog": 2}))  # class_name_to_id
    table, cats = load_label_table(labels)
    assert sorted(table) == ["cat", "dog"] and [c.name for c in cats] == ["cat", "dog"]


def test_labels_json_inside_the_source_is_not_an_image(tmp_path):
    write_json(tmp_path / "train", "a", [shape("cat", [[0, 0], [2, 2]], "rectangle")])
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["cat"]))
    assert [it.reference_id for it in LabelmeReader(tmp_path, labels=labels).items()] == ["a"]
    assert [it.reference_id for it in LabelmeReader(tmp_path).items()] == ["labels", "a"]  # without --labels: an item


@needs_labelme
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shapes=st.lists(
        st.tuples(st.sampled_from(["polygon", "rectangle", "circle"]), st.lists(point, min_size=3, max_size=6),
                  st.sampled_from(["a", "b", "_background_", "__ignore__"]), st.sampled_from([None, 1])),
        min_size=1, max_size=6,
    ),
    void=st.sampled_from(["background", "ignore"]),
)
def test_semantic_and_instances_equal_labelme2voc_on_random_shapes(tmp_path_factory, shapes, void):
    """labelme2voc's class PNG (-1 -> void) and object ids (ins[cls == -1] = 0), through the reader's load."""
    h, w = 37, 45
    doc_shapes = []
    for kind, pts, label, group_id in shapes:
        need = {"rectangle": 2, "circle": 2}.get(kind)
        doc_shapes.append({"label": label, "points": [list(p) for p in (pts[:need] if need else pts)],
                           "shape_type": kind, "group_id": group_id})
    root = tmp_path_factory.mktemp("lm")
    (root / "x.json").write_text(json.dumps({"shapes": doc_shapes, "imageHeight": h, "imageWidth": w}))
    labels = root.parent / f"{root.name}-labels.txt"
    labels.write_text("__ignore__\n_background_\na\nb\n")
    cls, ins = LABELME.shapes_to_label((h, w), doc_shapes, labelme2voc_class_ids(labels))
    ins[cls == -1] = 0
    reader = LabelmeReader(root, labels=labels, void=void)
    (item,) = reader.items()
    seg = item.load()
    from segconvert.model.modes import ModePlan

    semantic = ModePlan("semantic", "stable", reader.categories).apply(seg).resolved_label_map(np.int64)
    np.testing.assert_array_equal(semantic, np.where(cls == -1, 0 if void == "background" else 3, cls))
    instances = ModePlan("instance").apply(seg).resolved_label_map(np.int64)
    theirs = np.where(cls == 0, 0, np.where(cls == -1, -1 if void == "ignore" else 0, ins))
    pairs = set(zip(instances.ravel().tolist(), theirs.ravel().tolist(), strict=True))
    assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})  # one-to-one
    assert all((a == 0) == (b == 0) for a, b in pairs)


def test_void_ignore_uses_the_tables_own_ignore_class(tmp_path):
    write_json(tmp_path / "d", "v", [shape("__ignore__", [[0, 0], [2, 2]], "rectangle")])
    labels = tmp_path / "labels.txt"
    labels.write_text("_background_\nignore\ncat\n")
    reader = LabelmeReader(tmp_path / "d", labels=labels, void="ignore")
    assert [(c.id, c.name) for c in reader.categories] == [(1, "ignore"), (2, "cat")]
    (item,) = reader.items()
    assert [(s.label, s.category_id) for s in item.load().segments] == [("ignore", 1)]


def test_integral_float_image_size_is_accepted(tmp_path):
    """imageHeight 10.0 (as some exporters write) is 10, as in the COCO readers; 10.5 is refused above."""
    write_json(tmp_path, "f", [shape("cat", [[1, 1], [5, 5]], "rectangle")], height=10.0, width=12.0)
    seg = load_one(tmp_path)
    assert seg.label_map.shape == (10, 12)


@pytest.mark.parametrize("label", ["", "  "])
def test_empty_label_is_skipped_with_a_warning(tmp_path, label):
    """An empty label would give a Segment Nucleus refuses (validate's bad-label): skipped, as CVAT's."""
    write_json(tmp_path, "e", [shape(label, [[1, 1], [5, 5]], "rectangle"),
                               shape("cat", [[6, 6], [8, 8]], "rectangle")])
    seg = load_one(tmp_path)
    assert [s.label for s in seg.segments] == ["cat"]
    assert any("shapes[0]" in w and "empty label; skipped" in w for w in seg.warnings)
    assert set(np.unique(seg.label_map).tolist()) == {0, seg.segments[0].id}


@pytest.mark.parametrize("group_id", [[1], {"a": 1}])
def test_group_id_that_is_not_a_scalar_fails_the_item_clearly(tmp_path, group_id):
    write_json(tmp_path, "g", [shape("cat", [[1, 1], [5, 5]], "rectangle", group_id=group_id)])
    with pytest.raises(ItemError, match=r"shapes\[0\] \('cat'\): group_id must be an integer or null"):
        load_one(tmp_path)


def test_impossibly_large_size_fails_naming_the_size(tmp_path):
    write_json(tmp_path, "big", [shape("cat", [[1, 1], [5, 5]], "rectangle")], height=10**6, width=10**6)
    with pytest.raises(ItemError, match=r"image size 1000000x1000000 is .*32-bit"):
        load_one(tmp_path)
