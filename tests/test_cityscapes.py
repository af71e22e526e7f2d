"""cityscapes: pixel for pixel against cityscapesScripts' json2labelImg / json2instanceImg."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from segconvert.codecs.raster import paint
from segconvert.converters.cityscapes import (
    CATEGORIES,
    LABELS,
    CityscapesReader,
    _polygon_rle,
    reference_id,
    sniff,
)
from segconvert.errors import ItemError, SourceError
from segconvert.model.modes import ModePlan

cs_labels = pytest.importorskip("cityscapesscripts.helpers.labels")
from cityscapesscripts.helpers.annotation import Annotation  # noqa: E402
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage  # noqa: E402
from cityscapesscripts.preparation.json2labelImg import createLabelImage  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cityscapes"


def resolved(seg, plan: ModePlan) -> np.ndarray:
    """Each pixel's segment id after the mode (0 = void), via the IR's own resolution."""
    return plan.apply(seg).resolved_label_map(np.int64)


def reference(path: Path, kind: str, keep_void_classes: bool = True) -> np.ndarray:
    """json2labelImg's label ids (``kind="ids"``) or json2instanceImg's ids for one JSON.

    ``keep_void_classes=False`` applies segconvert's default to the reference's output:
    ego vehicle, rectification border, out of roi and static (ids 1-4) become void 0.
    """
    annotation = Annotation()
    annotation.fromJsonFile(str(path))
    img = createLabelImage(annotation, "ids") if kind == "ids" else createInstanceImage(annotation, "ids")
    ids = np.asarray(img).astype(np.int64)
    if not keep_void_classes:
        ids = np.where(np.isin(ids, VOID_LABEL_IDS), 0, ids)
    return ids


#: cityscapesScripts' own names for the void classes that segconvert keeps void by default
VOID_LABEL_IDS = [cs_labels.name2label[n].id for n in ("ego vehicle", "rectification border", "out of roi", "static")]


def test_label_table_is_cityscapesscripts():
    ours = [(x.name, x.id, x.train_id, x.category, x.category_id, x.has_instances, x.ignore_in_eval, x.color)
            for x in LABELS]
    theirs = [(x.name, x.id, x.trainId, x.category, x.categoryId, x.hasInstances, x.ignoreInEval, x.color)
              for x in cs_labels.labels]
    assert ours == theirs
    assert [c.id for c in CATEGORIES] == list(range(1, 34))
    assert {c.name for c in CATEGORIES if c.isthing} == {x.name for x in LABELS if x.has_instances}


@pytest.mark.parametrize("keep", [False, True], ids=["void-classes-void", "keep-void-classes"])
@pytest.mark.parametrize("path", sorted(FIXTURES.rglob("*_polygons.json")), ids=lambda p: p.name)
def test_semantic_equals_json2labelImg(path, keep):
    reader = CityscapesReader(path, keep_void_classes=keep)
    (seg,) = [it.load() for it in reader.items()]
    got = resolved(seg, ModePlan("semantic", "category-id", reader.categories))
    np.testing.assert_array_equal(got, reference(path, "ids", keep_void_classes=keep))
    stable = resolved(seg, ModePlan("semantic", "stable", reader.categories))
    np.testing.assert_array_equal(stable, got)  # the table keeps ids 1-4: stable index = label id


def test_void_classes_are_ids_1_to_4_of_cityscapesscripts():
    assert VOID_LABEL_IDS == [1, 2, 3, 4]
    assert all(cs_labels.id2label[i].category == "void" and cs_labels.id2label[i].ignoreInEval
               for i in VOID_LABEL_IDS)


def test_void_classes_paint_void_in_their_place_and_are_kept_on_request():
    path = FIXTURES / "bremen" / "bremen_000001_000019_gtFine_polygons.json"
    theirs = reference(path, "ids")
    assert set(VOID_LABEL_IDS[1:]) <= set(np.unique(theirs).tolist())  # the fixture draws them
    (seg,) = [it.load() for it in CityscapesReader(path).items()]
    assert not {"out of roi", "rectification border", "static"} & {s.label for s in seg.segments}
    panoptic = resolved(seg, ModePlan("panoptic"))
    assert (panoptic[theirs == 4] == 0).all() and panoptic[15, 9] != 0  # the person drawn over 'static'
    (kept,) = [it.load() for it in CityscapesReader(path, keep_void_classes=True).items()]
    assert {"out of roi", "rectification border", "static"} <= {s.label for s in kept.segments}


@pytest.mark.parametrize("keep", [False, True], ids=["void-classes-void", "keep-void-classes"])
@pytest.mark.parametrize("path", sorted(FIXTURES.rglob("*_polygons.json")), ids=lambda p: p.name)
def test_instance_partition_equals_json2instanceImg(path, keep):
    (seg,) = [it.load() for it in CityscapesReader(path, keep_void_classes=keep).items()]
    ours = resolved(seg, ModePlan("instance"))
    theirs = reference(path, "instance")
    theirs = np.where(theirs >= 1000, theirs, 0)  # classes without instances, and groups, are not instances
    pairs = set(zip(ours.ravel().tolist(), theirs.ravel().tolist(), strict=True))
    assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})  # one-to-one
    assert (0, 0) in pairs or not pairs


def test_fixture_features_are_exercised():
    (seg,) = [it.load() for it in CityscapesReader(FIXTURES / "aachen").items()]
    labels = [s.label for s in seg.segments]
    assert seg.reference_id == "aachen_000000_000019"
    doc = json.loads((FIXTURES / "aachen" / "aachen_000000_000019_gtFine_polygons.json").read_text())
    assert doc["objects"][4] == {**doc["objects"][4], "label": "cargroup", "deleted": 1}
    # 'persongroup' is the class person but not an instance; 'polegroup' is its own class
    group = [s for s in seg.segments if s.label == "person" and not s.isthing]
    assert len(group) == 1 and group[0].category_id == 24
    assert "polegroup" in labels and "license plate" not in labels
    # the deleted 'cargroup' is not drawn: every car segment is an instance
    assert all(s.isthing for s in seg.segments if s.label == "car")
    assert seg.dropped_ids  # 'unlabeled' paints void
    assert any("clipped" in w for w in seg.warnings)


def test_reader_basics(tmp_path):
    reader = CityscapesReader(FIXTURES)
    assert len(reader) == 3 and reader.default_mode == "instance"
    refs = [it.reference_id for it in reader.items()]
    assert refs == ["aachen_000000_000019", "bremen_000001_000019", "bremen_000002_000019"]
    empty = [it.load() for it in reader.items()][2]
    assert empty.label_map.shape == (20, 24) and not empty.label_map.any() and empty.segments == []
    item = next(iter(reader.items()))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(item)).load().label_map, item.load().label_map)
    assert reference_id(Path("x/zurich_000001_000002_gtFine_polygons.json")) == "zurich_000001_000002"
    assert sniff(FIXTURES) and sniff(FIXTURES / "aachen" / "aachen_000000_000019_gtFine_polygons.json")
    assert not sniff(tmp_path)
    with pytest.raises(SourceError, match="no \\*_polygons.json"):
        CityscapesReader(tmp_path)


def polygon_mask(polygon, height, width) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon], fill=1)
    return np.asarray(canvas).astype(bool)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 30),
    st.integers(1, 30),
    st.lists(st.tuples(st.integers(-8, 38), st.integers(-8, 38)), min_size=3, max_size=9),
)
def test_box_cropped_drawing_equals_full_canvas_pil(height, width, points):
    """The small-on-top / error path draws each object on its box; PIL must give the same pixels."""
    rle = _polygon_rle(points, height, width)
    np.testing.assert_array_equal(paint(height, width, [(1, rle)]) > 0, polygon_mask(points, height, width))


def test_box_cropped_drawing_equals_full_canvas_on_many_polygons():
    """A bug once: with a 1-2 pixel box margin, ~0.15 % of polygons differed from PIL's full canvas
    (PIL clips at the canvas border). Too rare for a few dozen examples; 6,000 seeded ones find it."""
    rng = np.random.default_rng(1)
    for _ in range(6000):
        height, width = 37, 45
        n = int(rng.integers(3, 9))
        low, high = (-15, 60) if rng.random() < 0.5 else (0, 44)
        points = [(float(x), float(y)) for x, y in rng.integers(low, high, size=(n, 2))]
        rle = _polygon_rle(points, height, width)
        np.testing.assert_array_equal(paint(height, width, [(1, rle)]) > 0, polygon_mask(points, height, width),
                                      err_msg=str(points))


def write(tmp_path: Path, objects, name="city_000000_000001_gtFine_polygons.json", **size) -> Path:
    doc = {"imgHeight": 30, "imgWidth": 40, **size, "objects": objects}
    doc = {k: v for k, v in doc.items() if v is not None}
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


SQUARE_BIG = [[0, 0], [39, 0], [39, 29], [0, 29]]
SQUARE_SMALL = [[5, 5], [12, 5], [12, 12], [5, 12]]


def test_overlap_policies(tmp_path):
    path = write(tmp_path, [{"label": "person", "polygon": SQUARE_SMALL}, {"label": "car", "polygon": SQUARE_BIG}])
    (painted,) = [it.load() for it in CityscapesReader(path).items()]
    assert set(np.unique(painted.label_map)) == {2}
    (small,) = [it.load() for it in CityscapesReader(path, overlap="small-on-top").items()]
    assert small.label_map[8, 8] == 1 and small.label_map[20, 30] == 2
    expected = polygon_mask(SQUARE_SMALL, 30, 40)
    np.testing.assert_array_equal(small.label_map == 1, expected)
    with pytest.raises(ItemError, match=r"overlap on 64 pixels .*objects 0 & 1 \(64 px\)"):
        [it.load() for it in CityscapesReader(path, overlap="error").items()]


def test_small_on_top_equals_full_masks_sorted_by_area():
    path = FIXTURES / "aachen" / "aachen_000000_000019_gtFine_polygons.json"
    (seg,) = [it.load() for it in CityscapesReader(path, overlap="small-on-top").items()]
    doc = json.loads(path.read_text())
    masks = []
    for obj in doc["objects"]:
        label = obj["label"]
        known = {x.name: x for x in LABELS}
        lab = known.get(label) or known.get(label[: -len("group")])
        if obj.get("deleted") or lab.id < 0:
            continue
        masks.append(polygon_mask(obj["polygon"], 48, 64))
    order = sorted(range(len(masks)), key=lambda k: -int(masks[k].sum()))
    expected = np.zeros((48, 64), np.int64)
    for k in order:
        expected[masks[k]] = k + 1
    np.testing.assert_array_equal(seg.label_map, expected)


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        ([{"label": "spaceship", "polygon": SQUARE_SMALL}], "objects[0]: label 'spaceship' is not in the Cityscapes"),
        ([{"label": "car", "polygon": [[1, 1], [float("nan"), 2], [5, 5]]}], "objects[0] (car): NaN or infinite"),
        ([{"label": "car", "polygon": [[1, 1], ["a", 2], [5, 5]]}], "objects[0] (car): coordinate 'a' is not a number"),
        ([{"label": "car", "polygon": [[1, 1, 3], [2, 2], [5, 5]]}], "polygon point [1, 1, 3] is not"),
        ([{"label": "car", "polygon": "x"}], "objects[0] (car): 'polygon' must be a list of [x, y] points"),
        ([{"label": "car", "polygon": [[1, 1], [1e7, 2], [5, 5]]}], "coordinates lie more than 10x the image size"),
        ([{"polygon": SQUARE_SMALL}], "objects[0] has no 'label' string"),
        (["car"], "objects[0] is not an object"),
    ],
)
def test_bad_objects_fail_the_image(tmp_path, objects, expected):
    path = write(tmp_path, objects)
    with pytest.raises(ItemError) as info:
        [it.load() for it in CityscapesReader(path).items()]
    assert expected in str(info.value)
    assert info.value.item == "city_000000_000001" and info.value.file == str(path)


def test_unknown_label_mapped_with_labels_option(tmp_path):
    path = write(tmp_path, [{"label": "van", "polygon": SQUARE_SMALL}, {"label": "vangroup", "polygon": SQUARE_BIG}])
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"van": "car"}))
    (seg,) = [it.load() for it in CityscapesReader(path, labels=labels).items()]
    assert [(s.label, s.isthing) for s in seg.segments] == [("car", True), ("car", False)]
    labels.write_text(json.dumps({"van": "automobile"}))
    with pytest.raises(SourceError, match="not a Cityscapes label name"):
        CityscapesReader(path, labels=labels)


def test_short_polygon_skipped_and_outside_points_counted(tmp_path):
    path = write(tmp_path, [
        {"label": "car", "polygon": [[1, 1], [5, 5]]},
        {"label": "road", "polygon": [[-4, 2], [50, 2], [20, 40]]},
    ])
    (seg,) = [it.load() for it in CityscapesReader(path).items()]
    assert seg.warnings == [
        "objects[0] (car): polygon of 2 points (fewer than 3), skipped",
        "objects[1] (road): 3 points outside the 40x30 image, clipped",
    ]
    assert [s.label for s in seg.segments] == ["road"]


def test_missing_size_needs_images_dir(tmp_path):
    path = write(tmp_path, [{"label": "car", "polygon": SQUARE_SMALL}], imgHeight=None, imgWidth=None)
    with pytest.raises(ItemError, match="no imgHeight/imgWidth; pass images=<dir>"):
        [it.load() for it in CityscapesReader(path).items()]
    images = tmp_path / "leftImg8bit"
    (images / "city").mkdir(parents=True)
    Image.new("RGB", (16, 14)).save(images / "city" / "city_000000_000001_leftImg8bit.png")
    (seg,) = [it.load() for it in CityscapesReader(path, images=images).items()]
    assert seg.label_map.shape == (14, 16)


@pytest.mark.parametrize("h, w, message", [
    ("30", 40, r"imgHeight/imgWidth must be integers, got '30' x 40"),
    (30.5, 40, "must be integers"),
    (-30, 40, "image size 40x-30 is empty"),
    (10**6, 10**6, "image size 1000000x1000000 is .*32-bit"),
])
def test_a_given_but_wrong_size_is_named_not_called_missing(tmp_path, h, w, message):
    """A size that is there but wrong fails naming it (it said "no imgHeight/imgWidth; pass
    --images", or ran out of memory on 10^6 x 10^6); 30.0 is 30."""
    path = write(tmp_path, [{"label": "car", "polygon": SQUARE_SMALL}], imgHeight=h, imgWidth=w)
    with pytest.raises(ItemError, match=message):
        [it.load() for it in CityscapesReader(path).items()]
    write(tmp_path, [{"label": "car", "polygon": SQUARE_SMALL}], imgHeight=30.0, imgWidth=40.0)
    (seg,) = [it.load() for it in CityscapesReader(path).items()]
    assert seg.label_map.shape == (30, 40)


@pytest.mark.parametrize("keep", [False, True], ids=["void-classes-void", "keep-void-classes"])
def test_convert_to_nucleus_semantic_matches_json2labelImg(tmp_path, keep):
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    out = tmp_path / "out"
    args = ["convert", str(FIXTURES), str(out), "--from", "cityscapes", "--mode", "semantic",
            "--index", "category-id", "-j", "1"] + (["--keep-void-classes"] if keep else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "converted 3, skipped 0 (done before), failed 0 of 3" in result.output
    for path in sorted(FIXTURES.rglob("*_polygons.json")):
        mask = np.asarray(Image.open(out / "masks" / f"{reference_id(path)}.png")).astype(np.int64)
        np.testing.assert_array_equal(mask, reference(path, "ids", keep_void_classes=keep))


def test_cli_batch_bad_json_fails_alone(tmp_path):
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    src = tmp_path / "src"
    src.mkdir()
    good = FIXTURES / "bremen" / "bremen_000001_000019_gtFine_polygons.json"
    (src / good.name).write_text(good.read_text())
    bad = src / "zz_000000_000000_gtFine_polygons.json"
    bad.write_text(json.dumps({"imgHeight": 10, "imgWidth": 10, "objects": [{"label": "dragon", "polygon": []}]}))
    result = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "o"), "--from", "cityscapes", "-j", "1"])
    assert result.exit_code == 1
    assert f"{bad} [zz_000000_000000]: objects[0]: label 'dragon' is not in the Cityscapes label table" in result.output
    assert (tmp_path / "o" / "masks" / "bremen_000001_000019.png").is_file()
