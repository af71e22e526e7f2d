"""Pascal VOC reader and writer: pairing of class and object PNGs, class tables, round trips.

VOC roots are built here with Pillow (palette PNGs as the devkit's, CVAT's and
labelme2voc's are), independently of the writer under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import read_mask, read_payloads
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import segconvert
from segconvert.converters.voc import VOC_CLASSES, VOC_PALETTE, VocWriter, parse_labelmap, voc_palette
from segconvert.errors import SourceError
from segconvert.interfaces import registry
from segconvert.model.modes import ModePlan


def save_palette(path: Path, arr: np.ndarray, palette: np.ndarray = VOC_PALETTE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr.astype(np.uint8), "P")
    im.putpalette(palette.astype(np.uint8).tobytes())
    im.save(path)


def write_voc(root: Path, stem: str, cls: np.ndarray, obj: np.ndarray | None) -> None:
    save_palette(root / "SegmentationClass" / f"{stem}.png", cls)
    if obj is not None:
        save_palette(root / "SegmentationObject" / f"{stem}.png", obj)


def scene() -> tuple[np.ndarray, np.ndarray]:
    cls = np.zeros((30, 40), np.uint8)
    obj = np.zeros_like(cls)
    cls[2:10, 2:12], obj[2:10, 2:12] = 15, 1  # person
    cls[12:20, 5:35] = 7  # two cars side by side
    obj[12:20, 5:20], obj[12:20, 20:35] = 2, 3
    cls[12, 5:8] = 12  # 3 pixels of object 2 say dog
    cls[1, 2:12], obj[1, 2:12] = 255, 255  # boundary ring
    cls[25:28, 0:6] = 9  # chair pixels outside every object: stuff
    return cls, obj


def test_palette_is_the_devkits():
    # VOC devkit labelcolormap: 0 black, 1 (128,0,0), 2 (0,128,0), 15 person (192,128,128), 255 (224,224,192)
    pal = voc_palette()
    assert pal[1].tolist() == [128, 0, 0] and pal[2].tolist() == [0, 128, 0]
    assert pal[15].tolist() == [192, 128, 128] and pal[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in pal.tolist()}) == 256


def test_objects_take_the_majority_class_and_disagreement_is_reported(tmp_path):
    cls, obj = scene()
    write_voc(tmp_path / "voc", "a", cls, obj)
    s = segconvert.convert(tmp_path / "voc", tmp_path / "pan", from_format="voc", mode="panoptic", jobs=1)
    assert s.ok and s.converted == 1
    assert any("object 2: 3 of 120 pixels disagree" in w and "3 px dog" in w for w in s.warnings)
    (payload,) = read_payloads(tmp_path / "pan")
    segs = [(a["label"], a["metadata"]["isthing"], a["metadata"]["area"]) for a in payload["annotations"][1:]]
    assert segs == [("person", True, 80), ("car", True, 120), ("car", True, 120), ("chair", False, 18)]
    mask = read_mask(tmp_path / "pan" / "masks" / "a.png")
    assert (mask[obj == 1] == 1).all() and (mask[obj == 3] == 3).all()
    assert (mask[obj == 255] == 0).all()  # void -> background by default

    s = segconvert.convert(tmp_path / "voc", tmp_path / "ins", from_format="voc", mode="instance", jobs=1)
    (payload,) = read_payloads(tmp_path / "ins")
    assert [a["label"] for a in payload["annotations"]] == ["background", "person", "car", "car"]
    assert (read_mask(tmp_path / "ins" / "masks" / "a.png")[25:28, 0:6] == 0).all()  # stuff dropped


def test_semantic_reads_the_class_png_alone(tmp_path):
    cls, obj = scene()
    write_voc(tmp_path / "voc", "a", cls, obj)
    s = segconvert.convert(tmp_path / "voc", tmp_path / "sem", from_format="voc", mode="semantic", jobs=1)
    assert s.ok and not s.warnings
    mask = read_mask(tmp_path / "sem" / "masks" / "a.png")
    expected = np.where(cls == 255, 0, cls)  # stable index = VOC class index
    assert (mask == expected).all()


def test_void_ignore_is_a_segment(tmp_path):
    cls, obj = scene()
    write_voc(tmp_path / "voc", "a", cls, obj)
    s = segconvert.convert(tmp_path / "voc", tmp_path / "out", from_format="voc", mode="panoptic", void="ignore",
                           jobs=1)
    assert s.ok
    (payload,) = read_payloads(tmp_path / "out")
    ignore = [a for a in payload["annotations"] if a["label"] == "ignore"]
    assert len(ignore) == 1 and ignore[0]["metadata"]["area"] == 10
    mask = read_mask(tmp_path / "out" / "masks" / "a.png")
    assert (mask[obj == 255] == ignore[0]["index"]).all()


def test_class_only_root_is_semantic_and_refuses_instances(tmp_path):
    cls, _ = scene()
    write_voc(tmp_path / "voc", "a", cls, None)
    s = segconvert.convert(tmp_path / "voc", tmp_path / "sem", from_format="voc", jobs=1)
    assert s.ok and s.converted == 1
    with pytest.raises(SourceError, match="SegmentationObject"):
        segconvert.convert(tmp_path / "voc", tmp_path / "ins", from_format="voc", mode="instance", jobs=1)


def test_subsets_union_and_one_subset(tmp_path):
    cls, obj = scene()
    root = tmp_path / "voc"
    for stem in ("a", "b", "c", "unlisted"):
        write_voc(root, stem, cls, obj)
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("a\nb\n")
    (sets / "val.txt").write_text("b\nc\n")
    s = segconvert.convert(root, tmp_path / "all", from_format="voc", jobs=1)
    assert s.converted == 3 and [p["reference_id"] for p in read_payloads(tmp_path / "all")] == ["a", "b", "c"]
    s = segconvert.convert(root, tmp_path / "val", from_format="voc", subset="val", jobs=1)
    assert [p["reference_id"] for p in read_payloads(tmp_path / "val")] == ["b", "c"]
    with pytest.raises(SourceError, match="lists there: train, val"):
        segconvert.convert(root, tmp_path / "x", from_format="voc", subset="test", jobs=1)


def test_listed_image_without_png_and_unknown_class_fail_their_items(tmp_path):
    cls, obj = scene()
    root = tmp_path / "voc"
    write_voc(root, "a", cls, obj)
    bad = cls.copy()
    bad[0, 0] = 40  # not one of the 21 classes
    write_voc(root, "b", bad, obj)
    save_palette(root / "SegmentationClass" / "c.png", cls)  # no object PNG
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("a\nb\nc\nmissing\n")
    s = segconvert.convert(root, tmp_path / "out", from_format="voc", jobs=1)
    assert s.converted == 1 and s.failed == 3
    text = "\n".join(s.failures)
    assert "b.png [b]: SegmentationClass values not in the class table" in text and "40 (1 px)" in text
    assert "c.png [c]: no SegmentationObject PNG" in text
    assert "missing.png [missing]: no SegmentationClass PNG" in text


def test_labelmap_txt_colours_decide_rgb_and_palette_masks(tmp_path):
    root = tmp_path / "voc"
    root.mkdir()
    (root / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\nroad:10,20,30::\n\ncar:250,0,0:wheel:\n"
    )
    assert parse_labelmap(root / "labelmap.txt") == [("background", (0, 0, 0)), ("road", (10, 20, 30)),
                                                    ("car", (250, 0, 0))]
    cls = np.zeros((8, 10), np.uint8)
    cls[:, 5:] = 1
    cls[2:4, 1:3] = 2
    # an RGB class mask (as Datumaro writes them) in the labelmap's colours
    colors = np.array([[0, 0, 0], [10, 20, 30], [250, 0, 0]], np.uint8)
    (root / "SegmentationClass").mkdir()
    Image.fromarray(colors[cls], "RGB").save(root / "SegmentationClass" / "rgb.png")
    # a palette mask whose palette holds those colours at other indices: colour decides
    pal = np.zeros((256, 3), np.uint8)
    pal[7], pal[9] = colors[1], colors[2]
    save_palette(root / "SegmentationClass" / "pal.png", np.select([cls == 1, cls == 2], [7, 9], 0), pal)
    s = segconvert.convert(root, tmp_path / "out", from_format="voc", jobs=1)
    assert s.ok and s.converted == 2
    for ref in ("pal", "rgb"):
        assert (read_mask(tmp_path / "out" / "masks" / f"{ref}.png") == cls).all()
    payload = read_payloads(tmp_path / "out")[0]
    assert [a["label"] for a in payload["annotations"]] == ["background", "road", "car"]


def test_labelmap_errors_are_source_errors(tmp_path):
    root = tmp_path / "voc"
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "labelmap.txt").write_text("background:0,0,0::\ncar:1,2::\n")
    with pytest.raises(SourceError, match="line 2: label 'car' has colour"):
        segconvert.convert(root, tmp_path / "out", from_format="voc", jobs=1)
    (root / "labelmap.txt").write_text("background:::\ncar:::\ncar:::\n")
    with pytest.raises(SourceError, match="already defined"):
        segconvert.convert(root, tmp_path / "out", from_format="voc", jobs=1)


def test_class_names_txt_of_labelme2voc(tmp_path):
    root = tmp_path / "voc"
    cls = np.zeros((6, 6), np.uint8)
    cls[1:3, 1:3] = 2
    write_voc(root, "x", cls, None)
    (root / "class_names.txt").write_text("_background_\ncat\ndog\n")
    s = segconvert.convert(root, tmp_path / "out", from_format="voc", jobs=1)
    assert s.ok
    assert [a["label"] for a in read_payloads(tmp_path / "out")[0]["annotations"]] == ["background", "dog"]


def test_auto_detects_a_voc_root(tmp_path):
    cls, obj = scene()
    write_voc(tmp_path / "voc", "a", cls, obj)
    assert registry.detect(tmp_path / "voc") == "voc"


def test_writer_needs_a_category_table(tmp_path):
    with pytest.raises(SourceError, match="category table"):
        VocWriter(tmp_path, ModePlan(mode="instance", categories=None))


def test_writer_output_is_a_voc_root_datumaro_and_cvat_read(tmp_path):
    """What Datumaro and CVAT rely on: palette PNGs whose colours are labelmap.txt's colours
    (they map pixels by colour), the devkit's palette, labelmap.txt in their line form."""
    cls, obj = scene()
    write_voc(tmp_path / "voc", "a", cls, obj)
    s = segconvert.convert(tmp_path / "voc", tmp_path / "out", from_format="voc", to_format="voc", jobs=1)
    assert s.ok
    rows = parse_labelmap(tmp_path / "out" / "labelmap.txt")
    assert [n for n, _ in rows] == list(VOC_CLASSES)
    for sub in ("SegmentationClass", "SegmentationObject"):
        im = Image.open(tmp_path / "out" / sub / "a.png")
        assert im.mode == "P"
        pal = np.frombuffer(bytes(im.getpalette()), np.uint8).reshape(-1, 3)
        assert (pal[:256] == VOC_PALETTE[: len(pal)]).all()
    rgb = np.asarray(Image.open(tmp_path / "out" / "SegmentationClass" / "a.png").convert("RGB"))
    by_color = {c: k for k, (_, c) in enumerate(rows)}
    decoded = np.array([[by_color[tuple(p)] for p in row] for row in rgb.tolist()])
    expected = np.where(obj == 255, 0, cls)
    expected[12, 5:8] = 7  # the disagreeing pixels are the object's class now
    assert (decoded == expected).all()
    assert (tmp_path / "out" / "ImageSets" / "Segmentation" / "default.txt").read_text() == "a\n"


