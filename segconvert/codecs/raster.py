"""Paint instance shapes (boolean masks or COCO RLE) into one label map.

Every polygon reader ends the same way: a list of shapes, each with a segment id, to be
painted into a raw label map in a chosen order. This module does that once, exactly and
fast, so that COCO, LabelMe and CVAT readers agree on overlaps.

Why RLE runs and not masks: pycocotools defines COCO polygons as RLE (``frPyObjects``),
and decoding every annotation to a full HxW mask costs a full-image pass per shape
(5.4 ms for 20 annotations on 640x480). COCO RLE is column-major, so the runs are
painted straight into a column-major buffer: short runs through one fancy-index
assignment per shape, long runs as slices; one transpose at the end. The cost follows
the painted pixels, not the image size times the number of shapes.

Overlap policies (``OVERLAP_POLICIES``):

- ``paint``: painter's order as given, later shapes on top (what the source tools do);
- ``small-on-top``: larger areas first (stable for ties) so small objects stay visible;
- ``error``: an :class:`~segconvert.errors.ItemError` naming the overlapping segment id
  pairs and the number of pixels covered more than once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import click
import numpy as np

from segconvert.codecs.opencv import cv2  # imported on first use: 45 ms that `--from auto` sniffing need not pay
from segconvert.errors import ItemError, opt

#: (segment_id, bool mask HxW) or (segment_id, pycocotools RLE dict {"size": [h, w], "counts": ...})
Shape = tuple[int, np.ndarray | dict]
OVERLAP_POLICIES = ("paint", "small-on-top", "error")

#: runs at least this long are painted as slices (one Python-level call each); shorter
#: runs go through one index array per shape (a few ns per pixel). 64 is where the two
#: cost the same on the development machine.
_LONG_RUN = 64
#: a COCO compressed count never needs more than 7 six-bit characters (32-bit counts)
_MAX_CHARS_PER_COUNT = 7

#: the most pixels an image may have: COCO RLE run lengths are 32-bit (pycocotools' ``uint``),
#: so a larger image cannot be described by one, and a declared size beyond it is a wrong size
#: (or hostile input) rather than a mask anyone uploads
MAX_PIXELS = 2**32 - 1

_local = threading.local()

try:  # the C kernel painting compressed RLEs straight into the buffer (setup.py builds it)
    from segconvert.codecs._kernels import rle_paint as _rle_paint_c
except ImportError:  # pragma: no cover - depends on the build
    _rle_paint_c = None


def size_problem(height: int, width: int) -> str | None:
    """What is wrong with an image size no label map can have (empty, or more than
    MAX_PIXELS), or None when it is fine.

    Every reader with a declared size (LabelMe, CVAT, Label Studio, SA-1B) asks here, and
    ``paint`` does too, so that a size of 10^12 x 10^12 fails naming the size instead of
    pycocotools' counts overflowing into "RLE counts cover N pixels" or an allocation of
    terabytes.
    """
    if height <= 0 or width <= 0:
        return f"image size {width}x{height} is empty"
    if height * width > MAX_PIXELS:
        return (f"image size {width}x{height} is {height * width:,} pixels, more than a COCO RLE (32-bit run "
                f"lengths) or any mask here can hold ({MAX_PIXELS:,}); is the size right?")
    return None


def overlap_option(default: str = "paint") -> click.Option:
    """The ``--overlap`` option, declared identically by every polygon reader.

    ``default``: the policy when the user gives none; ``paint`` for formats whose tools
    draw in stored order, ``small-on-top`` where masks nest (SAM's).
    """
    return click.Option(
        ["--overlap"],
        type=click.Choice(OVERLAP_POLICIES),
        default=default,
        show_default=True,
        help=(
            "How overlapping shapes are resolved: 'paint' keeps the stored order (later on top, as the "
            "source tools draw), 'small-on-top' paints larger areas first so small objects stay visible, "
            "'error' fails an image whose shapes overlap and reports the pixels in conflict."
        ),
    )


def paint(
    height: int,
    width: int,
    shapes: Sequence[Shape],
    overlap: str = "paint",
    *,
    item: str | None = None,
    file: str | None = None,
) -> np.ndarray:
    """The HxW label map of ``shapes`` painted with their segment ids (0 where nothing is).

    dtype: uint16 when every id is below 65536, else uint32. Shapes of zero area are
    fine (they paint nothing). Raises ItemError (with ``item``/``file``) for an RLE
    whose size or counts do not fit the image, and under ``overlap="error"`` when two
    shapes share a pixel.
    """
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"unknown overlap policy {overlap!r}; choose one of {', '.join(OVERLAP_POLICIES)}")
    height, width = int(height), int(width)
    problem = size_problem(height, width)
    if problem is not None:
        raise ItemError(problem, item=item, file=file)
    npix = height * width
    ids = [int(sid) for sid, _ in shapes]
    if any(sid <= 0 for sid in ids):
        raise ValueError(f"segment ids must be positive (0 is void), got {min(ids)}")
    dtype = np.dtype(np.uint16) if not ids or max(ids) < 65536 else np.dtype(np.uint32)

    if overlap == "paint" and _rle_paint_c is not None and shapes:
        strings = _plain_strings(shapes, height, width)
        if strings is not None:  # compressed RLEs of this size, painted in order (polygons via frPyObjects)
            buf = _work_buffer(npix, dtype)
            if _rle_paint_c(strings, ids, buf):
                return _to_rows(buf, height, width, dtype)
            # a malformed string: the checked path below says which and what

    runs = _Runs(height, width, [geom for _, geom in shapes], ids, item=item, file=file)
    order = range(len(shapes))
    if overlap == "small-on-top" and len(shapes) > 1:
        order = np.argsort(-runs.area, kind="stable").tolist()

    buf = _work_buffer(npix, dtype)  # column-major, as COCO RLE
    grid = buf.reshape(width, height).T  # HxW view of it, for boolean masks
    for k in order:
        runs.paint_one(k, ids[k], buf, grid)

    if overlap == "error" and len(shapes) > 1:
        painted = int(np.count_nonzero(buf))
        if painted != int(runs.area.sum()):
            raise ItemError(runs.conflicts(ids), item=item, file=file)

    return _to_rows(buf, height, width, dtype)


def _plain_strings(shapes: Sequence[Shape], height: int, width: int) -> list[bytes] | None:
    """The count strings when every shape is a compressed RLE dict of exactly this size, else None."""
    strings: list[bytes] = []
    for _, g in shapes:
        if not isinstance(g, dict):
            return None
        counts, size = g.get("counts"), g.get("size")
        if isinstance(counts, str):
            counts = counts.encode("ascii", "replace")
        if not isinstance(counts, bytes) or not isinstance(size, list | tuple) or len(size) != 2:
            return None
        if size[0] != height or size[1] != width:
            return None
        strings.append(counts)
    return strings


def _to_rows(buf: np.ndarray, height: int, width: int, dtype: np.dtype) -> np.ndarray:
    """The HxW label map of a column-major buffer (a copy: the buffer is reused)."""
    cols = buf.reshape(width, height)
    if dtype == np.uint32:  # cv2 transposes by element size; its uint32 support varies by version
        return cv2().transpose(cols.view(np.int32)).view(np.uint32)
    return cv2().transpose(cols)


def _work_buffer(npix: int, dtype: np.dtype) -> np.ndarray:
    """A zeroed column-major buffer, reused across calls (per thread).

    Allocating a fresh multi-megabyte buffer per image makes glibc hand pages back to
    the OS and fault them in again (DESIGN.md's allocation trap); the result is copied
    out by the final transpose, so the buffer itself can be reused.
    """
    key = (npix, dtype.str)
    cached = getattr(_local, "buf", None)
    if cached is None or cached[0] != key:
        cached = (key, np.zeros(npix, dtype))
        _local.buf = cached
    else:
        cached[1].fill(0)
    return cached[1]


class _Runs:
    """The foreground runs of every RLE shape (decoded together), plus the mask shapes."""

    def __init__(
        self,
        height: int,
        width: int,
        geoms: Sequence[Any],
        ids: list[int],
        *,
        item: str | None,
        file: str | None,
    ):
        self.h, self.w = height, width
        self.npix = height * width
        self.item, self.file = item, file
        self.ids = ids
        n = len(geoms)
        self.masks: dict[int, np.ndarray] = {}
        self.area = np.zeros(n, np.int64)
        strings: list[tuple[int, bytes]] = []
        lists: list[tuple[int, np.ndarray]] = []
        for k, g in enumerate(geoms):
            if isinstance(g, np.ndarray):
                if g.shape != (height, width):
                    self._fail(f"segment {ids[k]}: mask is {g.shape[1]}x{g.shape[0]}, image {width}x{height}")
                m = g if g.dtype == bool else g != 0
                self.masks[k] = m
                self.area[k] = int(np.count_nonzero(m))
                continue
            if not isinstance(g, dict) or "counts" not in g or "size" not in g:
                self._fail(f"segment {ids[k]}: expected a boolean mask or an RLE dict ('size', 'counts')")
            size = g["size"]
            try:
                rh, rw = int(size[0]), int(size[1])
            except (TypeError, ValueError, IndexError):
                self._fail(f"segment {ids[k]}: RLE size {size!r} is not [height, width]")
            if (rh, rw) != (height, width):
                self._fail(f"segment {ids[k]}: RLE size is {rw}x{rh} (WxH) but the image is {width}x{height}")
            counts = g["counts"]
            if isinstance(counts, str):
                strings.append((k, counts.encode("ascii", "replace")))
            elif isinstance(counts, bytes):
                strings.append((k, counts))
            else:
                lists.append((k, self._list_counts(k, counts)))

        # per fg run: owning shape, start (column-major), length
        parts_k, parts_s, parts_l = [], [], []
        if strings:
            which = np.array([k for k, _ in strings], np.int64)
            counts, nvals = self._decode_strings([s for _, s in strings], which)
            parts = self._runs_from_counts(counts, nvals, which)
            parts_k.append(parts[0])
            parts_s.append(parts[1])
            parts_l.append(parts[2])
        for k, c in lists:
            parts = self._runs_from_counts(c, np.array([c.size]), np.array([k]))
            parts_k.append(parts[0])
            parts_s.append(parts[1])
            parts_l.append(parts[2])
        if parts_k:
            rk, rs, rl = np.concatenate(parts_k), np.concatenate(parts_s), np.concatenate(parts_l)
            if len(parts_k) > 1:  # group by shape (stable keeps each shape's runs in order)
                o = np.argsort(rk, kind="stable")
                rk, rs, rl = rk[o], rs[o], rl[o]
        else:
            rk = rs = rl = np.zeros(0, np.int64)
        self.area += np.bincount(rk, weights=rl, minlength=n).astype(np.int64)

        # short runs -> one index array, sliced per shape; long runs -> slice lists per shape
        short = rl < _LONG_RUN
        sk, ss, sl = rk[short], rs[short], rl[short]
        total = int(sl.sum())
        itype = np.intp
        if total:
            ends = np.cumsum(sl)
            self.idx = np.repeat((ss - (ends - sl)).astype(itype), sl.astype(np.intp))
            self.idx += np.arange(total, dtype=itype)
        else:
            self.idx = np.zeros(0, itype)
        per_shape = np.bincount(sk, weights=sl, minlength=n).astype(np.int64)
        self.idx_bounds = np.concatenate([[0], np.cumsum(per_shape)]).tolist()
        long_ = ~short
        lk, ls, ll = rk[long_], rs[long_], rl[long_]
        self.long_starts = ls.tolist()
        self.long_ends = (ls + ll).tolist()
        self.long_bounds = np.concatenate([[0], np.cumsum(np.bincount(lk, minlength=n))]).tolist()

    def _fail(self, message: str) -> Any:
        raise ItemError(message, item=self.item, file=self.file)

    def _list_counts(self, k: int, counts: Any) -> np.ndarray:
        try:
            c = np.asarray(counts)
        except (TypeError, ValueError):
            c = np.asarray([None])
        if c.ndim != 1 or (c.size and c.dtype.kind not in "iu"):
            self._fail(f"segment {self.ids[k]}: RLE counts must be a list of non-negative integers")
        c = c.astype(np.int64)
        if c.size and c.min() < 0:
            self._fail(f"segment {self.ids[k]}: RLE counts must be non-negative, found {int(c.min())}")
        return c

    def _decode_strings(self, strings: list[bytes], which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pycocotools' compressed counts (``rleFrString``) for many strings in one vectorised go.

        Each count is a little-endian group of 5-bit chunks in characters 48..111: bit 0x20
        says another character follows, bit 0x10 of the last one is the sign. Counts after
        the third are stored as the difference to the count two places before.
        """
        lens = np.fromiter((len(s) for s in strings), np.int64, len(strings))
        c = np.frombuffer(b"".join(strings), np.uint8).astype(np.int64) - 48
        if c.size and (c.min() < 0 or c.max() > 63):
            bad = [i for i, s in enumerate(strings) if s and not 48 <= min(s) <= max(s) <= 111]
            sid = self.ids[which[bad[0]]]
            self._fail(f"segment {sid}: compressed RLE counts hold characters outside '0'..'o'")
        more = (c & 0x20) != 0
        # a count never runs across the end of a string
        str_ends = np.cumsum(lens) - 1
        nonempty = lens > 0
        cut = nonempty & more[np.maximum(str_ends, 0)] if c.size else nonempty & False
        if np.any(cut):
            k = int(which[np.flatnonzero(cut)[0]])
            self._fail(f"segment {self.ids[k]}: compressed RLE counts end in the middle of a number")
        ends = np.flatnonzero(~more)
        starts = np.empty_like(ends)
        if ends.size:
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
        glen = ends - starts + 1
        if glen.size and glen.max() > _MAX_CHARS_PER_COUNT:
            j = int(np.searchsorted(str_ends, ends[int(np.argmax(glen))]))
            sid = self.ids[int(which[j])]
            self._fail(f"segment {sid}: compressed RLE counts hold a number too large for a mask")
        shift = 5 * (np.arange(c.size) - np.repeat(starts, glen))
        x = np.add.reduceat((c & 0x1F) << shift, starts) if ends.size else np.zeros(0, np.int64)
        neg = (c[ends] & 0x10) != 0
        x[neg] -= np.int64(1) << (5 * glen[neg])
        # values per string, then undo the delta coding with a cumsum per parity, per string
        nvals = np.diff(np.concatenate([[0], np.searchsorted(ends, str_ends, side="right")]))
        nvals[~nonempty] = 0
        first = np.concatenate([[0], np.cumsum(nvals)[:-1]])
        pos = np.arange(x.size) - np.repeat(first, nvals)
        # Each string's values laid out as rows of (even, odd) pairs below a zero row, so that
        # one cumsum down the columns undoes the delta coding of every string at once.
        pstart = np.concatenate([[0], np.cumsum((nvals + 1) // 2)[:-1]])
        row0 = 2 * np.repeat(pstart, nvals)
        pairs = np.zeros((int(pstart[-1] + (nvals[-1] + 1) // 2) + 1 if nvals.size else 1, 2), np.int64)
        flat = pairs.reshape(-1)
        where = row0 + 2 + pos
        flat[where] = x
        heads = first[nvals > 0]
        flat[where[heads]] = 0  # the first count is not part of the even chain
        cs = np.cumsum(pairs, axis=0).reshape(-1)
        counts = cs[where] - cs[row0 + (pos & 1)]
        counts[heads] = x[heads]
        return counts, nvals

    def _runs_from_counts(
        self, counts: np.ndarray, nvals: np.ndarray, which: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shape, start, length) of the foreground runs of concatenated count lists."""
        if counts.size and counts.min() < 0:
            bad = int(which[np.repeat(np.arange(nvals.size), nvals)[counts < 0][0]])
            self._fail(f"segment {self.ids[bad]}: RLE has a negative count")
        cs = np.cumsum(counts)
        first = np.concatenate([[0], np.cumsum(nvals)[:-1]]).astype(np.int64)
        last = first + nvals - 1
        before = np.where(first > 0, cs[np.maximum(first - 1, 0)] if cs.size else 0, 0)
        totals = np.where(nvals > 0, cs[np.maximum(last, 0)] - before if cs.size else 0, 0)
        bad = np.flatnonzero(totals != self.npix)
        if bad.size:
            j = int(bad[0])
            sid = self.ids[int(which[j])]
            self._fail(
                f"segment {sid}: RLE counts cover {int(totals[j])} pixels but the image has "
                f"{self.w}x{self.h} = {self.npix}"
            )
        pos = np.arange(counts.size) - np.repeat(first, nvals)
        end = cs - np.repeat(before, nvals)
        fg = ((pos & 1) == 1) & (counts > 0)
        owner = np.repeat(which, nvals)
        return owner[fg], (end - counts)[fg], counts[fg]

    def paint_one(self, k: int, sid: int, buf: np.ndarray, grid: np.ndarray) -> None:
        m = self.masks.get(k)
        if m is not None:
            grid[m] = sid
            return
        a, b = self.idx_bounds[k], self.idx_bounds[k + 1]
        if b > a:
            buf[self.idx[a:b]] = sid
        a, b = self.long_bounds[k], self.long_bounds[k + 1]
        for s, e in zip(self.long_starts[a:b], self.long_ends[a:b], strict=True):
            buf[s:e] = sid

    def pixels(self, k: int) -> np.ndarray:
        """Column-major indices of shape k's pixels (the slow, exact path for reports)."""
        m = self.masks.get(k)
        if m is not None:
            return np.flatnonzero(m.T)
        a, b = self.idx_bounds[k], self.idx_bounds[k + 1]
        parts = [self.idx[a:b].astype(np.int64)]
        a, b = self.long_bounds[k], self.long_bounds[k + 1]
        spans = zip(self.long_starts[a:b], self.long_ends[a:b], strict=True)
        parts += [np.arange(s, e, dtype=np.int64) for s, e in spans]
        return np.concatenate(parts)

    def conflicts(self, ids: list[int]) -> str:
        """Which shapes overlap and on how many pixels (only called when some do)."""
        pix = [self.pixels(k) for k in range(len(ids))]
        where = np.concatenate(pix)
        who = np.repeat(np.asarray(ids, np.int64), [p.size for p in pix])
        o = np.argsort(where, kind="stable")
        where, who = where[o], who[o]
        same = where[1:] == where[:-1]
        n_conflict = int(np.count_nonzero(same & ~np.concatenate([[False], same[:-1]])))
        pairs = []
        d = 1
        while True:
            hit = np.flatnonzero(where[d:] == where[:-d]) if where.size > d else np.zeros(0, np.int64)
            if not hit.size:
                break
            pairs.append(np.stack([who[hit], who[hit + d]], 1))
            d += 1
        allpairs = np.sort(np.concatenate(pairs), axis=1)
        uniq, cnt = np.unique(allpairs, axis=0, return_counts=True)
        o = np.argsort(-cnt, kind="stable")
        top = zip(uniq[o][:10].tolist(), cnt[o][:10].tolist(), strict=True)
        shown = [f"{a} & {b} ({c} px)" for (a, b), c in top]
        more = f" and {len(uniq) - 10} more pairs" if len(uniq) > 10 else ""
        return (
            f"shapes overlap on {n_conflict} pixels ({opt('overlap', 'error')}): segment ids "
            f"{', '.join(shown)}{more}; use {opt('overlap', 'paint')} or small-on-top to paint them anyway"
        )
