"""The ``rgb`` reader: colour, palette, id and ADE20K masks, built-in tables, bad input.

Inputs are written with Pillow (not with the OpenCV path the reader decodes with) from
a known label array, and the reader must give that array back.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segconvert.converters import rgb
from segconvert.converters import rgb_palettes as P
from segconvert.errors import ItemError, SourceError
from segconvert.model.ir import FailedItem
from segconvert.model.modes import ModePlan

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rgb"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def save_rgb(path: Path, colors: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(colors.astype(np.uint8), "RGB").save(path)
    return path


def paint(labels: np.ndarray, palette: dict[int, tuple[int, int, int]]) -> np.ndarray:
    out = np.zeros((*labels.shape, 3), np.uint8)
    for v, c in palette.items():
        out[labels == v] = c
    return out


def load_one(source: Path, **opts):
    items = list(rgb.RgbReader(source, **opts).items())
    assert len(items) == 1
    return items[0].load()


def names_of(seg) -> dict[int, str]:
    return {s.id: s.label for s in seg.segments}


def labels_of(seg) -> np.ndarray:
    """Label map as an array of class names ('' = void), comparable across encodings."""
    lut = names_of(seg)
    out = np.full(seg.label_map.shape, "", object)
    for raw, name in lut.items():
        out[seg.label_map == raw] = name
    return out


@pytest.fixture
def cmap(tmp_path: Path) -> Path:
    p = tmp_path / "cmap.json"
    doc = {"void": [0, 0, 0], "road": [128, 64, 128], "car": "#00008e", "sky": [70, 130, 180]}
    p.write_text(json.dumps(doc))
    return p


def scene() -> np.ndarray:
    lab = np.zeros((24, 32), np.uint8)
    lab[:8] = 3  # sky
    lab[8:, :] = 1  # road
    lab[12:20, 4:16] = 2  # car
    lab[20:, 28:] = 0  # void
    return lab


SCENE_COLORS = {0: (0, 0, 0), 1: (128, 64, 128), 2: (0, 0, 142), 3: (70, 130, 180)}
SCENE_NAMES = {0: "", 1: "road", 2: "car", 3: "sky"}


def expected_names(lab: np.ndarray, names: dict[int, str] = SCENE_NAMES) -> np.ndarray:
    out = np.full(lab.shape, "", object)
    for v, n in names.items():
        out[lab == v] = n
    return out


# --------------------------------------------------------------------------- built-in tables


def _bitshift_palette(n: int) -> list[tuple[int, int, int]]:
    """VOC devkit's VOClabelcolormap: bits of the index spread over R, G, B from the top bit."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= (c & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


def test_voc_table_is_the_bitshift_palette():
    pal = _bitshift_palette(256)
    assert [c for _, _, c in P.VOC] == pal[:21]
    assert [i for i, _, _ in P.VOC] == list(range(21))
    assert P.VOC_BOUNDARY == (255, "boundary", pal[255])
    assert [n for _, n, _ in P.VOC][:3] == ["background", "aeroplane", "bicycle"]
    assert P.VOC[-1][1] == "tvmonitor"


# cityscapesScripts helpers/labels.py, the 19 evaluated classes (trainId 0..18): name, id, colour
CITYSCAPES_TRAIN = [
    ("road", 7, (128, 64, 128)), ("sidewalk", 8, (244, 35, 232)), ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)), ("fence", 13, (190, 153, 153)), ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)), ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)), ("terrain", 22, (152, 251, 152)), ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)), ("rider", 25, (255, 0, 0)), ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)), ("bus", 28, (0, 60, 100)), ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)), ("bicycle", 33, (119, 11, 32)),
]


def test_cityscapes_table_has_the_published_colours():
    by_name = {n: (i, c) for n, i, _, c in P.CITYSCAPES}
    for name, i, color in CITYSCAPES_TRAIN:
        assert by_name[name] == (i, color)
    assert [i for _, i, _, _ in P.CITYSCAPES] == [*range(34), -1]
    assert {c for n, i, _, c in P.CITYSCAPES if i <= 4 and i >= 0} == {(0, 0, 0)}
    assert by_name["dynamic"][1] == (111, 74, 0) and by_name["ground"][1] == (81, 0, 81)


def test_cityscapes_table_matches_cityscapesscripts():
    labels_py = pytest.importorskip("cityscapesscripts.helpers.labels")
    ref = [(lab.name, lab.id, lab.hasInstances, tuple(lab.color)) for lab in labels_py.labels]
    assert list(P.CITYSCAPES) == ref


def test_camvid_table_is_label_colors_txt():
    lines = (FIXTURES / "label_colors.txt").read_text().splitlines()
    published = [(tuple(int(v) for v in ln.split()[:3]), ln.split()[3]) for ln in lines]
    assert len(published) == 32
    assert list(P.CAMVID) == published


def test_camvid_matches_by_colour_not_name(tmp_path: Path):
    # a label_colors.txt that spells classes differently still gives the same classes by colour
    variant = tmp_path / "label_colors.txt"
    variant.write_text((FIXTURES / "label_colors.txt").read_text().replace("Column_Pole", "ColumnPole"))
    lab = np.zeros((4, 6), np.uint8)
    colors = {i: c for i, (c, _) in enumerate(P.CAMVID)}
    lab[:, :3] = 8  # Column_Pole
    lab[:, 3:] = 17  # Road
    save_rgb(tmp_path / "m" / "0001_L.png", paint(lab, colors))
    a = load_one(tmp_path / "m", colormap="camvid", strip_suffix="_L")
    b = load_one(tmp_path / "m", colormap=str(variant), strip_suffix="_L")
    assert a.reference_id == "0001"
    np.testing.assert_array_equal(a.label_map, b.label_map)
    assert names_of(a) == {9: "Column_Pole", 18: "Road"}
    assert names_of(b) == {9: "ColumnPole", 18: "Road"}


def test_ade20k_table():
    assert [i for i, _, _ in P.ADE20K] == list(range(1, 151))
    assert len({n for _, n, _ in P.ADE20K}) == 150
    assert P.ADE20K[0] == (1, "wall", (120, 120, 120))
    assert P.ADE20K[2] == (3, "sky", (6, 230, 230))
    assert P.ADE20K[149] == (150, "flag", (92, 0, 255))


def test_coco_panoptic_table_matches_panopticapi_json():
    path = SHARED / "data" / "panoptic_coco_categories.json"
    if not path.is_file():
        pytest.skip("../shared is not there")
    ref = json.loads(path.read_text())
    got = [
        {"id": i, "name": n, "isthing": int(t), "supercategory": s, "color": list(c)}
        for i, n, t, s, c in P.COCO_PANOPTIC
    ]
    assert got == [{k: c[k] for k in ("id", "name", "isthing", "supercategory", "color")} for c in ref]


@pytest.mark.parametrize("name", rgb.BUILTINS)
def test_every_builtin_decodes_its_own_colours(tmp_path: Path, name: str):
    table = rgb.build_table(rgb.Spec(colormap=name))
    assert table.categories
    # one pixel per class colour, in table order
    colors = np.array([c.color for c in table.categories], np.uint8)[None]
    save_rgb(tmp_path / "m" / "x.png", colors)
    seg = load_one(tmp_path / "m", colormap=name)
    first_with_colour: dict[tuple, int] = {}
    for pos, c in enumerate(table.categories, start=1):
        first_with_colour.setdefault(c.color, pos)
    expected = [first_with_colour[c.color] for c in table.categories]
    assert seg.label_map[0].tolist() == expected


# --------------------------------------------------------------------------- colormap encoding


def test_colormap_json(tmp_path: Path, cmap: Path):
    lab = scene()
    save_rgb(tmp_path / "m" / "a.png", paint(lab, SCENE_COLORS))
    reader = rgb.RgbReader(tmp_path / "m", colormap=cmap)
    assert reader.default_mode == "semantic"
    assert [c.name for c in reader.categories] == ["road", "car", "sky"]
    seg = next(reader.items()).load()
    assert seg.label_map.dtype == np.uint8
    np.testing.assert_array_equal(labels_of(seg), expected_names(lab))
    got = [(s.id, s.label, s.category_id) for s in seg.segments]
    assert got == [(1, "road", 1), (2, "car", 2), (3, "sky", 3)]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[*settings.default.suppress_health_check, HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(*[st.integers(0, 255)] * 3), min_size=1, max_size=12, unique=True),
    st.integers(0, 2**32 - 1),
)
def test_colormap_roundtrip_property(tmp_path_factory, colors, seed):
    tmp = tmp_path_factory.mktemp("prop")
    (tmp / "c.json").write_text(json.dumps({f"class{i}": list(c) for i, c in enumerate(colors)}))
    lab = np.random.default_rng(seed).integers(0, len(colors), (9, 13))
    save_rgb(tmp / "m" / "x.png", paint(lab, dict(enumerate(colors))))
    seg = load_one(tmp / "m", colormap=tmp / "c.json")
    np.testing.assert_array_equal(seg.label_map, lab + 1)
    assert [s.id for s in seg.segments] == sorted({int(v) + 1 for v in lab.ravel()})


def test_label_colors_txt_file_and_void(tmp_path: Path):
    lab = np.array([[30, 30, 4], [21, 4, 30]])  # Void, Building, Sky
    save_rgb(tmp_path / "m" / "x.png", paint(lab, {i: c for i, (c, _) in enumerate(P.CAMVID)}))
    seg = load_one(tmp_path / "m", colormap=FIXTURES / "label_colors.txt")
    assert seg.label_map.tolist() == [[0, 0, 5], [22, 5, 0]]
    assert names_of(seg) == {5: "Building", 22: "Sky"}


def test_voc_colour_png_and_boundary(tmp_path: Path):
    seg = load_one(FIXTURES / "voc" / "2007_000001_color.png", colormap="voc")
    names = labels_of(seg)
    assert names[3, 2] == "person" and names[5, 10] == "dog" and names[3, 7] == "" and names[11, 0] == ""
    seg = load_one(FIXTURES / "voc" / "2007_000001_color.png", colormap="voc", void="ignore")
    names = labels_of(seg)
    assert names[3, 7] == "ignore" and names[11, 3] == "ignore" and names[0, 0] == ""


def test_grayscale_png_in_colormap_mode(tmp_path: Path, cmap: Path):
    cm = tmp_path / "bw.json"
    cm.write_text(json.dumps({"background": [0, 0, 0], "fg": [255, 255, 255]}))
    p = tmp_path / "m" / "x.png"
    p.parent.mkdir()
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8), "L").save(p)
    assert load_one(p, colormap=cm).label_map.tolist() == [[0, 1], [1, 0]]


