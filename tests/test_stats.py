"""segconvert stats: the figures of a small COCO panoptic set, counted by hand, in every mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FIXTURES, write_panoptic
from test_detect import sources  # noqa: F401  (one source per readable format, from the fixtures)

import segconvert
from segconvert.interfaces.cli import main

PERSON, CAR, SKY, ROAD = 1, 3, 7, 9  # conftest.CATEGORIES: person, car (things), sky, road (stuff)


def hand_set(root):
    """Four images whose figures are counted below by hand.

    a (5x4): person 10 (3 px), person 11 (2 px), car 20 (4 px), sky 30 (6 px), void 5 px
    b (3x2): sky 40 (4 px), road 50 (2 px)
    c (2x2): a pixel id (99) without a segments_info entry: fails, as in convert
    d (20x20): 300 cars of 1 px each (ids 1..300), void 100 px: over Nucleus' 255, counted anyway
    """
    a = np.array([
        [10, 10, 10, 11, 11],
        [20, 20, 20, 20, 0],
        [30, 30, 30, 30, 30],
        [30, 0, 0, 0, 0],
    ])
    a_info = [{"id": 10, "category_id": PERSON}, {"id": 11, "category_id": PERSON},
              {"id": 20, "category_id": CAR}, {"id": 30, "category_id": SKY}]
    b = np.array([[40, 40, 50], [40, 40, 50]])
    b_info = [{"id": 40, "category_id": SKY}, {"id": 50, "category_id": ROAD}]
    c = np.array([[60, 99], [0, 0]])
    c_info = [{"id": 60, "category_id": CAR}]
    d = np.zeros(400, np.int64)
    d[:300] = np.arange(1, 301)
    d = d.reshape(20, 20)
    d_info = [{"id": k, "category_id": CAR} for k in range(1, 301)]
    return write_panoptic(root, [("a", a, a_info), ("b", b, b_info), ("c", c, c_info), ("d", d, d_info)])


TOTAL = 20 + 6 + 400  # pixels of a, b and d (c failed)


def expected(mode: str) -> dict:
    if mode == "panoptic":
        classes = [("person", 5, 2, 1), ("car", 304, 301, 2), ("sky", 10, 2, 2), ("road", 2, 1, 1)]
        background, top, top_ref, over = 105, 300, "d", ["d"]
    elif mode == "instance":  # stuff folds into background
        classes = [("person", 5, 2, 1), ("car", 304, 301, 2)]
        background, top, top_ref, over = 105 + 12, 300, "d", ["d"]
    else:  # semantic: one segment per class per image; instances are the source segments
        classes = [("person", 5, 2, 1), ("car", 304, 301, 2), ("sky", 10, 2, 2), ("road", 2, 1, 1)]
        background, top, top_ref, over = 105, 3, "a", []
    return {
        "images": 3,
        "failed": 1,
        "mode": mode,
        "pixels": TOTAL,
        "background_pixels": background,
        "classes": [{"label": label, "pixels": px, "share": px / TOTAL, "instances": n, "images": imgs}
                    for label, px, n, imgs in classes],
        "max_segments": {"limit": 255, "max": top, "reference_id": top_ref, "headroom": 255 - top,
                         "over_limit": len(over), "over_limit_items": over},
        "sizes": [{"width": 5, "height": 4, "images": 1}, {"width": 3, "height": 2, "images": 1},
                  {"width": 20, "height": 20, "images": 1}],
    }


@pytest.mark.parametrize("mode", ["panoptic", "instance", "semantic"])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_numbers_equal_the_hand_count(tmp_path, mode, jobs):
    src = hand_set(tmp_path)
    result = CliRunner().invoke(main, ["stats", str(src), "--from", "coco-panoptic", "--mode", mode, "--json",
                                       "--jobs", jobs])
    assert result.exit_code == 1, result.output  # one item failed, as it would in convert
    doc = json.loads(result.stdout)
    failures = doc.pop("failures")
    assert doc == expected(mode)
    assert len(failures) == 1 and "[c]" in failures[0]


def test_failure_is_the_one_convert_reports(tmp_path):
    src = hand_set(tmp_path)
    result = CliRunner().invoke(main, ["stats", str(src), "--json", "--jobs", "1"])  # --from auto
    failures = json.loads(result.stdout)["failures"]
    summary = segconvert.convert(src, tmp_path / "out", from_format="coco-panoptic", jobs=1)
    assert [f for f in summary.failures if "[c]" in f] == failures
    assert "99 (1 px)" in failures[0]
    # d fails in convert (over 255) but stats counted it
    assert any("[d]" in f and "300 segments" in f for f in summary.failures)


def test_terminal_table(tmp_path):
    src = hand_set(tmp_path)
    result = CliRunner().invoke(main, ["stats", str(src), "--from", "coco-panoptic", "--jobs", "1"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.startswith("car "))
    assert row.split() == ["car", "304", f"{100 * 304 / TOTAL:.2f}%", "301", "2"]
    assert "at most 300 (d), headroom -45" in result.stdout and "over 255: 1 (d)" in result.stdout
    assert "5x4 (1)" in result.stdout and "[c]" in result.stdout


def figures_from_converted(out) -> dict:
    """Per-label pixels / instances / images and the background, counted from convert's own output."""
    from conftest import read_mask, read_payloads

    classes: dict[str, dict[str, int]] = {}
    background = total = most = 0
    for p in read_payloads(out):
        mask = read_mask(out / "masks" / f"{p['reference_id']}.png")
        total += mask.size
        background += int((mask == 0).sum())
        counts = np.bincount(mask.ravel(), minlength=256)
        labelled = [s for s in p["annotations"] if s["index"] != 0]
        most = max(most, len(labelled))
        for label in dict.fromkeys(s["label"] for s in labelled):
            c = classes.setdefault(label, {"pixels": 0, "instances": 0, "images": 0})
            c["images"] += 1
        for s in labelled:
            c = classes[s["label"]]
            c["pixels"] += int(counts[s["index"]])
            c["instances"] += s["metadata"].get("instances", 1)
    return {"classes": classes, "background": background, "pixels": total, "max": most}


