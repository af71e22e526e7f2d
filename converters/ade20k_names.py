"""ADE20K class names from the dataset's own files, next to each ``*_seg.png``.

The full ADE20K release has ~3,000 classes and no fixed table a ``--labels`` file could
hold, but every image carries the names of its objects (read in the worker, per image):

- **2021 release** (``ADE20K_2021_17_01``): ``<image>.json``, ``annotation.object[*]``
  with ``name`` (the WordNet-corrected class name, one per class), ``name_ndx`` (the
  class index), ``parts.part_level`` (0 = a whole object; parts live in
  ``_parts_N.png``, not in ``_seg.png``). The class value of ``_seg.png``
  (R/10·256 + G, as CSAILVision's ``utils_ade20k.loadAde20K`` reads it) IS ``name_ndx``,
  never ``name_ndx`` + 1: both are 1-based indices into the dataset's class list
  (``index_ade20k.pkl`` ``objectnames``, 0-based in Python, so class value c and
  ``name_ndx`` c both name ``objectnames[c - 1]``; value 0 is "not annotated"). Checked
  against the toolkit's own sample (CSAILVision/ADE20K ``dataset/ADE20K_2021_17_01/.../
  ADE_train_00016869.json``: car has ``name_ndx`` 401, and ``notebooks/
  ade20k_starter.ipynb`` prints the same image's car as ``objectnames[400]``). A class
  value no object names keeps ``class-<value>`` with a warning; no other base is tried
  (an earlier per-image guess between the two bases could name a class wrongly).
- **2016 release** (``ADE20K_2016_07_26``): ``<image>_atr.txt``, lines
  ``instance # part_level # occluded # name # raw name # attributes``, where the
  instance number is the rank of the pixel's B value among the image's distinct B
  values, 0-based (MATLAB ``loadAde20K``: ``[~,~,k] = unique(B); k - 1``). A class takes
  the name of the part-level-0 instances over it.

The SceneParsing benchmark (``ADEChallengeData2016``) is different: its annotations are
index masks (value = class 1..150, 0 = other) named by ``objectInfo150.csv``, which
``label_files`` reads (``--encoding palette --labels objectInfo150.csv``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SEG_SUFFIX = "_seg.png"


def _companion(mask_path: str, suffix: str) -> Path | None:
    if not mask_path.endswith(SEG_SUFFIX):
        return None
    p = Path(mask_path[: -len(SEG_SUFFIX)] + suffix)
    return p if p.is_file() else None


def names_2021(json_path: Path, classes: set[int]) -> tuple[dict[int, str], list[str]]:
    """Class value -> name from a 2021 per-image JSON (value = ``name_ndx`` of its part-level-0
    objects), and warnings for class values no object names."""
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8", errors="replace"))
        objects = doc["annotation"]["object"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {}, [f"{json_path}: cannot read the object names ({exc}); classes are named class-<value>"]
    by_ndx: dict[int, str] = {}
    for obj in objects if isinstance(objects, list) else []:
        try:
            level = int(obj.get("parts", {}).get("part_level", 0))
            ndx, name = int(obj["name_ndx"]), str(obj["name"])
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if level == 0:
            by_ndx.setdefault(ndx, name)
    names = {c: by_ndx[c] for c in classes if c in by_ndx}  # class value = name_ndx (module doc)
    missing = sorted(classes - names.keys())
    warnings = []
    if missing:
        warnings.append(f"{json_path}: no object names class value(s) {', '.join(map(str, missing[:10]))}"
                        f"{' ...' if len(missing) > 10 else ''}; they are class-<value>")
    return names, warnings


def names_2016(atr_path: Path, raws: list[int], b_values: np.ndarray) -> tuple[dict[int, str], list[str]]:
    """Class value -> name from a 2016 ``_atr.txt``; ``b_values``: the image's distinct B values, sorted."""
    try:
        lines = atr_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return {}, [f"{atr_path}: cannot read the object names ({exc}); classes are named class-<value>"]
    by_instance: dict[int, str] = {}
    for line in lines:
        cols = [c.strip() for c in line.split("#")]
        if len(cols) < 4:
            continue
        try:
            instance, level = int(cols[0]), int(cols[1])
        except ValueError:
            continue
        if level == 0:
            by_instance[instance] = cols[3]
    rank = {int(b): k for k, b in enumerate(b_values.tolist())}
    names: dict[int, str] = {}
    conflicts: set[int] = set()
    for raw in raws:
        cls, b = raw >> 8, raw & 255
        name = by_instance.get(rank.get(b, -1))
        if name is None:
            continue
        if names.setdefault(cls, name) != name:
            conflicts.add(cls)
    warnings = [f"{atr_path}: class value {c} is named both {names[c]!r} and another name by its instances; "
                f"it keeps {names[c]!r}" for c in sorted(conflicts)]
    return names, warnings


def image_names(mask_path: str, raws: list[int], b_values: np.ndarray) -> tuple[dict[int, str], list[str]]:
    """Names of the classes of one ADE20K ``_seg.png`` from its JSON (2021) or ``_atr.txt`` (2016)."""
    classes = {r >> 8 for r in raws}
    found = _companion(mask_path, ".json")
    if found is not None:
        return names_2021(found, classes)
    found = _companion(mask_path, "_atr.txt")
    if found is not None:
        return names_2016(found, raws, b_values)
    return {}, []
