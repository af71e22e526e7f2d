"""Colour-coded and index-coded mask PNGs: one mask image per image, no JSON.

Six encodings say how a pixel becomes a segment (``--encoding``):

- ``colormap``: each colour is a class (``--colormap`` file or built-in table);
  ``--tolerance`` resolves JPEG / anti-aliased colours (``rgb_resolve``);
- ``palette``: the pixel value of a palette (mode P) or grayscale PNG is the class id;
- ``class-instance``: 8/16-bit value class·D + instance (``--divisor``; Cityscapes
  ``*_instanceIds``, MOTS, KITTI, Mapillary);
- ``id``: COCO-panoptic-style id R + 256·G + 256²·B, each distinct id one instance;
- ``step``: KITTI-STEP / MOTChallenge-STEP panoptic PNGs, R = class, G·256 + B = instance;
- ``ade20k``: ADE20K ``*_seg.png``: class R/10·256 + G, instance B; names from the
  image's own files (``ade20k_names``).

``--instances DIR`` pairs colormap/palette class masks with instance masks
(``rgb_instances``); label files of other tools are read by ``segconvert.codecs.label_files``.

The tables that depend only on the options (colours, classes, value lookup) live in
``rgb_tables``, built once per process from the small, hashable ``Spec`` each item
carries; this module decodes masks with them and reads the folder.

Colour → class is one pack (``cvtColor`` into a reused RGBA buffer, viewed as uint32
and masked to 24 bits) and one ``np.take`` on a 2^24-entry table whose unset entries
hold a sentinel (the dtype's maximum). Colours not in the map are found by one
``max()`` over the result, and only their pixels are looked at again: to report them,
or (``--tolerance``, ``--unknown background|ignore``) to resolve them once and store
the answer in the table, so each colour is resolved at most once per process.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from segconvert.codecs import limits, png
from segconvert.codecs import lut as lookups
from segconvert.codecs.opencv import cv2
from segconvert.codecs.shapes import check_void, void_option
from segconvert.converters.rgb_tables import (
    ALL_BUILTINS,
    BUILTINS,
    ENCODINGS,
    IGNORE_LABEL,
    INDEXED_BUILTINS,
    STEP_DEFAULT_LABELS,
    VOID_VALUE,
    Color,
    Spec,
    Table,
    build_table,
    color_of_key,
)
from segconvert.errors import ItemError, SourceError, opt
from segconvert.interfaces.format import Format, Reader
from segconvert.io import sources
from segconvert.io.sources import PathOrUrl, UrlPath, expand_pattern, is_local_pattern, location, pattern_root
from segconvert.model.ir import FailedItem, Item, Segmentation, SegmentInfo

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_JPEG_MAGIC = b"\xff\xd8\xff"
_GLOB_CHARS = re.compile(r"[*?\[]")
_MAX_LISTED = 10  # unknown colours / values named in one message


# --------------------------------------------------------------------------- per-process buffers

_rgba: dict[tuple[int, int], np.ndarray] = {}
_color_luts: dict[Spec, tuple[Table, np.ndarray]] = {}


def _rgba_buffer(h: int, w: int) -> np.ndarray:
    buf = _rgba.get((h, w))
    if buf is None:
        if len(_rgba) > 8:
            _rgba.clear()
        buf = _rgba[(h, w)] = np.empty((h, w, 4), np.uint8)
    return buf


def _color_lut(spec: Spec, table: Table) -> np.ndarray:
    """The 2^24-entry colour → raw id + 1 table of ``spec``; 0 where not (yet) known.

    Zero-filled (free pages instead of a 16-32 MB fill, ~40 ms per process), so a
    lookup reads ``lut[key] - 1``: an unknown colour wraps to the dtype's maximum, the
    sentinel.
    """
    cached = _color_luts.get(spec)
    if cached is not None and cached[0] is table:  # identity, not equality: hashing a Table is slow
        return cached[1]
    _color_luts.clear()  # one run uses one spec; do not keep 16-32 MB per old one
    dtype = table.dtype
    lut = np.zeros(1 << 24, dtype)
    assert table.color_keys is not None and table.color_raws is not None
    lut[table.color_keys] = table.color_raws.astype(dtype) + 1
    _color_luts[spec] = (table, lut)
    return lut


# --------------------------------------------------------------------------- decoding


def _read(path: str, ref: str) -> bytes:
    try:
        return png.read_bytes(path)
    except FileNotFoundError:
        raise ItemError("mask file not found", item=ref, file=path) from None
    except OSError as exc:
        raise ItemError(f"cannot read the mask: {exc.strerror or exc}", item=ref, file=path) from None


def _decode(data: bytes, where: dict[str, str]) -> np.ndarray:
    try:
        return png.decode(data)
    except ValueError as exc:
        raise ItemError(str(exc), **where) from None


def _to_8bit(img: np.ndarray, where: dict[str, str]) -> np.ndarray:
    """16-bit colour channels are accepted when they are exact 8-bit colours (v·257)."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        low = (img & 0xFF).astype(np.uint8)
        high = (img >> 8).astype(np.uint8)
        if np.array_equal(low, high):
            return high
        raise ItemError("16-bit colour mask whose values are not 8-bit colours (v * 257); "
                        "convert it to 8 bits per channel", **where)
    raise ItemError(f"unsupported image data type {img.dtype}", **where)


def _alpha_void(alpha: np.ndarray, where: dict[str, str]) -> np.ndarray | None:
    """Pixels to make void (alpha 0); ItemError for partly transparent pixels."""
    if int(alpha.min()) == 255:
        return None
    partial = (alpha != 0) & (alpha != 255)
    n = int(np.count_nonzero(partial))
    if n:
        vals = np.unique(alpha[partial])[:5].tolist()
        raise ItemError(
            f"{n} pixels are partly transparent (alpha {', '.join(map(str, vals))}"
            f"{'...' if n > 5 else ''}); only fully opaque pixels or fully transparent (void) ones "
            "can be read as classes", **where,
        )
    return alpha == 0


