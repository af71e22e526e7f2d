"""Read COCO-style JSON (images, annotations, categories) without holding it all in memory.

``json.load`` of COCO train's 450 MB turns into several GB of dicts; streamed with
ijson, one annotation at a time is alive. Streaming costs passes over the file,
though, so the two small tables are read the cheap way when the file is laid out as
COCO writes it: ``images`` before ``annotations`` (read from the head, stopping where
the array ends) and ``categories`` last (read from the tail). Any other layout falls
back to a full streamed pass; the results are the same.
"""

from __future__ import annotations

import json
import os
import re
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from segconvert.errors import SourceError
from segconvert.io.sources import open_binary
from segconvert.model.ir import Category

TAIL_WINDOW = 4 << 20
FIRST_TAIL_WINDOW = 64 << 10


def stream(path: Path, prefix: str) -> Iterator[Any]:
    """The elements at ``prefix`` (e.g. ``annotations.item``), parsed one at a time."""
    import ijson  # here, not at the top: a run that streams no JSON skips its 4 ms import

    try:
        with open_binary(path) as fh:
            yield from ijson.items(fh, prefix, use_float=True)
    except FileNotFoundError:
        raise SourceError("file not found", file=path) from None
    except ijson.JSONError as exc:
        raise _invalid(path, prefix, exc) from None


def _invalid(path: Path, prefix: str, exc: Exception) -> SourceError:
    """ijson's error as a sentence: yajl gives its message as bytes with a caret diagram of the
    bad bytes; only the first line is kept, decoded, never a Python bytes repr."""
    detail = exc.args[0] if len(exc.args) == 1 else str(exc)
    if isinstance(detail, bytes | bytearray):
        detail = bytes(detail).decode("utf-8", "replace")
    reason = (str(detail).strip().splitlines() or ["?"])[0].strip().rstrip(".")
    return SourceError(
        f"not valid JSON ({reason}) while reading {prefix.split('.')[0]!r}; check that the file is complete, "
        "UTF-8 JSON", file=path,
    )


