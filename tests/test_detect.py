"""--from auto: every format's sniff recognises its own sources and nobody else's."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FIXTURES, write_panoptic

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
