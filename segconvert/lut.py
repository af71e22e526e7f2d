"""Turn a label map of raw ids into small codes in one lookup-table pass.

Raw ids can be anything up to 24 bits (COCO panoptic's R + 256·G + 256²·B), and an
image has a few dozen of them. ``np.unique(return_inverse=True)`` costs ~10 ms on
640×480; indexing a 2^24-entry table costs ~0.2 ms. The table is allocated once per
process and only the entries an image uses are set and then reset, so every image
pays for its own ids, not for the table.

Ids that are not in the mapping must not silently become background: the table is
filled with a sentinel and one pass over the result finds them.
"""

from __future__ import annotations

import numpy as np

from segconvert.errors import ItemError

SENTINEL = np.uint16(0xFFFF)
MAX_CODE = int(SENTINEL) - 1
_TABLE_BITS = 24
_table: np.ndarray | None = None


def _big_table() -> np.ndarray:
    global _table
    if _table is None:
        _table = np.full(1 << _TABLE_BITS, SENTINEL, dtype=np.uint16)
    return _table


def _fits_table(label_map: np.ndarray) -> bool:
    if label_map.dtype.kind == "u" and label_map.dtype.itemsize <= 2:
        return True
    if label_map.size == 0:
        return True
    if label_map.dtype.kind == "i" and int(label_map.min()) < 0:
        return False
    return int(label_map.max()) < (1 << _TABLE_BITS)


def to_codes(
    label_map: np.ndarray,
    codes: dict[int, int],
    *,
    item: str | None = None,
    file: str | None = None,
) -> np.ndarray:
    """``uint16`` array with ``codes[raw]`` at every pixel; ItemError if a raw id has no code.

    Codes must be in ``0..MAX_CODE``.
    """
    if codes and (max(codes.values()) > MAX_CODE or min(codes.values()) < 0):
        raise ValueError("codes must be in 0..65534")
    if _fits_table(label_map):
        table = _big_table()
        keys = np.fromiter((k for k in codes if 0 <= k < (1 << _TABLE_BITS)), dtype=np.int64)
        values = np.fromiter((codes[int(k)] for k in keys), dtype=np.uint16, count=len(keys))
        try:
            table[keys] = values
            out = np.take(table, label_map)
        finally:
            table[keys] = SENTINEL
        if out.size and out.max() == SENTINEL:
            _raise_unknown(label_map, out == SENTINEL, item, file)
        return out
    uniq, inverse = np.unique(label_map, return_inverse=True)
    mapped = np.array([codes.get(int(u), int(SENTINEL)) for u in uniq], dtype=np.uint16)
    out = mapped[inverse.reshape(label_map.shape)]
    if (mapped == SENTINEL).any():
        _raise_unknown(label_map, out == SENTINEL, item, file)
    return out


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
