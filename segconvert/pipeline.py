"""Run items through load → mode → write in worker processes, in order, resumably.

Why it is shaped like this:
- The main process only iterates the reader (light items) and appends one journal
  line per finished item; decoding, packing and encoding happen in workers, so two
  processes go nearly twice as fast as one.
- At most a few batches are in flight, so memory does not grow with the dataset
  (``Pool.imap`` would pull the whole reader into its task queue).
- Results are consumed in submission order, so the journal — and the files built from
  it — are the same bytes for any ``jobs``.
- Every finished item is in the journal (``OUTPUT/.segconvert/journal.tsv``) once its
  files are in place, with the size and CRC-32 of each file. A re-run skips an item
  only while its files still match (checked in the workers); a run killed at any
  instant (even SIGKILL) leaves at most a half line at the end, which the next run cuts
  off. The dataset-wide files are rebuilt from the journal, in source order, at the end.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segconvert.errors import ItemError, SourceError
from segconvert.format import Reader, Writer, Written
from segconvert.ir import FailedItem, Item
from segconvert.modes import ModePlan
from segconvert.nametable import NameTable
from segconvert.paths import name_key
from segconvert.storage import FileStamp

BATCH = 8  # items per task: amortises pickling without holding much back
SHOWN = 50  # failures / warnings kept in memory for the summary; all go to the report
JOURNAL_VERSION = 2  # lines: reference_id TAB file stamps TAB record


@dataclass
class Outcome:
    """What a worker sends back for one item: small (a JSON line, some strings)."""

    reference_id: str
    source: str | None
    record: str | None = None
    files: tuple[FileStamp, ...] = ()
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: the earlier run's files still match their stamps: nothing was converted
    reused: bool = False


@dataclass
class Summary:
    total: int = 0
    converted: int = 0
    skipped: int = 0
    failed: int = 0
    warned: int = 0
    failures: list[str] = field(default_factory=list)  # the first SHOWN messages
    warnings: list[str] = field(default_factory=list)  # the first SHOWN messages
    seconds: float = 0.0
    report: Path | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0


# ---------------------------------------------------------------- worker side

_worker: tuple[ModePlan, Writer] | None = None


def _tune_malloc() -> None:
    """Keep freed image buffers in the heap instead of returning them to the OS each image.

    glibc serves 1 MB arrays with mmap and unmaps them on free, so every image pays
    ~1,500 page faults for buffers the same size as the last one's (measured: decode +
    lookup 4.3 ms instead of 2.1). Raising the thresholds makes the heap reuse them.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)  # the running process' libc (find_library would spawn ldconfig)
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 256 << 20)
        libc.mallopt(m_trim_threshold, 512 << 20)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _tune_process() -> None:
    """Per-process settings for converting one image after another."""
    _tune_malloc()
    if "cv2" in sys.modules:  # a converter imported OpenCV itself: one thread, as segconvert.opencv sets
        from segconvert.opencv import cv2

        cv2()


def _init_worker(plan: ModePlan, writer: Writer) -> None:
    global _worker
    _worker = (plan, writer)
    _tune_process()


@dataclass
class _Check:
    """An item an earlier run finished: reuse its files if they still match, else redo it."""

    item: Item
    offset: int
    files: tuple[FileStamp, ...]

    @property
    def reference_id(self) -> str:
        return self.item.reference_id


def _still_done(task: _Check, writer: Writer) -> bool:
    if not task.files:  # a writer without stamps: its own existence check
        return writer.item_done(task.reference_id)
    return all(writer.store.matches(stamp) for stamp in task.files)


def convert_item(item: Item | _Check, plan: ModePlan, writer: Writer) -> Outcome:
    """load → mode → write for one item; every failure becomes an Outcome, never an exception."""
    if isinstance(item, _Check):
        if _still_done(item, writer):
            return Outcome(item.reference_id, item.item.source, reused=True)
        item = item.item
    out = Outcome(item.reference_id, item.source)
    try:
        seg = item.load()
        view = plan.apply(seg)
        written = writer.write(view)
        if isinstance(written, Written):
            out.record, out.files = written.record, written.files
        else:
            out.record = written
        out.warnings = view.warnings
    except ItemError as exc:
        out.error = str(exc.located(item=item.reference_id, file=item.source))
    except MemoryError:
        out.error = f"{item.source} [{item.reference_id}]: out of memory converting this image"
    except Exception as exc:  # a bug or an input we did not foresee: report it, keep going
        out.error = (
            f"{item.source} [{item.reference_id}]: unexpected {type(exc).__name__}: {exc} "
            "(please report this with the file)"
        )
    return out