@st.composite
def voc_scenes(draw):
    h, w = draw(st.integers(8, 24)), draw(st.integers(8, 24))
    cls = np.zeros((h, w), np.uint8)
    obj = np.zeros((h, w), np.uint8)
    n = draw(st.integers(0, 6))
    for k in range(1, n + 1):
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
        c = draw(st.integers(1, 20))
        cls[y0:y1, x0:x1], obj[y0:y1, x0:x1] = c, k
    if draw(st.booleans()):  # stuff: class pixels outside every object
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        free = obj[y0:, x0:] == 0
        cls[y0:, x0:][free] = draw(st.integers(1, 20))
    if draw(st.booleans()):  # a void row
        y = draw(st.integers(0, h - 1))
        cls[y], obj[y] = 255, 255
    return cls, obj


@given(voc_scenes(), st.sampled_from(["panoptic", "semantic"]), st.sampled_from(["background", "ignore"]))
@settings(max_examples=25)
def test_round_trip_ir_voc_ir_is_the_identity(tmp_path_factory, sc, mode, void):
    tmp = tmp_path_factory.mktemp("rt")
    cls, obj = sc
    write_voc(tmp / "src", "s", cls, obj)
    first = segconvert.convert(tmp / "src", tmp / "ir1", from_format="voc", mode=mode, void=void, jobs=1)
    segconvert.convert(tmp / "src", tmp / "voc", from_format="voc", to_format="voc", mode=mode, void=void, jobs=1)
    second = segconvert.convert(tmp / "voc", tmp / "ir2", from_format="voc", mode=mode, void=void, jobs=1)
    assert first.ok and second.ok and first.converted == second.converted == 1
    a, b = read_payloads(tmp / "ir1")[0], read_payloads(tmp / "ir2")[0]

    def segs(p):
        return [(x["label"], x["index"], x.get("metadata", {}).get("area")) for x in p["annotations"]]

    assert segs(a) == segs(b)
    assert (read_mask(tmp / "ir1" / "masks" / "s.png") == read_mask(tmp / "ir2" / "masks" / "s.png")).all()


