"""YOLO segmentation reader (against pycocotools) and writer (round trips by IoU)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import read_mask, read_payloads
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_utils
from test_voc import write_voc

import segconvert
from segconvert.converters.yolo import label_path, merge_parts
from segconvert.interfaces import registry


def make_set(root: Path, images: dict[str, tuple[int, int, str | None]], names=("cat", "dog", "car"),
             split: str = "train", extra_yaml: str = "") -> Path:
    """images: stem -> (width, height, label text or None for no label file)."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for stem, (w, h, text) in images.items():
        Image.new("RGB", (w, h), (90, 90, 90)).save(root / "images" / split / f"{stem}.jpg")
        if text is not None:
            (root / "labels" / split / f"{stem}.txt").write_text(text)
    if not (root / "data.yaml").exists():
        body = "names:\n" + "".join(f"  {k}: {n}\n" for k, n in enumerate(names))
        (root / "data.yaml").write_text(f"path: .\n{split}: images/{split}\n{extra_yaml}{body}")
    return root


def pycocotools_paint(polys: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """The reference: each polygon through frPyObjects + decode, painted in order (later on top)."""
    out = np.zeros((h, w), np.uint8)
    for k, p in enumerate(polys, start=1):
        m = mask_utils.decode(mask_utils.frPyObjects([p], h, w))[:, :, 0]
        out[m > 0] = k
    return out


@st.composite
def yolo_lines(draw):
    w, h = draw(st.integers(8, 60)), draw(st.integers(8, 60))
    coord = st.floats(0, 1, allow_nan=False, width=32)
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        n = draw(st.integers(3, 8))
        pts = [draw(coord) for _ in range(2 * n)]
        lines.append((draw(st.integers(0, 2)), np.array(pts, np.float64)))
    return w, h, lines


@given(yolo_lines())
@settings(max_examples=40)
def test_polygons_are_pycocotools_rasterisation_and_match_the_coco_twin(tmp_path_factory, scene):
    tmp = tmp_path_factory.mktemp("y")
    w, h, lines = scene
    text = "".join(f"{c} " + " ".join(repr(float(v)) for v in pts) + "\n" for c, pts in lines)
    make_set(tmp / "yolo", {"img": (w, h, text)})
    s = segconvert.convert(tmp / "yolo", tmp / "out", from_format="yolo", jobs=1)
    assert s.ok, s.failures
    scaled = [(pts.reshape(-1, 2) * [w, h]).ravel() for _, pts in lines]
    expected = pycocotools_paint(scaled, h, w)
    got = read_mask(tmp / "out" / "masks" / "img.png")
    # Nucleus indices are 1..n over segments with pixels: map the reference the same way
    present = [k for k in range(1, len(lines) + 1) if (expected == k).any()]
    lut = np.zeros(len(lines) + 1, np.uint8)
    lut[present] = np.arange(1, len(present) + 1)
    assert (got == lut[expected]).all()

    # the COCO twin: the same polygons in pixels, read by coco-instances
    coco = {
        "images": [{"id": 1, "file_name": "img.jpg", "width": w, "height": h}],
        "annotations": [{"id": k + 1, "image_id": 1, "category_id": c + 1, "segmentation": [p.tolist()],
                         "iscrowd": 0} for k, ((c, _), p) in enumerate(zip(lines, scaled))],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(("cat", "dog", "car"))],
    }
    (tmp / "coco.json").write_text(json.dumps(coco))
    s = segconvert.convert(tmp / "coco.json", tmp / "coco", from_format="coco-instances", jobs=1)
    assert s.ok
    assert (read_mask(tmp / "coco" / "masks" / "img.png") == got).all()
    labels = [[a["label"] for a in p["annotations"]] for p in (read_payloads(tmp / "out")[0],
                                                                  read_payloads(tmp / "coco")[0])]
    assert labels[0] == labels[1]


