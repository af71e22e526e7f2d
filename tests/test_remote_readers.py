"""Every folder reader (labelme, cityscapes, rgb, voc, yolo, sa1b) and CVAT read a SOURCE at a
URL: a tiny dataset uploaded to a moto S3 server on loopback (s3fs as the client) or to
fsspec's memory:// converts to the bytes of the same files converted from local disk.

Nothing here can reach a real endpoint: dummy credentials, every S3 call to the moto server
on 127.0.0.1 (FSSPEC_S3_ENDPOINT_URL), one attempt and a 1 s connect timeout.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, snapshot
from PIL import Image

import segconvert
from segconvert.interfaces import registry
from segconvert.interfaces.api import open_reader
from segconvert.io import sources

s3fs = pytest.importorskip("s3fs")
pytest.importorskip("moto")
import fsspec  # noqa: E402  (after s3fs: installed together)
import test_storage  # noqa: E402
from test_storage import _cli  # noqa: E402
from test_voc import scene, write_voc  # noqa: E402
from test_yolo import make_set  # noqa: E402

s3 = test_storage.s3  # the moto S3 server fixture (127.0.0.1, one try), shared with test_storage

# --------------------------------------------------------------------------- the datasets
# each builds a local folder and says (SOURCE relative to it, --from, reader options)

Case = tuple[str, str, dict[str, object]]


def _labelme(root: Path) -> Case:
    shutil.copytree(FIXTURES / "labelme" / "dataset", root / "json")
    return "json", "labelme", {}


def _labelme_image_beside(root: Path) -> Case:
    """2011_000025.json has no imageHeight/imageWidth: its size comes from the JPEG beside it."""
    shutil.copytree(FIXTURES / "labelme" / "voc_example" / "data_annotated", root / "data")
    return "data", "labelme", {"labels": str(FIXTURES / "labelme" / "voc_example" / "labels.txt")}


def _cityscapes(root: Path) -> Case:
    shutil.copytree(FIXTURES / "cityscapes", root / "gtFine")
    return "gtFine", "cityscapes", {}


def _rgb(root: Path) -> Case:
    """A folder with its label_colors.txt at the top (read from the store too) and colour masks."""
    shutil.copytree(FIXTURES / "rgb", root / "camvid")
    (root / "camvid" / "voc" / "2007_000001.png").unlink()  # the index PNG: not a colour mask
    return "camvid", "rgb", {"unknown": "background"}


def _voc(root: Path) -> Case:
    cls, obj = scene()
    for k, stem in enumerate(("a", "b", "c")):
        write_voc(root / "voc", stem, np.roll(cls, k, axis=1), np.roll(obj, k, axis=1))
    (root / "voc" / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\n" + "".join(
            f"{name}:{r},{g},{b}::\n" for name, (r, g, b) in zip(
                ["background", *[f"class{k}" for k in range(1, 21)]],
                [(k, 2 * k, 3 * k) for k in range(21)], strict=True)))
    sets = root / "voc" / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("c\na\n")
    return "voc", "voc", {}


def _yolo(root: Path) -> Case:
    make_set(root / "yolo", {
        "one": (40, 30, "0 0.1 0.1 0.9 0.1 0.5 0.9\n1 0.5 0.5 0.4 0.4\n"),
        "two": (64, 48, "2 0 0 1 0 1 1 0 1\n"),
        "bare": (20, 10, None),  # no label file: all background
        "empty": (20, 10, ""),  # an empty label file (an empty object: S3 refuses it a byte range)
    })
    rotated = root / "yolo" / "images" / "train" / "turned.jpg"  # EXIF orientation 6: sizes swap
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (50, 20), (10, 10, 10)).save(rotated, exif=exif)
    (root / "yolo" / "labels" / "train" / "turned.txt").write_text("0 0.2 0.2 0.8 0.2 0.8 0.8\n")
    return "yolo", "yolo", {}


def _sa1b(root: Path) -> Case:
    (root / "sa").mkdir()
    for name in ("sa_1.json", "sa_2.json"):
        shutil.copy(FIXTURES / "sa1b" / name, root / "sa" / name)
    return "sa", "sa1b", {}


def _cvat(root: Path) -> Case:
    (root / "cvat").mkdir()
    shutil.copy(FIXTURES / "cvat" / "annotations.xml", root / "cvat" / "annotations.xml")
    return "cvat/annotations.xml", "cvat", {}


def _cvat_images(root: Path) -> Case:
    """No width/height in the XML: sizes come from the images in --images, at the URL too."""
    (root / "cvat" / "images").mkdir(parents=True)
    text = (FIXTURES / "cvat" / "annotations.xml").read_text()
    import re

    sizes = re.findall(r'<image [^>]*name="([^"]+)"[^>]*width="(\d+)" height="(\d+)"', text)
    assert sizes
    for name, w, h in sizes:
        Image.new("RGB", (int(w), int(h))).save(root / "cvat" / "images" / name.split("/")[-1])
    bare = re.sub(r'(<image [^>]*?) width="\d+" height="\d+"', r"\1", text)
    assert bare.count(" width=") == text.count(" width=") - len(sizes)  # the <mask> boxes keep theirs
    (root / "cvat" / "annotations.xml").write_text(bare)
    return "cvat/annotations.xml", "cvat", {"images": "cvat/images"}


CASES: dict[str, Callable[[Path], Case]] = {
    "labelme": _labelme, "labelme-image-beside": _labelme_image_beside, "cityscapes": _cityscapes,
    "rgb": _rgb, "voc": _voc, "yolo": _yolo, "sa1b": _sa1b, "cvat": _cvat, "cvat-images": _cvat_images,
}


def _build(name: str, tmp_path: Path) -> tuple[Path, str, str, dict[str, object]]:
    root = tmp_path / "data"
    root.mkdir()
    rel, fmt, options = CASES[name](root)
    return root, rel, fmt, options


def _options(options: dict[str, object], base: str) -> dict[str, object]:
    """Options naming files of the dataset ("cvat/images") under ``base`` (a folder or a URL)."""
    return {k: (f"{base}/{v}" if k == "images" else v) for k, v in options.items()}


def _convert(source: str, out: Path, fmt: str, options: dict[str, object], jobs: int) -> tuple[dict, list]:
    summary = segconvert.convert(source, out, from_format=fmt, jobs=jobs, **options)
    files = {k: v for k, v in snapshot(out).items()}
    return files, [summary.converted, summary.failed, summary.warned, summary.failures, summary.warnings]


def _same(remote: tuple[dict, list], local: tuple[dict, list], local_src: str, url: str,
          local_out: Path, remote_out: Path) -> None:
    """Masks byte for byte, annotations.jsonl line for line (paths aside), the same failures."""
    r_files, r_summary = remote
    l_files, l_summary = local
    assert sorted(r_files) == sorted(l_files)
    assert any(k.startswith("masks/") for k in l_files)
    for key, data in l_files.items():
        if key != "annotations.jsonl":
            assert r_files[key] == data, key
    want = l_files["annotations.jsonl"].decode().replace(str(local_out), str(remote_out))
    assert r_files["annotations.jsonl"].decode() == want.replace(local_src, url)
    assert json.dumps(r_summary).replace(url, local_src) == json.dumps(l_summary)


@pytest.mark.parametrize("name", sorted(CASES))
def test_s3_source_converts_to_the_local_bytes(tmp_path, s3, name):
    root, rel, fmt, options = _build(name, tmp_path)
    bucket = f"read-{name}"
    s3.mkdir(bucket)
    s3.put(str(root) + "/", f"{bucket}/ds", recursive=True)
    url = f"s3://{bucket}/ds"
    local = _convert(str(root / rel), tmp_path / "local", fmt, _options(options, str(root)), jobs=1)
    assert local[1][0] > 0 and local[1][1] == 0  # converted, none failed
    remote = _convert(f"{url}/{rel}", tmp_path / "remote", fmt, _options(options, url), jobs=2)
    _same(remote, local, str(root), url, tmp_path / "local", tmp_path / "remote")
    # --from auto recognises the remote SOURCE as it does the local one
    assert registry.detect(sources.location(f"{url}/{rel}")) == registry.detect(root / rel)


@pytest.mark.parametrize("name", ["labelme-image-beside", "rgb", "sa1b", "voc", "yolo", "cvat-images"])
def test_memory_source_converts_to_the_local_bytes(tmp_path, name):
    root, rel, fmt, options = _build(name, tmp_path)
    fs = fsspec.filesystem("memory")
    url = f"memory://segconvert-read-{name}"
    for path in sorted(root.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{url}/{path.relative_to(root).as_posix()}", path.read_bytes())
    try:
        local = _convert(str(root / rel), tmp_path / "local", fmt, _options(options, str(root)), jobs=1)
        remote = _convert(f"{url}/{rel}", tmp_path / "remote", fmt, _options(options, url), jobs=1)
        _same(remote, local, str(root), url, tmp_path / "local", tmp_path / "remote")
    finally:
        fs.rm(url, recursive=True)


@pytest.mark.parametrize("name", ["voc", "yolo"])
def test_from_auto_on_an_s3_folder(tmp_path, s3, name):
    root, rel, fmt, _ = _build(name, tmp_path)
    bucket = f"auto-{name}"
    s3.mkdir(bucket)
    s3.put(str(root) + "/", f"{bucket}/ds", recursive=True)
    code, output = _cli(f"s3://{bucket}/ds/{rel}", str(tmp_path / "out"), "--jobs", "1")
    assert code == 0, output
    assert f"reading s3://{bucket}/ds/{rel} as {fmt}" in output
    assert segconvert.convert(root / rel, tmp_path / "local", jobs=1).ok  # --from auto too
    remote, local = snapshot(tmp_path / "out"), snapshot(tmp_path / "local")
    assert remote.keys() == local.keys() and any(k.startswith("masks/") for k in local)
    assert all(remote[k] == v for k, v in local.items() if k != "annotations.jsonl")
    assert remote["annotations.jsonl"].decode() == local["annotations.jsonl"].decode().replace(
        str(tmp_path / "local"), str(tmp_path / "out"))


@pytest.mark.parametrize("fmt", ["labelme", "cityscapes", "rgb", "voc", "yolo", "sa1b", "auto"])
def test_missing_prefix_is_one_clear_error(tmp_path, s3, fmt):
    s3.makedirs("missing-prefix", exist_ok=True)
    url = "s3://missing-prefix/no/such/folder"
    code, output = _cli(url, str(tmp_path / "out"), "--from", fmt)
    assert code == 2
    assert output.strip().splitlines() == [f"error: {url}: not found: no object, and no objects under this prefix"]


def test_missing_cvat_xml_is_file_not_found(tmp_path, s3):
    s3.mkdir("missing-xml")
    code, output = _cli("s3://missing-xml/annotations.xml", str(tmp_path / "out"), "--from", "cvat")
    assert code == 2 and output.strip().splitlines() == ["error: s3://missing-xml/annotations.xml: file not found"]


@pytest.mark.parametrize(("fmt", "message"), [
    ("labelme", "no .json files in this folder or below"),
    ("sa1b", "no .json files in this folder"),
    ("cityscapes", "no *_polygons.json files in this folder"),
    ("rgb --colormap voc", "no mask images"),
    ("voc", "no SegmentationClass/ folder"),
])
def test_a_folder_without_the_formats_files_is_one_clear_error(tmp_path, s3, fmt, message):
    """On S3 a folder exists while something is under it; here only a README."""
    fmt, *options = fmt.split()
    bucket = f"empty-{fmt}"
    s3.mkdir(bucket)
    s3.pipe_file(f"{bucket}/ds/README.txt", b"nothing to see")
    code, output = _cli(f"s3://{bucket}/ds", str(tmp_path / "out"), "--from", fmt, *options)
    assert code == 2
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: s3://{bucket}/ds: ") and message in lines[0], output


def test_an_empty_memory_folder_is_one_clear_error(tmp_path):
    fs = fsspec.filesystem("memory")
    fs.mkdir("/segconvert-empty/ds")
    try:
        code, output = _cli("memory://segconvert-empty/ds", str(tmp_path / "out"), "--from", "labelme")
        assert code == 2 and "no .json files in this folder or below" in output, output
    finally:
        fs.rm("/segconvert-empty", recursive=True)


# --------------------------------------------------------------------------- how many requests


@pytest.fixture
def s3_calls(monkeypatch) -> Counter:
    """Every S3 API call s3fs makes (by operation); GetObjects of a head and of whole objects."""
    calls: Counter = Counter()
    original = s3fs.S3FileSystem._call_s3

    async def counting(self, method, *args, **kwargs):
        calls[method] += 1
        if method == "get_object":  # a head is a closed range; a whole object is "bytes=0-" or no range
            closed = not kwargs.get("Range", "-").endswith("-")
            calls["ranged get_object" if closed else "whole get_object"] += 1
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counting)
    return calls


def test_listing_a_big_folder_is_a_few_requests_not_one_per_file(tmp_path, s3, s3_calls):
    """1050 SA-1B JSONs (two pages of S3's 1000 keys): the reader lists them in a few calls."""
    doc = (FIXTURES / "sa1b" / "sa_2.json").read_bytes()
    s3.mkdir("many")
    s3.pipe({f"many/sa/{k // 500:02d}/sa_{k:05d}.json": doc for k in range(1050)})
    s3_calls.clear()
    reader = open_reader("s3://many/sa", "sa1b")
    items = list(reader.items())
    assert len(items) == len(reader) == 1050
    assert [i.reference_id for i in items] == [f"sa_{k:05d}" for k in range(1050)]
    assert all(isinstance(i.source, str) and i.source.startswith("s3://many/sa/") for i in items)  # light items
    assert s3_calls["list_objects_v2"] <= 6, s3_calls
    assert s3_calls["head_object"] <= 2 and s3_calls["get_object"] == 0, s3_calls


def test_image_sizes_are_read_from_the_first_bytes_only(tmp_path, s3, s3_calls):
    """YOLO reads each photo's size from its header: one ranged GET per photo, never the photo;
    listing and probing the set costs the same calls for 2 images as for 5."""
    calls = []
    for n in (2, 5):
        root = tmp_path / f"yolo{n}"
        make_set(root, {f"im{k}": (800, 600, "0 0.1 0.1 0.9 0.1 0.5 0.9\n") for k in range(n)})
        for k in range(n):  # photos far bigger than the head: a whole read would be a whole GET
            noise = np.random.default_rng(k).integers(0, 255, (600, 800, 3), np.uint8)
            Image.fromarray(noise).save(root / "images" / "train" / f"im{k}.jpg", quality=95)
        assert (root / "images" / "train" / "im0.jpg").stat().st_size > 4 * sources.HEAD_BYTES
        s3.makedirs("heads", exist_ok=True)
        s3.put(str(root) + "/", f"heads/yolo{n}", recursive=True)
        s3_calls.clear()
        summary = segconvert.convert(f"s3://heads/yolo{n}", tmp_path / f"out{n}", from_format="yolo", jobs=1)
        assert summary.converted == n
        # per image: its header (ranged) and its label file (whole); the YAML once
        assert s3_calls["ranged get_object"] == n, s3_calls
        assert s3_calls["whole get_object"] == n + 1, s3_calls
        calls.append((s3_calls["list_objects_v2"], s3_calls["head_object"]))
    assert calls[0] == calls[1]  # no listing or HEAD per image


def test_url_glob_and_walk_follow_pathlib_and_os_walk(tmp_path):
    """UrlPath.glob/rglob/iterdir/walk give what pathlib and os.walk give on the same tree."""
    fs = fsspec.filesystem("memory")
    names = ["a.json", "b.png", "d/c.json", "d/e/f.json", "d/e/g.txt", ".h/i.json", "x-y/z.json", "d/[k].json"]
    url = "memory://segconvert-globs"
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"{}")
        fs.pipe_file(f"{url}/{name}", b"{}")
    try:
        remote = sources.location(url)

        def rel(paths, base) -> list[str]:
            return sorted(str(p)[len(str(base)) + 1:] for p in paths)

        for pattern in ("*.json", "**/*.json", "d/*", "d/**/*.json", "*/e/?.json", "**/[k].json", "*"):
            assert rel(remote.glob(pattern), remote) == rel(tmp_path.glob(pattern), tmp_path), pattern
        assert rel(remote.rglob("*.json"), remote) == rel(tmp_path.rglob("*.json"), tmp_path)
        assert rel(remote.iterdir(), remote) == rel(tmp_path.iterdir(), tmp_path)
        assert [p.is_dir() for p in remote.iterdir()] == [p.is_dir() for p in sorted(tmp_path.iterdir())]
        walked_remote = [(rel([f], remote) if f != remote else [], sorted(d), sorted(fl))
                         for f, d, fl in remote.walk()]
        walked_local = [(rel([Path(f)], tmp_path) if Path(f) != tmp_path else [], sorted(d), sorted(fl))
                        for f, d, fl in sorted(__import__("os").walk(tmp_path))]
        assert sorted(walked_remote) == sorted(walked_local)
        assert (remote / "d" / "c.json").read_text() == "{}" and (remote / "a.json").open("rb").read() == b"{}"
    finally:
        fs.rm(url, recursive=True)


