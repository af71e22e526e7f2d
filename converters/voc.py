"""Pascal VOC segmentation: ``SegmentationClass/`` + ``SegmentationObject/`` palette PNGs.

This is also what CVAT's "Segmentation mask 1.1" export, Datumaro's ``voc_segmentation``
and labelme2voc write. A VOC root::

    labelmap.txt                 (CVAT/Datumaro) or class_names.txt (labelme2voc), optional
    SegmentationClass/<stem>.png palette index = class (position in the class table)
    SegmentationObject/<stem>.png palette index = instance within the image (optional)
    ImageSets/Segmentation/<subset>.txt  stems, one per line (optional)
    SegmentationClassPNG/, SegmentationObjectPNG/  labelme2voc's PNGs (its SegmentationClass/
                                 holds .npy arrays): used instead when present
    JPEGImages/                  photos: never read (sizes come from the masks)

Class table, first found: ``labelmap.txt`` (lines ``name:r,g,b:parts:actions``, ``#``
comments; the line's position is the class index, as Datumaro's ``parse_label_map``
and ``make_voc_categories`` number them), ``class_names.txt`` (labelme2voc: one name a
line, index = line; a leading ``__ignore__`` line is not a class), else the 21 VOC
classes. Index 0 is background whatever the table names it; 255 is void (VOC's
boundary ring): background, or a segment ``ignore`` with ``--void ignore``. An index > 0
that the table names as void (``__ignore__``, ``void``, ``ignore``: :func:`voc_convention`;
CVAT and Datumaro labelmaps often carry such a line) is void exactly as 255 is, and one it
names as background (``background``, ``_background_``, ...) is background 0: neither is
a category, in any mode.

The labelmap.txt parser here is deliberately small (name and colour; parts and actions
are read past): a general label-file parser (``dataset_meta.json``, Mapillary configs,
labelmap.txt) lives on another branch in ``rgb_tables.py``; the two should become one.

Pixels. A palette PNG's index is the class, unless labelmap.txt gives colours and the
palette entry's colour is another class's colour: then the colour decides, as Datumaro
and CVAT (which read masks by colour) read it. Grayscale PNGs are read as indices; RGB
PNGs (some exporters write them) through labelmap.txt's colours, else the VOC palette.
Object PNGs: palette index (or, for RGB, the VOC palette colour) = instance number.

Pairing (instance and panoptic modes): one pass over both maps (C kernel,
``lut.PairRuns``) gives every (object, class) pair's pixel count and records where either
map changes; the label map is uint8, object pixels keeping their object number and class
pixels outside every object getting a free value per class (painted from those runs,
``PairRuns.paint``, with its histogram), or ``object << 8 | class`` in uint16 when
objects and such classes together need more than 254 values. An object's
class is the majority class under it (pixels under it of another class, or of background,
are reported as a warning with counts, never silently); class pixels outside every object
are a stuff segment of that class (panoptic keeps them, instance mode drops them). A root without SegmentationObject
converts in semantic mode only. Semantic mode reads the class PNGs alone.

The writer (``--to voc``) writes the same layout back: class and object PNGs with the
standard VOC (bitget) palette, labelmap.txt in CVAT/Datumaro form whose colours are that
palette's (Datumaro and CVAT map pixels by colour, so they must agree), and
``ImageSets/Segmentation/default.txt``. See :class:`VocWriter` for its rules.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from segconvert.codecs import label_files, png
from segconvert.codecs.lut import PairRuns, histogram, lookup_u8, to_codes
from segconvert.codecs.opencv import cv2
from segconvert.codecs.shapes import (
    BACKGROUND,
    IGNORE_LABEL,
    RESERVED_LABELS,
    check_void,
    label_convention,
    labels_option,
    void_option,
)
from segconvert.codecs.shapes import VOID as VOID_CONVENTION
from segconvert.errors import ItemError, SourceError, opt
from segconvert.interfaces.format import Format, Reader, Writer, Written
from segconvert.io.paths import output_stem
from segconvert.io.sources import location
from segconvert.model.ir import Category, Item, Segmentation, SegmentInfo
from segconvert.model.modes import ModePlan
from segconvert.model.pack import pack

if TYPE_CHECKING:
    import PIL.Image

CLASS_DIR = "SegmentationClass"
OBJECT_DIR = "SegmentationObject"
#: labelme2voc puts .npy arrays in SegmentationClass/ and SegmentationObject/, the PNGs here
LABELME_CLASS_DIR = "SegmentationClassPNG"
LABELME_OBJECT_DIR = "SegmentationObjectPNG"
SETS_DIR = "ImageSets/Segmentation"
LABELMAP = "labelmap.txt"
CLASS_NAMES = "class_names.txt"
VOID = 255
#: raw ids of stuff segments (class pixels outside every object) and of the ignore segment
STUFF_BASE = 256
IGNORE_RAW = 511

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
#: names that mean "index 0 is background" in the tables tools write (the one table in shapes)
BACKGROUND_NAMES = tuple(name for name, kind in RESERVED_LABELS.items() if kind == BACKGROUND)


#: names that mean void in a VOC class table beyond shapes' table: VOC's devkit calls its 255
#: "void" (shapes reads CamVid's ``Void`` as background, which is the same pixels in VOC's default
#: --void background), and ``ignore`` is the label this project gives void pixels (--void ignore)
_VOC_VOID_NAMES = ("void", IGNORE_LABEL)


def voc_convention(name: str) -> str | None:
    """``BACKGROUND``, ``VOID`` or None (a class) for a name in a VOC class table.

    shapes' :func:`label_convention` (the one table), except that ``void`` and ``ignore``
    are void: in a VOC table they name what VOC stores as 255, and the VOC writer's
    read-back must turn an ``ignore`` segment, written as 255, back into void."""
    if name.strip().lower() in _VOC_VOID_NAMES:
        return VOID_CONVENTION
    return label_convention(name)


def voc_palette(n: int = 256) -> np.ndarray:
    """The VOC devkit's colour map (``labelcolormap``/bitget): bits of the index spread over R, G, B."""
    idx = np.arange(n)
    rgb = np.zeros((n, 3), np.uint8)
    for j in range(8):
        for c in range(3):
            rgb[:, c] |= (((idx >> (3 * j + c)) & 1) << (7 - j)).astype(np.uint8)
    return rgb


