"""Write-behind (segconvert.io.writeback): the files an item writes go to a thread when the file
system is slow, and nothing about what a run leaves behind changes: the same bytes, an item
journalled only once its files are in place, one clear stop at the first failed write, nothing
written after the run."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest
from conftest import snapshot
from test_pipeline import good_dataset

import segconvert
from segconvert.codecs import png
from segconvert.errors import OutputError, SourceError
from segconvert.io import writeback
from segconvert.io.writeback import WriteBehind

OPTS = {"from_format": "coco-panoptic", "mask_url_prefix": "s3://b/"}


def timed_writes(monkeypatch, seconds: float, gate: threading.Event | None = None) -> list[tuple[str, str]]:
    """png.write_atomic reporting ``seconds`` per write (the file system's speed, as the C kernel
    measures it), recording (file name, thread name) of each write; ``gate``: writes wait for it."""
    real = png.write_atomic
    seen: list[tuple[str, str]] = []

    def write(path, data):
        if gate is not None:
            gate.wait(30)
        real(path, data)
        seen.append((os.path.basename(path), threading.current_thread().name))
        return seconds

    monkeypatch.setattr(png, "write_atomic", write)
    return seen


def test_fast_writes_stay_in_place_and_slow_ones_go_behind_and_back(tmp_path, monkeypatch):
    behind = WriteBehind(mode="auto")
    seen = timed_writes(monkeypatch, 0.00002)  # tmpfs: 0.02 ms
    for k in range(20):
        behind.put(str(tmp_path / f"fast{k}"), b"x")
    assert {thread for _, thread in seen} == {threading.current_thread().name} and behind.ticket == 0
    seen = timed_writes(monkeypatch, 0.0008)  # a slow disk: 0.8 ms a file
    for k in range(20):
        behind.put(str(tmp_path / f"slow{k}"), b"x")
    behind.wait(behind.ticket)
    threads = [thread for _, thread in seen]
    assert threads[0] == threading.current_thread().name  # judged by the writes made so far
    assert threads[-1] == "segconvert-write-behind" and behind.ticket > 10
    assert [name for name, _ in seen] == [f"slow{k}" for k in range(20)]  # in order
    seen = timed_writes(monkeypatch, 0.00002)
    for k in range(40):  # fast again: the thread's writes bring the average down...
        behind.put(str(tmp_path / f"again{k}"), b"x")
        behind.wait(behind.ticket)
    assert seen[-1][1] == threading.current_thread().name  # ... and writes are made in place again
    behind.close()
    assert sorted(os.listdir(tmp_path)) == sorted([f"fast{k}" for k in range(20)] + [f"slow{k}" for k in range(20)]
                                                  + [f"again{k}" for k in range(40)])


def test_always_and_never_override_the_judgement(tmp_path, monkeypatch):
    seen = timed_writes(monkeypatch, 0.005)
    never = WriteBehind(mode="never")
    for k in range(5):
        never.put(str(tmp_path / f"n{k}"), b"x")
    assert {thread for _, thread in seen} == {threading.current_thread().name}
    seen.clear()
    always = WriteBehind(mode="always")
    always.put(str(tmp_path / "a0"), b"x")
    always.wait(always.ticket)
    assert seen == [("a0", "segconvert-write-behind")]
    always.close()
    monkeypatch.setenv(writeback.ENV, "Always")
    assert writeback.mode_from_env() == "always"
    monkeypatch.setenv(writeback.ENV, "sometimes")
    with pytest.raises(SourceError, match="SEGCONVERT_WRITE_BEHIND='sometimes'"):
        writeback.mode_from_env()
    with pytest.raises(SourceError, match="SEGCONVERT_WRITE_BEHIND"):  # a run says so before it starts
        segconvert.convert(good_dataset(tmp_path, 1), tmp_path / "out", jobs=1, **OPTS)
    assert not (tmp_path / "out").exists()


def test_the_first_failed_write_fails_its_ticket_and_every_later_one_and_drops_the_rest(tmp_path, monkeypatch):
    real = png.write_atomic
    gate = threading.Event()

    def write(path, data):
        gate.wait(30)
        if path.endswith("w2"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(path, data)

    monkeypatch.setattr(png, "write_atomic", write)
    behind = WriteBehind(mode="always")
    tickets = [behind.submit(str(tmp_path / f"w{k}"), b"x") for k in range(5)]
    gate.set()
    behind.wait(tickets[1])  # written before the failure: fine
    for t in tickets[2:]:
        with pytest.raises(OutputError, match="no space left") as info:
            behind.wait(t)
        assert str(tmp_path / "w2") in str(info.value)
    behind.put(str(tmp_path / "w9"), b"x")  # after a failure nothing more is written
    with pytest.raises(OutputError):
        behind.wait(behind.ticket)
    behind.close()
    assert sorted(os.listdir(tmp_path)) == ["w0", "w1"]


def test_close_drops_what_is_queued_and_waits_for_the_write_in_flight(tmp_path, monkeypatch):
    gate = threading.Event()
    seen = timed_writes(monkeypatch, 0.001, gate)
    behind = WriteBehind(depth=2, mode="always")
    behind.submit(str(tmp_path / "first"), b"x")
    behind.submit(str(tmp_path / "second"), b"x")
    behind.submit(str(tmp_path / "third"), b"x")  # room for two waiting: the first is in flight
    refused: list[BaseException] = []

    def submit_fourth() -> None:
        try:
            behind.submit(str(tmp_path / "fourth"), b"x")
        except RuntimeError as exc:
            refused.append(exc)

    blocked = threading.Thread(target=submit_fourth)
    blocked.start()
    time.sleep(0.05)
    assert blocked.is_alive()  # depth 2 waiting: the submit waits for room (memory stays flat)
    closer = threading.Thread(target=behind.close)
    closer.start()
    time.sleep(0.05)
    assert closer.is_alive()  # the write in flight is waited for
    gate.set()
    closer.join(10)
    blocked.join(10)
    assert not closer.is_alive() and not blocked.is_alive()
    assert [name for name, _ in seen] == ["first"]
    assert os.listdir(tmp_path) == ["first"]
    assert len(refused) == 1  # the submit that waited for room across the close is refused
    behind.wait(1)  # the one written
    with pytest.raises(OutputError, match="the run stopped before this file was written"):
        behind.wait(2)  # dropped: never reported as in place
    with pytest.raises(RuntimeError, match="after close"):
        behind.submit(str(tmp_path / "late"), b"x")


def _child(behind: WriteBehind, path: str, queue) -> None:
    behind.submit(path, b"child")
    behind.wait(behind.ticket)
    queue.put((behind.ticket, sorted(os.listdir(os.path.dirname(path)))))


def test_a_forked_child_starts_its_own_queue(tmp_path):
    """A worker forked from a process with a write-behind thread has no such thread: its first
    write starts its own, and the parent's queue is not written twice."""
    behind = WriteBehind(mode="always")
    behind.submit(str(tmp_path / "parent"), b"parent")
    behind.wait(behind.ticket)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(behind, str(tmp_path / "child"), queue))
    proc.start()
    ticket, listing = queue.get(timeout=60)
    proc.join(60)
    assert proc.exitcode == 0 and ticket == 1 and listing == ["child", "parent"]
    behind.close()


