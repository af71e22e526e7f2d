"""coco-instances: label maps pixel-exact against pycocotools, and every bad input reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_utils

import segconvert
from segconvert.converters.coco_instances import CocoInstancesReader, sniff
from segconvert.errors import ItemError, SourceError
from segconvert.model.ir import FailedItem

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "human"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
]


def write_doc(tmp_path: Path, annotations, images=None, categories=None, name="instances.json") -> Path:
    images = images if images is not None else [{"id": 1, "file_name": "sub/img1.jpg", "width": 40, "height": 30}]
    doc = {"images": images, "annotations": annotations, "categories": categories or CATEGORIES}
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def ann(aid, segmentation, cat=1, image_id=1, **extra):
    return {"id": aid, "image_id": image_id, "category_id": cat, "segmentation": segmentation, "iscrowd": 0,
            **extra}


def load_all(path: Path, **opts):
    return [it.load() for it in CocoInstancesReader(path, **opts).items()]


def pycocotools_paint(anns, height, width) -> np.ndarray:
    """What painting pycocotools' masks in order gives (COCO's annToRLE + decode)."""
    out = np.zeros((height, width), np.int64)
    for k, a in enumerate(anns):
        seg = a["segmentation"]
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width)) if isinstance(seg, list) else (
            mask_utils.frPyObjects(seg, height, width) if isinstance(seg["counts"], list) else seg
        )
        out[mask_utils.decode(rle).astype(bool)] = k + 1
    return out


@st.composite
def annotation_sets(draw):
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    coord = st.floats(-3, 43, allow_nan=False, width=32).map(lambda v: round(v, 2))
    anns = []
    for k in range(draw(st.integers(0, 7))):
        kind = draw(st.sampled_from(["polygon", "parts", "uncompressed", "compressed"]))
        if kind in ("polygon", "parts"):
            seg = [
                [draw(coord) for _ in range(2 * draw(st.integers(3, 8)))]
                for _ in range(1 if kind == "polygon" else draw(st.integers(2, 3)))
            ]
        else:
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            mask = np.asfortranarray((rng.random((height, width)) < rng.random()).astype(np.uint8))
            rle = mask_utils.encode(mask)
            if kind == "compressed":
                seg = {"size": [height, width], "counts": rle["counts"].decode()}
            else:
                flat = mask.reshape(-1, order="F")
                edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
                bounds = np.concatenate([[0], edges, [flat.size]])
                seg = {"size": [height, width], "counts": ([0] if flat[0] else []) + np.diff(bounds).tolist()}
        anns.append(ann(k + 1, seg, iscrowd=int(kind != "polygon")))
    return height, width, anns


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(annotation_sets())
def test_label_map_equals_pycocotools_in_painters_order(tmp_path, scene):
    height, width, anns = scene
    path = write_doc(tmp_path, anns, images=[{"id": 1, "file_name": "a.jpg", "width": width, "height": height}])
    (seg,) = load_all(path)
    np.testing.assert_array_equal(seg.label_map, pycocotools_paint(anns, height, width))
    assert seg.label_map.dtype == np.uint16
    assert [s.metadata["annotation_id"] for s in seg.segments] == [a["id"] for a in anns]


def test_segment_table_and_reference_ids(tmp_path):
    tri = [[1, 1, 20, 1, 10, 15]]
    images = [
        {"id": 7, "file_name": "dir/first.jpg", "width": 40, "height": 30},
        {"id": 8, "file_name": "second.png", "width": 10, "height": 5},
    ]
    anns = [
        ann(100, tri, cat=3, image_id=7, area=150.5, bbox=[1, 1, 19, 14]),
        ann(900100000001, {"size": [30, 40], "counts": [0, 1200]}, cat=1, image_id=7, iscrowd=1),
    ]
    path = write_doc(tmp_path, anns, images=images)
    reader = CocoInstancesReader(path)
    assert reader.default_mode == "instance"
    assert [(c.id, c.name, c.isthing, c.supercategory) for c in reader.categories] == [
        (1, "person", True, "human"), (3, "car", True, "vehicle")
    ]
    first, second = (it.load() for it in reader.items())
    assert first.reference_id == "first" and second.reference_id == "second"
    a, b = first.segments
    assert (a.id, a.label, a.category_id, a.iscrowd, a.isthing) == (1, "car", 3, False, True)
    assert a.metadata == {"annotation_id": 100, "supercategory": "vehicle", "area": 150.5, "bbox": [1, 1, 19, 14]}
    assert (b.id, b.label, b.iscrowd, b.metadata["annotation_id"]) == (2, "person", True, 900100000001)
    assert (first.label_map == 2).all()  # the crowd RLE covers everything and lies on top
    assert second.label_map.shape == (5, 10) and not second.label_map.any()  # no annotations: background


def test_overlap_policies(tmp_path):
    big = [[0, 0, 40, 0, 40, 30, 0, 30]]
    small = [[5, 5, 15, 5, 15, 15, 5, 15]]
    path = write_doc(tmp_path, [ann(1, small), ann(2, big)])
    (painted,) = load_all(path)
    assert set(np.unique(painted.label_map)) == {2}  # the big one, stored later, hides the small one
    (small_on_top,) = load_all(path, overlap="small-on-top")
    assert small_on_top.label_map[10, 10] == 1 and small_on_top.label_map[25, 30] == 2
    with pytest.raises(ItemError) as info:
        load_all(path, overlap="error")
    msg = str(info.value)
    assert "instances.json [img1]" in msg and "overlap on 100 pixels" in msg
    assert "segment 1 = annotation 1" in msg and "segment 2 = annotation 2" in msg
    with pytest.raises(SourceError):
        CocoInstancesReader(path, overlap="sideways")


def test_short_polygon_is_skipped_with_a_warning(tmp_path):
    path = write_doc(tmp_path, [ann(5, [[1, 1, 8, 1]]), ann(6, [[1, 1, 9, 9], [0, 0, 10, 0, 10, 10]])])
    (seg,) = load_all(path)
    assert [s.metadata["annotation_id"] for s in seg.segments] == [6]
    assert any("annotation 5, polygon 0: 2 points (fewer than 3), skipped" in w for w in seg.warnings)
    assert any("annotation 6, polygon 0: 2 points" in w for w in seg.warnings)
    expected = pycocotools_paint([ann(6, [[0, 0, 10, 0, 10, 10]])], 30, 40)
    np.testing.assert_array_equal(seg.label_map > 0, expected > 0)


def test_points_outside_are_clipped_and_counted(tmp_path):
    poly = [[-10, -10, 50, 5, 20, 40, 10, 10]]
    path = write_doc(tmp_path, [ann(9, poly)])
    (seg,) = load_all(path)
    assert seg.warnings == ["annotation 9: 3 polygon points outside the 40x30 image, clipped"]
    np.testing.assert_array_equal(seg.label_map, pycocotools_paint([ann(9, poly)], 30, 40))


@pytest.mark.parametrize(
    ("segmentation", "expected"),
    [
        ([[1, 1, float("nan"), 3, 5, 5]], "annotation 4, polygon 0: NaN or infinite coordinate"),
        ([[1, 1, "x", 3, 5, 5]], "annotation 4, polygon 0: coordinate 'x' is not a number"),
        ([[1, 1, None, 3, 5, 5]], "annotation 4, polygon 0: coordinate None is not a number"),
        ([[[1, 1], [3, 3], [5, 1]]], "annotation 4, polygon 0: points as [x, y] pairs"),
        ([[1, 1, [3], 3, 5, 5]], "annotation 4, polygon 0: coordinate [3] is not a number"),
        ([[1, 1, 2, 3, 5]], "annotation 4, polygon 0: odd number of coordinates (5)"),
        ([[1, 1, 2, 3, 5, 1e9]], "annotation 4, polygon 0: coordinates lie more than 10x the image size"),
        ([7], "annotation 4, polygon 0: expected [x1, y1, x2, y2, ...], not int"),
        ("poly", "annotation 4: segmentation must be a list of polygons or an RLE object"),
        ({"size": [30, 41], "counts": [1230]}, "annotation 4: RLE size [30, 41] ([height, width]) but the image"),
        ({"counts": [1200]}, "annotation 4: RLE segmentation needs 'size' and 'counts'"),
        ({"size": [30, 40], "counts": 5}, "annotation 4: RLE counts must be a list of integers or a compressed"),
        ({"size": [30, 40], "counts": [10, 20]}, "RLE counts cover 30 pixels but the image has 40x30"),
    ],
)
def test_bad_geometry_fails_the_image_naming_the_annotation(tmp_path, segmentation, expected):
    path = write_doc(tmp_path, [ann(3, [[0, 0, 5, 0, 5, 5]]), ann(4, segmentation)])
    with pytest.raises(ItemError) as info:
        load_all(path)
    assert expected in str(info.value)
    assert info.value.item == "img1" and info.value.file == str(path)


def test_rle_count_error_names_the_annotation(tmp_path):
    path = write_doc(tmp_path, [ann(3, [[0, 0, 5, 0, 5, 5]]), ann(44, {"size": [30, 40], "counts": [10, 20]})])
    with pytest.raises(ItemError, match=r"segment 2: .*\[segment 2 = annotation 44\]"):
        load_all(path)


def test_unknown_category_fails_unless_mapped(tmp_path):
    path = write_doc(tmp_path, [ann(1, [[0, 0, 5, 0, 5, 5]], cat=91), ann(2, [[0, 0, 5, 0, 5, 5]], cat=92)])
    (item,) = CocoInstancesReader(path).items()
    assert isinstance(item, FailedItem)
    assert "annotation 1: category_id 91 is not in categories (map it with labels)" in str(item.error)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"91": "car", "92": {"id": 50, "name": "other"}}))
    reader = CocoInstancesReader(path, labels=labels)
    assert [c.name for c in reader.categories] == ["person", "car", "other"]
    (seg,) = [it.load() for it in reader.items()]
    assert [(s.label, s.category_id) for s in seg.segments] == [("car", 3), ("other", 50)]
    labels.write_text(json.dumps({"91": "no such class"}))
    with pytest.raises(SourceError, match="not a category id or name"):
        CocoInstancesReader(path, labels=labels)


def test_missing_image_size_needs_images_dir(tmp_path):
    images = [{"id": 1, "file_name": "pic.png"}]
    path = write_doc(tmp_path, [ann(1, [[0, 0, 5, 0, 5, 5]])], images=images)
    (item,) = CocoInstancesReader(path).items()
    assert isinstance(item, FailedItem) and "has no width/height; pass images=<dir>" in str(item.error)
    imgdir = tmp_path / "imgs"
    imgdir.mkdir()
    Image.new("RGB", (12, 9)).save(imgdir / "pic.png")
    (seg,) = load_all(path, images=imgdir)
    assert seg.label_map.shape == (9, 12)
    (imgdir / "pic.png").unlink()
    with pytest.raises(ItemError, match="no width/height in 'images' and no image"):
        load_all(path, images=imgdir)


def test_annotations_of_unknown_images_and_broken_entries(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}, {"id": 1, "file_name": "b.jpg",
              "width": 4, "height": 4}, {"id": 2}]
    path = write_doc(tmp_path, [ann(1, [[0, 0, 3, 0, 3, 3]], image_id=77)], images=images)
    reader = CocoInstancesReader(path)
    items = list(reader.items())
    assert len(reader) == len(items) == 4
    assert not isinstance(items[0], FailedItem)
    assert "image id 1 appears twice" in str(items[1].error)
    assert "image entry without a 'file_name'" in str(items[2].error)
    assert items[3].reference_id == "image_id 77" and "no entry in 'images'" in str(items[3].error)


@pytest.mark.parametrize(
    ("content", "expected"),
    [("{", "not valid JSON"), ("[]", "expected a JSON object"), ('{"images": []}', "no 'annotations' list")],
)
def test_unusable_json_is_a_source_error(tmp_path, content, expected):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(SourceError, match=expected):
        CocoInstancesReader(path)


def test_sniff(tmp_path):
    path = write_doc(tmp_path, [ann(1, [[0, 0, 5, 0, 5, 5]])])
    assert sniff(path)
    other = tmp_path / "panoptic.json"
    other.write_text(json.dumps({"images": [], "annotations": [{"segments_info": []}], "categories": []}))
    assert not sniff(other) and not sniff(tmp_path)


def test_items_are_picklable(tmp_path):
    import pickle

    path = write_doc(tmp_path, [ann(1, [[0, 0, 5, 0, 5, 5]])])
    (item,) = CocoInstancesReader(path).items()
    again = pickle.loads(pickle.dumps(item))
    np.testing.assert_array_equal(again.load().label_map, item.load().label_map)


def test_convert_to_nucleus_end_to_end(tmp_path):
    path = write_doc(tmp_path, [ann(1, [[0, 0, 20, 0, 20, 20, 0, 20]], cat=3), ann(2, [[10, 10, 30, 10, 30, 25]])])
    out = tmp_path / "out"
    summary = segconvert.convert(path, out, from_format="coco-instances", jobs=1)
    assert summary.ok and summary.converted == 1
    mask = np.asarray(Image.open(out / "masks" / "img1.png"))
    expected = pycocotools_paint(json.loads(path.read_text())["annotations"], 30, 40)
    np.testing.assert_array_equal(mask, expected)
    (line,) = (out / "annotations.jsonl").read_text().splitlines()
    payload = json.loads(line)
    assert [(s["label"], s["index"]) for s in payload["annotations"]][-2:] == [("car", 1), ("person", 2)]


@pytest.mark.skipif(not (SHARED / "bench" / "make_dataset.py").is_file(), reason="../shared not available")
def test_make_dataset_output_matches_pycocotools(tmp_path):
    subprocess.run(
        [sys.executable, str(SHARED / "bench" / "make_dataset.py"), str(tmp_path), "--images", "3", "--seed", "4",
         "--size", "160x120"],
        check=True, capture_output=True,
    )
    path = tmp_path / "annotations" / "instances.json"
    doc = json.loads(path.read_text())
    for image, seg in zip(doc["images"], load_all(path), strict=True):
        anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
        np.testing.assert_array_equal(seg.label_map, pycocotools_paint(anns, image["height"], image["width"]))


@pytest.mark.parametrize(("cat", "ok"), [(3.0, True), (3.5, False), ("3", False), (True, False)])
def test_category_ids_are_not_silently_rounded(tmp_path, cat, ok):
    """category_id 3.5 used to be read as 3 (int()); like coco-panoptic's ids, only integral values count."""
    (item,) = CocoInstancesReader(write_doc(tmp_path, [ann(1, [[0, 0, 5, 0, 5, 5]], cat=cat)])).items()
    if ok:
        assert [s.category_id for s in item.load().segments] == [3]
    else:
        assert isinstance(item, FailedItem)
        assert f"category_id {cat!r} is not in categories" in str(item.error)


@pytest.mark.parametrize("width", [40.5, "40", None])
def test_image_sizes_must_be_integers(tmp_path, width):
    images = [{"id": 1, "file_name": "img1.jpg", "width": width, "height": 30}]
    (item,) = CocoInstancesReader(write_doc(tmp_path, [ann(1, [[0, 0, 5, 0, 5, 5]])], images=images)).items()
    assert isinstance(item, FailedItem) and "has no width/height; pass images=<dir>" in str(item.error)