def _snapshots_agree(remote_out: Path, local_out: Path) -> None:
    remote, local = snapshot(remote_out), snapshot(local_out)
    assert remote.keys() == local.keys() and any(k.startswith("masks/") for k in local)
    assert all(remote[k] == v for k, v in local.items() if k != "annotations.jsonl")
    assert remote["annotations.jsonl"].decode() == local["annotations.jsonl"].decode().replace(
        str(local_out), str(remote_out))


@pytest.mark.parametrize(("name", "option", "rel"), [
    ("cvat-images", "--images", "cvat/images"),
    ("labelme-image-beside", "--labels", "labels.txt"),
])
def test_cli_file_options_take_urls(tmp_path, s3, name, option, rel):
    """--images and --labels keep an s3:// URL (click.Path would fold it into s3:/...)."""
    root, src, fmt, _ = _build(name, tmp_path)
    shutil.copy(FIXTURES / "labelme" / "voc_example" / "labels.txt", root / "labels.txt")
    bucket = f"options-{name}"
    s3.mkdir(bucket)
    s3.put(str(root) + "/", f"{bucket}/ds", recursive=True)
    url = f"s3://{bucket}/ds"
    code, output = _cli(str(root / src), str(tmp_path / "local"), "--from", fmt, "-j", "1", option, str(root / rel))
    assert code == 0, output
    code, output = _cli(f"{url}/{src}", str(tmp_path / "remote"), "--from", fmt, "-j", "1", option, f"{url}/{rel}")
    assert code == 0, output
    _snapshots_agree(tmp_path / "remote", tmp_path / "local")


