"""CVAT for images 1.1 reader: fixture with expected masks, CVAT's conventions, every bad input.

CVAT's "Segmentation mask" export rasterises polygons and boxes with pycocotools
(through Datumaro), so polygons are checked against ``frPyObjects`` + ``decode`` and
masks against a plain-Python decoding of CVAT's RLE.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from segconvert.converters.cvat import FORMAT, CvatReader, sniff
from segconvert.errors import ItemError, SourceError
from segconvert.model.ir import Category

# pycocotools' decode (used here as the reference) trips a numpy 2 DeprecationWarning
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cvat"
XML = FIXTURES / "annotations.xml"


def read_grid(path: Path) -> np.ndarray:
    rows = path.read_text().split()
    return np.array([[0 if c == "." else int(c) for c in row] for row in rows])


def make_xml(tmp_path: Path, images: str, labels=("car", "person"), name="a.xml") -> Path:
    label_xml = "".join(f"<label><name>{n}</name><color>#102030</color></label>" for n in labels)
    meta = f"<meta><task><id>1</id><labels>{label_xml}</labels></task></meta>" if labels else ""
    path = tmp_path / name
    head = '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>'
    path.write_text(f"{head}{meta}{images}</annotations>")
    return path


def image(body: str, name="img.jpg", width=12, height=10, id_=0) -> str:
    size = ""
    if width is not None:
        size += f' width="{width}"'
    if height is not None:
        size += f' height="{height}"'
    return f'<image id="{id_}" name="{name}"{size}>{body}</image>'


def poly(points: str, label="car", **attrs) -> str:
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f'<polygon label="{label}" occluded="0" points="{points}" z_order="0"{extra}></polygon>'


def box(xtl, ytl, xbr, ybr, label="car", **attrs) -> str:
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f'<box label="{label}" occluded="0" xtl="{xtl}" ytl="{ytl}" xbr="{xbr}" ybr="{ybr}"{extra}></box>'


def load_one(path: Path, **options):
    (item,) = list(CvatReader(path, **options).items())
    return item.load()


# ----------------------------------------------------------------- fixture, expected masks


@pytest.mark.parametrize("ref", ["frame_000", "frame_001", "frame_002"])
def test_fixture_matches_expected_mask(ref):
    items = {it.reference_id: it for it in CvatReader(XML).items()}
    seg = items[ref].load()
    np.testing.assert_array_equal(seg.label_map, read_grid(FIXTURES / "expected" / f"{ref}.txt"))


def test_fixture_categories_from_meta():
    reader = CvatReader(XML)
    assert reader.categories == [
        Category(1, "car", color=(250, 50, 83)),
        Category(2, "person", color=(51, 221, 255)),
        Category(3, "road", color=(170, 170, 170)),
    ]
    assert len(reader) == 3 and reader.default_mode == "instance"
    assert FORMAT.name == "cvat" and FORMAT.reader is CvatReader


def test_fixture_segments_and_metadata():
    items = {it.reference_id: it for it in CvatReader(XML).items()}
    seg = items["frame_000"].load()  # reference_id: the stem of name="street/frame_000.jpg"
    assert [(s.id, s.label, s.category_id) for s in seg.segments] == [
        (1, "person", 2),
        (2, "car", 1),
        (3, "road", 3),
    ]
    person, car, road = seg.segments
    assert person.metadata == {
        "shape": "polygon",
        "z_order": 1,
        "occluded": True,
        "attributes": {"pose": "standing"},
        "source": "manual",
    }
    assert car.metadata["attributes"] == {"color": "red"} and car.metadata["occluded"] is False
    assert road.metadata["source"] == "auto" and "attributes" not in road.metadata
    # z_order 1 puts the person, first in the document, on top of the car
    assert seg.label_map[5, 7] == 1 and seg.label_map[5, 2] == 2

    seg1 = items["frame_001"].load()
    assert seg1.warnings == ["1 polyline shape(s) have no area; skipped"]
    assert [(s.id, s.label, s.metadata.get("group_id")) for s in seg1.segments] == [
        (1, "car", None),
        (2, "person", "3"),
    ]
    assert pickle.loads(pickle.dumps(items["frame_001"])).load().segments == seg1.segments


def test_sniff(tmp_path):
    assert sniff(XML)
    other = tmp_path / "x.xml"
    other.write_text("<annotation><object/></annotation>")  # Pascal VOC
    assert not sniff(other)
    assert not sniff(FIXTURES)


# ----------------------------------------------------------------- CVAT's conventions


@settings(max_examples=60, deadline=None)
@given(
    pts=st.lists(
        st.tuples(st.floats(-5, 30, allow_nan=False), st.floats(-5, 25, allow_nan=False)),
        min_size=3,
        max_size=8,
    )
)
def test_polygon_pixels_are_pycocotools(tmp_path_factory, pts):
    tmp = tmp_path_factory.mktemp("p")
    text = ";".join(f"{x:.2f},{y:.2f}" for x, y in pts)
    seg = load_one(make_xml(tmp, image(poly(text), width=24, height=20)))
    flat = [float(f"{v:.2f}") for p in pts for v in p]
    expect = mask_utils.decode(mask_utils.frPyObjects([flat], 20, 24)[0]).astype(bool)
    np.testing.assert_array_equal(seg.label_map == 1, expect)


def test_box_is_the_polygon_of_its_corners(tmp_path):
    seg = load_one(make_xml(tmp_path, image(box(1.5, 2.25, 7.75, 6.5))))
    expect = mask_utils.decode(mask_utils.frPyObjects([[1.5, 2.25, 7.75, 2.25, 7.75, 6.5, 1.5, 6.5]], 10, 12)[0])
    np.testing.assert_array_equal(seg.label_map, expect)


def test_rotated_box(tmp_path):
    seg = load_one(make_xml(tmp_path, image(box(2, 3, 8, 5, rotation="90.0"))))
    ys, xs = np.nonzero(seg.label_map)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (4, 6, 1, 7)  # 6x2 box turned about (5, 4)


def test_mask_rle_is_row_major_from_a_zero_run(tmp_path):
    rle = "0, 3, 1, 2, 4, 2"  # 3 wide x 4 high: 111 / 011 / 000 / 011
    body = f'<mask label="car" rle="{rle}" left="5" top="2" width="3" height="4" z_order="0"></mask>'
    seg = load_one(make_xml(tmp_path, image(body)))
    expect = np.zeros((10, 12), int)
    expect[2:6, 5:8] = [[1, 1, 1], [0, 1, 1], [0, 0, 0], [0, 1, 1]]
    np.testing.assert_array_equal(seg.label_map, expect)


def test_z_order_ascending_ties_in_document_order(tmp_path):
    body = (
        box(0, 0, 6, 6, z_order="2")  # 1: top
        + box(2, 2, 8, 8, z_order="0")  # 2: bottom
        + box(4, 4, 10, 10, z_order="0")  # 3: above 2 (same z, later)
    )
    seg = load_one(make_xml(tmp_path, image(body)))
    assert seg.label_map[5, 5] == 1 and seg.label_map[7, 7] == 3 and seg.label_map[3, 7] == 2


def test_overlap_policies(tmp_path):
    path = make_xml(tmp_path, image(box(0, 0, 10, 10) + box(2, 2, 4, 4)))
    assert load_one(path).label_map[3, 3] == 2
    assert load_one(path, overlap="small-on-top").label_map[3, 3] == 2
    reverse = make_xml(tmp_path, image(box(2, 2, 4, 4) + box(0, 0, 10, 10)), name="r.xml")
    assert load_one(reverse).label_map[3, 3] == 2
    assert load_one(reverse, overlap="small-on-top").label_map[3, 3] == 1
    with pytest.raises(ItemError, match="overlap on 4 pixels") as err:
        load_one(path, overlap="error")
    assert str(err.value).startswith(f"{path} [img]")


def test_group_joins_shapes_of_one_label(tmp_path):
    body = box(0, 0, 3, 3, group_id="5") + box(7, 7, 10, 10, label="person") + box(2, 2, 6, 6, group_id="5")
    seg = load_one(make_xml(tmp_path, image(body)), overlap="error")  # a group's parts may overlap
    assert [(s.id, s.label) for s in seg.segments] == [(1, "car"), (2, "person")]
    assert np.count_nonzero(seg.label_map == 1) == 9 + 16 - 1
    other = box(0, 0, 3, 3, group_id="5") + box(2, 2, 6, 6, group_id="6")
    with pytest.raises(ItemError, match="overlap on 1 pixels"):
        load_one(make_xml(tmp_path, image(other), name="b.xml"), overlap="error")


def test_ellipse(tmp_path):
    body = '<ellipse label="car" occluded="0" cx="6" cy="5" rx="3" ry="2" z_order="0"></ellipse>'
    seg = load_one(make_xml(tmp_path, image(body)))
    theta = np.linspace(0, 2 * np.pi, 720)
    flat = np.stack([6 + 3 * np.cos(theta), 5 + 2 * np.sin(theta)], 1).ravel().tolist()
    np.testing.assert_array_equal(seg.label_map, mask_utils.decode(mask_utils.frPyObjects([flat], 10, 12)[0]))


def test_streaming_yields_before_the_end_of_the_file(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text(
        "<annotations><version>1.1</version><meta/>"
        + image(box(0, 0, 2, 2), name="one.jpg")
        + image("", name="two.jpg")
        + "<image id='3' name='three.jpg'><box"  # truncated file
    )
    items = CvatReader(path).items()
    assert next(items).reference_id == "one"
    assert next(items).reference_id == "two"
    with pytest.raises(SourceError, match="not well-formed XML"):
        next(items)


def test_many_images_counted_and_read(tmp_path):
    body = "".join(image(box(i % 10, 0, 12, 10), name=f"f{i:04d}.jpg", id_=i) for i in range(500))
    reader = CvatReader(make_xml(tmp_path, body))
    assert len(reader) == 500
    refs = [it.reference_id for it in reader.items()]
    assert refs[0] == "f0000" and refs[-1] == "f0499" and len(refs) == 500


def test_tag_is_ignored_and_points_are_warned(tmp_path):
    body = '<tag label="car"></tag><points label="car" points="1,1;2,2" z_order="0"></points>' + box(0, 0, 2, 2)
    seg = load_one(make_xml(tmp_path, image(body)))
    assert seg.warnings == ["1 points shape(s) have no area; skipped"] and len(seg.segments) == 1


# ----------------------------------------------------------------- labels


def test_unknown_label_is_an_item_error(tmp_path):
    path = make_xml(tmp_path, image(box(0, 0, 2, 2, label="bus"), name="x/a.png") + image("", name="b.png", id_=1))
    first, second = CvatReader(path).items()
    with pytest.raises(ItemError) as err:
        first.load()
    assert str(err.value) == (
        f"{path} [a]: image 'x/a.png' (id 0): <box> #0: label 'bus' is not in the task's labels in <meta>; "
        "pass labels=<file> to declare or map it"
    )
    assert second.load().segments == []


def test_labels_file_maps_and_declares(tmp_path):
    path = make_xml(tmp_path, image(box(0, 0, 2, 2, label="bus") + box(4, 4, 6, 6, label="car")))
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"car": {"id": 1, "name": "vehicle"}, "bus": {"id": 1, "name": "vehicle"}}))
    reader = CvatReader(path, labels=labels)
    assert reader.categories == [Category(1, "vehicle")]
    seg = next(iter(reader.items())).load()
    assert [(s.label, s.category_id) for s in seg.segments] == [("vehicle", 1), ("vehicle", 1)]
    labels.write_text(json.dumps(["car"]))
    with pytest.raises(ItemError, match="label 'bus' is not in the labels table"):
        load_one(path, labels=labels)


def test_no_meta_labels_accepts_any_label(tmp_path):
    reader = CvatReader(make_xml(tmp_path, image(box(0, 0, 2, 2, label="anything")), labels=()))
    assert reader.categories is None
    assert next(iter(reader.items())).load().segments[0].category_id is None


# ----------------------------------------------------------------- bad input, each named


def test_polygon_of_two_points_is_skipped_with_a_warning(tmp_path):
    body = '<tag label="car"></tag>' + poly("1,1;5,5") + box(0, 0, 2, 2)
    seg = load_one(make_xml(tmp_path, image(body)))  # shapes are numbered among all the image's children
    assert seg.warnings == ["<polygon> #1 (label 'car'): a polygon of 2 points (fewer than 3); skipped"]
    assert [s.id for s in seg.segments] == [1]


@pytest.mark.parametrize(
    "shape, message",
    [
        (poly("1,1;nan,5;5,1"), "coordinate is 'nan', not a finite number"),
        (poly("1,1;abc,5;5,1"), "coordinate 'abc' is not a number"),
        (poly("1,1;5;5,1"), "point '5' is not 'x,y'"),
        (box("1", "inf", 4, 4), "ytl is 'inf', not a finite number"),
        (box("1", "x", 4, 4), "ytl 'x' is not a number"),
        ('<box label="car" xtl="1" ytl="1" xbr="3"></box>', "no 'ybr'"),
        (box(0, 0, 2, 2, z_order="top"), "z_order 'top' is not an integer"),
        (box(0, 0, 2, 2, rotation="left"), "rotation 'left' is not a number"),
    ],
)
def test_bad_coordinates_fail_the_item(tmp_path, shape, message):
    path = make_xml(tmp_path, image(shape))
    with pytest.raises(ItemError) as err:
        load_one(path)
    assert str(err.value).startswith(f"{path} [img]: image 'img.jpg' (id 0): <")
    assert message in str(err.value)


@pytest.mark.parametrize(
    "attrs, message",
    [
        (
            'rle="1, 2" left="0" top="0" width="2" height="2"',
            "rle covers 3 pixels but the mask box is 2x2 = 4",
        ),
        ('rle="1, x" left="0" top="0" width="2" height="2"', "not a comma-separated list of integers"),
        ('rle="5, -1" left="0" top="0" width="2" height="2"', "negative run length"),
        ('rle="4" left="0" top="0" width="two" height="2"', "width 'two' is not an integer"),
        ('rle="" left="0" top="0" width="0" height="2"', "empty"),
    ],
)
def test_bad_mask_fails_the_item(tmp_path, attrs, message):
    with pytest.raises(ItemError, match=message):
        load_one(make_xml(tmp_path, image(f'<mask label="car" {attrs}></mask>')))


def test_outside_coordinates_are_clipped_and_warned(tmp_path):
    body = (
        poly("-2,-1;5,-1;5,4")
        + box(8, 6, 15, 12)
        + '<mask label="car" rle="0, 9" left="10" top="8" width="3" height="3" z_order="0"></mask>'
    )
    seg = load_one(make_xml(tmp_path, image(body)))
    assert seg.warnings == [
        "<polygon> #0 (label 'car'): 2 of 3 points outside the 12x10 image; clipped",
        "<box> #1 (label 'car'): 3 of 4 points outside the 12x10 image; clipped",
        "<mask> #2 (label 'car'): its mask box outside the 12x10 image; clipped",
    ]
    assert seg.label_map.shape == (10, 12) and seg.label_map[9, 11] == 3 and seg.label_map[0, 0] == 1


@pytest.mark.parametrize(
    "shape",
    [
        poly("1,1;5e9,5;5,1"),
        box(0, 0, 40, 5),
        '<ellipse label="car" cx="6" cy="5" rx="30" ry="2"></ellipse>',
        '<mask label="car" rle="0, 1000000000000" left="0" top="0" width="1000000" height="1000000"></mask>',
    ],
)
def test_points_far_outside_fail_the_item(tmp_path, shape):
    # a wrong image size (or corrupt data), not a slip of the mouse; and pycocotools would
    # allocate memory in proportion to the perimeter for coordinates in the billions
    with pytest.raises(ItemError, match="more than an image size outside the 12x10 image; is the image size right"):
        load_one(make_xml(tmp_path, image(shape)))


def test_no_image_size_fails_the_item(tmp_path):
    path = make_xml(tmp_path, image(box(0, 0, 2, 2), width=None, height=None))
    with pytest.raises(ItemError) as err:
        load_one(path)
    assert str(err.value) == (
        f"{path} [img]: image 'img.jpg' (id 0): no image size: width/height missing; "
        "pass images=<dir> to read it from the images"
    )


def test_images_dir_gives_the_size(tmp_path):
    path = make_xml(tmp_path, image(box(0, 0, 2, 2), name="sub/img.jpg", width=None, height=None))
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    PIL.Image.new("RGB", (7, 5)).save(tmp_path / "imgs" / "sub" / "img.jpg")
    assert load_one(path, images=tmp_path / "imgs").label_map.shape == (5, 7)
    with pytest.raises(ItemError, match="no readable image 'sub/img.jpg'"):
        load_one(path, images=tmp_path)


def test_bad_image_size_fails_the_item(tmp_path):
    with pytest.raises(ItemError, match="must be integers"):
        load_one(make_xml(tmp_path, image("", width="wide")))


def test_duplicate_reference_id_fails_the_second_image(tmp_path):
    path = make_xml(tmp_path, image("", name="a/x.jpg") + image("", name="b/x.png", id_=1))
    first, second = CvatReader(path).items()
    first.load()
    with pytest.raises(ItemError, match="reference id 'x' is already used by image 'a/x.jpg'"):
        second.load()


def test_video_format_is_refused(tmp_path):
    path = tmp_path / "video.xml"
    path.write_text('<annotations><version>1.1</version><meta/><track id="0" label="car"></track></annotations>')
    with pytest.raises(SourceError, match="CVAT for video"):
        CvatReader(path)


def test_source_errors(tmp_path):
    with pytest.raises(SourceError, match="file not found"):
        CvatReader(tmp_path / "missing.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotations><meta><task></meta>")
    with pytest.raises(SourceError, match="not well-formed XML"):
        CvatReader(bad)


# ----------------------------------------------------------------- end to end


def test_convert_to_nucleus(tmp_path):
    import segconvert

    out = tmp_path / "out"
    summary = segconvert.convert(XML, out, from_format="cvat", jobs=1)
    assert summary.ok and summary.converted == 3
    mask = np.asarray(PIL.Image.open(out / "masks" / "frame_000.png"))
    np.testing.assert_array_equal(mask, read_grid(FIXTURES / "expected" / "frame_000.txt"))
    records = {json.loads(line)["reference_id"]: json.loads(line) for line in (out / "annotations.jsonl").open()}
    anns = records["frame_000"]["annotations"]
    assert [(a["label"], a["index"]) for a in anns] == [
        ("background", 0),
        ("person", 1),
        ("car", 2),
        ("road", 3),
    ]
    assert anns[1]["metadata"]["occluded"] is True and anns[1]["metadata"]["attributes"] == {"pose": "standing"}


def test_convert_semantic_uses_the_meta_table(tmp_path):
    import segconvert

    out = tmp_path / "out"
    summary = segconvert.convert(XML, out, from_format="cvat", mode="semantic", jobs=1)
    assert summary.ok
    mask = np.asarray(PIL.Image.open(out / "masks" / "frame_000.png"))
    assert mask[5, 7] == 2 and mask[5, 2] == 1 and mask[10, 0] == 3  # person, car, road: table positions


# ----------------------------------------------------------------- empty labels, project exports


def test_empty_label_is_skipped_with_a_warning(tmp_path):
    # Datumaro's CVAT import leaves such a shape unlabelled; it is no reason to lose the image
    body = poly("0,0;5,0;5,5", label="") + box(6, 6, 9, 9) + '<polygon points="1,1;2,1;2,2" z_order="0"/>'
    seg = load_one(make_xml(tmp_path, image(body)))
    assert [s.label for s in seg.segments] == ["car"]
    assert seg.warnings == ["<polygon> #0 has an empty label; skipped", "<polygon> #2 has an empty label; skipped"]
    assert seg.label_map[0, 4] == 0 and seg.label_map[7, 7] == 1


def project_xml(tmp_path: Path, images: list[tuple[str, str, int, str]], subsets=("train", "val")) -> Path:
    """A CVAT project export: <meta><project> with labels and subsets, images with subset and task_id."""
    label_xml = "".join(f"<label><name>{n}</name><color>#102030</color></label>" for n in ("car", "person"))
    meta = (f"<meta><project><id>2</id><name>p</name><labels>{label_xml}</labels>"
            f"<subsets>{chr(10).join(subsets)}</subsets></project></meta>")
    body = "".join(
        f'<image id="{k}" name="{name}" subset="{subset}" task_id="{task}" width="12" height="10">{shapes}</image>'
        for k, (name, subset, task, shapes) in enumerate(images)
    )
    path = tmp_path / "project.xml"
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>{meta}{body}'
                    "</annotations>")
    return path


def cli(*args: object):
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_project_export_converts_every_subset_apart(tmp_path):
    path = project_xml(tmp_path, [
        ("frame_000.jpg", "train", 3, box(0, 0, 3, 3)),
        ("frame_001.jpg", "train", 3, box(0, 0, 5, 5, label="person")),
        ("frame_000.jpg", "val", 4, box(6, 6, 9, 9, label="person")),
    ])
    reader = CvatReader(path)
    assert reader.subsets == ["train", "val"] and len(reader) == 3
    out = tmp_path / "out"
    result = cli("convert", path, out, "--from", "cvat", "-j", "1")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert [r["reference_id"] for r in records] == ["train_frame_000", "train_frame_001", "val_frame_000"]
    train = np.asarray(PIL.Image.open(out / "masks" / "train_frame_000.png"))
    val = np.asarray(PIL.Image.open(out / "masks" / "val_frame_000.png"))
    assert train[1, 1] == 1 and train[7, 7] == 0 and val[1, 1] == 0 and val[7, 7] == 1
    assert [a["label"] for a in records[2]["annotations"]] == ["background", "person"]


def test_subset_option_picks_one_subset(tmp_path):
    path = project_xml(tmp_path, [
        ("frame_000.jpg", "train", 3, box(0, 0, 3, 3)),
        ("frame_000.jpg", "val", 4, box(6, 6, 9, 9, label="person")),
        ("frame_001.jpg", "val", 4, ""),
    ])
    reader = CvatReader(path, subset="val")
    assert len(reader) == 2
    items = list(reader.items())
    assert [it.reference_id for it in items] == ["frame_000", "frame_001"]
    assert items[0].load().label_map[7, 7] == 1 and items[0].load().segments[0].label == "person"
    with pytest.raises(SourceError, match=r"subset=\"test\": the project's subsets are train, val"):
        CvatReader(path, subset="test")
    with pytest.raises(SourceError, match="lists no subsets"):
        CvatReader(XML, subset="train")


def test_one_subset_project_keeps_plain_stems(tmp_path):
    path = project_xml(tmp_path, [("a/frame_000.jpg", "default", 3, "")], subsets=("default",))
    assert [it.reference_id for it in CvatReader(path).items()] == ["frame_000"]


def test_duplicate_in_a_project_names_both_images(tmp_path):
    # one subset, two tasks with the same file name: the message says which two images
    path = project_xml(tmp_path, [
        ("frame_000.jpg", "train", 3, box(0, 0, 3, 3)),
        ("frame_000.jpg", "train", 5, ""),
        ("frame_001.jpg", "val", 4, ""),
    ])
    out = tmp_path / "out"
    result = cli("convert", path, out, "--from", "cvat", "-j", "1")
    assert result.exit_code == 1
    assert "converted 2, skipped 0 (done before), failed 1 of 3" in result.output
    assert ("image 'frame_000.jpg' (id 1, subset 'train', task 5): reference id 'train_frame_000' is already "
            "used by image 'frame_000.jpg' (id 0, subset 'train', task 3)") in result.output
    assert (out / "masks" / "train_frame_000.png").is_file() and (out / "masks" / "val_frame_001.png").is_file()


def test_impossibly_large_size_fails_naming_the_size(tmp_path):
    path = make_xml(tmp_path, image(poly("1,1;5,1;5,5"), width=10**12, height=10**12))
    with pytest.raises(ItemError, match=r"image 'img.jpg' \(id 0\): image size 1000000000000x1000000000000 .*32-bit"):
        load_one(path)


# ----------------------------------------------------------------- background and void labels


def semantic(seg, categories):
    """The class index map of a Segmentation (0 = background), through the semantic mode."""
    from segconvert.model.modes import ModePlan

    return ModePlan("semantic", categories=categories).apply(seg).resolved_label_map(np.int64)


def test_meta_background_label_is_no_category(tmp_path):
    # a CVAT project with a 'background' label (CVAT's mask export writes it as labelmap.txt line 0)
    path = make_xml(tmp_path, image(box(0, 0, 2, 2)), labels=("background", "car", "_background_", "person"))
    reader = CvatReader(path)
    assert [(c.id, c.name) for c in reader.categories] == [(1, "car"), (2, "person")]
    assert reader.categories[0].color == (16, 32, 48)


def test_meta_of_reserved_names_only_is_still_a_table(tmp_path):
    path = make_xml(tmp_path, image(box(0, 0, 2, 2, label="background") + box(4, 4, 6, 6)), labels=("background",))
    reader = CvatReader(path)
    assert reader.categories == []
    with pytest.raises(ItemError, match="label 'car' is not in the task's labels in <meta>"):
        next(iter(reader.items())).load()


@pytest.mark.parametrize("name", ["background", "Background", "_background_", "__background__", "unlabeled"])
def test_background_shape_paints_background_in_its_place(tmp_path, name):
    body = (
        box(0, 0, 10, 8, z_order="0")  # car, bottom
        + box(2, 2, 6, 6, label=name, z_order="1")  # cuts a hole in the car
        + box(4, 4, 8, 8, label="person", z_order="2")  # painted over the hole
    )
    reader = CvatReader(make_xml(tmp_path, image(body), labels=("background", "car", "person")))
    seg = next(iter(reader.items())).load()
    assert [(s.label, s.category_id) for s in seg.segments] == [("car", 1), ("person", 2)]
    assert set(seg.dropped_ids) == {2}
    expect = np.zeros((10, 12), np.int64)
    expect[0:8, 0:10] = 1
    expect[2:6, 2:6] = 0
    expect[4:8, 4:8] = 2
    np.testing.assert_array_equal(semantic(seg, reader.categories), expect)


def test_background_shape_below_in_z_order_changes_nothing(tmp_path):
    body = box(2, 2, 6, 6, label="background", z_order="0") + box(0, 0, 10, 8, z_order="1")
    reader = CvatReader(make_xml(tmp_path, image(body)))
    seg = next(iter(reader.items())).load()
    expect = np.zeros((10, 12), np.int64)
    expect[0:8, 0:10] = 1
    np.testing.assert_array_equal(semantic(seg, reader.categories), expect)


def test_background_label_needs_no_table_entry(tmp_path):
    """Neither <meta> nor --labels has to list background / void names: they are never classes."""
    body = box(0, 0, 4, 4) + box(1, 1, 3, 3, label="__ignore__") + box(5, 5, 9, 9, label="_background_")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["car"]))
    for options in ({}, {"labels": labels}):
        seg = load_one(make_xml(tmp_path, image(body)), **options)
        assert [s.label for s in seg.segments] == ["car"]
        assert set(seg.dropped_ids) == {2, 3}
    seg = load_one(make_xml(tmp_path, image(body), labels=()))  # no table at all
    assert [s.label for s in seg.segments] == ["car"] and set(seg.dropped_ids) == {2, 3}


def test_void_ignore_is_one_segment_kept_in_every_mode(tmp_path):
    from segconvert.model.modes import ModePlan

    body = (
        box(0, 0, 2, 2, label="__ignore__")
        + box(4, 4, 6, 6, label="person")
        + box(8, 0, 10, 2, label="__ignore__")
        + box(5, 5, 7, 7, label="__ignore__", z_order="-1")  # under the person
    )
    path = make_xml(tmp_path, image(body))
    reader = CvatReader(path, void="ignore")
    assert [(c.id, c.name) for c in reader.categories] == [(1, "car"), (2, "person"), (3, "ignore")]
    seg = next(iter(reader.items())).load()
    assert [(s.label, s.category_id) for s in seg.segments] == [("ignore", 3), ("person", 2)]
    assert seg.segments[0].pixels == (1, 3, 4) and not seg.dropped_ids
    for mode in ("panoptic", "instance"):
        assert [s.label for s in ModePlan(mode).apply(seg).segments] == ["ignore", "person"]
    classes = semantic(seg, reader.categories)
    expect = np.zeros((10, 12), np.int64)
    expect[0:2, 0:2] = expect[0:2, 8:10] = 3
    expect[5:7, 5:7] = 3  # the low void box: what the person leaves of it
    expect[4:6, 4:6] = 2
    np.testing.assert_array_equal(classes, expect)
    default = load_one(path)  # --void background: void is background 0
    assert [s.label for s in default.segments] == ["person"] and set(default.dropped_ids) == {1, 3, 4}
    assert CvatReader(path).categories == [Category(1, "car", color=(16, 32, 48)),
                                           Category(2, "person", color=(16, 32, 48))]


def test_void_ignore_uses_the_tables_own_ignore_class(tmp_path):
    path = make_xml(tmp_path, image(box(0, 0, 2, 2, label="__ignore__")), labels=("background", "ignore", "car"))
    reader = CvatReader(path, void="ignore")
    assert [(c.id, c.name) for c in reader.categories] == [(1, "ignore"), (2, "car")]
    assert [(s.label, s.category_id) for s in next(iter(reader.items())).load().segments] == [("ignore", 1)]
    anywhere = CvatReader(make_xml(tmp_path, image(box(0, 0, 2, 2, label="__ignore__")), labels=()), void="ignore")
    assert anywhere.categories is None
    assert [(s.label, s.category_id) for s in next(iter(anywhere.items())).load().segments] == [("ignore", None)]


def test_bad_void_policy_is_refused(tmp_path):
    with pytest.raises(SourceError, match="void must be background or ignore, not 'skip'"):
        CvatReader(make_xml(tmp_path, image("")), void="skip")


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(
        st.tuples(
            st.sampled_from(["car", "person", "background", "__ignore__"]),
            st.integers(0, 9), st.integers(0, 7), st.integers(1, 6), st.integers(1, 6), st.integers(-1, 1),
        ),
        max_size=6,
    ),
    void=st.sampled_from(["background", "ignore"]),
)
def test_classes_equal_a_painter_of_the_class_ids(tmp_path_factory, shapes, void):
    """Semantic classes = painting each shape's class (0 for background, void's own value) by z_order."""
    tmp = tmp_path_factory.mktemp("v")
    body = "".join(box(x, y, x + w, y + h, label=label, z_order=str(z)) for label, x, y, w, h, z in shapes)
    path = make_xml(tmp, image(body), labels=("background", "car", "person"))
    reader = CvatReader(path, void=void)
    seg = next(iter(reader.items())).load()
    ids = {"car": 1, "person": 2, "background": 0, "__ignore__": 3 if void == "ignore" else 0}
    expect = np.zeros((10, 12), np.int64)
    for label, x, y, w, h, _z in sorted(shapes, key=lambda s: s[5]):  # stable: ties in document order
        rle = mask_utils.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], 10, 12)[0]
        expect[mask_utils.decode(rle).astype(bool)] = ids[label]
    np.testing.assert_array_equal(semantic(seg, reader.categories), expect)


def test_convert_with_void_ignore_from_the_command(tmp_path):
    body = box(0, 0, 6, 6) + box(2, 2, 4, 4, label="background", z_order="1") + box(8, 6, 12, 10, label="__ignore__")
    path = make_xml(tmp_path, image(body, name="f.jpg"), labels=("background", "car", "person"))
    out = tmp_path / "out"
    result = cli("convert", path, out, "--from", "cvat", "--mode", "semantic", "--void", "ignore", "-j", "1")
    assert result.exit_code == 0, result.output
    mask = np.asarray(PIL.Image.open(out / "masks" / "f.png"))
    (record,) = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    index = {a["label"]: a["index"] for a in record["annotations"]}
    assert set(index) == {"background", "car", "ignore"}
    expect = np.zeros((10, 12), np.uint8)
    expect[0:6, 0:6] = index["car"]
    expect[2:4, 2:4] = 0
    expect[6:10, 8:12] = index["ignore"]
    np.testing.assert_array_equal(mask, expect)


# ----------------------------------------------------------------- duplicates over many images


def test_duplicate_messages_over_thousands_of_images(tmp_path):
    """The reader's table of reference ids (on disk, hashes in memory) names the earlier image as a dict did."""
    names = [f"f{k}.jpg" for k in range(5000)]  # the table grows several times
    names[2500] = "a/f3.png"  # the stem of image 3
    names[4999] = "b/f3.jpg"  # a third time: the first image is named
    names[4000] = "F1.jpg"  # another case is another reference id here (the pipeline compares case-folded)
    path = make_xml(tmp_path, "".join(image("", name=n, id_=k) for k, n in enumerate(names)))
    items = list(CvatReader(path).items())
    failed = {k: it for k, it in enumerate(items) if hasattr(it, "error")}
    assert sorted(failed) == [2500, 4999]
    for k in failed:
        with pytest.raises(ItemError) as err:
            failed[k].load()
        assert str(err.value) == (f"{path} [f3]: image {names[k]!r} (id {k}): reference id 'f3' is already used "
                                  "by image 'f3.jpg' (id 3)")
    assert items[4000].reference_id == "F1"