def test_writer_bytes_do_not_depend_on_jobs(tmp_path):
    from conftest import snapshot

    cls, obj = scene()
    for k in range(6):
        write_voc(tmp_path / "voc", f"i{k}", np.roll(cls, k, 1), np.roll(obj, k, 1))
    outs = []
    for jobs in (1, 2):
        s = segconvert.convert(tmp_path / "voc", tmp_path / f"out{jobs}", from_format="voc", to_format="voc",
                               jobs=jobs)
        assert s.ok and s.converted == 6
        outs.append(snapshot(tmp_path / f"out{jobs}"))
    assert outs[0] == outs[1]


def test_many_objects_and_stuff_take_the_wide_label_map(tmp_path):
    """250 objects + 10 stuff classes do not fit 254 uint8 values: the uint16 path gives the same."""
    cls = np.zeros((20, 260), np.uint8)
    obj = np.zeros_like(cls)
    for k in range(250):
        cls[:10, k], obj[:10, k] = 1 + k % 20, k + 1
    for c in range(10):
        cls[10:, c * 26:(c + 1) * 26] = 11 + c
    cls[10:, 0:26] = 3  # a stuff class that also has objects
    write_voc(tmp_path / "voc", "w", cls, obj)
    s = segconvert.convert(tmp_path / "voc", tmp_path / "sem", from_format="voc", mode="semantic", jobs=1)
    assert s.ok
    s = segconvert.convert(tmp_path / "voc", tmp_path / "ins", from_format="voc", mode="instance", jobs=1)
    assert s.ok
    (payload,) = read_payloads(tmp_path / "ins")
    assert len(payload["annotations"]) == 251
    mask = read_mask(tmp_path / "ins" / "masks" / "w.png")
    assert (mask[:10] == obj[:10]).all() and (mask[10:] == 0).all()
    from segconvert.converters.voc import VocReader

    reader = VocReader(tmp_path / "voc")
    seg = next(iter(reader.items())).load()
    assert seg.label_map.dtype == np.uint16  # 250 objects + 10 stuff classes


