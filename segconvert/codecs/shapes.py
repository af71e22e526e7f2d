"""Helpers shared by the readers of drawn shapes (LabelMe, CVAT, COCO, Cityscapes).

These formats name classes by free text, may lack image sizes and draw shapes that can
overlap, fall outside the image or carry broken coordinates; each reader needs the same
answers to those questions, so they live here rather than in one converter that the
others import.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from segconvert.codecs import cocojson, label_files, limits, raster
from segconvert.errors import SourceError, opt
from segconvert.io.paths import allow_outside, climbs_out
from segconvert.io.sources import PathOrUrl, UrlPath, location
from segconvert.model.ir import Category, SegmentInfo

#: suffixes tried when looking for an image by stem in ``--images DIR``
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".JPG", ".JPEG", ".PNG")

# --------------------------------------------------------------------------- reserved label names

#: a label that means "not annotated": its pixels are background 0 (labelme2voc's class 0,
#: VOC's and Cityscapes' unlabeled, Datumaro's and CVAT's "background")
BACKGROUND = "background"
#: a label that means "do not evaluate here": void (labelme2voc's class -1, stored as 255 in its
#: VOC PNGs, like VOC's boundary ring); background 0, or the segment IGNORE_LABEL with --void ignore
VOID = "void"
#: the segment label void pixels get with ``--void ignore``
IGNORE_LABEL = "ignore"

#: THE table of label names (compared stripped and lower-cased) that tools use for background
#: and void instead of a class; every reader and label-file parser asks :func:`label_convention`.
#: Where each name comes from:
#:
#: - ``_background_``: labelme2voc's labels.txt (class 0), labelme's tutorials;
#: - ``background``: torchvision / Pascal VOC class 0, CVAT's and Datumaro's labelmap.txt line 0;
#: - ``__background__``: detectron2 / Detectron's class 0;
#: - ``unlabeled``: Cityscapes id 0, ADE20K, Mapillary Vistas' ``void--unlabeled``;
#: - ``void``: CamVid's ``Void`` (label_colors.txt);
#: - ``__ignore__``: labelme2voc's labels.txt (class -1, stored as 255 in its VOC PNGs).
#:
#: Hierarchical names (Mapillary's ``void--unlabeled``) are matched by their last ``--`` part.
RESERVED_LABELS: dict[str, str] = {
    "_background_": BACKGROUND,
    "background": BACKGROUND,
    "__background__": BACKGROUND,
    "unlabeled": BACKGROUND,
    "void": BACKGROUND,
    "__ignore__": VOID,
}

#: the --void option's choices: what void pixels become
VOID_POLICIES = (BACKGROUND, IGNORE_LABEL)


def label_convention(name: str) -> str | None:
    """``BACKGROUND`` or ``VOID`` when ``name`` is one of the names tools use for them, else None.

    Readers of class names (LabelMe and CVAT shapes, palette and colour tables, VOC
    labelmaps, every label file of ``codecs.label_files``) call this before treating
    a name as a class, so that ``_background_`` never becomes a class of its own and
    ``__ignore__`` is void everywhere. Mapillary's ``void--unlabeled`` is matched by its
    last ``--`` part.
    """
    key = name.strip().lower()
    found = RESERVED_LABELS.get(key)
    if found is None and "--" in key:
        found = RESERVED_LABELS.get(key.rsplit("--", 1)[-1])
    return found


def is_reserved_label(name: str) -> bool:
    """Whether ``name`` is background or void (:func:`label_convention`), i.e. not a class."""
    return label_convention(name) is not None


def void_option(
    help: str = "What void shapes (labelme2voc's __ignore__) become: background 0, or a segment 'ignore' "
    "(kept in every mode).",
) -> click.Option:
    """``--void background|ignore``: the same name and choices in every reader that has void."""
    return click.Option(["--void"], type=click.Choice(VOID_POLICIES), default=BACKGROUND, show_default=True,
                        help=help)


def check_void(void: str) -> str:
    """The --void policy, checked (the CLI's Choice does this; the Python API comes here)."""
    if void not in VOID_POLICIES:
        raise SourceError(f"{opt('void')} must be {' or '.join(VOID_POLICIES)}, not {void!r}")
    return void


def ignore_category(
    void: str, labels: dict[str, LabelSpec] | None, categories: list[Category] | None
) -> tuple[int | None, list[Category] | None]:
    """The category id the ``ignore`` segment gets, and the category table with it.

    Only ``--void ignore`` with a class table has one: the table's own ``ignore`` class
    when it names one, else a class of its own after the table's highest id. Without a
    table (or with void as background) the table is unchanged and the id None.
    """
    if void != IGNORE_LABEL or labels is None or categories is None:
        return None, categories
    if IGNORE_LABEL in labels:
        return labels[IGNORE_LABEL].id, categories
    ignore_id = max((c.id for c in categories), default=0) + 1
    return ignore_id, [*categories, Category(id=ignore_id, name=IGNORE_LABEL)]


class ReservedShapes:
    """One image's background and void shapes, as the shape readers paint them.

    Such a shape keeps its own raw id in the label map, so that it covers what was
    painted below it in the painter's order; the raw id is then background 0
    (``dropped``), or, for void with ``--void ignore``, one of the pixels of the image's
    single ``ignore`` segment (kept in every mode).
    """

    def __init__(self, void: str, ignore_id: int | None) -> None:
        self.void = void
        self.ignore_id = ignore_id
        self.dropped: set[int] = set()
        self.ignore: SegmentInfo | None = None

    def add(self, sid: int, convention: str, label: str, segments: list[SegmentInfo]) -> None:
        """Take raw id ``sid`` of a shape whose label has ``convention`` (BACKGROUND or VOID);
        the ``ignore`` segment joins ``segments`` where the first void shape is."""
        if convention == VOID and self.void == IGNORE_LABEL:
            if self.ignore is None:
                self.ignore = SegmentInfo(id=sid, label=IGNORE_LABEL, category_id=self.ignore_id,
                                          metadata={"source_label": label}, pixel_ids=())
                segments.append(self.ignore)
            self.ignore.pixel_ids = (*self.ignore.pixels, sid)
        else:  # background, or void as background
            self.dropped.add(sid)


def check_overlap(overlap: str) -> str:
    """The overlap policy, checked (the CLI's Choice does this; the Python API comes here)."""
    if overlap not in raster.OVERLAP_POLICIES:
        raise SourceError(f"unknown overlap policy {overlap!r}; choose one of {', '.join(raster.OVERLAP_POLICIES)}")
    return overlap


@dataclass(frozen=True)
class LabelSpec:
    """What one source label becomes: a category id, the label written out, thing or stuff.

    ``id`` is None when there is no class table (the label stands for itself); with a
    table it is the class's id, which may be 0 when a label file numbers a class 0
    (Mapillary's first class, a colormap.json without background first).
    """

    id: int | None
    name: str
    isthing: bool = True
    color: tuple[int, int, int] | None = None


#: the fields of one class in segconvert's own ``{label: {"id": ..., ...}}`` form
_SPEC_KEYS = frozenset({"id", "name", "isthing"})


def load_label_table(path: str | Path) -> tuple[dict[str, LabelSpec], list[Category]]:
    """Read ``--labels FILE``: source label -> :class:`LabelSpec`, plus the category table.

    Accepted forms, segconvert's own (JSON, or plain text):

    - ``["car", "person"]`` or a text file with one label per line: ids 1..n in order;
      labelme2voc's own ``labels.txt`` / ``class_names.txt`` (``__ignore__``,
      ``_background_``, then the classes) as it is, which gives each class labelme2voc's
      id (the line number - 1);
    - ``{"car": 1, "person": 2}``: explicit ids;
    - ``{"car": {"id": 1, "name": "vehicle", "isthing": true}, "truck": {"id": 1,
      "name": "vehicle"}}``: several source labels may map onto one class (same id, same
      name); ``isthing: false`` makes a class stuff (dropped by instance mode);

    and every other tool's label file that :mod:`segconvert.codecs.label_files` reads
    (CVAT/Datumaro ``labelmap.txt``, Datumaro ``dataset_meta.json``, Mapillary
    ``config_v1.2.json`` / ``config_v2.0.json``, CamVid ``label_colors.txt``, a
    ``colormap.json``, ADE20K ``objectInfo150.csv``, ``{"id": "name"}``): a class gets
    the id that module gives it, its value in that tool's index masks (a labelmap.txt's
    line position, so that ``background`` at 0 leaves ``car`` at 1; Mapillary's position,
    from 0), keeps its colour, and is stuff where the file says so (Mapillary's
    ``instances: false``).

    In every form, names that :func:`label_convention` reserves for background or void
    (``__ignore__``, ``_background_``, ``background``, Mapillary's ``void--unlabeled``,
    ...) are not classes and are left out of the table, whatever id they are given
    (labelme's ``{"__ignore__": -1, "_background_": 0}``): readers handle them before
    looking a label up. The category table is one entry per id, sorted by id (its
    position is the stable semantic index).
    """
    path = location(path)  # a local file, or a URL read through fsspec
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise SourceError(f"cannot read labels file: {why}", file=path) from None
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError:
        if path.suffix.lower() == ".json":
            raise SourceError("labels file is not valid JSON", file=path) from None
        if label_files.kind_of(path, text) != "class-names-txt":
            return _from_label_file(path)
        doc = [line.strip() for line in text.splitlines()]
        doc = [name for name in doc if name]
    table: dict[str, LabelSpec] = {}
    if isinstance(doc, list):
        for k, name in enumerate(doc):
            if not isinstance(name, str) or not name:
                raise SourceError(f"labels[{k}] is not a label name: {name!r}", file=path)
            if label_convention(name) is not None:
                continue
            if name in table:
                raise SourceError(f"label {name!r} is listed twice", file=path)
            table[name] = LabelSpec(len(table) + 1, name)
    elif isinstance(doc, dict) and not _own_form(doc) and _other_tools_form(path, text):
        return _from_label_file(path)
    elif isinstance(doc, dict):
        for name, spec in doc.items():
            if label_convention(name) is not None:
                continue
            if isinstance(spec, dict):
                raw_id, target, isthing = spec.get("id"), spec.get("name", name), spec.get("isthing", True)
            else:
                raw_id, target, isthing = spec, name, True
            if isinstance(raw_id, bool) or not isinstance(raw_id, int) or raw_id < 1:
                raise SourceError(f"label {name!r} needs a positive integer id, got {raw_id!r}", file=path)
            if not isinstance(target, str) or not target or not isinstance(isthing, bool):
                raise SourceError(f"label {name!r}: 'name' must be a string and 'isthing' a boolean", file=path)
            table[name] = LabelSpec(raw_id, target, isthing)
    else:
        raise SourceError("labels file must be a JSON list of labels or an object {label: id}", file=path)
    return _categories(table, path)


def _own_form(doc: dict[str, Any]) -> bool:
    """Whether a JSON object is segconvert's ``{label: id}`` / ``{label: {"id": ...}}`` form."""
    return all(
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, dict) and set(v) <= _SPEC_KEYS)
        for v in doc.values()
    )


