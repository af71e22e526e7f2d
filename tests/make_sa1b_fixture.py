"""Writes fixtures/sa1b/: two tiny SA-1B JSONs of nested masks, encoded by pycocotools.

Run once (``python tests/make_sa1b_fixture.py``); the files are committed. The expected
mask (``expected/sa_1.txt``, one character per pixel, '.' = background) is what
small-on-top painting of these masks gives: the larger mask first, the smaller on top.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "sa1b"


def ann(aid: int, mask: np.ndarray, iou: float, stability: float) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    ys, xs = np.nonzero(mask)
    return {
        "id": aid,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()},
        "area": int(mask.sum()),
        "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
        "predicted_iou": iou,
        "point_coords": [[float(xs.mean()), float(ys.mean())]],
        "stability_score": stability,
        "crop_box": [0, 0, mask.shape[1], mask.shape[0]],
    }


def main() -> None:
    h, w = 10, 12
    whole = np.zeros((h, w), bool)
    whole[1:9, 1:8] = True
    part = np.zeros((h, w), bool)
    part[2:6, 2:6] = True
    sub = np.zeros((h, w), bool)
    sub[3:5, 3:5] = True
    apart = np.zeros((h, w), bool)
    apart[0:4, 9:12] = True
    apart[6:10, 10:12] = True  # two pieces: one mask
    anns = [ann(101, part, 0.91, 0.95), ann(102, whole, 0.88, 0.97), ann(103, sub, 0.99, 0.93),
            ann(104, apart, 0.75, 0.9)]
    (OUT / "expected").mkdir(parents=True, exist_ok=True)
    doc = {"image": {"image_id": 1, "width": w, "height": h, "file_name": "sa_1.jpg"}, "annotations": anns}
    (OUT / "sa_1.json").write_text(json.dumps(doc))
    # small-on-top: larger areas first (whole 56 px, apart 20, part 16, sub 4), ties in file order
    expected = np.zeros((h, w), int)
    for sid, m in sorted(((k + 1, m) for k, m in enumerate([part, whole, sub, apart])), key=lambda t: -t[1].sum()):
        expected[m] = sid
    rows = ["".join("." if v == 0 else str(v) for v in row) for row in expected]
    (OUT / "expected" / "sa_1.txt").write_text("\n".join(rows) + "\n")
    one = np.zeros((6, 8), bool)
    one[1:5, 2:7] = True
    doc = {"image": {"image_id": 2, "width": 8, "height": 6, "file_name": "sa_2.jpg"},
           "annotations": [ann(201, one, 0.9, 0.96)]}
    (OUT / "sa_2.json").write_text(json.dumps(doc))


if __name__ == "__main__":
    main()