def test_labelme2voc_layout_reads_its_png_folders(tmp_path):
    """labelme2voc (labelme >= 4) writes .npy arrays to SegmentationClass/ and SegmentationObject/
    and the palette PNGs (ignore -1 -> 255) to SegmentationClassPNG/ and SegmentationObjectPNG/."""
    cls, obj = scene()
    root = tmp_path / "voc"
    for sub, arr in (("SegmentationClass", cls), ("SegmentationObject", obj)):
        (root / sub).mkdir(parents=True)
        np.save(root / sub / "a.npy", arr.astype(np.int32))
        save_palette(root / f"{sub}PNG" / "a.png", arr)
    (root / "class_names.txt").write_text("\n".join(VOC_CLASSES))
    assert registry.detect(root) == "voc"
    s = segconvert.convert(root, tmp_path / "out", from_format="voc", mode="instance", jobs=1)
    assert s.ok and s.converted == 1
    (payload,) = read_payloads(tmp_path / "out")
    assert [a["label"] for a in payload["annotations"]] == ["background", "person", "car", "car"]


@given(st.integers(1, 30), st.integers(1, 30), st.data())
@settings(max_examples=40)
def test_palette_read_by_colour_equals_the_indices(tmp_path_factory, h, w, data):
    """The libspng-by-colour path gives exactly Pillow's palette indices and their counts."""
    import io

    from segconvert.converters.voc import load_class_table, read_class_png

    values = data.draw(st.lists(st.sampled_from([*range(21), 255]), min_size=h * w, max_size=h * w))
    arr = np.array(values, np.uint8).reshape(h, w)
    buf = io.BytesIO()
    im = Image.fromarray(arr, "P")
    im.putpalette(VOC_PALETTE.tobytes())
    im.save(buf, "PNG")
    table = load_class_table(tmp_path_factory.mktemp("t"), void_ignore=False)
    cls, counts = read_class_png(buf.getvalue(), table, "x.png", "x", counted=True)
    assert counts is not None  # the fast path was taken
    assert (cls == arr).all() and (counts == np.bincount(arr.ravel(), minlength=256)).all()


