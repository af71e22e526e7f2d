"""The writers' shared kernels against numpy: histogram, code -> colour, code -> value, segment codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segconvert.codecs import lut, png, writing
from segconvert.errors import ItemError
from segconvert.model.ir import Segmentation, SegmentInfo

CODE_MAPS = hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=70), elements=st.integers(0, 9))


@settings(max_examples=80, deadline=None)
@given(codes=CODE_MAPS, table=hnp.arrays(np.uint8, (10, 3)))
def test_kernels_equal_numpy(codes, table):
    assert np.array_equal(lut.histogram(codes, 256), np.bincount(codes.ravel(), minlength=256))
    assert np.array_equal(writing.map_codes(codes, table), table[codes])
    assert np.array_equal(writing.map_codes(codes, table[:, 0].copy()), table[codes, 0])


@settings(max_examples=40, deadline=None)
@given(codes=CODE_MAPS)
def test_segment_pixels_uint8_and_wide_maps_agree(codes):
    raws = sorted(set(np.unique(codes).tolist()) - {0})
    segments = [SegmentInfo(r, f"s{r}") for r in reversed(raws)]  # codes differ from the values
    small = writing.segment_pixels(Segmentation("a", codes, segments))
    wide = writing.segment_pixels(Segmentation("a", codes.astype(np.uint32) * 1000, [
        SegmentInfo(r * 1000, f"s{r}") for r in reversed(raws)]))
    assert np.array_equal(small.code_map, wide.code_map) and small.counts == wide.counts
    for pos, s in enumerate(segments, start=1):
        assert small.counts[pos] == int((codes == s.id).sum())
        assert np.array_equal(small.code_map == pos, codes == s.id)


def test_segment_pixels_refuses_unlisted_values():
    with pytest.raises(ItemError, match=r"have no segment in the annotation: 5 \(1 px\)"):
        writing.segment_pixels(Segmentation("a", np.array([[0, 1, 5]], np.uint8), [SegmentInfo(1, "x")]))


@settings(max_examples=60, deadline=None)
@given(values=CODE_MAPS, table=hnp.arrays(np.uint8, (256,)))
def test_lookup_u8_equals_numpy(values, table):
    assert np.array_equal(lut.lookup_u8(values, table), table[values])


def _numpy_boxes(codes: np.ndarray, count: int) -> np.ndarray:
    h, w = codes.shape
    out = np.tile(np.array([w, h, -1, -1], np.int64), (count, 1))
    for code in range(count):
        ys, xs = np.nonzero(codes == code)
        if len(xs):
            out[code] = (xs.min(), ys.min(), xs.max(), ys.max())
    return out


@settings(max_examples=80, deadline=None)
@given(codes=CODE_MAPS, table=hnp.arrays(np.uint8, (10, 3)), runs=st.integers(1, 9))
def test_colors_and_boxes_fused_equal_numpy(codes, table, runs):
    codes = np.ascontiguousarray(np.repeat(codes, runs, axis=1))  # runs, as label maps have them
    pixels = writing.SegmentPixels(codes, [0] * 10, [SegmentInfo(k, f"s{k}") for k in range(1, 10)])
    rgb, boxes = pixels.colors_and_boxes(table)
    assert np.array_equal(rgb, table[codes])
    assert np.array_equal(boxes, _numpy_boxes(codes, 10))


@st.composite
def small_value_maps(draw):
    """uint8 maps of runs or noise whose values stop below 16, 32, 48, 64 (the shuffle kernel's
    quarters) or go past 64 (run by run), widths around the kernel's 32-byte step."""
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 100))
    top = draw(st.sampled_from([0, 1, 15, 16, 31, 32, 47, 48, 63, 64, 100, 255]))
    values = draw(st.lists(st.integers(0, top), min_size=1, max_size=10, unique=True))
    flat: list[int] = []
    while len(flat) < h * w:
        flat += [draw(st.sampled_from(values))] * draw(st.integers(1, 50))
    return np.array(flat[: h * w], np.uint8).reshape(h, w)


@settings(max_examples=200, deadline=None)
@given(values=small_value_maps(), table=hnp.arrays(np.uint8, (256,)), hint=st.integers(-1, 255),
       rows=st.booleans())
def test_u8_lookup_small_equals_numpy_whatever_top_it_is_told(values, table, hint, rows):
    """The shuffle lookup gives table[values] (as PNG rows, or plain) whether the `top` it is told is
    right, too small (it must notice and redo run by run) or too large."""
    kernels = pytest.importorskip("segconvert.codecs._kernels")
    h, w = values.shape
    for top in (hint, int(values.max()), 255):
        if rows:
            out = np.full((h, w + 1), 9, np.uint8)
            kernels.u8_lookup_small(values, table, out, w, top)
            assert not out[:, 0].any() and np.array_equal(out[:, 1:], table[values])
        else:
            out = np.full((h, w), 9, np.uint8)
            kernels.u8_lookup_small(values, table, out, 0, top)
            assert np.array_equal(out, table[values])


@settings(max_examples=60, deadline=None)
@given(codes=small_value_maps(), table=hnp.arrays(np.uint8, (256,)))
def test_encode_mapped_equals_encoding_the_mapped_image(codes, table):
    from segconvert.codecs import png

    n = int(codes.max()) + 1
    assert writing.encode_mapped(codes, table[:n].copy()) == png.encode_gray8(table[:n][codes])