def test_unknown_colour_fails_that_item_only(tmp_path: Path, cmap: Path):
    lab = scene()
    save_rgb(tmp_path / "m" / "good.png", paint(lab, SCENE_COLORS))
    bad = paint(lab, SCENE_COLORS)
    bad[0, :5] = (130, 60, 125)  # near road
    bad[1, :2] = (1, 2, 250)
    save_rgb(tmp_path / "m" / "bad.png", bad)
    items = {i.reference_id: i for i in rgb.RgbReader(tmp_path / "m", colormap=cmap).items()}
    items["good"].load()
    with pytest.raises(ItemError) as exc:
        items["bad"].load()
    msg = str(exc.value)
    assert "bad.png" in msg and "[bad]" in msg
    assert "(130, 60, 125) in 5 px, nearest 'road' (128, 64, 128)" in msg
    assert "(1, 2, 250) in 2 px, nearest 'car' (0, 0, 142)" in msg
    assert msg.index("(130, 60, 125)") < msg.index("(1, 2, 250)")  # most pixels first
    assert 'unknown="background" or "ignore"' in msg and "tolerance=<t>" in msg


def test_unknown_background_and_ignore(tmp_path: Path, cmap: Path):
    lab = scene()
    img = paint(lab, SCENE_COLORS)
    img[0, :5] = (9, 9, 9)
    save_rgb(tmp_path / "m" / "x.png", img)
    seg = load_one(tmp_path / "m", colormap=cmap, unknown="background")
    exp = expected_names(lab)
    exp[0, :5] = ""
    np.testing.assert_array_equal(labels_of(seg), exp)
    reader = rgb.RgbReader(tmp_path / "m", colormap=cmap, unknown="ignore")
    assert [c.name for c in reader.categories] == ["road", "car", "sky", "ignore"]
    seg = next(reader.items()).load()
    exp[0, :5] = "ignore"
    np.testing.assert_array_equal(labels_of(seg), exp)
    assert seg.segments[-1].label == "ignore"


def test_tolerance_maps_near_colours_and_resolves_ties_by_neighbourhood(tmp_path: Path, cmap: Path):
    lab = scene()
    img = paint(lab, SCENE_COLORS).astype(np.int16)
    rng = np.random.default_rng(0)
    noisy = np.clip(img + rng.integers(-3, 4, img.shape), 0, 255)
    save_rgb(tmp_path / "m" / "x.png", noisy)
    with pytest.raises(ItemError, match="not in the colormap"):
        load_one(tmp_path / "m", colormap=cmap)
    seg = load_one(tmp_path / "m", colormap=cmap, tolerance=3)
    np.testing.assert_array_equal(labels_of(seg), expected_names(lab))
    # (0, 0, 71) is 71 from both void (0, 0, 0) and car (0, 0, 142): the neighbours decide
    tie = np.zeros((5, 5, 3), np.uint8)
    tie[:, 2:] = (0, 0, 142)
    tie[2, 2] = (0, 0, 71)
    save_rgb(tmp_path / "t" / "x.png", tie)
    seg = load_one(tmp_path / "t", colormap=cmap, tolerance=100)
    got = labels_of(seg)
    assert got[2, 2] == "car" and (got[:, :2] == "").all() and (got[:, 2:] == "car").all()
    assert seg.warnings == ["1 pixels whose colour is not clearly one class's were given the "
                            "nearest-coloured class around them (tolerance=100)"]
    tie[:, 2:] = 0
    tie[:, :2] = (0, 0, 142)
    tie[2, 2] = (0, 0, 71)
    save_rgb(tmp_path / "t" / "x.png", tie)
    seg = load_one(tmp_path / "t", colormap=cmap, tolerance=100)
    assert labels_of(seg)[2, 2] == ""  # now void dominates the window


def test_tolerance_keeps_lossless_masks_exact(tmp_path: Path, cmap: Path):
    """Exact colours are never re-voted: a 1-pixel line of a lossless mask stays."""
    lab = scene()
    lab[3, :] = 2  # a 1-px car line through the sky
    lab[:, 30] = 3
    save_rgb(tmp_path / "m" / "x.png", paint(lab, SCENE_COLORS))
    seg = load_one(tmp_path / "m", colormap=cmap, tolerance=40)
    np.testing.assert_array_equal(labels_of(seg), expected_names(lab))
    assert seg.warnings == []


def coco_scene(seed: int, h: int = 192, w: int = 256) -> np.ndarray:
    """Large regions of COCO panoptic classes (positions in P.COCO_PANOPTIC): Voronoi cells + discs."""
    rng = np.random.default_rng(seed)
    n = 9
    classes = rng.choice(len(P.COCO_PANOPTIC), n + 3, replace=False)
    cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
    yy, xx = np.mgrid[:h, :w]
    cell = ((yy[..., None] - cy) ** 2 + (xx[..., None] - cx) ** 2).argmin(-1)
    lab = classes[cell]
    for k in range(3):
        r = int(rng.integers(12, 30))
        y0, x0 = int(rng.integers(r, h - r)), int(rng.integers(r, w - r))
        lab[(yy - y0) ** 2 + (xx - x0) ** 2 <= r * r] = classes[n + k]
    return lab


def away_from_boundaries(lab: np.ndarray, margin: int = 4) -> np.ndarray:
    edge = np.zeros(lab.shape, bool)
    edge[:-1] |= lab[:-1] != lab[1:]
    edge[1:] |= lab[:-1] != lab[1:]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge[:, 1:] |= lab[:, :-1] != lab[:, 1:]
    return cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 5) > margin


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_jpeg_coco_panoptic_scene_is_read_as_a_person_would(tmp_path_factory, seed: int):
    """JPEG quality 92 (Pillow, 4:2:0): >= 99.5 % of pixels right, all of them > 4 px from a boundary."""
    tmp = tmp_path_factory.mktemp("jpeg")
    lab = coco_scene(seed)
    colors = np.array([c[-1] for c in P.COCO_PANOPTIC], np.uint8)
    p = tmp / "x.jpg"
    Image.fromarray(colors[lab]).save(p, quality=92)
    seg = load_one(p, colormap="coco-panoptic", tolerance=40)
    names = np.array([c[1] for c in P.COCO_PANOPTIC], object)
    got, exp = labels_of(seg), names[lab]
    right = got == exp
    assert right.mean() >= 0.995
    assert right[away_from_boundaries(lab)].all()
    # a blend at a boundary can look like a third class (snow (255, 255, 255) against net (193, 0, 92)
    # passes through light (255, 228, 255)): a thin band at most, never away from a boundary
    stray = ~np.isin(got, list(set(exp.ravel())))
    assert stray.mean() <= 0.005 and not stray[away_from_boundaries(lab, 2)].any()
    assert len(seg.warnings) == 1 and "nearest-coloured class around them" in seg.warnings[0]


def test_jpeg_region_of_an_unknown_colour_fails_as_a_whole(tmp_path: Path):
    lab = coco_scene(1)
    colors = np.array([c[-1] for c in P.COCO_PANOPTIC], np.uint8)
    img = colors[lab]
    d = np.abs(np.mgrid[:256, :256, :256].reshape(3, -1).T[::4099, None, :].astype(int) - colors[None].astype(int))
    far_colour = np.mgrid[:256, :256, :256].reshape(3, -1).T[::4099][d.max(-1).min(1).argmax()]
    img[60:100, 80:140] = far_colour  # a colour more than --tolerance 40 from every class
    p = tmp_path / "x.jpg"
    Image.fromarray(img).save(p, quality=92)
    with pytest.raises(ItemError, match=r"cannot be resolved .* within tolerance=40"):
        load_one(p, colormap="coco-panoptic", tolerance=40)
    seg = load_one(p, colormap="coco-panoptic", tolerance=40, unknown="background")
    got = labels_of(seg)
    assert (got[62:98, 82:138] == "").all()  # the region, not its neighbours' class
    outside = np.ones(lab.shape, bool)
    outside[56:104, 76:144] = False
    names = np.array([c[1] for c in P.COCO_PANOPTIC], object)
    assert (got[outside & away_from_boundaries(lab)] == names[lab][outside & away_from_boundaries(lab)]).all()
    assert any("could not be resolved and are background" in w for w in seg.warnings)


def _jpeg_copy(tmp_path: Path, lab: np.ndarray, **kw) -> Path:
    """A JPEG-compressed copy of the scene (Pillow's encoder)."""
    p = tmp_path / "j" / "x.jpg"
    p.parent.mkdir(exist_ok=True)
    Image.fromarray(paint(lab, SCENE_COLORS)).save(p, **kw)
    return p


def test_jpeg_needs_tolerance(tmp_path: Path, cmap: Path):
    lab = np.kron(scene(), np.ones((2, 2), np.uint8))  # blocks aligned to JPEG's 8x8 grid
    lab[:] = np.repeat(np.repeat(lab[::8, ::8], 8, 0), 8, 1)
    p = _jpeg_copy(tmp_path, lab, quality=95, subsampling=0)
    with pytest.raises(ItemError, match="JPEG.*tolerance="):
        load_one(p, colormap=cmap)
    seg = load_one(p, colormap=cmap, tolerance=10)
    np.testing.assert_array_equal(labels_of(seg), expected_names(lab))


def test_jpeg_default_settings_with_tolerance(tmp_path: Path, cmap: Path):
    """Chroma subsampling smears edges: every pixel resolves, interior pixels exactly."""
    lab = np.kron(scene(), np.ones((4, 4), np.uint8))
    p = _jpeg_copy(tmp_path, lab, quality=90)
    seg = load_one(p, colormap=cmap, tolerance=40)
    got, exp = labels_of(seg), expected_names(lab)
    assert (got[away_from_boundaries(lab)] == exp[away_from_boundaries(lab)]).all()
    assert (got == exp).mean() > 0.99


def test_rgba_transparent_is_void_partial_alpha_fails(tmp_path: Path, cmap: Path):
    lab = scene()
    rgba = np.dstack([paint(lab, SCENE_COLORS), np.full(lab.shape, 255, np.uint8)])
    rgba[0, :4, 3] = 0
    rgba[0, :4, :3] = (250, 1, 1)  # colour under alpha 0 does not matter
    p = tmp_path / "m" / "x.png"
    p.parent.mkdir()
    Image.fromarray(rgba, "RGBA").save(p)
    seg = load_one(p, colormap=cmap)
    exp = expected_names(lab)
    exp[0, :4] = ""
    np.testing.assert_array_equal(labels_of(seg), exp)
    rgba[1, 1, 3] = 128
    Image.fromarray(rgba, "RGBA").save(p)
    with pytest.raises(ItemError, match=r"1 pixels are partly transparent \(alpha 128\)"):
        load_one(p, colormap=cmap)


