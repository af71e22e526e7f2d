"""The colour and class tables of the ``rgb`` reader, built from its options.

Everything that depends only on the options (the colour table, the class table, the
value lookup table) is built once per process from a small, hashable :class:`Spec`
that every item carries; so an item pickles to a path, a name and a few option
values, and a worker rebuilds the tables on its first item. Colour tables come from
a ``--colormap`` file (JSON ``{label: [r, g, b] | "#rrggbb"}`` or CamVid's
``label_colors.txt``) or a built-in palette (``rgb_palettes``); class names for
``palette``/``id``/``ade20k`` from ``--labels``.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segconvert.errors import SourceError
from segconvert.ir import Category

ENCODINGS = ("colormap", "palette", "id", "ade20k")
BUILTINS = ("voc", "cityscapes", "camvid", "ade20k", "coco-panoptic")
VOID_NAMES = frozenset({"void", "background", "unlabeled"})
IGNORE_LABEL = "ignore"

Color = tuple[int, int, int]


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Spec:
    """The options that decide how a mask decodes; small and hashable (the table cache key).

    File options hold absolute paths, so a worker with another working directory
    rebuilds the same tables.
    """

    encoding: str = "colormap"
    colormap: str | None = None
    labels: str | None = None
    unknown: str = "error"
    tolerance: int | None = None
    void: str = "background"


@dataclass
class Entry:
    """One class of the table; ``raw`` is its value in the label map (position + 1)."""

    raw: int
    category: Category


@dataclass(eq=False)  # hashed by identity: one object per (options, option files) in build_table
class Table:
    """Everything a worker needs to decode one encoding, built once per process.

    ``color_keys``/``color_raws``: 24-bit colour key → raw id (0 = void) for ``colormap``;
    ``value_lut``: pixel value → raw id for ``palette`` (``None``: the value is the raw id);
    ``labels``: id → label for ``id``/``ade20k``.
    """

    categories: list[Category] | None
    entries: list[Entry]
    ignore_raw: int | None = None
    color_keys: np.ndarray | None = None
    color_raws: np.ndarray | None = None
    color_names: tuple[str, ...] = ()
    value_lut: np.ndarray | None = None
    labels: dict[int, str] | None = None
    label_category: dict[str, int] | None = None

    @property
    def dtype(self) -> np.dtype:
        """Label-map dtype for colormap/palette; its maximum is the "not in the map" sentinel."""
        return np.dtype(np.uint8 if len(self.entries) < 255 else np.uint16)


def _key(c: Color) -> int:
    return int(c[0]) | int(c[1]) << 8 | int(c[2]) << 16


def color_of_key(k: int) -> Color:
    return (k & 255, (k >> 8) & 255, (k >> 16) & 255)


def _is_void(name: str) -> bool:
    return name.strip().lower() in VOID_NAMES


# --------------------------------------------------------------------------- colour tables


@dataclass(frozen=True)
class _Class:
    id: int
    name: str
    color: Color | None
    isthing: bool = False
    supercategory: str | None = None
    void: bool = False


def _builtin(name: str) -> tuple[list[_Class], list[_Class]]:
    """(classes, extra colour-only entries) of a built-in table, in the dataset's order."""
    from segconvert.converters import rgb_palettes as P

    if name == "voc":
        return [_Class(i, n, c, void=(i == 0)) for i, n, c in P.VOC], []
    if name == "cityscapes":
        classes = [
            # the void labels (black, ids 0..4) mean "no class"; license plate (id -1) is
            # never drawn in the id images and shares car's colour
            _Class(i, n, c, isthing=t, void=(c == (0, 0, 0)))
            for n, i, t, c in P.CITYSCAPES
            if i >= 0
        ]
        return classes, []
    if name == "camvid":
        return [_Class(i, n, c, void=_is_void(n)) for i, (c, n) in enumerate(P.CAMVID, start=1)], []
    if name == "ade20k":
        return [_Class(i, n, c) for i, n, c in P.ADE20K], [_Class(0, "other", (0, 0, 0), void=True)]
    if name == "coco-panoptic":
        classes = [_Class(i, n, c, isthing=t, supercategory=s) for i, n, t, s, c in P.COCO_PANOPTIC]
        return classes, [_Class(0, "void", (0, 0, 0), void=True)]
    raise AssertionError(name)


