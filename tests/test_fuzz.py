"""Fuzzing every reader: valid inputs, mutated by hypothesis (JSON structure and values, XML
attributes and bytes, PNG bytes and headers, text label files), converted end to end.

What must hold for every mutated input:
- only segconvert's own errors come out (a SourceError for the run, ItemErrors per item),
  never another exception, and no failure is an "unexpected ... please report";
- no item is silently wrong: every converted mask is a mode-L PNG whose values all have a
  Segment, whose payload the Nucleus client accepts, and, for COCO panoptic (where the
  meaning of the bytes is fully defined), every pixel is the index of the segment its
  RGB id names in the PNG as Pillow decodes it (so a PNG Pillow cannot read must fail).

CI runs a few examples per reader; a long run sets SEGCONVERT_FUZZ_EXAMPLES (per reader),
e.g. ``SEGCONVERT_FUZZ_EXAMPLES=17000 nice -n 19 .venv/bin/pytest -q tests/test_fuzz.py -p no:cacheprovider``;
with SEGCONVERT_FUZZ_LOG set, each case's outcome is counted into that file.
"""

from __future__ import annotations

import base64
import collections
import copy
import json
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FIXTURES, rgb2id
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import segconvert
from segconvert.errors import SegconvertError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::RuntimeWarning",
                                        "ignore::UserWarning")