def test_writer_fails_an_image_with_more_objects_than_an_object_png_holds(tmp_path):
    from segconvert.errors import ItemError
    from segconvert.model.ir import Category, Segmentation, SegmentInfo

    label_map = np.arange(1, 256, dtype=np.uint16).reshape(15, 17)  # 255 objects, one pixel each
    seg = Segmentation("many", label_map, [SegmentInfo(id=i, label="car", category_id=7) for i in range(1, 256)])
    writer = VocWriter(tmp_path, ModePlan(mode="instance", categories=[Category(id=7, name="car")]))
    writer.prepare()
    with pytest.raises(ItemError, match="more than 254 objects"):
        writer.write(seg)


def _semantic_labels(tmp_path: Path, labels: Path) -> list[str]:
    root = tmp_path / "voc"
    cls = np.zeros((6, 6), np.uint8)
    cls[1:3, 1:3] = 2
    cls[4, 4] = 1
    write_voc(root, "x", cls, None)
    s = segconvert.convert(root, tmp_path / "out", from_format="voc", labels=labels, jobs=1)
    assert s.ok
    return [a["label"] for a in read_payloads(tmp_path / "out")[0]["annotations"]]


@pytest.mark.parametrize("name, text", [
    ("dataset_meta.json", json.dumps({"label_map": {"0": "background", "1": "cat", "2": "dog"}})),
    ("meta_list.json", json.dumps({"labels": ["background", "cat", "dog"]})),
    ("labels.json", json.dumps({"1": "cat", "2": "dog"})),
    ("objectInfo150.csv", "Idx,Ratio,Train,Val,Name\n1,0.1,1,1,cat;kitty\n2,0.1,1,1,dog\n"),
    ("labelmap.txt", "background:0,0,0::\ncat:::\ndog:::\n"),
    ("labels.txt", "__ignore__\n_background_\ncat\ndog\n"),
])
def test_labels_option_takes_other_tools_label_files(tmp_path, name, text):
    """--labels FILE: any label file label_files reads; an entry's id is its palette index."""
    labels = tmp_path / name
    labels.write_text(text)
    assert _semantic_labels(tmp_path, labels) == ["background", "cat", "dog"]