def test_16bit_rgb_colours(tmp_path: Path, cmap: Path):
    lab = scene()
    img16 = paint(lab, SCENE_COLORS).astype(np.uint16) * 257
    p = tmp_path / "m" / "x.png"
    p.parent.mkdir()
    cv2.imwrite(str(p), img16[..., ::-1])
    np.testing.assert_array_equal(labels_of(load_one(p, colormap=cmap)), expected_names(lab))
    img16[0, 0, 0] += 1
    cv2.imwrite(str(p), img16[..., ::-1])
    with pytest.raises(ItemError, match="not 8-bit colours"):
        load_one(p, colormap=cmap)


# --------------------------------------------------------------------------- palette encoding


def test_palette_voc_png(tmp_path: Path):
    reader = rgb.RgbReader(FIXTURES / "voc" / "2007_000001.png", encoding="palette", colormap="voc")
    assert len(reader.categories) == 20 and reader.categories[14].name == "person"
    seg = next(reader.items()).load()
    idx = np.asarray(Image.open(FIXTURES / "voc" / "2007_000001.png"))
    exp = np.where(idx == 255, 0, idx)
    np.testing.assert_array_equal(seg.label_map, exp)  # VOC index = position in the table
    assert names_of(seg) == {12: "dog", 15: "person"}
    seg = load_one(FIXTURES / "voc" / "2007_000001.png", encoding="palette", colormap="voc", void="ignore")
    assert names_of(seg) == {12: "dog", 15: "person", 21: "ignore"}
    np.testing.assert_array_equal(seg.label_map == 21, idx == 255)
    # the colour PNG of the same mask gives the same classes
    col = load_one(FIXTURES / "voc" / "2007_000001_color.png", colormap="voc", void="ignore")
    np.testing.assert_array_equal(col.label_map, seg.label_map)


def test_palette_labels_grayscale_and_unknown_value(tmp_path: Path):
    (tmp_path / "l.json").write_text(json.dumps({"0": "background", "3": "cat", "7": "dog"}))
    lab = np.array([[0, 3, 3], [7, 7, 0]], np.uint8)
    p = tmp_path / "m" / "x.png"
    p.parent.mkdir()
    Image.fromarray(lab, "L").save(p)
    reader = rgb.RgbReader(p, encoding="palette", labels=tmp_path / "l.json")
    assert [c.name for c in reader.categories] == ["cat", "dog"]
    seg = next(reader.items()).load()
    assert seg.label_map.tolist() == [[0, 1, 1], [2, 2, 0]]
    lab[0, 0] = 9
    Image.fromarray(lab, "L").save(p)
    with pytest.raises(ItemError, match=r"1 pixel value\(s\) are not classes in labels: 9 \(1 px\)"):
        load_one(p, encoding="palette", labels=tmp_path / "l.json")
    seg = load_one(p, encoding="palette", labels=tmp_path / "l.json", unknown="ignore")
    assert names_of(seg)[3] == "ignore" and seg.label_map[0, 0] == 3


def test_palette_16bit_grayscale(tmp_path: Path):
    (tmp_path / "l.json").write_text(json.dumps({"300": "a", "1000": "b", "5": "c"}))
    lab = np.array([[0, 300, 1000], [5, 5, 300]], np.uint16)
    p = tmp_path / "x.png"
    cv2.imwrite(str(p), lab)
    assert Image.open(p).mode == "I;16"
    seg = load_one(p, encoding="palette", labels=tmp_path / "l.json")
    assert labels_of(seg).tolist() == [["", "a", "b"], ["c", "c", "a"]]
    # no names: the value is the class id
    seg = load_one(p, encoding="palette")
    assert seg.label_map.dtype == np.uint16
    assert names_of(seg) == {5: "class-5", 300: "class-300", 1000: "class-1000"}


def test_palette_plain_index_mask_no_labels(tmp_path: Path):
    lab = np.array([[0, 1, 2], [255, 2, 0]], np.uint8)
    p = tmp_path / "x.png"
    Image.fromarray(lab, "L").save(p)
    reader = rgb.RgbReader(p, encoding="palette")
    assert len(reader.categories) == 254  # 255 is void: VOC's boundary, labelme2voc's __ignore__
    seg = next(reader.items()).load()
    np.testing.assert_array_equal(seg.label_map, lab)
    assert seg.dropped_ids == {255}
    plan = ModePlan("semantic", "stable", reader.categories)
    assert [s.id for s in plan.apply(seg).segments] == [1, 2]
    reader = rgb.RgbReader(p, encoding="palette", void="ignore")
    assert reader.categories[-1].name == "ignore"
    seg = next(reader.items()).load()
    assert [(s.id, s.label) for s in seg.segments] == [(1, "class-1"), (2, "class-2"), (255, "ignore")]
    assert [s.id for s in ModePlan("semantic", "stable", reader.categories).apply(seg).segments] == [1, 2, 255]


def test_palette_rejects_rgb_png(tmp_path: Path):
    save_rgb(tmp_path / "x.png", np.zeros((2, 2, 3)))
    with pytest.raises(ItemError, match="8-bit RGB.*encoding=\"colormap\""):
        load_one(tmp_path / "x.png", encoding="palette")


# --------------------------------------------------------------------------- id and ade20k


def test_id_encoding(tmp_path: Path):
    ids = np.array([[0, 5, 5, 70000], [123456, 70000, 0, 0]], np.uint32)
    img = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], -1)
    save_rgb(tmp_path / "m" / "x.png", img)
    reader = rgb.RgbReader(tmp_path / "m", encoding="id")
    assert reader.default_mode == "panoptic" and reader.categories is None
    seg = next(reader.items()).load()
    np.testing.assert_array_equal(seg.label_map, ids)
    assert [(s.id, s.label) for s in seg.segments] == [(5, "segment-5"), (70000, "segment-70000"),
                                                       (123456, "segment-123456")]
    (tmp_path / "l.json").write_text(json.dumps({"5": "person", "70000": "person", "123456": "sky"}))
    reader = rgb.RgbReader(tmp_path / "m", encoding="id", labels=tmp_path / "l.json")
    assert [c.name for c in reader.categories] == ["person", "sky"]
    seg = next(reader.items()).load()
    sem = ModePlan("semantic", "stable", reader.categories).apply(seg)
    got = [(s.id, s.label, s.pixels) for s in sem.segments]
    assert got == [(1, "person", (5, 70000)), (2, "sky", (123456,))]


def test_id_small_ids_use_small_dtype(tmp_path: Path):
    save_rgb(tmp_path / "x.png", np.array([[[1, 0, 0], [2, 0, 0]]]))
    seg = load_one(tmp_path / "x.png", encoding="id")
    assert seg.label_map.dtype == np.uint8 and seg.label_map.tolist() == [[1, 2]]


def test_ade20k_encoding(tmp_path: Path):
    cls = np.array([[0, 2978, 2978], [165, 165, 2978]])  # ADE20K class ids (0 = unlabelled)
    inst = np.array([[0, 1, 1], [2, 3, 4]])
    r, g = (cls // 256) * 10 + 3, cls % 256  # R/10 truncates, so R carries any last digit
    r[cls == 0] = 0
    save_rgb(tmp_path / "ADE" / "sub" / "ADE_train_00000001_seg.png", np.stack([r, g, inst], -1))
    save_rgb(tmp_path / "ADE" / "sub" / "ADE_train_00000001.png", np.zeros((2, 3, 3)))  # not a _seg file
    (tmp_path / "l.json").write_text(json.dumps({"2978": "wall", "165": "ceiling"}))
    reader = rgb.RgbReader(tmp_path / "ADE", encoding="ade20k", labels=tmp_path / "l.json")
    assert len(reader) == 1 and reader.default_mode == "panoptic"
    seg = next(reader.items()).load()
    assert seg.reference_id == "ADE_train_00000001"
    got = [(s.label, s.category_id, s.metadata["instance"]) for s in seg.segments]
    assert got == [("wall", 2978, 1), ("ceiling", 165, 2), ("ceiling", 165, 3), ("wall", 2978, 4)]
    # each (class, instance) is one segment; unlabelled is void
    assert seg.label_map[0, 0] == 0 and seg.label_map[0, 1] == seg.label_map[0, 2] != seg.label_map[1, 2]
    assert [c.name for c in reader.categories] == ["ceiling", "wall"]


# --------------------------------------------------------------------------- source listing


def test_nested_folders_suffix_and_duplicates(tmp_path: Path, cmap: Path):
    img = paint(scene(), SCENE_COLORS)
    save_rgb(tmp_path / "gt" / "train" / "aachen" / "aachen_1_gtFine_color.png", img)
    save_rgb(tmp_path / "gt" / "train" / "bonn" / "bonn_1_gtFine_color.png", img)
    save_rgb(tmp_path / "gt" / "train" / "bonn" / "bonn_1_gtFine_labelIds.png", img)  # skipped by suffix
    save_rgb(tmp_path / "gt" / "val" / "bonn" / "bonn_1_gtFine_color.png", img)  # duplicate stem
    save_rgb(tmp_path / "gt" / ".segconvert" / "x_gtFine_color.png", img)  # hidden: skipped
    save_rgb(tmp_path / "gt" / "out" / "masks" / "y_gtFine_color.png", img)  # an earlier OUTPUT: skipped
    (tmp_path / "gt" / "out" / ".segconvert").mkdir()
    reader = rgb.RgbReader(tmp_path / "gt", colormap=cmap, strip_suffix="_gtFine_color")
    items = list(reader.items())
    assert len(reader) == 3
    assert [i.reference_id for i in items] == ["aachen_1", "bonn_1", "bonn_1"]
    items[0].load()
    for dup in items[1:]:
        assert isinstance(dup, FailedItem)
        with pytest.raises(ItemError, match="reference_id 'bonn_1' comes from 2 files"):
            dup.load()
    # a glob
    reader = rgb.RgbReader(str(tmp_path / "gt" / "train" / "*" / "*_color.png"), colormap=cmap,
                           strip_suffix="_gtFine_color")
    assert [i.reference_id for i in reader.items()] == ["aachen_1", "bonn_1"]


def test_items_are_small_and_picklable(tmp_path: Path):
    save_rgb(tmp_path / "m" / "x.png", np.zeros((2, 2, 3)))
    item = next(rgb.RgbReader(tmp_path / "m", colormap="coco-panoptic").items())
    blob = pickle.dumps(item)
    assert len(blob) < 600
    assert pickle.loads(blob).load().segments == []


def test_source_errors(tmp_path: Path, cmap: Path):
    save_rgb(tmp_path / "m" / "x.png", np.zeros((2, 2, 3)))
    with pytest.raises(SourceError, match="needs colormap="):
        rgb.RgbReader(tmp_path / "m")
    with pytest.raises(SourceError, match="not found"):
        rgb.RgbReader(tmp_path / "m", colormap=tmp_path / "nope.json")
    with pytest.raises(SourceError, match="no such folder"):
        rgb.RgbReader(tmp_path / "does-not-exist", colormap=cmap)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no mask images"):
        rgb.RgbReader(tmp_path / "empty", colormap=cmap)
    with pytest.raises(SourceError, match="tolerance only applies"):
        rgb.RgbReader(tmp_path / "m", encoding="id", tolerance=3)
    with pytest.raises(SourceError, match="camvid|CamVid"):
        rgb.RgbReader(tmp_path / "m", encoding="palette", colormap="camvid")
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps({"a": [1, 2, 3], "b": "#010203"}))
    with pytest.raises(SourceError, match="same colour"):
        rgb.RgbReader(tmp_path / "m", colormap=dup)
    (tmp_path / "m" / "x.png").write_bytes(b"not a png at all, really not one")
    with pytest.raises(ItemError, match="not a PNG"):
        load_one(tmp_path / "m", colormap=cmap)


