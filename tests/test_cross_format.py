"""One scene, three source formats, one IR: the readers must agree with each other.

``../shared/bench/make_dataset.py`` paints each scene once and writes it as COCO
panoptic, COCO instances and colour-coded RGB masks. Converted to semantic masks with
stable indices, COCO panoptic and RGB must give the same bytes; the things of COCO
panoptic in instance mode must be exactly the pixels COCO instances paints.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import read_mask, read_payloads

import segconvert


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    make = __import__("conftest").SHARED / "bench" / "make_dataset.py"
    if not make.exists():
        pytest.skip("../shared is not beside the repo")
    out = tmp_path_factory.mktemp("scenes")
    subprocess.run([sys.executable, str(make), str(out), "--images", "4", "--size", "160x120", "--seed", "3"],
                   check=True, capture_output=True)
    return out


def test_panoptic_and_rgb_give_the_same_semantic_masks(scenes, tmp_path):
    pan = segconvert.convert(scenes / "annotations" / "panoptic.json", tmp_path / "pan", from_format="coco-panoptic",
                             mode="semantic", jobs=1, mask_url_prefix="")
    rgb = segconvert.convert(scenes / "rgb", tmp_path / "rgb", from_format="rgb", jobs=1, mask_url_prefix="",
                             colormap=scenes / "rgb" / "colormap.json")
    assert pan.ok and rgb.ok and pan.converted == rgb.converted == 4
    for a, b in zip(read_payloads(tmp_path / "pan"), read_payloads(tmp_path / "rgb")):
        assert a["reference_id"] == b["reference_id"]
        def classes(payload):
            return [(s["label"], s["index"], s.get("metadata", {}).get("area")) for s in payload["annotations"]]

        assert classes(a) == classes(b)
        ref = a["reference_id"]
        pan, rgb = (read_mask(tmp_path / x / "masks" / f"{ref}.png") for x in ("pan", "rgb"))
        assert (pan == rgb).all()


def test_panoptic_things_are_what_coco_instances_paints(scenes, tmp_path):
    segconvert.convert(scenes / "annotations" / "panoptic.json", tmp_path / "pan", from_format="coco-panoptic",
                       mode="instance", jobs=1)
    segconvert.convert(scenes / "annotations" / "instances.json", tmp_path / "ins", from_format="coco-instances",
                       mode="instance", jobs=1)
    doc = json.loads((scenes / "annotations" / "instances.json").read_text())
    assert doc["annotations"]
    for a, b in zip(read_payloads(tmp_path / "pan"), read_payloads(tmp_path / "ins")):
        ref = a["reference_id"]
        pan = read_mask(tmp_path / "pan" / "masks" / f"{ref}.png")
        ins = read_mask(tmp_path / "ins" / "masks" / f"{ref}.png")
        # the panoptic PNG also has void blobs painted over everything: compare elsewhere
        labelled = pan > 0
        pan_labels = {s["index"]: (s["label"], s["metadata"]["iscrowd"]) for s in a["annotations"][1:]}
        ins_labels = {s["index"]: (s["label"], s["metadata"]["iscrowd"]) for s in b["annotations"][1:]}
        for i in np.unique(pan[labelled]):
            overlap = np.unique(ins[pan == i])
            assert len(overlap) == 1, (ref, i, overlap)  # one panoptic thing = one painted instance
            assert pan_labels[int(i)] == ins_labels[int(overlap[0])]
