"""SOURCE on the command line: a path that exists, or a quoted glob that matches something."""

from __future__ import annotations

import json
import shutil

import numpy as np
from click.testing import CliRunner
from conftest import FIXTURES
from PIL import Image

from segconvert.interfaces.cli import main
from segconvert.io.sources import SourcePath, is_pattern


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_quoted_glob_is_a_source_for_rgb(tmp_path):
    # the README's rgb promise: "SOURCE: a folder, searched recursively, or a glob"
    for sub in ("a", "b"):
        shutil.copy(FIXTURES / "rgb" / "voc" / "2007_000001.png", tmp_path / f"{sub}_gt.png")
    (tmp_path / "deep").mkdir()
    shutil.copy(FIXTURES / "rgb" / "voc" / "2007_000001.png", tmp_path / "deep" / "c_gt.png")
    shutil.copy(FIXTURES / "rgb" / "voc" / "2007_000001.png", tmp_path / "other.png")
    out = tmp_path / "out"
    result = run("convert", tmp_path / "**" / "*_gt.png", out, "--from", "rgb", "--encoding", "palette",
                 "--colormap", "voc", "-j", "1")
    assert result.exit_code == 0, result.output
    refs = [json.loads(line)["reference_id"] for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert refs == ["a_gt", "b_gt", "c_gt"]  # other.png is not matched
    idx = np.asarray(Image.open(FIXTURES / "rgb" / "voc" / "2007_000001.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "masks" / "c_gt.png")), np.where(idx == 255, 0, idx))


def test_glob_matching_nothing_is_a_usage_error_naming_the_pattern(tmp_path):
    pattern = tmp_path / "masks" / "*.png"
    result = run("convert", pattern, tmp_path / "out", "--from", "rgb")
    assert result.exit_code == 2
    assert f"the pattern '{pattern}' matches no file or folder" in result.output
    assert not (tmp_path / "out").exists()


def test_missing_path_is_a_usage_error(tmp_path):
    result = run("convert", tmp_path / "nope.json", tmp_path / "out")
    assert result.exit_code == 2 and f"'{tmp_path / 'nope.json'}' does not exist" in result.output


def test_source_path_type(tmp_path):
    kind = SourcePath()
    (tmp_path / "x[1].png").write_bytes(b"")  # an existing path is taken as it is, even with glob characters
    assert kind.convert(str(tmp_path / "x[1].png"), None, None) == str(tmp_path / "x[1].png")
    assert kind.convert(str(tmp_path / "*.png"), None, None) == str(tmp_path / "*.png")
    assert is_pattern("a/*.png") and is_pattern("a/?.png") and is_pattern("a/[ab].png") and not is_pattern("a/b.png")


def test_pattern_expansion_and_root(tmp_path):
    from pathlib import Path

    from segconvert.io.sources import expand_pattern, is_local_pattern, pattern_root

    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ("a/x.png", "a/b/y.png", "a/b/z.txt"):
        (tmp_path / p).write_bytes(b"")
    assert expand_pattern(tmp_path / "a" / "**" / "*.png") == [tmp_path / "a" / "b" / "y.png", tmp_path / "a" / "x.png"]
    assert expand_pattern(tmp_path / "a" / "*") == [tmp_path / "a" / "x.png"]  # folders are not matches
    assert pattern_root(tmp_path / "a" / "**" / "*.png") == tmp_path / "a"
    assert pattern_root("gtFine/val/*/*_instanceIds.png") == Path("gtFine/val")
    assert pattern_root("*.png") == Path(".")
    (tmp_path / "x[1].png").write_bytes(b"")
    assert not is_local_pattern(tmp_path / "x[1].png")  # an existing path is that path
    assert is_local_pattern(tmp_path / "*.png") and not is_local_pattern("s3://bucket/*.png")