VOC_PALETTE = voc_palette()
VOID_COLOR = tuple(int(v) for v in VOC_PALETTE[VOID])  # (224, 224, 192)


def _key(rgb: tuple[int, int, int] | np.ndarray) -> int:
    r, g, b = (int(v) for v in rgb)
    return r | g << 8 | b << 16


@dataclass(frozen=True)
class ClassTable:
    """Class index -> name (index 0 background) and, when the table gives them, colours."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int] | None, ...]
    file: str | None  # where it came from, for messages; None = the 21 VOC classes
    void_ignore: bool = False

    @cached_property
    def has_colors(self) -> bool:
        """Whether the table gives colours (asked once per image: computed once)."""
        return any(c is not None for c in self.colors[1:])

    @cached_property
    def reserved(self) -> dict[int, int]:
        """Index (> 0) -> 0 or 255 for the indices the table names background or void
        (:func:`voc_convention`): their pixels are read as background or void, not a class."""
        out: dict[int, int] = {}
        for k, name in enumerate(self.names):
            kind = voc_convention(name) if k > 0 else None
            if kind is not None:
                out[k] = VOID if kind == VOID_CONVENTION else 0
        return out

    @cached_property
    def reserved_lut(self) -> np.ndarray | None:
        """The 256-entry LUT applying :attr:`reserved` to a class map, None when there is none."""
        reserved = self.reserved
        if not reserved:
            return None
        lut = np.arange(256, dtype=np.uint8)
        for k, v in reserved.items():
            lut[k] = v
        return lut

    def categories(self) -> list[Category]:
        reserved = self.reserved
        cats = [Category(id=k, name=name, isthing=True, color=self.colors[k])
                for k, name in enumerate(self.names) if k > 0 and k not in reserved]
        if self.void_ignore:
            cats.append(Category(id=VOID, name=IGNORE_LABEL, isthing=False))
        return cats

    def rgb_codes(self) -> dict[int, int]:
        """24-bit colour key -> class index, for RGB-coloured masks."""
        if self.has_colors:
            codes = {_key(c): k for k, c in enumerate(self.colors) if c is not None}
        else:
            codes = {_key(VOC_PALETTE[k]): k for k in range(len(self.names))}
        codes.setdefault(_key((0, 0, 0)), 0)
        codes.setdefault(_key(VOID_COLOR), VOID)
        return codes


def parse_labelmap(path: Path) -> list[tuple[str, tuple[int, int, int] | None]]:
    """CVAT/Datumaro ``labelmap.txt`` as (name, colour) rows, through ``label_files`` (its one parser)."""
    kind, rows = label_files.read_label_file(path)
    if kind != "labelmap-txt":
        raise SourceError(f"not a labelmap.txt (lines name:r,g,b:parts:actions); read as {kind}", file=path)
    return [(r.name, r.color) for r in rows]


#: label-file kinds whose class 0 is background by position whatever it is called (Datumaro
#: numbers labelmap.txt lines from 0 and writes background first; labelme2voc's class_names.txt)
_POSITIONAL_KINDS = ("labelmap-txt", "class-names-txt")


def _table_from_file(path: Path) -> tuple[list[str], list[tuple[int, int, int] | None]]:
    """Class index -> (name, colour) from any label file ``label_files`` reads (labelmap.txt,
    class_names.txt, dataset_meta.json, Mapillary configs, objectInfo150.csv, ...).

    An entry's id is its VOC index; void names outside 0..254 (labelme2voc's ``__ignore__``,
    id -1) are no index. A void or background name at an index > 0 keeps its place (the
    indices after it must not shift) and is read as void or background
    (:attr:`ClassTable.reserved`). A missing index 0 is background; other gaps are refused
    (they would shift classes).
    """
    kind, rows = label_files.read_label_file(path)
    by_id = {r.id: r for r in rows
             if 0 <= r.id and not (r.id >= VOID and voc_convention(r.name) == VOID_CONVENTION)}
    if not by_id:
        raise SourceError("the label file lists no classes", file=path)
    top = max(by_id)
    if top >= VOID:
        raise SourceError(f"class id {top} ({by_id[top].name!r}) does not fit VOC's palette indices 0..254 "
                          "(255 is void)", file=path)
    first = by_id.get(0)
    if first is not None and kind not in _POSITIONAL_KINDS and label_convention(first.name) is None:
        raise SourceError(
            f"class 0 is {first.name!r}, but index 0 is background in VOC masks; this label file does not "
            "describe VOC masks", file=path,
        )
    missing = [k for k in range(1, top + 1) if k not in by_id]
    if missing:
        raise SourceError(f"class ids {missing[:8]} are missing; VOC class indices run 0..N without gaps",
                          file=path)
    names = [by_id[k].name if k in by_id else "background" for k in range(top + 1)]
    colors = [by_id[k].color if k in by_id else None for k in range(top + 1)]
    return names, colors


def load_class_table(root: Path, void_ignore: bool, labels: Path | None = None) -> ClassTable:
    """``--labels FILE``, else labelmap.txt, else class_names.txt, else the 21 VOC classes (module doc)."""
    labelmap, class_names = root / LABELMAP, root / CLASS_NAMES
    found = labels if labels is not None else next((f for f in (labelmap, class_names) if f.is_file()), None)
    if found is not None:
        names, colors = _table_from_file(found)
        file: str | None = str(found)
    else:
        names, colors, file = list(VOC_CLASSES), [tuple(int(v) for v in VOC_PALETTE[k]) for k in range(21)], None
    if len(names) > VOID:
        raise SourceError(f"{len(names)} classes do not fit VOC's palette indices 0..254 (255 is void)", file=file)
    # line k is class index k, as Datumaro numbers them; index 0 is background in every VOC
    # mask whatever line 0 calls it, so it is not a category
    return ClassTable(tuple(names), tuple(colors), file, void_ignore)  # type: ignore[arg-type]


def _decode(data: bytes, path: str, ref: str) -> PIL.Image.Image:
    """Pillow's decoding, for what ``png.decode_index8`` does not take (other bit depths,
    interlaced, no C kernel). Imported here: ~10 ms of start-up that most VOC runs skip."""
    import PIL.Image

    try:
        im = PIL.Image.open(io.BytesIO(data))
        im.load()
    except PIL.UnidentifiedImageError:
        raise ItemError("cannot decode the PNG: truncated or not an image", item=ref, file=path) from None
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
        raise ItemError(f"cannot decode the PNG: {exc}", item=ref, file=path) from None
    return im


#: palette bytes -> class LUT, per process (a dataset has one or two palettes)
_palette_luts: dict[tuple[bytes, int], np.ndarray | None] = {}


def _class_lut(table: ClassTable, palette: bytes, path: str, ref: str) -> np.ndarray | None:
    """Palette index -> class index (256 entries; 254 = unknown marker handled by caller), or
    None when the index is the class (no colours in the table, or the palette agrees)."""
    if not table.has_colors:
        return None
    cache_key = (palette, id(table))
    if cache_key in _palette_luts:
        return _palette_luts[cache_key]
    by_color = {c: k for k, c in enumerate(table.colors) if c is not None}
    entries = [tuple(palette[i:i + 3]) for i in range(0, len(palette) - 2, 3)]
    values = np.arange(256, dtype=np.int32)
    for i, col in enumerate(entries):
        if i == VOID or i == 0:
            continue
        if i < len(table.colors) and table.colors[i] == col:
            continue
        k = by_color.get(col)  # type: ignore[arg-type]
        if k is not None:
            values[i] = k
        elif col == VOID_COLOR:
            values[i] = VOID
    lut = values.astype(np.uint8)
    if (lut == np.arange(256)).all():
        lut = None  # type: ignore[assignment]
    if len(_palette_luts) > 64:
        _palette_luts.clear()
    _palette_luts[cache_key] = lut
    return lut


def _palette_of(data: bytes) -> bytes | None:
    """The PLTE chunk's payload (RGB triples) of a PNG, read from the chunk list, or None."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"PLTE":
            return data[pos + 8:pos + 8 + length]
        if kind == b"IDAT":
            return None
        pos += 12 + length
    return None


