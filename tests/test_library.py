"""The library as a user meets it: segconvert.open / Dataset.masks / Mask / segconvert.write.

The central promise: ``ds.masks(mode)`` gives exactly what ``segconvert convert`` writes
(mask values, Segments, order), for every reader and mode, with any ``jobs``.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FIXTURES, read_mask, read_payloads, snapshot, write_panoptic
from PIL import Image

import segconvert
from segconvert.interfaces.cli import main


@pytest.fixture
def sources(tmp_path):
    """One source per readable format, from the bundled fixtures: (path, reader options as CLI flags)."""
    rgb = tmp_path / "rgb"
    shutil.copytree(FIXTURES / "rgb" / "voc", rgb)
    (rgb / "colormap.json").write_text(json.dumps({"background": [0, 0, 0], "aeroplane": [128, 0, 0]}))
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 6, "height": 5},
                   {"id": 2, "file_name": "b.jpg", "width": 4, "height": 4}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[0, 0, 5, 0, 5, 3]]},
                        {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0, "segmentation": [[1, 1, 4, 1, 4, 4]]},
                        {"id": 3, "image_id": 2, "category_id": 2, "iscrowd": 0, "segmentation": [[0, 0, 3, 0, 0, 3]]}],
        "categories": [{"id": 1, "name": "thing"}, {"id": 2, "name": "other"}]}))
    sa1b = tmp_path / "sa1b"
    sa1b.mkdir()
    for f in (FIXTURES / "sa1b").glob("sa_*.json"):
        shutil.copy(f, sa1b / f.name)
    for fmt in ("nucleus", "voc"):  # sets written by our own writers, read back by their readers
        made = segconvert.convert(FIXTURES / "coco-panoptic" / "panoptic.json", tmp_path / f"as-{fmt}",
                                  from_format="coco-panoptic", to_format=fmt, jobs=1)
        assert made.ok, made.failures
    return {
        "coco-panoptic": (FIXTURES / "coco-panoptic" / "panoptic.json", {}),
        "coco-instances": (instances, {}),
        "cityscapes": (FIXTURES / "cityscapes", {}),
        "labelme": (FIXTURES / "labelme" / "dataset", {}),
        "cvat": (FIXTURES / "cvat" / "annotations.xml", {}),
        "rgb": (rgb, {"colormap": "voc", "strip_suffix": "_color"}),
        "label-studio": (FIXTURES / "label-studio" / "export.json", {}),
        "sa1b": (sa1b, {}),
        "nucleus": (tmp_path / "as-nucleus", {}),
        "voc": (tmp_path / "as-voc", {}),
    }


def cli_output(src: Path, out: Path, fmt: str, mode: str, index: str, options: dict) -> dict:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    args = ["convert", str(src), str(out), "--from", fmt, "--mode", mode, "--jobs", "1", *flags]
    if mode == "semantic":
        args += ["--index", index]
    result = CliRunner().invoke(main, args)
    payloads = read_payloads(out) if result.exit_code in (0, 1) else []
    return {"code": result.exit_code, "output": result.output, "payloads": payloads}


@pytest.mark.parametrize("mode", ["panoptic", "instance", "semantic"])
@pytest.mark.parametrize("fmt", ["coco-panoptic", "coco-instances", "cityscapes", "labelme", "cvat", "rgb",
                                 "label-studio", "sa1b", "nucleus", "voc"])
def test_masks_equal_what_the_cli_writes_for_every_reader_and_mode(sources, tmp_path, fmt, mode):
    src, options = sources[fmt]
    ds = segconvert.open(src, fmt, **options)
    index = "stable" if ds.categories is not None else "compact"
    got = cli_output(src, tmp_path / "out", fmt, mode, index, options)
    assert got["code"] == 0, got["output"]
    masks = list(ds.masks(mode=mode, index=index if mode == "semantic" else "stable"))
    assert [m.reference_id for m in masks] == [p["reference_id"] for p in got["payloads"]]
    assert len(masks) == len(ds) or len(ds) == 0
    for m, payload in zip(masks, got["payloads"]):
        assert m.segments == payload["annotations"], m.reference_id
        want = read_mask(tmp_path / "out" / "masks" / f"{m.reference_id}.png")
        assert m.mask.dtype == np.uint8 and m.mask.shape == want.shape
        np.testing.assert_array_equal(m.mask, want)
        assert m.png() == (tmp_path / "out" / "masks" / f"{m.reference_id}.png").read_bytes()


def test_jobs_2_equals_jobs_1(tmp_path):
    rng = np.random.default_rng(0)
    images = []
    for k in range(30):
        ids = rng.choice([0, 11, 12, 13], size=(20, 24))
        images.append((f"im{k:03d}", ids, [{"id": 11, "category_id": 1}, {"id": 12, "category_id": 3},
                                           {"id": 13, "category_id": 7}]))
    src = write_panoptic(tmp_path, images)
    ds = segconvert.open(src)
    for mode in ("panoptic", "semantic"):
        one = [(m.reference_id, m.mask.tobytes(), m.segments) for m in ds.masks(mode=mode, jobs=1)]
        two = [(m.reference_id, m.mask.tobytes(), m.segments) for m in ds.masks(mode=mode, jobs=2)]
        assert one == two and len(one) == 30


def test_iterating_a_dataset_gives_the_ir_lazily(tmp_path):
    ds = segconvert.open(FIXTURES / "coco-panoptic" / "panoptic.json")
    assert ds.format == "coco-panoptic" and len(ds) == 3 and [c.name for c in ds.categories][:2] == ["person", "car"]
    first = next(iter(ds))
    assert isinstance(first, segconvert.Segmentation) and first.reference_id == "example_000"
    assert {s.label for s in first.segments} <= {c.name for c in ds.categories}


def bad_dataset(tmp_path: Path) -> Path:
    ids = np.array([[0, 5], [5, 6]])
    src = write_panoptic(tmp_path, [("good1", ids, [{"id": 5, "category_id": 1}, {"id": 6, "category_id": 3}]),
                                    ("bad", ids, [{"id": 5, "category_id": 1}]),  # pixel id 6 has no entry
                                    ("good2", ids, [{"id": 5, "category_id": 1}, {"id": 6, "category_id": 9}])])
    return src


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_bad_item_raises_item_error_naming_item_and_file_or_is_skipped(tmp_path, jobs):
    ds = segconvert.open(bad_dataset(tmp_path))
    masks = ds.masks(jobs=jobs)
    assert next(masks).reference_id == "good1"
    with pytest.raises(segconvert.ItemError) as err:
        next(masks)
    assert err.value.item == "bad" and err.value.file.endswith("bad.png")
    assert "bad" in str(err.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        refs = [m.reference_id for m in ds.masks(jobs=jobs, errors="skip")]
    assert refs == ["good1", "good2"]
    assert [w.category for w in caught] == [segconvert.ItemWarning] and "[bad]" in str(caught[0].message)
    with pytest.raises(segconvert.SourceError, match="errors='ignore'"):
        ds.masks(errors="ignore")


def test_library_errors_name_python_arguments_not_flags(tmp_path):
    ds = segconvert.open(FIXTURES / "labelme" / "dataset")  # no dataset-wide class table without labels=
    with pytest.raises(segconvert.SourceError) as err:
        list(ds.masks(mode="semantic"))
    assert 'index="compact"' in str(err.value) and "--index" not in str(err.value)
    with pytest.raises(segconvert.SourceError, match="has no option 'mask_dir'; its options: masks_dir"):
        segconvert.open(FIXTURES / "coco-panoptic" / "panoptic.json", mask_dir="x")
    # the command still names its flags
    result = CliRunner().invoke(main, ["convert", str(FIXTURES / "labelme" / "dataset"), str(tmp_path / "o"),
                                       "--mode", "semantic"])
    assert result.exit_code == 2 and "--index compact" in result.output


def test_mask_saves_png_and_gives_the_official_payload(tmp_path):
    nucleus = pytest.importorskip("nucleus")
    ds = segconvert.open(FIXTURES / "coco-panoptic" / "panoptic.json")
    m = next(ds.masks())
    m.save(tmp_path / "m.png")
    buf = io.BytesIO()
    m.save(buf)
    assert buf.getvalue() == (tmp_path / "m.png").read_bytes()
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), m.mask)
    ann = m.to_nucleus("s3://bucket/masks/example_000.png")
    assert isinstance(ann, nucleus.SegmentationAnnotation)
    assert ann.to_payload() == m.payload("s3://bucket/masks/example_000.png")
    assert [a.index for a in ann.annotations] == [s["index"] for s in m.segments]


def test_write_runs_every_writer_from_python_over_segmentations(tmp_path):
    """A user's own loader feeds the pipeline: same bytes as converting the files, for any jobs."""
    src = FIXTURES / "coco-panoptic" / "panoptic.json"
    ds = segconvert.open(src)
    opts = {"mask_url_prefix": "s3://b/"}
    segconvert.convert(src, tmp_path / "cli", from_format="coco-panoptic", jobs=1, **opts)
    mine = [seg for seg in ds]  # plain Segmentations, as a user's loader would make them
    s1 = segconvert.write(mine, tmp_path / "py1", "nucleus", jobs=1, **opts)
    s2 = segconvert.write(iter(mine), tmp_path / "py2", "nucleus", jobs=2, **opts)
    s3 = segconvert.write(ds, tmp_path / "ds", **opts)
    assert s1.converted == s2.converted == s3.converted == 3 and s1.ok
    want = snapshot(tmp_path / "cli")
    assert snapshot(tmp_path / "py1") == snapshot(tmp_path / "py2") == snapshot(tmp_path / "ds") == want
    again = segconvert.write(mine, tmp_path / "py1", "nucleus", **opts)
    assert (again.converted, again.skipped) == (0, 3)  # resumes like the command
    with pytest.raises(segconvert.SourceError, match='categories'):
        segconvert.write(mine, tmp_path / "sem", mode="semantic")  # stable indices need a table
    sem = segconvert.write(mine, tmp_path / "sem2", mode="semantic", categories=ds.categories, **opts)
    segconvert.convert(src, tmp_path / "sem-cli", from_format="coco-panoptic", mode="semantic", jobs=1, **opts)
    assert sem.ok and snapshot(tmp_path / "sem2") == snapshot(tmp_path / "sem-cli")


