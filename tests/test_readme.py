"""Every Python example in the README runs, from a folder laid out like the repository root."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 7


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """fixtures/ as in the repository, plus out/example made by the quick-start command."""
    work = tmp_path_factory.mktemp("readme")
    (work / "fixtures").symlink_to(ROOT / "fixtures")
    subprocess.run([sys.executable, "-m", "segconvert", "convert", "fixtures/coco-panoptic/panoptic.json",
                    "out/example", "--from", "coco-panoptic"], cwd=work, check=True, capture_output=True)
    return work


@pytest.mark.parametrize("k", range(len(BLOCKS)), ids=lambda k: f"block{k}")
def test_readme_example_runs(workdir, k):
    pytest.importorskip("nucleus") if "nucleus" in BLOCKS[k] else None
    env = {key: v for key, v in os.environ.items() if not key.startswith("NUCLEUS_")}  # never upload from a test
    result = subprocess.run([sys.executable, "-c", BLOCKS[k]], cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"README example {k} failed:\n{BLOCKS[k]}\n{result.stderr}"
    assert result.stdout.strip(), "each example prints what it made"