@settings(max_examples=60, deadline=None)
@given(codes=CODE_MAPS)
def test_segment_pixels_with_the_readers_histogram_equals_without(codes):
    """Segments 1..n with the values 1..n and the reader's histogram (Nucleus) take a shortcut: the
    same code map and counts as the general path, and the same error for a value no segment lists."""
    n = int(codes.max())
    segments = [SegmentInfo(k, f"s{k}") for k in range(1, n + 1)]
    counts = lut.histogram(codes, 256)
    a = writing.segment_pixels(Segmentation("a", codes, segments, pixel_counts=counts))
    b = writing.segment_pixels(Segmentation("a", codes, segments))
    assert np.array_equal(a.code_map, b.code_map) and a.counts == b.counts
    assert a.counts == [int((codes == k).sum()) for k in range(n + 1)]
    if n:  # the top value (it occurs) without its segment
        for pixel_counts in (counts, None):
            with pytest.raises(ItemError, match=rf"have no segment in the annotation: {n} \("):
                writing.segment_pixels(Segmentation("a", codes, segments[:-1], pixel_counts=pixel_counts))


@st.composite
def wide_code_maps(draw):
    """Code maps of runs across the AVX2 colour kernel's 64-pixel blocks (widths around 64 and 128,
    runs longer than a block), or noise."""
    h = draw(st.integers(1, 5))
    w = draw(st.sampled_from([1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200]))
    codes = draw(st.lists(st.integers(0, 255), min_size=1, max_size=12, unique=True))
    flat: list[int] = []
    while len(flat) < h * w:
        flat += [draw(st.sampled_from(codes))] * draw(st.sampled_from([1, 2, 5, 33, 64, 65, 150]))
    return np.array(flat[: h * w], np.uint8).reshape(h, w)


@settings(max_examples=150, deadline=None)
@given(codes=wide_code_maps(), colors=hnp.arrays(np.uint8, (256, 3)), rows=st.booleans())
def test_code_colors_boxes_equals_numpy(codes, colors, rows):
    kernels = pytest.importorskip("segconvert.codecs._kernels")
    h, w = codes.shape
    out = np.full((h, 3 * w + 1) if rows else (h, w, 3), 7, np.uint8)
    boxes = np.empty((256, 4), np.int32)
    boxes[:] = (w, h, -1, -1)
    kernels.code_colors_boxes(codes, w, colors, out, boxes, rows)
    assert np.array_equal(out[:, 1:].reshape(h, w, 3) if rows else out, colors[codes])
    assert not rows or not out[:, 0].any()
    assert np.array_equal(boxes, _numpy_boxes(codes, 256))


@settings(max_examples=60, deadline=None)
@given(codes=CODE_MAPS, ids=st.lists(st.integers(1, (1 << 24) - 1), min_size=9, max_size=9, unique=True),
       present=st.sets(st.integers(0, 8)))
def test_id_png_and_boxes_equals_rgb_png_of_the_colours(codes, ids, present):
    """The COCO panoptic writer's PNG from the ids' bytes is the PNG of the colour array made the numpy way."""
    pixels = writing.SegmentPixels(codes, [0] * 10, [SegmentInfo(k, f"s{k}") for k in range(1, 10)])
    kept = sorted(present)
    chosen = [ids[pos] for pos in kept]
    colors = np.zeros((10, 3), np.uint8)
    if kept:
        colors[np.array(kept) + 1] = np.array(chosen, "<u4").view(np.uint8).reshape(-1, 4)[:, :3]
    data, boxes = pixels.id_png_and_boxes(kept, chosen)
    assert data == png.encode_rgb8(colors[codes])
    assert boxes == _numpy_boxes(codes, 10).tolist()


def test_portable_loops_give_the_same_results(tmp_path):
    """The AVX2 loops are chosen at run time; SEGCONVERT_NO_AVX2=1 turns them off, so the
    portable loops (what a CPU without AVX2 runs) are checked on this machine too: the kernel
    property tests pass there, and a conversion writes the same bytes both ways."""
    import os
    import subprocess
    import sys

    from segconvert.codecs import _kernels

    env = {**os.environ, "SEGCONVERT_NO_AVX2": "1"}
    probe = subprocess.run([sys.executable, "-c", "from segconvert.codecs import _kernels as k; print(k.simd())"],
                           capture_output=True, text=True, env=env, check=True)
    assert probe.stdout.strip() == "portable"
    root = Path(__file__).resolve().parents[1]
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                            str(root / "tests" / "test_writing.py"), str(root / "tests" / "test_lut.py"),
                            "-k", "not portable"], capture_output=True, text=True, env=env, cwd=root)
    assert tests.returncode == 0, tests.stdout[-3000:]
    src = root / "fixtures" / "coco-panoptic" / "panoptic.json"
    outputs = {}
    for name, extra in (("simd", {}), ("portable", {"SEGCONVERT_NO_AVX2": "1"})):
        for to in ("index", "coco-panoptic"):
            out = tmp_path / f"{name}-{to}"
            subprocess.run([sys.executable, "-m", "segconvert", "convert", str(src), str(out), "--to", to,
                            "--jobs", "1"], check=True, capture_output=True, env={**os.environ, **extra})
            outputs[name, to] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))}
    for to in ("index", "coco-panoptic"):
        assert outputs["simd", to] == outputs["portable", to] and outputs["simd", to]
    assert _kernels.simd() in ("avx2", "portable")
