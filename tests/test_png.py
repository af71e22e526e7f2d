"""The PNG helpers: the minimal encoder against Pillow, and atomic writes."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from segconvert.codecs import png


@settings(max_examples=40)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_encode_gray8_decodes_to_the_same_mode_l_image(mask):
    data = png.encode_gray8(mask)
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "L"
        np.testing.assert_array_equal(np.asarray(img), mask)
    header = png.read_header(data)
    assert (header.width, header.height, header.bit_depth, header.color_type) == (mask.shape[1], mask.shape[0], 8, 0)


def test_read_header_names_what_the_file_is():
    with pytest.raises(ValueError, match="JPEG"):
        png.read_header(b"\xff\xd8\xff" + b"\0" * 40)
    with pytest.raises(ValueError, match="not a PNG"):
        png.read_header(b"hello")


def test_write_atomic_creates_and_replaces_leaving_no_temp_files(tmp_path):
    target = tmp_path / "m.png"
    png.write_atomic(target, b"first")
    png.write_atomic(str(target), "second")
    assert target.read_bytes() == b"second"
    assert sorted(os.listdir(tmp_path)) == ["m.png"]


def test_write_atomic_steps_over_a_stale_temp_file_of_a_killed_run(tmp_path, monkeypatch):
    import itertools

    monkeypatch.setattr(png, "_temp_counter", itertools.count())
    stale = tmp_path / f".m.png.{os.getpid()}.0.tmp"  # the name the next write would take
    stale.write_bytes(b"half")
    png.write_atomic(tmp_path / "m.png", b"whole")
    assert (tmp_path / "m.png").read_bytes() == b"whole"
    assert stale.read_bytes() == b"half"  # not written through, not renamed into place


def test_write_atomic_failure_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    """The Python steps (no C kernel): a write that fails removes its temp file."""
    target = tmp_path / "m.png"
    target.write_bytes(b"old")

    def no_space(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(png, "_write_replace_c", None)
    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(OSError, match="No space"):
        png.write_atomic(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["m.png"]


@pytest.mark.parametrize("kernel", ["c", "python"])
def test_write_atomic_in_c_and_python_alike(tmp_path, monkeypatch, kernel):
    """write_replace (the C steps, one GIL release) and the os calls give the same files, step
    over a stale temp file the same way, and name the file of a failure: a folder in the way of
    the rename (the temp file removed again), a missing folder."""
    import itertools

    if kernel == "python":
        monkeypatch.setattr(png, "_write_replace_c", None)
    elif png._write_replace_c is None:
        pytest.skip("no C kernels in this build")
    monkeypatch.setattr(png, "_temp_counter", itertools.count())
    (tmp_path / f".m.png.{os.getpid()}.0.tmp").write_bytes(b"half")
    png.write_atomic(tmp_path / "m.png", bytes(range(256)) * 300)
    assert (tmp_path / "m.png").read_bytes() == bytes(range(256)) * 300
    assert sorted(os.listdir(tmp_path)) == [f".m.png.{os.getpid()}.0.tmp", "m.png"]
    (tmp_path / "d.png").mkdir()
    (tmp_path / "d.png" / "x").write_bytes(b"")
    with pytest.raises(OSError) as info:
        png.write_atomic(tmp_path / "d.png", b"data")
    assert "d.png" in str(info.value)
    assert sorted(os.listdir(tmp_path)) == [f".m.png.{os.getpid()}.0.tmp", "d.png", "m.png"]
    with pytest.raises(FileNotFoundError) as info:
        png.write_atomic(tmp_path / "nowhere" / "m.png", b"data")
    assert "nowhere" in str(info.value)


def test_write_atomic_past_a_file_size_limit_fails_cleanly(tmp_path):
    """EFBIG from the C kernel's write (ulimit -f, SIGXFSZ ignored as a run ignores it): an
    OSError, no temp file left, the old file kept."""
    import subprocess
    import sys

    code = (
        "import resource, signal, sys\n"
        "from segconvert.codecs import png\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
        "try:\n"
        "    png.write_atomic(sys.argv[1], b'x' * 5000)\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    target = tmp_path / "m.png"
    target.write_bytes(b"old")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == str(__import__("errno").EFBIG)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["m.png"]


def test_read_bytes_reads_whole_files_and_raises_like_open(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "data").write_bytes(bytes(range(256)) * 5000)
    assert png.read_bytes(tmp_path / "empty") == b""
    assert png.read_bytes(str(tmp_path / "data")) == bytes(range(256)) * 5000
    with pytest.raises(FileNotFoundError):
        png.read_bytes(tmp_path / "missing")
    with pytest.raises(IsADirectoryError):
        png.read_bytes(tmp_path)


@st.composite
def index_images(draw):
    """Masks as VOC's are (runs of a few values) or noise, in shapes that make every PNG row
    filter worth choosing for some row."""
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["runs", "noise", "ramp"]))
    if kind == "noise":
        return rng.integers(0, 256, (h, w)).astype(np.uint8)
    if kind == "ramp":
        return (np.cumsum(rng.integers(0, 3, (h, w)), axis=draw(st.integers(0, 1))) * 7).astype(np.uint8)
    return np.repeat(rng.choice([0, 1, 15, 255], (h, (w + 3) // 4)), 4, axis=1)[:, :w].astype(np.uint8)


def _encodings(mask: np.ndarray) -> list[bytes]:
    """The same mask as several writers store it: Pillow (palette and grayscale, adaptive
    filters), libpng through OpenCV with each strategy and level 9, segconvert's own writer."""
    import cv2

    out = []
    for mode in ("P", "L"):
        im = Image.fromarray(mask, "L")
        if mode == "P":
            im = im.convert("P")
            im.putpalette(bytes(range(256)) * 3)
        for optimize in (False, True):
            buf = io.BytesIO()
            im.save(buf, "PNG", optimize=optimize)
            out.append(buf.getvalue())
    for strategy in (0, 1, 2, 3, 4):
        out.append(cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_STRATEGY, strategy, cv2.IMWRITE_PNG_COMPRESSION, 9])[1]
                   .tobytes())
    out.append(png.encode_palette8(mask, bytes(range(256)) * 3))
    return out


