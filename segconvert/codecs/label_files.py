"""Class tables as other tools write them, read through one entry point.

:func:`load_colour_table` recognises the kind of file and returns its classes as
:class:`LabelEntry` rows in the file's order, each with the value the class has in
index (palette) masks, its colour when the file gives one, and whether it has
instances when the file says so. Readers that take ``--colormap`` / ``--labels`` (the
``rgb`` reader, the VOC reader, and the shape readers through
:func:`segconvert.codecs.shapes.load_label_table`) call it instead of parsing files
themselves; it lives in the core for the last.

Kinds recognised (by content, the file name only breaking ties):

- ``colormap-json``: ``{label: [r, g, b] | "#rrggbb"}`` (segconvert's own); ids = position.
- ``labels-json``: ``{"id": "name"}``; ids = the keys; no colours.
- ``datumaro``: Datumaro's ``dataset_meta.json``: ``label_map`` ``{"i": name}`` with
  ``segmentation_colors[i]`` (as Datumaro's ``parse_meta_file`` pairs them), or a plain
  ``labels`` list; ids = ``i`` (list position for ``labels``).
- ``mapillary``: Mapillary Vistas ``config_v1.2.json`` / ``config_v2.0.json``:
  ``labels[*]`` with ``name``, ``readable``, ``color``, ``instances``; ids = position
  (the value of the class in Vistas' label PNGs); ``name`` (``construction--flat--road``)
  is the label, being unique, ``instances`` is ``isthing``.
- ``labelmap-txt``: CVAT / Datumaro VOC ``labelmap.txt``, lines ``name:r,g,b:parts:actions``
  (``#`` comments; an empty colour is ``None``); ids = line position (VOC's palette index).
- ``label-colors-txt``: CamVid ``label_colors.txt``, lines ``R G B name``; ids = position + 1
  (CamVid's own numbering is by colour; there is no index mask).
- ``ade20k-objectinfo``: ADE20K SceneParsing's ``objectInfo150.csv`` (``Idx,Ratio,Train,Val,Name``):
  ids = ``Idx``; the label is the first of the ``;``-separated names (``windowpane;window`` is
  ``windowpane``), as the built-in ``ade20k`` table and mmsegmentation name them.
- ``class-names-txt``: one name per line (labelme2voc's ``labels.txt`` / ``class_names.txt``):
  ids = position, or position - 1 when the first line is ``__ignore__`` (labelme2voc's -1).

Errors are :class:`SourceError` naming the file and, for text files, the line.
Which names mean void/background (``_background_``, Mapillary's ``void--unlabeled``, ...) is
:func:`segconvert.codecs.shapes.label_convention`'s one table, not this module's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from segconvert.errors import SourceError
from segconvert.io.sources import location

Color = tuple[int, int, int]

KINDS = ("colormap-json", "labels-json", "datumaro", "mapillary", "labelmap-txt", "label-colors-txt",
         "ade20k-objectinfo", "class-names-txt")


class LabelEntry(NamedTuple):
    """One class: ``id`` is its value in index masks, ``isthing`` ``None`` when the file does not say."""

    id: int
    name: str
    color: Color | None
    isthing: bool | None = None


def parse_color(value: Any, label: str, file: Path | str) -> Color:
    """``[r, g, b]`` (0..255 integers) or ``"#rrggbb"``; SourceError otherwise."""
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


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SourceError("label file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read the label file: {exc}", file=path) from None


def kind_of(path: Path, text: str) -> str:
    """Which of :data:`KINDS` ``text`` (the content of ``path``) is; SourceError if none."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"not valid JSON: {exc}", file=path) from None
        if not isinstance(doc, dict):
            raise SourceError("a JSON label file must be an object", file=path)
        labels = doc.get("labels")
        if isinstance(doc.get("label_map"), dict) or (
            isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)
        ):
            return "datumaro"
        if isinstance(labels, list) and labels and all(isinstance(x, dict) for x in labels):
            return "mapillary"
        if doc and all(isinstance(v, str) and not re.fullmatch(r"#?[0-9a-fA-F]{6}", v.strip())
                       for v in doc.values()):
            return "labels-json"
        return "colormap-json"
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise SourceError("the label file lists no classes", file=path)
    if re.fullmatch(r"\s*Idx\s*,\s*Ratio\s*,\s*Train\s*,\s*Val\s*,\s*Name\s*", lines[0]):
        return "ade20k-objectinfo"
    if all(re.fullmatch(r"\s*\d+\s+\d+\s+\d+\s+\S.*", ln) for ln in lines):
        return "label-colors-txt"
    if all(":" in ln for ln in lines):
        return "labelmap-txt"
    return "class-names-txt"


def load_colour_table(path: str | Path) -> list[LabelEntry]:
    """The classes of a label file of any kind in :data:`KINDS`, in file order (see the module doc)."""
    return read_label_file(path)[1]


def read_label_file(path: str | Path) -> tuple[str, list[LabelEntry]]:
    """(kind, classes) of a label file: :func:`load_colour_table` plus which of :data:`KINDS` it was."""
    path = location(path)  # a local file, or a URL (a labelmap.txt inside a remote SOURCE)
    text = _read_text(path)
    kind = kind_of(path, text)
    entries = _PARSERS[kind](path, text)
    if not entries:
        raise SourceError("the label file lists no classes", file=path)
    seen: dict[str, int] = {}
    ids: set[int] = set()
    for e in entries:
        if e.name in seen and kind != "labels-json":  # {"id": "name"} may name several ids alike
            raise SourceError(f"label {e.name!r} appears twice", file=path)
        if e.id in ids:
            raise SourceError(f"class id {e.id} appears twice", file=path)
        seen[e.name] = e.id
        ids.add(e.id)
    return kind, entries


