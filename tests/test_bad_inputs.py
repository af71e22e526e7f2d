"""fixtures/bad/: one hostile input per row of cases.json, each with the message and exit
status it must give (made by fixtures/bad/make_cases.py). Run in-process with --jobs 1, so
numpy's allocations are traced: a decompression bomb must fail without allocating its size."""

from __future__ import annotations

import json
import os
import shutil
import tracemalloc

import pytest
from click.testing import CliRunner
from conftest import FIXTURES

from segconvert.interfaces.cli import main

BAD = FIXTURES / "bad"
CASES = json.loads((BAD / "cases.json").read_text())
ALLOWED_PEAK = 64 << 20  # bytes traced while converting one hostile item


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input_gives_its_message(tmp_path, case):
    folder = BAD / case["name"]
    out = tmp_path / "out"
    if case["output"]:  # an OUTPUT left in a state the run cannot write into
        shutil.copytree(folder / case["output"], out)
    cwd = os.getcwd()
    os.chdir(folder)  # the cases name their files relative to their folder
    tracemalloc.start()
    try:
        result = CliRunner().invoke(main, ["convert", case["source"], str(out), "--from", case["from"],
                                           "--jobs", "1", *case["args"]])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        os.chdir(cwd)
    assert result.exit_code == case["exit"], result.output
    assert case["expect"] in result.output, result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output
    assert "b'" not in result.output and 'b"' not in result.output  # no Python bytes repr
    assert peak < ALLOWED_PEAK, f"{peak:,} bytes allocated"
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_every_case_folder_is_in_the_table():
    folders = {p.name for p in BAD.iterdir() if p.is_dir()}
    assert folders == {c["name"] for c in CASES}