@pytest.mark.parametrize("text, message", [
    (json.dumps({"labels": [{"name": "animal--bird"}, {"name": "cat"}]}), "class 0 is 'animal--bird'"),
    (json.dumps({"1": "cat", "3": "dog"}), r"class ids \[2\] are missing"),
    (json.dumps({"1": "cat", "300": "dog"}), "class id 300 .* does not fit"),
])
def test_labels_option_refuses_files_that_do_not_describe_voc_indices(tmp_path, text, message):
    labels = tmp_path / "labels.json"
    labels.write_text(text)
    cls = np.zeros((6, 6), np.uint8)
    write_voc(tmp_path / "voc", "x", cls, None)
    with pytest.raises(SourceError, match=message):
        segconvert.convert(tmp_path / "voc", tmp_path / "out", from_format="voc", labels=labels, jobs=1)


def test_empty_root_is_refused_and_truncated_png_is_named(tmp_path):
    (tmp_path / "empty" / "SegmentationClass").mkdir(parents=True)
    with pytest.raises(SourceError, match="no images"):
        segconvert.convert(tmp_path / "empty", tmp_path / "o1", from_format="voc", jobs=1)
    root = tmp_path / "voc"
    write_voc(root, "good", np.zeros((4, 4), np.uint8), None)
    data = (root / "SegmentationClass" / "good.png").read_bytes()
    (root / "SegmentationClass" / "cut.png").write_bytes(data[:40])
    s = segconvert.convert(root, tmp_path / "o2", from_format="voc", mode="semantic", jobs=1)
    assert s.converted == 1 and len(s.failures) == 1
    assert "truncated" in str(s.failures[0]) and "BytesIO" not in str(s.failures[0])


# --------------------------------------------------------------------------- reserved names at an index > 0

#: a CVAT/Datumaro labelmap.txt naming indices > 0 with void and background names
RESERVED_LABELMAP = (
    "# label:color_rgb:parts:actions\n"
    "background:0,0,0::\ncar:128,0,0::\nVoid:0,128,0::\nperson:128,128,0::\nignore:0,0,128::\n"
    "Background:128,0,128::\n__ignore__:0,128,128::\n"
)


def reserved_scene() -> tuple[np.ndarray, np.ndarray]:
    """Class indices of RESERVED_LABELMAP: car (object 1), person (object 2), Void / ignore /
    __ignore__ regions (void), a Background region (background), ignore drawn as object 3, VOC's 255 ring."""
    cls = np.zeros((20, 30), np.uint8)
    obj = np.zeros_like(cls)
    cls[1:5, 1:6], obj[1:5, 1:6] = 1, 1
    cls[6:9, 1:6], obj[6:9, 1:6] = 3, 2
    cls[10:12, 0:10] = 2
    cls[13:15, 0:10] = 4
    cls[16:18, 0:10] = 5
    cls[18, 0:10] = 6
    cls[10:12, 20:25], obj[10:12, 20:25] = 4, 3
    cls[0, :], obj[0, :] = 255, 255
    return cls, obj


def _reserved_root(tmp_path: Path, labels_file: str = "labelmap.txt", text: str = RESERVED_LABELMAP) -> Path:
    root = tmp_path / "voc"
    write_voc(root, "a", *reserved_scene())
    (root / labels_file).write_text(text)
    return root


