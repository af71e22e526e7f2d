"""Turn a label map of raw ids into small codes in one lookup-table pass.

Raw ids can be anything up to 24 bits (COCO panoptic's R + 256·G + 256²·B), and an
image has a few dozen of them. ``np.unique(return_inverse=True)`` costs ~10 ms on
640×480; indexing a 2^24-entry table costs ~0.2 ms. The tables are allocated once per
process and only the entries an image uses are set and then reset, so every image
pays for its own ids, not for the table. RGB-packed ids with uint8 codes (COCO
panoptic, nearly every image) skip the table where the C kernels are built: the
image's ids go in a small hash table that stays in L1 (``_kernels.rgb_codes``).

Ids that are not in the mapping must not silently become background: an unset table
entry reads as a sentinel, and the histogram that packing needs anyway (pixel count per
code) shows whether any pixel got it. With at most 254 codes (nearly every image) the
codes are uint8 and the sentinel is 255, so the lookup writes the final width
directly; more codes use a uint16 table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from segconvert.codecs.opencv import cv2
from segconvert.errors import ItemError

try:  # the fused C kernels (setup.py builds them where a compiler is available)
    from segconvert.codecs._kernels import code_boxes as _code_boxes_c
    from segconvert.codecs._kernels import rgb_codes as _rgb_codes_c
    from segconvert.codecs._kernels import rgb_lookup as _rgb_lookup_c
    from segconvert.codecs._kernels import u8_histogram as _u8_histogram_c
    from segconvert.codecs._kernels import u8_lookup as _u8_lookup_c
    from segconvert.codecs._kernels import u8_overlay as _u8_overlay_c
    from segconvert.codecs._kernels import u8_pair_counts as _u8_pair_counts_c
except ImportError:  # pragma: no cover - depends on the build
    _rgb_lookup_c = _rgb_codes_c = _code_boxes_c = _u8_histogram_c = _u8_lookup_c = None
    _u8_overlay_c = _u8_pair_counts_c = None
try:  # newer kernels: a .so built before them lacks them, and the older ones serve
    from segconvert.codecs._kernels import u8_lookup_small as _u8_lookup_small_c
except ImportError:  # pragma: no cover - depends on the build
    _u8_lookup_small_c = None
try:
    from segconvert.codecs._kernels import u8_paint_runs as _u8_paint_runs_c
    from segconvert.codecs._kernels import u8_pair_runs as _u8_pair_runs_c
except ImportError:  # pragma: no cover - depends on the build
    _u8_paint_runs_c = _u8_pair_runs_c = None
try:
    from segconvert.codecs._kernels import u8_paint_runs_inplace as _u8_paint_runs_inplace_c
except ImportError:  # pragma: no cover - depends on the build
    _u8_paint_runs_inplace_c = None

MAX_CODE = 0xFFFE
_SENTINEL = {np.dtype(np.uint8): 0xFF, np.dtype(np.uint16): 0xFFFF}
_TABLE_BITS = 24
_tables: dict[np.dtype, np.ndarray] = {}
_local = threading.local()  # per-thread work buffers (pair_counts, pair_runs)
#: runs that PairRuns records per image (a 1 MB buffer per thread); a map with more paints by overlay_u8
_MAX_RUNS = 1 << 18


def _big_table(dtype: np.dtype) -> np.ndarray:
    """The process' 2^24-entry table, holding code + 1 (mod 2^bits) where set and 0 elsewhere.

    Zero-filled, so the OS hands out zero pages on first touch instead of a 16-32 MB
    fill at start-up (38 ms, a tenth of a 300-image run); reading ``table[key] - 1``
    makes an unset key the sentinel (0 - 1 wraps to 255 / 65535).
    """
    table = _tables.get(dtype)
    if table is None:
        table = _tables[dtype] = np.zeros(1 << _TABLE_BITS, dtype=dtype)
    return table


def _fits_table(label_map: np.ndarray) -> bool:
    if label_map.dtype.kind == "u" and label_map.dtype.itemsize <= 2:
        return True
    if label_map.size == 0:
        return True
    if label_map.dtype.kind == "i" and int(label_map.min()) < 0:
        return False
    return int(label_map.max()) < (1 << _TABLE_BITS)


def _table_entries(codes: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Keys and stored values (code + 1, see ``_big_table``) of the raw ids a 2^24 table can hold;
    ids outside it cannot occur in a label map that fits the table."""
    keys = np.fromiter(codes, np.int64, len(codes))
    values = np.fromiter(codes.values(), np.int64, len(codes)) + 1
    inside = (keys >= 0) & (keys < (1 << _TABLE_BITS))
    if not inside.all():
        keys, values = keys[inside], values[inside]
    return keys, values


