"""decode_gray8's direct path (filter-None masks inflated by ISA-L) against libspng and Pillow."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from segconvert.codecs import png

pytestmark = pytest.mark.skipif(png._deflate_lib is zlib, reason="the direct path needs isal")

masks = st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
    lambda hw: arrays(np.uint8, hw, elements=st.integers(0, 6) | st.integers(0, 255)))


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


@settings(max_examples=60, deadline=None)
@given(masks)
def test_own_encoding_takes_the_direct_path_and_equals_pillow(mask: np.ndarray) -> None:
    data = png.encode_gray8(mask)
    direct = png._decode_gray8_unfiltered(data)
    assert direct is not None and direct.flags.c_contiguous
    np.testing.assert_array_equal(direct, mask)
    np.testing.assert_array_equal(png.decode_gray8(data), pillow(data))


@settings(max_examples=30, deadline=None)
@given(masks)
def test_filtered_pngs_go_to_the_general_decoder(mask: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buf, format="PNG", optimize=True)  # adaptive filters
    data = buf.getvalue()
    np.testing.assert_array_equal(png.decode_gray8(data), mask)


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        size = struct.unpack(">I", data[pos:pos + 4])[0]
        out.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + size]))
        pos += 12 + size
    return out


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return png.SIGNATURE + b"".join(png._chunk(tag, payload) for tag, payload in chunks)


def test_idat_split_over_chunks_and_ancillary_chunks() -> None:
    mask = (np.arange(30 * 20).reshape(20, 30) % 7).astype(np.uint8)
    (ihdr, head), (_, idat), iend = _chunks(png.encode_gray8(mask))
    data = _png([(ihdr, head), (b"gAMA", b"\0\0\xb1\x8f"), (b"IDAT", idat[:5]), (b"IDAT", idat[5:]),
                 (b"tEXt", b"k\0v"), iend])
    np.testing.assert_array_equal(png._decode_gray8_unfiltered(data), mask)
    np.testing.assert_array_equal(png.decode_gray8(data), pillow(data))


def test_irregular_files_are_left_to_the_general_decoder() -> None:
    mask = (np.arange(16 * 9).reshape(9, 16) % 5).astype(np.uint8)
    data = png.encode_gray8(mask)
    bad_crc = data[:-20] + bytes([data[-20] ^ 1]) + data[-19:]  # a byte of the IDAT CRC
    truncated = data[:-30]
    (ihdr, head), (_, idat), iend = _chunks(data)
    split = _png([(ihdr, head), (b"IDAT", idat[:4]), (b"tEXt", b"k\0v"), (b"IDAT", idat[4:]), iend])
    wrong_size = _png([(ihdr, struct.pack(">II", 17, 9) + head[8:]), (b"IDAT", idat), iend])
    corrupt_stream = _png([(ihdr, head), (b"IDAT", idat[:-5] + bytes([idat[-5] ^ 0xFF]) + idat[-4:]), iend])
    for case in (bad_crc, truncated, split, wrong_size, corrupt_stream):
        assert png._decode_gray8_unfiltered(case) is None
        # what decode_gray8 makes of them is the general decoder's verdict, unchanged
        try:
            expected: np.ndarray | None = general(case)
        except ValueError:
            expected = None
        if expected is None:
            with pytest.raises(ValueError):
                png.decode_gray8(case)
        else:
            np.testing.assert_array_equal(png.decode_gray8(case), expected)


def general(data: bytes) -> np.ndarray:
    """decode_gray8 without the direct path."""
    saved, png._deflate_lib = png._deflate_lib, zlib
    try:
        return png.decode_gray8(data)
    finally:
        png._deflate_lib = saved


def test_a_stream_longer_than_the_image_is_left_to_the_general_decoder() -> None:
    (ihdr, head), _, iend = _chunks(png.encode_gray8(np.zeros((4, 4), np.uint8)))
    bomb = png._deflate_lib.compress(bytes(50_000_000), 1)  # 50 MB of rows for a 4x4 image
    data = _png([(ihdr, head), (b"IDAT", bomb), iend])
    assert png._decode_gray8_unfiltered(data) is None