def test_box_line_is_pycocotools_bbox(tmp_path):
    make_set(tmp_path / "yolo", {"b": (40, 30, "1 0.5 0.5 0.3 0.4\n")})
    s = segconvert.convert(tmp_path / "yolo", tmp_path / "out", from_format="yolo", jobs=1)
    assert s.ok
    box = np.array([[0.35 * 40, 0.3 * 30, 0.3 * 40, 0.4 * 30]])  # x, y, w, h in pixels
    ref = mask_utils.decode(mask_utils.frPyObjects(box, 30, 40))[:, :, 0]
    assert ((read_mask(tmp_path / "out" / "masks" / "b.png") == 1) == (ref == 1)).all()
    assert read_payloads(tmp_path / "out")[0]["annotations"][1]["label"] == "dog"


@pytest.mark.parametrize("line, message", [
    ("0 0.1 0.1", "line 2: 1 point(s); a polygon needs at least 3"),
    ("0 0.1 0.1 0.5 0.5 0.2", "line 2: odd number of coordinates (5)"),
    ("7 0.1 0.1 0.5 0.5 0.2 0.9", "line 2: class 7 is not in names"),
    ("1 0.1 0.1 1.01 0.5 0.2 0.9", "line 2: coordinate 1.01 is outside [0, 1]"),
    ("1 0.1 nan 0.5 0.5 0.2 0.9", "line 2: NaN or infinite"),
    ("1 0.1 x 0.5 0.5 0.2 0.9", "line 2: not all numbers"),
])
def test_bad_lines_fail_their_image_with_the_line(tmp_path, line, message):
    make_set(tmp_path / "yolo", {"bad": (20, 20, f"0 0.1 0.1 0.9 0.1 0.5 0.9\n{line}\n"),
                                 "good": (20, 20, "0 0.1 0.1 0.9 0.1 0.5 0.9\n")})
    s = segconvert.convert(tmp_path / "yolo", tmp_path / "out", from_format="yolo", jobs=1)
    assert s.converted == 1 and s.failed == 1
    assert "bad.txt [bad]: " + message in s.failures[0]


def test_rounding_just_outside_is_accepted(tmp_path):
    make_set(tmp_path / "yolo", {"r": (20, 20, "0 -0.0000005 0 1.0000005 0 1 1\n")})
    assert segconvert.convert(tmp_path / "yolo", tmp_path / "out", from_format="yolo", jobs=1).ok


def test_missing_label_is_background_and_orphan_label_fails(tmp_path):
    root = make_set(tmp_path / "yolo", {"empty": (10, 8, None)})
    (root / "labels" / "train" / "ghost.txt").write_text("0 0.1 0.1 0.9 0.1 0.5 0.9\n")
    s = segconvert.convert(root, tmp_path / "out", from_format="yolo", jobs=1)
    assert s.converted == 1 and s.failed == 1
    assert "ghost.txt [ghost]: label file without its image" in s.failures[0]
    assert (read_mask(tmp_path / "out" / "masks" / "empty.png") == 0).all()


def test_splits_kept_apart_when_stems_repeat(tmp_path):
    root = tmp_path / "yolo"
    make_set(root, {"1": (10, 10, "0 0 0 1 0 1 1\n"), "2": (10, 10, "")}, split="train",
             extra_yaml="val: images/val\n")
    make_set(root, {"1": (10, 10, "1 0 0 1 0 1 1\n")}, split="val")
    s = segconvert.convert(root, tmp_path / "all", from_format="yolo", jobs=1)
    assert s.ok and [p["reference_id"] for p in read_payloads(tmp_path / "all")] == ["train-1", "2", "val-1"]
    s = segconvert.convert(root, tmp_path / "val", from_format="yolo", split="val", jobs=1)
    assert [p["reference_id"] for p in read_payloads(tmp_path / "val")] == ["1"]


def test_names_list_and_txt_lists(tmp_path):
    root = tmp_path / "yolo"
    make_set(root, {"a": (10, 10, "1 0 0 1 0 1 1\n")})
    (root / "train.txt").write_text("./images/train/a.jpg\n")
    (root / "data.yaml").write_text("train: train.txt\nnames: [cat, dog]\n")
    s = segconvert.convert(root / "data.yaml", tmp_path / "out", from_format="auto", jobs=1)
    assert s.ok and read_payloads(tmp_path / "out")[0]["annotations"][1]["label"] == "dog"
    assert label_path("/d/images/train/a.jpg") == "/d/labels/train/a.txt"


