"""Packaging check: every converters/*.py is in the wheel as segconvert/converters/*.py
(a module missing from the package list would be silently absent from a normal install)."""

import sys
import zipfile
from pathlib import Path

root = Path(__file__).resolve().parents[1]
(wheel,) = Path(sys.argv[1]).glob("segconvert-*.whl")
names = set(zipfile.ZipFile(wheel).namelist())
want = {f"segconvert/converters/{p.name}" for p in (root / "converters").glob("*.py")}
want |= {f"segconvert/{p.relative_to(root / 'segconvert').as_posix()}"
         for p in (root / "segconvert").rglob("*.py") if "__pycache__" not in p.parts}
missing = sorted(want - names)
stray = sorted(n for n in names if n.startswith("converters/"))
if missing or stray:
    sys.exit(f"wheel {wheel.name}: missing {missing}, stray top-level {stray}")
print(f"wheel {wheel.name}: {len(want)} modules present, no top-level 'converters'")
