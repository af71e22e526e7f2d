"""What every shape reader shares (segconvert.codecs.shapes): option checks through the Python API."""

from __future__ import annotations

import pytest
from conftest import FIXTURES

import segconvert
from segconvert.codecs.shapes import BACKGROUND, RESERVED_LABELS, VOID, check_void, label_convention

SOURCES = {
    "labelme": FIXTURES / "labelme" / "dataset",
    "cvat": FIXTURES / "cvat" / "annotations.xml",
    "cityscapes": FIXTURES / "cityscapes",
}


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_unknown_overlap_policy_is_refused_before_anything_runs(tmp_path, fmt):
    with pytest.raises(segconvert.SourceError, match="unknown overlap policy 'bogus'; choose one of paint"):
        segconvert.convert(SOURCES[fmt], tmp_path / "o", from_format=fmt, overlap="bogus", jobs=1)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_fixture_converts_in_every_overlap_policy(tmp_path, fmt):
    for policy in ("paint", "small-on-top"):
        summary = segconvert.convert(SOURCES[fmt], tmp_path / policy, from_format=fmt, overlap=policy, jobs=1)
        assert summary.converted > 0


@pytest.mark.parametrize(
    "name, role",
    [
        ("_background_", BACKGROUND), ("background", BACKGROUND), ("__background__", BACKGROUND),
        ("unlabeled", BACKGROUND), ("void", BACKGROUND), ("Background", BACKGROUND), (" unlabeled ", BACKGROUND),
        ("__ignore__", VOID), ("void--unlabeled", BACKGROUND), ("Void--Unlabeled", BACKGROUND),
        ("construction--flat--road", None), ("car", None),
        ("ignore", None), ("background_wall", None), ("_ignore_", None), ("", None),
    ],
)
def test_label_convention(name, role):
    assert label_convention(name) == role


def test_reserved_labels_table_is_lower_case_and_only_background_or_void():
    assert all(k == k.strip().lower() for k in RESERVED_LABELS)
    assert set(RESERVED_LABELS.values()) == {BACKGROUND, VOID}


def test_check_void():
    assert check_void("ignore") == "ignore" and check_void("background") == "background"
    with pytest.raises(segconvert.SourceError, match="void must be background or ignore"):
        check_void("drop")


def test_one_reserved_table_serves_label_files_rgb_and_voc():
    """The label-file parsers, the rgb tables and the voc writer ask the same function."""
    from segconvert.codecs import label_files
    from segconvert.converters import rgb_tables, voc

    assert not hasattr(label_files, "VOID_NAMES") and not hasattr(label_files, "is_void_name")
    for name in [*RESERVED_LABELS, "void--unlabeled", "car"]:
        assert rgb_tables._is_void(name) == (label_convention(name) is not None)
    assert set(voc.BACKGROUND_NAMES) == {n for n, k in RESERVED_LABELS.items() if k == BACKGROUND}
    assert rgb_tables.IGNORE_LABEL is voc.IGNORE_LABEL


# ----------------------------------------------------------------- --labels: other tools' label files

CAR, PERSON = (250, 50, 83), (61, 61, 245)

#: kind -> (file name, content, the reserved name it lists or None, expected categories as
#: (id, name, colour, isthing)): the ids are the tool's own (its value in index masks)
LABEL_FILES = {
    "labelmap-txt": ("labelmap.txt",  # CVAT's Segmentation mask 1.1 export
                     "# label:color_rgb:parts:actions\nbackground:0,0,0::\ncar:250,50,83::\nperson:61,61,245::\n",
                     "background", [(1, "car", CAR, True), (2, "person", PERSON, True)]),
    "datumaro": ("dataset_meta.json",
                 '{"label_map": {"0": "background", "1": "car", "2": "person"}, '
                 '"segmentation_colors": [[0, 0, 0], [250, 50, 83], [61, 61, 245]]}',
                 "background", [(1, "car", CAR, True), (2, "person", PERSON, True)]),
    "datumaro-labels": ("dataset_meta.json", '{"labels": ["background", "car", "person"]}',
                        "background", [(1, "car", None, True), (2, "person", None, True)]),
    "mapillary": ("config_v2.0.json",
                  '{"labels": [{"name": "human--person", "readable": "Person", "color": [220, 20, 60], '
                  '"instances": true, "evaluate": true}, {"name": "construction--flat--road", "readable": "Road", '
                  '"color": [128, 64, 128], "instances": false, "evaluate": true}, {"name": "void--unlabeled", '
                  '"readable": "Unlabeled", "color": [0, 0, 0], "instances": false, "evaluate": false}]}',
                  "void--unlabeled",
                  [(0, "human--person", (220, 20, 60), True), (1, "construction--flat--road", (128, 64, 128), False)]),
    "label-colors-txt": ("label_colors.txt", "64 128 64\tAnimal\n0 0 0\tVoid\n192 0 128\tArchway\n",
                         "Void", [(1, "Animal", (64, 128, 64), True), (3, "Archway", (192, 0, 128), True)]),
    "class-names-txt": ("class_names.txt", "__ignore__\n_background_\ncat\ndog\n",
                        "_background_", [(1, "cat", None, True), (2, "dog", None, True)]),
    "colormap-json": ("colormap.json", '{"background": [0, 0, 0], "car": [250, 50, 83], "person": "#3d3df5"}',
                      "background", [(1, "car", CAR, True), (2, "person", PERSON, True)]),
    "ade20k-objectinfo": ("objectInfo150.csv",
                          "Idx,Ratio,Train,Val,Name\n1,0.1576,11664,1172,wall\n2,0.1072,6046,612,building;edifice\n",
                          None, [(1, "wall", None, True), (2, "building", None, True)]),
    "labels-json": ("labels.json", '{"0": "background", "1": "car", "2": "person"}',
                    "background", [(1, "car", None, True), (2, "person", None, True)]),
}