def _other_tools_form(path: Path, text: str) -> bool:
    """Whether a JSON object that is not segconvert's own form is one of ``label_files``' kinds
    (else it is read as the own form, whose messages then say what is wrong with it)."""
    doc = json.loads(text)
    kind = label_files.kind_of(path, text)
    if kind == "labels-json":  # {"id": "name"}
        return all(re.fullmatch(r"\s*-?\d+\s*", k) for k in doc)
    if kind == "colormap-json":  # {label: [r, g, b] | "#rrggbb"}
        return all(isinstance(v, list | str) for v in doc.values())
    return True  # datumaro, mapillary: told apart by their own keys


def _from_label_file(path: Path) -> tuple[dict[str, LabelSpec], list[Category]]:
    """The table of another tool's label file: its ids, colours and isthing, reserved names left out."""
    _, entries = label_files.read_label_file(path)
    table: dict[str, LabelSpec] = {}
    for e in entries:
        if label_convention(e.name) is not None or e.id < 0:
            continue
        if e.name in table:  # {"id": "name"} may give one name two ids: which would a shape get?
            raise SourceError(f"label {e.name!r} has two ids, {table[e.name].id} and {e.id}", file=path)
        table[e.name] = LabelSpec(e.id, e.name, True if e.isthing is None else e.isthing, e.color)
    return _categories(table, path)