def test_stable_semantic_indices_across_images(tmp_path: Path, cmap: Path):
    a = np.array([[3, 3], [1, 1]])
    b = np.array([[2, 2], [3, 3]])
    save_rgb(tmp_path / "m" / "a.png", paint(a, SCENE_COLORS))
    save_rgb(tmp_path / "m" / "b.png", paint(b, SCENE_COLORS))
    reader = rgb.RgbReader(tmp_path / "m", colormap=cmap)
    plan = ModePlan(reader.default_mode, "stable", reader.categories)
    index = {}
    for item in reader.items():
        for s in plan.apply(item.load()).segments:
            assert index.setdefault(s.label, s.id) == s.id
    assert index == {"road": 1, "car": 2, "sky": 3}


def test_benchmark_dataset_matches_panoptic(tmp_path: Path):
    """make_dataset.py's rgb/ masks are its panoptic PNGs painted with category colours."""
    script = SHARED / "bench" / "make_dataset.py"
    if not script.is_file():
        pytest.skip("../shared is not there")
    import subprocess
    import sys

    subprocess.run([sys.executable, str(script), str(tmp_path), "--images", "2", "--size", "96x64"],
                   check=True, capture_output=True)
    pan = json.loads((tmp_path / "annotations" / "panoptic.json").read_text())
    name_of = {c["id"]: c["name"] for c in pan["categories"]}
    reader = rgb.RgbReader(tmp_path / "rgb", colormap=tmp_path / "rgb" / "colormap.json")
    for item, ann in zip(reader.items(), pan["annotations"], strict=True):
        seg = item.load()
        png_path = tmp_path / "annotations" / "panoptic" / ann["file_name"]
        rgbid = np.asarray(Image.open(png_path)).astype(np.uint32)
        ids = rgbid[..., 0] + 256 * rgbid[..., 1] + 65536 * rgbid[..., 2]
        exp = np.full(ids.shape, "", object)
        for s in ann["segments_info"]:
            exp[ids == s["id"]] = name_of[s["category_id"]]
        np.testing.assert_array_equal(labels_of(seg), exp)


# --------------------------------------------------------------------------- end to end


def test_convert_colormap_to_nucleus(tmp_path: Path, cmap: Path):
    import segconvert

    a, b = scene(), scene()[::-1].copy()
    save_rgb(tmp_path / "m" / "x" / "a.png", paint(a, SCENE_COLORS))
    save_rgb(tmp_path / "m" / "y" / "b.png", paint(b, SCENE_COLORS))
    bad = paint(a, SCENE_COLORS)
    bad[0, 0] = (1, 1, 1)
    save_rgb(tmp_path / "m" / "y" / "c.png", bad)
    summary = segconvert.convert(tmp_path / "m", tmp_path / "out", from_format="rgb", colormap=cmap, jobs=1)
    assert summary.converted == 2 and summary.failed == 1 and not summary.ok
    assert "(1, 1, 1) in 1 px, nearest 'void' (0, 0, 0)" in summary.failures[0]
    payloads = {p["reference_id"]: p for p in
                [json.loads(x) for x in (tmp_path / "out" / "annotations.jsonl").read_text().splitlines()]}
    for ref, lab in (("a", a), ("b", b)):
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{ref}.png"))
        np.testing.assert_array_equal(mask, lab)  # stable index = colormap position
        assert [(s["label"], s["index"]) for s in payloads[ref]["annotations"]] == [
            ("background", 0), ("road", 1), ("car", 2), ("sky", 3)]


def test_cli_palette_voc(tmp_path: Path):
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "convert", str(FIXTURES / "voc" / "2007_000001.png"), str(out), "--from", "rgb",
        "--encoding", "palette", "--colormap", "voc", "--void", "ignore", "--jobs", "1",
    ])
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(out / "masks" / "2007_000001.png"))
    idx = np.asarray(Image.open(FIXTURES / "voc" / "2007_000001.png"))
    np.testing.assert_array_equal(mask, np.where(idx == 255, 21, idx))
    (payload,) = [json.loads(x) for x in (out / "annotations.jsonl").read_text().splitlines()]
    assert [s["label"] for s in payload["annotations"]] == ["background", "dog", "person", "ignore"]


def test_cli_unknown_colour_exits_nonzero(tmp_path: Path, cmap: Path):
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    img = paint(scene(), SCENE_COLORS)
    save_rgb(tmp_path / "m" / "ok.png", img)
    img[3, 3] = (200, 0, 0)
    save_rgb(tmp_path / "m" / "bad.png", img)
    result = CliRunner().invoke(main, [
        "convert", str(tmp_path / "m"), str(tmp_path / "out"), "--from", "rgb", "--colormap", str(cmap),
        "--jobs", "1",
    ])
    assert result.exit_code != 0
    assert "(200, 0, 0) in 1 px" in result.output
    assert (tmp_path / "out" / "masks" / "ok.png").is_file()


def test_palette_transparency_is_void(tmp_path: Path):
    idx = np.array([[15, 15, 12], [3, 12, 15]], np.uint8)
    p = tmp_path / "x.png"
    im = Image.fromarray(idx, "P")
    im.putpalette(sum(_bitshift_palette(256), ()))
    im.save(p, transparency=3)  # index 3 fully transparent
    seg = load_one(p, encoding="palette", colormap="voc")
    assert seg.label_map.tolist() == [[15, 15, 12], [0, 12, 15]]
    im.save(p, transparency=bytes([255, 255, 255, 128]))  # index 3 half transparent
    with pytest.raises(ItemError, match="partly transparent"):
        load_one(p, encoding="palette", colormap="voc")
    la = np.dstack([idx, np.where(idx == 3, 0, 255).astype(np.uint8)])
    Image.fromarray(la, "LA").save(p)  # grayscale + alpha
    assert load_one(p, encoding="palette", colormap="voc").label_map.tolist() == [[15, 15, 12], [0, 12, 15]]


def test_edited_colormap_is_reread(tmp_path: Path):
    save_rgb(tmp_path / "m" / "x.png", np.array([[[1, 2, 3]]]))
    cm = tmp_path / "c.json"
    cm.write_text(json.dumps({"a": [1, 2, 3]}))
    assert names_of(load_one(tmp_path / "m", colormap=cm)) == {1: "a"}
    cm.write_text(json.dumps({"zz": [9, 9, 9], "bb": [1, 2, 3]}))
    assert names_of(load_one(tmp_path / "m", colormap=cm)) == {2: "bb"}


# --------------------------------------------------------------------------- class-instance


CITYSCAPES_POLYGONS = sorted((FIXTURES.parent / "cityscapes").rglob("*_polygons.json"))


def _cityscapes_reference(path: Path, kind: str) -> np.ndarray:
    """cityscapesScripts' own json2labelImg / json2instanceImg image of a polygon JSON."""
    pytest.importorskip("cityscapesscripts.helpers.labels")
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from cityscapesscripts.preparation.json2labelImg import createLabelImage

    annotation = Annotation()
    annotation.fromJsonFile(str(path))
    img = createLabelImage(annotation, "ids") if kind == "ids" else createInstanceImage(annotation, "ids")
    return np.asarray(img).astype(np.int64)


def save_16bit(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path)
    return path


@pytest.mark.parametrize("polygons", CITYSCAPES_POLYGONS, ids=lambda p: p.name)
def test_class_instance_reads_cityscapes_instance_ids(tmp_path: Path, polygons: Path):
    """A *_instanceIds.png made by cityscapesScripts: classes by label id, instances >= 1000, ids 0-4 void."""
    theirs = _cityscapes_reference(polygons, "instance")
    stem = polygons.name.replace("_polygons.json", "_instanceIds.png")
    p = save_16bit(tmp_path / stem, theirs)
    reader = rgb.RgbReader(p, encoding="class-instance", divisor=1000, labels="cityscapes",
                           strip_suffix="_gtFine_instanceIds")
    assert reader.default_mode == "panoptic"
    (seg,) = [it.load() for it in reader.items()]
    assert seg.reference_id == polygons.name.replace("_gtFine_polygons.json", "")
    cls = np.where(theirs >= 1000, theirs // 1000, theirs)
    semantic = ModePlan("semantic", "category-id", reader.categories).apply(seg).resolved_label_map(np.int64)
    np.testing.assert_array_equal(semantic, np.where(cls <= 4, 0, cls))  # ego vehicle etc. are void
    ours = ModePlan("instance").apply(seg).resolved_label_map(np.int64)
    pairs = set(zip(ours.ravel().tolist(), np.where(theirs >= 1000, theirs, 0).ravel().tolist(), strict=True))
    assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})  # the same partition
    from cityscapesscripts.helpers.labels import id2label

    for s in seg.segments:
        v = s.id - 1
        assert s.label == id2label[v if v < 1000 else v // 1000].name
        assert s.isthing == (v >= 1000)
        assert s.iscrowd == (v < 1000 and id2label[v].hasInstances)  # a group ("cargroup") region
        if v >= 1000:
            assert s.metadata["instance"] == v % 1000


def test_builtin_cityscapes_ids_0_to_4_are_void():
    pytest.importorskip("cityscapesscripts.helpers.labels")
    from cityscapesscripts.helpers.labels import labels as cs

    table = rgb.build_table(rgb.Spec(encoding="class-instance", labels="cityscapes", divisor=1000))
    assert table.classes is not None
    void = sorted(i for i, c in table.classes.items() if c.void)
    # the void labels drawn black, ignoreInEval without instances; dynamic (5) and ground (6) keep their class
    assert void == [x.id for x in cs if x.color == (0, 0, 0) and x.id >= 0] == [0, 1, 2, 3, 4]
    assert {c.name for c in table.categories} == {x.name for x in cs if x.id > 4}
    assert {c.name for c in table.categories if c.isthing} == {x.name for x in cs if x.hasInstances}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    divisor=st.sampled_from([256, 1000]),
    below=st.sampled_from(["class", "instance"]),
    cls=st.lists(st.integers(0, 7), min_size=12, max_size=12),
    inst=st.lists(st.integers(0, 3), min_size=12, max_size=12),
)
def test_class_instance_property(tmp_path_factory, divisor: int, below: str, cls: list[int], inst: list[int]):
    """Every pixel's class name and instance come back, in both layouts (Cityscapes; KITTI/Mapillary)."""
    tmp = tmp_path_factory.mktemp("ci")
    names = {i: f"c{i}" for i in range(8)}
    (tmp / "l.json").write_text(json.dumps({str(k): v for k, v in names.items()}))
    c = np.array(cls).reshape(3, 4)
    i = np.array(inst).reshape(3, 4)
    if below == "class":  # Cityscapes: instances are >= D, so class 0 has none
        c = np.where(i > 0, np.maximum(c, 1), c)
        values = np.where(i > 0, c * divisor + i, c)
    else:  # KITTI / Mapillary: class * D + instance everywhere, instance 0 = no instance
        values = c * divisor + i
    p = save_16bit(tmp / "m" / "x.png", values)
    seg = load_one(p, encoding="class-instance", divisor=divisor, below_divisor=below, labels=tmp / "l.json")
    by_raw = {s.id: s for s in seg.segments}
    for y in range(3):
        for x in range(4):
            s = by_raw[int(seg.label_map[y, x])]
            assert s.label == names[c[y, x]] and s.category_id == c[y, x]
            assert s.isthing == (i[y, x] > 0)
            assert s.metadata.get("instance") == (i[y, x] if i[y, x] > 0 else None)
    assert len(seg.segments) == len(np.unique(values))


