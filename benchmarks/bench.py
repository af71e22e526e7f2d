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
noisy, so every figure is a ratio to a baseline measured in the same round: each
round runs the floor, then each --jobs value followed by the floor again, and every
run is compared with the mean of the two floor runs around it (a drift in the
machine's speed cancels); the median ratio over --repeat rounds is reported.

Cases: the three readers into Nucleus, and Nucleus -> COCO panoptic, Nucleus -> index and COCO
panoptic -> index (the Nucleus source is converted once from the COCO panoptic set). A writer of
RGB PNGs (COCO panoptic) has a floor that encodes the same images as RGB PNGs.

Rows: for each case and jobs value, the whole CLI run (a fresh process, as a user runs
it: start-up, reading the JSON, converting, writing annotations.jsonl) and the ratio
time/floor; jobs 2 also shows its speed-up over jobs 1. The floor writes no file; creating one
file per image costs 0.02 ms on some folders of these VMs and 0.15-0.35 ms on others, so each
round also times file creation in the output folder (--out; default: beside --data) and a second
ratio adds one creation per image to the floor. The memory row converts the
same dataset replicated --memory-scale times (same PNGs under new names, so only the
item count grows) and compares peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MAKE_DATASET = SHARED / "bench" / "make_dataset.py"

# case name -> (source relative to the dataset, --from, --to, extra CLI options, PNG folder for the
# floor (folders joined by "+": the floor decodes the PNG of each image in every one of them, as a
# reader of class + object PNGs must, and encodes one), and the floor's encode: None = a uint8 PNG
# of the decoded image's first channel, or a folder whose RGB PNGs (same order) the floor encodes,
# for writers of RGB PNGs)
CASES: dict[str, tuple[str, str, str, list[str], str, str | None]] = {
    "coco-panoptic": ("annotations/panoptic.json", "coco-panoptic", "nucleus", [], "annotations/panoptic", None),
    "rgb": ("rgb", "rgb", "nucleus", ["--colormap", "{data}/rgb/colormap.json"], "rgb", None),
    "coco-instances": ("annotations/instances.json", "coco-instances", "nucleus", [], "annotations/panoptic", None),
    # Nucleus sources are made once from the COCO panoptic set (make_nucleus)
    "nucleus-to-coco-panoptic": ("nucleus", "nucleus", "coco-panoptic", [], "nucleus/masks", "annotations/panoptic"),
    "nucleus-to-index": ("nucleus", "nucleus", "index", [], "nucleus/masks", None),
    "coco-panoptic-to-index": ("annotations/panoptic.json", "coco-panoptic", "index", [], "annotations/panoptic",
                               None),
    # made from the same scenes by segconvert's own writers (see derive_voc_yolo). VOC panoptic reads
    # two PNGs per image (class + object), so its floor decodes both; semantic mode reads the class
    # PNG alone. YOLO's labels are text: no source PNG to decode, so its floor decodes the same
    # scene's COCO panoptic PNG (RGB) in its place (a stand-in: rasterising polygons is not a codec)
    "voc": ("voc", "voc", "nucleus", [], "voc/SegmentationClass+voc/SegmentationObject", None),
    "voc-semantic": ("voc", "voc", "nucleus", ["--mode", "semantic"], "voc/SegmentationClass", None),
    "yolo": ("yolo", "yolo", "nucleus", [], "annotations/panoptic", None),
}


def compile_bytecode() -> None:
    """Write segconvert's .pyc files, as a regular ``pip install`` does.

    An editable install (this checkout) leaves them to the first import, and where
    PYTHONDONTWRITEBYTECODE is set (as on our CI machines) every run would compile the
    package again: ~20 ms per process that no installed copy pays.
    """
    import compileall

    for folder in ("segconvert", "converters"):
        compileall.compile_dir(ROOT / folder, quiet=1)


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


def derive_voc_yolo(data: Path) -> None:
    """The VOC root and the YOLO set of the same scenes, written once by segconvert itself:
    COCO panoptic -> voc (things are objects), COCO instances -> yolo (polygons from the
    masks' contours). YOLO takes sizes from image headers, so every image gets a photo:
    hard links to one black JPEG per image size."""
    from PIL import Image

    if not (data / "voc" / "labelmap.txt").exists():
        subprocess.run([sys.executable, "-m", "segconvert", "convert", str(data / "annotations/panoptic.json"),
                        str(data / "voc"), "--from", "coco-panoptic", "--to", "voc", "--mode", "panoptic"],
                       check=True, capture_output=True)
    if not (data / "yolo" / "data.yaml").exists():
        photos = data / "photos"
        photos.mkdir(exist_ok=True)
        pan = json.loads((data / "annotations" / "panoptic.json").read_text())
        by_size: dict[tuple[int, int], Path] = {}
        for img in pan["images"]:
            path = photos / (Path(img["file_name"]).stem + ".jpg")
            size = (img["width"], img["height"])
            if path.exists():
                by_size.setdefault(size, path)
            elif size not in by_size:
                Image.new("RGB", size).save(path)
                by_size[size] = path
            else:
                os.link(by_size[size], path)
        subprocess.run([sys.executable, "-m", "segconvert", "convert", str(data / "annotations/instances.json"),
                        str(data / "yolo"), "--from", "coco-instances", "--to", "yolo", "--mode", "instance",
                        "--link-images", str(photos)], check=True, capture_output=True)


def make_nucleus(data: Path) -> None:
    """The Nucleus version of the dataset (``data/nucleus``), converted once from COCO panoptic."""
    if (data / "nucleus" / "annotations.jsonl").exists():
        return
    print(f"converting {data} to nucleus (once) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "segconvert", "convert", str(data / "annotations" / "panoptic.json"),
                    str(data / "nucleus"), "--from", "coco-panoptic", "--jobs", "2"], check=True, env=FLOOR_ENV)


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


