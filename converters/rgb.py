"""Colour-coded and index-coded mask PNGs: one mask image per image, no JSON.

Four encodings say how a pixel becomes a segment (``--encoding``):

- ``colormap``: each colour is a class (``--colormap`` file or built-in table);
- ``palette``: the pixel value of a palette (mode P) or grayscale PNG is the class id;
- ``id``: COCO-panoptic-style id R + 256·G + 256²·B, each distinct id one instance;
- ``ade20k``: ADE20K ``*_seg.png``: class R/10·256 + G, instance B.

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

import glob
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from segconvert import limits, png
from segconvert import lut as lookups
from segconvert.converters.rgb_tables import BUILTINS, ENCODINGS, Color, Spec, Table, build_table, color_of_key
from segconvert.errors import ItemError, SourceError
from segconvert.format import Format, Reader
from segconvert.ir import FailedItem, Item, Segmentation, SegmentInfo
from segconvert.opencv import cv2

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


def _resolve_colors(
    spec: Spec, table: Table, lut: np.ndarray, colors: np.ndarray, counts: np.ndarray, where: dict[str, str]
) -> None:
    """Decide colours missing from ``lut``: store answers in it, or raise naming each problem."""
    assert table.color_keys is not None and table.color_raws is not None
    unknown: list[tuple[int, int, int, int]] = []  # (colour key, count, nearest entry, distance)
    ties: list[tuple[int, int, int, int, int]] = []
    fallback = {"error": None, "background": 0, "ignore": table.ignore_raw}[spec.unknown]
    for start in range(0, len(colors), 2048):  # bounded memory for JPEG's many colours
        cs, ns = colors[start:start + 2048], counts[start:start + 2048]
        d = _chebyshev(cs, table.color_keys)
        best = d.argmin(1)
        dmin = d[np.arange(len(cs)), best]
        raw_best = table.color_raws[best]
        at_min = d == dmin[:, None]
        raws = table.color_raws[None, :]
        tie = np.where(at_min, raws, -1).max(1) != np.where(at_min, raws, 1 << 40).min(1)
        near = np.zeros(len(cs), bool) if spec.tolerance is None else dmin <= spec.tolerance
        ok = near & ~tie
        lut[cs[ok]] = raw_best[ok].astype(lut.dtype) + 1  # stored + 1, see _color_lut
        far = ~near
        if fallback is not None:
            lut[cs[far]] = fallback + 1
        else:
            for i in np.flatnonzero(far).tolist():
                unknown.append((int(cs[i]), int(ns[i]), int(best[i]), int(dmin[i])))
        for i in np.flatnonzero(near & tie).tolist():
            others = np.flatnonzero(at_min[i] & (table.color_raws != raw_best[i]))
            ties.append((int(cs[i]), int(ns[i]), int(best[i]), int(others[0]), int(dmin[i])))
    problems = []
    if ties:
        ties.sort(key=lambda t: -t[1])
        listed = "; ".join(
            f"{_fmt(color_of_key(k))} in {n} px is equally near {table.color_names[a]!r} "
            f"{_fmt(color_of_key(int(table.color_keys[a])))} and {table.color_names[b]!r} "
            f"{_fmt(color_of_key(int(table.color_keys[b])))} (distance {dist})"
            for k, n, a, b, dist in ties[:_MAX_LISTED]
        )
        more = f" and {len(ties) - _MAX_LISTED} more" if len(ties) > _MAX_LISTED else ""
        problems.append(f"{len(ties)} colour(s) are ambiguous: {listed}{more}; lower --tolerance")
    if unknown:
        unknown.sort(key=lambda t: -t[1])
        listed = "; ".join(
            f"{_fmt(color_of_key(k))} in {n} px, nearest {table.color_names[b]!r} "
            f"{_fmt(color_of_key(int(table.color_keys[b])))} at distance {dist}"
            for k, n, b, dist in unknown[:_MAX_LISTED]
        )
        more = f" and {len(unknown) - _MAX_LISTED} more" if len(unknown) > _MAX_LISTED else ""
        tol = f" within --tolerance {spec.tolerance}" if spec.tolerance is not None else ""
        problems.append(
            f"{len(unknown)} colour(s) are not in the colormap{tol}: {listed}{more}; "
            "add them to the colormap, use --tolerance T for anti-aliased or JPEG masks, "
            "or --unknown background|ignore"
        )
    if problems:
        raise ItemError(". ".join(problems), **where)


@dataclass
class RgbItem(Item):
    """One mask file; ``spec`` is the (small, hashable) decoding options."""

    reference_id: str
    source: str
    spec: Spec

    def load(self) -> Segmentation:
        where = {"item": self.reference_id, "file": self.source}
        data = _read(self.source, self.reference_id)
        is_jpeg = data[:3] == _JPEG_MAGIC
        header = None
        if not is_jpeg:
            try:
                header = png.read_header(data)
                limits.check_pixels(header.width, header.height)  # before any decoding
            except ValueError as exc:
                raise ItemError(f"{exc}; masks must be PNG (or JPEG with --tolerance)", **where) from None
        table = build_table(self.spec)
        enc = self.spec.encoding
        if is_jpeg and (enc != "colormap" or self.spec.tolerance is None):
            if enc == "colormap":
                raise ItemError("mask is a JPEG, whose compression changes colours; read it with "
                                "--tolerance T (e.g. --tolerance 8) to map each colour to the nearest class",
                                **where)
            raise ItemError(
                f"mask is a JPEG; lossy compression cannot carry --encoding {enc} values", **where
            )
        if enc == "colormap":
            return self._colormap(data, header, table, where)
        assert header is not None
        if enc == "palette":
            return self._palette(data, header, table, where)
        return self._instances(data, header, table, where)

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
        if label_map.size and label_map.max() == sentinel:
            miss = label_map == sentinel
            missing = keys[miss]
            colors, counts = np.unique(missing, return_counts=True)
            _resolve_colors(self.spec, table, lut, colors, counts, where)
            label_map[miss] = lut[missing] - 1
        segments = _class_segments(table, _present(label_map))
        return Segmentation(self.reference_id, label_map, segments, source=self.source)

    def _palette(
        self, data: bytes, header: png.PngHeader, table: Table, where: dict[str, str]
    ) -> Segmentation:
        void = None
        if header.color_type in (2, 6):
            raise ItemError(
                f"mask is {header.description}; --encoding palette reads palette (mode P) or grayscale "
                "index PNGs; colour masks need --encoding colormap", **where,
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
        if table.value_lut is None:  # no names: the value is the raw id
            label_map = values if values.flags.writeable and values.flags.owndata else values.copy()
            if void is not None:
                label_map[void] = 0
            segments = [
                SegmentInfo(id=v, label=f"class-{v}", category_id=v, isthing=False)
                for v in _present(label_map).tolist()
            ]
            return Segmentation(self.reference_id, label_map, segments, source=self.source)
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
            names = "--labels" if self.spec.labels else f"--colormap {self.spec.colormap}"
            raise ItemError(
                f"{len(bad)} pixel value(s) are not classes in {names}: {listed}{more}; "
                "add them, or use --unknown background|ignore", **where,
            )
        segments = _class_segments(table, _present(label_map))
        return Segmentation(self.reference_id, label_map, segments, source=self.source)

    def _instances(
        self, data: bytes, header: png.PngHeader, table: Table, where: dict[str, str]
    ) -> Segmentation:
        enc = self.spec.encoding
        if header.color_type not in (2, 6):
            raise ItemError(f"mask is {header.description}; --encoding {enc} reads RGB PNGs", **where)
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
        else:
            for raw in sorted(ids.tolist(), key=lambda r: (r & 255, r)):  # ADE numbers instances by B
                cls = raw >> 8
                segments.append(
                    SegmentInfo(id=raw, label=labels.get(cls, f"class-{cls}"), category_id=cls, isthing=True,
                                metadata={"instance": raw & 255})
                )
        return Segmentation(self.reference_id, label_map, segments, source=self.source)


# R → R - R//10 in the bits 16..23 of B + 256 G + 65536 R
_ADE_R_CORRECTION = ((np.arange(256) - np.arange(256) // 10) << 16).astype(np.uint32)


# --------------------------------------------------------------------------- reader


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES


def _walk(root: Path) -> list[Path]:
    """Image files under ``root``, skipping hidden folders and segconvert outputs (they hold masks too)."""
    found = []
    for folder, dirs, files in os.walk(root):
        if ".segconvert" in dirs and Path(folder) != root:
            dirs[:] = []  # an earlier run's OUTPUT inside SOURCE: its masks are not input
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(folder, f) for f in files if not f.startswith(".") and _is_image(Path(f)))
    return found


def _list_files(source: Path, suffix: str | None) -> list[Path]:
    text = str(source)
    if source.is_dir():
        files = _walk(source)
        if suffix:
            files = [p for p in files if p.stem.endswith(suffix)]
        files.sort(key=lambda p: p.relative_to(source).as_posix())
        if not files:
            what = f"ending in {suffix}" if suffix else "(.png, .jpg)"
            raise SourceError(f"no mask images {what} in this folder or below", file=source)
        return files
    if source.is_file():
        return [source]
    if _GLOB_CHARS.search(text):
        matches = (Path(p) for p in glob.glob(text, recursive=True))
        files = sorted(p for p in matches if p.is_file() and _is_image(p))
        if not files:
            raise SourceError("the pattern matches no .png/.jpg files", file=text)
        return files
    raise SourceError("no such folder or file", file=source)


class RgbReader(Reader):
    """A folder (searched recursively) or glob of mask images; one item per file."""

    options = (
        click.Option(
            ["--encoding"], type=click.Choice(ENCODINGS), default="colormap", show_default=True,
            help="How a pixel becomes a segment: colour = class (colormap), palette/grayscale index = class "
            "(palette), R + 256G + 256^2B = instance id (id), ADE20K _seg.png (ade20k).",
        ),
        click.Option(
            ["--colormap"], default=None, metavar="FILE|NAME",
            help="Colour table: JSON {label: [r, g, b] | \"#rrggbb\"}, CamVid label_colors.txt, or built-in "
            + "|".join(BUILTINS) + ". Labels void/background/unlabeled are background (0).",
        ),
        click.Option(
            ["--labels"], type=click.Path(dir_okay=False, path_type=Path), default=None,
            help='JSON {"id": "label"} naming the values of palette/id/ade20k masks.',
        ),
        click.Option(
            ["--unknown"], type=click.Choice(("error", "background", "ignore")), default="error",
            show_default=True,
            help="A colour/value not in the table: fail the image, make it background, or segment 'ignore'.",
        ),
        click.Option(
            ["--tolerance"], type=click.IntRange(0, 255), default=None, metavar="T",
            help="Map each colour to the nearest class within T (max per channel), for anti-aliased or "
            "JPEG masks.",
        ),
        click.Option(
            ["--void"], type=click.Choice(("background", "ignore")), default="background", show_default=True,
            help="Pascal VOC's 255 boundary pixels: background, or a segment 'ignore'.",
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
    ) -> None:
        super().__init__(source)
        if unknown not in ("error", "background", "ignore"):
            raise SourceError(f"--unknown must be error, background or ignore, not {unknown!r}")
        if void not in ("background", "ignore"):
            raise SourceError(f"--void must be background or ignore, not {void!r}")
        if tolerance is not None and not 0 <= int(tolerance) <= 255:
            raise SourceError(f"--tolerance must be in 0..255, not {tolerance}")
        cmap = None
        if colormap is not None:
            cmap = str(colormap) if str(colormap) in BUILTINS else str(Path(colormap).resolve())
        self.spec = Spec(
            encoding=encoding,
            colormap=cmap,
            labels=str(Path(labels).resolve()) if labels is not None else None,
            unknown=unknown,
            tolerance=int(tolerance) if tolerance is not None else None,
            void=void,
        )
        table = build_table(self.spec)  # validates the options and files once, in the main process
        self.categories = table.categories
        self.default_mode = "semantic" if encoding in ("colormap", "palette") else "panoptic"
        if strip_suffix is None and encoding == "ade20k":
            strip_suffix = "_seg"
        self.strip_suffix = strip_suffix or None
        self._files = _list_files(self.source, self.strip_suffix)

    def __len__(self) -> int:
        return len(self._files)

    def _reference_id(self, path: Path) -> str:
        stem = path.stem
        if self.strip_suffix and stem.endswith(self.strip_suffix):
            stem = stem[: -len(self.strip_suffix)]
        return stem

    def items(self) -> Iterator[Item]:
        refs = [self._reference_id(p) for p in self._files]
        by_ref: dict[str, list[str]] = {}
        for ref, p in zip(refs, self._files, strict=True):
            by_ref.setdefault(ref, []).append(str(p))
        for ref, p in zip(refs, self._files, strict=True):
            if not ref:
                msg = f"file name minus --strip-suffix {self.strip_suffix!r} leaves an empty reference_id"
                err = ItemError(msg, item=p.name, file=p)
                yield FailedItem(p.name, err, source=str(p))
            elif len(by_ref[ref]) > 1:
                others = ", ".join(by_ref[ref])
                err = ItemError(
                    f"reference_id {ref!r} comes from {len(by_ref[ref])} files ({others}); each image needs "
                    "a unique file stem: rename them, or convert the folders separately", item=ref, file=p,
                )
                yield FailedItem(ref, err, source=str(p))
            else:
                yield RgbItem(ref, str(p), self.spec)


def sniff(path: Path) -> bool:
    """A folder with a colormap.json or CamVid label_colors.txt at its top."""
    return path.is_dir() and ((path / "colormap.json").is_file() or (path / "label_colors.txt").is_file())


FORMAT = Format(
    name="rgb",
    description="mask PNGs: colour-coded classes, palette/grayscale indices, RGB instance ids, ADE20K _seg",
    reader=RgbReader,
    sniff=sniff,
)
