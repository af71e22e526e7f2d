"""cocojson.table must equal json.load(...)[key] whatever the layout; the shortcuts only save passes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segconvert.codecs import cocojson
from segconvert.errors import SourceError

tricky_text = st.sampled_from(['"categories": [1]}', "categories", '{"images": []}', "plain", "é ü 東京", "}"])
leaf = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32), tricky_text)
entry = st.dictionaries(st.sampled_from(["id", "name", "file_name", "categories", "images"]), leaf, max_size=4)
docs = st.permutations(["info", "images", "annotations", "categories"]).flatmap(
    lambda order: st.fixed_dictionaries({
        k: (st.lists(entry, max_size=5) if k != "info" else st.dictionaries(st.just("categories"), tricky_text))
        for k in order
    })
)


@settings(max_examples=150, deadline=None)
@given(doc=docs, indent=st.sampled_from([None, 1]))
def test_table_equals_a_full_parse_in_any_layout(tmp_path_factory, doc, indent):
    path = tmp_path_factory.mktemp("j") / "a.json"
    path.write_text(json.dumps(doc, indent=indent, ensure_ascii=False), encoding="utf-8")
    for key in ("images", "categories"):
        assert cocojson.table(path, key) == json.loads(path.read_text(encoding="utf-8"))[key]
    assert list(cocojson.stream(path, "annotations.item")) == doc["annotations"]


def test_last_member_refuses_what_it_cannot_prove(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"categories": [1], "images": []}')  # not last
    assert cocojson.last_member(path, "categories") is None
    path.write_text('{"x": {"categories": [1]}}')  # not top level
    assert cocojson.last_member(path, "categories") is None
    path.write_text('{"x": "a \\"categories\\": [2]}"}')  # inside a string
    assert cocojson.last_member(path, "categories") is None
    path.write_text('{"images": [], "categories": [{"id": 1}]}\n')
    assert cocojson.last_member(path, "categories") == [{"id": 1}]


def test_broken_json_is_a_source_error(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"images": [{"id": 1}, ')
    with pytest.raises(SourceError, match="not valid JSON .* while reading 'images'"):
        cocojson.table(path, "images")
