"""The lookup kernels: the C kernel and the numpy path must agree to the pixel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segconvert.codecs import lut
from segconvert.codecs.png import rgb_to_id24
from segconvert.errors import ItemError


@st.composite
def images(draw):
    h, w = draw(st.integers(1, 13)), draw(st.integers(1, 13))  # sizes that are not multiples of 4
    palette = draw(st.lists(st.integers(0, (1 << 24) - 1), min_size=1, max_size=12, unique=True))
    pick = np.array(draw(st.lists(st.integers(0, len(palette) - 1), min_size=h * w, max_size=h * w)))
    ids = np.array(palette, np.int64)[pick].reshape(h, w)
    rgb = np.stack([ids & 255, ids >> 8 & 255, ids >> 16], -1).astype(np.uint8)
    return rgb, palette


@st.composite
def run_images(draw):
    """Label maps as they are: runs of one id, long enough that the kernel's group-repeat
    path (8 pixels equal to the 8 before) runs, broken at any pixel."""
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 70))
    palette = draw(st.lists(st.integers(0, (1 << 24) - 1), min_size=1, max_size=6, unique=True))
    flat: list[int] = []
    while len(flat) < h * w:
        flat += [draw(st.sampled_from(palette))] * draw(st.integers(1, 40))
    ids = np.array(flat[: h * w], np.int64).reshape(h, w)
    rgb = np.stack([ids & 255, ids >> 8 & 255, ids >> 16], -1).astype(np.uint8)
    return rgb, palette


@settings(max_examples=120, deadline=None)
@given(st.one_of(images(), run_images()), st.randoms(use_true_random=False))
def test_lookup_rgb_kernel_equals_numpy(image, data):
    rgb, palette = image
    table = np.full(1 << 24, 255, np.uint8)
    for k, key in enumerate(palette):
        if data.random() < 0.8:
            table[key] = k
    offset = data.choice([0, 1, 255])
    fast = lut.lookup_rgb(rgb, table, offset)
    saved, lut._rgb_lookup_c = lut._rgb_lookup_c, None
    try:
        slow = lut.lookup_rgb(rgb, table, offset)
    finally:
        lut._rgb_lookup_c = saved
    expect = ((table[rgb_to_id24(rgb)].astype(np.int64) + offset) % 256).astype(np.uint8)
    for out, counts in (fast, slow):
        np.testing.assert_array_equal(out, expect)
        np.testing.assert_array_equal(counts, np.bincount(expect.ravel(), minlength=256))


def test_the_c_kernel_is_built():
    """Not a requirement of the package (numpy is the fallback), but of this project's CI."""
    assert lut._rgb_lookup_c is not None


def test_to_codes_on_rgb_packed_ids_reports_unknown_ids():
    ids = np.array([[0, 70000], [5, 5]])
    rgb = np.stack([ids & 255, ids >> 8 & 255, ids >> 16], -1).astype(np.uint8)
    codes, counts = lut.to_codes(rgb, {0: 0, 5: 1, 70000: 2})
    assert codes.tolist() == [[0, 2], [1, 1]] and counts.tolist() == [1, 2, 1]
    with pytest.raises(ItemError, match=r"1 pixel value\(s\) have no segment in the annotation: 70000 \(1 px\)"):
        lut.to_codes(rgb, {0: 0, 5: 1})


