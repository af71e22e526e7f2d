"""What every shape reader shares (segconvert.shapes): option checks through the Python API."""

from __future__ import annotations

import pytest
from conftest import FIXTURES

import segconvert

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