def _pack_rgb(img: np.ndarray, where: dict[str, str]) -> tuple[np.ndarray, np.ndarray | None]:
    """24-bit keys R + 256·G + 256²·B in a reused buffer (valid until the next call), + void mask."""
    img = _to_8bit(img, where)
    h, w = img.shape[:2]
    buf = _rgba_buffer(h, w)
    void = None
    if img.ndim == 2:
        cv2().cvtColor(img, cv2().COLOR_GRAY2RGBA, dst=buf)
    elif img.shape[2] == 3:
        cv2().cvtColor(img, cv2().COLOR_BGR2RGBA, dst=buf)
    elif img.shape[2] == 4:
        cv2().cvtColor(img, cv2().COLOR_BGRA2RGBA, dst=buf)
        void = _alpha_void(buf[..., 3], where)
    else:
        raise ItemError(f"image has {img.shape[2]} channels", **where)
    keys = buf.view("<u4").reshape(h, w)
    np.bitwise_and(keys, 0xFFFFFF, out=keys)
    return keys, void


def _present(label_map: np.ndarray) -> np.ndarray:
    """Sorted distinct non-zero values of a small-valued label map, without sorting pixels."""
    if label_map.dtype == np.uint8:
        hist = cv2().calcHist([label_map], [0], None, [256], [0, 256]).ravel()
        return np.flatnonzero(hist[1:]) + 1
    return _distinct(label_map)


def _distinct(label_map: np.ndarray) -> np.ndarray:
    """Distinct non-zero values: unique over the starts of runs (exact, every value starts a run)."""
    flat = label_map.reshape(-1)
    if flat.size == 0:
        return flat[:0]
    starts = np.empty(flat.size, bool)
    starts[0] = True
    np.not_equal(flat[1:], flat[:-1], out=starts[1:])
    vals = np.unique(flat[starts])
    return vals[vals != 0]


def _class_segments(table: Table, raws: np.ndarray) -> list[SegmentInfo]:
    segs = []
    for raw in raws.tolist():
        cat = table.entries[raw - 1].category
        meta = {"supercategory": cat.supercategory} if cat.supercategory else {}
        segs.append(
            SegmentInfo(id=raw, label=cat.name, category_id=cat.id, isthing=cat.isthing, metadata=meta)
        )
    return segs


def _fmt(c: Color) -> str:
    return f"({c[0]}, {c[1]}, {c[2]})"


