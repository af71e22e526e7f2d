"""Shared test helpers: build COCO panoptic datasets on the fly, decode outputs independently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

# Property tests must not fail because the machine is busy (CI shares two cores): no
# deadlines, no "too slow" health checks. Loaded before the test modules, so their own
# @settings inherit it.
settings.register_profile(
    "segconvert", deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.load_profile("segconvert")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = ROOT / "fixtures"


@pytest.fixture
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared is not beside the repo")
    return SHARED


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """panopticapi's id2rgb, written out independently of segconvert."""
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """panopticapi's rgb2id."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person", "isthing": 1, "color": [220, 20, 60]},
    {"id": 3, "name": "car", "supercategory": "vehicle", "isthing": 1, "color": [0, 0, 142]},
    {"id": 7, "name": "sky", "supercategory": "sky", "isthing": 0, "color": [70, 130, 180]},
    {"id": 9, "name": "road", "supercategory": "ground", "isthing": 0, "color": [128, 64, 128]},
]


def write_panoptic(
    root: Path,
    images: list[tuple[str, np.ndarray, list[dict[str, Any]]]],
    categories: list[dict[str, Any]] = CATEGORIES,
    *,
    name: str = "panoptic",
) -> Path:
    """Write ``root/<name>.json`` + ``root/<name>/<stem>.png``; images are (stem, ids, segments_info)."""
    png_dir = root / name
    png_dir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"images": [], "annotations": [], "categories": categories}
    for k, (stem, ids, infos) in enumerate(images, start=1):
        Image.fromarray(id2rgb(ids)).save(png_dir / f"{stem}.png")
        h, w = ids.shape
        doc["images"].append({"id": k, "file_name": f"{stem}.jpg", "width": w, "height": h})
        doc["annotations"].append({"image_id": k, "file_name": f"{stem}.png", "segments_info": infos})
    path = root / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def read_mask(path: Path) -> np.ndarray:
    img = Image.open(path)
    assert img.mode == "L", f"{path} is mode {img.mode}, Nucleus masks are L"
    return np.asarray(img)


def read_payloads(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]


def snapshot(out: Path) -> dict[str, bytes]:
    """Every output file (not the run's bookkeeping) by relative path, for byte comparisons."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and ".segconvert" not in p.parts
    }