def last_member(path: Path, key: str) -> Any | None:
    """The value of the top-level ``key`` if it is the last member of the file's object.

    Read from the last FIRST_TAIL_WINDOW bytes, then (key not found there) the last
    TAIL_WINDOW: COCO's categories fit in the first (10 kB), and a table that is not last
    costs a 64 kB read, not 4 MB. None when the key is not found or is not provably the
    top-level object's last member (its value must be followed by the object's closing
    brace and the end of the file), so the caller streams instead.
    """
    needle = b'"' + key.encode() + b'"'
    try:
        with open_binary(path) as fh:
            size = fh.seek(0, 2)
            for window in (FIRST_TAIL_WINDOW, TAIL_WINDOW):
                fh.seek(max(0, size - window))
                tail = fh.read()
                at = tail.rfind(needle)
                if at >= 0 or window >= size:
                    break
    except OSError:
        return None
    if at < 0:
        return None
    try:
        text = tail[at:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    head = re.match(r'"' + re.escape(key) + r'"\s*:\s*', text)
    if head is None or not re.search(r"[{,]\s*$", tail[max(0, at - 64):at].decode("utf-8", "ignore")):
        return None
    try:
        value, end = json.JSONDecoder().raw_decode(text, head.end())
    except ValueError:
        return None
    return value if text[end:].strip() == "}" else None


def leading_array(path: Path, key: str, stop_at: str) -> list[Any] | None:
    """The top-level array ``key`` when it comes before ``stop_at``: read from the head of the
    file and stopped where the array ends. None when ``stop_at`` (or the end) comes first."""
    found: list[bool] = []
    items = list(_leading_items(path, key, stop_at, found))
    return items if found else None


def table(path: Path, key: str, *, before: str = "annotations") -> list[Any]:
    """A small top-level array (``images``, ``categories``), read the cheapest way that is exact."""
    value = last_member(path, key)
    if isinstance(value, list):
        return value
    value = leading_array(path, key, stop_at=before)
    if value is not None:
        return value
    return list(stream(path, f"{key}.item"))


def table_items(path: Path, key: str, *, before: str = "annotations") -> Iterator[Any]:
    """The elements of a top-level array, one at a time, read as cheaply as :func:`table` reads
    them but never all alive at once: ``images`` of COCO train is 118k dicts (~60 MB as a list),
    which a reader only needs long enough to keep three fields of each."""
    found: list[bool] = []
    yield from _leading_items(path, key, before, found)  # COCO's layout: images first
    if found:
        return
    value = last_member(path, key)  # from the file's tail: small by construction
    if isinstance(value, list):
        yield from value
        return
    yield from stream(path, f"{key}.item")  # anywhere else: a full streamed pass


def _leading_items(path: Path, key: str, stop_at: str, found: list[bool]) -> Iterator[Any]:
    """:func:`leading_array` as a generator; appends to ``found`` once the array has begun."""
    import ijson

    builder: Any = None  # an ijson.ObjectBuilder while an element is being built
    item_prefix = f"{key}.item"
    try:
        with open_binary(path) as fh:
            for prefix, event, value in ijson.parse(fh, use_float=True):
                if builder is not None:
                    builder.event(event, value)
                    if prefix == item_prefix and event in ("end_map", "end_array"):
                        item, builder = builder.value, None
                        yield item
                    continue
                if prefix == item_prefix:
                    if event in ("start_map", "start_array"):
                        builder = ijson.ObjectBuilder()
                        builder.event(event, value)
                    else:
                        yield value
                elif prefix == key and event == "start_array":
                    found.append(True)
                elif prefix == key and event == "end_array":
                    return
                elif prefix == "" and event == "map_key" and value == stop_at and not found:
                    return
    except FileNotFoundError:
        raise SourceError("file not found", file=path) from None
    except ijson.JSONError as exc:
        raise _invalid(path, key, exc) from None


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_NO_SIZE = -1  # a width/height that is not an integer: the item that needs it fails
#: what :meth:`ImageTable.get` returns for an id that 'images' lists twice
LISTED_TWICE: tuple[str | None, int, int] = (None, _NO_SIZE, _NO_SIZE)


class ImageTable:
    """``images`` as the readers need it: image id -> (reference_id, width, height), ~45 bytes per
    image in flat arrays (a dict of tuples cost ~230, plus the list of dicts it was read from).

    Integer ids (COCO's) are kept sorted in a numpy array and found by binary search; other
    ids (strings, which some exporters write) in a dict. reference_id is the stem of
    ``file_name`` (None without one); a width or height that is not an integer is kept as -1,
    which the item's size check refuses, as it refused the original value. An id listed twice
    is :data:`LISTED_TWICE`: which entry an annotation means is unknown, so its image fails.
    """

    def __init__(self, images: Iterable[Any]) -> None:
        ids, sizes, offsets = array("q"), array("q"), array("q")
        named = bytearray()  # 1 where the entry has a file_name
        blob = bytearray()
        others: dict[str, int] = {}  # a non-integer id -> its row, or -1 when listed twice
        for img in images:
            if not isinstance(img, dict):
                continue
            iid = img.get("id")
            if not isinstance(iid, int | str) or (isinstance(iid, int) and not _INT64_MIN <= iid <= _INT64_MAX):
                continue  # a list or dict id (or one past 64 bits): no annotation can name it
            name = img.get("file_name")
            offsets.append(len(blob))
            named.append(isinstance(name, str))
            if isinstance(name, str):
                blob += os.path.splitext(os.path.basename(name))[0].encode("utf-8", "surrogatepass")
            for dim in (img.get("width"), img.get("height")):
                sizes.append(dim if isinstance(dim, int) and _INT64_MIN <= dim <= _INT64_MAX else _NO_SIZE)
            row = len(named) - 1
            if isinstance(iid, int):
                ids.append(iid)
                ids.append(row)
            else:
                others[iid] = -1 if iid in others else row
        offsets.append(len(blob))
        pairs = np.frombuffer(ids, np.int64).reshape(-1, 2) if ids else np.empty((0, 2), np.int64)
        order = np.argsort(pairs[:, 0], kind="stable")
        self._ids = np.ascontiguousarray(pairs[order, 0])
        self._rows = np.ascontiguousarray(pairs[order, 1])
        same = self._ids[1:] == self._ids[:-1]
        self._twice = np.zeros(len(self._ids), bool)
        self._twice[1:] |= same
        self._twice[:-1] |= same
        self._sizes, self._offsets, self._named, self._blob = sizes, offsets, bytes(named), bytes(blob)
        self._others = others
        self._count = len(self._ids) - int(same.sum()) + len(others)

    def __len__(self) -> int:
        """The number of distinct image ids."""
        return self._count

    def get(self, iid: object) -> tuple[str | None, int, int] | None:
        """(reference_id, width, height) of image ``iid``; None when 'images' has no such id."""
        if isinstance(iid, int):
            if not _INT64_MIN <= iid <= _INT64_MAX:
                return None
            at = int(np.searchsorted(self._ids, iid))
            if at == len(self._ids) or int(self._ids[at]) != iid:
                return None
            if self._twice[at]:
                return LISTED_TWICE
            row = int(self._rows[at])
        elif isinstance(iid, str) and iid in self._others:
            row = self._others[iid]
            if row < 0:
                return LISTED_TWICE
        else:
            return None
        ref = (self._blob[self._offsets[row]:self._offsets[row + 1]].decode("utf-8", "surrogatepass")
               if self._named[row] else None)
        return ref, self._sizes[2 * row], self._sizes[2 * row + 1]


def integer(value: Any) -> int:
    """An id or a size from a COCO JSON: an int, or a float with an integral value (3.0, as
    some writers emit); anything else (3.5, "3", true) raises TypeError rather than becoming
    a silently different number."""
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError(f"not an integer: {value!r}")


def parse_categories(raw: list[Any], file: Path) -> list[Category]:
    """COCO's ``categories`` (panoptic or instances: ``isthing`` defaults to 1) as Category objects."""
    cats: list[Category] = []
    seen: set[int] = set()
    for k, c in enumerate(raw):
        try:
            cat = Category(
                id=int(c["id"]),
                name=str(c["name"]),
                isthing=bool(c.get("isthing", 1)),
                supercategory=c.get("supercategory"),
                color=tuple(c["color"]) if isinstance(c.get("color"), list) else None,  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError):
            raise SourceError(f"categories[{k}] needs an integer 'id' and a 'name'", file=file) from None
        if cat.id in seen:
            raise SourceError(f"category id {cat.id} appears twice in categories", file=file)
        seen.add(cat.id)
        cats.append(cat)
    return cats