def lookup_rgb(rgb: np.ndarray, table: np.ndarray, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``table[R | G << 8 | B << 16] + offset`` (mod 256) for every pixel of an (H, W, 3) uint8
    image, and the histogram of the result; ``table`` has 2^24 uint8 entries.

    One fused pass in C (~0.3 ms for 640×480) where the extension is built; else numpy's
    RGBA view + mask + take + calcHist (~1 ms), with the same result.
    """
    h, w = rgb.shape[:2]
    if _rgb_lookup_c is not None and rgb.flags.c_contiguous and table.flags.c_contiguous:
        out = np.empty((h, w), np.uint8)
        counts = np.zeros(256, np.int64)
        _rgb_lookup_c(rgb, table, out, counts, offset)
        return out, counts
    from segconvert.codecs.png import rgb_to_id24

    out = np.take(table, rgb_to_id24(rgb))
    if offset:
        out += np.uint8(offset)  # wraps, as in the kernel
    return out, histogram(out, 256)


def _rgb_to_codes_uint8(rgb: np.ndarray, codes: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Codes (≤ 254; 255 where the id has none) of RGB-packed ids, and their histogram."""
    if _rgb_codes_c is not None and rgb.flags.c_contiguous:
        # the image's own few dozen ids in a small hash table (C): no 16 MB table to set and clear
        out = np.empty(rgb.shape[:2], np.uint8)
        counts = np.zeros(256, np.int64)
        _rgb_codes_c(rgb, codes, out, counts, 0xFF)
        return out, counts
    keys, values = _table_entries(codes)  # values are code + 1
    table = _big_table(np.dtype(np.uint8))
    try:
        table[keys] = values
        return lookup_rgb(rgb, table, offset=0xFF)  # code + 1 - 1; unset 0 - 1 = 255
    finally:
        table[keys] = 0


def histogram(code_map: np.ndarray, length: int) -> np.ndarray:
    """Pixel count of every code 0..length-1 (int64)."""
    if code_map.dtype == np.uint8 and _u8_histogram_c is not None and code_map.flags.c_contiguous:
        counts = np.zeros(256, np.int64)  # run by run in C: ~0.05 ms for 640x480, calcHist 0.35
        _u8_histogram_c(code_map, counts)
        return counts[:length] if length <= 256 else np.pad(counts, (0, length - 256))
    if code_map.dtype == np.uint8:  # cv2.calcHist is ~10x faster than np.bincount on uint8
        counts = cv2().calcHist([code_map], [0], None, [256], [0, 256]).ravel().astype(np.int64)
        return counts[:length] if length <= 256 else np.pad(counts, (0, length - 256))
    return np.bincount(code_map.ravel(), minlength=length)[:length]


def to_codes(
    label_map: np.ndarray,
    codes: dict[int, int],
    *,
    item: str | None = None,
    file: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``codes[raw]`` at every pixel, and the pixel count of every code.

    The code map is uint8 when every code is ≤ 254, else uint16; codes must be in
    ``0..MAX_CODE``. A pixel whose raw id has no code raises ItemError naming the ids.
    """
    top = max(codes.values(), default=0)
    if top > MAX_CODE or min(codes.values(), default=0) < 0:
        raise ValueError(f"codes must be in 0..{MAX_CODE}")
    dtype = np.dtype(np.uint8 if top < 0xFF else np.uint16)
    sentinel = _SENTINEL[dtype]
    if label_map.ndim == 3:  # RGB-packed 24-bit ids (see Segmentation)
        if dtype == np.uint8:
            out, counts = _rgb_to_codes_uint8(label_map, codes)
            if counts[sentinel]:
                from segconvert.codecs.png import rgb_to_id24

                ids = rgb_to_id24(label_map)
                _raise_unknown(ids, out == sentinel, item, file)
            return out, counts[: top + 1]
        from segconvert.codecs.png import rgb_to_id24

        label_map = rgb_to_id24(label_map)
    if label_map.dtype == np.uint8 and dtype == np.uint8:  # 256 entries: cv2.LUT, no index widening
        small = np.full(256, sentinel, np.uint8)
        for raw, code in codes.items():
            if 0 <= raw < 256:
                small[raw] = code
        out = cv2().LUT(label_map, small)
    elif _fits_table(label_map):
        table = _big_table(dtype)
        keys, values = _table_entries(codes)
        values = values.astype(dtype)
        try:
            table[keys] = values
            out = np.take(table, label_map)
        finally:
            table[keys] = 0
        out -= dtype.type(1)  # code + 1 - 1; an unset entry wraps to the sentinel
    else:
        uniq, inverse = np.unique(label_map, return_inverse=True)
        mapped = np.array([codes.get(int(u), sentinel) for u in uniq], dtype=dtype)
        out = mapped[inverse.reshape(label_map.shape)]
    counts = histogram(out, sentinel + 1)
    if counts[sentinel]:
        _raise_unknown(label_map, out == sentinel, item, file)
    return out, counts[: top + 1]


def count_codes_uint8(
    label_map: np.ndarray,
    codes: dict[int, int],
    raw_counts: np.ndarray | None = None,
    *,
    item: str | None = None,
    file: str | None = None,
) -> np.ndarray:
    """Pixel count of every code of a uint8 label map, from the histogram of its values.

    No code map is made: with the counts known first, the caller maps values straight
    to their final indices with one 256-entry LUT. ``raw_counts`` is the histogram when
    the reader already has it.
    """
    if raw_counts is None:
        raw_counts = histogram(label_map, 256)
    top = max(codes.values(), default=0)
    # Python ints (twice per image, a few dozen codes): numpy scalar indexing cost ~0.03 ms here
    raw = raw_counts.tolist()
    counts = [0] * (top + 1)
    covered = 0
    for value, code in codes.items():
        if 0 <= value < 256:
            counts[code] += raw[value]
            covered += raw[value]
    if covered != sum(raw):  # some pixels have a value without a code
        known = np.zeros(256, bool)
        known[[v for v in codes if 0 <= v < 256]] = True
        _raise_unknown(label_map, ~known[label_map], item, file)
    return np.array(counts, np.int64)


def _raise_unknown(label_map: np.ndarray, unknown: np.ndarray, item: str | None, file: str | None) -> None:
    ids, counts = np.unique(label_map[unknown], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    listed = ", ".join(f"{int(ids[i])} ({int(counts[i])} px)" for i in order[:8])
    more = f" and {len(ids) - 8} more" if len(ids) > 8 else ""
    raise ItemError(
        f"{len(ids)} pixel value(s) have no segment in the annotation: {listed}{more}",
        item=item,
        file=file,
    )


def code_boxes(code_map: np.ndarray, count: int) -> np.ndarray:
    """Bounding box ``(min x, min y, max x, max y)`` of each code ``0..count-1`` of a code map,
    as a ``(count, 4)`` int64 array; a code with no pixel gets ``(w, h, -1, -1)``.

    Writers need one box per segment (COCO's ``bbox``): one C pass over a uint8 map
    (~0.2 ms for 640x480) where a mask per segment would cost a pass per segment.
    """
    h, w = code_map.shape
    if _code_boxes_c is not None and code_map.dtype == np.uint8 and count <= 256 and code_map.size:
        boxes = np.empty((256, 4), np.int32)
        boxes[:] = (w, h, -1, -1)
        _code_boxes_c(np.ascontiguousarray(code_map), w, boxes)
        return boxes[:count].astype(np.int64)
    out = np.empty((count, 4), np.int64)
    out[:] = (w, h, -1, -1)
    for code in np.unique(code_map).tolist():
        if code >= count:
            continue
        where = code_map == code
        cols = np.flatnonzero(where.any(axis=0))
        rows = np.flatnonzero(where.any(axis=1))
        out[code] = (cols[0], rows[0], cols[-1], rows[-1])
    return out


def lookup_u8(values: np.ndarray, table: np.ndarray, png_rows: bool = False, top: int | None = None) -> np.ndarray:
    """``table[values]`` for a uint8 array and a 256-entry uint8 table: the C kernel (run by run)
    where built, else ``cv2.LUT``; the same result. With ``png_rows`` (a 2-D ``values``), the
    result is (H, W + 1): each row behind a PNG filter-type byte 0, ready for
    :func:`segconvert.codecs.png.encode_rows` without another copy. ``top``, the largest value
    the caller expects (a code map's codes are 0..n-1), picks ``u8_lookup_small``: byte shuffles,
    32 pixels a step, ~4x fewer instructions than run by run where the values are below 64; the
    kernel checks the top it is given, so a wrong one costs time, never a wrong byte."""
    if _u8_lookup_c is not None and values.flags.c_contiguous:
        small = _u8_lookup_small_c if top is not None else None
        table = np.ascontiguousarray(table, np.uint8)
        w = values.shape[1] if png_rows else 0
        out = np.empty((values.shape[0], w + 1), np.uint8) if png_rows else np.empty_like(values)
        if small is not None:
            small(values, table, out, w, top)
        else:
            _u8_lookup_c(values, table, out, w)
        return out
    mapped = cv2().LUT(values, table)
    if png_rows:
        rows = np.zeros((mapped.shape[0], mapped.shape[1] + 1), np.uint8)
        rows[:, 1:] = mapped
        return rows
    return mapped


def pair_counts(high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``high << 8 | low`` that occur in two uint8 maps of one shape (sorted, int64)
    and the pixel count of each (int64).

    The C kernel counts run by run into a per-thread 65536-entry table that it leaves as it
    found it (only the pairs that occur are read and reset: no 512 kB to zero and scan per
    image); else ``np.bincount`` of the uint16 keys, the same result.
    """
    if high.shape != low.shape or high.dtype != np.uint8 or low.dtype != np.uint8:
        raise ValueError("pair_counts takes two uint8 maps of one shape")
    if _u8_pair_counts_c is not None and high.flags.c_contiguous and low.flags.c_contiguous:
        bufs = getattr(_local, "pair", None)
        if bufs is None:
            bufs = _local.pair = (np.zeros(1 << 16, np.int64), np.empty(1 << 16, np.uint16))
        hist, seen = bufs
        n = _u8_pair_counts_c(high, low, hist, seen)
        keys = np.sort(seen[:n]).astype(np.int64)
        counts = hist[keys]
        hist[keys] = 0
        return keys, counts
    all_counts = np.bincount((high.astype(np.uint16) << 8 | low).ravel(), minlength=1 << 16)
    keys = np.flatnonzero(all_counts)
    return keys, all_counts[keys]


def overlay_u8(base: np.ndarray, table: np.ndarray, top: np.ndarray) -> np.ndarray:
    """``top`` where it is non-zero, else ``table[base]``: one pass in C (run by run), else
    cv2.LUT + a masked copy, the same result."""
    if _u8_overlay_c is not None and base.flags.c_contiguous and top.flags.c_contiguous:
        out = np.empty_like(base)
        _u8_overlay_c(base, np.ascontiguousarray(table, np.uint8), top, out)
        return out
    out = cv2().LUT(base, table)
    cv2().copyTo(top, top, out)
    return out


class PairRuns:
    """The pairs ``high << 8 | low`` of two uint8 maps of one shape and the pixel count of each
    (``pairs``, sorted, and ``counts``: lists, as the few dozen a label map has are used), from
    one pass over both maps that also records where either changes, so that :meth:`paint`
    writes a label map from those runs without scanning the maps again.

    VOC's reader needs both the joint counts (an object's class is the majority under it) and a
    map painted from them (objects over their class map's stuff values); ``pair_counts`` and
    ``overlay_u8`` each found every run end of both maps, ~1.5 M instructions per 640x480 image
    together, where the C kernels here take ~0.5 M. Without them: ``pair_counts`` and
    ``overlay_u8``, the same results.
    """

    __slots__ = ("pairs", "counts", "_high", "_low", "_runs", "_starts", "_token")

    def __init__(self, high: np.ndarray, low: np.ndarray,
                 scan: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[list[int], list[int], int]]
                 | None = None) -> None:
        if high.shape != low.shape or high.dtype != np.uint8 or low.dtype != np.uint8:
            raise ValueError("PairRuns takes two uint8 maps of one shape")
        self._high, self._low = high, low
        self._runs = -1
        if scan is not None or (_u8_pair_runs_c is not None and high.flags.c_contiguous
                                and low.flags.c_contiguous):
            bufs = getattr(_local, "runs", None)
            if bufs is None:  # [hist, keys, starts, token]: the starts are the last PairRuns' of the thread
                bufs = _local.runs = [np.zeros(1 << 16, np.int64), np.empty(1 << 16, np.uint16),
                                      np.empty(_MAX_RUNS + 1, np.int32), 0]
            bufs[3] += 1
            self._starts, self._token = bufs, bufs[3]
            if scan is None:
                self.pairs, self.counts, self._runs = _u8_pair_runs_c(high, low, bufs[0], bufs[1], bufs[2])
            else:
                self.pairs, self.counts, self._runs = scan(bufs[0], bufs[1], bufs[2])
            return
        keys, counts = pair_counts(high, low)
        self.pairs, self.counts = keys.tolist(), counts.tolist()

    @classmethod
    def scanning(cls, high: np.ndarray, low: np.ndarray,
                 scan: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[list[int], list[int], int]]) -> PairRuns:
        """The PairRuns of ``high`` and ``low`` from a kernel that makes them while it writes
        ``high`` (``png.decode_index8_pairs``: the object PNG scanned as it is unfiltered).
        ``scan(hist, keys, starts)`` is given this thread's work space and returns what
        ``u8_pair_runs`` returns for the two maps."""
        return cls(high, low, scan)

    def paint(self, table: np.ndarray | bytes | bytearray, *,
              in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``overlay_u8(low, table, high)`` (``high`` where non-zero, else ``table[low]``) and the
        pixel count of each of its 256 values (int64). From the recorded runs while they are
        still this object's (this thread's buffers, no later PairRuns in it), else by ``overlay_u8``.
        ``in_place``: painted into ``high`` itself (returned), which then only changes where it
        is 0 -- for a caller that owns ``high`` and needs it no more (VOC's decoded object map)."""
        if not isinstance(table, (bytes, bytearray)):
            table = np.ascontiguousarray(table, np.uint8)
        if (self._runs >= 0 and self._starts[3] == self._token and len(table) == 256
                and getattr(_local, "runs", None) is self._starts):
            hist = np.zeros(256, np.int64)
            if in_place and _u8_paint_runs_inplace_c is not None:
                _u8_paint_runs_inplace_c(self._high, self._low, self._starts[2], self._runs, table, hist)
                return self._high, hist
            out = np.empty_like(self._low)
            _u8_paint_runs_c(self._high, self._low, self._starts[2], self._runs, table, out, hist)
        else:
            out = overlay_u8(self._low, np.frombuffer(table, np.uint8) if isinstance(table, (bytes, bytearray))
                             else table, self._high)
            hist = histogram(out, 256)
        if in_place:  # without the in-place kernel: the same map, copied into high
            self._high[...] = out
            out = self._high
        return out, hist