# ------------------------------------------------------------ through the pipeline


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_run_written_behind_gives_the_same_bytes(tmp_path, monkeypatch, jobs):
    src = good_dataset(tmp_path, 12)
    clean = tmp_path / "clean"
    monkeypatch.setenv(writeback.ENV, "never")
    segconvert.convert(src, clean, jobs=1, **OPTS)
    monkeypatch.setenv(writeback.ENV, "always")
    out = tmp_path / "out"
    summary = segconvert.convert(src, out, jobs=jobs, **OPTS)
    assert summary.ok and summary.converted == 12
    assert snapshot(out) == snapshot(clean)
    assert not list(out.rglob(".*.tmp"))
    assert [t.name for t in threading.enumerate() if t.name == "segconvert-write-behind"] == []  # ended


def test_a_write_behind_failure_stops_the_run_once_and_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    """The failed file's item and every one after it are not journalled (their writes were
    dropped or never made), those before it are; the same call resumes to the clean run's bytes."""
    src = good_dataset(tmp_path, 10)
    clean = tmp_path / "clean"
    segconvert.convert(src, clean, jobs=1, **OPTS)
    real = png.write_atomic
    written: list[str] = []

    def write(path, data):
        if path.endswith("img0004.png"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        written.append(os.path.basename(path))
        return real(path, data)

    monkeypatch.setenv(writeback.ENV, "always")
    monkeypatch.setattr(png, "write_atomic", write)
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="no space left") as info:
        segconvert.convert(src, out, jobs=1, **OPTS)
    assert str(out / "masks" / "img0004.png") in str(info.value)
    journal = (out / ".segconvert" / "journal.tsv").read_text().splitlines()
    done = [json.loads(line.split("\t")[0]) for line in journal]
    assert done == [f"img{k:04d}" for k in range(4)]
    assert written[:4] == [f"img{k:04d}.png" for k in range(4)]
    assert all(int(name[3:7]) < 6 for name in written)  # at most a write or two beyond, never past the queue
    time.sleep(0.05)
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(written)  # nothing after the run
    monkeypatch.setattr(png, "write_atomic", real)
    summary = segconvert.convert(src, out, jobs=1, **OPTS)
    assert summary.ok and summary.skipped == 4 and summary.converted == 6
    assert snapshot(out) == snapshot(clean)


