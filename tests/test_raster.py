"""segconvert.codecs.raster: painting RLE/mask shapes must equal painting pycocotools-decoded masks."""

from __future__ import annotations

import click
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from segconvert.codecs.raster import OVERLAP_POLICIES, overlap_option, paint
from segconvert.errors import ItemError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2


def reference(height: int, width: int, shapes, order=None) -> np.ndarray:
    """Painter's order with full decoded masks: the slow, obviously right way."""
    out = np.zeros((height, width), np.int64)
    for k in order if order is not None else range(len(shapes)):
        sid, geom = shapes[k]
        mask = geom if isinstance(geom, np.ndarray) else mask_utils.decode(_compressed(geom, height, width))
        out[mask.astype(bool)] = sid
    return out


def _compressed(rle: dict, height: int, width: int) -> dict:
    if isinstance(rle["counts"], list):
        return mask_utils.frPyObjects(rle, height, width)
    return rle


def uncompressed(mask: np.ndarray) -> dict:
    """COCO's crowd form: counts list over the column-major pixels, starting with background."""
    flat = mask.reshape(-1, order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    counts = ([0] if flat[0] else []) + np.diff(bounds).tolist()
    return {"size": list(mask.shape), "counts": counts}


def area(geom, height, width) -> int:
    if isinstance(geom, np.ndarray):
        return int(geom.sum())
    return int(mask_utils.area(_compressed(geom, height, width)))


@st.composite
def scenes(draw, max_side=48, max_shapes=8):
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    n = draw(st.integers(0, max_shapes))
    coord_x = st.floats(-5, width + 5, allow_nan=False, width=32)
    coord_y = st.floats(-5, height + 5, allow_nan=False, width=32)
    shapes = []
    for k in range(n):
        kind = draw(st.sampled_from(["polygon", "multipolygon", "uncompressed", "mask", "compressed-mask"]))
        if kind in ("polygon", "multipolygon"):
            parts = []
            for _ in range(1 if kind == "polygon" else draw(st.integers(2, 3))):
                npts = draw(st.integers(3, 9))
                parts.append([v for _ in range(npts) for v in (draw(coord_x), draw(coord_y))])
            rles = mask_utils.frPyObjects(parts, height, width)
            geom = mask_utils.merge(rles) if len(rles) > 1 else rles[0]
        else:
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            mask = rng.random((height, width)) < rng.choice([0.0, 0.05, 0.5, 0.95, 1.0])
            y0, x0 = rng.integers(0, height), rng.integers(0, width)
            mask[y0 : y0 + rng.integers(0, height + 1), x0 : x0 + rng.integers(0, width + 1)] = True
            if kind == "uncompressed":
                geom = uncompressed(mask)
            elif kind == "mask":
                geom = mask
            else:
                geom = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                if draw(st.booleans()):
                    geom = {"size": geom["size"], "counts": geom["counts"].decode()}
        shapes.append((k + 1, geom))
    return height, width, shapes


FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(scenes())
def test_paint_equals_pycocotools_painters_order(scene):
    height, width, shapes = scene
    got = paint(height, width, shapes)
    assert got.shape == (height, width) and got.dtype == np.uint16 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, reference(height, width, shapes))


@FAST
@given(scenes())
def test_small_on_top_paints_larger_first_stably(scene):
    height, width, shapes = scene
    areas = [area(g, height, width) for _, g in shapes]
    order = sorted(range(len(shapes)), key=lambda k: -areas[k])  # sorted() is stable
    got = paint(height, width, shapes, "small-on-top")
    np.testing.assert_array_equal(got, reference(height, width, shapes, order))


@FAST
@given(scenes(max_side=24, max_shapes=5))
def test_error_policy_reports_exactly_the_overlaps(scene):
    height, width, shapes = scene
    masks = [reference(height, width, [(1, g)]).astype(bool) for _, g in shapes]
    cover = np.sum(masks, axis=0) if masks else np.zeros((height, width))
    conflict = int(np.count_nonzero(cover >= 2))
    if not conflict:
        np.testing.assert_array_equal(paint(height, width, shapes, "error"), reference(height, width, shapes))
        return
    with pytest.raises(ItemError) as info:
        paint(height, width, shapes, "error", item="img", file="a.json")
    msg = str(info.value)
    assert msg.startswith("a.json [img]: ")
    assert f"overlap on {conflict} pixels" in msg
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            both = int(np.count_nonzero(masks[i] & masks[j]))
            if both and len(shapes) <= 10:
                assert f"{shapes[i][0]} & {shapes[j][0]} ({both} px)" in msg


def test_long_and_short_runs_and_big_image():
    """Shapes much taller than the run threshold exercise the slice path."""
    height, width = 300, 200
    polys = [[10, 10, 190, 15, 180, 290, 5, 280], [50, 50, 60, 50, 55, 250], [0, 0, 200, 0, 200, 300, 0, 300]]
    shapes = [(k + 1, mask_utils.frPyObjects([p], height, width)[0]) for k, p in enumerate(polys)]
    shapes = shapes[2:] + shapes[:2]
    np.testing.assert_array_equal(paint(height, width, shapes), reference(height, width, shapes))