def replicate_voc(src: Path, scale: int) -> Path:
    """The VOC root of ``src`` with every image listed ``scale`` times (PNGs hard-linked under new names)."""
    voc, target = src / "voc", src.with_name(src.name + f"-x{scale}") / "voc"
    sets = target / "ImageSets" / "Segmentation"
    if (sets / "default.txt").exists():
        return target
    stems = (voc / "ImageSets" / "Segmentation" / "default.txt").read_text().split()
    for sub in ("SegmentationClass", "SegmentationObject"):
        (target / sub).mkdir(parents=True, exist_ok=True)
        for k in range(scale):
            for stem in stems:
                link = target / sub / f"{k:03d}{stem}.png"
                if not link.exists():
                    os.link(voc / sub / f"{stem}.png", link)
    shutil.copy(voc / "labelmap.txt", target / "labelmap.txt")
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "default.txt").write_text("".join(f"{k:03d}{stem}\n" for k in range(scale) for stem in stems))
    return target


def replicate_yolo(src: Path, scale: int) -> Path:
    """The YOLO set of ``src`` with every image listed ``scale`` times (photos and label files
    hard-linked under new names), its data.yaml pointing at itself."""
    yolo, target = src / "yolo", src.with_name(src.name + f"-x{scale}") / "yolo"
    if (target / "data.yaml").exists():
        return target
    for sub, suffix in (("images", ".jpg"), ("labels", ".txt")):
        (target / sub / "train").mkdir(parents=True, exist_ok=True)
        for path in sorted((yolo / sub / "train").glob(f"*{suffix}")):
            for k in range(scale):
                link = target / sub / "train" / f"{k:03d}{path.name}"
                if not link.exists():
                    os.link(path.resolve(), link)
    names = (yolo / "data.yaml").read_text().split("names:", 1)[1]
    (target / "data.yaml").write_text(f"path: {json.dumps(str(target))}\ntrain: images/train\nnames:{names}")
    return target


DECODERS = {  # name -> (import line, expression decoding bytes `b`)
    "pyspng": ("import pyspng", "pyspng.load(b)"),
    "cv2": ("import cv2, numpy as np", "cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)"),
    "pillow": ("import io, numpy as np; from PIL import Image", "np.asarray(Image.open(io.BytesIO(b)))"),
    # palette/grayscale indices as the voc reader decodes them (fails on RGB PNGs: not a candidate there)
    "segconvert.codecs.png.decode_index8 (isal + C unfilter)": ("from segconvert.codecs.png import decode_index8",
                                                         "decode_index8(b)[0]"),
}
ENCODERS = {  # name -> (import line, expression encoding uint8 array `m`)
    "segconvert.codecs.png (isal/zlib level 1)": ("from segconvert.codecs.png import encode_gray8", "encode_gray8(m)"),
    "cv2 (level 1, RLE)": ("import cv2", "cv2.imencode('.png', m, [cv2.IMWRITE_PNG_COMPRESSION, 1, "
                           "cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])[1]"),
}