EXAMPLES = int(os.environ.get("SEGCONVERT_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))
MAX_PIXELS = 100_000  # mutated sizes stay cheap to convert; larger ones must fail with the limit's message
OUTCOMES: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _count_cases():
    yield
    log = os.environ.get("SEGCONVERT_FUZZ_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps(dict(OUTCOMES)) + "\n")


# ------------------------------------------------------------ mutations

INTERESTING_INTS = [0, -1, 1, 2, 3, 255, 256, 65535, 1 << 24, (1 << 24) - 1, 1 << 31, (1 << 31) - 1, 1 << 32,
                    1 << 63, 10**10, -(1 << 31), 30000]
INTERESTING_STRINGS = ["", "0", "-1", "1e309", "nan", "inf", "99999999999", "abc", "1.5", " 3", "../x.png",
                       "/etc/passwd", "a\x00b", "\u00e9", "C:\\x.png", "x" * 300, "a.png", "#ff0000", "1,2"]
json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.sampled_from(INTERESTING_INTS), st.integers(-1000, 1000),
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(INTERESTING_STRINGS), st.text(max_size=8),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)


def _slots(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON tree, to pick one to mutate."""
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((node, key))
            _slots(value, out)
    elif isinstance(node, list):
        for pos, value in enumerate(node):
            out.append((node, pos))
            _slots(value, out)
    return out


def mutate_json(data: st.DataObject, doc: Any) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4), label="json mutations")):
        slots = _slots(doc, [])
        if not slots:
            break
        container, key = data.draw(st.sampled_from(slots), label="where")
        op = data.draw(st.sampled_from(["replace", "replace", "delete", "duplicate", "nudge"]), label="op")
        value = container[key]
        if op == "replace":
            container[key] = data.draw(json_values, label="value")
        elif op == "delete":
            del container[key]
        elif op == "duplicate" and isinstance(container, list):
            container.insert(key, copy.deepcopy(value))
        elif op == "nudge" and isinstance(value, (int, float)) and not isinstance(value, bool):
            container[key] = value + data.draw(st.sampled_from([-1, 1, 0.5, -1000, 1000, 1e9]), label="delta")
    return doc


def mutate_bytes(data: st.DataObject, raw: bytes, *, max_ops: int = 3) -> bytes:
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, max_ops), label="byte mutations")):
        if not buf:
            break
        op = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]), label="byte op")
        at = data.draw(st.integers(0, len(buf) - 1), label="at")
        if op == "flip":
            buf[at] ^= data.draw(st.integers(1, 255), label="mask")
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=8), label="bytes")
        else:
            del buf[at:at + data.draw(st.integers(1, 16), label="length")]
    return bytes(buf)


def _chunks(raw: bytes) -> list[tuple[bytes, bytes]] | None:
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    out, at = [], 8
    while at + 8 <= len(raw):
        (length,), tag = struct.unpack(">I", raw[at:at + 4]), raw[at + 4:at + 8]
        out.append((tag, raw[at + 8:at + 8 + length]))
        at += 12 + length
    return out


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(p)) + t + p + struct.pack(">I", zlib.crc32(t + p)) for t, p in chunks)


def mutate_png(data: st.DataObject, raw: bytes) -> bytes:
    """Header fields (with a correct CRC, so decoders look further), the image data (inflated,
    changed, deflated again), or raw bytes."""
    chunks = _chunks(raw)
    kind = data.draw(st.sampled_from(["header", "pixels", "bytes", "chunks"]), label="png mutation")
    if chunks is None or kind == "bytes":
        return mutate_bytes(data, raw)
    if kind == "header":
        w, h, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
        field = data.draw(st.sampled_from(["w", "h", "depth", "color", "interlace", "filter"]), label="field")
        value = data.draw(st.sampled_from([0, 1, 2, 3, 4, 6, 8, 16, 255, 30000, 1 << 31, (1 << 32) - 1]), label="v")
        if field == "w":
            w = value & 0xFFFFFFFF
        elif field == "h":
            h = value & 0xFFFFFFFF
        elif field == "depth":
            depth = value & 0xFF
        elif field == "color":
            color = value & 0xFF
        elif field == "interlace":
            interlace = value & 0xFF
        else:
            filt = value & 0xFF
        chunks[0] = (b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, comp, filt, interlace))
        return _png(chunks)
    if kind == "pixels":
        idat = b"".join(p for t, p in chunks if t == b"IDAT")
        try:
            pixels = zlib.decompress(idat)
        except zlib.error:
            return mutate_bytes(data, raw)
        pixels = mutate_bytes(data, pixels)
        rest = [(t, p) for t, p in chunks if t != b"IDAT"]
        return _png(rest[:1] + [(b"IDAT", zlib.compress(pixels))] + rest[1:])
    op = data.draw(st.sampled_from(["drop", "duplicate", "garbage"]), label="chunk op")
    at = data.draw(st.integers(0, len(chunks) - 1), label="chunk")
    if op == "drop":
        del chunks[at]
    elif op == "duplicate":
        chunks.insert(at, chunks[at])
    else:
        chunks.insert(at, (data.draw(st.sampled_from([b"PLTE", b"tRNS", b"zzzz", b"IDAT"])),
                           data.draw(st.binary(max_size=20))))
    return _png(chunks)


# ------------------------------------------------------------ running and checking


def convert(source: Path, out: Path, fmt: str, **options: Any) -> segconvert.Summary | None:
    """One conversion; None when it stopped with a SegconvertError (fine: it said why)."""
    try:
        summary = segconvert.convert(source, out, from_format=fmt, jobs=1, max_pixels=MAX_PIXELS, **options)
    except SegconvertError:
        OUTCOMES[f"{fmt}: runs refused (SourceError)"] += 1
        return None
    for message in summary.failures + summary.warnings:
        assert "please report" not in message, message  # the pipeline's words for a bug
    OUTCOMES[f"{fmt}: runs"] += 1
    OUTCOMES[f"{fmt}: items converted"] += summary.converted
    OUTCOMES[f"{fmt}: items failed"] += summary.failed
    return summary


def check_output(out: Path) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Every converted item's payload and mask, checked for what holds for any input."""
    from nucleus import SegmentationAnnotation

    lines = (out / "annotations.jsonl").read_text().split("\n")[:-1] if (out / "annotations.jsonl").exists() else []
    results = []
    for line in lines:
        payload = json.loads(line)
        SegmentationAnnotation.from_json(payload)
        with Image.open(out / "masks" / f"{payload['reference_id']}.png") as im:
            assert im.mode == "L"
            mask = np.asarray(im)
        indices = [seg["index"] for seg in payload["annotations"]]
        assert len(set(indices)) == len(indices), indices
        assert set(np.unique(mask).tolist()) <= set(indices) | {0}
        results.append((payload, mask))
    return results


def reference_rgb(raw: bytes) -> np.ndarray | None:
    """8-bit RGB pixels as a reference decoder reads them (Pillow, else OpenCV's libpng), or None
    when neither does, or when the file is not 8-bit RGB."""
    import io

    if not raw:
        return None
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.mode != "RGB":
                return None
            return np.asarray(im)
    except Exception:  # noqa: BLE001 - any failure: Pillow cannot read it
        pass
    import cv2

    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        return None
    return img[..., ::-1]


def convert_file(raw: bytes, name: str, fmt: str, *, folder: str | None = None) -> None:
    """Convert one source file (inside ``folder`` when the format reads a folder) and check the output."""
    with workdir() as tmp:
        root = Path(tmp)
        base = root / folder if folder else root
        base.mkdir(exist_ok=True)
        (base / name).write_bytes(raw)
        if convert(base if folder else base / name, root / "out", fmt) is not None:
            check_output(root / "out")


#: each case makes and removes a dozen files and folders: on this VM's disk a folder costs ~2 ms
#: to remove, in memory (/dev/shm) 0.03, which is the difference between 100,000 cases in an hour
#: and in four
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="segconvert-fuzz-", dir=SCRATCH)


# ------------------------------------------------------------ one test per reader


PANOPTIC = FIXTURES / "coco-panoptic"


@FUZZ
@given(st.data())
def test_fuzz_coco_panoptic(data):
    doc = json.loads((PANOPTIC / "panoptic.json").read_text())
    pngs = {p.name: p.read_bytes() for p in (PANOPTIC / "panoptic").glob("*.png")}
    target = data.draw(st.sampled_from(["json", "png", "both", "json-bytes"]), label="target")
    text = json.dumps(doc).encode()
    if target in ("json", "both"):
        text = json.dumps(mutate_json(data, doc)).encode()
    if target == "json-bytes":
        text = mutate_bytes(data, text)
    if target in ("png", "both"):
        name = data.draw(st.sampled_from(sorted(pngs)), label="png")
        pngs[name] = mutate_png(data, pngs[name])
    with workdir() as tmp:
        root = Path(tmp)
        (root / "panoptic.json").write_bytes(text)
        (root / "panoptic").mkdir()
        for name, raw in pngs.items():
            (root / "panoptic" / name).write_bytes(raw)
        if convert(root / "panoptic.json", root / "out", "coco-panoptic") is None:
            return
        decoded, unreadable = {}, 0
        for png_file in (root / "panoptic").glob("*.png"):
            rgb = reference_rgb(png_file.read_bytes())
            if rgb is None:
                unreadable += 1
            else:
                decoded[png_file.name] = ("RGB", rgb2id(rgb))
        for payload, mask in check_output(root / "out"):
            # the meaning of the bytes: the PNG as Pillow reads it, ids through the payload's segments
            index_of = {0: 0, **{seg["metadata"]["segment_id"]: seg["index"] for seg in payload["annotations"][1:]}}
            matches = [name for name, (mode, ids) in decoded.items()
                       if mode == "RGB" and ids.shape == mask.shape and np.array_equal(_means(ids, index_of), mask)]
            if not matches and unreadable:  # decoded by libspng, which tolerates broken ancillary chunks
                OUTCOMES["coco-panoptic: lenient decode"] += 1
                continue
            assert matches, f"{payload['reference_id']}: the mask is not what any source PNG means"


def _means(ids: np.ndarray, index_of: dict[int, int]) -> np.ndarray:
    """The mask a panoptic id image means: each id's segment index, -1 where an id has none."""
    uniq, inverse = np.unique(ids, return_inverse=True)
    return np.array([index_of.get(int(u), -1) for u in uniq])[inverse].reshape(ids.shape)


INSTANCES = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 12, "height": 9},
               {"id": 2, "file_name": "b.jpg", "width": 7, "height": 5}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[1, 1, 8, 1, 8, 7, 1, 7]]},
        {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 1,
         "segmentation": {"size": [9, 12], "counts": [20, 5, 4, 5, 74]}},
        {"id": 3, "image_id": 2, "category_id": 1, "iscrowd": 0,
         "segmentation": [[0, 0, 6, 0, 3, 4], [5, 4, 6, 4, 6, 5]]},
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog", "supercategory": "animal"}],
}