def _convert_batch(items: list[Item | _Check]) -> list[Outcome]:
    assert _worker is not None, "worker not initialised"
    plan, writer = _worker
    return [convert_item(it, plan, writer) for it in items]


# ---------------------------------------------------------------- journal


class Journal:
    """Append-only ``reference_id <TAB> file stamps <TAB> record`` lines, one per finished item.

    An item converted again (its files no longer matched) gets a new line; the last line
    of a reference_id is the one that counts.
    """

    def __init__(self, state_dir: Path, settings: dict[str, Any], fresh: bool, output: object = None) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "journal.tsv"
        settings_path = state_dir / "settings.json"
        self.done: dict[str, tuple[int, tuple[FileStamp, ...]]] = {}  # reference_id -> (offset, stamps)
        settings = {**settings, "journal": JOURNAL_VERSION}
        settings = json.loads(json.dumps(settings, default=str))  # compare as stored
        if not fresh and self.path.exists() and settings_path.exists():
            before = json.loads(settings_path.read_text())
            if before != settings:
                diff = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
                raise SourceError(
                    f"{output or state_dir.parent} holds a conversion made with other settings ({', '.join(diff)}); "
                    "pass --overwrite to redo it, or choose another OUTPUT"
                )
            self._load()
        else:
            self.path.write_bytes(b"")
            settings_path.write_text(json.dumps(settings, indent=1, sort_keys=True))
        self._fh = open(self.path, "ab")
        self._end = self._fh.seek(0, os.SEEK_END)  # offsets kept here: no lseek per line

    def _load(self) -> None:
        with open(self.path, "rb+") as fh:
            offset = 0
            for line in fh:
                if not line.endswith(b"\n"):  # cut off by a kill: that item is redone
                    fh.truncate(offset)
                    break
                ref, files, _ = line.split(b"\t", 2)
                stamps = tuple(FileStamp.from_json(row) for row in json.loads(files))
                self.done[json.loads(ref)] = (offset, stamps)
                offset += len(line)

    def append(self, reference_id: str, record: str, files: tuple[FileStamp, ...] = ()) -> int:
        offset = self._end
        stamps = json.dumps([f.to_json() for f in files], separators=(",", ":"))
        line = f"{json.dumps(reference_id)}\t{stamps}\t{record}\n".encode()
        self._fh.write(line)
        self._fh.flush()  # in the OS once flushed: survives the process being killed
        self._end += len(line)
        return offset

    def records(self, offsets: Iterable[int]) -> Iterator[str]:
        self._fh.flush()
        with open(self.path, "rb") as fh:
            expected = 0
            for offset in offsets:
                if offset != expected:
                    fh.seek(offset)
                line = fh.readline()
                expected = offset + len(line)
                yield line.split(b"\t", 2)[2].rstrip(b"\n").decode()

    def close(self) -> None:
        self._fh.close()


# ---------------------------------------------------------------- main side


def _ordered_outcomes(
    tasks: Iterable[Item | _Check], plan: ModePlan, writer: Writer, jobs: int,
    executor: str | None = None, source: str = "",
) -> Iterator[Outcome]:
    """Outcomes in task order; with jobs > 1 batches run in worker processes, a few at a time
    (finished items too: checking their files' stamps reads them, which is worth sharing);
    with a Dask ``executor`` (segconvert.executors) on the cluster's workers."""
    dask = executor not in (None, "local")
    if jobs <= 1 and not dask:
        _tune_process()
        for task in tasks:
            yield convert_item(task, plan, writer)
        return
    from segconvert.workers import WorkerPool

    def batches() -> Iterator[list[Item | _Check]]:
        batch: list[Item | _Check] = []
        for task in tasks:
            batch.append(task)
            if len(batch) == BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    if dask:
        from segconvert.executors import dask_map

        assert executor is not None
        for results in dask_map(executor, jobs, plan, writer, batches(), source):
            yield from results
        return
    with WorkerPool(jobs, _init_worker, (plan, writer), _convert_batch) as pool:
        for results in pool.imap(batches()):
            yield from results


