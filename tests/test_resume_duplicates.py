"""Resuming a run whose reader failed a duplicate reference_id itself (CVAT, SA-1B, Label
Studio yield a FailedItem naming the first item): the re-run must report the duplicate again
and write each item once.

Was a bug in ``pipeline.run.tasks``: a FailedItem whose reference_id is in the journal (its
first item converted) was reused as "done before" -- with ``--jobs 1`` the duplicate's
failure vanished and annotations.jsonl got the first item's line once per duplicate; with
``--jobs 2`` the run died with ``KeyError``. A FailedItem is never checked for reuse now.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from segconvert.interfaces.cli import main

XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
<image id="0" name="a.jpg" width="8" height="6"><box label="car" occluded="0" xtl="1" ytl="1" xbr="4" ybr="4"/></image>
<image id="1" name="a.png" width="8" height="6"/>
<image id="2" name="b.jpg" width="8" height="6"/>
</annotations>
"""


def convert(src: Path, out: Path, jobs: str):
    return CliRunner().invoke(main, ["convert", str(src), str(out), "--from", "cvat", "--jobs", jobs])


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_rerun_reports_the_duplicate_again_and_writes_each_item_once(tmp_path, jobs):
    src = tmp_path / "a.xml"
    src.write_text(XML)
    out = tmp_path / "out"
    first = convert(src, out, "1")
    assert first.exit_code == 1 and "failed 1 of 3" in first.output
    again = convert(src, out, jobs)
    assert again.exception is None or isinstance(again.exception, SystemExit), again.exception
    assert again.exit_code == 1 and "failed 1 of 3" in again.output and "already used" in again.output
    refs = [json.loads(line)["reference_id"] for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert refs == ["a", "b"]
