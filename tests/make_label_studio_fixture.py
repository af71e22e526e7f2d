"""Writes fixtures/label-studio/: a tiny Label Studio JSON export and the masks its tools define.

Run once (``python tests/make_label_studio_fixture.py``); the files are committed. The
expected masks (``expected/<reference_id>.txt``, one character per pixel, '.' =
background, digits = region order) come from the references only: pycocotools for
polygons (``frPyObjects`` of the points in pixels) and boxes (its own box form
``[x, y, w, h]``, or the rotated corners as Label Studio defines them), and
``label_studio_converter.brush`` for the brush (``mask2rle`` to encode, ``decode_rle``
+ alpha channel to decode).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from label_studio_converter import brush
from pycocotools import mask as mask_utils

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "label-studio"
W, H = 20, 10


def region(rid: str, kind: str, value: dict, w: int = W, h: int = H) -> dict:
    return {"original_width": w, "original_height": h, "image_rotation": 0, "value": value, "id": rid,
            "from_name": "label" if kind != "brushlabels" else "tag", "to_name": "image", "type": kind,
            "origin": "manual"}


def main() -> None:
    road = np.zeros((H, W), np.uint8)
    road[6:10, :] = 255
    road[5, 3:9] = 255
    polygon = [[10.0, 10.0], [45.5, 12.0], [40.0, 70.0], [12.5, 55.0]]
    box = {"x": 60.0, "y": 20.0, "width": 25.0, "height": 50.0, "rotation": 0}
    street = [
        region("r1", "brushlabels", {"format": "rle", "rle": brush.mask2rle(road), "brushlabels": ["road"]}),
        region("r2", "polygonlabels", {"points": polygon, "closed": True, "polygonlabels": ["car"]}),
        region("r3", "rectanglelabels", {**box, "rectanglelabels": ["person"]}),
        {"value": {"choices": ["walking"]}, "id": "r3", "from_name": "action", "to_name": "image",
         "type": "choices", "origin": "manual"},
    ]
    rotated = {"x": 30.0, "y": 10.0, "width": 40.0, "height": 30.0, "rotation": 30.0}
    park_old = [region("p1", "polygonlabels", {"points": [[0, 0], [50, 0], [50, 50]], "polygonlabels": ["car"]})]
    park_new = [region("p1", "rectanglelabels", {**rotated, "rectanglelabels": ["person"]})]
    tasks = [
        {"id": 1, "data": {"image": "/data/upload/1/3f2a9c1e-street.jpg"}, "file_upload": "3f2a9c1e-street.jpg",
         "annotations": [
             {"id": 10, "result": [], "was_cancelled": True, "created_at": "2024-05-02T10:00:00.000000Z"},
             {"id": 11, "result": street, "was_cancelled": False, "created_at": "2024-05-01T10:00:00.000000Z"},
         ], "predictions": [], "meta": {}, "project": 1},
        {"id": 2, "data": {"image": "/data/local-files/?d=images%2Fpark%20one.png"},
         "annotations": [
             {"id": 20, "result": park_old, "was_cancelled": False, "created_at": "2024-05-01T09:00:00.000000Z"},
             {"id": 21, "result": park_new, "was_cancelled": False, "created_at": "2024-05-03T09:00:00.000000Z"},
         ], "predictions": [], "meta": {}, "project": 1},
    ]
    (OUT / "export.json").write_text(json.dumps(tasks, indent=1))

    # street: brush, then polygon, then box on top (result order)
    expected = np.zeros((H, W), int)
    alpha = np.reshape(brush.decode_rle(brush.mask2rle(road)), [H, W, 4])[:, :, 3]
    expected[alpha > 0] = 1
    xy = [v for x, y in polygon for v in (x / 100 * W, y / 100 * H)]
    expected[mask_utils.decode(mask_utils.frPyObjects([xy], H, W)[0]) > 0] = 2
    bbox = [box["x"] / 100 * W, box["y"] / 100 * H, box["width"] / 100 * W, box["height"] / 100 * H]
    expected[mask_utils.decode(mask_utils.frPyObjects(np.array([bbox]), H, W)[0]) > 0] = 3  # its box form
    write_grid(OUT / "expected" / "street.txt", expected)
    # park: the newer annotation, a rotated box (corners about the top-left, clockwise)
    x, y = rotated["x"] / 100 * W, rotated["y"] / 100 * H
    w, h = rotated["width"] / 100 * W, rotated["height"] / 100 * H
    c, s = math.cos(math.radians(rotated["rotation"])), math.sin(math.radians(rotated["rotation"]))
    corners = [x, y, x + w * c, y + w * s, x + w * c - h * s, y + w * s + h * c, x - h * s, y + h * c]
    expected = (mask_utils.decode(mask_utils.frPyObjects([corners], H, W)[0]) > 0).astype(int)
    write_grid(OUT / "expected" / "park one.txt", expected)


def write_grid(path: Path, grid: np.ndarray) -> None:
    path.write_text("\n".join("".join("." if v == 0 else str(v) for v in row) for row in grid) + "\n")


if __name__ == "__main__":
    main()