ENCODERS_RGB = {  # the same, for writers of 8-bit RGB PNGs (COCO panoptic, colour masks)
    "segconvert.codecs.png (isal/zlib level 1)": ("from segconvert.codecs.png import encode_rgb8", "encode_rgb8(m)"),
    "cv2 (level 1, RLE)": ENCODERS["cv2 (level 1, RLE)"],
}

# The floor of a writer of RGB PNGs: decode each source PNG and encode the RGB PNG of the same
# image (read from a second folder, untimed; its time is printed so that the caller can take it
# off the process' time too).
_FLOOR_RGB = r"""
import glob, sys, time
import cv2
import numpy as np
{dec_import}
{enc_import}
timed = untimed = untimed_cpu = 0.0
sources, targets = sorted(glob.glob(sys.argv[1] + "/*.png")), sorted(glob.glob(sys.argv[2] + "/*.png"))
assert len(sources) == len(targets)
for path, target in zip(sources, targets):
    t0 = time.perf_counter()
    with open(path, "rb") as fh:
        b = fh.read()
    img = {dec}
    t1, c1 = time.perf_counter(), time.process_time()
    m = np.ascontiguousarray(cv2.imread(target, cv2.IMREAD_COLOR)[..., ::-1])
    t2, c2 = time.perf_counter(), time.process_time()
    {enc}
    timed += (t1 - t0) + (time.perf_counter() - t2)
    untimed += t2 - t1
    untimed_cpu += c2 - c1
print(timed, untimed, untimed_cpu)
"""

_FLOOR = r"""
import glob, os, sys, time
import numpy as np
{dec_import}
{enc_import}
first, *others = sys.argv[1].split("+")  # more folders: the same image's PNG in each is decoded too
t = time.perf_counter()
for path in sorted(glob.glob(first + "/*.png")):
    for p in [path] + [os.path.join(d, os.path.basename(path)) for d in others]:
        with open(p, "rb") as fh:
            b = fh.read()
        img = {dec}
    m = np.ascontiguousarray(img[..., 0] if img.ndim == 3 else img).astype(np.uint8)
    {enc}
print(time.perf_counter() - t)
"""


# The floor process runs with numpy's BLAS pool off, as the segconvert command does (see
# segconvert.interfaces.cli): otherwise its OpenBLAS threads' start-up spin would burden the floor.
FLOOR_ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


def _floor_code(dec: str, enc: str, rgb_target: bool) -> str:
    encoders = ENCODERS_RGB if rgb_target else ENCODERS
    return (_FLOOR_RGB if rgb_target else _FLOOR).format(
        dec_import=DECODERS[dec][0], dec=DECODERS[dec][1], enc_import=encoders[enc][0], enc=encoders[enc][1])


def pick_codecs(png_dir: Path, repeat: int, target: Path | None = None) -> tuple[str, str]:
    """The fastest installed decoder and encoder, each timed alone (best of ``repeat``); with
    ``target``, the encoder is the fastest RGB encoder on that folder's images."""
    dec, enc = _pick_codecs(png_dir, repeat)
    if target is None:
        return dec, enc
    best: tuple[float, str] | None = None
    for name in ENCODERS_RGB:
        inner = []
        for _ in range(repeat):
            proc = subprocess.run([sys.executable, "-c", _floor_code(dec, name, True), str(png_dir), str(target)],
                                  capture_output=True, text=True, env=FLOOR_ENV)
            if proc.returncode != 0:
                break
            inner.append(float(proc.stdout.split()[0]))
        if inner and (best is None or min(inner) < best[0]):
            best = (min(inner), name)
    assert best is not None, "no RGB PNG encoder works"
    return dec, best[1]


def _pick_codecs(png_dir: Path, repeat: int) -> tuple[str, str]:
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
                proc = subprocess.run([sys.executable, "-c", code, str(png_dir)], capture_output=True, text=True,
                                      env=FLOOR_ENV)
                if proc.returncode != 0:
                    break  # codec not installed
                inner.append(float(proc.stdout))
            if inner and (role not in best or min(inner) < best[role][0]):
                best[role] = (min(inner), name)
    return best["decode"][1], best["encode"][1]