def test_every_reader_agrees_with_its_own_conversion(sources, tmp_path):  # noqa: F811 (the imported fixture)
    """stats of any reader, in its default mode, equals what convert writes for that source."""
    for name, src in sources.items():
        options = {"colormap": "voc"} if name == "rgb" else {}
        out = tmp_path / f"out-{name}"
        summary = segconvert.convert(src, out, from_format=name, jobs=1, **options)
        assert summary.ok, summary.failures
        cli_options = [x for k, v in options.items() for x in (f"--{k}", v)]
        result = CliRunner().invoke(main, ["stats", str(src), "--from", name, "--json", "--jobs", "1", *cli_options])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        want = figures_from_converted(out)
        got = {c["label"]: {"pixels": c["pixels"], "instances": c["instances"], "images": c["images"]}
               for c in doc["classes"]}
        assert got == want["classes"], name
        assert (doc["pixels"], doc["background_pixels"], doc["max_segments"]["max"]) == \
            (want["pixels"], want["background"], want["max"]), name
        assert doc["images"] == summary.converted


def test_a_quoted_glob_is_a_source_as_in_convert(tmp_path):
    """stats (and preview) take SOURCE as convert does: a quoted pattern that matches (rgb)."""
    voc = FIXTURES / "rgb" / "voc"
    pattern = str(voc / "*_color.png")
    result = CliRunner().invoke(main, ["stats", pattern, "--from", "rgb", "--colormap", "voc", "--json", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == len(list(voc.glob("*_color.png")))
    out = tmp_path / "prev"
    result = CliRunner().invoke(main, ["preview", pattern, str(out), "--from", "rgb", "--colormap", "voc", "-j", "1"])
    assert result.exit_code == 0, result.output
    nothing = CliRunner().invoke(main, ["stats", str(voc / "*.nothing"), "--from", "rgb"])
    assert nothing.exit_code == 2 and "matches no file" in nothing.output