WIDTH, HEIGHT = 16, 6


def _labelme_source(root, labels: list[str]):
    """One LabelMe JSON: a 4x4 rectangle per label at x = 4k, the last label's drawn last."""
    import json

    root.mkdir()
    shapes = [{"label": name, "points": [[4 * k, 0], [4 * k + 3, 3]], "shape_type": "rectangle",
               "group_id": None, "flags": {}} for k, name in enumerate(labels)]
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": "a.jpg", "imageData": None,
           "imageHeight": HEIGHT, "imageWidth": WIDTH}
    (root / "a.json").write_text(json.dumps(doc))
    return root


def _cvat_source(path, labels: list[str]):
    """The same shapes as a CVAT XML (no <meta> labels: --labels is the table)."""
    boxes = "".join(f'<box label="{name}" occluded="0" xtl="{4 * k}" ytl="0" xbr="{4 * k + 4}" ybr="4" z_order="0"/>'
                    for k, name in enumerate(labels))
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>'
                    f'<image id="0" name="a.jpg" width="{WIDTH}" height="{HEIGHT}">{boxes}</image></annotations>')
    return path


@pytest.mark.parametrize("reader_name", ["labelme", "cvat"])
@pytest.mark.parametrize("kind", sorted(LABEL_FILES))
def test_labels_file_of_another_tool(tmp_path, kind, reader_name):
    from segconvert.codecs import label_files
    from segconvert.converters.cvat import CvatReader
    from segconvert.converters.labelme import LabelmeReader
    from segconvert.model.ir import Category

    name, text, reserved, expected = LABEL_FILES[kind]
    labels_file = tmp_path / name
    labels_file.write_text(text)
    assert label_files.read_label_file(labels_file)[0] == kind.removesuffix("-labels")
    shape_labels = [c[1] for c in expected] + ([reserved] if reserved else [])
    if reader_name == "labelme":
        reader = LabelmeReader(_labelme_source(tmp_path / "d", shape_labels), labels=labels_file)
    else:
        reader = CvatReader(_cvat_source(tmp_path / "a.xml", shape_labels), labels=labels_file)
    assert reader.categories == [Category(id=i, name=n, isthing=t, color=c) for i, n, c, t in expected]
    (item,) = reader.items()
    seg = item.load()
    assert [(s.label, s.category_id, s.isthing) for s in seg.segments] == [(n, i, t) for i, n, _, t in expected]
    class_of = {s.id: s.category_id for s in seg.segments}
    for k, (cat_id, *_rest) in enumerate(expected):  # each shape's pixels are its class
        assert class_of[int(seg.label_map[1, 4 * k + 1])] == cat_id
    if reserved:  # a background name in the file is no class: its shape paints background 0
        assert int(seg.label_map[1, 4 * len(expected) + 1]) in seg.dropped_ids


@pytest.mark.parametrize("kind", sorted(LABEL_FILES))
def test_labels_file_ids_are_those_the_rgb_reader_gives(tmp_path, kind):
    """One numbering per file: the shape readers' --labels and the rgb reader's agree on every class."""
    from segconvert.codecs.shapes import load_label_table
    from segconvert.converters import rgb_tables

    name, text, _, _ = LABEL_FILES[kind]
    (tmp_path / name).write_text(text)
    _, categories = load_label_table(tmp_path / name)
    theirs = [(c.id, c.name) for c in rgb_tables._labels_file(tmp_path / name) if not c.void]
    assert [(c.id, c.name) for c in categories] == theirs


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("labels.json", '{"1": "car", "2": "car"}', "label 'car' has two ids, 1 and 2"),
        ("labelmap.txt", "background:0,0,0::\n", "lists no labels"),
        ("dataset_meta.json", '{"labels": ["background", "_background_"]}', "lists no labels"),
        ("labelmap.txt", "background:0,0,0::\ncar:1,2::\n", "line 2: label 'car' has colour '1,2'"),
    ],
)
def test_bad_label_file_of_another_tool(tmp_path, name, text, message):
    from segconvert.codecs.shapes import load_label_table

    (tmp_path / name).write_text(text)
    with pytest.raises(segconvert.SourceError, match=message):
        load_label_table(tmp_path / name)


def test_labels_file_with_class_zero_and_the_commands_semantic_mode(tmp_path):
    """Mapillary's class 0 is a class (category id 0); stable semantic indices are table positions."""
    import json

    import numpy as np
    import PIL.Image

    name, text, reserved, _ = LABEL_FILES["mapillary"]
    (tmp_path / name).write_text(text)
    xml = _cvat_source(tmp_path / "a.xml", ["construction--flat--road", "human--person", reserved])
    out = tmp_path / "out"
    summary = segconvert.convert(xml, out, from_format="cvat", mode="semantic", labels=tmp_path / name, jobs=1)
    assert summary.ok
    mask = np.asarray(PIL.Image.open(out / "masks" / "a.png"))
    assert (mask[1, 1], mask[1, 5], mask[1, 9]) == (2, 1, 0)  # road, person (table order), void--unlabeled
    (record,) = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert [(a["label"], a["index"]) for a in record["annotations"]] == [
        ("background", 0), ("human--person", 1), ("construction--flat--road", 2),
    ]