def file_creation_ms(folder: Path, count: int = 300) -> float:
    """Mean wall time of creating (O_CREAT | O_EXCL), writing 20 kB to and renaming one file in
    ``folder``: what every writer pays per output file on top of the codec floor."""
    probe = folder / "creation-probe"
    probe.mkdir()
    data = b"\0" * 20_000
    t = time.perf_counter()
    for i in range(count):
        tmp = probe / f".{i}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.write(fd, data)
        os.close(fd)
        os.replace(tmp, probe / f"{i}.png")
    elapsed = (time.perf_counter() - t) / count * 1e3
    shutil.rmtree(probe)
    return elapsed


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_floor(png_dir: Path, dec: str, enc: str, target: Path | None = None) -> tuple[float, float, float]:
    """One run of the codec floor: (whole process, its loop alone, CPU time of the process) in seconds
    (for an RGB ``target``, the untimed reading of the target images is taken off all three)."""
    cpu = _children_cpu()
    t = time.perf_counter()
    args = [str(png_dir)] + ([str(target)] if target is not None else [])
    proc = subprocess.run([sys.executable, "-c", _floor_code(dec, enc, target is not None), *args],
                          capture_output=True, text=True, check=True, env=FLOOR_ENV)
    wall, cpu = time.perf_counter() - t, _children_cpu() - cpu
    timed, *untimed = (float(x) for x in proc.stdout.split())
    off, off_cpu = untimed if untimed else (0.0, 0.0)
    return wall - off, timed, cpu - off_cpu


_RUNNER = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from segconvert.__main__ import load_command
main = load_command()  # as the segconvert command starts (garbage collector paused meanwhile)
from segconvert.execution import pipeline
inner = {}
_run = pipeline.run
def timed_run(*a, **k):
    t = time.perf_counter()
    try:
        return _run(*a, **k)
    finally:
        inner["s"] = time.perf_counter() - t