def _categories(table: dict[str, LabelSpec], path: Path) -> tuple[dict[str, LabelSpec], list[Category]]:
    """The table checked (not empty; labels that share an id share its class) and its category list."""
    if not table:
        raise SourceError("labels file lists no labels", file=path)
    by_id: dict[int, LabelSpec] = {}
    for name, spec in table.items():
        assert spec.id is not None
        other = by_id.setdefault(spec.id, spec)
        if (other.name, other.isthing) != (spec.name, spec.isthing):
            raise SourceError(
                f"id {spec.id} is given to {other.name!r} and to {spec.name!r} (label {name!r}); "
                "labels that share an id must share its name and isthing",
                file=path,
            )
    categories = [Category(id=i, name=s.name, isthing=s.isthing, color=s.color) for i, s in sorted(by_id.items())]
    return table, categories


def labels_option(
    help: str = "Class table: JSON list of labels, JSON {label: id}, a text file with one label per line, "
    "or another tool's label file (labelmap.txt, dataset_meta.json, Mapillary config, label_colors.txt, "
    "colormap.json, objectInfo150.csv). A label not in it fails its image.",
) -> click.Option:
    """``--labels FILE``: every shape reader has one; what the file maps is the format's own."""
    return click.Option(["--labels"], type=PathOrUrl(), default=None, help=help)