def test_kernel_rejects_wrong_buffer_sizes():
    if lut._rgb_lookup_c is None:
        pytest.skip("C kernel not built")
    with pytest.raises(ValueError, match="3 bytes per output pixel"):
        lut._rgb_lookup_c(np.zeros((2, 2, 3), np.uint8), np.zeros(1 << 24, np.uint8),
                          np.zeros(5, np.uint8), np.zeros(256, np.int64))
    with pytest.raises(ValueError, match="2\\*\\*24"):
        lut._rgb_lookup_c(np.zeros((2, 2, 3), np.uint8), np.zeros(10, np.uint8),
                          np.zeros(4, np.uint8), np.zeros(256, np.int64))


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 9), min_size=1, max_size=40),
    listed=st.sets(st.integers(1, 9)),
    give_counts=st.booleans(),
    renumber=st.booleans(),
)
def test_pack_of_uint8_label_maps_agrees_with_uint16(values, listed, give_counts, renumber):
    """The uint8 path (histogram first, one LUT) must give what the generic path gives."""
    from segconvert.model.ir import Segmentation, SegmentInfo
    from segconvert.model.pack import pack

    small = np.array(values, np.uint8).reshape(1, -1)
    segs = [SegmentInfo(id=v, label=f"c{v}") for v in sorted(listed)]
    counts = np.bincount(small.ravel(), minlength=256) if give_counts else None
    outcomes = []
    for label_map, pixel_counts in ((small, counts), (small.astype(np.uint16), None)):
        seg = Segmentation("x", label_map, list(segs), pixel_counts=pixel_counts)
        try:
            packed = pack(seg, renumber=renumber)
            outcomes.append((packed.mask.tolist(), packed.segments, seg.warnings))
        except ItemError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
    if set(values) - {0} <= listed:
        assert not isinstance(outcomes[0], str)
    else:
        assert "have no segment in the annotation" in outcomes[0]


@settings(max_examples=120, deadline=None)
@given(st.one_of(images(), run_images()), st.randoms(use_true_random=False), st.integers(0, 40))
def test_to_codes_hash_kernel_equals_the_table_path(image, data, extra_keys):
    """COCO panoptic's path (ids -> codes in the C hash kernel) against the numpy table path,
    with ids missing from the mapping and more ids than codes (semantic merges)."""
    rgb, palette = image
    codes = {key: data.randint(0, 254) for key in palette if data.random() < 0.85}
    for _ in range(extra_keys):  # ids the image does not have, as after a mode transform
        codes.setdefault(data.randint(0, (1 << 24) - 1), data.randint(0, 254))

    def run():
        try:
            return lut.to_codes(rgb, codes)
        except ItemError as exc:
            return str(exc)

    fast = run()
    saved, lut._rgb_codes_c = lut._rgb_codes_c, None
    try:
        slow = run()
    finally:
        lut._rgb_codes_c = saved
    if isinstance(slow, str):
        assert fast == slow
        return
    ids = rgb_to_id24(rgb)
    expect = np.vectorize(codes.__getitem__, otypes=[np.uint8])(ids)
    for out, counts in (fast, slow):
        np.testing.assert_array_equal(out, expect)
        np.testing.assert_array_equal(counts, np.bincount(expect.ravel(), minlength=max(codes.values()) + 1))


def test_hash_kernel_skips_ids_outside_24_bits_and_rejects_bad_codes():
    if lut._rgb_codes_c is None:
        pytest.skip("C kernel not built")
    rgb, out, hist = np.zeros((1, 2, 3), np.uint8), np.zeros(2, np.uint8), np.zeros(256, np.int64)
    lut._rgb_codes_c(rgb, {1 << 24: 3, -1: 4, 1 << 80: 5, 0: 7}, out, hist, 255)
    assert out.tolist() == [7, 7] and hist[7] == 2
    with pytest.raises(ValueError, match="0..255"):
        lut._rgb_codes_c(rgb, {0: 256}, out, hist, 255)
    with pytest.raises(TypeError):
        lut._rgb_codes_c(rgb, {"a": 1}, out, hist, 255)
    with pytest.raises(ValueError, match="3 bytes per output pixel"):
        lut._rgb_codes_c(rgb, {}, np.zeros(3, np.uint8), hist, 255)