def run(
    reader: Reader,
    writer: Writer,
    plan: ModePlan,
    *,
    jobs: int = 1,
    overwrite: bool = False,
    settings: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    executor: str | None = None,
) -> Summary:
    """Convert every item of ``reader`` into ``writer``; return counts and messages.

    ``executor``: None or "local" for worker processes here, "dask" or a scheduler address
    (tcp://host:8786) for a Dask cluster (see :mod:`segconvert.executors`)."""
    start = time.perf_counter()
    try:
        writer.prepare()
        writer.store.check()  # a missing bucket or bad credentials: one clear error, before any work
        journal = Journal(writer.state_dir, settings or {}, fresh=overwrite, output=writer.output)
    except OSError as exc:
        raise SourceError(f"cannot write the output there: {exc.strerror or exc}", file=writer.output) from None
    summary = Summary(report=writer.state_dir / "report.jsonl")
    start_progress = getattr(progress, "start", None)
    if start_progress is not None:
        start_progress(len(reader))
    order = array("q")  # journal offsets of the items that made it, in source order
    seen = NameTable()  # name_key -> (reference_id, source), ~32 bytes per item (a dict: ~250)
    offsets: dict[str, int] = {}  # reference_id -> journal offset of an item checked for reuse

    def tasks() -> Iterator[Item | _Check]:
        for item in reader.items():
            ref = item.reference_id
            key = name_key(ref) if isinstance(ref, str) else ref
            earlier = seen.get(key)
            if earlier is not None and not isinstance(item, FailedItem):  # a reader's own failure says it better
                same = "also the name of" if earlier[0] == ref else f"the name of {earlier[0]!r} but for case:"
                err = ItemError(
                    f"reference_id {ref!r} is {same} {earlier[1] or 'an earlier item'}; "
                    "its output would overwrite that one's",
                    item=ref, file=item.source,
                )
                yield FailedItem(ref, err, source=item.source)
                continue
            seen[key] = (ref, item.source)
            done = journal.done.get(ref) if not isinstance(item, FailedItem) else None  # a failure is never done
            if done is not None:
                offsets[ref] = done[0]
                yield _Check(item, done[0], done[1])
            else:
                yield item

    try:
        with open(summary.report, "w", encoding="utf-8") as report:
            for outcome in _ordered_outcomes(tasks(), plan, writer, jobs, executor, str(reader.source)):
                summary.total += 1
                if outcome.reused:
                    summary.skipped += 1
                    order.append(offsets.pop(outcome.reference_id))
                elif outcome.error is not None:
                    summary.failed += 1
                    _note(summary.failures, report, "failed", outcome.reference_id, outcome.error)
                else:
                    assert outcome.record is not None
                    summary.converted += 1
                    offsets.pop(outcome.reference_id, None)
                    order.append(journal.append(outcome.reference_id, outcome.record, outcome.files))
                    writer.store.mirror_state(writer.state_dir)  # object storage: every 30 s
                if outcome.warnings:
                    summary.warned += 1
                    where = f"{outcome.source} [{outcome.reference_id}]"
                    for w in outcome.warnings:
                        _note(summary.warnings, report, "warning", outcome.reference_id, f"{where}: {w}")
                if progress is not None:
                    progress(1)
        try:
            writer.finish(journal.records(order))
        except OSError as exc:
            raise SourceError(
                f"cannot write the dataset files: {exc.strerror or exc}; the converted items are kept, "
                "run the same command again to finish", file=writer.output,
            ) from None
    finally:
        journal.close()
    writer.store.mirror_state(writer.state_dir, force=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _note(shown: list[str], report: Any, status: str, ref: str, message: str) -> None:
    if len(shown) < SHOWN:
        shown.append(message)
    report.write(json.dumps({"status": status, "reference_id": ref, "message": message}) + "\n")


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