@FUZZ
@given(st.data())
def test_fuzz_coco_instances(data):
    text = json.dumps(mutate_json(data, INSTANCES)).encode()
    if data.draw(st.booleans(), label="bytes too"):
        text = mutate_bytes(data, text, max_ops=1)
    convert_file(text, "instances.json", "coco-instances")


LABELME = sorted((FIXTURES / "labelme" / "dataset").glob("*.json"))


@FUZZ
@given(st.data())
def test_fuzz_labelme(data):
    docs = {p.name: json.loads(p.read_text()) for p in LABELME}
    name = data.draw(st.sampled_from(sorted(docs)), label="file")
    doc = docs[name]
    if data.draw(st.booleans(), label="embedded png") :  # the base64 PNGs inside (imageData, mask shapes)
        for shape in doc.get("shapes", []):
            if isinstance(shape.get("mask"), str):
                raw = mutate_png(data, base64.b64decode(shape["mask"]))
                shape["mask"] = base64.b64encode(raw).decode()
    docs[name] = mutate_json(data, doc)
    with workdir() as tmp:
        root = Path(tmp)
        (root / "json").mkdir()
        for file, d in docs.items():
            (root / "json" / file).write_text(json.dumps(d))
        if convert(root / "json", root / "out", "labelme") is not None:
            check_output(root / "out")