@settings(max_examples=25, deadline=None)
@given(
    blocks=st.lists(st.sampled_from(["noise", "runs", "flat"]), min_size=1, max_size=10),
    width=st.sampled_from([97, 640, 1000]),
    seed=st.integers(0, 2**32 - 1),
)
def test_kernels_switch_between_scan_and_groups_without_changing_results(blocks, width, seed):
    """Images larger than the kernels' 4096-pixel stretches, mixing noise (one run per pixel:
    the group loop takes over) with runs (the scan comes back), against numpy."""
    rng = np.random.default_rng(seed)
    palette = rng.choice(1 << 24, size=6, replace=False)
    parts = []
    for kind in blocks:
        if kind == "noise":
            parts.append(rng.integers(0, len(palette), 4096 + int(rng.integers(0, 50))))
        elif kind == "runs":
            lengths = rng.integers(1, 300, 60)
            parts.append(np.repeat(rng.integers(0, len(palette), len(lengths)), lengths))
        else:
            parts.append(np.full(int(rng.integers(1, 9000)), rng.integers(0, len(palette))))
    flat = np.concatenate(parts)
    flat = np.pad(flat, (0, -len(flat) % width), mode="edge")
    ids = palette[flat].reshape(-1, width)
    rgb = np.ascontiguousarray(np.stack([ids & 255, ids >> 8 & 255, ids >> 16], -1).astype(np.uint8))
    codes = {int(key): k for k, key in enumerate(palette)}
    expect = flat.reshape(ids.shape).astype(np.uint8)
    counts_expected = np.bincount(expect.ravel(), minlength=256)
    if lut._rgb_codes_c is not None:
        out, hist = np.empty(ids.shape, np.uint8), np.zeros(256, np.int64)
        lut._rgb_codes_c(rgb, codes, out, hist, 255)
        np.testing.assert_array_equal(out, expect)
        np.testing.assert_array_equal(hist, counts_expected)
    table = np.zeros(1 << 24, np.uint8)
    table[palette] = np.arange(len(palette))
    out, hist = lut.lookup_rgb(rgb, table)
    np.testing.assert_array_equal(out, expect)
    np.testing.assert_array_equal(hist, counts_expected)


@settings(max_examples=80, deadline=None)
@given(st.one_of(run_images(), images()), st.randoms(use_true_random=False))
def test_pair_counts_and_overlay_kernels_equal_numpy(drawn, rnd):
    """The VOC pairing kernels: joint counts of two uint8 maps, and objects over a LUT'd class map."""
    from segconvert.codecs import lut

    image = drawn[0]
    high = np.ascontiguousarray(image[..., 0])
    low = np.ascontiguousarray(image[..., 1]) if rnd.random() < 0.5 else np.ascontiguousarray(image[..., 0] // 3)
    if rnd.random() < 0.5:
        high = np.where(high > 128, high, 0).astype(np.uint8)  # objects on background
    keys, counts = lut.pair_counts(high, low)
    expected = np.bincount((high.astype(np.int64) << 8 | low).ravel(), minlength=1 << 16)
    np.testing.assert_array_equal(keys, np.flatnonzero(expected))
    np.testing.assert_array_equal(counts, expected[keys])
    again = lut.pair_counts(high, low)  # the per-thread table was left clean
    np.testing.assert_array_equal(again[1], counts)
    table = np.array([rnd.randrange(256) for _ in range(256)], np.uint8)
    np.testing.assert_array_equal(lut.overlay_u8(low, table, high), np.where(high != 0, high, table[low]))


@st.composite
def code_maps(draw):
    """uint8 code maps of runs (long enough for the 16-byte SSE2 run scan, crossing rows) or noise."""
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 90))
    codes = draw(st.lists(st.integers(0, 255), min_size=1, max_size=8, unique=True))
    flat: list[int] = []
    while len(flat) < h * w:
        flat += [draw(st.sampled_from(codes))] * draw(st.integers(1, 60))
    return np.array(flat[: h * w], np.uint8).reshape(h, w)


