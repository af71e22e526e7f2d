"""cocojson.table must equal json.load(...)[key] whatever the layout; the shortcuts only save passes."""

from __future__ import annotations

import json
import os

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
        assert list(cocojson.table_items(path, key)) == doc[key]
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


def _reference_table(images: list) -> dict:
    """What the panoptic reader kept before ImageTable: a dict of (stem, width, height)."""
    table: dict = {}
    for img in images:
        if not isinstance(img, dict) or not isinstance(img.get("id"), int | str):
            continue
        name = img.get("file_name")
        ref = os.path.splitext(os.path.basename(name))[0] if isinstance(name, str) else None
        table[img["id"]] = "twice" if img["id"] in table else (ref, img.get("width"), img.get("height"))
    return table


image_entry = st.one_of(
    st.fixed_dictionaries(
        {"id": st.one_of(st.integers(-3, 40), st.sampled_from(["a", "b", "7"]))},
        optional={"file_name": st.sampled_from(["x.jpg", "d/y.png", "z", "é/東.jpg", ".hidden", "a.b.c"]),
                  "width": st.one_of(st.integers(-2, 5000), st.none(), st.just("640"), st.floats(1, 9)),
                  "height": st.one_of(st.integers(1, 5000), st.none())}),
    st.just([1, 2]), st.just({"id": [1]}), st.just({"id": 2.0}),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(image_entry, max_size=30), st.lists(st.one_of(st.integers(-5, 45), st.text(max_size=2)), max_size=10))
def test_image_table_answers_as_the_dict_it_replaced(images, probes):
    table = cocojson.ImageTable(images)
    reference = _reference_table(images)
    assert len(table) == len(reference)
    for iid in [*reference, *probes]:
        want = reference.get(iid)
        got = table.get(iid)
        if want == "twice":
            assert got is cocojson.LISTED_TWICE
        elif want is None:
            assert got is None
        else:
            ref, width, height = want
            assert got[0] == ref
            for kept, raw in zip(got[1:], (width, height)):
                assert kept == (raw if isinstance(raw, int) else -1)


def test_image_table_is_small_per_image():
    """Issue 12: per-image state kept for the whole run under 100 bytes (the dict it replaced: ~230)."""
    import tracemalloc

    images = [{"id": 10**6 + k, "file_name": f"{k:012d}.jpg", "width": 640, "height": 480} for k in range(20_000)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = cocojson.ImageTable(iter(images))
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert table.get(10**6 + 123) == ("000000000123", 640, 480)
    assert held / len(images) < 100, f"{held / len(images):.0f} bytes per image"