CVAT_XML = (FIXTURES / "cvat" / "annotations.xml").read_text()
CVAT_VALUES = ["", "-1", "0", "1e309", "nan", "inf", "99999999999", "abc", "1.5", "3", "100000", "30000",
               "1,2;3", "0,0;5,0", "1, 2, 3", "car", "person", "../../x", "-5.5"]


@FUZZ
@given(st.data())
def test_fuzz_cvat(data):
    import re

    text = CVAT_XML
    attrs = list(re.finditer(r'(\w+)="([^"]*)"', text))
    for _ in range(data.draw(st.integers(1, 4), label="attribute mutations")):
        match = data.draw(st.sampled_from(attrs), label="attribute")
        value = data.draw(st.one_of(st.sampled_from(CVAT_VALUES), st.text(alphabet="0123456789.,;- e", max_size=12)),
                          label="value")
        text = text.replace(match.group(0), f'{match.group(1)}="{value}"', 1)
    raw = text.encode()
    if data.draw(st.booleans(), label="bytes too"):
        raw = mutate_bytes(data, raw, max_ops=2)
    convert_file(raw, "annotations.xml", "cvat")


CITYSCAPES = {
    "imgHeight": 20, "imgWidth": 30,
    "objects": [
        {"label": "road", "polygon": [[0, 10], [29, 10], [29, 19], [0, 19]]},
        {"label": "car", "polygon": [[3, 5], [12, 5], [12, 14], [3, 14]]},
        {"label": "cargroup", "polygon": [[15, 2], [25, 2], [20, 12]]},
        {"label": "person", "polygon": [[8, 8], [10.5, 8], [10.5, 18.5]], "deleted": 0},
    ],
}


@FUZZ
@given(st.data())
def test_fuzz_cityscapes(data):
    text = json.dumps(mutate_json(data, CITYSCAPES)).encode()
    if data.draw(st.booleans(), label="bytes too"):
        text = mutate_bytes(data, text, max_ops=1)
    convert_file(text, "a_000000_000001_gtFine_polygons.json", "cityscapes", folder="gtFine")


def _colour_png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    palette = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]], np.uint8)
    img = palette[rng.integers(0, 4, size=(9, 11))]
    raw = b"".join(b"\0" + row.tobytes() for row in img)
    return _png([(b"IHDR", struct.pack(">IIBBBBB", 11, 9, 8, 2, 0, 0, 0)), (b"IDAT", zlib.compress(raw)),
                 (b"IEND", b"")])


LABEL_COLORS = "0 0 0\tVoid\n128 0 0\tBuilding\n0 128 0\tTree\n128 128 0\tSky\n"
CLASSES = {(128, 0, 0): "Building", (0, 128, 0): "Tree", (128, 128, 0): "Sky"}


