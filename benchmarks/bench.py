#!/usr/bin/env python3
"""Speed and memory of segconvert, as ratios to a codec floor measured in the same run.

    python benchmarks/bench.py                      # 300 images of 640x480, jobs 1 and 2
    python benchmarks/bench.py --images 300 --memory-scale 10

The data come from ../shared/bench/make_dataset.py (generated once into --data).
The floor is the least work any converter must do per image: decode the source PNG and
encode a uint8 PNG of the same size, each with the fastest codec installed (all are
tried; the fastest counts). It runs as a process of its own, so it is measured two
ways: the whole process (Python start-up and imports included, to compare with a whole
CLI run) and its loop alone (to compare with the time spent on items). Machines are
noisy, so every figure is a ratio to a baseline measured in the same run, and each
timing is the best of --repeat runs.

Rows: for each case and jobs value, the whole CLI run (a fresh process, as a user runs
it: start-up, reading the JSON, converting, writing annotations.jsonl) and the ratio
time/floor; jobs 2 also shows its speed-up over jobs 1. The memory row converts the
same dataset replicated --memory-scale times (same PNGs under new names, so only the
item count grows) and compares peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MAKE_DATASET = SHARED / "bench" / "make_dataset.py"

# case name -> (source relative to the dataset, --from, extra CLI options, PNG folder for the floor)
CASES: dict[str, tuple[str, str, list[str], str]] = {
    "coco-panoptic": ("annotations/panoptic.json", "coco-panoptic", [], "annotations/panoptic"),
    "rgb": ("rgb", "rgb", ["--colormap", "{data}/rgb/colormap.json"], "rgb"),
    "coco-instances": ("annotations/instances.json", "coco-instances", [], "annotations/panoptic"),
}


def make_data(data: Path, images: int, size: str) -> Path:
    target = data / f"d{images}-{size}"
    if (target / "annotations" / "panoptic.json").exists():
        return target
    if not MAKE_DATASET.exists():
        sys.exit(f"{MAKE_DATASET} not found: the benchmark needs ../shared beside the repo")
    print(f"generating {images} images of {size} into {target} ...", file=sys.stderr)
    subprocess.run([sys.executable, str(MAKE_DATASET), str(target), "--images", str(images),
                    "--size", size, "--seed", "0"], check=True)
    return target


def replicate(src: Path, scale: int) -> Path:
    """The same dataset with every image listed ``scale`` times (PNGs hard-linked under new names)."""
    target = src.with_name(src.name + f"-x{scale}")
    if (target / "annotations" / "panoptic.json").exists():
        return target
    pan = json.loads((src / "annotations" / "panoptic.json").read_text())
    (target / "annotations" / "panoptic").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for k in range(scale):
        for img, ann in zip(pan["images"], pan["annotations"]):
            stem = f"{k:03d}{Path(img['file_name']).stem}"
            images.append({**img, "id": len(images) + 1, "file_name": stem + ".jpg"})
            anns.append({**ann, "image_id": len(images), "file_name": stem + ".png"})
            link = target / "annotations" / "panoptic" / (stem + ".png")
            if not link.exists():
                os.link(src / "annotations" / "panoptic" / ann["file_name"], link)
    (target / "annotations" / "panoptic.json").write_text(json.dumps({**pan, "images": images,
                                                                       "annotations": anns}))
    return target


DECODERS = {  # name -> (import line, expression decoding bytes `b`)
    "pyspng": ("import pyspng", "pyspng.load(b)"),
    "cv2": ("import cv2, numpy as np", "cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)"),
    "pillow": ("import io, numpy as np; from PIL import Image", "np.asarray(Image.open(io.BytesIO(b)))"),
}
ENCODERS = {  # name -> (import line, expression encoding uint8 array `m`)
    "segconvert.png (isal/zlib level 1)": ("from segconvert.png import encode_gray8", "encode_gray8(m)"),
    "cv2 (level 1, RLE)": ("import cv2", "cv2.imencode('.png', m, [cv2.IMWRITE_PNG_COMPRESSION, 1, "
                           "cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])[1]"),
}

_FLOOR = r"""
import glob, sys, time
import numpy as np
{dec_import}
{enc_import}
t = time.perf_counter()
for path in sorted(glob.glob(sys.argv[1] + "/*.png")):
    with open(path, "rb") as fh:
        b = fh.read()
    img = {dec}
    m = np.ascontiguousarray(img[..., 0] if img.ndim == 3 else img).astype(np.uint8)
    {enc}