def _chebyshev(colors: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(U, K) max-per-channel distance between colour keys (uint32) and table keys."""
    a = np.stack([colors & 255, (colors >> 8) & 255, (colors >> 16) & 255], -1).astype(np.int16)
    b = np.stack([keys & 255, (keys >> 8) & 255, (keys >> 16) & 255], -1).astype(np.int16)
    return np.abs(a[:, None, :] - b[None, :, :]).max(-1)


def _unknown_message(
    table: Table, colors: np.ndarray, counts: np.ndarray, tolerance: int | None, what: str
) -> str:
    """Name each colour (most pixels first, at most _MAX_LISTED), its pixels and nearest class."""
    assert table.color_keys is not None
    order = np.argsort(-counts, kind="stable")[:_MAX_LISTED]
    d = _chebyshev(colors[order], table.color_keys)
    listed = "; ".join(
        f"{_fmt(color_of_key(int(colors[i])))} in {int(counts[i])} px, nearest {table.color_names[b]!r} "
        f"{_fmt(color_of_key(int(table.color_keys[b])))} at distance {int(d[n, b])}"
        for n, (i, b) in enumerate(zip(order.tolist(), d.argmin(1).tolist(), strict=True))
    )
    more = f" and {len(colors) - _MAX_LISTED} more" if len(colors) > _MAX_LISTED else ""
    if tolerance is None:
        hint = (f"add them to the colormap, use {opt('tolerance', 'T')} for anti-aliased or JPEG masks, "
                f"or {opt('unknown', 'background|ignore')}")
    else:
        hint = (f"add them to the colormap, or use {opt('unknown', 'background|ignore')}; a region of a colour beyond "
                f"{opt('tolerance', tolerance)} of every class is not given its neighbour's class")
    return f"{len(colors)} colour(s) {what}: {listed}{more}; {hint}"


def _resolve_colors(
    spec: Spec, table: Table, lut: np.ndarray, colors: np.ndarray, counts: np.ndarray, where: dict[str, str]
) -> None:
    """Colours missing from ``lut`` (exact lookups only): store --unknown's answer, or raise naming them."""
    fallback = {"error": None, "background": 0, "ignore": table.ignore_raw}[spec.unknown]
    if fallback is None:
        raise ItemError(_unknown_message(table, colors, counts, None, "are not in the colormap"), **where)
    lut[colors] = fallback + 1  # stored + 1, see _color_lut


def _resolve_tolerant(
    spec: Spec, table: Table, keys: np.ndarray, label_map: np.ndarray, where: dict[str, str]
) -> tuple[np.ndarray, list[str]]:
    """--tolerance: inexact colours by colour and neighbourhood (``rgb_resolve``); + warnings."""
    from segconvert.converters import rgb_resolve

    assert table.color_keys is not None and table.color_raws is not None and spec.tolerance is not None
    res = rgb_resolve.resolve(keys, label_map, table.color_keys, table.color_raws, spec.tolerance,
                              label_map.dtype)
    out = res.label_map
    warnings = []
    if res.unresolved is not None:
        if spec.unknown == "error":
            colors, counts = np.unique(keys[res.unresolved], return_counts=True)
            n = int(counts.sum())
            what = (f"cannot be resolved ({n} px with no class near enough in colour and neighbourhood, "
                    f"within {opt('tolerance', spec.tolerance)})")
            raise ItemError(_unknown_message(table, colors, counts, spec.tolerance, what), **where)
        fill = 0 if spec.unknown == "background" else table.ignore_raw
        assert fill is not None
        out[res.unresolved] = fill
        warnings.append(f"{int(np.count_nonzero(res.unresolved))} pixels could not be resolved and are "
                        f"{spec.unknown} ({opt('unknown', spec.unknown)})")
    if res.voted:
        warnings.append(f"{res.voted} pixels whose colour is not clearly one class's were given the "
                        f"nearest-coloured class around them ({opt('tolerance', spec.tolerance)})")
    return out, warnings


def _index_values(
    data: bytes, header: png.PngHeader, where: dict[str, str], encoding: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The values of a palette (mode P) or grayscale 1..16-bit PNG, and its void (transparent) pixels."""
    void = None
    if header.color_type in (2, 6):
        raise ItemError(
            f"mask is {header.description}; {opt('encoding', encoding)} reads palette (mode P) or grayscale "
            f"index PNGs; colour masks need {opt('encoding', 'colormap')}", **where,
        )
    if header.color_type == 3 or header.bit_depth < 8:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                values = np.asarray(im)
                trns = im.info.get("transparency") if im.mode == "P" else None
        except limits.PIL_ERRORS as exc:
            raise ItemError(f"cannot decode the PNG: {exc}", **where) from None
        if values.dtype == bool:
            values = values.view(np.uint8)
        if trns is not None:
            alpha = np.full(256, 255, np.uint8)
            if isinstance(trns, bytes):
                alpha[: len(trns)] = np.frombuffer(trns, np.uint8)[:256]
            else:
                alpha[int(trns)] = 0
            void = _alpha_void(cv2().LUT(values, alpha), where)
    else:
        img = _decode(data, where)
        if img.ndim == 3:  # grayscale + alpha arrives as BGRA
            void = _alpha_void(img[..., 3], where)
            img = np.ascontiguousarray(img[..., 0])
        values = img
    if values.dtype not in (np.uint8, np.uint16) or values.ndim != 2:
        raise ItemError(f"cannot read index values from a {values.dtype} {values.shape} image", **where)
    return values, void


def class_instance_segments(
    values: np.ndarray, counts: np.ndarray, divisor: int, table: Table, spec: Spec, where: dict[str, str]
) -> tuple[list[SegmentInfo], list[int]]:
    """Segments (raw id = value + 1) and void raw ids of the values present in a class·D + instance mask.

    ``--below-divisor class`` (Cityscapes ``*_instanceIds``, MOTS): a value below D is
    class ``value`` without an instance -- a stuff region, or a crowd region of a thing
    class (``iscrowd``); both fold into background in instance mode -- and a value >= D
    is instance ``value % D`` of class ``value // D`` (Cityscapes numbers instances from 0).
    ``--below-divisor instance`` (KITTI, Mapillary Vistas v1.2, whose class 0 is a real
    class): every value is ``class * D + instance``, and instance 0 is the class without
    an instance, as those datasets store stuff. Classes the table marks void, and value 0
    when there is no table, are void. ``--encoding step`` passes ``value = R·65536 + G·256 + B``
    and D = 65536 (class R, instance G·256 + B, 0 = none): the ``instance`` rule, with R = 255
    void by ``--void``.
    """
    segments: list[SegmentInfo] = []
    dropped: list[int] = []
    unknown: list[int] = []
    ignore: list[int] = []
    step = spec.encoding == "step"
    void_ignore = step and spec.void == "ignore"
    for v in values.tolist():
        if step:
            cls, inst = divmod(v, divisor)
            inst = inst or None
        elif spec.below_divisor == "class":
            cls, inst = (v, None) if v < divisor else divmod(v, divisor)
        else:
            cls, inst = divmod(v, divisor)
            inst = inst or None
        if table.classes is None:
            if v == 0:
                dropped.append(1)
                continue
            name, has_instances, supercategory = f"class-{cls}", False, None
        else:
            c = table.classes.get(cls)
            if c is None:
                if spec.unknown == "error":
                    unknown.append(v)
                elif spec.unknown == "ignore":
                    ignore.append(v + 1)
                else:
                    dropped.append(v + 1)
                continue
            if c.void:
                (ignore if void_ignore and cls == VOID_VALUE else dropped).append(v + 1)
                continue
            name, has_instances, supercategory = c.name, c.isthing, c.supercategory
        meta = {"supercategory": supercategory} if supercategory else {}
        if inst is None:
            segments.append(SegmentInfo(id=v + 1, label=name, category_id=cls, isthing=False,
                                        iscrowd=has_instances, metadata=meta))
        else:
            meta["instance"] = inst
            segments.append(SegmentInfo(id=v + 1, label=name, category_id=cls, isthing=True, metadata=meta))
    if unknown and step:  # by class (R): the instances of one unknown class are one problem
        per_class: dict[int, int] = {}
        for v in unknown:
            per_class[v // divisor] = per_class.get(v // divisor, 0) + int(counts[v])
        listed = ", ".join(f"R = {c} ({n} px)" for c, n in list(per_class.items())[:_MAX_LISTED])
        more = f" and {len(per_class) - _MAX_LISTED} more" if len(per_class) > _MAX_LISTED else ""
        table_name = opt("labels", spec.labels or STEP_DEFAULT_LABELS)
        raise ItemError(f"{len(per_class)} class(es) not in {table_name}: {listed}{more}; add the classes, "
                        f"or use {opt('unknown', 'background|ignore')}", **where)
    if unknown:
        below = spec.below_divisor == "class"
        listed = ", ".join(f"{v} (class {v // divisor if v >= divisor or not below else v}, {int(counts[v])} px)"
                           for v in unknown[:_MAX_LISTED])
        more = f" and {len(unknown) - _MAX_LISTED} more" if len(unknown) > _MAX_LISTED else ""
        names = f"{opt('labels', spec.labels)}" if spec.labels else f"{opt('colormap', spec.colormap)}"
        raise ItemError(f"{len(unknown)} value(s) are of classes not in {names} ({opt('divisor', divisor)}): "
                        f"{listed}{more}; add the classes, or use {opt('unknown', 'background|ignore')}", **where)
    if ignore:
        cat = table.categories[-1].id if table.categories else None
        segments.append(SegmentInfo(id=ignore[0], label=IGNORE_LABEL, category_id=cat, isthing=False,
                                    pixel_ids=tuple(ignore)))
    return segments, dropped


class _PixelCounter:
    """``counts[value]`` for a raw-id (value + 1) label map, counted only when a message asks
    (24-bit values: a full histogram would be 2^24 entries)."""

    def __init__(self, label_map: np.ndarray) -> None:
        self.label_map = label_map

    def __getitem__(self, value: int) -> int:
        return int(np.count_nonzero(self.label_map == value + 1))


@dataclass
class RgbItem(Item):
    """One mask file; ``spec`` is the (small, hashable) decoding options."""

    reference_id: str
    source: str
    spec: Spec
    instance_source: str | None = None  # --instances: the instance mask of the same stem

    def load(self) -> Segmentation:
        seg = self._load_classes()
        if self.instance_source is None:
            return seg
        from segconvert.converters import rgb_instances

        return rgb_instances.pair(seg, build_table(self.spec), self.instance_source, self.spec)

    def _load_classes(self) -> Segmentation:
        where = {"item": self.reference_id, "file": self.source}
        data = _read(self.source, self.reference_id)
        is_jpeg = data[:3] == _JPEG_MAGIC
        header = None
        if not is_jpeg:
            try:
                header = png.read_header(data)
                limits.check_pixels(header.width, header.height)  # before any decoding
            except ValueError as exc:
                raise ItemError(f"{exc}; masks must be PNG (or JPEG with {opt('tolerance')})", **where) from None
        table = build_table(self.spec)
        enc = self.spec.encoding
        if is_jpeg and (enc != "colormap" or self.spec.tolerance is None):
            if enc == "colormap":
                raise ItemError("mask is a JPEG, whose compression changes colours; read it with "
                                f"{opt('tolerance', 'T')} (e.g. {opt('tolerance', '8')}) to map "
                                f"each colour to the nearest class",
                                **where)
            raise ItemError(
                f"mask is a JPEG; lossy compression cannot carry {opt('encoding', enc)} values", **where
            )
        if enc == "colormap":
            return self._colormap(data, header, table, where)
        assert header is not None
        if enc == "palette":
            return self._palette(data, header, table, where)
        if enc == "class-instance":
            return self._class_instance(data, header, table, where)
        if enc == "step":
            return self._step(data, header, table, where)
        return self._instances(data, header, table, where)

    def _step(self, data: bytes, header: png.PngHeader, table: Table, where: dict[str, str]) -> Segmentation:
        """KITTI-STEP / MOTChallenge-STEP panoptic PNGs: R = class (train id, 255 void), instance
        = G·256 + B (0: none), as google-research/deeplab2 writes them (``data/utils/
        create_step_panoptic_maps.py`` ``encode_panoptic_map``) and reads them
        (``data/build_step_data.py`` ``_decode_panoptic_map``: panoptic = R·1000 + G·256 + B).

        Raw id = R·65536 + G·256 + B + 1 (uint32): one BGRA conversion packs the pixel,
        little-endian, as B + 256·G + 65536·R; segments by :func:`class_instance_segments`.
        """
        if header.color_type not in (2, 6):
            raise ItemError(f"mask is {header.description}; {opt('encoding', 'step')} reads RGB PNGs "
                            "(R = class, G·256 + B = instance)", **where)
        img = _to_8bit(_decode(data, where), where)
        void = _alpha_void(img[..., 3], where) if img.shape[2] == 4 else None
        h, w = img.shape[:2]
        buf = _rgba_buffer(h, w)
        cv2().cvtColor(img, cv2().COLOR_BGR2BGRA if img.shape[2] == 3 else cv2().COLOR_BGRA2BGRA, dst=buf)
        label_map = buf.view("<u4").reshape(h, w) & np.uint32(0xFFFFFF)  # a new array: buf is reused
        label_map += np.uint32(1)
        if void is not None:
            label_map[void] = 0
        values = _distinct(label_map) - 1
        segments, dropped = class_instance_segments(values, _PixelCounter(label_map), 1 << 16, table,
                                                    self.spec, where)
        return Segmentation(self.reference_id, label_map, segments, source=self.source,
                            dropped_ids=frozenset(dropped))

    def _class_instance(
        self, data: bytes, header: png.PngHeader, table: Table, where: dict[str, str]
    ) -> Segmentation:
        """value = class·D + instance (Cityscapes *_instanceIds, KITTI, MOTS, Mapillary v1.2).

        Raw id = value + 1 (uint32), so class 0 with instances (Mapillary's bird) is not void.
        """
        values, void = _index_values(data, header, where, "class-instance")
        divisor = self.spec.divisor
        assert divisor is not None
        counts = np.bincount(values.reshape(-1), minlength=1 << (8 * values.itemsize))
        if void is not None:
            counts -= np.bincount(values[void], minlength=len(counts))
        label_map = values.astype(np.uint32)
        label_map += 1
        if void is not None:
            label_map[void] = 0
        segments, dropped = class_instance_segments(np.flatnonzero(counts), counts, divisor, table, self.spec,
                                                    where)
        return Segmentation(self.reference_id, label_map, segments, source=self.source,
                            dropped_ids=frozenset(dropped))

    def _colormap(
        self, data: bytes, header: png.PngHeader | None, table: Table, where: dict[str, str]
    ) -> Segmentation:
        lut = _color_lut(self.spec, table)
        if header is not None and header.color_type == 2 and header.bit_depth == 8 and lut.dtype == np.uint8:
            try:  # the common case: fastest decoder, then one fused lookup + histogram pass
                rgb = png.decode_rgb8(data)
            except ValueError as exc:
                raise ItemError(str(exc), **where) from None
            label_map, counts = lookups.lookup_rgb(rgb, lut, offset=0xFF)  # lut holds raw + 1
            if not counts[255]:  # 255 is the sentinel (an unknown colour): every colour known
                present = np.flatnonzero(counts[1:255]) + 1
                segments = _class_segments(table, present)
                return Segmentation(self.reference_id, label_map, segments, source=self.source, pixel_counts=counts)
            keys, void = png.rgb_to_id24(rgb), None
        else:
            keys, void = _pack_rgb(_decode(data, where), where)
        label_map = np.take(lut, keys, mode="clip")  # keys < 2^24: skip the bounds check
        label_map -= label_map.dtype.type(1)  # raw + 1 - 1; unknown 0 - 1 wraps to the sentinel
        if void is not None:
            label_map[void] = 0
        sentinel = np.iinfo(label_map.dtype).max
        warnings: list[str] = []
        if label_map.size and label_map.max() == sentinel:
            if self.spec.tolerance is not None:
                label_map, warnings = _resolve_tolerant(self.spec, table, keys, label_map, where)
            else:
                miss = label_map == sentinel
                missing = keys[miss]
                colors, counts = np.unique(missing, return_counts=True)
                _resolve_colors(self.spec, table, lut, colors, counts, where)
                label_map[miss] = lut[missing] - 1
        segments = _class_segments(table, _present(label_map))
        return Segmentation(self.reference_id, label_map, segments, source=self.source, warnings=warnings)

    def _palette(
        self, data: bytes, header: png.PngHeader, table: Table, where: dict[str, str]
    ) -> Segmentation:
        values, void = _index_values(data, header, where, "palette")
        if table.value_lut is None:  # no names: the value is the raw id, 255 void
            label_map = values if values.flags.writeable and values.flags.owndata else values.copy()
            if void is not None:
                label_map[void] = 0
            segments = []
            dropped: list[int] = []
            for v in _present(label_map).tolist():
                if v == VOID_VALUE and self.spec.void == "background":
                    dropped.append(v)
                else:
                    label = IGNORE_LABEL if v == VOID_VALUE else f"class-{v}"
                    segments.append(SegmentInfo(id=v, label=label, category_id=v, isthing=False))
            return Segmentation(self.reference_id, label_map, segments, source=self.source,
                                dropped_ids=frozenset(dropped))
        lut = table.value_lut
        if values.dtype == np.uint8 and lut.dtype == np.uint8:
            label_map = cv2().LUT(values, lut[:256])
        else:
            label_map = np.take(lut, values)
        if void is not None:
            label_map[void] = 0
        sentinel = np.iinfo(label_map.dtype).max
        if label_map.size and label_map.max() == sentinel:
            bad, counts = np.unique(values[label_map == sentinel], return_counts=True)
            order = np.argsort(-counts, kind="stable")[:_MAX_LISTED]
            listed = ", ".join(f"{int(bad[i])} ({int(counts[i])} px)" for i in order)
            more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
            names = f"{opt('labels')}" if self.spec.labels else f"{opt('colormap', self.spec.colormap)}"
            raise ItemError(
                f"{len(bad)} pixel value(s) are not classes in {names}: {listed}{more}; "
                f"add them, or use {opt('unknown', 'background|ignore')}", **where,
            )
        segments = _class_segments(table, _present(label_map))
        return Segmentation(self.reference_id, label_map, segments, source=self.source)

    def _instances(
        self, data: bytes, header: png.PngHeader, table: Table, where: dict[str, str]
    ) -> Segmentation:
        enc = self.spec.encoding
        if header.color_type not in (2, 6):
            raise ItemError(f"mask is {header.description}; {opt('encoding', enc)} reads RGB PNGs", **where)
        img = _decode(data, where)
        if enc == "id":
            keys, void = _pack_rgb(img, where)
            label_map = keys.copy()
        else:
            # ADE20K: class = R/10*256 + G, instance = B; raw id = class << 8 | B
            img = _to_8bit(img, where)
            void = _alpha_void(img[..., 3], where) if img.shape[2] == 4 else None
            h, w = img.shape[:2]
            buf = _rgba_buffer(h, w)
            cv2().cvtColor(img, cv2().COLOR_BGR2BGRA if img.shape[2] == 3 else cv2().COLOR_BGRA2BGRA, dst=buf)
            packed = buf.view("<u4").reshape(h, w)  # B + 256 G + 65536 R (+ alpha << 24)
            np.bitwise_and(packed, 0xFFFFFF, out=packed)
            b_channel = buf[..., 0]
            label_map = np.take(_ADE_R_CORRECTION, packed >> 16)
            np.subtract(packed, label_map, out=label_map)
            np.putmask(label_map, label_map < 256, 0)  # class 0: not annotated
        if void is not None:
            label_map[void] = 0
        ids = _distinct(label_map)
        top = int(ids[-1]) if len(ids) else 0
        if top < 256:
            label_map = label_map.astype(np.uint8)
        elif top < 65536:
            label_map = label_map.astype(np.uint16)
        labels = table.labels or {}
        segments = []
        if enc == "id":
            for i in ids.tolist():
                label = labels.get(i, f"segment-{i}")
                cat = table.label_category.get(label) if table.label_category else None
                segments.append(SegmentInfo(id=i, label=label, category_id=cat, isthing=True))
        warnings: list[str] = []
        if enc == "ade20k":
            if table.labels is None:  # names from the image's own .json (2021) or _atr.txt (2016)
                from segconvert.converters import ade20k_names

                hist = cv2().calcHist([b_channel], [0], None, [256], [0, 256]).ravel()
                labels, warnings = ade20k_names.image_names(self.source, ids.tolist(), np.flatnonzero(hist))
            for raw in sorted(ids.tolist(), key=lambda r: (r & 255, r)):  # ADE numbers instances by B
                cls = raw >> 8
                segments.append(
                    SegmentInfo(id=raw, label=labels.get(cls, f"class-{cls}"), category_id=cls, isthing=True,
                                metadata={"instance": raw & 255})
                )
        return Segmentation(self.reference_id, label_map, segments, source=self.source, warnings=warnings)


# R → R - R//10 in the bits 16..23 of B + 256 G + 65536 R
_ADE_R_CORRECTION = ((np.arange(256) - np.arange(256) // 10) << 16).astype(np.uint32)


# --------------------------------------------------------------------------- reader


#: folders of photos in the layouts datasets ship in, never read as masks when a folder is
#: walked (VOC JPEGImages, Cityscapes leftImg8bit, CamVid 701_StillsRaw_full, KITTI image_2/3)
PHOTO_FOLDERS = frozenset({"jpegimages", "leftimg8bit", "701_stillsraw_full", "image_2", "image_3"})
#: folder names that hold photos when a sibling folder holds the masks (ADE20K images/ +
#: annotations/, YOLO-style images/ + labels/)
PHOTO_FOLDERS_WITH_SIBLINGS = frozenset({"images", "imgs", "img", "photos"})
#: colour tables recognised at the top of a colour-mask folder, in the order they are preferred.
#: (Not Datumaro's dataset_meta.json, whose common_semantic_segmentation masks are index
#: masks, nor Mapillary's config, whose root also holds 16-bit instance PNGs: give those
#: with --colormap / --labels.)
COLOUR_FILES = ("colormap.json", "label_colors.txt", "labelmap.txt")


def _is_image(p: Path, jpeg: bool = True) -> bool:
    suffix = p.suffix.lower()
    return suffix == ".png" or (jpeg and suffix in (".jpg", ".jpeg"))


def _photo_folders(dirs: list[str]) -> set[str]:
    """The sub-folders of one folder that hold photos, by the dataset layouts' names.

    CamVid's SegNet layout pairs ``train/`` (photos, PNG too) with ``trainannot/``; VOC pairs
    ``SegmentationObject/`` (instances, read with ``--instances``) with ``SegmentationClass/``.
    """
    names = {d.lower(): d for d in dirs}
    skip = {d for d in dirs if d.lower() in PHOTO_FOLDERS or names.get(d.lower() + "annot")}
    if len(dirs) > 1:
        skip |= {d for d in dirs if d.lower() in PHOTO_FOLDERS_WITH_SIBLINGS}
    if "segmentationclass" in names and "segmentationobject" in names:
        skip.add(names["segmentationobject"])
    return skip


def _walk(root: Path | UrlPath, jpeg: bool = True) -> list[Path | UrlPath]:
    """Mask files under ``root``: no hidden folders, photo folders or segconvert outputs (they hold masks too).

    ``jpeg=False`` leaves out .jpg/.jpeg files: a JPEG in a dataset folder is a photo unless
    the user said the masks are JPEGs (``--tolerance``).
    """
    found: list[Path | UrlPath] = []
    for folder, dirs, files in sources.walk(root):  # a URL: one listing of the tree
        if ".segconvert" in dirs and folder != root:
            dirs[:] = []  # an earlier run's OUTPUT inside SOURCE: its masks are not input
            continue
        visible = [d for d in dirs if not d.startswith(".")]
        photos = _photo_folders(visible)
        dirs[:] = [d for d in visible if d not in photos]
        found.extend(folder / f for f in files if not f.startswith(".") and _is_image(Path(f), jpeg))
    return found


def _list_files(source: Path | UrlPath, suffix: str | None, jpeg: bool = True) -> list[Path | UrlPath]:
    text = str(source)
    if isinstance(source, UrlPath) and _GLOB_CHARS.search(text):  # a pattern at a URL: one listing under it
        return _url_matches(text)
    if source.is_dir():
        files = _walk(source, jpeg)
        if suffix:
            files = [p for p in files if p.stem.endswith(suffix)]
        files.sort(key=lambda p: p.relative_to(source).as_posix())
        if not files:
            what = f"ending in {suffix}" if suffix else "(.png, .jpg)" if jpeg else "(.png; .jpg only with --tolerance)"
            raise SourceError(f"no mask images {what} in this folder or below", file=source)
        return files
    if source.is_file():
        return [source]
    if _GLOB_CHARS.search(text):
        files = [p for p in expand_pattern(text) if _is_image(p)]
        if not files:
            raise SourceError("the pattern matches no .png/.jpg files", file=text)
        return files
    raise SourceError("no such folder or file", file=source)


def _url_matches(text: str) -> list[Path | UrlPath]:
    """The images a glob at a URL matches (``s3://b/masks/**/*_gt.png``): the folder before the
    first pattern part is listed once (:meth:`UrlPath.glob`, pathlib's rules)."""
    scheme, _, rest = text.partition("://")
    parts = rest.split("/")
    k = next(i for i, part in enumerate(parts) if _GLOB_CHARS.search(part))
    base = location(f"{scheme}://{'/'.join(parts[:k])}")
    files: list[Path | UrlPath] = [p for p in base.glob("/".join(parts[k:])) if p.is_file() and _is_image(p)]
    if not files:
        raise SourceError("the pattern matches no .png/.jpg files", file=text)
    return files


def colour_file_of(folder: Path | UrlPath) -> Path | UrlPath | None:
    """The colour table a colour-mask folder carries at its top (the first of :data:`COLOUR_FILES`)."""
    if not folder.is_dir():
        return None
    for name in COLOUR_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def _option_file(value: str | Path | None) -> str | None:
    """A built-in table name as it is, a file as its absolute path (workers may run elsewhere)."""
    if value is None:
        return None
    return str(value) if str(value) in ALL_BUILTINS else str(location(value).resolve())


class RgbReader(Reader):
    """A folder (searched recursively) or glob of mask images; one item per file."""

    options = (
        click.Option(
            ["--encoding"], type=click.Choice(ENCODINGS), default="colormap", show_default=True,
            help="How a pixel becomes a segment: colour = class (colormap), palette/grayscale index = class "
            f"(palette), class * D + instance in 8/16-bit PNGs (class-instance, with {opt('divisor')}), "
            "R + 256G + 256^2B = instance id (id), ADE20K _seg.png (ade20k), KITTI-STEP / MOTChallenge-STEP "
            "panoptic PNGs, R = class and 256G + B = instance (step; --labels kitti-step by default).",
        ),
        click.Option(
            ["--colormap"], default=None, metavar="FILE|NAME",
            help="Colour table: JSON {label: [r, g, b] | \"#rrggbb\"}, CamVid label_colors.txt, CVAT labelmap.txt, "
            "Datumaro dataset_meta.json, Mapillary config_v*.json, or built-in " + "|".join(BUILTINS)
            + " [default: the folder's colormap.json / label_colors.txt / labelmap.txt]. Labels void/background/"
            "unlabeled/_background_ are background (0).",
        ),
        click.Option(
            ["--labels"], default=None, metavar="FILE|NAME",
            help='Class names by id for palette/class-instance/id/ade20k masks: JSON {"id": "label"}, a label '
            "file of another tool (Datumaro dataset_meta.json, Mapillary config_v*.json, CVAT labelmap.txt, "
            "labelme2voc labels.txt), or built-in " + "|".join(INDEXED_BUILTINS) + ".",
        ),
        click.Option(
            ["--divisor"], type=click.IntRange(2, 65536), default=None, metavar="D",
            help="--encoding class-instance: value = class * D + instance (1000: Cityscapes _instanceIds, "
            "MOTS; 256: KITTI instance, Mapillary v1.2 instances; KITTI-STEP's RGB PNGs: --encoding step).",
        ),
        click.Option(
            ["--below-divisor"], type=click.Choice(("class", "instance")), default="class", show_default=True,
            help="--encoding class-instance: a value below D is that class without an instance (class: "
            "Cityscapes, MOTS), or instance of class 0, every value being class * D + instance with instance 0 "
            "= no instance (instance: KITTI, Mapillary v1.2).",
        ),
        click.Option(
            ["--unknown"], type=click.Choice(("error", "background", "ignore")), default="error",
            show_default=True,
            help="A colour/value not in the table: fail the image, make it background, or segment 'ignore'.",
        ),
        click.Option(
            ["--tolerance"], type=click.IntRange(0, 255), default=None, metavar="T",
            help="Anti-aliased or JPEG masks: colours within T (max per channel) of one class are it; blends "
            "and colours near several classes take the nearest-coloured class around them (5x5..17x17), "
            "counted per image in the warnings.",
        ),
        void_option(
            "Index value 255 when the table does not name it (Pascal VOC's boundary, labelme2voc's "
            "__ignore__): background, or a segment 'ignore'."
        ),
        click.Option(
            ["--instances"], type=PathOrUrl(), default=None, metavar="DIR",
            help="Pair each class mask with the instance mask of the same stem under DIR (Cityscapes "
            "_labelIds + _instanceIds, ADE20K, ...): an instance's class is the class under most of it.",
        ),
        click.Option(
            ["--instance-suffix"], default=None, metavar="SUFFIX",
            help="With --instances: the instance masks' stem is reference_id + SUFFIX (e.g. "
            "_gtFine_instanceIds) [default: the class mask's stem].",
        ),
        click.Option(
            ["--strip-suffix"], default=None, metavar="SUFFIX",
            help="Remove SUFFIX from file stems to make reference_ids (e.g. _gtFine_color, _seg, _L); in a "
            "folder, only files ending in it are read [default for ade20k: _seg].",
        ),
    )
    default_mode = "semantic"

    def __init__(
        self,
        source: str | Path,
        encoding: str = "colormap",
        colormap: str | Path | None = None,
        labels: str | Path | None = None,
        unknown: str = "error",
        tolerance: int | None = None,
        void: str = "background",
        strip_suffix: str | None = None,
        divisor: int | None = None,
        below_divisor: str = "class",
        instances: str | Path | None = None,
        instance_suffix: str | None = None,
    ) -> None:
        super().__init__(source)
        if unknown not in ("error", "background", "ignore"):
            raise SourceError(f"{opt('unknown')} must be error, background or ignore, not {unknown!r}")
        void = check_void(void)
        if tolerance is not None and not 0 <= int(tolerance) <= 255:
            raise SourceError(f"{opt('tolerance')} must be in 0..255, not {tolerance}")
        if colormap is None and encoding == "colormap":
            # a glob's colour table is the one at the top of the folder it searches
            found = colour_file_of(pattern_root(source) if is_local_pattern(source) else self.source)
            if found is not None:  # the folder names its own colours (what --from auto recognised it by)
                colormap = found
        self.colormap_file = colormap
        cmap = _option_file(colormap)
        self.spec = Spec(
            encoding=encoding,
            colormap=cmap,
            labels=_option_file(labels),
            unknown=unknown,
            tolerance=int(tolerance) if tolerance is not None else None,
            void=void,
            divisor=int(divisor) if divisor is not None else None,
            below_divisor=below_divisor,
            instances=instances is not None,
        )
        table = build_table(self.spec)  # validates the options and files once, in the main process
        self.categories = table.categories
        self.default_mode = "semantic" if encoding in ("colormap", "palette") else "panoptic"
        if strip_suffix is None and encoding == "ade20k":
            strip_suffix = "_seg"
        self.strip_suffix = strip_suffix or None
        self._files = _list_files(self.source, self.strip_suffix, jpeg=self.spec.tolerance is not None)
        self.instance_suffix = instance_suffix
        self._instances: dict[str, list[str]] | None = None
        if instances is not None:
            self._instances = self._index_instances(location(instances))

    def _index_instances(self, folder: Path | UrlPath) -> dict[str, list[str]]:
        """Instance mask paths by stem under ``folder`` (one walk, in the main process; paths only)."""
        if not folder.is_dir():
            raise SourceError(f"{opt('instances')}: no such folder", file=folder)
        suffix = self.instance_suffix if self.instance_suffix is not None else self.strip_suffix
        by_stem: dict[str, list[str]] = {}
        class_files = {p.resolve() for p in self._files}
        for p in _walk(folder, jpeg=False):
            stem = p.stem
            if suffix:
                if not stem.endswith(suffix):
                    continue
                stem = stem[: -len(suffix)]
            if p.resolve() in class_files:
                continue  # the class masks themselves (DIR may be SOURCE, as in Cityscapes' gtFine)
            by_stem.setdefault(stem, []).append(str(p))
        if not by_stem:
            what = f" ending in {suffix}" if suffix else ""
            raise SourceError(f"{opt('instances')}: no instance masks (.png){what} in this folder or below",
                              file=folder)
        return by_stem

    def __len__(self) -> int:
        return len(self._files)

    def _reference_id(self, path: Path) -> str:
        """The file stem (minus --strip-suffix); for STEP, ``<sequence>_<frame>``: every
        sequence folder numbers its frames from 000000 (deeplab2 ``build_step_data`` keys a
        frame by the pair), so the stem alone would name one image in each sequence."""
        stem = path.stem
        if self.strip_suffix and stem.endswith(self.strip_suffix):
            stem = stem[: -len(self.strip_suffix)]
        if self.spec.encoding == "step" and path.parent.name:
            return f"{path.parent.name}_{stem}"
        return stem

    def items(self) -> Iterator[Item]:
        refs = [self._reference_id(p) for p in self._files]
        by_ref: dict[str, list[str]] = {}
        for ref, p in zip(refs, self._files, strict=True):
            by_ref.setdefault(ref, []).append(str(p))
        for ref, p in zip(refs, self._files, strict=True):
            if not ref:
                msg = f"file name minus {opt('strip-suffix', self.strip_suffix)} leaves an empty reference_id"
                err = ItemError(msg, item=p.name, file=p)
                yield FailedItem(p.name, err, source=str(p))
            elif len(by_ref[ref]) > 1:
                others = ", ".join(by_ref[ref])
                err = ItemError(
                    f"reference_id {ref!r} comes from {len(by_ref[ref])} files ({others}); each image needs "
                    "a unique file stem: rename them, or convert the folders separately", item=ref, file=p,
                )
                yield FailedItem(ref, err, source=str(p))
            elif self._instances is not None:
                found = self._instances.get(ref, [])
                if len(found) != 1:
                    suffix = self.instance_suffix if self.instance_suffix is not None else self.strip_suffix
                    what = (f"no instance mask {ref}{suffix or ''}.png under --instances" if not found else
                            f"{len(found)} instance masks named {ref}{suffix or ''}.png ({', '.join(found)})")
                    yield FailedItem(ref, ItemError(what, item=ref, file=p), source=str(p))
                else:
                    yield RgbItem(ref, str(p), self.spec, found[0])
            else:
                yield RgbItem(ref, str(p), self.spec)


def sniff(path: Path) -> bool:
    """A folder with a colour table at its top (colormap.json, label_colors.txt, labelmap.txt, ...).

    Not a Pascal VOC root (SegmentationClass/ next to labelmap.txt): that is the voc reader's.
    """
    return colour_file_of(path) is not None and not (path / "SegmentationClass").is_dir()


def sniff_files(files: list[Path]) -> bool:
    """A glob SOURCE whose matches are all mask images (.png, .jpg): this reader's; it is the
    one reader that takes image files by pattern (the encoding and table are the options')."""
    return all(_is_image(p) for p in files)


# --------------------------------------------------------------------------- writer
# (kept together at the end of the module, imports included, apart from the reader)

import orjson  # noqa: E402

from segconvert.codecs.shapes import is_reserved_label  # noqa: E402
from segconvert.codecs.writing import encode_mapped, segment_pixels, warn_empty  # noqa: E402
from segconvert.interfaces.format import Writer, Written  # noqa: E402
from segconvert.io.paths import output_stem  # noqa: E402
from segconvert.model.ir import Category  # noqa: E402
from segconvert.model.modes import ModePlan  # noqa: E402

VOID_COLOR: Color = (0, 0, 0)
COLORMAP_FILE = "colormap.json"


def generated_color(k: int) -> Color:
    """The k-th colour (k >= 1) of Pascal VOC's bit-spreading palette, extended to 24 bits:
    bits 0, 1, 2 of k go to the top bits of R, G, B, the next three one bit lower, and so
    on. Distinct for every k below 2^24, never black (black is void), and the same on
    every run: VOC's own colours for k < 256."""
    r = g = b = 0
    c = k
    for j in range(8):
        r |= (c & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    return (r, g, b)


def class_colors(categories: list[Category], colormap: str | None) -> dict[str, Color]:
    """label -> colour for the dataset: from ``--colormap`` (a file or a built-in, read as the rgb
    reader reads it), else the category table's own colours when every class has one and they
    are distinct and not black, else :func:`generated_color` by position in the table.

    A class named like void (background, void, unlabeled) is painted black: the rgb reader
    reads those names as void whatever their colour, so any other colour would come back
    as an unknown colour."""
    void_named = {c.name for c in categories if is_reserved_label(c.name)}
    return {**_class_colors([c for c in categories if c.name not in void_named], colormap),
            **dict.fromkeys(void_named, VOID_COLOR)}


def _class_colors(categories: list[Category], colormap: str | None) -> dict[str, Color]:
    if colormap is not None:
        table = build_table(Spec(encoding="colormap", colormap=colormap))
        return {c.name: c.color for c in table.categories or () if c.color is not None}
    own = [c.color for c in categories]
    if categories and all(own) and len(set(own)) == len(own) and VOID_COLOR not in own:
        return {c.name: c.color for c in categories if c.color is not None}
    out: dict[str, Color] = {}
    for k, c in enumerate(categories, start=1):
        out.setdefault(c.name, generated_color(k))
    return out


class RgbWriter(Writer):
    """Writes colour masks ``OUTPUT/masks/<reference_id>.png`` (RGB; black = void) and
    ``OUTPUT/colormap.json`` ({label: [r, g, b]}, "background" black first), which the rgb
    reader takes back (``--colormap OUTPUT/colormap.json``). Each segment is painted in its
    class' colour, so the masks hold the semantic view whatever the mode."""

    options = (
        click.Option(
            ["--colormap"], default=None, metavar="FILE|NAME",
            help="Colours: a JSON / label_colors.txt colormap or built-in " + "|".join(BUILTINS)
            + " [default: the categories' own colours if all have distinct ones, else generated].",
        ),
    )

    def __init__(self, output: str | Path, plan: ModePlan, colormap: str | Path | None = None) -> None:
        super().__init__(output, plan)
        if plan.categories is None:
            raise SourceError(
                "colour masks need a dataset-wide category table so that a class has one colour in every "
                f"mask; this source has none (LabelMe/CVAT: pass {opt('labels')})"
            )
        cmap = None
        if colormap is not None:
            cmap = str(colormap) if str(colormap) in BUILTINS else str(Path(colormap).resolve())
        self.colors = class_colors(plan.categories, cmap)
        by_color: dict[Color, str] = {}
        for label, color in self.colors.items():
            if is_reserved_label(label):
                continue
            if color == VOID_COLOR:
                raise SourceError(f"class {label!r} is black, the colour of void")
            if color in by_color:
                raise SourceError(f"classes {by_color[color]!r} and {label!r} have the same colour {color}")
            by_color[color] = label
        self.by_category = {c.id: self.colors.get(c.name) for c in plan.categories}

    def prepare(self) -> None:
        self.store.makedirs("masks")

    def write(self, seg: Segmentation) -> Written:
        ref = output_stem(seg.reference_id, source=seg.source)
        pixels = segment_pixels(seg)
        warn_empty(seg, pixels)
        table = np.zeros((len(seg.segments) + 1, 3), np.uint8)
        for pos, s in enumerate(seg.segments, start=1):
            # by category id first, then by label (as the index writer and stable semantic indices match)
            color = self.by_category.get(s.category_id) if s.category_id is not None else None
            if color is None:
                color = self.colors.get(s.label)
            if color is None:
                raise ItemError(f"class {s.label!r} has no colour in the colormap", item=seg.reference_id,
                                file=seg.source)
            table[pos] = color
        name = f"masks/{ref}.png"
        stamp = self.store.put(name, encode_mapped(pixels.code_map, table))
        return Written(orjson.dumps(name).decode(), (stamp,))

    def finish(self, records: Iterator[str]) -> None:
        for _ in records:  # the colours are the dataset's, decided before the first image
            pass
        doc = {"background": list(VOID_COLOR),
               **{label: list(c) for label, c in self.colors.items() if c != VOID_COLOR}}
        lines = [f"  {orjson.dumps(label).decode()}: {list(color)}" for label, color in doc.items()]
        with self.store.replacing(COLORMAP_FILE) as fh:
            fh.write("{\n" + ",\n".join(lines) + "\n}\n")


FORMAT = Format(
    name="rgb",
    description="mask PNGs: colour-coded classes, palette/grayscale indices, class*D+instance, RGB instance ids, "
    "ADE20K _seg",
    reader=RgbReader,
    writer=RgbWriter,
    sniff=sniff,
    sniff_files=sniff_files,
)
