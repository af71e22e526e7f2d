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
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segconvert.codecs.shapes import IGNORE_LABEL, is_reserved_label
from segconvert.errors import SourceError, opt
from segconvert.io.sources import UrlPath, is_url, location
from segconvert.model.ir import Category

ENCODINGS = ("colormap", "palette", "id", "ade20k", "class-instance", "step")
BUILTINS = ("voc", "cityscapes", "camvid", "ade20k", "coco-panoptic")
#: class tables by index only (no colour table): Cityscapes train ids, KITTI-STEP, MOTChallenge-STEP
INDEX_ONLY_BUILTINS = ("cityscapes-train", "kitti-step", "motchallenge-step")
#: builtins that number their classes (usable as the class table of index masks)
INDEXED_BUILTINS = ("voc", "cityscapes", "ade20k", "coco-panoptic", *INDEX_ONLY_BUILTINS)
#: every built-in table name (option values that are not files)
ALL_BUILTINS = (*BUILTINS, *INDEX_ONLY_BUILTINS)
#: ``--encoding step``'s class table when --labels is not given
STEP_DEFAULT_LABELS = "kitti-step"
VOID_VALUE = 255  # an index-mask value the table does not name: void (Pascal VOC's boundary)

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
    divisor: int | None = None
    below_divisor: str = "class"
    instances: bool = False  # --instances DIR: class masks paired with instance masks


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
    ``labels``: id → label for ``id``/``ade20k``; ``classes``: class id → class for
    ``class-instance`` (``None``: no table, every class is ``class-<id>``).
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
    classes: dict[int, _Class] | None = None

    @property
    def dtype(self) -> np.dtype:
        """Label-map dtype for colormap/palette; its maximum is the "not in the map" sentinel."""
        return np.dtype(np.uint8 if len(self.entries) < 255 else np.uint16)


def _key(c: Color) -> int:
    return int(c[0]) | int(c[1]) << 8 | int(c[2]) << 16


def color_of_key(k: int) -> Color:
    return (k & 255, (k >> 8) & 255, (k >> 16) & 255)


def _is_void(name: str) -> bool:
    """Background or void by name (the one table in ``segconvert.codecs.shapes``): not a class."""
    return is_reserved_label(name)


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
    if name in INDEX_ONLY_BUILTINS:  # train ids; 255 is void (the STEP PNGs' R = 255)
        names, things = {
            "cityscapes-train": (P.CITYSCAPES_TRAIN, P.CITYSCAPES_TRAIN_THINGS),
            "kitti-step": (P.CITYSCAPES_TRAIN, P.KITTI_STEP_THINGS),
            "motchallenge-step": (P.MOTCHALLENGE_STEP, P.MOTCHALLENGE_STEP_THINGS),
        }[name]
        classes = [_Class(i, n, None, isthing=i in things) for i, n in enumerate(names)]
        return classes + [_Class(VOID_VALUE, "void", None, void=True)], []
    if name == "camvid":
        return [_Class(i, n, c, void=_is_void(n)) for i, (c, n) in enumerate(P.CAMVID, start=1)], []
    if name == "ade20k":
        return [_Class(i, n, c) for i, n, c in P.ADE20K], [_Class(0, "other", (0, 0, 0), void=True)]
    if name == "coco-panoptic":
        classes = [_Class(i, n, c, isthing=t, supercategory=s) for i, n, t, s, c in P.COCO_PANOPTIC]
        return classes, [_Class(0, "void", (0, 0, 0), void=True)]
    raise AssertionError(name)


def _colormap_file(path: Path | UrlPath) -> list[_Class]:
    """A colour table from any label file ``label_files`` knows that gives colours."""
    from segconvert.codecs import label_files

    if not path.is_file():
        raise SourceError("colormap file not found (built-in names: " + ", ".join(BUILTINS) + ")", file=path)
    kind, rows = label_files.read_label_file(path)
    missing = [r.name for r in rows if r.color is None]
    if missing:
        raise SourceError(
            f"{len(missing)} class(es) have no colour ({', '.join(map(repr, missing[:5]))}); a colour mask "
            f"needs a colour per class (an index mask: {opt('encoding', 'palette')} "
            f"{opt('labels', 'FILE')})", file=path,
        )
    classes: list[_Class] = []
    seen_color: dict[Color, str] = {}
    for r in rows:
        assert r.color is not None
        if r.color in seen_color:
            raise SourceError(f"{r.name!r} and {seen_color[r.color]!r} have the same colour {r.color}", file=path)
        seen_color[r.color] = r.name
        classes.append(_Class(r.id, r.name, r.color, isthing=bool(r.isthing), void=_is_void(r.name)))
    if kind in ("colormap-json", "label-colors-txt"):  # no ids of their own: 1..K in file order, void skipped
        pos = 0
        numbered = []
        for c in classes:
            if not c.void:
                pos += 1
            numbered.append(_Class(0 if c.void else pos, c.name, c.color, void=c.void))
        return numbered
    return classes