def test_rgb_glob_at_a_url(tmp_path):
    """A quoted glob at a URL, as on disk: the folder before the pattern listed once."""
    root, _, _, _ = _build("rgb", tmp_path)
    shutil.copy(root / "camvid" / "voc" / "2007_000001_color.png", root / "camvid" / "other.png")
    fs = fsspec.filesystem("memory")
    url = "memory://segconvert-rgb-glob"
    for path in sorted(root.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{url}/{path.relative_to(root).as_posix()}", path.read_bytes())
    try:
        local = segconvert.convert(str(root / "camvid" / "**" / "*_color.png"), tmp_path / "local", from_format="rgb",
                                   colormap=str(root / "camvid" / "label_colors.txt"), unknown="background", jobs=1)
        remote = segconvert.convert(f"{url}/camvid/**/*_color.png", tmp_path / "remote", from_format="rgb",
                                    colormap=f"{url}/camvid/label_colors.txt", unknown="background", jobs=1)
        assert local.converted == remote.converted == 1  # other.png is not matched
        _snapshots_agree(tmp_path / "remote", tmp_path / "local")
    finally:
        fs.rm(url, recursive=True)


def test_bad_items_at_a_url_fail_as_on_disk(tmp_path, s3):
    """An orphan label file, a photo that is no image and a broken LabelMe JSON fail their
    items with the messages of a local run (the URL in place of the path); the rest convert."""
    root = tmp_path / "data"
    make_set(root / "yolo", {"good": (40, 30, "0 0.1 0.1 0.9 0.1 0.5 0.9\n"), "junk": (20, 10, "0 0 0 1 0 1 1\n")})
    (root / "yolo" / "images" / "train" / "junk.jpg").write_bytes(b"not a jpeg at all")
    (root / "yolo" / "labels" / "train" / "orphan.txt").write_text("0 0 0 1 0 1 1\n")
    shutil.copytree(FIXTURES / "labelme" / "dataset", root / "json")
    (root / "json" / "broken.json").write_text('{"shapes": [{"label": "a", "points": [[0, 0], [1')
    s3.mkdir("bad-items")
    s3.put(str(root) + "/", "bad-items/ds", recursive=True)
    url = "s3://bad-items/ds"
    for rel, fmt in (("yolo", "yolo"), ("json", "labelme")):
        local = _convert(str(root / rel), tmp_path / f"local-{fmt}", fmt, {}, jobs=1)
        remote = _convert(f"{url}/{rel}", tmp_path / f"remote-{fmt}", fmt, {}, jobs=1)
        assert local[1][1] >= 1 and all(str(root) in f for f in local[1][3]), local[1]
        _same(remote, local, str(root), url, tmp_path / f"local-{fmt}", tmp_path / f"remote-{fmt}")


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
def test_streamed_image_count_equals_the_mmap_count(tmp_path, chunk):
    """A remote CVAT XML's image count (read in chunks, cut at the last '<') is the local
    mmap count whatever the chunk size, and len() of a memory:// reader is the local one's."""
    import io
    import re

    from segconvert.converters.cvat import _count_streamed

    data = (FIXTURES / "cvat" / "annotations.xml").read_bytes()
    for pattern in (rb"<image[\s/>]", rb'<image\s[^>]*\bsubset="default"'):
        assert _count_streamed(io.BytesIO(data), re.compile(pattern), chunk) == len(re.findall(pattern, data))
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/segconvert-count/annotations.xml", data)
    try:
        assert len(open_reader("memory://segconvert-count/annotations.xml", "cvat")) == len(
            open_reader(FIXTURES / "cvat" / "annotations.xml", "cvat")) == 3
    finally:
        fs.rm("/segconvert-count", recursive=True)