def test_write_rejects_what_is_not_a_segmentation(tmp_path):
    with pytest.raises(segconvert.SourceError, match="item 0 of the iterable is a str"):
        segconvert.write(["nope"], tmp_path / "o")


def test_bare_import_is_light_and_every_readme_name_works():
    code = (
        "import sys, segconvert\n"
        "assert 'numpy' not in sys.modules\n"
        "names = [segconvert.open, segconvert.write, segconvert.convert, segconvert.Dataset, segconvert.Mask,\n"
        "         segconvert.api.open_reader, segconvert.modes.ModePlan, segconvert.pack.pack, segconvert.ItemError]\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_memory_stays_flat_while_iterating_masks(tmp_path):
    """Peak traced memory for 3,000 images stays within a small margin of 300 images'."""
    code = r'''
import sys, tracemalloc, numpy as np
sys.path.insert(0, sys.argv[1])
from conftest import write_panoptic
from pathlib import Path
import segconvert
root = Path(sys.argv[2])
ids = np.random.default_rng(0).choice([0, 11, 12], size=(48, 64))
infos = [{"id": 11, "category_id": 1}, {"id": 12, "category_id": 3}]
peaks = []
for n in (300, 3000):
    src = write_panoptic(root / str(n), [(f"im{k:05d}", ids, infos) for k in range(n)])
    ds = segconvert.open(src)
    tracemalloc.start()
    count = sum(1 for _ in ds.masks())
    peaks.append(tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    assert count == n
print(peaks[0], peaks[1])
'''
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(tmp_path)],
                         capture_output=True, text=True, check=True)
    small, large = map(int, out.stdout.split())
    # the reader keeps a small tuple per image (~0.2 KB); the masks themselves must not pile up
    assert large - small < 2700 * 400, (small, large)


def test_dir_lists_the_lazy_names_and_submodules():
    names = dir(segconvert)
    assert {"open", "write", "Dataset", "api", "modes", "pack"} <= set(names)


def test_open_checks_the_source_kind_as_convert_does(tmp_path):
    with pytest.raises(segconvert.SourceError, match="is a folder, but coco-panoptic reads"):
        segconvert.open(FIXTURES / "coco-panoptic", "coco-panoptic")