def _parse_color(value: Any, label: str, file: Path) -> Color:
    if isinstance(value, str):
        m = re.fullmatch(r"#?([0-9a-fA-F]{6})", value.strip())
        if m:
            h = m.group(1)
            return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    elif (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        return (value[0], value[1], value[2])
    raise SourceError(
        f"colour of {label!r} must be [r, g, b] (0..255) or \"#rrggbb\", got {value!r}", file=file
    )


def _colormap_file(path: Path) -> list[_Class]:
    """JSON ``{label: [r, g, b] | "#rrggbb"}`` or CamVid ``label_colors.txt`` ("R G B label")."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SourceError("colormap file not found (built-in names: " + ", ".join(BUILTINS) + ")",
                          file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read the colormap: {exc}", file=path) from None
    pairs: list[tuple[str, Color]] = []
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"colormap is not valid JSON: {exc}", file=path) from None
        pairs = [(str(k), _parse_color(v, str(k), path)) for k, v in doc.items()]
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split(None, 3)
            try:
                rgb = tuple(int(p) for p in parts[:3])
                label = parts[3].strip()
            except (ValueError, IndexError):
                err = f"line {n}: expected 'R G B label', got {line.strip()!r}"
                raise SourceError(err, file=path) from None
            pairs.append((label, _parse_color(list(rgb), label, path)))
    if not pairs:
        raise SourceError("the colormap lists no colours", file=path)
    classes: list[_Class] = []
    seen_color: dict[Color, str] = {}
    seen_name: set[str] = set()
    for label, color in pairs:
        if color in seen_color:
            raise SourceError(f"{label!r} and {seen_color[color]!r} have the same colour {color}", file=path)
        if label in seen_name:
            raise SourceError(f"label {label!r} appears twice", file=path)
        seen_color[color] = label
        seen_name.add(label)
        classes.append(_Class(0, label, color, void=_is_void(label)))
    pos = 0
    numbered = []
    for c in classes:  # category ids 1..K in file order, void entries not counted
        if not c.void:
            pos += 1
        numbered.append(_Class(0 if c.void else pos, c.name, c.color, void=c.void))
    return numbered


def _labels_file(path: Path) -> dict[int, str]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise SourceError("labels file not found", file=path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"cannot read the labels JSON: {exc}", file=path) from None
    if not isinstance(doc, dict):
        raise SourceError('labels must be a JSON object {"id": "label"}', file=path)
    out: dict[int, str] = {}
    for k, v in doc.items():
        try:
            out[int(k)] = str(v)
        except ValueError:
            raise SourceError(f"labels key {k!r} is not an integer id", file=path) from None
        if int(k) < 0:
            raise SourceError(f"labels key {k!r} is negative", file=path)
    return out


def _entries(classes: list[_Class], spec: Spec) -> tuple[list[Entry], int | None]:
    """Category table (non-void classes in order, then ``ignore`` if asked for)."""
    entries: list[Entry] = []
    for c in classes:
        if c.void:
            continue
        cat = Category(id=c.id, name=c.name, isthing=c.isthing, supercategory=c.supercategory, color=c.color)
        entries.append(Entry(len(entries) + 1, cat))
    ignore_raw = None
    if spec.unknown == "ignore" or spec.void == "ignore":
        next_id = max((e.category.id for e in entries), default=0) + 1
        ignore_raw = len(entries) + 1
        entries.append(Entry(ignore_raw, Category(id=next_id, name=IGNORE_LABEL, isthing=False)))
    return entries, ignore_raw


def _stamp(spec: Spec) -> tuple[tuple[int, int], ...]:
    """(mtime, size) of the option files, so an edited colormap is not served from the cache."""
    out = []
    for f in (spec.colormap, spec.labels):
        if f is not None and f not in BUILTINS:
            try:
                st = os.stat(f)
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((0, -1))
    return tuple(out)


def build_table(spec: Spec) -> Table:
    """The tables for one set of options (main process: validation + categories; workers: decoding)."""
    return _build_table(spec, _stamp(spec))


@functools.lru_cache(maxsize=8)
def _build_table(spec: Spec, stamp: tuple[tuple[int, int], ...]) -> Table:
    if spec.encoding not in ENCODINGS:
        raise SourceError(f"unknown --encoding {spec.encoding!r}; choose one of {', '.join(ENCODINGS)}")
    if spec.tolerance is not None and spec.encoding != "colormap":
        raise SourceError("--tolerance only applies to --encoding colormap")
    if spec.labels is not None and spec.encoding == "colormap":
        raise SourceError(
            "--labels is for --encoding palette, id or ade20k; a colormap names its own classes"
        )
    labels = _labels_file(Path(spec.labels)) if spec.labels is not None else None

    if spec.encoding == "colormap":
        if spec.colormap is None:
            raise SourceError(
                "--encoding colormap needs --colormap FILE (JSON or label_colors.txt) or a built-in name: "
                + ", ".join(BUILTINS)
            )
        if spec.colormap in BUILTINS:
            classes, extra = _builtin(spec.colormap)
        else:
            classes, extra = _colormap_file(Path(spec.colormap)), []
        entries, ignore_raw = _entries(classes, spec)
        raw_of_class = {}
        it = iter(entries)
        for c in classes:
            if not c.void:
                raw_of_class[id(c)] = next(it).raw
        keys: dict[int, int] = {}
        names: dict[int, str] = {}
        for c in [*classes, *extra]:
            assert c.color is not None
            k = _key(c.color)
            if k in keys:  # published tables repeat a few colours: the first class keeps it
                continue
            keys[k] = 0 if c.void else raw_of_class[id(c)]
            names[k] = c.name
        if spec.colormap == "voc":
            from segconvert.converters.rgb_palettes import VOC_BOUNDARY

            k = _key(VOC_BOUNDARY[2])
            keys[k] = ignore_raw if spec.void == "ignore" and ignore_raw else 0
            names[k] = VOC_BOUNDARY[1]
        order = list(keys)
        return Table(
            categories=[e.category for e in entries],
            entries=entries,
            ignore_raw=ignore_raw,
            color_keys=np.array(order, np.uint32),
            color_raws=np.array([keys[k] for k in order], np.int64),
            color_names=tuple(names[k] for k in order),
        )

    if spec.encoding == "palette":
        return _palette_table(spec, labels)

    # id / ade20k: instances, classes only by label
    if labels is None:
        return Table(categories=None, entries=[], labels=None)
    label_category: dict[str, int] = {}
    if spec.encoding == "ade20k":
        cats = [Category(id=i, name=n, isthing=True) for i, n in sorted(labels.items()) if i > 0]
    else:
        cats = []
        for n in labels.values():
            if n not in label_category:
                label_category[n] = len(cats) + 1
                cats.append(Category(id=len(cats) + 1, name=n, isthing=True))
    return Table(categories=cats, entries=[], labels=labels, label_category=label_category)


def _palette_table(spec: Spec, labels: dict[int, str] | None) -> Table:
    """Value → raw id table for index masks: from --labels, a built-in, or the identity."""
    if labels is not None:
        classes = [_Class(i, n, None, void=_is_void(n)) for i, n in sorted(labels.items())]
        boundary = None
    elif spec.colormap is None:
        # no names: value v is class "class-v"; raw id = value, categories 1..255
        cats = [Category(id=v, name=f"class-{v}", isthing=False) for v in range(1, 256)]
        return Table(categories=cats, entries=[Entry(c.id, c) for c in cats])
    elif spec.colormap in ("voc", "cityscapes", "ade20k", "coco-panoptic"):
        classes, extra = _builtin(spec.colormap)
        classes = classes + [c for c in extra if c.id not in {k.id for k in classes}]
        boundary = 255 if spec.colormap == "voc" else None
    else:
        raise SourceError(
            "--encoding palette takes class names from --labels FILE or --colormap voc|cityscapes|ade20k|"
            "coco-panoptic (CamVid and colormap files have no class indices)"
        )
    entries, ignore_raw = _entries(classes, spec)
    top = max(c.id for c in classes)
    if top >= 65536:
        raise SourceError(f"class id {top} does not fit a 16-bit index mask")
    dtype = np.uint8 if len(entries) < 255 else np.uint16
    sentinel = np.iinfo(dtype).max
    fill = {"error": sentinel, "background": 0, "ignore": ignore_raw}[spec.unknown]
    lut = np.full(65536, fill, dtype)  # 16-bit masks index it too; 64-128 kB
    lut[0] = 0  # 0 is background in index masks unless --labels names it
    it = iter(entries)
    for c in classes:
        lut[c.id] = 0 if c.void else next(it).raw
    if boundary is not None:
        lut[boundary] = ignore_raw if spec.void == "ignore" and ignore_raw else 0
    cats = [e.category for e in entries]
    return Table(categories=cats, entries=entries, ignore_raw=ignore_raw, value_lut=lut)
