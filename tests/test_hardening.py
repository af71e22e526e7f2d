"""Runs that go wrong from outside: a second run into the same OUTPUT, a full or read-only
disk, signals, a killed main process, --overwrite where everything fails. Each runs here
(and in CI) without mounts: a full disk is RLIMIT_FSIZE in a subprocess (writes past it
fail with EFBIG) or an OSError injected into the store."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import snapshot, write_panoptic
from test_pipeline import good_dataset, scene

import segconvert
from segconvert.codecs import png
from segconvert.errors import OutputError
from segconvert.interfaces.cli import _Bar, main
from segconvert.io.storage import OutputStore, unlock

OPTS = {"from_format": "coco-panoptic", "mask_url_prefix": "s3://b/"}  # mask_url independent of OUTPUT
TIMEOUT = 120  # seconds: generous, CI shares two cores with others


def cli(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "segconvert", "convert", str(src), str(out), "--from", "coco-panoptic",
            "--mask-url-prefix", "s3://b/", *extra]


def everything(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def group_alive(pgid: int) -> list[int]:
    """Processes of a process group that are still running (zombies do not count)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry))
    return alive


def wait_until(check, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ------------------------------------------------------------ the lock


def test_a_second_run_into_a_locked_output_stops_at_once_and_touches_nothing(tmp_path):
    src = good_dataset(tmp_path, 3)
    out = tmp_path / "out"
    segconvert.convert(src, out, jobs=1, **OPTS)
    (out / "masks" / "img0001.png").unlink()  # work a second run would do
    before = everything(out)
    fd = OutputStore(out).lock()  # what a first run holds for its whole length
    try:
        result = CliRunner().invoke(main, ["convert", str(src), str(out), "--from", "coco-panoptic"])
        assert result.exit_code == 2
        assert f"another segconvert run (process {os.getpid()}) is writing into this OUTPUT" in result.output
        assert everything(out) == before
    finally:
        unlock(fd)
    summary = segconvert.convert(src, out, jobs=1, **OPTS)  # released: the same command resumes
    assert summary.converted == 1 and summary.skipped == 2


def test_two_runs_started_together_never_corrupt_the_output(tmp_path):
    src = good_dataset(tmp_path, 40)
    clean = tmp_path / "clean"
    segconvert.convert(src, clean, jobs=1, **OPTS)
    out = tmp_path / "out"
    procs = [subprocess.Popen(cli(src, out, "--jobs", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(2)]
    results = [(p.wait(TIMEOUT), p.stderr.read().decode()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results  # one waited for nothing (started after) or was refused
    for code, err in results:
        assert "Traceback" not in err
        if code == 2:
            assert "another segconvert run" in err
    assert snapshot(out) == snapshot(clean)


# ------------------------------------------------------------ full / unwritable output


def _fsize_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return apply


@pytest.mark.parametrize("behind", ["auto", "always"])  # always: the failing write is the write-behind thread's
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_full_disk_stops_the_run_with_one_message_and_resumes_to_the_same_bytes(tmp_path, jobs, behind):
    # ten small images and one of noise whose mask is far over the file size limit: writing it
    # fails with EFBIG, as a full disk fails with ENOSPC (SIGXFSZ is left at its default: the
    # run must ignore it itself)
    rng = np.random.default_rng(0)
    images = [(f"img{k:02d}", *scene(k)) for k in range(10)]
    noise = rng.integers(1, 200, size=(300, 300))
    images.insert(6, ("big", noise, [{"id": int(i), "category_id": 1} for i in np.unique(noise)]))
    src = write_panoptic(tmp_path, images)
    clean = tmp_path / "clean"
    segconvert.convert(src, clean, jobs=1, **OPTS)
    assert (clean / "masks" / "big.png").stat().st_size > 40_000
    out = tmp_path / "out"
    proc = subprocess.run(cli(src, out, "--jobs", jobs), capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=_fsize_limit(30_000), env={**os.environ, "SEGCONVERT_WRITE_BEHIND": behind})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert str(out / "masks" / "big.png") in errors[0]
    assert "file too large" in errors[0] and "run the same command again to resume" in errors[0]
    journal = (out / ".segconvert" / "journal.tsv").read_text().splitlines()
    assert [json.loads(line.split("\t")[0]) for line in journal] == [f"img{k:02d}" for k in range(6)]
    assert not (out / "annotations.jsonl").exists()
    summary = segconvert.convert(src, out, jobs=int(jobs), **OPTS)  # room again: the same command
    assert summary.ok and summary.skipped == 6 and summary.converted == 5
    assert snapshot(out) == snapshot(clean)
    assert not [p for p in out.rglob(".*.tmp")]


@pytest.mark.parametrize(("code", "words"), [
    (errno.ENOSPC, "no space left on the device"),
    (errno.EROFS, "read-only"),
    (errno.EACCES, "permission denied"),
    (errno.EDQUOT, "disk quota exceeded"),
])
def test_output_errors_are_fatal_and_name_the_path(tmp_path, monkeypatch, code, words):
    src = good_dataset(tmp_path, 5)
    out = tmp_path / "out"
    real = png.write_atomic

    def failing(path, data):
        if path.endswith("img0002.png"):
            raise OSError(code, os.strerror(code), path)
        return real(path, data)

    monkeypatch.setattr(png, "write_atomic", failing)
    with pytest.raises(OutputError) as info:
        segconvert.convert(src, out, jobs=1, **OPTS)
    message = str(info.value)
    assert str(out / "masks" / "img0002.png") in message and words in message
    assert "the finished items are kept" in message
    monkeypatch.setattr(png, "write_atomic", real)
    summary = segconvert.convert(src, out, jobs=1, **OPTS)
    assert summary.ok and summary.skipped == 2 and summary.converted == 3


def test_masks_being_a_file_and_annotations_being_a_folder_say_what_to_do(tmp_path):
    src = good_dataset(tmp_path, 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "masks").write_text("x")
    result = CliRunner().invoke(main, ["convert", str(src), str(out), "--from", "coco-panoptic"])
    assert result.exit_code == 2
    assert f"{out / 'masks'}: is a file, but segconvert needs a folder there: move or delete it" in result.output
    (out / "masks").unlink()
    (out / "annotations.jsonl").mkdir()
    result = CliRunner().invoke(main, ["convert", str(src), str(out), "--from", "coco-panoptic"])
    assert result.exit_code == 2
    assert "annotations.jsonl: is a folder, but annotations.jsonl is a file this format writes" in result.output
    assert not [p for p in out.rglob(".*.tmp")]
    (out / "annotations.jsonl").rmdir()
    result = CliRunner().invoke(main, ["convert", str(src), str(out), "--from", "coco-panoptic"])
    assert result.exit_code == 0 and "skipped 2" in result.output


# ------------------------------------------------------------ --overwrite where everything fails


def test_overwrite_where_every_item_fails_keeps_the_good_annotations_file(tmp_path):
    src = good_dataset(tmp_path, 3)
    out = tmp_path / "out"
    segconvert.convert(src, out, jobs=1, **OPTS)
    good = (out / "annotations.jsonl").read_bytes()
    for png_file in (tmp_path / "panoptic").glob("*.png"):
        png_file.write_bytes(b"garbage")
    result = CliRunner().invoke(main, ["convert", str(src), str(out), "--from", "coco-panoptic", "--overwrite",
                                       "--mask-url-prefix", "s3://b/"])
    assert result.exit_code == 1
    assert "no item was converted" in result.output and "kept as they were" in result.output
    assert (out / "annotations.jsonl").read_bytes() == good


# ------------------------------------------------------------ signals and killed processes


def _start_and_wait_for_progress(src: Path, out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cli(src, out, "--jobs", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    journal = out / ".segconvert" / "journal.tsv"
    wait_until(lambda: proc.poll() is not None or (journal.exists() and journal.stat().st_size > 0),
               "the first finished item")
    assert proc.poll() is None, "the run finished before it could be stopped: make the dataset bigger"
    return proc


@pytest.fixture(scope="module")
def big_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    src = good_dataset(root, 600, h=120, w=160)
    clean = root / "clean"
    segconvert.convert(src, clean, jobs=2, **OPTS)
    return src, snapshot(clean)


@pytest.mark.parametrize(("sig", "code", "words"), [
    (signal.SIGTERM, 143, "stopped by SIGTERM"),
    (signal.SIGHUP, 129, "stopped by SIGHUP"),
    (signal.SIGINT, 130, "interrupted"),  # Ctrl-C: the whole process group gets it
])
def test_signals_stop_the_run_cleanly_and_it_resumes(tmp_path, big_set, sig, code, words):
    src, want = big_set
    out = tmp_path / "out"
    proc = _start_and_wait_for_progress(src, out)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    assert proc.wait(TIMEOUT) == code
    err = proc.stderr.read().decode()
    assert "Traceback" not in err and words in err and "run the same command again to resume" in err
    wait_until(lambda: not group_alive(proc.pid), "the workers to exit")
    summary = segconvert.convert(src, out, jobs=2, **OPTS)
    assert summary.ok and summary.skipped > 0
    assert snapshot(out) == want


def test_workers_exit_when_the_main_process_is_killed(tmp_path, big_set):
    src, want = big_set
    out = tmp_path / "out"
    proc = _start_and_wait_for_progress(src, out)
    workers = [pid for pid in group_alive(proc.pid) if pid != proc.pid]
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)  # the main process alone
    proc.wait(TIMEOUT)
    wait_until(lambda: not group_alive(proc.pid), "the orphaned workers to exit")
    summary = segconvert.convert(src, out, jobs=2, **OPTS)  # and the lock went with them
    assert summary.ok and snapshot(out) == want


# ------------------------------------------------------------ summary and progress


def test_summary_counts_come_last_with_the_number_of_failures_not_shown(tmp_path):
    src = good_dataset(tmp_path, 55)
    for k in range(52):
        (tmp_path / "panoptic" / f"img{k:04d}.png").unlink()
    result = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "out"), "--from", "coco-panoptic"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1
    assert lines[-1].startswith("converted 3, skipped 0 (done before), failed 52 of 55 items")
    assert "... and 2 more failures not shown: all of them in" in lines[-2]


def test_progress_bar_redraws_at_most_ten_times_a_second():
    now = [0.0]
    updates: list[int] = []

    class Fake:
        def update(self, n: int) -> None:
            updates.append(n)

        def __exit__(self, *exc: object) -> None:
            pass

    bar = _Bar(clock=lambda: now[0])
    bar._bar = Fake()
    for _ in range(2000):  # 2,000 items in one second
        bar(1)
        now[0] += 0.0005
    bar.__exit__(None, None, None)
    assert len(updates) <= 11 and sum(updates) == 2000


# ------------------------------------------------------------ --report and --only-failed


def test_report_lists_every_failure_and_only_failed_retries_exactly_those(tmp_path):
    src = good_dataset(tmp_path, 6)
    saved = {}
    for k in (1, 4):
        png_file = tmp_path / "panoptic" / f"img{k:04d}.png"
        saved[png_file] = png_file.read_bytes()
        png_file.write_bytes(b"not a png")
    out, report = tmp_path / "out", tmp_path / "failed.jsonl"
    result = CliRunner().invoke(main, ["convert", str(src), str(out), "--from", "coco-panoptic",
                                       "--mask-url-prefix", "s3://b/", "--report", str(report)])
    assert result.exit_code == 1
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(r["item"], r["kind"]) for r in rows] == [("img0001", "input"), ("img0004", "input")]
    assert rows[0]["file"] == str(tmp_path / "panoptic" / "img0001.png")
    assert rows[0]["reason"] == "file is not a PNG (no PNG signature)"
    for png_file, data in saved.items():
        png_file.write_bytes(data)
    (out / "masks" / "img0002.png").write_bytes(b"changed")  # not asked for: left as it is
    summary = segconvert.convert(src, out, only_failed=report, **OPTS)
    assert summary.ok and summary.converted == 2 and summary.skipped == 4
    assert (out / "masks" / "img0002.png").read_bytes() == b"changed"
    payloads = [json.loads(line)["reference_id"] for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert payloads == [f"img{k:04d}" for k in range(6)]


# ------------------------------------------------------------ mask URLs


@pytest.mark.parametrize("prefix", ["https://host/masks/", "http://h/m/", "s3://bucket/masks/", "gs://b/m/"])
def test_mask_urls_are_percent_encoded_where_the_scheme_needs_it(tmp_path, prefix):
    from urllib.parse import unquote, urlsplit

    from nucleus import SegmentationAnnotation
    from nucleus.annotation import is_local_path

    names = ["a b", "c#d", "e?f", "g%20h", "plain", "é"]
    src = write_panoptic(tmp_path, [(n, *scene(k)) for k, n in enumerate(names)])
    summary = segconvert.convert(src, tmp_path / "out", from_format="coco-panoptic", mask_url_prefix=prefix,
                                 jobs=1)
    assert summary.ok
    lines = (tmp_path / "out" / "annotations.jsonl").read_text().splitlines()
    for name, line in zip(names, lines):
        payload = json.loads(line)
        url = payload["mask_url"]
        assert url.startswith(prefix) and not is_local_path(url)
        parts = urlsplit(url)
        assert not parts.query and not parts.fragment and " " not in url
        assert unquote(parts.path.rsplit("/", 1)[1]) == f"{name}.png"
        assert SegmentationAnnotation.from_json(payload).mask_url == url
    assert json.loads(lines[4])["mask_url"] == f"{prefix}plain.png"


@pytest.mark.parametrize("prefix", ["gcs://bucket/", "az://c/", "file:///tmp/", "ftp://h/"])
def test_a_prefix_the_client_would_read_as_a_local_file_is_an_up_front_error(tmp_path, prefix):
    src = good_dataset(tmp_path, 1)
    with pytest.raises(segconvert.SourceError, match="the Nucleus client reads a mask_url with scheme"):
        segconvert.convert(src, tmp_path / "out", from_format="coco-panoptic", mask_url_prefix=prefix, jobs=1)
    assert not (tmp_path / "out").exists()


def test_a_local_folder_prefix_is_written_as_it_is(tmp_path):
    src = write_panoptic(tmp_path, [("a b", *scene(1))])
    segconvert.convert(src, tmp_path / "out", from_format="coco-panoptic", mask_url_prefix="/data/m/", jobs=1)
    assert json.loads((tmp_path / "out" / "annotations.jsonl").read_text())["mask_url"] == "/data/m/a b.png"


# ------------------------------------------------------------ paths inside annotation files


@pytest.mark.parametrize(("name", "inside"), [
    ("a.png", True), ("sub/a.png", True), ("sub/../a.png", True), ("./a.png", True),
    ("../a.png", False), ("sub/../../a.png", False), ("/etc/passwd", False), ("C:/x.png", False),
])
def test_resolve_inside_keeps_names_under_their_base(name, inside):
    from segconvert.errors import ItemError
    from segconvert.io.paths import resolve_inside

    assert resolve_inside("/base", name, allow_outside=True) == os.path.join("/base", name)
    if inside:
        assert resolve_inside("/base", name, allow_outside=False) == os.path.join("/base", name)
    else:
        with pytest.raises(ItemError, match="leads outside /base.*--allow-outside-paths"):
            resolve_inside("/base", name, allow_outside=False)


def test_allow_outside_paths_reads_a_file_name_that_climbs_out(tmp_path):
    ids, infos = scene(3)
    src = write_panoptic(tmp_path / "set", [("a", ids, infos)])
    (tmp_path / "set" / "panoptic" / "a.png").rename(tmp_path / "a.png")
    doc = json.loads(src.read_text())
    doc["annotations"][0]["file_name"] = "../../a.png"
    src.write_text(json.dumps(doc))
    refused = segconvert.convert(src, tmp_path / "o1", from_format="coco-panoptic", jobs=1)
    assert refused.failed == 1 and "leads outside" in refused.failures[0]
    allowed = segconvert.convert(src, tmp_path / "o2", from_format="coco-panoptic", jobs=2,
                                 allow_outside_paths=True)
    assert allowed.ok and allowed.converted == 1


def test_an_image_name_that_climbs_out_is_looked_up_inside_images_dir_only(tmp_path):
    from segconvert.codecs.shapes import find_image

    (tmp_path / "images").mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    assert find_image(tmp_path / "images", "../secret.png", "secret") is None
    (tmp_path / "images" / "secret.png").write_bytes(b"y")
    assert find_image(tmp_path / "images", "../secret.png", "secret") == tmp_path / "images" / "secret.png"


def test_only_failed_can_take_the_report_the_last_run_left_in_output(tmp_path):
    src = good_dataset(tmp_path, 3)
    png_file = tmp_path / "panoptic" / "img0002.png"
    data = png_file.read_bytes()
    png_file.write_bytes(b"")
    out = tmp_path / "out"
    assert segconvert.convert(src, out, jobs=1, **OPTS).failed == 1
    png_file.write_bytes(data)
    report = out / ".segconvert" / "report.jsonl"  # read before this run writes its own there
    summary = segconvert.convert(src, out, jobs=1, only_failed=report, **OPTS)
    assert summary.ok and summary.converted == 1 and summary.skipped == 2
    assert report.read_text() == ""  # this run's report: nothing failed


def test_a_file_system_without_flock_runs_unlocked(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    src = good_dataset(tmp_path, 2)
    assert segconvert.convert(src, tmp_path / "out", jobs=1, **OPTS).ok


def test_max_pixels_reaches_the_workers_and_is_restored_after_the_run(tmp_path):
    from segconvert.codecs import limits

    src = good_dataset(tmp_path, 4)  # 32x24 = 768 pixels each
    summary = segconvert.convert(src, tmp_path / "out", jobs=2, max_pixels=767, **OPTS)
    assert summary.failed == 4
    assert all("image size 32x24 is 768 pixels, more than the limit of 767" in m for m in summary.failures)
    assert limits.max_pixels() == limits.DEFAULT_MAX_PIXELS
    assert segconvert.convert(src, tmp_path / "out2", jobs=2, max_pixels=768, **OPTS).ok


def test_a_run_under_nohup_ignores_hangups(tmp_path, big_set):
    src, want = big_set
    out = tmp_path / "out"

    def nohup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = subprocess.Popen(cli(src, out, "--jobs", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=nohup)
    journal = out / ".segconvert" / "journal.tsv"
    wait_until(lambda: proc.poll() is not None or (journal.exists() and journal.stat().st_size > 0),
               "the first finished item")
    os.killpg(proc.pid, signal.SIGHUP)
    assert proc.wait(TIMEOUT) == 0, proc.stderr.read().decode()
    assert snapshot(out) == want


def test_a_report_in_a_folder_that_does_not_exist_is_a_clear_error(tmp_path):
    src = good_dataset(tmp_path, 1)
    result = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "out"), "--from", "coco-panoptic",
                                       "--report", str(tmp_path / "nowhere" / "r.jsonl")])
    assert result.exit_code == 2
    assert "r.jsonl: cannot write the report there: its folder does not exist" in result.output


def test_a_source_file_name_that_is_not_utf8_fails_its_item_clearly(tmp_path):
    """A LabelMe JSON named b"\\xff...json" reads as a reference_id with a lone surrogate: it fails
    its item with a clear message (was: an "unexpected TypeError" from the JSON writer), the other
    items convert, and the report stays valid JSON that --only-failed reads back (was: a crash)."""
    import shutil

    from segconvert.execution.pipeline import read_failed

    src = tmp_path / "src"
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "labelme" / "dataset", src)
    first = sorted(p for p in src.iterdir() if p.suffix == ".json")[0]
    os.rename(os.fsencode(first), os.fsencode(src) + b"/\xff" + os.fsencode(first.name))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["convert", str(src), str(out), "--from", "labelme", "--jobs", "1"])
    assert result.exit_code == 1, result.output
    assert "is not valid UTF-8" in result.output and "rename it" in result.output
    assert "converted 2" in result.output and "failed 1" in result.output
    rows = [json.loads(line) for line in (out / ".segconvert" / "report.jsonl").read_text().splitlines()]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["reference_id"] == "\udcff" + first.stem
    assert read_failed(out / ".segconvert" / "report.jsonl") == {"\udcff" + first.stem}


def test_the_item_count_is_only_taken_for_a_bar_that_shows_it(tmp_path, monkeypatch):
    """Counting can cost a pass over the source (a remote CVAT XML is downloaded again for it):
    off a terminal the command's bar shows nothing, so the reader is not asked; a library
    progress object with a ``start`` still gets the count."""
    from segconvert.converters.coco_panoptic import CocoPanopticReader

    src = Path(__file__).resolve().parents[1] / "fixtures" / "coco-panoptic" / "panoptic.json"
    calls: list[int] = []
    real_len = CocoPanopticReader.__len__
    monkeypatch.setattr(CocoPanopticReader, "__len__", lambda self: calls.append(1) or real_len(self))
    result = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "a"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert calls == []
    assert _Bar().wants_total is False  # not a terminal here

    class Progress:
        def __init__(self) -> None:
            self.total: int | None = None

        def start(self, total: int) -> None:
            self.total = total

        def __call__(self, n: int) -> None:
            pass

    progress = Progress()
    segconvert.convert(src, tmp_path / "b", progress=progress, jobs=1)
    assert progress.total == real_len(CocoPanopticReader(src)) and calls == [1]