def test_class_instance_errors_unknown_and_no_table(tmp_path: Path):
    values = np.array([[0, 7, 7001], [7002, 9, 9001]])
    p = save_16bit(tmp_path / "m" / "x.png", values)
    with pytest.raises(SourceError, match="needs divisor=<d>: 1000 for Cityscapes"):
        rgb.RgbReader(p, encoding="class-instance")
    with pytest.raises(SourceError, match="divisor only applies"):
        rgb.RgbReader(p, encoding="palette", divisor=1000)
    (tmp_path / "l.json").write_text(json.dumps({"0": "unlabeled", "7": "road"}))
    with pytest.raises(ItemError, match=r"2 value\(s\) are of classes not in labels=.*: 9 \(class 9, 1 px\), "
                                        r"9001 \(class 9, 1 px\)"):
        load_one(p, encoding="class-instance", divisor=1000, labels=tmp_path / "l.json")
    seg = load_one(p, encoding="class-instance", divisor=1000, labels=tmp_path / "l.json", unknown="ignore")
    assert [(s.label, s.pixels) for s in seg.segments][-1] == ("ignore", (10, 9002))
    seg = load_one(p, encoding="class-instance", divisor=1000, labels=tmp_path / "l.json", unknown="background")
    assert seg.dropped_ids == {1, 10, 9002}  # unlabeled (named void) and the unknown class 9
    seg = load_one(p, encoding="class-instance", divisor=1000)  # no table: class-<id>, 0 void
    assert [(s.id, s.label, s.isthing) for s in seg.segments] == [
        (8, "class-7", False), (10, "class-9", False), (7002, "class-7", True), (7003, "class-7", True),
        (9002, "class-9", True)]
    assert seg.dropped_ids == {1}
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ItemError, match='encoding="class-instance" reads palette'):
        load_one(tmp_path / "rgb.png", encoding="class-instance", divisor=256)


def test_class_instance_mapillary_class_0_has_instances(tmp_path: Path):
    """Mapillary v1.2: class 0 is a real class (bird); value = class * 256 + instance, instance 0 = stuff."""
    cfg = {"labels": [{"name": "animal--bird", "readable": "Bird", "color": [165, 42, 42], "instances": True},
                      {"name": "construction--flat--road", "readable": "Road", "color": [128, 64, 128],
                       "instances": False},
                      {"name": "void--unlabeled", "readable": "Unlabeled", "color": [0, 0, 0],
                       "instances": False}]}
    (tmp_path / "config_v1.2.json").write_text(json.dumps(cfg))
    values = np.array([[1, 2], [256, 512]])  # bird 1, bird 2, road, unlabeled
    p = save_16bit(tmp_path / "m" / "x.png", values)
    reader = rgb.RgbReader(p, encoding="class-instance", divisor=256, below_divisor="instance",
                           labels=tmp_path / "config_v1.2.json")
    assert [(c.id, c.name, c.isthing) for c in reader.categories] == [
        (0, "animal--bird", True), (1, "construction--flat--road", False)]
    seg = next(reader.items()).load()
    assert [(s.id, s.label, s.isthing, s.metadata.get("instance")) for s in seg.segments] == [
        (2, "animal--bird", True, 1), (3, "animal--bird", True, 2), (257, "construction--flat--road", False, None)]
    assert seg.dropped_ids == {513}
    # the Cityscapes reading of the same values: 1 and 2 are classes road and void
    seg = load_one(p, encoding="class-instance", divisor=256, labels=tmp_path / "config_v1.2.json")
    assert [(s.id, s.label, s.isthing) for s in seg.segments] == [
        (2, "construction--flat--road", False), (257, "construction--flat--road", True)]
    assert seg.dropped_ids == {3, 513}


# --------------------------------------------------------------------------- index masks: background, 255


@pytest.mark.parametrize("name", ["_background_", "background", "unlabeled", "void", "__background__"])
def test_palette_index_0_named_background_is_background(tmp_path: Path, name: str):
    (tmp_path / "labels.txt").write_text(f"{name}\ncat\ndog\n")  # labelme2voc-style class names
    lab = np.array([[0, 1, 2], [0, 255, 1]], np.uint8)
    p = tmp_path / "m" / "x.png"
    p.parent.mkdir()
    Image.fromarray(lab, "L").save(p)
    reader = rgb.RgbReader(p, encoding="palette", labels=tmp_path / "labels.txt")
    assert [c.name for c in reader.categories] == ["cat", "dog"]
    seg = next(reader.items()).load()
    assert labels_of(seg).tolist() == [["", "cat", "dog"], ["", "", "cat"]]  # 0 background, 255 void
    seg = load_one(p, encoding="palette", labels=tmp_path / "labels.txt", void="ignore")
    assert labels_of(seg).tolist() == [["", "cat", "dog"], ["", "ignore", "cat"]]


def test_palette_labelme2voc_labels_txt_with_ignore(tmp_path: Path):
    """labelme2voc's labels.txt: __ignore__ is -1 (stored 255), _background_ 0."""
    (tmp_path / "labels.txt").write_text("__ignore__\n_background_\ncat\n")
    lab = np.array([[0, 1, 255]], np.uint8)
    Image.fromarray(lab, "L").save(tmp_path / "x.png")
    seg = load_one(tmp_path / "x.png", encoding="palette", labels=tmp_path / "labels.txt")
    assert labels_of(seg).tolist() == [["", "cat", ""]]


def test_palette_255_named_by_the_table_is_a_class(tmp_path: Path):
    (tmp_path / "l.json").write_text(json.dumps({"1": "cat", "255": "edge"}))
    Image.fromarray(np.array([[1, 255, 7]], np.uint8), "L").save(tmp_path / "x.png")
    with pytest.raises(ItemError, match=r"1 pixel value\(s\) are not classes in labels: 7 \(1 px\)"):
        load_one(tmp_path / "x.png", encoding="palette", labels=tmp_path / "l.json")
    Image.fromarray(np.array([[1, 255]], np.uint8), "L").save(tmp_path / "x.png")
    seg = load_one(tmp_path / "x.png", encoding="palette", labels=tmp_path / "l.json")
    assert labels_of(seg).tolist() == [["cat", "edge"]]


# --------------------------------------------------------------------------- label files of other tools


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_label_files_kinds(tmp_path: Path):
    from segconvert.codecs.label_files import LabelEntry, load_colour_table

    datumaro = _write(tmp_path, "dataset_meta.json", json.dumps({
        "labels": ["background", "car", "person"], "label_map": {"0": "background", "1": "car", "2": "person"},
        "segmentation_colors": [[0, 0, 0], [0, 0, 142], [220, 20, 60]], "background_label": "0"}))
    assert load_colour_table(datumaro) == [
        LabelEntry(0, "background", (0, 0, 0)), LabelEntry(1, "car", (0, 0, 142)),
        LabelEntry(2, "person", (220, 20, 60))]
    plain = _write(tmp_path, "meta2.json", json.dumps({"labels": ["a", "b"]}))
    assert load_colour_table(plain) == [LabelEntry(0, "a", None), LabelEntry(1, "b", None)]
    mapillary = _write(tmp_path, "config_v2.0.json", json.dumps({"labels": [
        {"name": "animal--bird", "readable": "Bird", "color": [165, 42, 42], "instances": True, "evaluate": True},
        {"name": "void--unlabeled", "readable": "Unlabeled", "color": [0, 0, 0], "instances": False}]}))
    assert load_colour_table(mapillary) == [
        LabelEntry(0, "animal--bird", (165, 42, 42), True), LabelEntry(1, "void--unlabeled", (0, 0, 0), False)]
    labelmap = _write(tmp_path, "labelmap.txt",
                      "# label:color_rgb:parts:actions\nbackground:0,0,0::\naeroplane:128,0,0::\ncat:::\n")
    assert load_colour_table(labelmap) == [
        LabelEntry(0, "background", (0, 0, 0)), LabelEntry(1, "aeroplane", (128, 0, 0)),
        LabelEntry(2, "cat", None)]
    camvid = FIXTURES / "label_colors.txt"
    rows = load_colour_table(camvid)
    assert rows[0] == LabelEntry(1, "Animal", (64, 128, 64)) and len(rows) == len(P.CAMVID)
    names = _write(tmp_path, "class_names.txt", "_background_\ncat\n")
    assert load_colour_table(names) == [LabelEntry(0, "_background_", None), LabelEntry(1, "cat", None)]
    labels_json = _write(tmp_path, "l.json", json.dumps({"3": "cat", "1": "dog"}))
    assert load_colour_table(labels_json) == [LabelEntry(1, "dog", None), LabelEntry(3, "cat", None)]
    cmap_json = _write(tmp_path, "c.json", json.dumps({"road": "#804080", "car": [0, 0, 142]}))
    assert load_colour_table(cmap_json) == [LabelEntry(0, "road", (128, 64, 128)), LabelEntry(1, "car", (0, 0, 142))]


