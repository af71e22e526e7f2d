"""One streaming pass over a big JSON document, one array element at a time.

COCO instances does not group annotations by image, so a reader that wants to hand each
image its annotations either holds them all (``json.load``: peak memory grows with the
file, several GB for COCO train) or remembers where each one is. :func:`walk` goes
through the top-level object with the standard library's own parser
(``json.JSONDecoder.raw_decode``, the C scanner ``json.load`` uses: the same speed, and
exactly the JSON it accepts), one array element at a time, and reports each element of
the top-level arrays with its byte offset and length in the file; the caller keeps what
it needs (an image id, a category id) and drops the rest. A worker later reads an
element again from those bytes alone (:func:`read_ranges`), locally with ``os.pread``
or from object storage by range.

:func:`array_items` yields the elements of a top-level array (Label Studio's list of
tasks) the same way. Unlike a parser that decodes a whole read buffer before it hands
anything out (ijson's C backend), every element before a break in the JSON is given
out before the error, and the error names the element that breaks
(:class:`InvalidJson`): what comes before it can be converted, and the message points
at the right place. ``strict`` refuses what the standard library accepts but JSON
(RFC 8259, I-JSON) does not: NaN / Infinity and escapes of half a surrogate pair.

Memory: the read buffer (1 MB, grown only for an element larger than that) and the one
element being looked at. The buffer grows only while the element is incomplete: a parse
error that no further text could mend (see :func:`_cut_here`) is reported at once, not
after reading the rest of a broken file. Top-level values that are not arrays
(``info``) are parsed whole; they are small in every format that has them.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from segconvert.errors import SourceError

CHUNK = 1 << 20
_WS = " \t\n\r"


class _Constant(ValueError):
    """NaN, Infinity or -Infinity in strict mode (raised through the C scanner)."""


def _refuse_constant(name: str) -> Any:
    raise _Constant(name)


_decoder = json.JSONDecoder()
_strict_decoder = json.JSONDecoder(parse_constant=_refuse_constant)

#: what may follow a parse error's position when the text was only cut there (by a read or
#: by the end of the file): a literal or number cut short (``tru``, ``-``, ``1.``, ``1e+``,
#: ``Infin``), a ``\\uXXXX`` escape cut short (the scanner reports it at the ``u``), or nothing
_CUT = re.compile(
    r"(?:t(?:ru?)?|f(?:a(?:ls?)?)?|n(?:ul?)?|Na?|-?(?:I(?:n(?:f(?:i(?:n(?:it?)?)?)?)?)?)?|[.eE][-+]?"
    r"|u[0-9a-fA-F]{0,4})?[ \t\n\r]*\Z"
)
#: what may follow a number the decoder took whole when the buffer ends there: nothing, or the
#: start of a fraction or exponent that the next read completes ("-0" + ".", "1.5" + "e-")
_NUMBER_GOES_ON = re.compile(r"(?:\.|[eE][-+]?)?\Z")
#: one escape sequence of a JSON string; found left to right, an escaped backslash is one match
_ESCAPE = re.compile(r"\\(?:u([dD][89a-fA-F][0-9a-fA-F]{2})|.)", re.DOTALL)

#: called with (key, element, byte offset, byte length) for each element of a top-level array
OnElement = Callable[[str, Any, int, int], None]


class InvalidJson(SourceError):
    """The JSON stops being valid: why, at which byte (None when the parser cannot say),
    whether the file simply ends there (``cut_short``: a partial download), and, from
    :func:`array_items`, which element of the top-level array breaks (``element``) or
    after which one the text goes wrong (``after``)."""

    def __init__(self, reason: str, *, byte: int | None, cut_short: bool = False, file: str | None = None,
                 what: str = "JSON") -> None:
        self.reason, self.byte, self.cut_short, self.what = reason, byte, cut_short, what
        self.element: int | None = None  # set by array_items
        self.after: int | None = None
        at = f", at byte {byte}" if byte is not None else ""
        super().__init__(f"not valid {what} ({reason}{at})", file=file)


def _cut_here(text: str, exc: json.JSONDecodeError) -> bool:
    """Whether the text could still become valid by what follows it: the error is where the
    text ends (a string, a literal, a number or an escape cut), not at a wrong character."""
    return exc.msg.startswith("Unterminated string") or _CUT.match(text, exc.pos) is not None


def lone_surrogate(text: str, start: int = 0, end: int | None = None) -> int | None:
    """The index of the first ``\\uD800``-``\\uDFFF`` escape in ``text[start:end]`` (JSON
    source) that is not half of a high + low pair, or None. The standard library decodes
    it to a lone surrogate, a str that cannot be written as UTF-8 (a file name, a label)."""
    end = len(text) if end is None else end
    if text.find("\\ud", start, end) < 0 and text.find("\\uD", start, end) < 0:
        return None  # the common case: one C-speed scan
    high: re.Match[str] | None = None  # a high surrogate escape waiting for its low half
    for m in _ESCAPE.finditer(text, start, end):
        unit = int(m.group(1), 16) if m.group(1) else None
        is_low = unit is not None and unit >= 0xDC00
        if high is not None:
            if is_low and m.start() == high.end():
                high = None
                continue
            return high.start()
        if unit is not None and unit < 0xDC00:
            high = m
        elif is_low:
            return m.start()
    return high.start() if high is not None else None


class _Buffer:
    """Text read so far from the file (from ``consumed`` on), with byte offsets kept exact
    for UTF-8 (chars and bytes differ only where the text is not ASCII)."""

    def __init__(self, fh: IO[bytes], name: str, strict: bool = False, chunk: int = CHUNK) -> None:
        self.fh, self.name = fh, name
        self.strict = strict
        self.decoder = _strict_decoder if strict else _decoder
        self.decode = codecs.getincrementaldecoder("utf-8")().decode
        self.text = ""
        self.pos = 0  # index into text
        self.eof = False
        self.ascii = True
        self.base_bytes = 0  # byte offset of text[0]
        self._mark_chars = 0  # text[:mark] is mark_bytes bytes
        self._mark_bytes = 0
        self.read_bytes = 0  # bytes read from the file
        self.chunk = chunk  # the size of a read (larger while an element is larger)
        self.need = chunk
        #: bytes that are not UTF-8 after the text buffered: raised when the parse needs them,
        #: so that everything before them is parsed (and given out) first
        self.bad_text: InvalidJson | None = None

    def fill(self) -> bool:
        """Read more; False at the end of the file. InvalidJson when what comes next is not UTF-8."""
        if self.bad_text is not None:
            raise self.bad_text
        if self.eof:
            return False
        raw = self.fh.read(self.need)
        if not raw:
            self.eof = True
        try:  # the end of the file may cut a multi-byte character: that too is not UTF-8
            tail = self.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            # the decoder's input is the bytes it held back from the last read, then this read's
            tail = exc.object[: exc.start].decode("utf-8")
            at = self.read_bytes - (len(exc.object) - len(raw)) + exc.start
            self.bad_text = InvalidJson(exc.reason, byte=at, file=self.name, what="UTF-8 JSON")
        self.read_bytes += len(raw)
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
            raise self.invalid(f"expected {expected!r} but found {got or 'the end of the file'!r}", cut_short=not got)
        self.pos += 1

    def value(self) -> Any:
        """The next JSON value, parsed by the standard library; more is read until it is whole.

        A parse error is final where no text after it could mend it (:func:`_cut_here`):
        a broken element of a big file is reported without reading the rest of the file.
        """
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                cut = _cut_here(self.text, exc)
                if cut and self._more():
                    continue
                raise self.invalid(exc.msg, at=exc.pos, cut_short=cut) from None
            except _Constant as exc:  # the scanner does not say where
                raise InvalidJson(f"{exc} is not JSON", byte=None, file=self.name) from None
            except RecursionError:
                raise self.invalid("nested too deeply") from None
            except ValueError as exc:  # an integer of more than sys.get_int_max_str_digits() digits
                raise InvalidJson(str(exc).split(":")[0], byte=None, file=self.name) from None
            if type(value) in (int, float) and _NUMBER_GOES_ON.match(self.text, end) and self._more():
                continue  # a number cut at the buffer's end ("12", "-0." of "-0.0", "1e" of "1e5"): re-read
            if self.strict:
                lone = lone_surrogate(self.text, self.pos, end)
                if lone is not None:
                    raise self.invalid(f"the escape {self.text[lone:lone + 6]} is half a surrogate pair, no text",
                                       at=lone)
            self.pos = end
            self.need = self.chunk
            return value

    def _more(self) -> bool:
        """Read more for an element that does not fit in what is buffered (doubling, so a
        large element costs O(size), not O(size²))."""
        if self.eof and self.bad_text is None:
            return False
        self.need = max(self.need, len(self.text) - self.pos) * 2
        return self.fill()

    def invalid(self, reason: str, at: int | None = None, cut_short: bool = False) -> InvalidJson:
        """The error at text index ``at`` (default: ``pos``), with its byte offset; ``cut_short``
        when it is where the file ends (the error is where the text stops, and no more comes)."""
        if at is not None:
            self.pos = min(at, len(self.text))
        return InvalidJson(reason, byte=self.offset(), cut_short=cut_short and self.eof, file=self.name)


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
    if sep != close and sep != ",":
        raise buf.invalid(f"expected ',' or {close!r} {where}", cut_short=not sep)
    buf.pos += 1
    return sep == close


def array_items(fh: IO[bytes], name: str, *, strict: bool = False, chunk: int = CHUNK) -> Iterator[Any]:
    """Each element of the top-level array of ``fh`` (a UTF-8 BOM skipped), parsed one at a
    time: memory holds one element, whatever the length of the array.

    Each element is given out as soon as it is parsed, so every element before a break
    in the JSON comes out before the :class:`InvalidJson`, which says where the break is:
    ``element``, the index of the element that does not parse, or ``after``, the index of
    the last whole element when what follows it is wrong (no ``,``, text after the list).
    ``strict``: NaN, Infinity and half surrogate pairs are errors (see the module docstring).
    ``chunk``: the size of a read, the memory held besides the element.
    """
    buf = _Buffer(fh, name, strict, chunk)
    count = 0  # elements given out
    inside = False  # in an element (else before the list, between elements or after the list)
    try:
        if buf.peek() == "\ufeff":
            buf.pos += 1
        first = buf.peek()
        if first != "[":
            raise buf.invalid("expected a JSON list", cut_short=not first)
        buf.pos += 1
        if buf.peek() == "]":
            buf.pos += 1
        else:
            while True:
                inside = True
                element = buf.value()
                inside = False
                yield element
                count += 1
                if _closed(buf, "]", "after an element"):
                    break
        if buf.peek() != "":
            raise buf.invalid("extra data after the list")
    except InvalidJson as exc:
        if inside:
            exc.element = count
        elif count:
            exc.after = count - 1
        raise


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