def test_reserved_names_at_an_index_above_0_are_void_or_background_not_classes(tmp_path):
    from segconvert.converters.voc import VocReader

    root = _reserved_root(tmp_path)
    cls, obj = reserved_scene()
    assert [c.name for c in VocReader(root).categories] == ["car", "person"]
    assert [c.name for c in VocReader(root, void="ignore").categories] == ["car", "person", "ignore"]
    void = np.isin(cls, (2, 4, 6, 255))  # Void, ignore, __ignore__, VOC's ring
    for mode in ("semantic", "instance", "panoptic"):
        out = tmp_path / f"out-{mode}"
        s = segconvert.convert(root, out, from_format="voc", mode=mode, jobs=1)
        assert s.ok and s.converted == 1, s.failures
        (payload,) = read_payloads(out)
        labels = [a["label"] for a in payload["annotations"][1:]]
        assert labels == ["car", "person"], (mode, labels)
        mask = read_mask(out / "masks" / "a.png")
        assert (mask[void | (cls == 5) | (cls == 0)] == 0).all()  # void and background: 0 by default
        assert (mask[cls == 1] > 0).all() and (mask[cls == 3] > 0).all()

        out = tmp_path / f"ign-{mode}"
        s = segconvert.convert(root, out, from_format="voc", mode=mode, void="ignore", jobs=1)
        assert s.ok, s.failures
        (payload,) = read_payloads(out)
        mask = read_mask(out / "masks" / "a.png")
        assert (mask[cls == 5] == 0).all()  # a background name is background, not void
        ignore = [a for a in payload["annotations"] if a["label"] == "ignore"]
        assert [a["label"] for a in payload["annotations"][1:] if a not in ignore] == ["car", "person"]
        if mode == "instance":  # the ignore segment is stuff: instance mode drops it, as it does VOC's 255
            assert not ignore and (mask[void] == 0).all()
            continue
        assert len(ignore) == 1 and ignore[0]["metadata"]["area"] == int(void.sum())
        assert (mask[void] == ignore[0]["index"]).all() and (mask == ignore[0]["index"]).sum() == void.sum()


def test_an_object_drawn_with_a_void_label_is_void_with_a_warning(tmp_path):
    root = _reserved_root(tmp_path)
    s = segconvert.convert(root, tmp_path / "out", from_format="voc", mode="panoptic", jobs=1)
    assert s.ok
    assert any("object 3" in w and "void" in w for w in s.warnings)


def test_reserved_names_in_class_names_txt_keep_the_indices_after_them(tmp_path):
    # labelme2voc's class_names.txt form, one name a line, with __ignore__ and a background name inside
    text = "_background_\ncar\nvoid\nperson\nignore\nbackground\n__ignore__\n"
    root = _reserved_root(tmp_path, "class_names.txt", text)
    s = segconvert.convert(root, tmp_path / "out", from_format="voc", mode="semantic", jobs=1)
    assert s.ok
    (payload,) = read_payloads(tmp_path / "out")
    car, person = payload["annotations"][1:]
    assert (car["label"], person["label"]) == ("car", "person")
    assert (car["metadata"]["category_id"], person["metadata"]["category_id"]) == (1, 3)  # their VOC indices
    cls, _ = reserved_scene()
    mask = read_mask(tmp_path / "out" / "masks" / "a.png")
    assert (mask[cls == 3] == person["index"]).all() and (mask[cls == 1] == car["index"]).all()
    assert (mask[(cls != 1) & (cls != 3)] == 0).all()