@FUZZ
@given(st.data())
def test_fuzz_rgb(data):
    pngs = {f"m{k}.png": _colour_png(k) for k in range(2)}
    table = LABEL_COLORS.encode()
    target = data.draw(st.sampled_from(["png", "labels", "both"]), label="target")
    if target in ("png", "both"):
        name = data.draw(st.sampled_from(sorted(pngs)), label="png")
        pngs[name] = mutate_png(data, pngs[name])
    if target in ("labels", "both"):
        table = mutate_bytes(data, table)
    with workdir() as tmp:
        root = Path(tmp)
        (root / "masks").mkdir()
        (root / "masks" / "label_colors.txt").write_bytes(table)
        for name, raw in pngs.items():
            (root / "masks" / name).write_bytes(raw)
        summary = convert(root / "masks", root / "out", "rgb", colormap=root / "masks" / "label_colors.txt")
        if summary is None:
            return
        for payload, mask in check_output(root / "out"):
            rgb = reference_rgb((root / "masks" / f"{payload['reference_id']}.png").read_bytes())
            if rgb is None:
                OUTCOMES["rgb: lenient decode"] += 1
                continue
            assert rgb.shape[:2] == mask.shape
            if table == LABEL_COLORS.encode():  # the class table as written: every pixel is its colour's class
                label_of = {seg["index"]: seg["label"] for seg in payload["annotations"]}
                for (y, x), value in np.ndenumerate(mask):
                    colour = tuple(int(v) for v in rgb[y, x])
                    assert (value == 0) if colour == (0, 0, 0) else label_of[int(value)] == CLASSES[colour]


VOC_PALETTE_PNG = (FIXTURES / "rgb" / "voc" / "2007_000001.png").read_bytes()


@FUZZ
@given(st.data())
def test_fuzz_rgb_palette(data):
    """Palette (mode P) index masks go through Pillow, not libspng: its own set of failures."""
    raw = mutate_png(data, VOC_PALETTE_PNG)
    with workdir() as tmp:
        root = Path(tmp)
        (root / "masks").mkdir()
        (root / "masks" / "a.png").write_bytes(raw)
        if convert(root / "masks", root / "out", "rgb", encoding="palette", colormap="voc", void="ignore"):
            check_output(root / "out")


def test_the_mutators_change_their_inputs():
    """The strategies above are only worth their examples if they reach past the parsers: a
    sample of mutated panoptic PNGs must include ones that still decode, and ones that do not."""
    raw = (PANOPTIC / "panoptic" / "example_000.png").read_bytes()
    decoded = failed = 0

    @settings(max_examples=60, database=None, deadline=None)
    @given(st.data())
    def sample(data):
        nonlocal decoded, failed
        mutated = mutate_png(data, raw)
        try:
            with Image.open(__import__("io").BytesIO(mutated)) as im:
                im.load()
            decoded += 1
        except Exception:
            failed += 1

    sample()
    assert decoded and failed
    assert not math.isnan(EXAMPLES)


# ------------------------------------------------------------ what the long fuzz run found


def test_regression_cvat_unknown_xml_encoding_is_a_source_error(tmp_path):
    xml = CVAT_XML.replace('encoding="utf-8"', 'encoding="uxf-8"', 1)
    assert xml != CVAT_XML
    (tmp_path / "a.xml").write_text(xml)
    with pytest.raises(segconvert.SourceError, match="not readable XML: unknown encoding: uxf-8"):
        segconvert.convert(tmp_path / "a.xml", tmp_path / "out", from_format="cvat", jobs=1)


@pytest.mark.parametrize("tag", [b"tRNS", b"gAMA", b"iCCP"])
def test_regression_labelme_mask_with_a_broken_chunk_after_the_data_fails_the_item(tmp_path, tag):
    doc = json.loads((FIXTURES / "labelme" / "dataset" / "mask.json").read_text())
    for shape in doc["shapes"]:
        if isinstance(shape.get("mask"), str):
            chunks = _chunks(base64.b64decode(shape["mask"]))
            chunks.insert(2, (tag, b""))  # after IDAT: Pillow raises struct.error / IndexError in load()
            shape["mask"] = base64.b64encode(_png(chunks)).decode()
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "mask.json").write_text(json.dumps(doc))
    summary = segconvert.convert(tmp_path / "json", tmp_path / "out", from_format="labelme", jobs=1)
    assert summary.failed == 1 and "'mask' is not a base64-encoded image" in summary.failures[0]