def _json(path: Path, text: str) -> Any:
    return json.loads(text)


def _colormap_json(path: Path, text: str) -> list[LabelEntry]:
    doc = _json(path, text)
    return [LabelEntry(i, str(k), parse_color(v, str(k), path)) for i, (k, v) in enumerate(doc.items())]


def _labels_json(path: Path, text: str) -> list[LabelEntry]:
    out = []
    for k, v in _json(path, text).items():
        try:
            i = int(k)
        except ValueError:
            raise SourceError(f"labels key {k!r} is not an integer id", file=path) from None
        if i < 0:
            raise SourceError(f"labels key {k!r} is negative", file=path)
        out.append(LabelEntry(i, str(v), None))
    return sorted(out)


def _datumaro(path: Path, text: str) -> list[LabelEntry]:
    doc = _json(path, text)
    label_map = doc.get("label_map")
    if label_map is None:
        return [LabelEntry(i, str(n), None) for i, n in enumerate(doc.get("labels", []))]
    if not isinstance(label_map, dict):
        raise SourceError("dataset_meta.json: label_map must be an object {\"index\": \"name\"}", file=path)
    colors = doc.get("segmentation_colors") or []
    out = []
    for k, name in label_map.items():
        try:
            i = int(k)
        except ValueError:
            raise SourceError(f"dataset_meta.json: label_map key {k!r} is not an integer", file=path) from None
        color = None
        if colors:
            if not 0 <= i < len(colors):
                raise SourceError(f"dataset_meta.json: label {name!r} (index {i}) has no segmentation_colors "
                                  f"entry (there are {len(colors)})", file=path)
            if colors[i] is not None:
                color = parse_color(list(colors[i]), str(name), path)
        out.append(LabelEntry(i, str(name), color))
    return sorted(out)


def _mapillary(path: Path, text: str) -> list[LabelEntry]:
    out = []
    for i, lab in enumerate(_json(path, text)["labels"]):
        if not isinstance(lab, dict) or "name" not in lab:
            raise SourceError(f"labels[{i}] has no 'name'", file=path)
        color = parse_color(lab["color"], lab["name"], path) if "color" in lab else None
        out.append(LabelEntry(i, str(lab["name"]), color, bool(lab.get("instances", False))))
    return out


def _text_lines(text: str) -> list[tuple[int, str]]:
    return [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), start=1)
            if ln.strip() and not ln.lstrip().startswith("#")]


def _labelmap_txt(path: Path, text: str) -> list[LabelEntry]:
    """As Datumaro's ``parse_label_map``: a name listed twice is an error, the colour may be
    empty; a colour that is not three integers 0..255 is an error (Datumaro asserts)."""
    out = []
    seen: set[str] = set()
    for n, line in _text_lines(text):
        name, _, rest = line.partition(":")
        name = name.strip()
        if not name:
            raise SourceError(f"line {n}: empty label name", file=path)
        if name in seen:
            raise SourceError(f"line {n}: label {name!r} appears twice (already defined above)", file=path)
        seen.add(name)
        color_text = rest.split(":", 1)[0].strip()
        color = None
        if color_text:
            try:
                rgb = [int(v) for v in color_text.split(",")]
            except ValueError:
                rgb = []
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise SourceError(f"line {n}: label {name!r} has colour {color_text!r}, expected r,g,b (0..255)",
                                  file=path)
            color = (rgb[0], rgb[1], rgb[2])
        out.append(LabelEntry(len(out), name, color))
    return out


def _label_colors_txt(path: Path, text: str) -> list[LabelEntry]:
    out = []
    for n, line in _text_lines(text):
        parts = line.split(None, 3)
        try:
            rgb = [int(p) for p in parts[:3]]
            name = parts[3].strip()
        except (ValueError, IndexError):
            raise SourceError(f"line {n}: expected 'R G B label', got {line!r}", file=path) from None
        out.append(LabelEntry(len(out) + 1, name, parse_color(rgb, name, f"{path}:{n}")))
    return out


def _ade20k_objectinfo(path: Path, text: str) -> list[LabelEntry]:
    out = []
    for n, line in _text_lines(text)[1:]:
        cols = line.split(",", 4)
        try:
            idx, name = int(cols[0]), cols[4].strip()
        except (ValueError, IndexError):
            raise SourceError(f"line {n}: expected 'Idx,Ratio,Train,Val,Name', got {line!r}", file=path) from None
        out.append(LabelEntry(idx, name.split(";")[0].strip(), None))
    return out


def _class_names_txt(path: Path, text: str) -> list[LabelEntry]:
    names = [line for _, line in _text_lines(text)]
    start = -1 if names and names[0] == "__ignore__" else 0
    return [LabelEntry(start + i, name, None) for i, name in enumerate(names)]


_PARSERS = {
    "colormap-json": _colormap_json,
    "labels-json": _labels_json,
    "datumaro": _datumaro,
    "mapillary": _mapillary,
    "labelmap-txt": _labelmap_txt,
    "label-colors-txt": _label_colors_txt,
    "ade20k-objectinfo": _ade20k_objectinfo,
    "class-names-txt": _class_names_txt,
}
