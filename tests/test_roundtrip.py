"""IR -> format -> IR is the identity (property tests over random scenes), and file round trips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, SHARED, snapshot
from hypothesis import HealthCheck, given, settings
from roundtrip import ALL_FIELDS, canonical, read_back, scenes, write_scenes

import segconvert

PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[*settings.default.suppress_health_check,
                                           HealthCheck.function_scoped_fixture])


def assert_same(before, after, fields=ALL_FIELDS):
    want_segments, want_map = canonical(before, fields)
    got_segments, got_map = canonical(after, fields)
    assert got_segments == want_segments
    assert np.array_equal(got_map, want_map)


@PROPERTY
@given(seg=scenes())
def test_nucleus_round_trip(tmp_path_factory, seg):
    out = tmp_path_factory.mktemp("nucleus")
    summary = write_scenes([seg], "nucleus", out)
    assert summary.ok, summary.failures
    (back,) = read_back(out, "nucleus").values()
    assert_same(seg, back)


@PROPERTY
@given(seg=scenes())
def test_coco_panoptic_round_trip(tmp_path_factory, seg):
    out = tmp_path_factory.mktemp("panoptic")
    summary = write_scenes([seg], "coco-panoptic", out)
    assert summary.ok, summary.failures
    (back,) = read_back(out / "panoptic.json", "coco-panoptic").values()
    assert_same(seg, back)
    # the IR's ids fit 24 bits: they are the PNG's ids
    assert [s.id for s in back.segments] == [s.id for s in seg.segments if (seg.ids() == s.id).any()]


def _panoptic_sources() -> list[Path]:
    found = [FIXTURES / "coco-panoptic" / "panoptic.json"]
    # ../shared beside the repo, or beside the folder of worktrees (wt/NAME)
    for shared in (SHARED, SHARED.parent.parent / "shared"):
        sample = shared / "data" / "coco-panoptic-sample" / "panoptic.json"
        if sample.is_file():
            return [*found, sample]
    return found


@pytest.mark.parametrize("source", _panoptic_sources(), ids=lambda p: p.parent.name)
def test_panoptic_nucleus_panoptic_nucleus(tmp_path, source):
    """coco-panoptic -> nucleus -> coco-panoptic -> nucleus: the same masks, byte for byte, and
    the same Segments."""
    first, middle, second = tmp_path / "n1", tmp_path / "p", tmp_path / "n2"
    for src, out, frm, to in ((source, first, "coco-panoptic", "nucleus"), (first, middle, "nucleus", "coco-panoptic"),
                              (middle / "panoptic.json", second, "coco-panoptic", "nucleus")):
        summary = segconvert.convert(src, out, from_format=frm, to_format=to, jobs=1)
        assert summary.converted > 0 and summary.ok, summary.failures
    a, b = snapshot(first), snapshot(second)
    assert a.keys() == b.keys()
    for name in a:
        if name.endswith(".png"):
            assert a[name] == b[name], name
    rows = [[json.loads(line) for line in (d / "annotations.jsonl").read_text().splitlines()] for d in (first, second)]
    for x, y in zip(*rows):
        assert x["annotations"] == y["annotations"] and x["reference_id"] == y["reference_id"]


def test_panoptic_writer_same_bytes_for_any_jobs(tmp_path):
    src = FIXTURES / "coco-panoptic" / "panoptic.json"
    shutil.copytree(src.parent, tmp_path / "src")
    outs = []
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        assert segconvert.convert(tmp_path / "src" / "panoptic.json", out, to_format="coco-panoptic",
                                  mode="semantic", jobs=jobs).ok
        outs.append(snapshot(out))
    assert outs[0] == outs[1]


@pytest.mark.parametrize(("to", "options", "expect"), [
    ("nucleus", [], ["annotations.jsonl", "masks/example_000.png"]),
    ("coco-panoptic", ["--image-ext", ".png"], ["panoptic.json", "panoptic/example_000.png"]),
    ("coco-instances", ["--segmentation", "polygon"], ["instances.json"]),
    ("index", ["--preset", "mmseg"], ["labels.json", "colors.json", "masks/example_000.png"]),
    ("rgb", ["--colormap", "coco-panoptic"], ["colormap.json", "masks/example_000.png"]),
])
def test_every_writer_from_the_cli_and_resume(tmp_path, to, options, expect):
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    src = FIXTURES / "coco-panoptic" / "panoptic.json"
    args = ["convert", str(src), str(tmp_path / "o"), "--from", "coco-panoptic", "--to", to, "--jobs", "1", *options]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    files = snapshot(tmp_path / "o")
    assert set(expect) <= set(files)
    # resume redoes the item whose file is gone, and only that; dataset-wide files are rebuilt
    (tmp_path / "o" / expect[-1]).unlink()
    again = CliRunner().invoke(main, args)
    per_item = expect[-1].endswith(".png")
    assert again.exit_code == 0
    assert ("converted 1, skipped 2" if per_item else "converted 0, skipped 3") in again.output
    assert snapshot(tmp_path / "o") == files


@pytest.mark.parametrize(("to", "options"), [
    ("nucleus", {}), ("coco-panoptic", {}), ("coco-instances", {"segmentation": "polygon"}),
    ("index", {"preset": "detectron2"}), ("rgb", {}),
])
def test_every_writer_same_bytes_for_any_jobs(tmp_path, to, options):
    src = FIXTURES / "coco-panoptic" / "panoptic.json"
    outs = []
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        assert segconvert.convert(src, out, from_format="coco-panoptic", to_format=to, jobs=jobs, **options).ok
        outs.append({k: v for k, v in snapshot(out).items() if k != "annotations.jsonl"})  # that has paths
        if to == "nucleus":  # mask_url is the mask's absolute path: compare the rest
            rows = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
            outs[-1]["rows"] = [{**r, "mask_url": Path(r["mask_url"]).name} for r in rows]  # type: ignore[assignment]
    assert outs[0] == outs[1]


def test_coco_panoptic_writer_takes_more_than_255_segments(tmp_path):
    from segconvert.model.ir import Segmentation, SegmentInfo

    label_map = (np.arange(20 * 30, dtype=np.uint32).reshape(20, 30) % 300) + 1
    segments = [SegmentInfo(i, "car", 3) for i in range(1, 301)]
    seg = Segmentation("many", label_map, segments)
    assert write_scenes([seg], "coco-panoptic", tmp_path).ok
    (back,) = read_back(tmp_path / "panoptic.json", "coco-panoptic").values()
    assert_same(seg, back)
    doc = json.loads((tmp_path / "panoptic.json").read_text())
    infos = doc["annotations"][0]["segments_info"]
    # id k sits at positions k-1 and k+299 of the 30-wide map: (x, y) = ((k-1) % 30, (k-1) // 30) and 10 rows lower
    assert len(infos) == 300 and infos[0]["bbox"] == [0, 0, 1, 11] and infos[0]["area"] == 2
    assert infos[299]["bbox"] == [29, 9, 1, 11] and infos[299]["area"] == 2
