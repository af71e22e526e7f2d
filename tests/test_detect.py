"""--from auto: every format's sniff recognises its own sources and nobody else's."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FIXTURES, write_panoptic
from PIL import Image

import segconvert
from segconvert.interfaces import registry
from segconvert.interfaces.cli import main


@pytest.fixture
def sources(tmp_path):
    """One source per readable format, from the bundled fixtures."""
    rgb = tmp_path / "rgb"
    shutil.copytree(FIXTURES / "rgb" / "voc", rgb)
    (rgb / "colormap.json").write_text(json.dumps({"background": [0, 0, 0], "aeroplane": [128, 0, 0]}))
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 3}],
                                     "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                                                      "segmentation": [[0, 0, 3, 0, 3, 2]]}],
                                     "categories": [{"id": 1, "name": "thing"}]}))
    return {
        "coco-panoptic": FIXTURES / "coco-panoptic" / "panoptic.json",
        "coco-instances": instances,
        "cityscapes": FIXTURES / "cityscapes",
        "labelme": FIXTURES / "labelme" / "dataset",
        "cvat": FIXTURES / "cvat" / "annotations.xml",
        "rgb": rgb,
    }


def test_each_source_is_recognised_as_its_own_format(sources):
    for name, path in sources.items():
        assert registry.detect(path) == name, path


def test_auto_is_the_default_and_says_what_it_chose(tmp_path):
    src = write_panoptic(tmp_path, [("a", np.array([[0, 5]]), [{"id": 5, "category_id": 1}])])
    result = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "o")])
    assert result.exit_code == 0 and f"reading {src} as coco-panoptic" in result.output
    assert segconvert.convert(src, tmp_path / "o2", jobs=1).ok


def test_unrecognised_source_asks_for_from(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "notes.txt"), str(tmp_path / "o")])
    assert result.exit_code == 2 and "cannot tell its format; name it with --from" in result.output


def test_plugins_are_asked_only_when_no_builtin_recognises_the_source(monkeypatch, tmp_path):
    from segconvert.interfaces.format import Format, Reader

    asked = []

    def sniff(path):
        asked.append(path)
        return True  # greedy: claims everything it is shown

    plugin = Format(name="mine", description="a test plugin", reader=Reader, sniff=sniff)
    real_get = registry.get
    monkeypatch.setattr(registry, "_plugin_targets", lambda: {"mine": "tests:plugin"})
    monkeypatch.setattr(registry, "get", lambda name: plugin if name == "mine" else real_get(name))
    assert registry.detect(FIXTURES / "coco-panoptic" / "panoptic.json") == "coco-panoptic"
    assert asked == []  # a built-in recognised it: plugins (and their entry-point scan) not consulted
    unknown = tmp_path / "data.mine"
    unknown.write_text("?")
    assert registry.detect(unknown) == "mine"


def test_auto_recognises_the_newer_layouts(tmp_path):
    """VOC roots, Nucleus sets (written here by our own writers), SA-1B folders, Label Studio exports."""
    src = FIXTURES / "coco-panoptic" / "panoptic.json"
    for fmt in ("voc", "nucleus"):
        assert segconvert.convert(src, tmp_path / fmt, from_format="coco-panoptic", to_format=fmt, jobs=1).ok
        assert registry.detect(tmp_path / fmt) == fmt
    assert registry.detect(tmp_path / "nucleus" / "annotations.jsonl") == "nucleus"
    sa1b = tmp_path / "sa1b"
    sa1b.mkdir()
    for f in (FIXTURES / "sa1b").glob("sa_*.json"):
        shutil.copy(f, sa1b / f.name)
    assert registry.detect(sa1b) == "sa1b"
    assert registry.detect(FIXTURES / "label-studio" / "export.json") == "label-studio"


# --------------------------------------------------------------------------- a quoted glob SOURCE


def _masks(folder, names=("a", "b")):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(FIXTURES / "rgb" / "voc" / "2007_000001.png", folder / f"{n}.png")
    return folder


def test_auto_detects_a_glob_of_masks_by_the_files_it_matches(tmp_path):
    _masks(tmp_path / "masks")
    (tmp_path / "masks" / "notes.txt").write_text("not matched by *.png")
    pattern = tmp_path / "masks" / "*.png"
    assert registry.detect(pattern) == "rgb"
    result = CliRunner().invoke(main, ["convert", str(pattern), str(tmp_path / "out"), "--encoding", "palette",
                                       "--colormap", "voc", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert f"reading {pattern} as rgb" in result.output
    refs = [json.loads(line)["reference_id"] for line in (tmp_path / "out" / "annotations.jsonl").open()]
    assert refs == ["a", "b"]


def test_a_glob_uses_the_colour_table_of_the_folder_it_searches(tmp_path):
    """'data/**/*.png' with data/colormap.json: auto-detected as rgb, and the table is used (no --colormap)."""
    root = tmp_path / "data"
    _masks(root / "sub", ("c",))
    colours = np.asarray(Image.open(root / "sub" / "c.png").convert("RGB"))
    Image.fromarray(colours).save(root / "sub" / "c.png")  # an RGB colour mask
    table = {f"class{i}": list(map(int, c)) for i, c in enumerate(np.unique(colours.reshape(-1, 3), axis=0))}
    (root / "colormap.json").write_text(json.dumps(table))
    pattern = str(root / "**" / "*.png")
    assert registry.detect(pattern) == "rgb"
    summary = segconvert.convert(pattern, tmp_path / "out", jobs=1)  # from_format="auto" by default
    assert summary.ok and summary.converted == 1


def test_auto_detects_a_glob_of_labelme_jsons(tmp_path):
    for f in (FIXTURES / "labelme" / "dataset").glob("*.json"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "other.txt").write_text("?")
    pattern = tmp_path / "[ms]*.json"  # shapes.json, mask.json: not grouped.json
    assert registry.detect(pattern) == "labelme"
    summary = segconvert.convert(pattern, tmp_path / "out", jobs=1)
    assert summary.ok and summary.converted == 2
    refs = [json.loads(line)["reference_id"] for line in (tmp_path / "out" / "annotations.jsonl").open()]
    assert sorted(refs) == ["mask", "shapes"]
    whole = segconvert.convert(FIXTURES / "labelme" / "dataset", tmp_path / "whole", jobs=1)
    assert whole.ok
    for ref in ("mask", "shapes"):  # the same masks as the folder gives
        a = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{ref}.png"))
        b = np.asarray(Image.open(tmp_path / "whole" / "masks" / f"{ref}.png"))
        np.testing.assert_array_equal(a, b)


def test_a_glob_matching_nothing_or_nothing_known_is_a_clear_error(tmp_path):
    nothing = str(tmp_path / "masks" / "*.png")
    with pytest.raises(segconvert.SourceError, match="the pattern matches no file"):
        registry.detect(nothing)
    with pytest.raises(segconvert.SourceError, match="the pattern matches no file"):
        segconvert.convert(nothing, tmp_path / "out", jobs=1)
    result = CliRunner().invoke(main, ["convert", nothing, str(tmp_path / "out")])
    assert result.exit_code == 2 and "matches no file or folder" in result.output
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    _masks(tmp_path / "notes", ("m",))
    mixed = tmp_path / "notes" / "*"
    result = CliRunner().invoke(main, ["convert", str(mixed), str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "cannot tell the format of the 2 files it matches" in result.output and "--from" in result.output