def _labels_file(path: Path | UrlPath) -> list[_Class]:
    """Classes by id from ``--labels``: JSON ``{"id": "name"}`` or any ``label_files`` kind."""
    from segconvert.codecs import label_files

    rows = label_files.load_colour_table(path)
    return [_Class(r.id, r.name, r.color, isthing=bool(r.isthing), void=_is_void(r.name))
            for r in rows if r.id >= 0]


def _index_classes(spec: Spec) -> list[_Class] | None:
    """The class table of index masks (palette, class-instance): --labels file or built-in; None: none."""
    if spec.encoding == "step" and spec.labels is None:
        spec = Spec(encoding="step", labels=STEP_DEFAULT_LABELS)
    name = spec.labels if spec.labels in INDEXED_BUILTINS else None
    if name is None and spec.labels is None and spec.colormap is not None:
        if spec.colormap not in INDEXED_BUILTINS:
            raise SourceError(
                f"{opt('encoding', spec.encoding)} takes class names from {opt('labels', 'FILE')} or the built-in "
                + "|".join(INDEXED_BUILTINS) + " (CamVid and colormap files have no class indices)"
            )
        name = spec.colormap
    if name is not None:
        classes, extra = _builtin(name)
        return classes + [c for c in extra if c.id not in {k.id for k in classes}]
    if spec.labels is not None:
        return _labels_file(location(spec.labels))
    return None


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
        if f is not None and f not in ALL_BUILTINS and not is_url(f):  # an object's edits: not seen in a run
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
        raise SourceError(f"unknown {opt('encoding', spec.encoding)}; choose one of {', '.join(ENCODINGS)}")
    if spec.tolerance is not None and spec.encoding != "colormap":
        raise SourceError(f"{opt('tolerance')} only applies to {opt('encoding', 'colormap')}")
    if spec.labels is not None and spec.encoding == "colormap":
        raise SourceError(
            f"{opt('labels')} is for {opt('encoding', 'palette')}, class-instance, id or ade20k; "
            "a colormap names its own classes"
        )
    if spec.divisor is not None and spec.encoding != "class-instance" and not spec.instances:
        raise SourceError(f"{opt('divisor')} only applies to {opt('encoding', 'class-instance')} or "
                          f"{opt('instances')} masks")
    if spec.instances and spec.encoding not in ("colormap", "palette"):
        raise SourceError(f"{opt('instances')} pairs class masks ({opt('encoding', 'colormap')} or palette) with "
                          "instance masks; "
                          f"{opt('encoding', spec.encoding)} masks carry their instances themselves")
    if spec.encoding == "step" and spec.colormap is not None:
        raise SourceError(f"{opt('encoding', 'step')} takes class names from {opt('labels')} (default "
                          f"{STEP_DEFAULT_LABELS}), not {opt('colormap')}")
    if spec.below_divisor not in ("class", "instance"):
        raise SourceError(f"{opt('below-divisor')} must be class or instance, not {spec.below_divisor!r}")

    if spec.encoding == "colormap":
        if spec.colormap is None:
            raise SourceError(
                f"{opt('encoding', 'colormap')} needs {opt('colormap', 'FILE')} (JSON or label_colors.txt) "
                "or a built-in name: "
                + ", ".join(BUILTINS)
            )
        if spec.colormap in BUILTINS:
            classes, extra = _builtin(spec.colormap)
        else:
            classes, extra = _colormap_file(location(spec.colormap)), []
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
        return _palette_table(spec, _index_classes(spec))
    if spec.encoding in ("class-instance", "step"):
        return _class_instance_table(spec, _index_classes(spec))

    # id / ade20k: instances, classes only by label
    found = _index_classes(spec) if spec.labels is not None else None
    if found is None:
        return Table(categories=None, entries=[], labels=None)
    labels = {c.id: c.name for c in found}
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