@settings(max_examples=150, deadline=None)
@given(code_maps(), st.randoms(use_true_random=False))
def test_lookups_into_png_rows_equal_lookup_then_padding(codes, rnd):
    """lookup_u8(png_rows=True) and code_colors_boxes(png_rows) write the rows of a PNG's IDAT:
    a filter byte 0, then exactly what the plain kernels give (the colour kernel's 48-byte
    stores may run into the next row's filter byte, which that row then sets)."""
    from segconvert.codecs import png
    from segconvert.codecs._kernels import code_colors_boxes

    h, w = codes.shape
    table = np.array([rnd.randrange(256) for _ in range(256)], np.uint8)
    rows = lut.lookup_u8(codes, table, png_rows=True)
    assert rows.shape == (h, w + 1) and not rows[:, 0].any()
    assert np.array_equal(rows[:, 1:], table[codes])
    assert png.encode_rows(rows, w, h, 8, 0) == png.encode_gray8(table[codes])

    colors = np.array([[rnd.randrange(256) for _ in range(3)] for _ in range(256)], np.uint8)
    plain, padded = np.empty((h, w, 3), np.uint8), np.full((h, 3 * w + 1), 7, np.uint8)
    boxes_plain, boxes_padded = (np.full((256, 4), (w, h, -1, -1), np.int32) for _ in range(2))
    code_colors_boxes(codes, w, colors, plain, boxes_plain)
    code_colors_boxes(codes, w, colors, padded, boxes_padded, True)
    assert np.array_equal(plain, colors[codes])
    assert not padded[:, 0].any()
    assert np.array_equal(padded[:, 1:].reshape(h, w, 3), plain)
    assert np.array_equal(boxes_plain, boxes_padded)


def test_png_row_kernels_reject_wrong_sizes():
    from segconvert.codecs._kernels import code_colors_boxes, u8_lookup

    codes, table = np.zeros((4, 5), np.uint8), np.zeros(256, np.uint8)
    with pytest.raises(ValueError, match="width"):
        u8_lookup(codes, table, np.empty((4, 5), np.uint8), 5)
    with pytest.raises(ValueError, match="whole rows"):
        u8_lookup(codes, table, np.empty(24, np.uint8), 7)
    with pytest.raises(ValueError, match="1 \\+ 3 x width"):
        code_colors_boxes(codes, 5, np.zeros(768, np.uint8), np.empty((4, 15), np.uint8),
                          np.empty((256, 4), np.int32), True)


@st.composite
def map_pairs(draw):
    """Two uint8 maps of one shape made of runs that break independently (objects over classes),
    up to a few chunks of the kernel's change masks (4096 pixels), any length mod 32; or noise."""
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 400))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        maps = [rng.integers(0, 256, h * w) for _ in range(2)]
    else:
        maps = []
        for values in (draw(st.sampled_from([2, 5, 256])), draw(st.sampled_from([3, 40, 256]))):
            lengths = rng.integers(1, draw(st.sampled_from([2, 20, 90, 700])), h * w)
            runs = np.repeat(rng.integers(0, values, len(lengths)), lengths)[: h * w]
            maps.append(runs)
    high, low = (np.ascontiguousarray(m.reshape(h, w), np.uint8) for m in maps)
    if draw(st.booleans()):
        high[high < 128] = 0  # objects on background, as VOC's object maps are
    return high, low