@pytest.mark.parametrize("mode", ["semantic", "panoptic"])
@pytest.mark.parametrize("void", ["background", "ignore"])
def test_voc_writer_read_back_of_reserved_names(tmp_path, mode, void):
    root = _reserved_root(tmp_path)
    segconvert.convert(root, tmp_path / "ir1", from_format="voc", mode=mode, void=void, jobs=1)
    s = segconvert.convert(root, tmp_path / "back", from_format="voc", to_format="voc", mode=mode, void=void, jobs=1)
    assert s.ok
    names = [n for n, _ in parse_labelmap(tmp_path / "back" / "labelmap.txt")]
    assert names == ["background", "car", "person"]
    segconvert.convert(tmp_path / "back", tmp_path / "ir2", from_format="voc", mode=mode, void=void, jobs=1)
    a, b = read_payloads(tmp_path / "ir1")[0], read_payloads(tmp_path / "ir2")[0]
    assert [x["label"] for x in a["annotations"]] == [x["label"] for x in b["annotations"]]
    assert (read_mask(tmp_path / "ir1" / "masks" / "a.png") == read_mask(tmp_path / "ir2" / "masks" / "a.png")).all()


def test_voc_writer_numbers_no_reserved_category():
    from segconvert.model.ir import Category

    cats = [Category(id=1, name="car"), Category(id=2, name="Void"), Category(id=3, name="Background"),
            Category(id=4, name="__ignore__"), Category(id=5, name="person")]
    w = VocWriter("/nonexistent-out", ModePlan(mode="semantic", categories=cats))
    assert w.classes.names == ["car", "person"]
    where = {"item": "a", "file": None}

    def number(cid, label):
        return w.classes.of({"label": label, "metadata": {"category_id": cid}}, where)

    assert (number(1, "car"), number(5, "person")) == (1, 2)
    assert number(2, "Void") is None and number(4, "__ignore__") is None  # written as 255
    assert number(3, "Background") == 0


def test_reserved_names_in_rgb_coloured_masks_are_read_by_colour(tmp_path):
    """Exporters that write RGB class PNGs: a pixel of the Void line's colour is void, of Background's background."""
    root = _reserved_root(tmp_path)
    cls, obj = reserved_scene()
    colours = {k: c for k, (_, c) in enumerate(parse_labelmap(root / "labelmap.txt"))}
    colours[255] = tuple(int(v) for v in VOC_PALETTE[255])
    rgb = np.zeros((*cls.shape, 3), np.uint8)
    for k, c in colours.items():
        rgb[cls == k] = c
    Image.fromarray(rgb, "RGB").save(root / "SegmentationClass" / "a.png")
    s = segconvert.convert(root, tmp_path / "out", from_format="voc", mode="panoptic", void="ignore", jobs=1)
    assert s.ok
    (payload,) = read_payloads(tmp_path / "out")
    (ignore,) = [a for a in payload["annotations"] if a["label"] == "ignore"]
    assert [a["label"] for a in payload["annotations"][1:] if a is not ignore] == ["car", "person"]
    mask = read_mask(tmp_path / "out" / "masks" / "a.png")
    assert (mask[np.isin(cls, (2, 4, 6, 255))] == ignore["index"]).all() and (mask[cls == 5] == 0).all()


def test_a_conversion_imports_only_what_it_uses(tmp_path):
    """Start-up is a fixed cost that a run of a few hundred small masks feels (issue 8's 1.3x
    floor): a VOC -> Nucleus conversion, with a format option (``--subset``) that sends the
    command line through the format-option parser, must not import Pillow (the VOC reader's
    fallback decoder), pycocotools (shape readers), importlib.metadata (the plugin scan: only
    for names that are not built in), tempfile or hashlib (remote outputs; the name table's
    spill file). Each was measured at 3-15 ms of start-up."""
    import subprocess
    import sys

    root = tmp_path / "voc"
    cls, obj = scene()
    write_voc(root, "a", cls, obj)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    code = (
        "import sys\nfrom segconvert.interfaces.cli import main\n"
        "try:\n    main(sys.argv[1:], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('PIL', 'pycocotools', 'importlib.metadata', 'tempfile', 'hashlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code, "convert", str(root), "--subset", "train", str(tmp_path / "out"),
                          "--from", "voc", "--jobs", "1"], capture_output=True, text=True, check=True)
    assert "converted 1," in out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