#: (palette, table) -> (colour key -> class value, void's code) or None, per process
_palette_codes_cache: dict[tuple[bytes, int], tuple[dict[int, int], int] | None] = {}


def _palette_codes(table: ClassTable, palette: bytes) -> tuple[dict[int, int], int] | None:
    """How to read a palette PNG from its RGB expansion: colour key -> class value, and the
    code that stands for void (255 is no uint8 code). None when colours do not tell the
    palette's indices apart (two indices of one colour mean different things, as when a
    palette is padded with black): then the indices must be decoded as they are."""
    cache_key = (palette, id(table))
    if cache_key in _palette_codes_cache:
        return _palette_codes_cache[cache_key]
    void_code = len(table.names)
    lut = _class_lut(table, palette, "", "")
    codes: dict[int, int] = {}
    others: set[int] = set()  # colours of indices that are no class (a pixel of one fails the image)
    result: tuple[dict[int, int], int] | None = (codes, void_code)
    for i in range(len(palette) // 3):
        key = palette[3 * i] | palette[3 * i + 1] << 8 | palette[3 * i + 2] << 16
        value = int(lut[i]) if lut is not None else i
        code = void_code if value == VOID else value
        if code >= len(table.names) and value != VOID:
            others.add(key)
        elif codes.setdefault(key, code) != code:
            result = None
            break
    if result is not None and (void_code >= VOID or others & codes.keys()):
        result = None
    if len(_palette_codes_cache) > 64:
        _palette_codes_cache.clear()
    _palette_codes_cache[cache_key] = result
    return result


def _read_by_colour(data: bytes, codes: dict[int, int], void_code: int, path: str,
                    ref: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Decode as RGB (libspng) and map colours to class values in one pass that also counts
    them (the C kernel behind lut.to_codes); void's code becomes 255. None: not this way."""
    try:
        rgb = png.decode_rgb8(data)
    except ValueError as exc:
        raise ItemError(str(exc), item=ref, file=path) from None
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        return None
    try:
        out, counts = to_codes(rgb, codes, item=ref, file=path)
    except ItemError:
        return None  # a colour of no class: the index decoder names the values
    out = out.astype(np.uint8, copy=False)
    full = np.zeros(256, np.int64)
    full[: len(counts)] = counts
    if void_code != VOID and full[void_code]:
        fix = np.arange(256, dtype=np.uint8)
        fix[void_code] = VOID
        out = cv2().LUT(out, fix)
        full[VOID], full[void_code] = full[void_code], 0
    return out, full


def read_class_png(data: bytes, table: ClassTable, path: str, ref: str,
                   counted: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """SegmentationClass PNG -> (H, W) uint8 class indices (255 void), and the pixel count of
    every value when the decoding pass gave them (:func:`_read_class_values`), with the
    indices the table names background or void (:attr:`ClassTable.reserved`) made 0 or 255
    (one LUT pass, only for such tables)."""
    cls, counts = _read_class_values(data, table, path, ref, counted)
    lut = table.reserved_lut
    if lut is None:
        return cls, counts
    if counts is not None:
        counts = np.bincount(lut, weights=counts, minlength=256).astype(np.int64)
    return lookup_u8(cls, lut), counts


def _read_class_values(data: bytes, table: ClassTable, path: str, ref: str,
                       counted: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The stored class values of a SegmentationClass PNG (255 void), and the pixel count of
    every value when the decoding pass gave them.

    8-bit palette and grayscale PNGs (nearly every VOC mask) are decoded to their stored
    values by ``png.decode_index8``, which counts them in the same pass: ~0.2 ms per
    640x480 image where Pillow's decoder took ~0.6 and libspng's RGB expansion plus the
    colour lookup ~0.7. Only where that decoder does not apply (no C kernel, other bit
    depths, interlaced) does ``counted`` (semantic mode, which needs the counts) pick the
    older way: a palette whose colours tell its indices apart is decoded as RGB by libspng
    and mapped back by colour in a pass that counts, else Pillow's index decoder. RGB PNGs
    always go by colour.
    """
    try:
        header = png.read_header(data)
    except ValueError as exc:
        raise ItemError(f"not a PNG mask: {exc}", item=ref, file=path) from None
    indexed = _decode_index8(data, path, ref)
    if indexed is not None:  # 8-bit palette or grayscale: the stored values and their counts, one pass
        idx, counts = indexed
        lut = _class_lut(table, _palette_of(data) or b"", path, ref) if header.color_type == 3 else None
        if lut is None:
            return idx, counts
        return lookup_u8(idx, lut), np.bincount(lut, weights=counts, minlength=256).astype(np.int64)
    if header.color_type == 3 and header.bit_depth == 8 and counted:
        palette = _palette_of(data)
        fast = _palette_codes(table, palette) if palette else None
        if fast is not None:
            done = _read_by_colour(data, fast[0], fast[1], path, ref)
            if done is not None:
                return done
    elif header.color_type in (2, 6) and header.bit_depth == 8 and len(table.names) < VOID:
        codes = table.rgb_codes()
        void_code = len(table.names)
        codes = {k: (void_code if v == VOID else v) for k, v in codes.items()}
        done = _read_by_colour(data, codes, void_code, path, ref)
        if done is not None:
            return done
    im = _decode(data, path, ref)
    if im.mode == "P":
        idx = np.asarray(im)
        lut = _class_lut(table, bytes(im.getpalette() or b""), path, ref)
        return (idx if lut is None else cv2().LUT(idx, lut)), None
    if im.mode == "L":
        return np.asarray(im), None
    if im.mode in ("RGB", "RGBA"):
        rgb = np.ascontiguousarray(np.asarray(im)[..., :3])
        code_map, _ = _rgb_codes(rgb, table.rgb_codes(), "colour", path, ref)
        return code_map, None
    raise ItemError(f"SegmentationClass PNG is mode {im.mode}; expected palette, grayscale or RGB", item=ref,
                    file=path)


_OBJECT_CODES = {_key(VOC_PALETTE[k]): k for k in range(256)}


def _decode_index8(data: bytes, path: str, ref: str) -> tuple[np.ndarray, np.ndarray] | None:
    """png.decode_index8 (palette indices and their counts without Pillow), errors as ItemError."""
    try:
        return png.decode_index8(data)
    except ValueError as exc:
        raise ItemError(f"cannot decode the PNG: {exc}", item=ref, file=path) from None


def read_object_png(data: bytes, path: str, ref: str) -> np.ndarray:
    """SegmentationObject PNG -> (H, W) uint8 instance numbers (0 none, 255 void)."""
    indexed = _decode_index8(data, path, ref)
    if indexed is not None:
        return indexed[0]
    im = _decode(data, path, ref)
    if im.mode in ("P", "L"):
        return np.asarray(im)
    if im.mode in ("RGB", "RGBA"):
        rgb = np.ascontiguousarray(np.asarray(im)[..., :3])
        return _rgb_codes(rgb, _OBJECT_CODES, "object colour", path, ref)[0]
    raise ItemError(f"SegmentationObject PNG is mode {im.mode}; expected palette, grayscale or RGB", item=ref,
                    file=path)


def _rgb_codes(rgb: np.ndarray, codes: dict[int, int], what: str, path: str, ref: str) -> tuple[np.ndarray, Any]:
    try:
        out, counts = to_codes(rgb, codes, item=ref, file=path)
    except ItemError as exc:
        raise ItemError(f"{what}s not in the table (24-bit R + 256·G + 65536·B): {exc.message}", item=ref,
                        file=path) from None
    return out.astype(np.uint8, copy=False), counts


@dataclass
class VocItem(Item):
    """One image: its class PNG, its object PNG (None in semantic mode), the class table."""

    reference_id: str
    source: str  # the class PNG
    object_path: str | None
    table: ClassTable
    semantic: bool

    def load(self) -> Segmentation:
        ref, table = self.reference_id, self.table
        try:
            data = png.read_bytes(self.source)
        except FileNotFoundError:
            raise ItemError(f"no {CLASS_DIR} PNG for this image", item=ref, file=self.source) from None
        except OSError as exc:
            raise ItemError(f"cannot read: {exc.strerror or exc}", item=ref, file=self.source) from None
        cls, counts = read_class_png(data, table, self.source, ref, counted=self.semantic)
        if self.semantic:
            return self._semantic(cls, counts)
        assert self.object_path is not None
        try:
            odata = png.read_bytes(self.object_path)
        except FileNotFoundError:
            raise ItemError(
                f"no {OBJECT_DIR} PNG for this image (instance and panoptic modes need it; {opt('mode', 'semantic')} "
                "reads the class PNG alone)", item=ref, file=self.object_path,
            ) from None
        except OSError as exc:
            raise ItemError(f"cannot read: {exc.strerror or exc}", item=ref, file=self.object_path) from None
        try:  # nearly every object PNG: decoded and paired with the class map in one pass
            fused = png.decode_index8_pairs(odata, cls)
        except ValueError as exc:
            raise ItemError(f"cannot decode the PNG: {exc}", item=ref, file=self.object_path) from None
        if fused is not None:
            return self._paired(cls, *fused)
        obj = read_object_png(odata, self.object_path, ref)
        if obj.shape != cls.shape:
            raise ItemError(
                f"{OBJECT_DIR} PNG is {obj.shape[1]}x{obj.shape[0]} but the {CLASS_DIR} PNG is "
                f"{cls.shape[1]}x{cls.shape[0]}", item=ref, file=self.object_path,
            )
        return self._paired(cls, obj)

    def _unknown(self, values: list[int], counts: list[int]) -> ItemError:
        listed = ", ".join(f"{v} ({n} px)" for v, n in zip(values[:8], counts[:8]))
        where = self.table.file or "the 21 VOC classes"
        return ItemError(
            f"{CLASS_DIR} values not in the class table ({len(self.table.names)} classes from {where}): {listed}",
            item=self.reference_id, file=self.source,
        )

    def _semantic(self, cls: np.ndarray, counts: np.ndarray | None) -> Segmentation:
        table = self.table
        if counts is None:
            counts = histogram(cls, 256)
        present = np.flatnonzero(counts).tolist()
        names = table.names
        n_classes = len(names)
        bad = [v for v in present if n_classes <= v < VOID]
        if bad:
            raise self._unknown(bad, [int(counts[v]) for v in bad])
        # once per class of every image: positional arguments, no numpy scalar
        segments = [SegmentInfo(v, names[v], v, True, False, {}) for v in present if 0 < v < VOID]
        dropped = self._void(VOID in present, segments)
        return Segmentation(self.reference_id, cls, segments, source=self.source, dropped_ids=dropped,
                            pixel_counts=counts)

    def _void(self, present: bool, segments: list[SegmentInfo], objects: tuple[int, ...] = ()) -> frozenset[int]:
        """Value 255 (void) and the void ``objects``: the raw ids to drop, or (``--void ignore``)
        an ``ignore`` segment covering them."""
        ids = ((VOID,) if present else ()) + objects
        if not ids:
            return frozenset()
        if not self.table.void_ignore:
            return frozenset(ids)
        segments.append(SegmentInfo(id=VOID, label=IGNORE_LABEL, category_id=VOID, isthing=False,
                                    pixel_ids=None if ids == (VOID,) else ids))
        return frozenset()

    def _paired(self, cls: np.ndarray, obj: np.ndarray, runs: PairRuns | None = None) -> Segmentation:
        """Objects and stuff in one uint8 label map: object pixels keep their object number,
        class pixels outside every object get a free value per class. One pass over both maps
        (``runs``, when the object PNG's decoder made it) counts the (object, class) pairs and
        records where either changes; the label map is the object map with its 0 runs painted
        from those runs (the class map's stuff values), with its histogram, which packing then
        uses.

        Runs once per image with a few dozen pairs: plain loops over Python ints, no numpy
        scalar (each costs more than the loop body)."""
        table = self.table
        if runs is None:
            runs = PairRuns(obj, cls)  # the pairs object << 8 | class that occur (sorted), their counts
        n_classes = len(table.names)
        votes: dict[int, dict[int, int]] = {}  # object -> class -> pixels, objects ascending
        stuff: list[int] = []  # classes outside every object, ascending (pairs are sorted)
        bad: dict[int, int] = {}
        cur: dict[int, int] = {}
        cur_o = -1
        for key, n in zip(runs.pairs, runs.counts):
            o, c = key >> 8, key & 0xFF
            if n_classes <= c < VOID:
                bad[c] = bad.get(c, 0) + n
            elif o == 0:
                if 0 < c < VOID:
                    stuff.append(c)
            elif o != VOID:
                if o != cur_o:
                    cur = votes[o] = {}
                    cur_o = o
                cur[c] = n
        if bad:
            values = sorted(bad)
            raise self._unknown(values, [bad[c] for c in values])
        if len(stuff) > VOID - 1 - len(votes):  # fewer free values than stuff classes
            return self._paired_wide(cls, obj)
        stuff_lut = bytearray(256)
        stuff_lut[VOID] = VOID
        stuff_id: list[tuple[int, int]] = []
        v = 1
        for c in stuff:  # the free values (no object's number) in order
            while v in votes:
                v += 1
            stuff_id.append((c, v))
            stuff_lut[c] = v
            v += 1
        # object numbers (and the object PNG's void) on top; the decoded object map is this item's
        # own, so it becomes the label map (Pillow's arrays are read-only: painted into a new one)
        label_map, counts = runs.paint(stuff_lut, in_place=obj.flags.writeable)
        segments, warnings, void_objects = self._objects(votes, False)
        names = table.names
        for c, v in stuff_id:  # class pixels outside every object: one stuff region per class
            segments.append(SegmentInfo(v, names[c], c, False))
        dropped = self._void(bool(counts[VOID]), segments, tuple(void_objects))
        return Segmentation(self.reference_id, label_map, segments, source=self.source, dropped_ids=dropped,
                            warnings=warnings, pixel_counts=counts)

    def _objects(self, votes: dict[int, dict[int, int]],
                 wide: bool) -> tuple[list[SegmentInfo], list[str], list[int]]:
        """One thing per object, of the majority class under it; disagreeing pixels reported.
        An object with no class under it but void (a shape a tool drew with a void label, when
        the class table names that index void: :attr:`ClassTable.reserved`) is void: its
        number is returned in the third list, with a warning. ``wide``: the label map is
        ``object << 8 | class`` (:meth:`_paired_wide`), so a thing covers its pairs' keys."""
        table = self.table
        names = table.names
        segments: list[SegmentInfo] = []
        warnings: list[str] = []
        void_objects: list[int] = []
        for o in sorted(votes):
            pairs = votes[o]
            if len(pairs) == 1 and not wide:  # nearly every object: one class under it
                (c,) = pairs
                if 0 < c < VOID:
                    segments.append(SegmentInfo(o, names[c], c, True, False, {"voc_object": o}))
                    continue
            classed = {c: n for c, n in pairs.items() if c not in (0, VOID)}
            if not classed and pairs.get(VOID) and VOID in table.reserved.values():
                void_objects.append(o)
                warnings.append(f"object {o} of {OBJECT_DIR} lies on void pixels of {CLASS_DIR} only; it is void")
                continue
            if not classed:
                raise ItemError(
                    f"object {o} of {OBJECT_DIR} has no class under it in {CLASS_DIR} (only background or void)",
                    item=self.reference_id, file=self.object_path,
                )
            best = max(classed, key=lambda c: (classed[c], -c))  # majority; ties to the lower index
            others = {c: n for c, n in pairs.items() if c not in (best, VOID)}
            if others:
                detail = ", ".join(f"{n} px {names[c]}" for c, n in sorted(others.items()))
                warnings.append(
                    f"object {o}: {sum(others.values())} of {sum(pairs.values())} pixels disagree with its class "
                    f"{names[best]!r} in {CLASS_DIR} ({detail}); the object is read as {names[best]!r}"
                )
            segments.append(SegmentInfo(id=o, label=names[best], category_id=best, isthing=True,
                                        metadata={"voc_object": o},
                                        pixel_ids=tuple((o << 8) | c for c in sorted(pairs)) if wide else None))
        return segments, warnings, void_objects

    def _paired_wide(self, cls: np.ndarray, obj: np.ndarray) -> Segmentation:
        """The general case (objects and stuff classes together more than 254 values): a
        uint16 label map of ``object << 8 | class``."""
        table = self.table
        keys = obj.astype(np.uint16)
        keys <<= 8
        keys |= cls
        counts = np.bincount(keys.ravel(), minlength=1 << 16)
        present = np.flatnonzero(counts)
        objs, classes = (present >> 8).tolist(), (present & 0xFF).tolist()
        npix = counts[present].tolist()
        bad = sorted({c for c in classes if len(table.names) <= c < VOID})
        if bad:
            per = {c: sum(n for c2, n in zip(classes, npix) if c2 == c) for c in bad}
            raise self._unknown(bad, [per[c] for c in bad])
        votes: dict[int, dict[int, int]] = {}
        stuff: list[int] = []
        void_keys: list[int] = []
        for key, o, c, n in zip(present.tolist(), objs, classes, npix):
            if o == VOID or (o == 0 and c == VOID):
                void_keys.append(key)
            elif o == 0:
                if c:
                    stuff.append(c)
            else:
                votes.setdefault(o, {})[c] = n
        segments, warnings, void_objects = self._objects(votes, True)
        void_keys += [(o << 8) | c for o in void_objects for c in votes[o]]
        for c in stuff:  # class pixels outside every object: one stuff region per class
            segments.append(SegmentInfo(id=STUFF_BASE + c, label=table.names[c], category_id=c, isthing=False,
                                        pixel_ids=(c,)))
        dropped: frozenset[int] = frozenset()
        if void_keys:
            if table.void_ignore:
                segments.append(SegmentInfo(id=IGNORE_RAW, label=IGNORE_LABEL, category_id=VOID, isthing=False,
                                            pixel_ids=tuple(void_keys)))
            else:
                dropped = frozenset(void_keys)
        return Segmentation(self.reference_id, keys, segments, source=self.source, dropped_ids=dropped,
                            warnings=warnings)


class VocReader(Reader):
    """Reads a Pascal VOC root (see the module doc)."""

    options = (
        click.Option(["--subset"], default=None,
                     help="Convert the images of ImageSets/Segmentation/NAME.txt only [default: every image once]."),
        void_option("Pascal VOC's 255 boundary pixels: background, or a segment 'ignore'."),
        labels_option(
            "Class table instead of the root's labelmap.txt / class_names.txt: any label file (CVAT/Datumaro "
            "labelmap.txt, dataset_meta.json, Mapillary config, objectInfo150.csv, class names one a line); "
            "an entry's id is its palette index."
        ),
    )

    def __init__(self, source: str | Path, subset: str | None = None, void: str = "background",
                 labels: str | Path | None = None) -> None:
        super().__init__(source)
        root = self.source
        if not root.is_dir():
            raise SourceError("a Pascal VOC source is a folder (the root holding SegmentationClass/)", file=root)
        labelme = (root / LABELME_CLASS_DIR).is_dir()
        self.class_dir = LABELME_CLASS_DIR if labelme else CLASS_DIR
        self.object_dir = LABELME_OBJECT_DIR if labelme else OBJECT_DIR
        if not (root / self.class_dir).is_dir():
            raise SourceError(f"no {CLASS_DIR}/ folder; is this a Pascal VOC root?", file=root)
        check_void(void)
        self.has_objects = (root / self.object_dir).is_dir()
        self.table = load_class_table(root, void == "ignore", location(labels) if labels is not None else None)
        self.categories = self.table.categories()
        self.default_mode = "panoptic" if self.has_objects else "semantic"
        self.semantic = not self.has_objects
        self.subset = subset
        self._lists = self._set_lists(subset)
        if next(self._stems(), None) is None:  # an empty root is a wrong SOURCE, not "0 of 0 converted"
            raise SourceError(f"no images: {self.class_dir}/ has no .png (or the image lists are empty)", file=root)

    def _set_lists(self, subset: str | None) -> list[Path]:
        sets = self.source / SETS_DIR
        found = sorted(sets.glob("*.txt")) if sets.is_dir() else []
        if subset is None:
            return found
        chosen = sets / f"{subset}.txt"
        if not chosen.is_file():
            have = ", ".join(p.stem for p in found) or "none"
            raise SourceError(f"no image list {SETS_DIR}/{subset}.txt (lists there: {have})", file=self.source)
        return [chosen]

    def use_mode(self, mode: str) -> None:
        if mode != "semantic" and not self.has_objects:
            raise SourceError(
                f"this VOC root has {CLASS_DIR}/ but no {OBJECT_DIR}/: class PNGs say which class each pixel is, "
                f"not which object, so only {opt('mode', 'semantic')} can be converted ({mode} needs the object PNGs)",
                file=self.source,
            )
        self.semantic = mode == "semantic"

    def _stems(self) -> Iterator[str]:
        if not self._lists:
            for p in sorted((self.source / self.class_dir).glob("*.png")):
                yield p.stem
            return
        seen: set[str] = set()
        for path in self._lists:
            try:
                fh = path.open(encoding="utf-8")  # a local file, or a URL streamed through fsspec
            except OSError as exc:
                raise SourceError(f"cannot read the image list: {exc.strerror or exc}", file=path) from None
            with fh:
                for line in fh:  # streamed; VOC lists may carry a second column (-1/1) in Main/, not here
                    fields = line.split()
                    if not fields or fields[0] in seen:
                        continue
                    seen.add(fields[0])
                    yield fields[0]

    def __len__(self) -> int:
        """The number of images (streams the lists once more: a few ms for VOC's 10,000)."""
        return sum(1 for _ in self._stems())

    def items(self) -> Iterator[Item]:
        class_dir = str(self.source / self.class_dir) + "/"
        object_dir = str(self.source / self.object_dir) + "/"
        for stem in self._stems():
            yield VocItem(stem, f"{class_dir}{stem}.png", None if self.semantic else f"{object_dir}{stem}.png",
                          self.table, self.semantic)


class ClassNumbering:
    """Class numbers for writers that put them in per-item files (VOC PNGs, YOLO label lines).

    Files are written in the workers, so the numbers are fixed before any item: the
    source's category table in order, from ``first``, a category named twice getting one
    number. A source without a table is refused rather than numbered as labels are first
    seen, which would depend on the order of images. A segment ``ignore`` that is stuff
    (``--void ignore``) has no number (``of`` gives None). With a ``convention`` (the VOC
    writer's :func:`voc_convention`), a category it calls background is 0 and one it calls
    void has no number (the writer's void), so that no reserved name becomes a class line
    that its own reader would read back as void.
    """

    def __init__(self, categories: list[Category] | None, writer: str, *, first: int,
                 convention: Callable[[str], str | None] | None = None) -> None:
        if categories is None:
            raise SourceError(
                f"the {writer} writer numbers classes by the source's category table, and this source has none; "
                f"give the reader a class table (e.g. {opt('labels')}) so that numbers do not "
                f"depend on the order of images"
            )
        self.names: list[str] = []
        self.by_id: dict[int, int] = {}
        self.by_name: dict[str, int] = {}
        self.void_ids: set[int] = set()
        self.void_names: set[str] = set()
        for cat in categories:
            if cat.name == IGNORE_LABEL and not cat.isthing:
                continue
            kind = convention(cat.name) if convention is not None else None
            if kind == BACKGROUND:
                self.by_id.setdefault(cat.id, 0)
                self.by_name.setdefault(cat.name, 0)
                continue
            if kind is not None:
                self.void_ids.add(cat.id)
                self.void_names.add(cat.name)
                continue
            if cat.name not in self.by_name:
                self.by_name[cat.name] = first + len(self.names)
                self.names.append(cat.name)
            self.by_id.setdefault(cat.id, self.by_name[cat.name])

    def of(self, payload: dict[str, Any], where: dict[str, Any]) -> int | None:
        """The number of one packed Segment payload (by category id, else by label)."""
        label, meta = payload["label"], payload["metadata"]
        if label == IGNORE_LABEL and not meta.get("isthing", True):
            return None
        cid = meta.get("category_id")
        if cid in self.void_ids or (cid is None and label in self.void_names):
            return None
        k = self.by_id.get(cid) if cid is not None else None
        if k is None:
            k = self.by_name.get(label)
        if k is None:
            raise ItemError(f"class {label!r} (category {cid}) is not in the category table", **where)
        return k


class VocWriter(Writer):
    """Writes a Pascal VOC root that the ``voc`` reader, Datumaro and CVAT read back.

    Class indices are a dataset-wide decision made before any item is written (PNGs are
    written in the workers): class k is the k-th entry of the reader's category table
    (background 0), the same rule as stable semantic indices, so the output is the same
    for any --jobs. A source without a category table (labelme or CVAT without
    ``--labels``) is refused up front rather than numbered in first-seen order, which
    would depend on the order workers finish. At most 254 classes (255 is void).

    Per image: ``SegmentationClass/<stem>.png`` (every segment's class) and, unless the
    mode is semantic, ``SegmentationObject/<stem>.png`` (things numbered 1..n in segment
    order; at most 254, else the image fails; stuff is 0 there). Void in the IR
    (unlabelled pixels, stuff dropped by instance mode) is background 0; a segment labelled
    ``ignore`` (``--void ignore`` of the voc or rgb readers) is 255 in both, as VOC writes
    its boundary ring. Palettes are the standard VOC palette; labelmap.txt's colours are
    that palette's, category colours are not used (readers that map by colour must see
    the palette's colours).
    """

    def __init__(self, output: str | Path, plan: ModePlan) -> None:
        super().__init__(output, plan)
        self.classes = ClassNumbering(plan.categories, "voc", first=1, convention=voc_convention)
        if len(self.classes.names) >= VOID:
            raise SourceError(f"{len(self.classes.names)} classes do not fit VOC's class indices 1..254 (255 is void)")
        self.objects = plan.mode != "semantic"
        self.palette = VOC_PALETTE.tobytes()

    def prepare(self) -> None:
        self.store.makedirs(CLASS_DIR)
        if self.objects:
            self.store.makedirs(OBJECT_DIR)

    def write(self, seg: Segmentation) -> Written:
        ref = output_stem(seg.reference_id, source=seg.source)
        where = {"item": seg.reference_id, "file": seg.source}
        packed = pack(seg, renumber=self.plan.renumbers)
        class_lut = np.zeros(256, np.uint8)
        object_lut = np.zeros(256, np.uint8)
        n_objects = 0
        for payload in packed.segments[1:]:
            index, meta = payload["index"], payload["metadata"]
            k = self.classes.of(payload, where)
            if k is None:  # an ignore segment: VOC's void
                class_lut[index] = object_lut[index] = VOID
                continue
            class_lut[index] = k
            if self.objects and meta.get("isthing", True):
                n_objects += 1
                if n_objects >= VOID:
                    raise ItemError(
                        f"more than {VOID - 1} objects do not fit one SegmentationObject PNG (255 is void); "
                        "nothing was written for this image", **where,
                    )
                object_lut[index] = n_objects
        files = [self.store.put(f"{CLASS_DIR}/{ref}.png",
                                png.encode_palette8(cv2().LUT(packed.mask, class_lut), self.palette))]
        if self.objects:
            files.append(self.store.put(f"{OBJECT_DIR}/{ref}.png",
                                        png.encode_palette8(cv2().LUT(packed.mask, object_lut), self.palette)))
        return Written(ref, tuple(files))

    def finish(self, records: Iterator[str]) -> None:
        with self.store.replacing(f"{SETS_DIR}/default.txt") as fh:
            for ref in records:
                fh.write(ref + "\n")
        with self.store.replacing(LABELMAP) as fh:
            fh.write("# label:color_rgb:parts:actions\n")
            for k, name in enumerate(["background", *self.classes.names]):
                r, g, b = (int(v) for v in VOC_PALETTE[k])
                fh.write(f"{name}:{r},{g},{b}::\n")


def sniff(path: Path) -> bool:
    """A folder holding SegmentationClass/ (a VOC root) or labelme2voc's SegmentationClassPNG/."""
    return path.is_dir() and ((path / CLASS_DIR).is_dir() or (path / LABELME_CLASS_DIR).is_dir())


FORMAT = Format(
    name="voc",
    description="Pascal VOC segmentation root: SegmentationClass + SegmentationObject palette PNGs, labelmap.txt",
    reader=VocReader,
    writer=VocWriter,
    sniff=sniff,
)