@settings(max_examples=150, deadline=None)
@given(map_pairs(), st.randoms(use_true_random=False))
def test_pair_runs_equal_pair_counts_and_overlay(maps, rnd):
    """PairRuns (one scan, the map painted from its runs) gives what pair_counts and overlay_u8
    give, with the painted map's histogram; with or without the C kernels."""
    high, low = maps
    table = np.array([rnd.randrange(256) for _ in range(256)], np.uint8)
    expected = np.bincount((high.astype(np.int64) << 8 | low).ravel(), minlength=1 << 16)
    painted = np.where(high != 0, high, table[low])
    saved = lut._u8_pair_runs_c, lut._u8_paint_runs_c
    saved_inplace = lut._u8_paint_runs_inplace_c
    try:
        for kernels in (saved, (None, None)):
            lut._u8_pair_runs_c, lut._u8_paint_runs_c = kernels
            runs = lut.PairRuns(high, low)
            assert runs.pairs == np.flatnonzero(expected).tolist()
            assert runs.counts == expected[runs.pairs].tolist()
            for t in (table, table.tobytes(), bytearray(table.tobytes())):
                out, hist = runs.paint(t)
                np.testing.assert_array_equal(out, painted)
                np.testing.assert_array_equal(hist, np.bincount(painted.ravel(), minlength=256))
            for inplace_kernel in (saved_inplace, None):  # painted into high itself
                lut._u8_paint_runs_inplace_c = inplace_kernel
                mine = high.copy()
                runs = lut.PairRuns(mine, low)
                out, hist = runs.paint(table.tobytes(), in_place=True)
                assert out is mine
                np.testing.assert_array_equal(mine, painted)
                np.testing.assert_array_equal(hist, np.bincount(painted.ravel(), minlength=256))
    finally:
        lut._u8_pair_runs_c, lut._u8_paint_runs_c = saved
        lut._u8_paint_runs_inplace_c = saved_inplace
    bufs = getattr(lut._local, "runs", None)
    assert bufs is None or not bufs[0].any()  # the per-thread pair table was left clean


def test_pair_runs_paint_after_a_later_pair_runs_and_on_overflow():
    """The recorded runs are the thread's last PairRuns': an older one paints by overlay_u8, right
    all the same; so does a map with more runs than the buffer holds (kernel called with a small one)."""
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 4, (30, 50)).astype(np.uint8) for _ in range(2))
    c, d = (np.repeat(rng.integers(0, 9, 150), 10).reshape(30, 50).astype(np.uint8) for _ in range(2))
    table = rng.integers(0, 256, 256).astype(np.uint8)
    first = lut.PairRuns(a, b)
    second = lut.PairRuns(c, d)
    np.testing.assert_array_equal(first.paint(table)[0], np.where(a != 0, a, table[b]))
    np.testing.assert_array_equal(second.paint(table)[0], np.where(c != 0, c, table[d]))
    if lut._u8_pair_runs_c is None:
        pytest.skip("no C kernels in this build")
    hist, keys, starts = np.zeros(1 << 16, np.int64), np.empty(1 << 16, np.uint16), np.empty(100, np.int32)
    pairs, counts, n_runs = lut._u8_pair_runs_c(a, b, hist, keys, starts)
    assert n_runs == -1 and sum(counts) == a.size and not hist.any()
    pairs, counts, n_runs = lut._u8_pair_runs_c(c, d, hist, keys, np.empty(c.size + 1, np.int32))
    assert n_runs > 0 and sum(counts) == c.size


def test_paint_runs_refuses_starts_that_do_not_rise():
    """u8_paint_runs reads the maps at each start: starts that are not a rising cover of the
    maps are refused, never read out of bounds."""
    if lut._u8_paint_runs_c is None:
        pytest.skip("no C kernels in this build")
    a = b = np.zeros(64, np.uint8)
    table, out, hist = bytes(256), np.empty(64, np.uint8), np.zeros(256, np.int64)
    for starts in ([0, 10, 10, 64], [0, 40, 20, 64], [0, 64, 64], [0, 10, 1 << 30], [0, 10, 63]):
        with pytest.raises(ValueError):
            lut._u8_paint_runs_c(a, b, np.array(starts, np.int32), len(starts) - 1, table, out, hist)
    with pytest.raises(ValueError):
        lut._u8_paint_runs_c(a, b, np.array([5, 64], np.int32), 1, table, out, hist)
    lut._u8_paint_runs_c(a, b, np.array([0, 10, 64], np.int32), 2, table, out, hist)
    assert hist[0] == 64


