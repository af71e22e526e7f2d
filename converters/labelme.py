"""LabelMe: a folder of LabelMe JSON files, one per image, shapes drawn as labelme draws them.

Pixels follow labelme's own ``labelme.utils.shape_to_mask`` / ``shapes_to_label``
(PIL ``ImageDraw``): ``polygon`` (and ``oriented_rectangle``) is ``draw.polygon`` with
outline and fill, ``rectangle`` is ``draw.rectangle`` of the two corners, ``circle`` is
``draw.ellipse`` with the distance between its two points as radius, ``line`` and
``linestrip`` are ``draw.line`` of ``--line-width`` pixels (labelme's default 10), and
``mask`` (newer labelme) is the base64 PNG of the box between its two points, placed at
their integer (truncated) coordinates. Each shape is drawn on a canvas cropped to its
box at an integer offset, which gives the same pixels as labelme's full-size canvas
(tested against labelme pixel for pixel) at a fraction of the cost on big images.
``point`` shapes have no area: they are skipped with a warning.

Instances: as in ``shapes_to_label``, shapes with the same ``(label, group_id)`` are one
instance; a shape without ``group_id`` is its own instance. Segment ids are 1..n in the
order instances first appear in the file; shapes are painted in file order (later on
top) unless ``--overlap`` says otherwise (``segconvert.codecs.raster``).

Background and void, as labelme2voc makes them: a shape labelled ``_background_`` (or
another name :func:`segconvert.codecs.shapes.label_convention` reserves for background) paints
background 0 in its place in the painter's order (labelme2voc's class 0); a shape
labelled ``__ignore__`` paints void (labelme2voc's class -1, which its VOC PNGs store as
255): background 0 by default, or one segment ``ignore`` per image with
``--void ignore``, kept in every mode. labelme2voc's ``SegmentationObject`` gives a
``_background_`` shape an object id over class 0; here background is never an instance.

Decisions:

- ``reference_id`` is the JSON file's stem, not ``imagePath``'s: it is there when
  ``imagePath`` is empty, a Windows path or a ``../images/x.jpg``, and it is what
  labelme's own ``labelme2voc`` names its outputs by. SOURCE is searched recursively for
  ``*.json`` (sorted by path); two JSONs with one stem in different folders fail both,
  naming the files. A folder without any LabelMe JSON is refused as a whole.
- Categories: LabelMe has no dataset-wide class table. The reader does not scan every
  JSON up front to build one (a LabelMe JSON often embeds its image as base64, so that
  would parse the dataset twice, in one process): without ``--labels`` the categories
  are unknown (``None``), any label is accepted, and semantic masks need
  ``--index compact``. ``--labels FILE`` gives the table (see :func:`load_label_table`);
  then a shape whose label is not in it fails its image.
- Image size: ``imageHeight``/``imageWidth``; when missing, the embedded ``imageData``;
  else the image in ``--images DIR``, or without it the image beside the JSON (where
  labelme's ``LabelFile`` looks: ``imagePath`` relative to the JSON), by ``imagePath``'s
  name, else the JSON's stem with a usual image suffix; else the image fails.
- Bad input fails the image with the file and ``shapes[k]`` named: NaN / infinite /
  non-numeric coordinates, a point more than an image size outside the image (a wrong
  image size, see :func:`far_outside`), a wrong number of points, an unknown
  ``shape_type``, an undecodable or mis-sized ``mask``. A polygon of fewer than 3 points (a linestrip of
  fewer than 2) is skipped with a warning; points outside the image are clipped and
  each such shape adds a warning (so the summary counts them).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import PIL.Image
import PIL.ImageDraw

from segconvert.codecs import limits, png, raster
from segconvert.codecs.png import read_bytes
from segconvert.codecs.shapes import (
    BACKGROUND,
    LabelSpec,
    ReservedShapes,
    bad_number,
    check_overlap,
    check_void,
    declared_size,
    far_outside,
    find_image,
    ignore_category,
    image_size,
    images_option,
    label_convention,
    labels_option,
    load_label_table,
    merge_by_segment,
    outside_count,
    patch_rle,
    resolve_label,
    void_option,
)
from segconvert.errors import ItemError, SourceError, opt
from segconvert.interfaces.format import Format, Reader, read_ends
from segconvert.io import sources
from segconvert.io.sources import UrlPath, expand_pattern, is_local_pattern, location
from segconvert.model.ir import FailedItem, Item, Segmentation, SegmentInfo

# --------------------------------------------------------------------------- rasterising


def _draw(draw: PIL.ImageDraw.ImageDraw, shape_type: str, xy: np.ndarray, value: int, line_width: int) -> None:
    """Draw one shape with ``value`` as labelme's ``shape_to_mask`` draws it (same PIL calls).

    Always on a full-size canvas at the shape's own coordinates: PIL's rasteriser is not
    exactly translation-invariant for arbitrary float coordinates (a canvas cropped to
    the shape, tried first, differed from labelme in one pixel for ~0.15 % of shapes).
    """
    pts = [(float(x), float(y)) for x, y in xy]
    if shape_type == "circle":
        (cx, cy), (px, py) = pts
        r = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse(((cx - r, cy - r), (cx + r, cy + r)), outline=value, fill=value)
    elif shape_type == "rectangle":
        (ax, ay), (bx, by) = pts
        draw.rectangle(((min(ax, bx), min(ay, by)), (max(ax, bx), max(ay, by))), outline=value, fill=value)
    elif shape_type in ("line", "linestrip"):
        draw.line(xy=pts, fill=value, width=line_width)
    else:  # polygon, oriented_rectangle
        draw.polygon(xy=pts, outline=value, fill=value)


def draw_shape(shape_type: str, xy: np.ndarray, height: int, width: int, line_width: int) -> np.ndarray:
    """The full (height, width) bool mask of one labelme shape, as ``shape_to_mask`` gives it."""
    canvas = PIL.Image.new("L", (width, height))
    _draw(PIL.ImageDraw.Draw(canvas), shape_type, xy, 1, line_width)
    return np.asarray(canvas, dtype=bool)


def _mask_image(patch: np.ndarray) -> PIL.Image.Image:
    return PIL.Image.fromarray(patch.astype(np.uint8) * 255, mode="L")


# --------------------------------------------------------------------------- the item

#: shape_type -> number of points it needs (None: at least the minimum below)
_EXACT_POINTS = {"rectangle": 2, "circle": 2, "line": 2, "mask": 2, "oriented_rectangle": 4}
_MIN_POINTS = {"polygon": 3, "linestrip": 2}


@dataclass
class LabelmeItem(Item):
    reference_id: str
    source: str  # the JSON file
    overlap: str = "paint"
    line_width: int = 10
    labels: dict[str, LabelSpec] | None = None
    images_dir: str | None = None
    void: str = BACKGROUND
    #: the category id of the ``ignore`` segment (``--void ignore`` with ``--labels``)
    ignore_id: int | None = None

    def _fail(self, message: str) -> ItemError:
        return ItemError(message, item=self.reference_id, file=self.source)

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(read_bytes(self.source))
        except FileNotFoundError:
            raise self._fail("file not found") from None
        except OSError as exc:
            raise self._fail(f"cannot read: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self._fail(f"not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
            raise self._fail("no 'shapes' list; is this a LabelMe JSON?")
        return doc

    def _size(self, doc: dict[str, Any]) -> tuple[int, int]:
        h, w = doc.get("imageHeight"), doc.get("imageWidth")
        if h is not None or w is not None:
            try:
                return declared_size(h, w, "imageHeight/imageWidth")
            except ValueError as exc:
                raise self._fail(str(exc)) from None
        data = doc.get("imageData")
        if isinstance(data, str) and data:
            try:
                width, height = limits.image_size(base64.b64decode(data))  # a bomb is reported as one
                return int(height), int(width)
            except (binascii.Error, *limits.PIL_ERRORS):
                raise self._fail("no imageHeight/imageWidth and imageData is not a readable image") from None
        image_path = doc.get("imagePath") if isinstance(doc.get("imagePath"), str) else None
        folder = self.images_dir if self.images_dir is not None else str(location(self.source).parent)
        found = find_image(folder, image_path, location(self.source).stem)
        size = image_size(found) if found is not None else None
        if size is not None:
            return size
        if self.images_dir is not None:
            raise self._fail(
                f"no imageHeight/imageWidth, and no readable image for it in {self.images_dir} "
                f"(imagePath {image_path!r})"
            )
        raise self._fail(
            f"no image size: imageHeight/imageWidth missing and no readable image {image_path!r} beside the "
            f"JSON; pass {opt('images', 'DIR')} to read it from the images"
        )

    def load(self) -> Segmentation:
        doc = self._read()
        height, width = self._size(doc)
        limits.check_pixels(width, height)  # before any mask of that size is allocated
        warnings: list[str] = []
        instances: dict[tuple[str, object], int] = {}  # raw id per (label, group), as shapes_to_label
        segments: list[SegmentInfo] = []
        drawables: list[tuple[int, tuple[Any, ...]]] = []
        reserved = ReservedShapes(self.void, self.ignore_id)
        for k, shape in enumerate(doc["shapes"]):
            where = f"shapes[{k}]"
            if not isinstance(shape, dict):
                raise self._fail(f"{where} is not an object")
            label = shape.get("label")
            if not isinstance(label, str):
                raise self._fail(f"{where} has no string 'label' (got {label!r})")
            where = f"shapes[{k}] ({label!r})"
            if not label.strip():  # Nucleus needs a label; as CVAT here (and Datumaro): skip, say so
                warnings.append(f"{where}: empty label; skipped")
                continue
            shape_type = shape.get("shape_type") or "polygon"
            points = shape.get("points")
            if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
                raise self._fail(f"{where}: 'points' must be a list of [x, y] pairs")
            flat = [v for p in points for v in p]
            # fast path: JSON numbers are int or float (bool is a subclass, hence type())
            if not {type(v) for v in flat} <= {int, float} or not np.isfinite(flat).all():
                bad = next(v for v in flat if bad_number(v))
                raise self._fail(f"{where}: coordinate {bad!r} is not a finite number")
            if shape_type == "point":
                warnings.append(f"{where}: point shapes have no area; skipped")
                continue
            if not isinstance(shape_type, str) or (shape_type not in _EXACT_POINTS and shape_type not in _MIN_POINTS):
                raise self._fail(f"{where}: unknown shape_type {shape_type!r}")
            need = _EXACT_POINTS.get(shape_type)
            if need is not None and len(points) != need:
                raise self._fail(f"{where}: a {shape_type} needs {need} points, got {len(points)}")
            least = _MIN_POINTS.get(shape_type, 0)
            if len(points) < least:
                warnings.append(f"{where}: a {shape_type} of {len(points)} points (fewer than {least}); skipped")
                continue
            convention = label_convention(label)
            if convention is None:
                try:
                    spec = resolve_label(label, self.labels)
                except KeyError:
                    raise self._fail(f"{where}: label {label!r} is not in the {opt('labels')} table") from None
            xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            far = far_outside(xy, height, width)
            if far is not None:
                raise self._fail(
                    f"{where}: point ({far[0]:g}, {far[1]:g}) is more than an image size outside the "
                    f"{width}x{height} image; is the image size right?"
                )
            if shape_type == "mask":
                patch, left, top = self._mask(shape, xy, where)
                clipped = left < 0 or top < 0 or left + patch.shape[1] > width or top + patch.shape[0] > height
                drawable: tuple[Any, ...] = ("mask", patch, left, top)
            else:
                clipped = outside_count(xy, height, width) > 0
                drawable = (shape_type, xy)
            if clipped:
                n = outside_count(xy, height, width)
                what = f"{n} of {len(xy)} points" if n else "its mask"
                warnings.append(f"{where}: {what} outside the {width}x{height} image; clipped")
            group_id = shape.get("group_id")
            if group_id is not None and (isinstance(group_id, bool) or not isinstance(group_id, int | str)):
                raise self._fail(f"{where}: group_id must be an integer or null, got {group_id!r}")
            key: tuple[str, object] = (label, group_id if group_id is not None else ("shape", k))
            sid = instances.get(key)
            if sid is None:
                sid = instances[key] = len(instances) + 1
                if convention is None:
                    segments.append(self._segment(sid, spec, shape, shape_type, group_id))
                else:
                    reserved.add(sid, convention, label, segments)
            drawables.append((sid, drawable))
        if self.overlap == "paint":
            label_map = self._paint_in_order(drawables, height, width, len(instances))
        else:
            shapes = [(sid, self._shape_mask(d, height, width)) for sid, d in drawables]
            shapes = merge_by_segment(shapes, height, width)
            label_map = raster.paint(height, width, shapes, self.overlap, item=self.reference_id, file=self.source)
        return Segmentation(self.reference_id, label_map, segments, source=self.source,
                            dropped_ids=frozenset(reserved.dropped), warnings=warnings)

    def _paint_in_order(self, drawables: list[tuple[int, tuple[Any, ...]]], height: int, width: int,
                        count: int) -> np.ndarray:
        """File order, later on top, on one canvas: what shapes_to_label's ``cls[mask] = id`` loop gives."""
        canvas = PIL.Image.new("I", (width, height), 0)
        draw = PIL.ImageDraw.Draw(canvas)
        for sid, (kind, *args) in drawables:
            if kind == "mask":
                patch, left, top = args
                canvas.paste(sid, (left, top, left + patch.shape[1], top + patch.shape[0]), _mask_image(patch))
            else:
                _draw(draw, kind, args[0], sid, self.line_width)
        return np.asarray(canvas).astype(np.uint16 if count < 1 << 16 else np.uint32)

    def _shape_mask(self, drawable: tuple[Any, ...], height: int, width: int) -> np.ndarray | dict[str, Any]:
        kind, *args = drawable
        if kind == "mask":
            patch, left, top = args
            return patch_rle(patch, left, top, height, width)[0]
        return draw_shape(kind, args[0], height, width, self.line_width)

    def _mask(self, shape: dict[str, Any], xy: np.ndarray, where: str) -> tuple[np.ndarray, int, int]:
        """The mask shape's bool patch and where its top-left corner goes."""
        data = shape.get("mask")
        if not isinstance(data, str) or not data:
            raise self._fail(f"{where}: a mask shape needs 'mask', a base64 PNG")
        try:
            raw = base64.b64decode(data)
            png.check_size(raw)  # a decompression bomb fails before it is decoded
            with PIL.Image.open(io.BytesIO(raw)) as im:
                patch = np.asarray(im)
        except (binascii.Error, *limits.PIL_ERRORS):
            raise self._fail(f"{where}: 'mask' is not a base64-encoded image") from None
        if patch.ndim != 2:
            raise self._fail(f"{where}: the mask image must have one channel, it has shape {patch.shape}")
        (x1, y1), (x2, y2) = xy.astype(int)  # truncation, as labelme's shapes_to_label
        if patch.shape != (y2 - y1 + 1, x2 - x1 + 1):
            raise self._fail(
                f"{where}: the mask image is {patch.shape[1]}x{patch.shape[0]} but its points span "
                f"{x2 - x1 + 1}x{y2 - y1 + 1}"
            )
        return patch.astype(bool), int(x1), int(y1)

    @staticmethod
    def _segment(sid: int, spec: LabelSpec, shape: dict[str, Any], shape_type: str, group_id: object) -> SegmentInfo:
        meta: dict[str, Any] = {"shape_type": shape_type}
        if group_id is not None:
            meta["group_id"] = group_id
        if shape.get("description"):
            meta["description"] = shape["description"]
        if isinstance(shape.get("flags"), dict) and shape["flags"]:
            meta["flags"] = shape["flags"]
        return SegmentInfo(id=sid, label=spec.name, category_id=spec.id, isthing=spec.isthing, metadata=meta)