def images_option(
    help: str = "Folder of the images, to read sizes from when the annotations do not give them.",
) -> click.Option:
    return click.Option(["--images"], type=PathOrUrl(), default=None, help=help)


def image_size(path: Path | UrlPath) -> tuple[int, int] | None:
    """(height, width) from an image file's header, or None when it cannot be read; an image
    over ``--max-pixels`` is an ItemError saying so."""
    try:
        width, height = limits.image_size(path)
    except ValueError:
        return None
    return height, width


def declared_size(height: Any, width: Any, names: str, *, width_first: bool = False) -> tuple[int, int]:
    """(height, width) from the size an annotation file declares, checked: integers (480.0 is
    480; 480.5, "480" and true are refused), not empty, at most ``raster.MAX_PIXELS``.

    ValueError otherwise, naming the keys (``names``, e.g. ``"imageHeight/imageWidth"``) and
    the values in that order (``width_first`` when ``names`` puts the width first).
    """
    try:
        h, w = cocojson.integer(height), cocojson.integer(width)
    except TypeError:
        got = f"{width!r} x {height!r}" if width_first else f"{height!r} x {width!r}"
        raise ValueError(f"{names} must be integers, got {got}") from None
    problem = raster.size_problem(h, w)
    if problem is not None:
        raise ValueError(problem)
    return h, w


def find_image(images_dir: str | Path, name: str | None, stem: str) -> Path | UrlPath | None:
    """The image for one item in ``--images DIR``: by its file name, else by stem + usual suffix.
    DIR may be a URL: each candidate is then one existence check (a HEAD on S3)."""
    base = location(images_dir)
    if name:
        name = name.replace("\\", "/")
        # a name that leads out of DIR (../x, /abs) is looked up by its base name only, inside DIR
        inside = allow_outside() or not climbs_out(name)
        for cand in ((base / name,) if inside else ()) + (base / Path(name).name,):
            if cand.is_file():
                return cand
    for suffix in IMAGE_SUFFIXES:
        cand = base / (stem + suffix)
        if cand.is_file():
            return cand
    return None


def resolve_label(label: str, table: dict[str, LabelSpec] | None) -> LabelSpec:
    """The class of a source label; KeyError when there is a class table and it lacks the label.

    Without a table the label stands for itself, with no category id (``id`` None).
    """
    if table is not None:
        return table[label]
    return LabelSpec(None, label)


def bad_number(value: object) -> bool:
    """True for what cannot be a coordinate: non-numbers (bools too), NaN, infinities."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    return not math.isfinite(value)


def far_outside(xy: np.ndarray, height: int, width: int) -> tuple[float, float] | None:
    """The first point more than one image size outside the image, if any.

    Such points are refused rather than clipped: LabelMe and CVAT keep points on the
    image, so they mean a wrong image size (annotations made at another resolution) or
    corrupt data; and PIL and pycocotools misdraw, or allocate memory in proportion to
    the perimeter, for coordinates in the billions.
    """
    if xy.size == 0:
        return None
    x, y = xy[:, 0], xy[:, 1]
    bad = (x < -width) | (x > 2 * width) | (y < -height) | (y > 2 * height)
    if not bad.any():
        return None
    k = int(np.argmax(bad))
    return float(x[k]), float(y[k])


def outside_count(xy: np.ndarray, height: int, width: int) -> int:
    """Points outside the image's continuous extent [0, W] x [0, H] (they get clipped)."""
    if xy.size == 0:
        return 0
    x, y = xy[:, 0], xy[:, 1]
    return int(np.count_nonzero((x < 0) | (y < 0) | (x > width) | (y > height)))