def _class_instance_table(spec: Spec, classes: list[_Class] | None) -> Table:
    """Classes by id for class·D + instance masks (and STEP's R = class); ``None`` classes:
    names ``class-<id>``."""
    if spec.encoding == "step":
        return _step_table(spec, classes)
    if spec.divisor is None:
        raise SourceError(
            f"{opt('encoding', 'class-instance')} needs {opt('divisor', 'D')}: 1000 for Cityscapes "
            "*_instanceIds.png and MOTS; 256 for KITTI instance and Mapillary Vistas v1.2 instance PNGs "
            f"(KITTI-STEP's RGB PNGs: {opt('encoding', 'step')})"
        )
    if not 2 <= spec.divisor <= 65536:
        raise SourceError(f"{opt('divisor')} must be in 2..65536, not {spec.divisor}")
    if classes is None:
        return Table(categories=None, entries=[], classes=None)
    by_id = {}
    for c in classes:
        by_id.setdefault(c.id, c)
    cats = [Category(id=c.id, name=c.name, isthing=c.isthing, supercategory=c.supercategory)
            for c in sorted(by_id.values(), key=lambda c: c.id) if not c.void]
    if spec.unknown == "ignore":
        cats.append(Category(id=max((c.id for c in cats), default=0) + 1, name=IGNORE_LABEL, isthing=False))
    return Table(categories=cats, entries=[], classes=by_id)


def _step_table(spec: Spec, classes: list[_Class] | None) -> Table:
    """``--encoding step``: classes by R (0..254); R = 255 is void (background, or the segment
    ``ignore`` with ``--void ignore``) unless the table names it as a class."""
    assert classes is not None  # STEP_DEFAULT_LABELS when --labels is not given
    by_id: dict[int, _Class] = {}
    for c in classes:
        if c.id > VOID_VALUE:
            raise SourceError(f"class id {c.id} ({c.name!r}) does not fit the R channel of STEP PNGs (0..255)")
        by_id.setdefault(c.id, c)
    by_id.setdefault(VOID_VALUE, _Class(VOID_VALUE, "void", None, void=True))
    cats = [Category(id=c.id, name=c.name, isthing=c.isthing, supercategory=c.supercategory)
            for c in sorted(by_id.values(), key=lambda c: c.id) if not c.void]
    if spec.unknown == "ignore" or spec.void == "ignore":
        cats.append(Category(id=max((c.id for c in cats), default=0) + 1, name=IGNORE_LABEL, isthing=False))
    return Table(categories=cats, entries=[], classes=by_id)


def _palette_table(spec: Spec, classes: list[_Class] | None) -> Table:
    """Value → raw id table for index masks: from --labels, a built-in, or the identity.

    0 is background unless the table names it as a class; a value the table does not
    name is --unknown's, except 255, which is void (``--void``) unless named: Pascal
    VOC's boundary ring, labelme2voc's ``__ignore__``, Cityscapes' trainId 255.
    """
    if classes is None:
        # no names: value v is class "class-v"; raw id = value, categories 1..254, 255 void
        cats = [Category(id=v, name=f"class-{v}", isthing=False) for v in range(1, VOID_VALUE)]
        if spec.void == "ignore":
            cats.append(Category(id=VOID_VALUE, name=IGNORE_LABEL, isthing=False))
        return Table(categories=cats, entries=[Entry(c.id, c) for c in cats])
    entries, ignore_raw = _entries(classes, spec)
    top = max(c.id for c in classes)
    if top >= 65536:
        raise SourceError(f"class id {top} does not fit a 16-bit index mask")
    dtype = np.uint8 if len(entries) < 255 else np.uint16
    sentinel = np.iinfo(dtype).max
    fill = {"error": sentinel, "background": 0, "ignore": ignore_raw}[spec.unknown]
    lut = np.full(65536, fill, dtype)  # 16-bit masks index it too; 64-128 kB
    lut[0] = 0  # 0 is background in index masks unless the table names it
    lut[VOID_VALUE] = ignore_raw if spec.void == "ignore" and ignore_raw else 0
    it = iter(entries)
    for c in classes:
        lut[c.id] = 0 if c.void else next(it).raw
    cats = [e.category for e in entries]
    return Table(categories=cats, entries=entries, ignore_raw=ignore_raw, value_lut=lut)
