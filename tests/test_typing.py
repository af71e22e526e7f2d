"""The public API modules pass `mypy --strict` (configured in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT


def test_public_api_passes_mypy_strict(tmp_path):
    pytest.importorskip("mypy")
    if shutil.which("mypy") is None and not (ROOT / ".venv" / "bin" / "mypy").exists():
        pytest.skip("mypy not installed")
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (ROOT / "segconvert" / "py.typed").exists()