def test_uint32_when_ids_do_not_fit_uint16():
    mask = np.zeros((4, 5), bool)
    mask[1:3, 1:4] = True
    got = paint(4, 5, [(70000, mask), (2, uncompressed(np.eye(4, 5, dtype=bool)))])
    assert got.dtype == np.uint32
    assert got[1, 1] == 2 and got[1, 2] == 70000 and got[0, 0] == 2 and got[0, 1] == 0


def test_no_shapes_is_background():
    got = paint(3, 4, [])
    assert got.dtype == np.uint16 and not got.any()


def test_buffer_reuse_does_not_leak_between_calls():
    first = paint(6, 6, [(9, np.ones((6, 6), bool))])
    second = paint(6, 6, [])
    assert (first == 9).all() and not second.any()


@pytest.mark.parametrize(
    ("geom", "expected"),
    [
        ({"size": [4, 4], "counts": [0, 9]}, "segment 3: RLE size is 4x4 (WxH) but the image is 5x4"),
        ({"size": [4, 5], "counts": [3, 4]}, "segment 3: RLE counts cover 7 pixels but the image has 5x4"),
        ({"size": [4, 5], "counts": [5, -1, 16]}, "segment 3: RLE counts must be non-negative"),
        ({"size": [4, 5], "counts": ["a", 3]}, "segment 3: RLE counts must be a list"),
        ({"size": [4, 5], "counts": "0\x7f"}, "segment 3: compressed RLE counts hold characters outside"),
        ({"size": [4, 5], "counts": "0a"}, "segment 3: compressed RLE counts end in the middle of a number"),
        ({"size": [4, 5], "counts": "ooooooooo0"}, "segment 3: compressed RLE counts hold a number too"),
        ({"size": [4], "counts": [20]}, "segment 3: RLE size [4] is not [height, width]"),
        ({"counts": [20]}, "segment 3: expected a boolean mask or an RLE dict"),
        (np.zeros((5, 4), bool), "segment 3: mask is 4x5, image 5x4"),
    ],
)
def test_bad_shapes_are_item_errors_naming_the_segment(geom, expected):
    with pytest.raises(ItemError) as info:
        paint(4, 5, [(3, geom)], item="img", file="x.json")
    assert expected in str(info.value)
    assert str(info.value).startswith("x.json [img]: ")


def test_compressed_counts_as_str_and_bytes_agree():
    mask = np.zeros((30, 20), np.uint8)
    mask[3:25, 4:17] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    a = paint(30, 20, [(1, rle)])
    b = paint(30, 20, [(1, {"size": rle["size"], "counts": rle["counts"].decode()})])
    np.testing.assert_array_equal(a, mask)
    np.testing.assert_array_equal(b, mask)


def test_overlap_option_is_fresh_and_declares_the_policies():
    a, b = overlap_option(), overlap_option()
    assert a is not b
    assert a.name == "overlap" and a.default == "paint"
    assert isinstance(a.type, click.Choice) and tuple(a.type.choices) == OVERLAP_POLICIES


def test_unknown_policy_is_a_programming_error():
    with pytest.raises(ValueError):
        paint(2, 2, [], "bogus")


def test_size_problem_names_empty_and_impossibly_large_sizes():
    from segconvert.codecs.raster import MAX_PIXELS, size_problem

    assert size_problem(480, 640) is None
    assert size_problem(1, MAX_PIXELS) is None
    assert "is empty" in size_problem(0, 5)
    assert "is empty" in size_problem(5, -1)
    message = size_problem(10**12, 10**12)
    assert "1000000000000x1000000000000" in message and "32-bit" in message
    assert size_problem(2, 2**31) is not None  # 2^32 pixels: one more than a COCO RLE can count
    with pytest.raises(ItemError, match="32-bit"):
        paint(10**6, 10**7, [], "paint")  # refused before any buffer is allocated


@FAST
@given(scenes(), st.sampled_from([1, 70000]))
def test_compressed_rles_painted_by_the_kernel_equal_pycocotools(scene, first_id):
    """Scenes of compressed RLEs only (polygons through frPyObjects, as the YOLO reader makes
    them) take the C kernel, uint16 and uint32 ids alike; the result is painter's order."""
    import segconvert.codecs.raster as raster

    if raster._rle_paint_c is None:
        pytest.skip("C kernels not built")
    height, width, shapes = scene
    compressed = [(first_id + k, g) for k, (_, g) in enumerate(shapes)
                  if isinstance(g, dict) and not isinstance(g["counts"], list)]
    calls = []

    def spy(*args):
        calls.append(True)
        return raster_kernel(*args)

    raster_kernel = raster._rle_paint_c
    raster._rle_paint_c = spy
    try:
        got = paint(height, width, compressed)
    finally:
        raster._rle_paint_c = raster_kernel
    assert bool(calls) == bool(compressed)
    assert got.dtype == (np.uint32 if first_id > 65535 and compressed else np.uint16)
    np.testing.assert_array_equal(got, reference(height, width, compressed))