@settings(max_examples=60, deadline=None)
@given(index_images())
def test_decode_index8_gives_pillows_indices_and_their_counts(mask):
    """Every row filter (None, Sub, Up, Average, Paeth, as libpng and Pillow choose them)."""
    for data in _encodings(mask):
        decoded = png.decode_index8(data)
        assert decoded is not None
        values, counts = decoded
        with Image.open(io.BytesIO(data)) as img:
            np.testing.assert_array_equal(values, np.asarray(img))
        np.testing.assert_array_equal(counts, np.bincount(mask.ravel(), minlength=256))


@settings(max_examples=60, deadline=None)
@given(index_images(), st.integers(0, 2**32 - 1), st.sampled_from([1, 3, 40, 256]))
def test_decode_index8_pairs_is_decode_then_pair_runs(mask, seed, values):
    """The fused decode (object PNG unfiltered and paired with a class map row by row) gives the
    values decode_index8 gives and the PairRuns of them, pairs, counts and painted map alike,
    for every row filter; and its runs paint in place as the separate ones paint."""
    from segconvert.codecs import lut

    if png._unfilter8_pairs_c is None:
        pytest.skip("no C kernels in this build")
    rng = np.random.default_rng(seed)
    low = np.repeat(rng.integers(0, values, mask.size), rng.integers(1, 9, mask.size))[: mask.size]
    low = np.resize(low, mask.shape).astype(np.uint8)
    table = rng.integers(0, 256, 256).astype(np.uint8)
    expected_map = np.where(mask != 0, mask, table[low])
    for data in _encodings(mask):
        fused = png.decode_index8_pairs(data, low)
        assert fused is not None
        values_, runs = fused
        np.testing.assert_array_equal(values_, mask)
        separate = lut.PairRuns(png.decode_index8(data)[0], low)
        assert (runs.pairs, runs.counts) == (separate.pairs, separate.counts)
        runs = png.decode_index8_pairs(data, low)[1]  # the thread's newest runs again
        out, hist = runs.paint(table, in_place=True)
        np.testing.assert_array_equal(out, expected_map)
        np.testing.assert_array_equal(hist, np.bincount(expected_map.ravel(), minlength=256))
    bufs = lut._local.runs
    assert not bufs[0].any()  # the per-thread pair table was left clean


def test_decode_index8_pairs_declines_what_it_cannot_pair_and_names_corrupt_data():
    """None for another size of class map or a strided one (the caller decodes and names the
    mismatch), as for PNGs decode_index8 leaves to Pillow; a bad filter type is a ValueError
    and leaves the thread's pair table clean for the next image."""
    from segconvert.codecs import lut

    if png._unfilter8_pairs_c is None:
        pytest.skip("no C kernels in this build")
    mask = np.arange(48, dtype=np.uint8).reshape(6, 8)
    data = png.encode_gray8(mask)
    assert png.decode_index8_pairs(data, np.zeros((6, 9), np.uint8)) is None
    assert png.decode_index8_pairs(data, np.zeros((6, 16), np.uint8)[:, ::2]) is None
    assert png.decode_index8_pairs(data, np.zeros((6, 8), np.int32)) is None
    assert png.decode_index8_pairs(png.encode_rgb8(np.dstack([mask] * 3)), np.zeros((6, 8), np.uint8)) is None
    raw = np.zeros((6, 9), np.uint8)
    raw[3, 0] = 9
    raw[:, 1:] = mask
    bad = png._encode_raw(mask, 8, 6, 8, 0)
    start, end = bad.index(b"IDAT") - 4, bad.index(b"IEND") - 4
    bad = bad[:start] + png._chunk(b"IDAT", png._deflate_lib.compress(raw, 1)) + bad[end:]
    with pytest.raises(ValueError, match="row 3 has PNG filter type 9"):
        png.decode_index8_pairs(bad, np.ones((6, 8), np.uint8))
    assert not lut._local.runs[0].any()
    values_, runs = png.decode_index8_pairs(data, np.ones((6, 8), np.uint8))
    assert runs.pairs == [(v << 8) | 1 for v in range(48)] and runs.counts == [1] * 48