def test_auto_detects_a_yolo_set(tmp_path):
    root = make_set(tmp_path / "yolo", {"a": (10, 10, "")})
    assert registry.detect(root) == "yolo" and registry.detect(root / "data.yaml") == "yolo"


def test_merge_parts_joins_like_ultralytics():
    # two squares: the result starts on part 0 at its point nearest part 1, walks it whole,
    # jumps to part 1 at its nearest point, walks it whole (merge_multi_segment's order)
    a = np.array([[0, 0], [0, 2], [2, 2], [2, 0]], float)
    b = np.array([[5, 5], [5, 7], [7, 7], [7, 5]], float)
    out = merge_parts([a, b])
    assert out[:5].tolist() == [[2, 2], [2, 0], [0, 0], [0, 2], [2, 2]]
    assert out[5:].tolist() == [[5, 5], [5, 7], [7, 7], [7, 5], [5, 5]]


@st.composite
def cell_scenes(draw):
    """Shapes without holes, one per cell of a grid (so no shape cuts another)."""
    rows, cols, cell = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(10, 24))
    cls = np.zeros((rows * cell, cols * cell), np.uint8)
    obj = np.zeros_like(cls)
    k = 0
    for r in range(rows):
        for c in range(cols):
            kind = draw(st.sampled_from(["none", "rect", "ellipse", "triangle", "two"]))
            if kind == "none":
                continue
            k += 1
            m = np.zeros((cell, cell), np.uint8)
            a, b = draw(st.integers(1, cell // 2 - 1)), draw(st.integers(1, cell // 2 - 1))
            if kind == "rect":
                m[cell // 2 - b: cell // 2 + b, cell // 2 - a: cell // 2 + a] = 1
            elif kind == "ellipse":
                cv2.ellipse(m, (cell // 2, cell // 2), (a, b), draw(st.integers(0, 179)), 0, 360, 1, -1)
            elif kind == "triangle":
                pts = np.array([[1, cell - 2], [cell - 2, cell - 2], [draw(st.integers(1, cell - 2)), 1]])
                cv2.fillPoly(m, [pts.astype(np.int32)], 1)
            else:  # a two-part instance
                m[1:4, 1:cell - 1] = 1
                m[cell - 4: cell - 1, 1:cell - 1] = 1
            y, x = r * cell, c * cell
            cls[y:y + cell, x:x + cell][m > 0] = draw(st.integers(1, 20))
            obj[y:y + cell, x:x + cell][m > 0] = k
    return cls, obj


@given(cell_scenes())
@settings(max_examples=20)
def test_round_trip_ir_yolo_ir_keeps_every_instance_above_iou_09(tmp_path_factory, sc):
    tmp = tmp_path_factory.mktemp("rt")
    cls, obj = sc
    write_voc(tmp / "voc", "s", cls, obj)
    (tmp / "photos").mkdir()
    Image.new("RGB", (cls.shape[1], cls.shape[0])).save(tmp / "photos" / "s.jpg")
    a = segconvert.convert(tmp / "voc", tmp / "ir1", from_format="voc", mode="instance", jobs=1)
    w = segconvert.convert(tmp / "voc", tmp / "yolo", from_format="voc", to_format="yolo", mode="instance", jobs=1,
                           link_images=tmp / "photos")
    b = segconvert.convert(tmp / "yolo", tmp / "ir2", from_format="yolo", mode="instance", jobs=1)
    assert a.ok and w.ok and b.ok, (w.failures, b.failures)
    pa, pb = read_payloads(tmp / "ir1")[0], read_payloads(tmp / "ir2")[0]
    assert [x["label"] for x in pa["annotations"]] == [x["label"] for x in pb["annotations"]]
    ma, mb = read_mask(tmp / "ir1" / "masks" / "s.png"), read_mask(tmp / "ir2" / "masks" / "s.png")
    for seg in pa["annotations"][1:]:
        i = seg["index"]
        iou = np.count_nonzero((ma == i) & (mb == i)) / np.count_nonzero((ma == i) | (mb == i))
        assert iou >= 0.9, (seg, iou)
    report = json.loads((tmp / "yolo" / "polygon_iou.json").read_text())
    assert report["instances"] == len(pa["annotations"]) - 1


@st.composite
def pixel_scenes(draw):
    w, h = draw(st.integers(8, 48)), draw(st.integers(8, 48))
    shapes = []
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.integers(3, 7))
        xs = [draw(st.integers(0, 4 * w)) / 4 for _ in range(n)]  # quarter pixels
        ys = [draw(st.integers(0, 4 * h)) / 4 for _ in range(n)]
        shapes.append((draw(st.integers(1, 20)), np.ravel(np.column_stack([xs, ys]))))
    return w, h, shapes


@given(pixel_scenes())
@settings(max_examples=25)
def test_one_scene_as_voc_yolo_and_coco_gives_the_same_masks(tmp_path_factory, scene):
    """Issue 8's cross-format property: a scene of polygons written as COCO polygons, as a YOLO
    set (normalised) and as a VOC root (the polygons painted by pycocotools, in order) reads as
    the same instance masks and labels, and as class * 1000 + instance PNGs the same labelled
    partition. VOC's own limits do not arise here (no void ring)."""
    from segconvert.converters.voc import VOC_CLASSES

    tmp = tmp_path_factory.mktemp("x")
    w, h, drawn = scene
    # the scene is defined by its normalised coordinates, and the pixel coordinates of the
    # COCO and VOC files are x·W, y·H of those (as a YOLO -> COCO converter makes them):
    # x / W · W is not always x in floating point, and a point exactly on a pixel boundary
    # would rasterise differently — a limit of normalised formats, not of the readers
    normalised = [(c, (p.reshape(-1, 2) / [w, h]).ravel()) for c, p in drawn]
    shapes = [(c, (n.reshape(-1, 2) * [w, h]).ravel()) for c, n in normalised]
    polys = [p for _, p in shapes]
    painted = pycocotools_paint(polys, h, w)
    classes = np.zeros(len(shapes) + 1, np.uint8)
    classes[1:] = [c for c, _ in shapes]
    write_voc(tmp / "voc", "s", classes[painted], painted)
    text = "".join(f"{c - 1} " + " ".join(repr(v) for v in n.tolist()) + "\n" for c, n in normalised)
    make_set(tmp / "yolo", {"s": (w, h, text)}, names=VOC_CLASSES[1:])
    coco = {
        "images": [{"id": 1, "file_name": "s.jpg", "width": w, "height": h}],
        "annotations": [{"id": k + 1, "image_id": 1, "category_id": c, "segmentation": [p.tolist()], "iscrowd": 0}
                        for k, (c, p) in enumerate(shapes)],
        "categories": [{"id": i, "name": n} for i, n in enumerate(VOC_CLASSES) if i],
    }
    (tmp / "coco.json").write_text(json.dumps(coco))
    outs = []
    for src, fmt in ((tmp / "voc", "voc"), (tmp / "yolo", "yolo"), (tmp / "coco.json", "coco-instances")):
        s = segconvert.convert(src, tmp / fmt, from_format=fmt, mode="instance", jobs=1)
        assert s.ok, s.failures
        labels = [a["label"] for a in read_payloads(tmp / fmt)[0]["annotations"]]
        outs.append((labels, read_mask(tmp / fmt / "masks" / "s.png")))
    for labels, mask in outs[1:]:
        assert labels == outs[0][0]
        assert (mask == outs[0][1]).all()
    # the same scene as a class * 1000 + instance PNG (Cityscapes' *_instanceIds.png layout):
    # the reader numbers instances by value, not by drawing order, so compare what each
    # pixel is (its label) and the partition into instances
    ci = tmp / "ci"
    ci.mkdir()
    values = np.where(painted > 0, classes[painted].astype(np.uint16) * 1000 + painted, 0).astype(np.uint16)
    cv2.imwrite(str(ci / "s.png"), values)
    ci_labels = {str(i): n if i else "background" for i, n in enumerate(VOC_CLASSES)}
    (tmp / "ci-labels.json").write_text(json.dumps(ci_labels))
    s = segconvert.convert(ci, tmp / "ci-out", from_format="rgb", encoding="class-instance", divisor=1000,
                           labels=str(tmp / "ci-labels.json"), mode="instance", jobs=1)
    assert s.ok, s.failures
    payload = read_payloads(tmp / "ci-out")[0]["annotations"]
    mask = read_mask(tmp / "ci-out" / "masks" / "s.png")
    want_labels, want_mask = outs[0]
    by_index = {a["index"]: a["label"] for a in payload}
    want_by_index = dict(enumerate(want_labels))
    pairs = set(zip(mask.ravel().tolist(), want_mask.ravel().tolist()))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})  # the same partition
    assert all(by_index[a] == want_by_index[b] for a, b in pairs if b)
    assert all(a == 0 for a, b in pairs if b == 0)


def test_exif_rotated_photo_gives_the_upright_size(tmp_path):
    """Ultralytics' exif_size: labels are relative to the image as EXIF orientation 6 turns it."""
    root = make_set(tmp_path / "yolo", {"r": (30, 20, "0 0 0 1 0 1 0.5 0 0.5\n")})
    im = Image.new("RGB", (30, 20))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(root / "images" / "train" / "r.jpg", exif=exif.tobytes())
    s = segconvert.convert(root, tmp_path / "out", from_format="yolo", jobs=1)
    assert s.ok
    mask = read_mask(tmp_path / "out" / "masks" / "r.png")
    assert mask.shape == (30, 20) and (mask[:15] == 1).all() and (mask[15:] == 0).all()


def test_roboflow_layout_with_dotdot_paths_and_a_foreign_root(tmp_path):
    """Roboflow exports: data.yaml beside train/images + train/labels, 'train: ../train/images'
    (Ultralytics retries without '../'); a 'path' of another machine falls back to the YAML's folder."""
    root = tmp_path / "rf"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir(parents=True)
    Image.new("RGB", (10, 10)).save(root / "train" / "images" / "a.jpg")
    (root / "train" / "labels" / "a.txt").write_text("0 0 0 1 0 1 1\n")
    (root / "data.yaml").write_text("path: /elsewhere/rf\ntrain: ../train/images\nnc: 1\nnames: [pothole]\n")
    assert registry.detect(root) == "yolo"
    s = segconvert.convert(root, tmp_path / "out", from_format="yolo", jobs=1)
    assert s.ok and s.converted == 1
    assert read_payloads(tmp_path / "out")[0]["annotations"][1]["label"] == "pothole"


def _ultralytics_merge_multi_segment():
    """Ultralytics' own merge_multi_segment, loaded from its converter.py without importing the
    package (which needs torch): installed with ``pip install --no-deps ultralytics``, else skip."""
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ultralytics is not installed (pip install --no-deps ultralytics)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "converter.py"
    if not path.is_file():
        pytest.skip("ultralytics/data/converter.py not found")
    # converter.py imports logging, download and check helpers at the top; stand-ins that
    # hand out None for any name are enough for the pure-numpy function under test
    stubbed = ("ultralytics", "ultralytics.data", "ultralytics.data.utils", "ultralytics.utils",
               "ultralytics.utils.checks", "ultralytics.utils.downloads", "ultralytics.utils.files")
    saved = {k: sys.modules.get(k) for k in stubbed}
    for name in stubbed:
        stub = types.ModuleType(name)
        stub.__getattr__ = lambda attr: None  # PEP 562: `from stub import anything` gives None
        stub.__path__ = []
        sys.modules[name] = stub
    try:
        module_spec = importlib.util.spec_from_file_location("_ultralytics_converter", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except ImportError as exc:
            pytest.skip(f"ultralytics' converter.py needs more than numpy and cv2: {exc}")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module.merge_multi_segment


@st.composite
def polygon_parts(draw):
    parts = []
    for _ in range(draw(st.integers(2, 5))):
        n = draw(st.integers(3, 9))
        parts.append([float(draw(st.integers(0, 200))) for _ in range(2 * n)])
    return parts


@given(polygon_parts())
@settings(max_examples=60)
def test_merge_parts_equals_ultralytics_merge_multi_segment(parts):
    reference = _ultralytics_merge_multi_segment()
    expected = np.concatenate(reference([list(p) for p in parts]), axis=0)
    got = merge_parts([np.array(p).reshape(-1, 2) for p in parts])
    assert got.shape == expected.shape and (got == expected).all()


def test_writer_names_instances_below_min_iou(tmp_path):
    """A ring loses its hole (outer contours only): IoU 0.816 < --min-iou 0.9, named; the
    ellipse beside it comes back exactly (IoU 1)."""
    cls = np.zeros((40, 80), np.uint8)
    cv2.circle(cls, (20, 20), 12, 15, -1)
    cv2.circle(cls, (20, 20), 5, 0, -1)
    cv2.ellipse(cls, (60, 20), (15, 6), 30, 0, 360, 7, -1)
    obj = np.zeros_like(cls)
    obj[cls == 15], obj[cls == 7] = 1, 2
    write_voc(tmp_path / "voc", "e", cls, obj)
    s = segconvert.convert(tmp_path / "voc", tmp_path / "yolo", from_format="voc", to_format="yolo",
                           mode="instance", min_iou=0.9, jobs=1)
    assert s.ok and s.warned == 1 and len(s.warnings) == 1
    assert "person (segment 1): its polygon covers the mask with IoU 0.816, below min_iou=0.9" in s.warnings[0]
    report = json.loads((tmp_path / "yolo" / "polygon_iou.json").read_text())
    assert report["below_min_iou"] == 1 and report["per_image_mean_iou"]["e"] == pytest.approx((0.816327 + 1) / 2)
    assert (tmp_path / "yolo" / "labels" / "train" / "e.txt").read_text().startswith("14 ")  # person = class 14


_TOKENS = st.one_of(
    st.floats(-2, 2, allow_nan=False).map(lambda x: f"{x:.6f}"),  # what exporters write
    st.floats(-2, 2, allow_nan=False).map(repr),  # up to 17 significant digits: Python's turn
    st.integers(-300, 300).map(str),
    st.sampled_from(["-0", "+.5", "5.", ".", "+", "1e-3", "nan", "inf", "0x1p3", "1_0", "1.2.3", "٣", "0.5\u00a0",
                     "000000000000000000000000.25", "0." + "0" * 22 + "1", "123456789012345", "1234567890123456"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(_TOKENS, max_size=8), st.sampled_from([" ", "  ", "\t", " \t"]),
                          st.sampled_from(["\n", "\r\n", "\r", "\n\n", "\x0c"])), max_size=6))
def test_label_parser_kernel_agrees_with_python_float(lines):
    """The C pass takes plain decimals only and then gives float()'s numbers, bit for bit, and
    str.splitlines' line numbers; everything else it leaves to the Python path."""
    from segconvert.converters import yolo

    if yolo._parse_numbers_c is None:
        pytest.skip("C kernels not built")
    text = "".join(sep.join(tokens) + end for tokens, sep, end in lines)
    data = text.encode()
    values = np.empty(len(data) // 2 + 1, np.float64)
    rows = np.empty((len(data) // 2 + 1, 2), np.int64)
    done = yolo._parse_numbers_c(data, values, rows)
    fields = [(n, ln.split()) for n, ln in enumerate(text.splitlines(), start=1) if ln.split()]
    plain = all(re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)", tok) for _, f in fields for tok in f)
    if done is None:
        assert not plain or any(len(tok.lstrip("+-").replace(".", "").lstrip("0")) > 15
                                or len(tok.partition(".")[2]) > 22 for _, f in fields for tok in f) \
            or any(ch in text for ch in "\x0c") or not text.isascii()  # e.g. NBSP, whitespace to str.split
        return
    n_values, n_rows = done
    assert rows[:n_rows].tolist() == [[n, len(f)] for n, f in fields]
    expected = np.array([float(tok) for _, f in fields for tok in f], np.float64)
    assert values[:n_values].tobytes() == expected.tobytes()  # bitwise: -0.0 and rounding alike