print(time.perf_counter() - t)
"""


def floor(png_dir: Path, repeat: int) -> tuple[float, float, str]:
    """The codec floor: (whole process, in-process loop) seconds, with the fastest codecs installed."""
    best: dict[str, tuple[float, str]] = {}
    for role, table in (("decode", DECODERS), ("encode", ENCODERS)):
        for name, (imp, expr) in table.items():
            code = _FLOOR.format(
                dec_import=imp if role == "decode" else DECODERS["cv2"][0],
                dec=expr if role == "decode" else DECODERS["cv2"][1],
                enc_import=imp if role == "encode" else "",
                enc=expr if role == "encode" else "pass",
            )
            inner = []
            for _ in range(repeat):
                proc = subprocess.run([sys.executable, "-c", code, str(png_dir)], capture_output=True, text=True)
                if proc.returncode != 0:
                    break  # codec not installed
                inner.append(float(proc.stdout))
            if inner and (role not in best or min(inner) < best[role][0]):
                best[role] = (min(inner), name)
    dec, enc = best["decode"][1], best["encode"][1]
    code = _FLOOR.format(dec_import=DECODERS[dec][0], dec=DECODERS[dec][1],
                         enc_import=ENCODERS[enc][0], enc=ENCODERS[enc][1])
    walls, inner = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code, str(png_dir)], capture_output=True, text=True,
                              check=True)
        walls.append(time.perf_counter() - t)
        inner.append(float(proc.stdout))
    return min(walls), min(inner), f"decode {dec} + encode {enc}"


_RUNNER = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from segconvert.cli import main
from segconvert import pipeline
inner = {}
_run = pipeline.run
def timed_run(*a, **k):
    t = time.perf_counter()
    try:
        return _run(*a, **k)
    finally:
        inner["s"] = time.perf_counter() - t
pipeline.run = timed_run
import segconvert.api
segconvert.api.run = timed_run
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rss_kb": own, "child_rss_kb": kids, "pipeline_s": inner.get("s", 0)}), file=sys.stderr)
"""


def run_cli(args: list[str], repeat: int) -> tuple[float, float, int]:
    """Best wall time of the whole command (a fresh process each time), best time inside the
    pipeline (items only: no start-up, no reading of the index file), and peak RSS in kB.

    Every run writes into a new, empty OUTPUT (args[2]), as a user's conversion does:
    replacing last run's files costs the file system more (ext4 flushes data renamed
    over an existing file) and is not what is being measured.
    """
    times, inner, rss = [], [], 0
    for k in range(repeat):  # deleting files right before a run slows it (ext4 discard): new folders
        run_args = [*args[:2], f"{args[2]}-{k}", *args[3:]]
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _RUNNER, *run_args], capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "{}"
        if proc.returncode != 0 or not last.startswith("{") or " failed 0 " not in proc.stderr:
            sys.exit(f"conversion failed:\n{proc.stderr}")
        usage = json.loads(last)
        inner.append(usage["pipeline_s"])
        rss = max(rss, usage["rss_kb"], usage["child_rss_kb"])
    return min(times), min(inner), rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--memory-scale", type=int, default=10, help="0 to skip the memory row")
    a = ap.parse_args()

    from segconvert import registry

    data = make_data(a.data, a.images, a.size)
    out_root = Path(tempfile.mkdtemp(prefix="segconvert-bench-"))
    try:
        print(f"{a.images} images of {a.size}, best of {a.repeat}; cores: {os.cpu_count()}")
        for case in filter(None, a.cases.split(",")):
            source, fmt, extra, png_dir = CASES[case]
            try:
                registry.reader_for(fmt)
            except Exception as exc:  # noqa: BLE001 - a converter not there yet is a skipped row
                print(f"{case}: skipped ({exc})")
                continue
            floor_wall, floor_inner, codecs = floor(data / png_dir, a.repeat)
            print(f"\n{case} -> nucleus; codec floor {floor_inner / a.images * 1e3:.2f} ms/image in the loop, "
                  f"{floor_wall:.2f} s as a process ({codecs})")
            base = None
            for jobs in [int(j) for j in a.jobs.split(",")]:
                args = ["convert", str(data / source), str(out_root / f"{case}-{jobs}"), "--from", fmt,
                        "--jobs", str(jobs), *[x.format(data=data) for x in extra]]
                wall, inner, rss = run_cli(args, a.repeat)
                base = base or wall
                print(f"  jobs {jobs}: {a.images / wall:5.0f} images/s; whole run / floor process "
                      f"{wall / floor_wall:4.2f}; items only / floor loop {inner / floor_inner:4.2f}; "
                      f"speed-up {base / wall:4.2f}x; peak RSS {rss / 1024:.0f} MB")
        if a.memory_scale:
            big = replicate(data, a.memory_scale)
            args = lambda d, o: ["convert", str(d / "annotations/panoptic.json"), str(out_root / o),  # noqa: E731
                                 "--from", "coco-panoptic", "--jobs", "1"]
            *_, small_rss = run_cli(args(data, "mem-small"), 1)
            *_, big_rss = run_cli(args(big, "mem-big"), 1)
            print(f"\nmemory (coco-panoptic, jobs 1): {a.images} images {small_rss / 1024:.0f} MB, "
                  f"{a.images * a.memory_scale} images {big_rss / 1024:.0f} MB "
                  f"(+{(big_rss / small_rss - 1) * 100:.1f}%)")
    finally:
        shutil.rmtree(out_root, ignore_errors=True)


if __name__ == "__main__":
    main()
