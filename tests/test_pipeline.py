"""The batch behaviour every converter relies on: bad items fail alone, clearly; output is
byte-identical for any --jobs; a killed run resumes to the same bytes; nothing is truncated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CATEGORIES, id2rgb, read_mask, read_payloads, snapshot, write_panoptic
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import segconvert
from segconvert.interfaces.cli import main


def scene(seed: int, h: int = 24, w: int = 32, n: int = 6) -> tuple[np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    seg_ids = rng.choice(np.arange(1, 1 << 24), size=n, replace=False)
    ids = rng.choice(np.concatenate([[0], seg_ids]), size=(h, w))
    cats = [c["id"] for c in CATEGORIES]
    infos = [{"id": int(s), "category_id": int(rng.choice(cats)), "iscrowd": 0} for s in seg_ids]
    return ids, infos


def good_dataset(root: Path, count: int, **kw) -> Path:
    return write_panoptic(root, [(f"img{k:04d}", *scene(k, **kw)) for k in range(count)])


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output  # stdout and stderr interleaved (click >= 8.2)


# ------------------------------------------------------------ bad input, one item at a time


def broken_dataset(root: Path) -> Path:
    """Seven images: one good, six each broken in one way the issue names."""
    good_ids, good_infos = scene(1)
    src = write_panoptic(root, [(f"case{k}", *scene(k)) for k in range(7)])
    doc = json.loads(src.read_text())
    anns = doc["annotations"]
    (root / "panoptic" / "case1.png").unlink()  # missing PNG
    Image.fromarray(id2rgb(good_ids[:10])).save(root / "panoptic" / "case2.png")  # wrong size
    anns[3]["segments_info"].pop()  # a pixel id with no entry
    anns[4]["segments_info"][0]["category_id"] = 999  # unknown category
    anns[5]["segments_info"].append(dict(anns[5]["segments_info"][0]))  # duplicate id
    Image.fromarray(good_ids.astype(np.uint8), mode="L").save(root / "panoptic" / "case6.png")  # not RGB
    src.write_text(json.dumps(doc))
    return src


def test_each_bad_input_fails_alone_with_a_clear_message(tmp_path):
    src = broken_dataset(tmp_path)
    summary = segconvert.convert(src, tmp_path / "out", from_format="coco-panoptic", jobs=1)
    assert (summary.converted, summary.failed) == (1, 6)
    by_item = {m.split("[")[1].split("]")[0]: m for m in summary.failures}
    expect = {
        "case1": "PNG not found",
        "case2": "PNG is 32x10 but the JSON says 32x24",
        "case3": "have no segment in the annotation",
        "case4": "category_id 999, which is not in categories",
        "case5": "appears twice in segments_info",
        "case6": "PNG is 8-bit grayscale; COCO panoptic PNGs are 8-bit RGB",
    }
    for item, text in expect.items():
        assert text in by_item[item], by_item[item]
        assert "case" in by_item[item] and ("png" in by_item[item] or "json" in by_item[item])
    assert "case1.png" in by_item["case1"] and "case2.png" in by_item["case2"]
    assert [p["reference_id"] for p in read_payloads(tmp_path / "out")] == ["case0"]
    report = [json.loads(x) for x in summary.report.read_text().splitlines()]
    assert sorted(r["reference_id"] for r in report if r["status"] == "failed") == sorted(expect)


def test_cli_exit_status_and_summary(tmp_path):
    src = broken_dataset(tmp_path)
    code, out = run_cli("convert", str(src), str(tmp_path / "out"), "--from", "coco-panoptic", "--jobs", "2")
    assert code == 1
    assert "converted 1" in out and "failed 6" in out and "case4" in out
    assert "Traceback" not in out
    good = good_dataset(tmp_path / "good", 2)
    code, out = run_cli("convert", str(good), str(tmp_path / "out2"), "--from", "coco-panoptic")
    assert code == 0 and "converted 2" in out


def test_absent_segment_is_a_warning_not_an_error(tmp_path):
    ids = np.array([[0, 5], [5, 6]])
    infos = [{"id": 5, "category_id": 1}, {"id": 77, "category_id": 3}, {"id": 6, "category_id": 1}]
    src = write_panoptic(tmp_path, [("a", ids, infos)])
    summary = segconvert.convert(src, tmp_path / "o", from_format="coco-panoptic", jobs=1)
    assert summary.ok and summary.warned == 1
    assert "segment id 77 (car) has no pixels" in summary.warnings[0] and "[a]" in summary.warnings[0]
    (payload,) = read_payloads(tmp_path / "o")
    assert [s["metadata"]["segment_id"] for s in payload["annotations"][1:]] == [5, 6]
    assert read_mask(tmp_path / "o" / "masks" / "a.png").tolist() == [[0, 1], [1, 2]]


def test_output_that_cannot_be_a_folder_is_a_clear_error(tmp_path):
    src = good_dataset(tmp_path, 1)
    (tmp_path / "taken").write_text("a file")
    code, out = run_cli("convert", str(src), str(tmp_path / "taken"), "--from", "coco-panoptic")
    assert code == 2 and "taken: is a file, but segconvert needs a folder there" in out
    assert "Traceback" not in out


def test_empty_dataset_gives_an_empty_annotations_file(tmp_path):
    src = write_panoptic(tmp_path, [])
    code, out = run_cli("convert", str(src), str(tmp_path / "o"), "--from", "coco-panoptic")
    assert code == 0 and "converted 0" in out
    assert (tmp_path / "o" / "annotations.jsonl").read_text() == ""


def test_unreadable_json_is_a_clear_error(tmp_path):
    bad = tmp_path / "panoptic.json"
    bad.write_text("{not json")
    code, out = run_cli("convert", str(bad), str(tmp_path / "o"), "--from", "coco-panoptic")
    assert code == 2 and "not valid JSON" in out and "panoptic.json" in out and "Traceback" not in out
    bad.write_text(json.dumps({"images": []}))
    code, out = run_cli("convert", str(bad), str(tmp_path / "o"), "--from", "coco-panoptic")
    assert code == 2 and "no 'categories'" in out
    instances = {"images": [], "categories": CATEGORIES, "annotations": [{"id": 1, "segmentation": []}]}
    bad.write_text(json.dumps(instances))
    code, out = run_cli("convert", str(bad), str(tmp_path / "o"), "--from", "coco-panoptic")
    assert code == 2 and "not COCO panoptic (COCO instances read with --from coco-instances)" in out
    # cut off part-way (categories come last in this file): one clear line, no traceback
    good = good_dataset(tmp_path / "g", 3).read_text()
    bad.write_text(good[: good.index('"segments_info"', good.index('"img0001.png"'))])
    code, out = run_cli("convert", str(bad), str(tmp_path / "o2"), "--from", "coco-panoptic")
    assert code == 2 and "not valid JSON (parse error: premature EOF) while reading 'categories'" in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1


# ------------------------------------------------------------ limits: never truncated


def test_more_than_255_segments_fails_that_item_only(tmp_path):
    many = np.arange(1, 301).reshape(15, 20)  # 300 segments
    infos = [{"id": int(i), "category_id": 1} for i in range(1, 301)]
    src = write_panoptic(tmp_path, [("many", many, infos), ("few", *scene(3))])
    summary = segconvert.convert(src, tmp_path / "o", from_format="coco-panoptic", jobs=1)
    assert (summary.converted, summary.failed) == (1, 1)
    assert "300 segments do not fit" in summary.failures[0] and "[many]" in summary.failures[0]
    assert not (tmp_path / "o" / "masks" / "many.png").exists()
    # the same image as semantic is one class: fine
    summary = segconvert.convert(src, tmp_path / "s", from_format="coco-panoptic", jobs=1, mode="semantic")
    assert summary.ok
    assert (read_mask(tmp_path / "s" / "masks" / "many.png") == 1).all()


def test_exactly_255_segments_fit(tmp_path):
    ids = np.arange(0, 256).reshape(16, 16)
    infos = [{"id": int(i), "category_id": 1} for i in range(1, 256)]
    src = write_panoptic(tmp_path, [("full", ids, infos)])
    assert segconvert.convert(src, tmp_path / "o", from_format="coco-panoptic", jobs=1).ok
    assert (read_mask(tmp_path / "o" / "masks" / "full.png") == ids).all()


def test_stable_semantic_with_too_many_classes_suggests_compact(tmp_path):
    cats = [{"id": i, "name": f"c{i}", "isthing": 0} for i in range(1, 301)]
    ids = np.array([[0, 1], [1, 2]])
    src = write_panoptic(tmp_path, [("a", ids, [{"id": 1, "category_id": 300}, {"id": 2, "category_id": 5}])],
                         categories=cats)
    code, out = run_cli("convert", str(src), str(tmp_path / "o"), "--from", "coco-panoptic", "--mode", "semantic")
    assert code == 2 and "300 classes" in out and "--index compact" in out
    code, out = run_cli("convert", str(src), str(tmp_path / "o"), "--from", "coco-panoptic",
                        "--mode", "semantic", "--index", "category-id")
    assert code == 2 and "c256 (256)" in out
    code, out = run_cli("convert", str(src), str(tmp_path / "o"), "--from", "coco-panoptic",
                        "--mode", "semantic", "--index", "compact")
    assert code == 0
    assert read_mask(tmp_path / "o" / "masks" / "a.png").tolist() == [[0, 2], [2, 1]]


# ------------------------------------------------------------ determinism and resume


def test_jobs_1_and_2_are_byte_identical(tmp_path):
    src = good_dataset(tmp_path, 40)
    segconvert.convert(src, tmp_path / "j1", from_format="coco-panoptic", jobs=1, mask_url_prefix="s3://b/")
    segconvert.convert(src, tmp_path / "j2", from_format="coco-panoptic", jobs=2, mask_url_prefix="s3://b/")
    one, two = snapshot(tmp_path / "j1"), snapshot(tmp_path / "j2")
    assert len(one) == 41 and one == two


def test_rerun_skips_finished_items_and_overwrite_redoes_them(tmp_path):
    src = good_dataset(tmp_path, 5)
    out = tmp_path / "o"
    first = segconvert.convert(src, out, from_format="coco-panoptic", jobs=1)
    before = snapshot(out)
    again = segconvert.convert(src, out, from_format="coco-panoptic", jobs=1)
    assert (first.converted, again.converted, again.skipped) == (5, 0, 5)
    assert snapshot(out) == before
    redo = segconvert.convert(src, out, from_format="coco-panoptic", jobs=1, overwrite=True)
    assert redo.converted == 5 and snapshot(out) == before
    code, msg = run_cli("convert", str(src), str(out), "--from", "coco-panoptic", "--mode", "semantic")
    assert code == 2 and "other settings (--mode: 'panoptic' then, 'semantic' now)" in msg and "--overwrite" in msg
    code, msg = run_cli("convert", str(src), str(out), "--from", "coco-panoptic", "--mask-url-prefix", "s3://x/")
    assert code == 2 and "other settings (--mask-url-prefix: None then, 's3://x/' now)" in msg


def test_resume_after_a_crash_at_any_point_gives_the_same_bytes(tmp_path):
    src = good_dataset(tmp_path, 12)
    clean = tmp_path / "clean"
    opts = {"from_format": "coco-panoptic", "mask_url_prefix": "s3://b/"}  # mask_url independent of OUTPUT
    segconvert.convert(src, clean, jobs=1, **opts)
    want = snapshot(clean)
    journal = (clean / ".segconvert" / "journal.tsv").read_bytes()
    for cut in (0, 1, len(journal) // 3, len(journal) // 2 + 7, len(journal) - 1):
        out = tmp_path / f"cut{cut}"
        segconvert.convert(src, out, jobs=1, **opts)
        # what a kill leaves: a journal cut anywhere, no annotations.jsonl, a mask or two missing
        (out / ".segconvert" / "journal.tsv").write_bytes(journal[:cut])
        (out / "annotations.jsonl").unlink()
        (out / "masks" / "img0003.png").unlink()
        (out / "masks" / ".img0004.png.123.7.tmp").write_bytes(b"")  # write_atomic's, killed
        (out / ".annotations.jsonl.123.tmp").write_bytes(b"half")  # OutputStore.replacing's, killed
        (out / "masks" / ".keep.tmp").write_bytes(b"not ours")  # not segconvert's pattern: kept
        summary = segconvert.convert(src, out, jobs=2, **opts)
        assert summary.ok and summary.converted + summary.skipped == 12
        got = snapshot(out)
        assert got.pop("masks/.keep.tmp") == b"not ours"
        assert got == want, cut  # the stale temp files are gone


@pytest.mark.parametrize(("jobs", "behind"), [("2", "auto"), ("1", "always")])  # always: writes in the thread
def test_resume_after_sigkill(tmp_path, jobs, behind):
    src = good_dataset(tmp_path, 300, h=120, w=160)
    clean = tmp_path / "clean"
    opts = {"from_format": "coco-panoptic", "mask_url_prefix": "s3://b/"}
    segconvert.convert(src, clean, jobs=1, **opts)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "segconvert", "convert", str(src), str(out), "--from", "coco-panoptic",
           "--mask-url-prefix", "s3://b/", "--jobs", jobs]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "SEGCONVERT_WRITE_BEHIND": behind})
    journal = out / ".segconvert" / "journal.tsv"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.stat().st_size > 0:
            break
        time.sleep(0.002)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: main process and workers
    except ProcessLookupError:  # it finished first (a very fast machine): resuming is then a no-op
        pass
    proc.wait()
    summary = segconvert.convert(src, out, jobs=2, **opts)
    assert summary.ok and summary.converted + summary.skipped == 300
    assert summary.skipped > 0  # the first run got at least one item done before the kill
    got = {k: v for k, v in snapshot(out).items() if not Path(k).name.startswith(".")}
    assert got == snapshot(clean)


def test_duplicate_reference_ids_fail_instead_of_overwriting(tmp_path):
    src = write_panoptic(tmp_path, [("a", *scene(1)), ("b", *scene(2))])
    doc = json.loads(src.read_text())
    doc["images"][1]["file_name"] = "sub/a.jpg"  # same stem as image 1
    src.write_text(json.dumps(doc))
    summary = segconvert.convert(src, tmp_path / "o", from_format="coco-panoptic", jobs=1)
    assert (summary.converted, summary.failed) == (1, 1)
    assert "reference_id 'a' is also the name of" in summary.failures[0]


def test_reference_ids_differing_only_by_case_fail_the_later_item(tmp_path):
    """On a case-insensitive disk they would be one file; the output must not depend on the disk."""
    src = write_panoptic(tmp_path, [("Cat", *scene(1)), ("cat", *scene(2)), ("dog", *scene(3))])
    summary = segconvert.convert(src, tmp_path / "o", from_format="coco-panoptic", jobs=1)
    assert (summary.converted, summary.failed) == (2, 1)
    assert "reference_id 'cat' is the name of 'Cat' but for case" in summary.failures[0]


@pytest.mark.parametrize("jobs", [1, 2])
def test_resume_redoes_an_item_whose_file_no_longer_matches_its_stamp(tmp_path, jobs):
    """Existence is not enough: a mask replaced by garbage (or truncated) since is converted again."""
    src = good_dataset(tmp_path, 6)
    out = tmp_path / "o"
    segconvert.convert(src, out, from_format="coco-panoptic", jobs=1)
    want = snapshot(out)
    good = (out / "masks" / "img0002.png").read_bytes()
    (out / "masks" / "img0002.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # 8 bytes of garbage
    (out / "masks" / "img0004.png").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # same size, one bit off
    again = segconvert.convert(src, out, from_format="coco-panoptic", jobs=jobs)
    assert (again.converted, again.skipped, again.failed) == (2, 4, 0)
    assert snapshot(out) == want
    third = segconvert.convert(src, out, from_format="coco-panoptic", jobs=jobs)
    assert (third.converted, third.skipped) == (0, 6) and snapshot(out) == want


# ------------------------------------------------------------ CLI surface, registry


def test_formats_lists_converters_and_options():
    code, out = run_cli("formats")
    assert code == 0 and "coco-panoptic" in out and "nucleus" in out and "read" in out
    code, out = run_cli("formats", "coco-panoptic")
    assert code == 0 and "--masks-dir" in out and "default mode: panoptic" in out
    code, out = run_cli("formats", "nope")
    assert code == 2 and "unknown format 'nope'" in out and "coco-panoptic" in out


def test_option_errors_are_usage_errors(tmp_path):
    src = good_dataset(tmp_path, 1)
    code, out = run_cli("convert", str(src), str(tmp_path / "o"), "--from", "coco-panoptic", "--bogus", "1")
    assert code == 2 and "--bogus" in out and "--masks-dir" in out
    code, out = run_cli("convert", str(src), str(tmp_path / "o"), "--from", "coco-panoptic", "--index", "compact")
    assert code == 2 and "--index applies to --mode semantic only" in out
    code, out = run_cli("convert", str(src), str(tmp_path / "o"), "--from", "nope")
    assert code == 2 and "unknown format 'nope'" in out
    code, out = run_cli("convert", str(src), str(tmp_path / "o"), "--from", "coco-panoptic", "--to", "cityscapes")
    assert code == 2 and "cannot be written" in out and "nucleus" in out
    with pytest.raises(segconvert.SourceError, match="has no option 'bogus'"):
        segconvert.convert(src, tmp_path / "o", from_format="coco-panoptic", bogus=1)


def test_plugins_register_through_entry_points_but_cannot_take_builtin_names(monkeypatch):
    from importlib.metadata import EntryPoint

    from segconvert.interfaces import registry

    eps = [
        EntryPoint("myfmt", "segconvert.converters.nucleus:FORMAT", registry.ENTRY_POINT_GROUP),
        EntryPoint("rgb", "somewhere.evil:FORMAT", registry.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps if group == registry.ENTRY_POINT_GROUP else [])
    assert "myfmt" in registry.names()
    assert registry.BUILTIN["rgb"] != "somewhere.evil:FORMAT"
    assert registry.refused_plugins() == ["rgb (somewhere.evil:FORMAT)"]
    with pytest.raises(segconvert.SourceError, match="does not define a Format named 'myfmt'"):
        registry.get("myfmt")


def test_python_api_pieces_work_on_their_own(tmp_path):
    from segconvert.interfaces.api import open_reader
    from segconvert.model.modes import ModePlan
    from segconvert.model.pack import pack

    src = write_panoptic(tmp_path, [("a", np.array([[0, 5], [6, 6]]),
                                     [{"id": 5, "category_id": 1}, {"id": 6, "category_id": 9}])])
    reader = open_reader(src, "coco-panoptic")
    (item,) = list(reader.items())
    seg = item.load()
    assert seg.ids().tolist() == [[0, 5], [6, 6]] and [s.label for s in seg.segments] == ["person", "road"]
    inst = ModePlan("instance").apply(seg)
    assert pack(inst, renumber=True).mask.tolist() == [[0, 1], [0, 0]]
    assert seg.resolved_label_map().tolist() == [[0, 5], [6, 6]]


class _DyingItem(segconvert.Item):
    """An item whose worker process dies (as if killed by the OOM killer) while loading it."""

    def __init__(self, ref: str) -> None:
        self.reference_id, self.source = ref, f"{ref}.png"

    def load(self):
        os._exit(9)


def test_a_worker_that_dies_stops_the_run_with_a_resume_hint(tmp_path):
    from segconvert.execution.pipeline import run
    from segconvert.interfaces.format import Reader
    from segconvert.interfaces.registry import get
    from segconvert.model.modes import ModePlan

    class DyingReader(Reader):
        def items(self):
            yield from (_DyingItem(f"x{k}") for k in range(4))

    plan = ModePlan("panoptic")
    writer = get("nucleus").writer(tmp_path / "o", plan)
    with pytest.raises(segconvert.SourceError, match="a worker process died .* run the same command again"):
        run(DyingReader(tmp_path), writer, plan, jobs=2)


@pytest.mark.parametrize("ref", ["../escape", "a/b", "", "..", "nul\0", "a\\b", " lead", "tab\tin", "x" * 201])
def test_reference_ids_that_are_not_file_names_fail_the_item(tmp_path, ref):
    from segconvert.interfaces.registry import get
    from segconvert.model.modes import ModePlan

    writer = get("nucleus").writer(tmp_path / "o", ModePlan("panoptic"))
    writer.prepare()
    seg = segconvert.Segmentation(ref, np.zeros((2, 2), np.uint8), [])
    with pytest.raises(segconvert.ItemError, match="cannot be used as a file name"):
        writer.write(seg)
    assert not any((tmp_path / "o" / "masks").iterdir())


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x2FF), min_size=1, max_size=12))
def test_control_characters_in_reference_ids_are_found_as_the_per_character_rule_finds_them(ref):
    """paths._unsafe's regex (once per item) says what ``ord(c) < 0x20 or ord(c) == 0x7F`` for
    any character says."""
    from segconvert.io.paths import _CONTROL

    assert (_CONTROL.search(ref) is not None) == any(ord(c) < 0x20 or ord(c) == 0x7F for c in ref)


def test_the_command_pauses_the_garbage_collector_only_while_it_starts(tmp_path):
    """The entry point (``segconvert`` and ``python -m segconvert``) turns the cyclic GC off
    while its modules load and back on before the command runs: the run itself collects as
    usual (a batch of failing items makes cycles), and a caller that had it off keeps it off."""
    code = (
        "import gc, sys\nimport segconvert.__main__ as entry\nimport segconvert.interfaces.cli as cli\n"
        "seen = []\norig = cli.main\n"
        "def spy(*a, **k):\n    seen.append(gc.isenabled())\n    raise SystemExit(0)\n"
        "cli.main = spy\n"
        "for before in (True, False):\n"
        "    (gc.enable if before else gc.disable)()\n"
        "    try:\n        entry.main()\n    except SystemExit:\n        pass\n"
        "    seen.append(gc.isenabled())\n"
        "print(seen)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[True, True, False, False]"
    done = subprocess.run([sys.executable, "-m", "segconvert", "formats"], capture_output=True, text=True)
    assert done.returncode == 0 and "nucleus" in done.stdout


def test_import_is_light_and_the_command_turns_blas_threads_off():
    """`import segconvert` must not import numpy, so the command can set OpenBLAS' thread
    count before numpy starts its pool (its start-up spin costs ~0.1 s of CPU per process)."""
    code = (
        "import os, sys; os.environ.pop('OPENBLAS_NUM_THREADS', None)\n"
        "import segconvert; assert 'numpy' not in sys.modules\n"
        "assert segconvert.Segmentation.__name__ == 'Segmentation'\n"  # lazy names still work
        "import segconvert.interfaces.cli; print(os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "None"  # numpy came in with segconvert.Segmentation: left alone
    code = (
        "import os; os.environ.pop('OPENBLAS_NUM_THREADS', None)\n"
        "import segconvert.interfaces.cli; print(os.environ['OPENBLAS_NUM_THREADS'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


def test_payload_lines_are_valid_compact_json():
    """orjson writes the lines: NaN is null (json would write the non-JSON NaN) and
    non-string metadata keys become strings, as json would make them."""
    from segconvert.converters.nucleus import _to_json

    line = _to_json({"type": "mask", "annotations": [{"metadata": {1: float("nan"), "é": 2.5}}]})
    assert line == '{"type":"mask","annotations":[{"metadata":{"1":null,"é":2.5}}]}'
    assert json.loads(line)["annotations"][0]["metadata"] == {"1": None, "é": 2.5}


@pytest.mark.parametrize("ref", ["plain-001", "naïve", "日本", "a\x7fb", "tab\there", "lone\udcff", 'quote"\\'])
def test_journal_lines_are_json_dumps_text(tmp_path, ref):
    """The journal writes its lines with orjson where that gives json.dumps' text (ASCII without
    DEL), else with json: the same bytes either way, so a journal reads back as it always did."""
    from segconvert.execution.pipeline import Journal
    from segconvert.io.storage import FileStamp

    journal = Journal(tmp_path / "state", {}, fresh=True)
    files = (FileStamp(f"masks/{ref}.png", 123, 4294967295), FileStamp("b.png", 0, 0))
    journal.append(ref, '["rec"]', files)
    journal.close()
    stamps = json.dumps([f.to_json() for f in files], separators=(",", ":"))
    expected = f"{json.dumps(ref)}\t{stamps}\t[\"rec\"]\n".encode()
    assert (tmp_path / "state" / "journal.tsv").read_bytes() == expected
    again = Journal(tmp_path / "state", {}, fresh=False)
    assert again.done[ref][1] == files
    again.close()
