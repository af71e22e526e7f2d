"""One streaming pass over a big JSON object that gives each array element's byte range.

COCO instances does not group annotations by image, so a reader that wants to hand each
image its annotations either holds them all (``json.load``: peak memory grows with the
file, several GB for COCO train) or remembers where each one is. This walks the
top-level object with the standard library's own parser (``json.JSONDecoder.raw_decode``,
the C scanner ``json.load`` uses: the same speed, and exactly the JSON it accepts), one
array element at a time, and reports each element of the top-level arrays with its byte
offset and length in the file; the caller keeps what it needs (an image id, a category
id) and drops the rest. A worker later reads an element again from those bytes alone
(:func:`read_ranges`), locally with ``os.pread`` or from object storage by range.

Memory: the read buffer (1 MB, grown only for an element larger than that) and the one
element being looked at. Top-level values that are not arrays (``info``) are parsed
whole; they are small in every format that has them.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Callable, Iterable
from typing import IO, Any

from segconvert.errors import SourceError

CHUNK = 1 << 20
_WS = " \t\n\r"
_decoder = json.JSONDecoder()

#: called with (key, element, byte offset, byte length) for each element of a top-level array
OnElement = Callable[[str, Any, int, int], None]


class _Buffer:
    """Text read so far from the file (from ``consumed`` on), with byte offsets kept exact
    for UTF-8 (chars and bytes differ only where the text is not ASCII)."""

    def __init__(self, fh: IO[bytes], name: str) -> None:
        self.fh, self.name = fh, name
        self.decode = codecs.getincrementaldecoder("utf-8")().decode
        self.text = ""
        self.pos = 0  # index into text
        self.eof = False
        self.ascii = True
        self.base_bytes = 0  # byte offset of text[0]
        self._mark_chars = 0  # text[:mark] is mark_bytes bytes
        self._mark_bytes = 0
        self.need = CHUNK

    def fill(self) -> bool:
        """Read more; False at the end of the file."""
        if self.eof:
            return False
        raw = self.fh.read(self.need)
        if not raw:
            self.eof = True
        try:  # the end of the file may cut a multi-byte character: that too is not UTF-8
            tail = self.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            raise SourceError(f"not valid UTF-8 JSON ({exc.reason})", file=self.name) from None
        keep = self.text[self.pos:]
        self.base_bytes = self.offset()
        self._mark_chars, self._mark_bytes = 0, 0
        self.text = keep + tail
        self.pos = 0
        if self.ascii and not tail.isascii():
            self.ascii = False
        return True

    def offset(self) -> int:
        """The byte offset of ``pos`` in the file."""
        if self.ascii:
            return self.base_bytes + self.pos
        if self.pos < self._mark_chars:  # not expected: offsets are asked in increasing order
            self._mark_chars, self._mark_bytes = 0, 0
        self._mark_bytes += len(self.text[self._mark_chars:self.pos].encode("utf-8"))
        self._mark_chars = self.pos
        return self.base_bytes + self._mark_bytes

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end), without taking it."""
        while True:
            text, pos = self.text, self.pos
            while pos < len(text) and text[pos] in _WS:
                pos += 1
            self.pos = pos
            if pos < len(text):
                return text[pos]
            if not self.fill():
                return ""

    def take(self, expected: str) -> None:
        got = self.peek()
        if got != expected:
            raise self.invalid(f"expected {expected!r} but found {got or 'the end of the file'!r}")
        self.pos += 1

    def value(self) -> Any:
        """The next JSON value, parsed by the standard library; more is read until it is whole."""
        self.peek()
        while True:
            try:
                value, end = _decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if self._more():
                    continue
                raise self.invalid(exc.msg, at=exc.pos) from None
            if end == len(self.text) and self._more():  # a number cut at the buffer's end: re-read
                continue
            self.pos = end
            self.need = CHUNK
            return value

    def _more(self) -> bool:
        """Read more for an element that does not fit in what is buffered (doubling, so a
        large element costs O(size), not O(size²))."""
        if self.eof:
            return False
        self.need = max(self.need, len(self.text) - self.pos) * 2
        return self.fill()

    def invalid(self, reason: str, at: int | None = None) -> SourceError:
        if at is not None:
            self.pos = min(at, len(self.text))
        return SourceError(f"not valid JSON ({reason}, at byte {self.offset()})", file=self.name)


def walk(fh: IO[bytes], name: str, on_element: OnElement) -> dict[str, Any]:
    """Walk the top-level object of ``fh``: every element of a top-level array goes to
    ``on_element``; returns the other members (``{key: value}``) and, for each array,
    ``{key: None}`` so the caller can tell that the array was there.

    SourceError when the file is not valid JSON, or not an object.
    """
    buf = _Buffer(fh, name)
    first = buf.peek()
    if first != "{":
        if first in ("[", '"') or first.isdigit() or first in "-tfn":
            buf.value()  # valid JSON, but not an object
            raise SourceError("expected a JSON object with images, annotations and categories", file=name)
        raise buf.invalid("expected a JSON object")
    buf.pos += 1
    members: dict[str, Any] = {}
    if buf.peek() == "}":
        buf.pos += 1
    else:
        while True:
            key = buf.value()
            if not isinstance(key, str):
                raise buf.invalid("expected a member name")
            buf.take(":")
            if buf.peek() == "[":
                buf.pos += 1
                members[key] = None
                _elements(buf, key, on_element)
            else:
                members[key] = buf.value()
            if _closed(buf, "}", f"after member {key!r}"):
                break
    if buf.peek() != "":
        raise buf.invalid("extra data after the top-level object")
    return members


def _elements(buf: _Buffer, key: str, on_element: OnElement) -> None:
    if buf.peek() == "]":
        buf.pos += 1
        return
    while True:
        buf.peek()
        start = buf.offset()
        element = buf.value()
        on_element(key, element, start, buf.offset() - start)
        if _closed(buf, "]", f"in {key!r}"):
            return


def _closed(buf: _Buffer, close: str, where: str) -> bool:
    """Take the ',' between two members/elements (False) or the closing bracket (True)."""
    sep = buf.peek()
    buf.pos += 1
    if sep == close:
        return True
    if sep != ",":
        raise buf.invalid(f"expected ',' or {close!r} {where}")
    return False


def read_ranges(location: str, ranges: Iterable[tuple[int, int]], gap: int = 1 << 16) -> list[bytes]:
    """The bytes of each (offset, length) range of a file, in the order given: local files
    with ``os.pread``, URLs with one ranged read per run of nearby ranges (gaps < ``gap``)."""
    ranges = list(ranges)
    from segconvert.io import sources

    if not sources.is_url(location):
        fd = os.open(location, os.O_RDONLY)
        try:
            return [os.pread(fd, length, offset) for offset, length in ranges]
        finally:
            os.close(fd)
    fs, path = sources.filesystem(location)
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    out: list[bytes] = [b""] * len(ranges)
    k = 0
    while k < len(order):
        first = ranges[order[k]][0]
        end = first + ranges[order[k]][1]
        group = [order[k]]
        k += 1
        while k < len(order) and ranges[order[k]][0] - end < gap:
            end = max(end, ranges[order[k]][0] + ranges[order[k]][1])
            group.append(order[k])
            k += 1
        span = fs.cat_file(path, start=first, end=end)
        for i in group:
            offset, length = ranges[i]
            out[i] = span[offset - first: offset - first + length]
    return out
