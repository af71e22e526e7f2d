"""jsonindex.array_items: the elements of a top-level array, one at a time, each given out
before the next is parsed; a break named at its element, found without reading the rest
of the file; strict mode against the standard library's own decoding."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segconvert.codecs.jsonindex import InvalidJson, array_items, lone_surrogate


class CountingFile(io.BytesIO):
    """A file that counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_total = 0

    def read(self, size: int | None = -1) -> bytes:
        out = super().read(size)
        self.read_total += len(out)
        return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None)
@given(elements=st.lists(json_values, max_size=6), chunk=st.integers(1, 64), indent=st.sampled_from([None, 2]),
       ascii_only=st.booleans())
def test_elements_are_what_json_loads_gives(elements, chunk, indent, ascii_only):
    data = json.dumps(elements, indent=indent, ensure_ascii=ascii_only).encode()
    assert list(array_items(io.BytesIO(data), "x.json", strict=True, chunk=chunk)) == json.loads(data)


def test_a_break_is_reported_without_reading_the_rest():
    """A wrong character cannot be mended by what follows: no reading on to the end of the file
    (the old loop doubled its read until the end, holding the rest of a broken file)."""
    good = b", ".join([json.dumps({"k": "v" * 100}).encode()] * 50_000)  # 5 MB
    data = b'[{"a": 1}, {"a": tru}, ' + good + b"]"
    fh = CountingFile(data)
    items = array_items(fh, "x.json", chunk=1 << 12)
    assert next(items) == {"a": 1}
    with pytest.raises(InvalidJson) as caught:
        next(items)
    assert (caught.value.element, caught.value.after, caught.value.cut_short) == (1, None, False)
    assert caught.value.byte == data.index(b"tru")
    assert fh.read_total <= 3 * (1 << 12)


def test_an_element_larger_than_a_read_is_read_whole():
    big = {"rle": list(range(256)) * 2000}  # ~1 MB of JSON
    data = json.dumps([big, {"a": 1}]).encode()
    assert list(array_items(io.BytesIO(data), "x.json", chunk=1 << 10)) == [big, {"a": 1}]


@pytest.mark.parametrize("chunk", [1, 5, 1 << 16])
def test_bytes_that_are_not_utf8_are_an_error_of_their_element(chunk):
    data = '[{"a": "ä"}, {"b": "x'.encode() + b"\xff" + b'"}]'
    items = array_items(io.BytesIO(data), "x.json", chunk=chunk)
    assert next(items) == {"a": "ä"}
    with pytest.raises(InvalidJson, match=r"not valid UTF-8 JSON \(invalid start byte") as caught:
        next(items)
    assert caught.value.element == 1 and caught.value.byte == data.index(b"\xff")


def test_a_file_ending_in_the_middle_of_a_character_is_cut_utf8():
    data = '[{"a": "ä"}, {"b": "ä'.encode()[:-1]
    with pytest.raises(InvalidJson, match=r"not valid UTF-8 JSON \(unexpected end of data") as caught:
        list(array_items(io.BytesIO(data), "x.json", chunk=3))
    assert caught.value.element == 1 and caught.value.byte == len(data) - 1


def test_strict_refuses_constants_and_the_default_does_not():
    data = b'[{"a": NaN}]'
    with pytest.raises(InvalidJson, match=r"not valid JSON \(NaN is not JSON\)") as caught:
        list(array_items(io.BytesIO(data), "x.json", strict=True))
    assert caught.value.element == 0 and caught.value.byte is None
    (value,) = array_items(io.BytesIO(data), "x.json")
    assert value["a"] != value["a"]  # the standard library's NaN


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "\\", '"', "\ud800", "\udc00", "\U0001f600", "\u00e4", "\ud7ff", "\ue000"]),
                max_size=8).map("".join))
def test_lone_surrogate_is_found_where_the_standard_library_makes_one(text):
    """The escape scan agrees with decoding: a lone surrogate in the decoded string iff an index."""
    source = json.dumps(text)  # ensure_ascii: every non-ASCII character is an escape
    decoded = json.loads(source)
    try:
        decoded.encode("utf-8")
        lone = False
    except UnicodeEncodeError:
        lone = True
    found = lone_surrogate(source)
    assert (found is not None) == lone
    if found is not None:
        assert source[found] == "\\" and source[found + 2] in "dD"


def test_escaped_backslash_before_u_is_no_escape():
    assert lone_surrogate(json.dumps("\\udc00")) is None  # the text \udc00, not the character
    assert lone_surrogate(json.dumps("\\" + "\udc00")) == 3  # a backslash, then the character



@pytest.mark.parametrize(("data", "reason"), [
    (b'[{"a": 1}, {"a": ' + b"1" * 5000 + b"}]", r"Exceeds the limit \(\d+ digits\) for integer string conversion"),
    (b'[{"a": 1}, ' + b"[" * 100_000 + b"]" * 100_000 + b"]", r"nested too deeply"),
])
def test_what_the_parser_refuses_besides_syntax_is_an_error_of_its_element(data, reason):
    """Python's own limits (a 5000-digit integer, deep nesting) raise ValueError and
    RecursionError from the scanner: a message naming the element, not a traceback."""
    items = array_items(io.BytesIO(data), "x.json", chunk=1 << 10)
    assert next(items) == {"a": 1}
    with pytest.raises(InvalidJson, match=reason) as caught:
        next(items)
    assert caught.value.element == 1


@pytest.mark.parametrize("doc", ["[-0.0]", "[1.5e-3, 2]", "[12345, -0.25E+10]", "[7e5]", '[{"a": -0.0}]'])
def test_a_number_cut_before_its_fraction_or_exponent_is_read_whole(doc):
    """Found by the property test in CI: with "[-0" in the buffer and "." next, the decoder took -0
    whole and the "." became an error ("expected ',' or ']'"). Every read size gives json.loads'."""
    for chunk in range(1, 9):
        assert list(array_items(io.BytesIO(doc.encode()), "x.json", strict=True, chunk=chunk)) == json.loads(doc)