def test_paint_runs_inplace_refuses_starts_that_do_not_rise_and_fills_exactly():
    """The in-place paint writes each stuff run exactly (its stores never pass the run: the bytes
    after it are read later), and refuses starts that are no rising cover, as u8_paint_runs."""
    if lut._u8_paint_runs_inplace_c is None:
        pytest.skip("no C kernels in this build")
    b = np.zeros(64, np.uint8)
    table, hist = bytes(256), np.zeros(256, np.int64)
    for starts in ([0, 10, 10, 64], [0, 40, 20, 64], [0, 64, 64], [0, 10, 1 << 30], [5, 64]):
        with pytest.raises(ValueError):
            lut._u8_paint_runs_inplace_c(np.zeros(64, np.uint8), b, np.array(starts, np.int32), len(starts) - 1,
                                         table, hist)
    # every run length 1..70 next to object runs of every length: only the 0 runs change
    rng = np.random.default_rng(5)
    lengths = np.concatenate([np.arange(1, 71), rng.permutation(np.arange(1, 71))])
    values = np.where(np.arange(len(lengths)) % 2 == 0, 0, rng.integers(1, 256, len(lengths)))
    high = np.repeat(values, lengths).astype(np.uint8)
    low = np.repeat(rng.integers(0, 256, len(lengths)), lengths).astype(np.uint8)
    tab = rng.integers(0, 256, 256).astype(np.uint8)
    expected = np.where(high != 0, high, tab[low])
    runs = lut.PairRuns(high, low)
    out, hist = runs.paint(tab, in_place=True)
    assert out is high
    np.testing.assert_array_equal(high, expected)
    np.testing.assert_array_equal(hist, np.bincount(expected, minlength=256))


def test_pair_runs_painted_in_another_thread_are_right():
    """The runs live in per-thread buffers: painting from another thread goes by overlay_u8."""
    import threading

    rng = np.random.default_rng(2)
    a, b = (np.repeat(rng.integers(0, 5, 300), 7).reshape(30, 70).astype(np.uint8) for _ in range(2))
    table = rng.integers(0, 256, 256).astype(np.uint8)
    runs = lut.PairRuns(a, b)
    got: list[np.ndarray] = []

    def other() -> None:
        lut.PairRuns(b, a)  # this thread's own buffers
        got.append(runs.paint(table)[0])

    worker = threading.Thread(target=other)
    worker.start()
    worker.join()
    np.testing.assert_array_equal(got[0], np.where(a != 0, a, table[b]))


def test_pair_runs_record_exactly_when_the_starts_fit():
    """Starts buffers around the number of runs (the room is checked per chunk, then per word, then
    per run): the runs are recorded iff they fit, counted either way, and paint right when recorded."""
    if lut._u8_pair_runs_c is None:
        pytest.skip("no C kernels in this build")
    rng = np.random.default_rng(3)
    a = np.repeat(rng.integers(0, 3, 4000), rng.integers(1, 4, 4000))[:5000].astype(np.uint8)
    b = np.repeat(rng.integers(0, 2, 4000), rng.integers(1, 6, 4000))[:5000].astype(np.uint8)
    assert a.size == b.size == 5000
    runs = 1 + int(np.count_nonzero((a[1:] != a[:-1]) | (b[1:] != b[:-1])))
    hist, keys = np.zeros(1 << 16, np.int64), np.empty(1 << 16, np.uint16)
    table = rng.integers(0, 256, 256).astype(np.uint8)
    for cap in [*range(runs - 40, runs + 40), runs + 1000]:
        starts = np.empty(cap + 1, np.int32)
        _, counts, n_runs = lut._u8_pair_runs_c(a, b, hist, keys, starts)
        assert sum(counts) == a.size and not hist.any()
        assert n_runs == (runs if cap >= runs else -1)
        if n_runs > 0:
            out, painted = np.empty_like(a), np.zeros(256, np.int64)
            lut._u8_paint_runs_c(a, b, starts, n_runs, table, out, painted)
            np.testing.assert_array_equal(out, np.where(a != 0, a, table[b]))
