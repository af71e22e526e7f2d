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
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson

from segconvert.errors import SourceError
from segconvert.io.sources import open_binary
from segconvert.model.ir import Category

TAIL_WINDOW = 4 << 20


def stream(path: Path, prefix: str) -> Iterator[Any]:
    """The elements at ``prefix`` (e.g. ``annotations.item``), parsed one at a time."""
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

    Read from the last TAIL_WINDOW bytes; None when the key is not found there or is not
    provably the top-level object's last member (its value must be followed by the
    object's closing brace and the end of the file), so the caller streams instead.
    """
    try:
        with open_binary(path) as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - TAIL_WINDOW))
            tail = fh.read()
    except OSError:
        return None
    at = tail.rfind(b'"' + key.encode() + b'"')
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
    items: list[Any] = []
    builder: ijson.ObjectBuilder | None = None
    item_prefix = f"{key}.item"
    seen = False
    try:
        with open_binary(path) as fh:
            for prefix, event, value in ijson.parse(fh, use_float=True):
                if builder is not None:
                    builder.event(event, value)
                    if prefix == item_prefix and event in ("end_map", "end_array"):
                        items.append(builder.value)
                        builder = None
                    continue
                if prefix == item_prefix:
                    if event in ("start_map", "start_array"):
                        builder = ijson.ObjectBuilder()
                        builder.event(event, value)
                    else:
                        items.append(value)
                elif prefix == key and event == "start_array":
                    seen = True
                elif prefix == key and event == "end_array":
                    return items
                elif prefix == "" and event == "map_key" and value == stop_at and not seen:
                    return None
    except FileNotFoundError:
        raise SourceError("file not found", file=path) from None
    except ijson.JSONError as exc:
        raise _invalid(path, key, exc) from None
    return None


def table(path: Path, key: str, *, before: str = "annotations") -> list[Any]:
    """A small top-level array (``images``, ``categories``), read the cheapest way that is exact."""
    value = last_member(path, key)
    if isinstance(value, list):
        return value
    value = leading_array(path, key, stop_at=before)
    if value is not None:
        return value
    return list(stream(path, f"{key}.item"))


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