# --------------------------------------------------------------------------- the reader


class LabelmeReader(Reader):
    """Reads a folder of LabelMe JSON files (``*.json`` in it and below, sorted by path)."""

    options = (
        raster.overlap_option(),
        labels_option(
            "Class table: JSON list of labels, JSON {label: id}, a text file with one label per line "
            "(labelme2voc's labels.txt as it is), or another tool's label file (labelmap.txt, "
            "dataset_meta.json, Mapillary config, label_colors.txt, colormap.json, objectInfo150.csv). "
            "A label not in it fails its image; __ignore__ and _background_ need no entry."
        ),
        void_option(),
        images_option(),
        click.Option(
            ["--line-width"],
            type=click.IntRange(min=1),
            default=10,
            show_default=True,
            help="Width in pixels of line and linestrip shapes (labelme's shapes_to_label uses 10).",
        ),
    )
    default_mode = "instance"
    source_kind = "dir"

    def __init__(
        self,
        source: str | Path,
        overlap: str = "paint",
        labels: str | Path | None = None,
        images: str | Path | None = None,
        line_width: int = 10,
        void: str = BACKGROUND,
    ) -> None:
        super().__init__(source)
        pattern = is_local_pattern(source)  # a quoted glob of JSONs: the files it matches
        if not pattern and not self.source.is_dir():
            raise SourceError("a LabelMe source is a folder of .json files (or a quoted glob of them)",
                              file=self.source)
        if images is not None and not location(images).is_dir():
            raise SourceError(f"{opt('images')} must be a folder", file=images)
        self.overlap = check_overlap(overlap)
        self.void = check_void(void)
        self.line_width = int(line_width)
        self.images_dir = str(images) if images is not None else None
        self.labels: dict[str, LabelSpec] | None = None
        self.categories = None
        if labels is not None:
            self.labels, self.categories = load_label_table(labels)
        self.ignore_id, self.categories = ignore_category(self.void, self.labels, self.categories)
        if pattern:
            self._files = [p for p in expand_pattern(source) if p.suffix == ".json"]
        else:
            self._files = _json_files(self.source)
        if labels is not None:  # a labels.json kept in the dataset folder is no image
            table_file = location(labels).resolve()
            self._files = [p for p in self._files if p.name != table_file.name or p.resolve() != table_file]
        if not self._files:
            where = "the pattern matches no .json file" if pattern else "no .json files in this folder or below"
            raise SourceError(f"{where}; a LabelMe source is a folder of LabelMe JSONs", file=self.source)
        if not any(_looks_like_labelme(p) for p in self._files):  # stops at the first LabelMe JSON
            raise SourceError(f"none of its {len(self._files)} .json files is a LabelMe JSON "
                              "(no 'shapes' with 'imagePath'/'imageHeight')", file=self.source)

    def __len__(self) -> int:
        return len(self._files)

    def items(self) -> Iterator[Item]:
        by_stem: dict[str, list[str]] = {}
        for path in self._files:
            by_stem.setdefault(path.stem, []).append(str(path))
        for path in self._files:
            ref = path.stem
            if len(by_stem[ref]) > 1:
                err = ItemError(
                    f"reference_id {ref!r} comes from {len(by_stem[ref])} files ({', '.join(by_stem[ref])}); "
                    "each image needs a unique file stem: rename them, or convert the folders separately",
                    item=ref, file=path,
                )
                yield FailedItem(ref, err, source=str(path))
                continue
            yield LabelmeItem(
                reference_id=ref,
                source=str(path),
                overlap=self.overlap,
                line_width=self.line_width,
                labels=self.labels,
                images_dir=self.images_dir,
                void=self.void,
                ignore_id=self.ignore_id,
            )