def test_label_files_errors(tmp_path: Path):
    from segconvert.codecs.label_files import load_colour_table

    bad = _write(tmp_path, "labelmap.txt", "background:0,0,0::\ncar:0,x,0::\n")
    with pytest.raises(SourceError, match="line 2: label 'car' has colour '0,x,0', expected r,g,b"):
        load_colour_table(bad)
    bad = _write(tmp_path, "dataset_meta.json", json.dumps({"label_map": {"0": "a", "1": "b"},
                                                            "segmentation_colors": [[0, 0, 0]]}))
    with pytest.raises(SourceError, match=r"label 'b' \(index 1\) has no segmentation_colors entry"):
        load_colour_table(bad)
    bad = _write(tmp_path, "dup.txt", "a:1,2,3::\na:4,5,6::\n")
    with pytest.raises(SourceError, match="label 'a' appears twice"):
        load_colour_table(bad)
    with pytest.raises(SourceError, match="label file not found"):
        load_colour_table(tmp_path / "nope.txt")
    with pytest.raises(SourceError, match="lists no classes"):
        load_colour_table(_write(tmp_path, "empty.txt", "# nothing\n"))


@pytest.mark.parametrize("kind", ["datumaro", "mapillary", "labelmap"])
def test_colormap_from_other_tools_label_files(tmp_path: Path, kind: str):
    """Each tool's file as --colormap reads the same colour mask; its void/background entry is void."""
    colors = {"background": (0, 0, 0), "road": (128, 64, 128), "car": (0, 0, 142)}
    if kind == "datumaro":
        f = _write(tmp_path, "dataset_meta.json", json.dumps({
            "label_map": {str(i): n for i, n in enumerate(colors)},
            "segmentation_colors": [list(c) for c in colors.values()]}))
    elif kind == "mapillary":
        f = _write(tmp_path, "config_v1.2.json", json.dumps({"labels": [
            {"name": "void--unlabeled" if n == "background" else n, "readable": n, "color": list(c),
             "instances": n == "car"} for n, c in colors.items()]}))
    else:
        f = _write(tmp_path, "labelmap.txt", "".join(f"{n}:{c[0]},{c[1]},{c[2]}::\n" for n, c in colors.items()))
    lab = np.array([[0, 1, 2], [2, 1, 0]])
    save_rgb(tmp_path / "m" / "x.png", paint(lab, dict(enumerate(colors.values()))))
    reader = rgb.RgbReader(tmp_path / "m", colormap=f)
    assert [(c.id, c.name) for c in reader.categories] == [(1, "road"), (2, "car")]
    if kind == "mapillary":
        assert [c.isthing for c in reader.categories] == [False, True]
    seg = next(reader.items()).load()
    assert labels_of(seg).tolist() == [["", "road", "car"], ["car", "road", ""]]
    # and as --labels for the index mask of the same scene
    Image.fromarray(lab.astype(np.uint8), "L").save(tmp_path / "i.png")
    seg = load_one(tmp_path / "i.png", encoding="palette", labels=f)
    assert labels_of(seg).tolist() == [["", "road", "car"], ["car", "road", ""]]


# --------------------------------------------------------------------------- sources as users give them


def _camvid_root(tmp_path: Path) -> Path:
    """CamVid as SegNet ships it: train/ + trainannot/, val/ + valannot/ (photos are PNG too), label_colors.txt."""
    root = tmp_path / "CamVid"
    rng = np.random.default_rng(0)
    colors = {0: P.CAMVID[0][0], 1: P.CAMVID[4][0], 2: P.CAMVID[5][0]}
    for split in ("train", "val"):
        for k in range(2):
            lab = rng.integers(0, 3, (6, 8))
            save_rgb(root / f"{split}annot" / f"{split}_{k}.png", paint(lab, colors))
            save_rgb(root / split / f"{split}_{k}.png", rng.integers(0, 256, (6, 8, 3)))  # a photo
    (root / "label_colors.txt").write_text((FIXTURES / "label_colors.txt").read_text())
    return root


def test_camvid_root_reads_only_the_masks_with_its_label_colors(tmp_path: Path):
    root = _camvid_root(tmp_path)
    assert rgb.sniff(root)
    reader = rgb.RgbReader(root)  # no --colormap: the folder's label_colors.txt
    assert reader.colormap_file == root / "label_colors.txt"
    assert [p.relative_to(root).as_posix() for p in reader._files] == [
        "trainannot/train_0.png", "trainannot/train_1.png", "valannot/val_0.png", "valannot/val_1.png"]
    segs = [it.load() for it in reader.items()]
    assert {s.label for seg in segs for s in seg.segments} <= {"Animal", "Building", "Car"}


def test_cli_from_auto_uses_the_folders_colour_table(tmp_path: Path):
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    root = _camvid_root(tmp_path)
    result = CliRunner().invoke(main, ["convert", str(root), str(tmp_path / "out"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "as rgb" in result.output
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == [
        "train_0.png", "train_1.png", "val_0.png", "val_1.png"]


def test_photo_folders_and_jpegs_are_not_masks(tmp_path: Path, cmap: Path):
    root = tmp_path / "VOC"
    lab = scene()
    for folder in ("SegmentationClass", "SegmentationObject", "JPEGImages"):
        (root / folder).mkdir(parents=True)
    Image.fromarray(lab, "L").save(root / "SegmentationClass" / "a.png")
    Image.fromarray(lab * 2, "L").save(root / "SegmentationObject" / "a.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "JPEGImages" / "a.jpg")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "JPEGImages" / "b.png")
    reader = rgb.RgbReader(root, encoding="palette")
    assert [p.relative_to(root).as_posix() for p in reader._files] == ["SegmentationClass/a.png"]
    # ADE20K: images/ + annotations/
    ade = tmp_path / "ade"
    save_rgb(ade / "annotations" / "x.png", paint(lab, SCENE_COLORS))
    save_rgb(ade / "images" / "x.png", np.zeros((2, 2, 3)))
    assert [p.relative_to(ade).as_posix() for p in rgb.RgbReader(ade, colormap=cmap)._files] == [
        "annotations/x.png"]
    # a JPEG next to its mask is the photo; with --tolerance (JPEG masks) it is read
    flat = tmp_path / "flat"
    save_rgb(flat / "x.png", paint(lab, SCENE_COLORS))
    Image.fromarray(paint(lab, SCENE_COLORS)).save(flat / "y.jpg")
    assert [p.name for p in rgb.RgbReader(flat, colormap=cmap)._files] == ["x.png"]
    assert [p.name for p in rgb.RgbReader(flat, colormap=cmap, tolerance=20)._files] == ["x.png", "y.jpg"]
    # a folder literally named images, with no sibling, is read
    only = tmp_path / "only"
    save_rgb(only / "images" / "x.png", paint(lab, SCENE_COLORS))
    assert len(rgb.RgbReader(only, colormap=cmap)._files) == 1


def test_sniff_leaves_voc_roots_to_the_voc_reader(tmp_path: Path):
    (tmp_path / "SegmentationClass").mkdir()
    (tmp_path / "labelmap.txt").write_text("background:0,0,0::\ncat:64,0,0::\n")
    assert not rgb.sniff(tmp_path)
    (tmp_path / "SegmentationClass").rmdir()
    assert rgb.sniff(tmp_path)


# --------------------------------------------------------------------------- --instances DIR


def _cityscapes_pair(tmp_path: Path, polygons: Path) -> tuple[np.ndarray, np.ndarray]:
    """_labelIds (8-bit) and _instanceIds (16-bit) PNGs as cityscapesScripts makes them, in one folder."""
    ids = _cityscapes_reference(polygons, "ids")
    inst = _cityscapes_reference(polygons, "instance")
    stem = polygons.name.replace("_polygons.json", "")
    Image.fromarray(ids.astype(np.uint8), "L").save(tmp_path / f"{stem}_labelIds.png")
    save_16bit(tmp_path / f"{stem}_instanceIds.png", inst)
    return ids, inst


@pytest.mark.parametrize("polygons", CITYSCAPES_POLYGONS[:2], ids=lambda p: p.name)
def test_instances_cityscapes_label_ids_with_instance_ids(tmp_path: Path, polygons: Path):
    ids, inst = _cityscapes_pair(tmp_path, polygons)
    reader = rgb.RgbReader(tmp_path, encoding="palette", labels="cityscapes", strip_suffix="_gtFine_labelIds",
                           instances=tmp_path, instance_suffix="_gtFine_instanceIds", divisor=1000)
    (item,) = list(reader.items())
    seg = item.load()
    assert seg.warnings == []  # cityscapesScripts' two images agree pixel for pixel
    semantic = ModePlan("semantic", "category-id", reader.categories).apply(seg).resolved_label_map(np.int64)
    np.testing.assert_array_equal(semantic, np.where(ids <= 4, 0, ids))
    ours = ModePlan("instance").apply(seg).resolved_label_map(np.int64)
    theirs = np.where(inst >= 1000, inst, 0)
    pairs = set(zip(ours.ravel().tolist(), theirs.ravel().tolist(), strict=True))
    assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})
    from cityscapesscripts.helpers.labels import id2label

    things = [s for s in seg.segments if s.isthing]
    assert [(s.label, s.metadata["instance"]) for s in things] == [
        (id2label[v // 1000].name, v) for v in np.unique(theirs[theirs > 0]).tolist()]
    # the same image read from _instanceIds alone gives the same panoptic partition
    alone = load_one(tmp_path / polygons.name.replace("_polygons.json", "_instanceIds.png"),
                     encoding="class-instance", divisor=1000, labels="cityscapes")
    a = ModePlan("panoptic").apply(alone).resolved_label_map(np.int64)
    b = ModePlan("panoptic").apply(seg).resolved_label_map(np.int64)
    assert len(set(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))) == len(np.unique(a)) == len(
        np.unique(b))


def test_instances_majority_class_and_warning(tmp_path: Path):
    (tmp_path / "l.json").write_text(json.dumps({"0": "background", "1": "cat", "2": "dog"}))
    cls = np.zeros((6, 8), np.uint8)
    cls[:, :4] = 1
    cls[:, 4:] = 2
    obj = np.zeros((6, 8), np.uint8)
    obj[1:5, 1:5] = 3  # 12 px over cat, 4 over dog
    obj[0, 6:] = 7  # over dog only
    obj[5, :] = 255  # VOC-style void ring
    for folder, arr in (("class", cls), ("object", obj)):
        (tmp_path / folder).mkdir()
        Image.fromarray(arr, "L").save(tmp_path / folder / "a.png")
    reader = rgb.RgbReader(tmp_path / "class", encoding="palette", labels=tmp_path / "l.json",
                           instances=tmp_path / "object")
    seg = next(reader.items()).load()
    assert seg.warnings == [f"instance 3 of {tmp_path / 'object' / 'a.png'} lies on 'cat' (12 px) and 'dog' 4 px; "
                            "it is 'cat' (the majority)"]
    things = [(s.label, s.metadata["instance"]) for s in seg.segments if s.isthing]
    assert things == [("cat", 3), ("dog", 7)]
    inst = ModePlan("instance").apply(seg).resolved_label_map(np.int64)
    a, b = inst[1, 1], inst[0, 6]
    assert 0 < a != b > 0 and (inst[1:5, 1:5] == a).all() and (inst[0, 6:] == b).all()
    assert np.count_nonzero(inst) == 16 + 2  # everything else is background in instance mode
    assert labels_of(seg)[5].tolist() == ["cat"] * 4 + ["dog"] * 4  # the object mask's 255: no instance
    regions = [(s.label, s.isthing, s.iscrowd) for s in seg.segments if not s.isthing]
    assert regions == [("cat", False, False), ("dog", False, False)]


def test_instances_missing_and_mismatched(tmp_path: Path):
    for folder in ("class", "object"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.ones((4, 4), np.uint8), "L").save(tmp_path / "class" / "a.png")
    Image.fromarray(np.ones((4, 4), np.uint8), "L").save(tmp_path / "class" / "b.png")
    Image.fromarray(np.ones((3, 4), np.uint8), "L").save(tmp_path / "object" / "a.png")
    reader = rgb.RgbReader(tmp_path / "class", encoding="palette", instances=tmp_path / "object")
    a, b = reader.items()
    with pytest.raises(ItemError, match=r"instance mask is 4x3 but the class mask .*a.png is 4x4"):
        a.load()
    with pytest.raises(ItemError, match="no instance mask b.png under --instances"):
        b.load()
    with pytest.raises(SourceError, match="instances: no such folder"):
        rgb.RgbReader(tmp_path / "class", encoding="palette", instances=tmp_path / "nope")
    with pytest.raises(SourceError, match="carry their instances themselves"):
        rgb.RgbReader(tmp_path / "class", encoding="id", instances=tmp_path / "object")


def test_cli_instances(tmp_path: Path):
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    (tmp_path / "l.json").write_text(json.dumps({"1": "cat"}))
    for folder in ("class", "object"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.array([[1, 1, 0, 1]], np.uint8), "L").save(tmp_path / "class" / "a.png")
    Image.fromarray(np.array([[1, 1, 0, 2]], np.uint8), "L").save(tmp_path / "object" / "a.png")
    result = CliRunner().invoke(main, [
        "convert", str(tmp_path / "class"), str(tmp_path / "out"), "--from", "rgb", "--encoding", "palette",
        "--labels", str(tmp_path / "l.json"), "--instances", str(tmp_path / "object"), "--mode", "instance",
        "--jobs", "1"])
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "out" / "annotations.jsonl").read_text())
    assert [(a["label"], a["index"]) for a in payload["annotations"]] == [("background", 0), ("cat", 1), ("cat", 2)]
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "a.png"))
    assert mask.tolist() == [[1, 1, 0, 2]]


