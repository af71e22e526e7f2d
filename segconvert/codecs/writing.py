"""What the writers other than Nucleus share: one pass from raw ids to segment codes.

Every writer starts the same way: each pixel's raw id becomes its segment's position in
the (mode-transformed) table, ``code = position + 1`` with 0 for void and dropped ids,
and the pixels of each code are counted. That is one lookup pass (the C kernel of
:func:`segconvert.codecs.lut.to_codes` for RGB-packed ids; for uint8 label maps the values'
histogram, the reader's when it made one, and one 256-entry lookup, or none when the
codes already are the values), which also refuses pixels whose id no segment lists. From the code map a
writer makes its own values with one more lookup (:func:`map_codes`): COCO panoptic
colours, class indices, palette colours.

Unlike :func:`segconvert.model.pack.pack` (the Nucleus payload), nothing here limits an image
to 255 segments: the code map widens to uint16.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from segconvert.codecs import png
from segconvert.codecs.lut import MAX_CODE, code_boxes, count_codes_uint8, lookup_u8, to_codes
from segconvert.codecs.opencv import cv2
from segconvert.errors import ItemError
from segconvert.io.storage import OutputStore
from segconvert.model.ir import Category, Segmentation, SegmentInfo

try:  # the C kernels (see segconvert/codecs/_kernels.c); the same result without them
    from segconvert.codecs._kernels import code_colors as _code_colors_c
except ImportError:  # pragma: no cover - depends on the build
    _code_colors_c = None
try:
    from segconvert.codecs._kernels import code_colors_boxes as _code_colors_boxes_c
except ImportError:  # pragma: no cover - depends on the build (an extension built before it)
    _code_colors_boxes_c = None


@dataclass
class SegmentPixels:
    """The code map of one image and what each code covers."""

    code_map: np.ndarray  # (H, W) uint8 or uint16: 0 void, k = segments[k - 1]
    counts: list[int]  # pixels per code, len(segments) + 1 entries
    segments: list[SegmentInfo]

    def present(self) -> list[int]:
        """Positions (0-based) of the segments that have pixels, in table order."""
        return [pos for pos in range(len(self.segments)) if self.counts[pos + 1] > 0]

    def boxes(self) -> np.ndarray:
        """``(min x, min y, max x, max y)`` per code (row 0 is void), one pass."""
        return code_boxes(self.code_map, len(self.segments) + 1)

    def _kernel_colors_boxes(self, table: Any, png_rows: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """``code_colors_boxes`` over the code map with a 256 x 3 byte colour ``table``: the colours
        ((H, W, 3), or a PNG's rows with ``png_rows``) and the boxes (count x 4 int32); None
        where the kernel does not apply (not built, not a uint8 code map, empty, > 255 codes)."""
        cm, count = self.code_map, len(self.segments) + 1
        if not (_code_colors_boxes_c is not None and cm.dtype == np.uint8 and cm.flags.c_contiguous and cm.size
                and count <= 256):
            return None
        h, w = cm.shape
        out = np.empty((h, 3 * w + 1) if png_rows else (h, w, 3), np.uint8)
        boxes = np.empty((256, 4), np.int32)
        boxes[:] = (w, h, -1, -1)
        _code_colors_boxes_c(cm, w, table, out, boxes, png_rows)
        return out, boxes[:count]

    def colors_and_boxes(self, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(map_codes(code_map, colors), boxes())`` (``colors``: (n, 3) uint8), in one C pass
        over a uint8 code map where the kernel is built (~0.12 ms for 640x480 instead of ~0.23)."""
        if colors.dtype == np.uint8 and colors.shape[1:] == (3,) and len(colors) <= 256:
            table = np.zeros((256, 3), np.uint8)
            table[:len(colors)] = colors
            done = self._kernel_colors_boxes(table, png_rows=False)
            if done is not None:
                return done[0], done[1].astype(np.int64)
        return map_codes(self.code_map, colors), self.boxes()

    def id_png_and_boxes(self, present: list[int], ids: list[int]) -> tuple[bytes, list[list[int]]]:
        """The RGB PNG of 24-bit ids (COCO panoptic: segment ``present[k]`` gets ``ids[k]``, as bytes
        R, G, B little-endian; every other code is void 0) and ``boxes()`` as lists. The kernel's
        table is made of the ids' bytes directly (no numpy arrays to build per image) and it writes
        the colours straight into the PNG's rows (no (H, W, 3) image to copy into them)."""
        table = bytearray(768)
        for pos, sid in zip(present, ids):
            table[3 * pos + 3:3 * pos + 6] = sid.to_bytes(3, "little")
        done = self._kernel_colors_boxes(table, png_rows=True)
        if done is not None:
            h, w = self.code_map.shape
            return png.encode_rows(done[0], w, h, 8, 2), done[1].tolist()
        colors = np.frombuffer(bytes(table[:3 * (len(self.segments) + 1)]), np.uint8).reshape(-1, 3)
        rgb, boxes = self.colors_and_boxes(colors)
        return png.encode_rgb8(rgb), boxes.tolist()


def segment_pixels(seg: Segmentation) -> SegmentPixels:
    """Codes of every pixel of ``seg`` (see the module docstring); ItemError for ids listed
    twice, the id 0 listed as a segment, or pixels whose id has no segment."""
    segments, lm = seg.segments, seg.label_map
    n = len(segments)
    if (not seg.dropped_ids and seg.pixel_counts is not None and lm.dtype == np.uint8 and lm.ndim == 2
            and n < 255 and len(seg.pixel_counts) == 256
            and [s.id if s.pixel_ids is None else -1 for s in segments] == list(range(1, n + 1))):
        # the common case of a uint8 label map (Nucleus): segment k has the value k, so the codes are
        # the values and the reader's histogram is the counts: no dict, no LUT; a value without a
        # segment leaves pixels uncounted, and the general path below names it
        count_list = seg.pixel_counts.tolist()[:n + 1]
        if sum(count_list) == lm.size:
            return SegmentPixels(lm, count_list, segments)
    where = {"item": seg.reference_id, "file": seg.source}
    codes: dict[int, int] = {0: 0}
    for raw in seg.dropped_ids:
        codes[raw] = 0
    for pos, s in enumerate(seg.segments, start=1):
        for raw in s.pixels:
            if raw == 0 or (raw in codes and raw not in seg.dropped_ids):
                raise ItemError(f"segment id {raw} is listed twice (or is 0, which means void)", **where)
            codes[raw] = pos
    if len(seg.segments) > MAX_CODE:
        raise ItemError(f"{len(seg.segments)} segments in one image is more than segconvert handles", **where)
    lm = seg.label_map
    if lm.ndim == 2 and lm.dtype == np.uint8 and len(seg.segments) < 255:
        # the values' histogram (the reader's, when it made one) gives the counts and refuses
        # unknown values; one 256-entry LUT gives the codes, none when they already are the values
        counts = count_codes_uint8(lm, codes, seg.pixel_counts, **where)
        if all(raw == code for raw, code in codes.items()):
            code_map = lm
        else:
            table = np.zeros(256, np.uint8)
            for raw, code in codes.items():
                if 0 <= raw < 256:
                    table[raw] = code
            code_map = lookup_u8(lm, table)
    else:
        code_map, counts = to_codes(lm, codes, **where)
    count_list = counts.tolist()
    count_list += [0] * (len(seg.segments) + 1 - len(count_list))
    return SegmentPixels(code_map, count_list, seg.segments)


def warn_empty(seg: Segmentation, pixels: SegmentPixels) -> None:
    """A warning for each listed segment without pixels (writers leave them out, as pack does)."""
    if 0 not in pixels.counts[1:]:  # nearly every image: one C scan instead of a loop per segment
        return
    for pos, s in enumerate(pixels.segments):
        if pixels.counts[pos + 1] == 0:
            seg.warnings.append(f"segment id {s.id} ({s.label}) has no pixels in the mask")


def encode_mapped(code_map: np.ndarray, values: np.ndarray) -> bytes:
    """The PNG of :func:`map_codes` ``(code_map, values)``: 8-bit grayscale for uint8 values, 16-bit
    for uint16, RGB for (n, 3) colours. uint8 values are looked up straight into the PNG's rows."""
    n = len(values)
    if code_map.dtype == np.uint8 and values.dtype == np.uint8 and values.ndim == 1 and n <= 256 and code_map.ndim == 2:
        table = np.zeros(256, np.uint8)
        table[:n] = values
        h, w = code_map.shape
        # codes are 0..n-1 (a code map of segment_pixels): lookup_u8's shuffle kernel where they are small
        return png.encode_rows(lookup_u8(code_map, table, png_rows=True, top=n - 1), w, h, 8, 0)
    mapped = map_codes(code_map, values)
    if mapped.ndim == 3:
        return png.encode_rgb8(mapped)
    return png.encode_gray8(mapped) if mapped.dtype == np.uint8 else png.encode_gray16(mapped)


def map_codes(code_map: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values[code]`` at every pixel: ``values`` is (n,) uint8/uint16 or (n, 3) uint8 (colours).

    uint8 codes go through :func:`segconvert.codecs.lut.lookup_u8` (~0.05 ms for 640x480 where numpy's
    fancy indexing costs ~1 ms), colours through the C kernel ``code_colors`` (run by run, ~0.1 ms; without
    it a 3-channel ``cv2.LUT`` over the code map replicated by ``cvtColor``, ~0.7 ms); wider
    codes or values use ``np.take``.
    """
    n = len(values)
    if code_map.dtype == np.uint8 and values.dtype == np.uint8 and n <= 256:
        table = np.zeros((256,) + values.shape[1:], np.uint8)
        table[:n] = values
        if values.ndim == 1:
            return lookup_u8(code_map, table)
        if _code_colors_c is not None and code_map.flags.c_contiguous:
            out = np.empty(code_map.shape + (3,), np.uint8)
            _code_colors_c(code_map, table, out)
            return out
        three = cv2().cvtColor(code_map, cv2().COLOR_GRAY2RGB)
        return cv2().LUT(three, table.reshape(256, 1, 3))
    return np.take(values, code_map, axis=0)


class CategoryTable:
    """The dataset's categories as a COCO writer lists them, decided in ``finish`` (source order).

    Starts from the reader's table (ids, order, colours kept, unused categories too), then
    takes what the segments say: a category_id the table lacks joins it under the
    segment's label; a segment without a category_id gets the id of the category of
    that name, else a new id (after the largest id so far) in first-seen order. The
    same records in the same order give the same table, whatever ``--jobs`` was.
    """

    def __init__(self, categories: list[Category] | None) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self._by_name: dict[str, int] = {}
        self._pending: dict[str, tuple[bool, str | None]] = {}  # labels without ids, first-seen order
        for c in categories or ():
            self._add(c.id, c.name, c.isthing, c.supercategory, c.color)

    def _add(self, cid: int, name: str, isthing: bool, supercategory: str | None,
             color: tuple[int, int, int] | None = None) -> None:
        row: dict[str, Any] = {"id": cid, "name": name, "supercategory": supercategory or name,
                               "isthing": int(bool(isthing))}
        if color is not None:
            row["color"] = list(color)
        self.rows[cid] = row
        self._by_name.setdefault(name, cid)

    def see(self, label: str, category_id: int | None, isthing: bool, supercategory: str | None) -> None:
        """First pass: note one segment's class."""
        if category_id is not None:
            if category_id not in self.rows:
                self._add(category_id, label, isthing, supercategory)
        elif label not in self._by_name and label not in self._pending:
            self._pending[label] = (isthing, supercategory)

    def resolve(self) -> None:
        """After the first pass: ids for the labels that came without one."""
        next_id = max(self.rows, default=0) + 1
        for label, (isthing, supercategory) in self._pending.items():
            self._add(next_id, label, isthing, supercategory)
            next_id += 1
        self._pending = {}

    def id_of(self, label: str, category_id: int | None) -> int:
        return category_id if category_id is not None else self._by_name[label]

    def listing(self) -> list[dict[str, Any]]:
        return list(self.rows.values())


class Spool:
    """The records of ``finish`` kept on disk for more than one pass (memory stays flat).

    COCO writers must see every segment before they can number categories, and then
    write ``images`` and ``annotations`` from the same records: the records go to a
    temporary file on the first pass and are read back as often as needed.
    """

    def __init__(self, records: Iterator[str], first_pass: Callable[[str], None] | None = None) -> None:
        """``first_pass``: called with each record as it is spooled (a pass that saves reading them back)."""
        self._fh = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        for line in records:
            self._fh.write(line)
            self._fh.write("\n")
            if first_pass is not None:
                first_pass(line)

    def __iter__(self) -> Iterator[str]:
        self._fh.seek(0)
        for line in self._fh:
            yield line.rstrip("\n")

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: one class of a record row, for the category table: (label, category_id, isthing, supercategory)
ClassOf = Callable[[list[Any]], tuple[str, int | None, bool, str | None]]


def write_coco_json(store: OutputStore, name: str, records: Iterator[str], categories: list[Category] | None,
                    image_ext: str, class_of: ClassOf,
                    annotations: Callable[[int, list[Any], CategoryTable], Iterable[dict[str, Any]]],
                    keep_colors: bool = True) -> None:
    """The dataset file of a COCO writer, from records ``[reference_id, width, height, rows]``.

    The :class:`CategoryTable` is built from each row's class (``class_of``) as the records are
    spooled; then one pass over the spool writes ``images`` (ids 1..N in source order,
    ``file_name`` = reference_id + ``image_ext``) and, into a second temporary file that is
    copied after them, the ``annotations`` the format makes of each image's record (given its
    image id): each record is parsed twice, not three times (once per section). Then
    ``categories``. One entry per line, replaced atomically.
    """
    table = CategoryTable(categories)

    def see(line: str) -> None:
        for row in orjson.loads(line)[3]:
            table.see(*class_of(row))

    with Spool(records, see) as spool:
        table.resolve()
        with store.replacing(name) as fh, tempfile.TemporaryFile(mode="w+", encoding="utf-8") as later:
            fh.write('{"images": [')
            first = True
            for k, line in enumerate(spool, start=1):
                record = orjson.loads(line)
                ref, width, height = record[0], record[1], record[2]
                image = {"id": k, "file_name": ref + image_ext, "width": width, "height": height}
                fh.write(("\n" if k == 1 else ",\n") + orjson.dumps(image).decode())
                for ann in annotations(k, record, table):
                    later.write(("\n" if first else ",\n") + orjson.dumps(ann).decode())
                    first = False
            fh.write('],\n"annotations": [')
            later.seek(0)
            shutil.copyfileobj(later, fh, 1 << 20)
            fh.write('],\n"categories": [')
            rows = table.listing() if keep_colors else [{k: v for k, v in c.items() if k != "color"}
                                                         for c in table.listing()]
            fh.write(",".join("\n" + orjson.dumps(c).decode() for c in rows))
            fh.write("]}\n")