def merge_by_segment(shapes: list[raster.Shape], height: int, width: int) -> list[raster.Shape]:
    """One shape per segment id (the union of its shapes), in order of first appearance.

    For ``--overlap error`` and ``small-on-top``: the shapes of one instance (a
    ``group_id``) may overlap each other without a conflict, and "small" means the
    instance's area, not one of its parts'. ``paint`` keeps the shapes apart, so that
    each part stays at its own place in the painter's order.
    """
    from pycocotools import mask as mask_utils  # shape readers only (the VOC reader imports this module)

    parts: dict[int, list[np.ndarray | dict]] = {}
    for sid, geom in shapes:
        if isinstance(geom, dict) and not isinstance(geom["counts"], (str, bytes)):
            # pycocotools merges compressed RLE only
            geom = mask_utils.frPyObjects({"size": geom["size"], "counts": list(geom["counts"])}, height, width)
        parts.setdefault(sid, []).append(geom)
    merged: list[raster.Shape] = []
    for sid, geoms in parts.items():
        if len(geoms) == 1:
            merged.append((sid, geoms[0]))
        elif all(isinstance(g, dict) for g in geoms):
            merged.append((sid, mask_utils.merge(geoms, intersect=False)))
        else:
            union = np.zeros((height, width), dtype=bool)
            for g in geoms:
                union |= g if isinstance(g, np.ndarray) else mask_utils.decode(g).astype(bool)
            merged.append((sid, union))
    return merged


def crop_rle(crop: np.ndarray, left: int, top: int, height: int, width: int) -> dict[str, Any]:
    """The uncompressed COCO RLE (column-major runs) of a full image that is ``crop`` at (left, top).

    The crop must lie inside the image. Working from the crop keeps every shape's cost
    proportional to its box: no full-size mask is made per shape (``raster.paint``
    paints the runs).
    """
    ch, cw = crop.shape
    if crop.size == 0 or not crop.any():
        return {"size": [height, width], "counts": np.array([height * width], dtype=np.int64)}
    padded = np.zeros((cw, ch + 2), dtype=np.int8)  # one 0 above and below each column: no run crosses
    padded[:, 1:-1] = crop.T
    change = np.diff(padded.ravel())
    starts, ends = np.flatnonzero(change == 1) + 1, np.flatnonzero(change == -1) + 1
    col_s, row_s = np.divmod(starts, ch + 2)
    col_e, row_e = np.divmod(ends, ch + 2)
    starts = (left + col_s) * height + top + row_s - 1  # positions in the full column-major image
    ends = (left + col_e) * height + top + row_e - 1
    counts = np.empty(2 * len(starts) + 1, dtype=np.int64)
    counts[0:-1:2] = starts - np.concatenate([[0], ends[:-1]])
    counts[1::2] = ends - starts
    counts[-1] = height * width - ends[-1]
    return {"size": [height, width], "counts": counts}


def patch_rle(patch: np.ndarray, left: int, top: int, height: int, width: int) -> tuple[dict[str, Any], bool]:
    """RLE of a bool ``patch`` placed at (left, top) and clipped to the image; and whether it was clipped."""
    ph, pw = patch.shape
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + pw, width), min(top + ph, height)
    clipped = (x0, y0, x1, y1) != (left, top, left + pw, top + ph)
    if x1 <= x0 or y1 <= y0:
        return crop_rle(np.zeros((0, 0), dtype=bool), 0, 0, height, width), clipped
    return crop_rle(patch[y0 - top : y1 - top, x0 - left : x1 - left], x0, y0, height, width), clipped


def name_segments(message: str, names: dict[int, str]) -> str:
    """``message`` (from :func:`raster.paint`, which knows only segment ids) with a legend
    saying which source annotation each mentioned segment id is."""
    mentioned = {int(m) for m in re.findall(r"\bsegment (\d+)", message)}
    mentioned |= {int(m) for pair in re.findall(r"(\d+) & (\d+) \(", message) for m in pair}
    legend = [f"segment {sid} = {names[sid]}" for sid in sorted(mentioned) if sid in names]
    return f"{message} [{'; '.join(legend)}]" if legend else message
