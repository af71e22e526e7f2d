"""What every shape reader shares (segconvert.codecs.shapes): option checks through the Python API."""

from __future__ import annotations

import pytest
from conftest import FIXTURES

import segconvert
from segconvert.codecs.shapes import BACKGROUND, RESERVED_LABELS, VOID, check_void, label_convention

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


@pytest.mark.parametrize(
    "name, role",
    [
        ("_background_", BACKGROUND), ("background", BACKGROUND), ("__background__", BACKGROUND),
        ("unlabeled", BACKGROUND), ("void", BACKGROUND), ("Background", BACKGROUND), (" unlabeled ", BACKGROUND),
        ("__ignore__", VOID), ("void--unlabeled", BACKGROUND), ("Void--Unlabeled", BACKGROUND),
        ("construction--flat--road", None), ("car", None),
        ("ignore", None), ("background_wall", None), ("_ignore_", None), ("", None),
    ],
)
def test_label_convention(name, role):
    assert label_convention(name) == role


def test_reserved_labels_table_is_lower_case_and_only_background_or_void():
    assert all(k == k.strip().lower() for k in RESERVED_LABELS)
    assert set(RESERVED_LABELS.values()) == {BACKGROUND, VOID}


def test_check_void():
    assert check_void("ignore") == "ignore" and check_void("background") == "background"
    with pytest.raises(segconvert.SourceError, match="void must be background or ignore"):
        check_void("drop")


def test_one_reserved_table_serves_label_files_rgb_and_voc():
    """The label-file parsers, the rgb tables and the voc writer ask the same function."""
    from segconvert.codecs import label_files
    from segconvert.converters import rgb_tables, voc

    assert not hasattr(label_files, "VOID_NAMES") and not hasattr(label_files, "is_void_name")
    for name in [*RESERVED_LABELS, "void--unlabeled", "car"]:
        assert rgb_tables._is_void(name) == (label_convention(name) is not None)
    assert set(voc.BACKGROUND_NAMES) == {n for n, k in RESERVED_LABELS.items() if k == BACKGROUND}
    assert rgb_tables.IGNORE_LABEL is voc.IGNORE_LABEL