def test_decode_index8_pairs_with_more_runs_than_recorded_still_counts_and_paints():
    """Noise with more runs than the start buffer holds: the kernel says so (-1), the pairs are
    counted all the same, and painting goes by overlay_u8."""
    from segconvert.codecs import lut

    if png._unfilter8_pairs_c is None:
        pytest.skip("no C kernels in this build")
    rng = np.random.default_rng(3)
    mask = rng.integers(0, 4, (20, 30)).astype(np.uint8)
    low = rng.integers(0, 3, (20, 30)).astype(np.uint8)
    raw, width, _ = png._inflate_index8(png.encode_gray8(mask))
    out = np.empty_like(mask)
    hist, keys = np.zeros(1 << 16, np.int64), np.empty(1 << 16, np.uint16)
    pairs, counts, n_runs = png._unfilter8_pairs_c(raw, width, out, low, hist, keys, np.empty(50, np.int32))
    assert n_runs == -1 and sum(counts) == mask.size and not hist.any()
    np.testing.assert_array_equal(out, mask)
    expected = np.bincount((mask.astype(np.int64) << 8 | low).ravel(), minlength=1 << 16)
    assert pairs == np.flatnonzero(expected).tolist() and counts == expected[pairs].tolist()
    saved = lut._MAX_RUNS
    try:
        lut._local.__dict__.pop("runs", None)
        lut._MAX_RUNS = 40  # this thread's buffer, made again, too small for the noise
        table = rng.integers(0, 256, 256).astype(np.uint8)
        values_, runs = png.decode_index8_pairs(png.encode_gray8(mask), low)
        assert runs._runs == -1  # not recorded: painted by overlay_u8
        out, hist = runs.paint(table, in_place=True)
        np.testing.assert_array_equal(out, np.where(mask != 0, mask, table[low]))
    finally:
        lut._MAX_RUNS = saved
        lut._local.__dict__.pop("runs", None)


def test_decode_index8_all_five_filters_occur_in_the_test_encodings():
    """The property above is only as good as the filters it meets: check they all occur."""
    import zlib

    seen: set[int] = set()
    rng = np.random.default_rng(1)
    for k in range(30):
        mask = (np.cumsum(rng.integers(0, 3, (30, 30)), axis=k % 2) * (k % 7 + 1)).astype(np.uint8)
        for data in _encodings(mask):
            pos, idat = 8, b""
            while pos < len(data):
                length = int.from_bytes(data[pos:pos + 4], "big")
                if data[pos + 4:pos + 8] == b"IDAT":
                    idat += data[pos + 8:pos + 8 + length]
                pos += 12 + length
            seen |= set(np.frombuffer(zlib.decompress(idat), np.uint8).reshape(30, 31)[:, 0].tolist())
    assert seen == {0, 1, 2, 3, 4}


def test_decode_index8_leaves_other_pngs_to_pillow_and_names_corrupt_data():
    mask = np.arange(48, dtype=np.uint8).reshape(6, 8)
    assert png.decode_index8(png.encode_rgb8(np.dstack([mask] * 3))) is None  # RGB
    assert png.decode_index8(png.encode_gray16(mask.astype(np.uint16))) is None  # 16-bit
    data = png.encode_gray8(mask)
    adam7 = png.SIGNATURE + png._chunk(b"IHDR", data[16:28] + b"\x01") + data[33:]  # interlaced: Pillow's job
    assert png.read_header(adam7).width == 8 and png.decode_index8(adam7) is None
    with pytest.raises(ValueError, match="truncated"):
        png.decode_index8(data[:-20])
    at = data.index(b"IDAT") + 6
    with pytest.raises(ValueError, match="checksum"):
        png.decode_index8(data[:at] + bytes([data[at] ^ 1]) + data[at + 1:])
    raw = np.zeros((6, 9), np.uint8)
    raw[2, 0] = 7  # filter type 7 on row 2
    raw[:, 1:] = mask
    bad = png._encode_raw(mask, 8, 6, 8, 0)
    idat = png._deflate_lib.compress(raw, 1)
    start = bad.index(b"IDAT") - 4
    end = bad.index(b"IEND") - 4
    bad = bad[:start] + png._chunk(b"IDAT", idat) + bad[end:]
    with pytest.raises(ValueError, match="row 2 has PNG filter type 7"):
        png.decode_index8(bad)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=70_000), st.integers(0, (1 << 32) - 1))
def test_crc32_is_zlibs(data, start):
    """The journal's file stamps use png.crc32 (ISA-L where installed): the same number as zlib's,
    so journals written with either resume with the other."""
    import zlib

    assert png.crc32(data) == zlib.crc32(data)
    assert png.crc32(data, start) == zlib.crc32(data, start)