# --------------------------------------------------------------------------- ADE20K names from the dataset


def _ade_seg(path: Path, cls: np.ndarray, inst: np.ndarray) -> Path:
    """An ADE20K _seg.png: R/10*256 + G = class, B = instance (CSAILVision utils_ade20k.loadAde20K)."""
    r, g = (cls // 256) * 10, cls % 256
    return save_rgb(path, np.stack([r, g, inst], -1))


def _ade_object(ndx: int, name: str, level: int = 0) -> dict:
    return {"id": ndx, "name": name, "name_ndx": ndx, "raw_name": name.split(",")[0],
            "parts": {"hasparts": [], "ispartof": [], "part_level": level}}


def test_ade20k_2021_names_from_the_image_json(tmp_path: Path):
    cls = np.array([[0, 2855, 2855], [401, 401, 2855]])
    inst = np.array([[0, 1, 1], [2, 2, 3]])
    _ade_seg(tmp_path / "ADE_train_00016900_seg.png", cls, inst)
    objects = [_ade_object(2855, "tree"), _ade_object(401, "car, auto, automobile, machine, motorcar"),
               _ade_object(33, "wheel", level=1)]
    (tmp_path / "ADE_train_00016900.json").write_text(json.dumps({"annotation": {"object": objects}}))
    reader = rgb.RgbReader(tmp_path, encoding="ade20k")
    seg = next(reader.items()).load()
    assert [(s.label, s.category_id) for s in seg.segments] == [
        ("tree", 2855), ("car, auto, automobile, machine, motorcar", 401), ("tree", 2855)]
    assert seg.warnings == []


def test_ade20k_2021_class_value_is_name_ndx_never_name_ndx_plus_1(tmp_path: Path):
    """The rule, from the ADE20K toolkit (CSAILVision/ADE20K): _seg.png's class value R/10*256 + G
    (utils/utils_ade20k.py loadAde20K) and the JSON's name_ndx are the same 1-based index into
    index_ade20k.pkl's objectnames: the toolkit's sample ADE_train_00016869.json gives car
    name_ndx 401 and sky 2420, and notebooks/ade20k_starter.ipynb prints that image's car as
    objectnames[400] (0-based). So value 401 is car, and value 402 is not "the object of
    name_ndx 401 shifted by one": an image whose values fit name_ndx + 1 better must not be
    renamed (the reader once guessed the base per image and named 401 "road" here)."""
    cls = np.array([[401, 402, 2420]])
    _ade_seg(tmp_path / "ADE_train_00016869_seg.png", cls, np.array([[1, 2, 3]]))
    objects = [_ade_object(400, "road"), _ade_object(401, "car, auto, automobile, machine, motorcar"),
               _ade_object(2419, "skyscraper"), _ade_object(2420, "sky")]
    (tmp_path / "ADE_train_00016869.json").write_text(json.dumps({"annotation": {"object": objects}}))
    seg = next(rgb.RgbReader(tmp_path, encoding="ade20k").items()).load()
    assert {s.category_id: s.label for s in seg.segments} == {
        401: "car, auto, automobile, machine, motorcar", 402: "class-402", 2420: "sky"}
    assert len(seg.warnings) == 1 and "class value(s) 402" in seg.warnings[0]


def test_ade20k_2021_class_without_a_name_is_reported(tmp_path: Path):
    _ade_seg(tmp_path / "x_seg.png", np.array([[2855, 7]]), np.array([[1, 2]]))
    (tmp_path / "x.json").write_text(json.dumps({"annotation": {"object": [_ade_object(2855, "tree")]}}))
    seg = next(rgb.RgbReader(tmp_path, encoding="ade20k").items()).load()
    assert [s.label for s in seg.segments] == ["tree", "class-7"]
    assert seg.warnings == [f"{tmp_path / 'x.json'}: no object names class value(s) 7; they are class-<value>"]


def test_ade20k_2016_names_from_atr_txt(tmp_path: Path):
    """_atr.txt instance k is the k-th distinct B value (0-based, as MATLAB loadAde20K numbers them)."""
    cls = np.array([[0, 2978, 2978], [165, 165, 2978]])
    inst = np.array([[0, 5, 5], [9, 9, 5]])  # distinct B: 0, 5, 9 -> instances 0, 1, 2
    _ade_seg(tmp_path / "ADE_train_00000001_seg.png", cls, inst)
    (tmp_path / "ADE_train_00000001_atr.txt").write_text(
        '001 # 0 # 0 # wall # wall # ""\n002 # 0 # 0 # ceiling # ceiling # ""\n003 # 1 # 0 # door # door # ""\n')
    seg = next(rgb.RgbReader(tmp_path, encoding="ade20k").items()).load()
    assert [(s.label, s.category_id, s.metadata["instance"]) for s in seg.segments] == [
        ("wall", 2978, 5), ("ceiling", 165, 9)]


def test_ade20k_scene_parsing_objectinfo150(tmp_path: Path):
    """ADEChallengeData2016 index masks with objectInfo150.csv: names as the built-in ade20k table has them."""
    f = _write(tmp_path, "objectInfo150.csv", "Idx,Ratio,Train,Val,Name\n1,0.1576,11664,1172,wall\n"
               "2,0.1072,6046,612,building;edifice\n3,0.0878,8265,796,sky\n9,0.0226,5284,500,windowpane;window\n")
    from segconvert.codecs.label_files import load_colour_table

    rows = load_colour_table(f)
    builtin = {i: n for i, n, _ in P.ADE20K}
    assert [(r.id, r.name) for r in rows] == [(i, builtin[i]) for i in (1, 2, 3, 9)]
    Image.fromarray(np.array([[0, 1, 2], [3, 9, 9]], np.uint8), "L").save(tmp_path / "ADE_val_00000001.png")
    seg = load_one(tmp_path / "ADE_val_00000001.png", encoding="palette", labels=f)
    assert labels_of(seg).tolist() == [["", "wall", "building"], ["sky", "windowpane", "windowpane"]]


# --------------------------------------------------------------------------- CLI


def test_cli_class_instance_cityscapes(tmp_path: Path):
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    polygons = CITYSCAPES_POLYGONS[0]
    inst = _cityscapes_reference(polygons, "instance")
    save_16bit(tmp_path / "in" / polygons.name.replace("_polygons.json", "_instanceIds.png"), inst)
    result = CliRunner().invoke(main, [
        "convert", str(tmp_path / "in"), str(tmp_path / "out"), "--from", "rgb", "--encoding", "class-instance",
        "--divisor", "1000", "--labels", "cityscapes", "--strip-suffix", "_gtFine_instanceIds",
        "--mode", "instance", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "out" / "annotations.jsonl").read_text())
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{payload['reference_id']}.png"))
    things = np.unique(inst[inst >= 1000])
    assert len(payload["annotations"]) == len(things) + 1  # background + one per instance
    assert len(np.unique(mask)) == len(things) + 1
    from cityscapesscripts.helpers.labels import id2label

    assert sorted(a["label"] for a in payload["annotations"][1:]) == sorted(
        id2label[v // 1000].name for v in things.tolist())


def test_cli_tolerance_reports_resolved_pixels(tmp_path: Path):
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    lab = coco_scene(3)
    colors = np.array([c[-1] for c in P.COCO_PANOPTIC], np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(colors[lab]).save(tmp_path / "in" / "x.jpg", quality=92)
    args = ["convert", str(tmp_path / "in"), str(tmp_path / "out"), "--from", "rgb", "--colormap",
            "coco-panoptic", "--jobs", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "no mask images" in result.output  # a .jpg is a photo without --tolerance
    result = CliRunner().invoke(main, [*args, "--tolerance", "40"])
    assert result.exit_code == 0, result.output
    assert "pixels whose colour is not clearly one class's were given the nearest-coloured class" in result.output


def test_instances_rgb_id_mask_over_colour_classes(tmp_path: Path, cmap: Path):
    """An RGB instance mask (R + 256 G + 256^2 B ids, 0 none) over a colour class mask; alpha 0 is void."""
    lab = scene()
    save_rgb(tmp_path / "class" / "x.png", paint(lab, SCENE_COLORS))
    ids = np.zeros((*lab.shape, 4), np.uint8)
    ids[..., 3] = 255
    ids[12:20, 4:10, :3] = (1, 2, 0)  # instance 513 over the car
    ids[12:20, 10:16, :3] = (7, 0, 0)  # instance 7 over the car
    ids[0, 0, 3] = 0  # transparent: void in the instance mask, so no instance there
    (tmp_path / "obj").mkdir()
    Image.fromarray(ids, "RGBA").save(tmp_path / "obj" / "x.png")
    seg = load_one(tmp_path / "class", colormap=cmap, instances=tmp_path / "obj")
    things = [(s.label, s.metadata["instance"]) for s in seg.segments if s.isthing]
    assert things == [("car", 7), ("car", 513)] and seg.warnings == []
    np.testing.assert_array_equal(labels_of(seg), expected_names(lab))  # the classes stay as they were
    regions = [s.label for s in seg.segments if not s.isthing]
    assert regions == ["road", "sky"]  # the car is all instances: no car region left


# --------------------------------------------------------------------------- step (KITTI-STEP, MOTChallenge-STEP)


def save_step(path: Path, semantic: np.ndarray, instance: np.ndarray) -> Path:
    """A STEP panoptic PNG as deeplab2's create_step_panoptic_maps.encode_panoptic_map writes it:
    R = semantic id, G = instance // 256, B = instance % 256."""
    rgb_img = np.dstack((semantic, instance // 256, instance % 256)).astype(np.uint8)
    return save_rgb(path, rgb_img)


def deeplab2_panoptic(path: Path) -> np.ndarray:
    """deeplab2 build_step_data._decode_panoptic_map's rule: R * 1000 + G * 256 + B (int32)."""
    m = np.asarray(Image.open(path)).astype(np.int32)
    return m[..., 0] * 1000 + m[..., 1] * 256 + m[..., 2]


def test_step_train_id_tables_match_cityscapesscripts_and_deeplab2():
    labels_py = pytest.importorskip("cityscapesscripts.helpers.labels")
    by_train = sorted((lab.trainId, lab.name) for lab in labels_py.labels if 0 <= lab.trainId < 255)
    assert [n for _, n in by_train] == list(P.CITYSCAPES_TRAIN)
    table = rgb.build_table(rgb.Spec(encoding="step"))  # kitti-step by default
    assert [c.name for c in table.categories] == list(P.CITYSCAPES_TRAIN)
    assert [c.id for c in table.categories if c.isthing] == [11, 13]  # deeplab2 KITTI_STEP_INFORMATION
    cs = rgb.build_table(rgb.Spec(encoding="step", labels="cityscapes-train"))
    assert [c.id for c in cs.categories if c.isthing] == list(range(11, 19))
    mot = rgb.build_table(rgb.Spec(encoding="step", labels="motchallenge-step"))
    # deeplab2 _remap_motchallege_semantic_indices: train ids 1, 2, 8, 10, 11, 12, 18 -> 0..6
    assert [c.name for c in mot.categories] == [P.CITYSCAPES_TRAIN[i] for i in (1, 2, 8, 10, 11, 12, 18)]
    assert [c.id for c in mot.categories if c.isthing] == [4]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sem=st.lists(st.sampled_from([0, 2, 10, 11, 13, 255]), min_size=12, max_size=12),
    inst=st.lists(st.sampled_from([0, 1, 2, 255, 256, 300, 999]), min_size=12, max_size=12),
)
def test_step_pixels_are_deeplab2s_panoptic_ids(tmp_path_factory, sem: list[int], inst: list[int]):
    """Every pixel: class = R, instance = G * 256 + B, the same segments as deeplab2's panoptic ids; 255 void."""
    tmp = tmp_path_factory.mktemp("step")
    s = np.array(sem).reshape(3, 4)
    i = np.where(np.isin(s, (11, 13)), np.array(inst).reshape(3, 4), 0)  # only things carry instances
    p = save_step(tmp / "0001" / "000000.png", s, i)
    seg = load_one(p, encoding="step")
    theirs = deeplab2_panoptic(p)
    by_raw = {x.id: x for x in seg.segments}
    for y in range(3):
        for x in range(4):
            raw = int(seg.label_map[y, x])
            if s[y, x] == 255:
                assert raw in seg.dropped_ids
                continue
            info = by_raw[raw]
            assert info.label == P.CITYSCAPES_TRAIN[s[y, x]] and info.category_id == s[y, x]
            assert info.isthing == (i[y, x] > 0)
            assert info.metadata.get("instance") == (i[y, x] if i[y, x] > 0 else None)
            assert info.iscrowd == (i[y, x] == 0 and s[y, x] in (11, 13))  # a thing without instance id
    kept = theirs[s != 255].tolist()
    pairs = set(zip(seg.label_map[s != 255].tolist(), kept, strict=True))
    assert len({a for a, _ in pairs}) == len(pairs) == len(set(kept))  # deeplab2's partition exactly


def test_step_modes_and_void(tmp_path: Path):
    import segconvert

    s = np.full((6, 8), 0, np.uint8)  # road
    s[0, :] = 255  # void
    s[1:3, 0:4] = 10  # sky
    i = np.zeros_like(s, np.int64)
    s[3:6, 0:3], i[3:6, 0:3] = 13, 1  # car 1
    s[3:6, 4:7], i[3:6, 4:7] = 13, 300  # car 300 (G = 1, B = 44)
    s[1:3, 5:8], i[1:3, 5:8] = 11, 2  # person 2
    root = tmp_path / "panoptic_maps" / "val" / "0002"
    save_step(root / "000000.png", s, i)
    src = tmp_path / "panoptic_maps"
    reader = rgb.RgbReader(src, encoding="step")
    assert reader.default_mode == "panoptic"

    def run(mode: str, **opts) -> tuple[list[tuple[str, int]], np.ndarray]:
        out = tmp_path / f"out-{mode}-{len(opts)}"
        summary = segconvert.convert(src, out, from_format="rgb", encoding="step", mode=mode, jobs=1, **opts)
        assert summary.ok and summary.converted == 1, summary.failures
        payload = json.loads((out / "annotations.jsonl").read_text())
        mask = np.asarray(Image.open(out / "masks" / "0002_000000.png"))
        return [(a["label"], a["index"]) for a in payload["annotations"][1:]], mask

    segs, mask = run("panoptic")
    assert sorted(lab for lab, _ in segs) == ["car", "car", "person", "road", "sky"]
    idx = dict((lab, k) for lab, k in segs if lab in ("road", "sky", "person"))
    assert (mask[0] == 0).all()  # void -> background
    assert (mask[s == 0] == idx["road"]).all() and (mask[s == 10] == idx["sky"]).all()
    assert (mask[s == 11] == idx["person"]).all()
    cars = {int(mask[3, 0]), int(mask[3, 4])}
    assert len(cars) == 2 and 0 not in cars

    segs, mask = run("instance")
    assert sorted(lab for lab, _ in segs) == ["car", "car", "person"]
    assert (mask[(s == 0) | (s == 10) | (s == 255)] == 0).all()

    segs, mask = run("semantic")
    assert sorted(lab for lab, _ in segs) == ["car", "person", "road", "sky"]
    car = dict(segs)["car"]
    assert (mask[s == 13] == car).all()

    segs, mask = run("panoptic", void="ignore")
    ignore = dict(segs)["ignore"]
    assert (mask[s == 255] == ignore).all() and (mask == ignore).sum() == (s == 255).sum()


def test_step_reference_ids_are_sequence_and_frame(tmp_path: Path):
    """KITTI-STEP's panoptic_maps/val/<sequence>/<frame>.png: every sequence starts at 000000."""
    s = np.zeros((2, 2), np.uint8)
    for seq in ("0002", "0006"):
        save_step(tmp_path / "val" / seq / "000000.png", s, np.zeros_like(s, np.int64))
    reader = rgb.RgbReader(tmp_path / "val", encoding="step")
    assert [it.reference_id for it in reader.items()] == ["0002_000000", "0006_000000"]
    assert all(it.load().segments for it in reader.items())


def test_step_errors(tmp_path: Path):
    s = np.array([[0, 20], [21, 255]], np.uint8)
    p = save_step(tmp_path / "m" / "x.png", s, np.zeros_like(s, np.int64))
    with pytest.raises(ItemError, match=r'2 class\(es\) not in labels="kitti-step": R = 20 \(1 px\), R = 21 \(1 px\)'):
        load_one(p, encoding="step")
    seg = load_one(p, encoding="step", unknown="background")
    assert [x.label for x in seg.segments] == ["road"]
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(ItemError, match='encoding="step" reads RGB PNGs'):
        load_one(tmp_path / "gray.png", encoding="step")
    with pytest.raises(SourceError, match="not colormap"):
        rgb.RgbReader(p, encoding="step", colormap="cityscapes")


def test_step_png_declaring_a_huge_size_fails_its_item_before_decoding(tmp_path: Path):
    """A KITTI-STEP panoptic map is checked against --max-pixels from its header, as every mask is:
    the item fails with the bomb message and nothing is allocated for it."""
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    bomb = Path(__file__).resolve().parents[1] / "fixtures" / "bad" / "rgb-png-bomb" / "masks" / "a.png"
    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "000000.png").write_bytes(bomb.read_bytes())  # declares 30000x30000
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "seq"), str(tmp_path / "out"), "--from", "rgb",
                                       "--encoding", "step", "--jobs", "1"])
    assert result.exit_code == 1, result.output
    assert "image size 30000x30000 is 900,000,000 pixels, more than the limit of 200,000,000" in result.output
