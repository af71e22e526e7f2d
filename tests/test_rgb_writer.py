"""rgb writer: colour masks + colormap.json that the rgb reader takes back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from roundtrip import CATEGORIES, canonical, read_back, scenes, semantic, write_scenes

from segconvert.converters.rgb import generated_color
from segconvert.errors import SourceError
from segconvert.model.ir import Category, Segmentation, SegmentInfo

PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[*settings.default.suppress_health_check,
                                           HealthCheck.function_scoped_fixture])


@PROPERTY
@given(seg=scenes(), own_colors=st.booleans())
def test_rgb_round_trip(tmp_path_factory, seg, own_colors):
    """IR -> rgb -> IR keeps the semantic view (with the categories' colours or generated ones)."""
    out = tmp_path_factory.mktemp("rgb")
    cats = CATEGORIES if own_colors else [Category(c.id, c.name, c.isthing, c.supercategory) for c in CATEGORIES]
    assert write_scenes([seg], "rgb", out, categories=cats).ok
    (back,) = read_back(out / "masks", "rgb", colormap=out / "colormap.json").values()
    want_segments, want_map = canonical(semantic(seg), ("label",))
    got_segments, got_map = canonical(back, ("label",))
    assert got_segments == want_segments and np.array_equal(got_map, want_map)
    colormap = json.loads((out / "colormap.json").read_text())
    assert colormap["background"] == [0, 0, 0]
    if own_colors:
        assert colormap["person"] == list(CATEGORIES[0].color)


def test_generated_colors_are_distinct_and_voc_for_small_indices():
    colors = [generated_color(k) for k in range(1, 5000)]
    assert len(set(colors)) == len(colors) and (0, 0, 0) not in colors
    assert colors[:3] == [(128, 0, 0), (0, 128, 0), (128, 128, 0)]  # VOC: aeroplane, bicycle, bird


def test_builtin_colormap_and_missing_class(tmp_path):
    lm = np.array([[0, 1, 2]], np.uint8)
    cats = [Category(1, "cat", True), Category(2, "dog", True)]
    seg = Segmentation("a", lm, [SegmentInfo(1, "cat", 1), SegmentInfo(2, "dog", 2)])
    assert write_scenes([seg], "rgb", tmp_path / "voc", categories=cats, colormap="voc").ok
    img = np.asarray(Image.open(tmp_path / "voc" / "masks" / "a.png"))
    assert img.tolist() == [[[0, 0, 0], [64, 0, 0], [64, 0, 128]]]  # VOC's cat and dog
    bad = Segmentation("b", lm, [SegmentInfo(1, "cat", 1), SegmentInfo(2, "unicorn", None)])
    summary = write_scenes([bad], "rgb", tmp_path / "bad", categories=cats, colormap="voc")
    assert summary.failed == 1 and "class 'unicorn' has no colour in the colormap" in summary.failures[0]
    cmap = tmp_path / "c.json"
    cmap.write_text('{"cat": [9, 9, 9], "dog": [9, 9, 9]}')
    with pytest.raises(SourceError, match="same colour"):
        write_scenes([seg], "rgb", tmp_path / "same", categories=cats, colormap=cmap)
    # categories sharing a colour: generated colours for all, still distinct
    same = [Category(1, "cat", True, None, (9, 9, 9)), Category(2, "dog", True, None, (9, 9, 9))]
    assert write_scenes([seg], "rgb", tmp_path / "gen", categories=same).ok
    colormap = json.loads((tmp_path / "gen" / "colormap.json").read_text())
    assert colormap == {"background": [0, 0, 0], "cat": list(generated_color(1)), "dog": list(generated_color(2))}


def test_a_class_named_background_is_void(tmp_path):
    """The rgb reader reads 'background' as void whatever its colour, so the writer paints it black."""
    lm = np.array([[0, 1, 2]], np.uint8)
    cats = [Category(1, "background", False, None, (5, 5, 5)), Category(2, "dog", True, None, (9, 9, 9))]
    seg = Segmentation("a", lm, [SegmentInfo(1, "background", 1, False), SegmentInfo(2, "dog", 2)])
    assert write_scenes([seg], "rgb", tmp_path, categories=cats).ok
    assert json.loads((tmp_path / "colormap.json").read_text()) == {"background": [0, 0, 0], "dog": [9, 9, 9]}
    (back,) = read_back(tmp_path / "masks", "rgb", colormap=tmp_path / "colormap.json").values()
    assert [s.label for s in back.segments] == ["dog"]