pipeline.run = timed_run
import segconvert.interfaces.api
segconvert.interfaces.api.run = timed_run
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rss_kb": own, "child_rss_kb": kids, "pipeline_s": inner.get("s", 0)}), file=sys.stderr)
"""


def run_cli(args: list[str]) -> tuple[float, float, int, float]:
    """One run of the whole command in a fresh process: wall time, time inside the pipeline
    (items only: no start-up, no reading of the index file), and peak RSS in kB.

    Every run writes into a new, empty OUTPUT, as a user's conversion does: replacing or
    deleting last run's files right before a run costs the file system more (ext4 with
    discard) and is not what is being measured.
    """
    cpu = _children_cpu()
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _RUNNER, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t
    cpu = _children_cpu() - cpu
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "{}"
    if proc.returncode != 0 or not last.startswith("{") or " failed 0 " not in proc.stderr:
        sys.exit(f"conversion failed:\n{proc.stderr}")
    usage = json.loads(last)
    return wall, usage["pipeline_s"], max(usage["rss_kb"], usage["child_rss_kb"]), cpu


# ------------------------------------------------------------ scale-out rows (issue 12)


def _timed(args: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one whole CLI run (a fresh process, as a user runs it)."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "segconvert", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        sys.exit(f"conversion failed: {' '.join(args)}\n{proc.stderr}")
    return time.perf_counter() - t


def row_dask(data: Path, out_root: Path, images: int) -> None:
    """Local worker processes vs a Dask LocalCluster of as many workers, same images, one run each."""
    src = str(data / "annotations/panoptic.json")
    base = ["--from", "coco-panoptic", "--jobs", "2"]
    local = _timed(["convert", src, str(out_root / "dask-local"), *base])
    dask = _timed(["convert", src, str(out_root / "dask-dask"), *base, "--executor", "dask"])
    print(f"\ndask (coco-panoptic, 2 workers): local processes {local:.1f} s ({images / local:.0f} images/s), "
          f"Dask LocalCluster {dask:.1f} s ({images / dask:.0f} images/s; cluster start-up included)")


def row_s3(data: Path, out_root: Path, images: int) -> None:
    """s3 -> s3 through a moto server on loopback vs local disk -> local disk."""
    import socket

    import fsspec

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "FSSPEC_S3_ENDPOINT_URL": endpoint,
           "SEGCONVERT_CACHE": str(out_root / "cache")}
    server = subprocess.Popen([sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        os.environ.update(env)
        fsspec.config.set_conf_env(fsspec.config.conf)
        s3 = fsspec.filesystem("s3")
        s3.mkdir("bench")
        s3.put(str(data / "annotations" / "panoptic"), "bench/in/panoptic", recursive=True)
        s3.put_file(str(data / "annotations" / "panoptic.json"), "bench/in/panoptic.json")
        base = ["--from", "coco-panoptic", "--jobs", "2"]
        local = _timed(["convert", str(data / "annotations/panoptic.json"), str(out_root / "s3-local"), *base])
        remote = _timed(["convert", "s3://bench/in/panoptic.json", "s3://bench/out", *base], env)
    finally:
        server.terminate()
        server.wait()
    print(f"\ns3 (moto on loopback) -> s3 vs local disk (coco-panoptic, jobs 2): local {local:.1f} s "
          f"({images / local:.0f} images/s), s3 {remote:.1f} s ({images / remote:.0f} images/s)")


_INDEX_PEAK = r"""
import resource, sys, time
t = time.perf_counter()
from segconvert.converters.coco_instances import CocoInstancesReader
reader = CocoInstancesReader(sys.argv[1])
n = sum(1 for _ in reader.items())
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t)
"""


def row_giant(out_root: Path, annotations: list[int]) -> None:
    """Peak RSS of reading a generated COCO instances JSON (index pass + every item, what the
    main process holds for a whole run), for each annotation count."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_giant import write_instances  # the tests' generator: 7 annotations per image, as COCO train

    rows = []
    for n in annotations:
        path = write_instances(out_root / f"instances-{n}.json", max(1, n // 7), 7)
        proc = subprocess.run([sys.executable, "-c", _INDEX_PEAK, str(path)], capture_output=True, text=True,
                              check=True)
        items, kb, seconds = proc.stdout.split()
        rows.append((n, int(items), int(kb) / 1024, float(seconds), path.stat().st_size / 1e6))
    print("\ngiant coco-instances JSON (index + items, main process):")
    for n, items, mb, seconds, size in rows:
        print(f"  {n} annotations, {items} images, {size:.0f} MB JSON: peak RSS {mb:.0f} MB, {seconds:.1f} s "
              f"({mb / rows[0][2]:.2f}x the first)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data")
    ap.add_argument("--repeat", type=int, default=7, help="rounds (floor + each --jobs run)")
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--memory-scale", type=int, default=10, help="0 to skip the memory row")
    ap.add_argument("--scale-rows", default="dask,s3,giant",
                    help="scale-out rows: dask (vs local processes), s3 (moto vs local disk), giant (peak memory "
                    "of COCO instances JSONs); empty for none")
    ap.add_argument("--giant", default="28000,280000", help="annotation counts of the giant row")
    ap.add_argument("--out", type=Path, default=None,
                    help="where the runs write (default: beside --data, as a user writes next to the dataset)")
    a = ap.parse_args()

    from segconvert.interfaces import registry

    data = make_data(a.data, a.images, a.size)
    if {"voc", "voc-semantic", "yolo"} & set(a.cases.split(",")):
        derive_voc_yolo(data)
    compile_bytecode()
    make_nucleus(data)
    # Creating a file costs 0.02 ms in some folders of these VMs' ext4 and 0.15-0.35 ms of kernel time
    # in others (measured: the same test, folder by folder, e.g. /tmp slow and /work fast on one run),
    # up to half of a codec floor that writes no file at all. So the cost is measured in the output
    # folder every round and printed, and a second ratio takes one file creation per image into the
    # floor.
    out_parent = a.out if a.out is not None else a.data
    out_parent.mkdir(parents=True, exist_ok=True)
    out_root = Path(tempfile.mkdtemp(prefix="segconvert-bench-", dir=out_parent))
    try:
        print(f"{a.images} images of {a.size}; cores: {os.cpu_count()}; output in {out_parent} "
              f"(creating a file there: {file_creation_ms(out_root):.3f} ms)")
        for case in filter(None, a.cases.split(",")):
            source, fmt, to, extra, png_dir, target_dir = CASES[case]
            target = data / target_dir if target_dir is not None else None
            try:
                registry.reader_for(fmt)
                registry.writer_for(to)
            except Exception as exc:  # noqa: BLE001 - a converter not there yet is a skipped row
                print(f"{case}: skipped ({exc})")
                continue
            floor_src = Path("+".join(str(data / d) for d in png_dir.split("+")))
            dec, enc = pick_codecs(floor_src, 3, target)
            jobs_list = [int(j) for j in a.jobs.split(",")]
            # rounds: the floor and every --jobs run back to back, so each ratio compares runs made
            # under the same conditions; the median over rounds is reported
            rows: dict[int, list[tuple[float, float, float, float, int, float, float]]] = {j: [] for j in jobs_list}
            floors, creations = [], []
            for r in range(a.repeat):
                before = run_floor(floor_src, dec, enc, target)
                floors.append(before[1])
                # what creating the output files costs in this folder now (the floor writes none)
                creations.append(file_creation_ms(out_root, 100))
                for jobs in jobs_list:
                    args = ["convert", str(data / source), str(out_root / f"{case}-{jobs}-{r}"), "--from", fmt,
                            "--to", to, "--jobs", str(jobs), *[x.format(data=data) for x in extra]]
                    wall, inner, rss, cpu = run_cli(args)
                    after = run_floor(floor_src, dec, enc, target)
                    floors.append(after[1])
                    # each run against the mean of the floor runs just before and just after it:
                    # this VM's speed drifts by 10-20% within seconds, and a drift cancels out
                    floor_wall, floor_inner, floor_cpu = ((x + y) / 2 for x, y in zip(before, after))
                    writes = a.images * creations[-1] / 1e3
                    rows[jobs].append((wall, inner, wall / floor_wall, inner / floor_inner, rss, cpu / floor_cpu,
                                       wall / (floor_wall + writes)))
                    before = after
            options = f" {' '.join(extra)}" if extra and not any("{" in x for x in extra) else ""
            print(f"\n{fmt} -> {to}{options} [{case}]; codec floor {median(floors) / a.images * 1e3:.2f} ms/image "
                  f"(decode {dec} + encode {enc}); creating a file {median(creations):.3f} ms; "
                  f"medians of {a.repeat} rounds")
            base = rows[jobs_list[0]]
            for jobs in jobs_list:
                runs = rows[jobs]
                # speed-ups of floor-normalised times, for the same reason
                speed_whole = median(b[2] / x[2] for b, x in zip(base, runs))
                speed_items = median(b[3] / x[3] for b, x in zip(base, runs))
                whole = [x[2] for x in runs]
                items = [x[3] for x in runs]
                print(f"  jobs {jobs}: {a.images / median(x[0] for x in runs):5.0f} images/s; "
                      f"whole run / floor process {median(whole):4.2f} (best {min(whole):4.2f}); "
                      f"items only / floor loop {median(items):4.2f} (best {min(items):4.2f}); "
                      f"CPU time / floor's {median(x[5] for x in runs):4.2f}; "
                      f"whole run / (floor process + creating one file per image) {median(x[6] for x in runs):4.2f}; "
                      f"speed-up whole {speed_whole:4.2f}x, items {speed_items:4.2f}x; "
                      f"peak RSS {max(x[4] for x in runs) / 1024:.0f} MB")
        if a.memory_scale:
            big = replicate(data, a.memory_scale)
            args = lambda d, o: ["convert", str(d / "annotations/panoptic.json"), str(out_root / o),  # noqa: E731
                                 "--from", "coco-panoptic", "--jobs", "1"]
            small_rss = run_cli(args(data, "mem-small"))[2]
            big_rss = run_cli(args(big, "mem-big"))[2]
            print(f"\nmemory (coco-panoptic, jobs 1): {a.images} images {small_rss / 1024:.0f} MB, "
                  f"{a.images * a.memory_scale} images {big_rss / 1024:.0f} MB "
                  f"(+{(big_rss / small_rss - 1) * 100:.1f}%)")
            cases = set(a.cases.split(","))
            for name, copies in (("voc", replicate_voc), ("yolo", replicate_yolo)):  # the readers of issue 8
                if not {name, f"{name}-semantic"} & cases:
                    continue
                runs = [run_cli(["convert", str(d), str(out_root / f"mem-{name}-{o}"), "--from", name,
                                 "--jobs", "1"])[2]
                        for d, o in ((data / name, "small"), (copies(data, a.memory_scale), "big"))]
                print(f"memory ({name}, jobs 1): {a.images} images {runs[0] / 1024:.0f} MB, "
                      f"{a.images * a.memory_scale} images {runs[1] / 1024:.0f} MB "
                      f"(+{(runs[1] / runs[0] - 1) * 100:.1f}%)")
        scale_rows = set(filter(None, a.scale_rows.split(",")))
        if "dask" in scale_rows:
            row_dask(data, out_root, a.images)
        if "s3" in scale_rows:
            row_s3(data, out_root, a.images)
        if "giant" in scale_rows:
            row_giant(out_root, [int(n) for n in a.giant.split(",")])
    finally:
        shutil.rmtree(out_root, ignore_errors=True)


if __name__ == "__main__":
    main()