def test_an_interrupted_run_written_behind_leaves_only_what_the_journal_says(tmp_path, monkeypatch):
    """Ctrl-C while writes wait in the queue (a slow disk): the run stops, the queued writes are
    dropped, nothing is written after convert() returns, and the same call resumes to the same bytes."""
    from segconvert.execution import pipeline

    src = good_dataset(tmp_path, 10)
    clean = tmp_path / "clean"
    segconvert.convert(src, clean, jobs=1, **OPTS)
    real_write, real_convert = png.write_atomic, pipeline.convert_item

    def slow_write(path, data):
        time.sleep(0.02)
        return real_write(path, data)

    def convert(item, plan, writer):
        if getattr(item, "reference_id", None) == "img0006":
            raise KeyboardInterrupt  # Ctrl-C, in the main thread, while earlier writes are queued
        return real_convert(item, plan, writer)

    monkeypatch.setenv(writeback.ENV, "always")
    monkeypatch.setattr(png, "write_atomic", slow_write)
    monkeypatch.setattr(pipeline, "convert_item", convert)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        segconvert.convert(src, out, jobs=1, **OPTS)
    listing = sorted(p.name for p in (out / "masks").iterdir())
    time.sleep(0.1)
    assert sorted(p.name for p in (out / "masks").iterdir()) == listing  # nothing after the run
    assert not [t for t in threading.enumerate() if t.name == "segconvert-write-behind"]
    journal = (out / ".segconvert" / "journal.tsv").read_text().splitlines()
    done = [json.loads(line.split("\t")[0]) + ".png" for line in journal]
    assert set(done) <= set(listing) and len(done) < 6  # journalled items have their files
    monkeypatch.setattr(png, "write_atomic", real_write)
    monkeypatch.setattr(pipeline, "convert_item", real_convert)
    summary = segconvert.convert(src, out, jobs=1, **OPTS)
    assert summary.ok and summary.converted + summary.skipped == 10
    assert snapshot(out) == snapshot(clean)


def test_a_thread_that_dies_fails_the_writes_it_owes_instead_of_hanging(tmp_path, monkeypatch):
    """Whatever escapes a write in the thread (here a BaseException) is that write's failure:
    wait() raises, never waits for a thread that is gone."""
    def write(path, data):
        raise SystemExit("gone")

    monkeypatch.setattr(png, "write_atomic", write)
    behind = WriteBehind(mode="always")
    t = behind.submit(str(tmp_path / "x"), b"x")
    with pytest.raises(OutputError, match="unexpected SystemExit"):
        behind.wait(t)
    behind.close()


def test_a_slow_file_system_is_written_behind_on_its_own(tmp_path, monkeypatch):
    """auto: a run whose writes take 0.5 ms each hands them to the thread after the first few."""
    src = good_dataset(tmp_path, 12)
    seen = timed_writes(monkeypatch, 0.0005)
    monkeypatch.setenv(writeback.ENV, "auto")
    summary = segconvert.convert(src, tmp_path / "out", jobs=1, **OPTS)
    assert summary.ok
    threads = [thread for _, thread in seen]
    assert threads[0] == threading.current_thread().name and threads[-1] == "segconvert-write-behind"


def test_write_atomic_reports_the_time_of_its_system_calls(tmp_path):
    seconds = png.write_atomic(tmp_path / "m.png", b"x" * 1000)
    assert 0 < seconds < 5 and Path(tmp_path / "m.png").read_bytes() == b"x" * 1000


def test_a_write_in_flight_that_fails_after_close_fails_its_own_ticket(tmp_path, monkeypatch):
    """close() drops the queue while a write is in flight; that write then fails: a wait for its
    ticket raises its failure, never passes."""
    gate = threading.Event()

    def write(path, data):
        gate.wait(30)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(png, "write_atomic", write)
    behind = WriteBehind(mode="always")
    first = behind.submit(str(tmp_path / "a"), b"x")
    behind.submit(str(tmp_path / "b"), b"x")
    time.sleep(0.05)  # "a" in flight, "b" queued
    closer = threading.Thread(target=behind.close)
    closer.start()
    time.sleep(0.05)
    gate.set()
    closer.join(10)
    with pytest.raises(OutputError, match="no space left") as info:
        behind.wait(first)
    assert str(tmp_path / "a") in str(info.value)