def sniff_files(files: list[Path]) -> bool:
    """A glob SOURCE of .json files whose first is a LabelMe JSON."""
    return all(p.suffix == ".json" for p in files) and _looks_like_labelme(files[0])


def _json_files(folder: Path | UrlPath) -> list[Path | UrlPath]:
    """Every ``*.json`` in ``folder`` and below, sorted by relative path (hidden folders skipped)."""
    found = [p for p in folder.rglob("*.json")
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts[:-1])]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _looks_like_labelme(path: Path | UrlPath) -> bool:
    """LabelMe's keys in the file's first or last 64 KiB (a sorted-keys JSON puts 'shapes'
    after a long ``imageData``)."""
    try:
        text = read_ends(path, 1 << 16)
    except OSError:
        return False
    return b'"shapes"' in text and (b'"imagePath"' in text or b'"imageHeight"' in text)


def _first_json(folder: Path | UrlPath) -> Path | UrlPath | None:
    """The first ``*.json`` of a sorted walk (files of a folder before its subfolders), without
    walking the rest of the tree: ``--from auto`` asks every folder source."""
    for here, dirs, files in sources.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".json") and (isinstance(here, UrlPath) or os.path.isfile(os.path.join(here, name))):
                return here / name  # (a URL's walk lists files only under files)
    return None


def sniff(path: Path) -> bool:
    """A folder whose first .json (searched recursively) looks like a LabelMe file."""
    if not path.is_dir():
        return False
    first = _first_json(path)
    return first is not None and _looks_like_labelme(first)


FORMAT = Format(
    name="labelme",
    description="LabelMe: a folder of JSON files with polygons, rectangles, circles, lines and masks",
    reader=LabelmeReader,
    sniff=sniff,
    sniff_files=sniff_files,
)
