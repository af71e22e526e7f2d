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

from segconvert import png


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
    target = tmp_path / "m.png"
    target.write_bytes(b"old")

    def no_space(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(OSError, match="No space"):
        png.write_atomic(target, b"new")
    monkeypatch.undo()
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
