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
import signal
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from segconvert.codecs import limits
from segconvert.errors import ItemError, OutputError, SourceError, opt
from segconvert.execution.nametable import NameTable
from segconvert.interfaces.format import Reader, Writer, Written
from segconvert.io import paths
from segconvert.io.paths import name_key
from segconvert.io.storage import FileStamp, output_error, unlock
from segconvert.io.writeback import WriteBehind, mode_from_env
from segconvert.model.ir import FailedItem, Item
from segconvert.model.modes import ModePlan

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
    #: for the report: the file the error is about, the reason alone, and its kind
    #: ("input": the item's data; "out-of-memory"; "bug": unexpected, please report)
    error_file: str | None = None
    error_reason: str | None = None
    error_kind: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: the earlier run's files still match their stamps: nothing was converted
    reused: bool = False
    #: the output cannot be written: the run stops with this error
    fatal: OutputError | None = None


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
    #: items existed but none converted, so the dataset-wide files were left as they were
    #: (an --overwrite run whose every item fails must not empty a good annotations.jsonl)
    dataset_files_kept: bool = False

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
    if "cv2" in sys.modules:  # a converter imported OpenCV itself: one thread, as segconvert.codecs.opencv sets
        from segconvert.codecs.opencv import cv2

        cv2()


def _init_worker(plan: ModePlan, writer: Writer, max_pixels: int | None = None,
                 allow_outside_paths: bool = False) -> None:
    global _worker
    _worker = (plan, writer)
    limits.set_max_pixels(max_pixels)  # the run's policies, whatever the start method
    paths.set_allow_outside(allow_outside_paths)
    _tune_process()


@dataclass
class _Check:
    """An item an earlier run finished: reuse its files if they still match, else redo it."""

    item: Item
    offset: int
    files: tuple[FileStamp, ...]
    #: not to be checked (--only-failed leaves the items it was not asked for as they are)
    trusted: bool = False

    @property
    def reference_id(self) -> str:
        return self.item.reference_id


def _still_done(task: _Check, writer: Writer) -> bool:
    if task.trusted:
        return True
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
    except OutputError as exc:  # OUTPUT is full / read-only / ...: the run stops, not this item
        out.fatal = exc
    except ItemError as exc:
        exc.located(item=item.reference_id, file=item.source)
        out.error, out.error_file, out.error_reason, out.error_kind = str(exc), exc.file, exc.message, "input"
    except MemoryError:
        _failed(out, item, "out of memory converting this image", "out-of-memory")
    except Exception as exc:  # a bug or an input we did not foresee: report it, keep going
        _failed(out, item, f"unexpected {type(exc).__name__}: {exc} (please report this with the file)", "bug")
    return out


def _failed(out: Outcome, item: Item, reason: str, kind: str) -> None:
    out.error = f"{item.source} [{item.reference_id}]: {reason}"
    out.error_file, out.error_reason, out.error_kind = item.source, reason, kind


def _settled(out: Outcome, ticket: int, behind: WriteBehind) -> Outcome:
    """``out`` once the files written so far (up to its ``ticket``) are in place; ``fatal``
    if one of them failed: the run stops there, and this item is not counted done."""
    if out.fatal is None:
        try:
            behind.wait(ticket)
        except OutputError as exc:
            out.fatal = exc
    return out


_process_writes: WriteBehind | None = None  # a worker process' own, kept from batch to batch


def convert_batch(items: Iterable[Item | _Check], plan: ModePlan, writer: Writer) -> list[Outcome]:
    """``convert_item`` for each item of a worker's batch, the files written behind when the
    file system is slow (:mod:`segconvert.io.writeback`; one per process, so that it keeps its
    judgement of the file system from batch to batch); every outcome is returned only after
    its files are in place, so nothing of the batch is still being written once it returns."""
    global _process_writes
    behind = _process_writes
    if behind is None or behind.closed:
        behind = _process_writes = WriteBehind()
    with writer.store.writing_behind(behind):
        done = [(convert_item(it, plan, writer), behind.ticket) for it in items]
    return [_settled(out, ticket, behind) for out, ticket in done]


def _convert_batch(items: list[Item | _Check]) -> list[Outcome]:
    assert _worker is not None, "worker not initialised"
    plan, writer = _worker
    return convert_batch(items, plan, writer)


def _converted_in_process(tasks: Iterable[Item | _Check], plan: ModePlan, writer: Writer) -> Iterator[Outcome]:
    """The outcomes of converting here, one item behind: item k is reported (and so
    journalled) once its files are in place, while item k + 1 converts -- and, on a slow
    file system, the write-behind thread writes item k's files meanwhile (creating a file
    there is 0.1 to 1 ms of kernel time: overlapped, not added to the run). Nothing is
    written once this generator is closed."""
    behind = WriteBehind()
    try:
        with writer.store.writing_behind(behind):
            held: tuple[Outcome, int] | None = None
            for task in tasks:
                out = convert_item(task, plan, writer)
                if held is not None:
                    yield _settled(*held, behind)
                held = (out, behind.ticket)
            if held is not None:
                yield _settled(*held, behind)
    finally:
        behind.close()


# ---------------------------------------------------------------- journal


_SETTING_NAMES = {"from": "--from", "to": "--to", "mode": "--mode", "index": "--index", "source": "SOURCE",
                  "journal": "journal version"}


def _differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    """Which settings differ, as the options a user typed: ``--mode 'panoptic' then, 'semantic' now``
    (format options are named one by one, not as "options")."""
    rows = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if old == new:
            continue
        if key == "options" and isinstance(old, dict) and isinstance(new, dict):
            for opt in sorted(set(old) | set(new)):
                if old.get(opt) != new.get(opt):
                    rows.append(f"--{opt.replace('_', '-')}: {old.get(opt)!r} then, {new.get(opt)!r} now")
            continue
        rows.append(f"{_SETTING_NAMES.get(key, key)}: {old!r} then, {new!r} now")
    return "; ".join(rows)


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
                changed = _differences(before, settings)
                raise SourceError(
                    f"{output or state_dir.parent} holds a conversion made with other settings ({changed}); "
                    f"pass {opt('overwrite', True)} to redo it with these, or choose another OUTPUT"
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
        # orjson (once per item; json.dumps with separators builds an encoder per call): the same text
        # as json.dumps for ASCII without DEL, which json escapes; anything else goes through json
        try:
            ref, stamps = orjson.dumps(reference_id), orjson.dumps([f.to_json() for f in files])
        except orjson.JSONEncodeError:  # a lone surrogate, an integer past 64 bits: json's way below
            ref = stamps = b"\x7f"
        if ref.isascii() and stamps.isascii() and b"\x7f" not in ref and b"\x7f" not in stamps:
            line = b"%s\t%s\t%s\n" % (ref, stamps, record.encode())
        else:
            text = json.dumps([f.to_json() for f in files], separators=(",", ":"))
            line = f"{json.dumps(reference_id)}\t{text}\t{record}\n".encode()
        try:
            self._fh.write(line)
            self._fh.flush()  # in the OS once flushed: survives the process being killed
        except OSError as exc:  # a half line, if any, is cut off by the next run
            raise output_error(exc, self.path) from None
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
        try:
            self._fh.close()
        except OSError:  # the flush of a line that did not fit: already reported, cut off next run
            pass


# ---------------------------------------------------------------- main side


def _ordered_outcomes(
    tasks: Iterable[Item | _Check], plan: ModePlan, writer: Writer, jobs: int,
    executor: str | None = None, source: str = "",
) -> Iterator[Outcome]:
    """Outcomes in task order; with jobs > 1 batches run in worker processes, a few at a time
    (finished items too: checking their files' stamps reads them, which is worth sharing);
    with a Dask ``executor`` (segconvert.execution.executors) on the cluster's workers."""
    dask = executor not in (None, "local")
    if jobs <= 1 and not dask:
        _tune_process()
        yield from _converted_in_process(tasks, plan, writer)
        return
    from segconvert.execution.workers import WorkerPool, batched

    if dask:
        from segconvert.execution.executors import dask_map

        assert executor is not None
        for results in dask_map(executor, jobs, plan, writer, batched(tasks, BATCH), source):
            yield from results
        return
    with WorkerPool(jobs, _init_worker, (plan, writer, limits.max_pixels(), paths.allow_outside()),
                    _convert_batch) as pool:
        for results in pool.imap(batched(tasks, BATCH)):
            yield from results


@contextmanager
def policies(max_pixels: int | None, allow_outside_paths: bool) -> Iterator[None]:
    """The run's process-wide checks (``--max-pixels``, ``--allow-outside-paths``) for the length
    of a block, restored after it (a library caller's next run starts from the defaults)."""
    before = limits.max_pixels(), paths.allow_outside()
    limits.set_max_pixels(max_pixels)
    paths.set_allow_outside(allow_outside_paths)
    try:
        yield
    finally:
        limits.set_max_pixels(before[0])
        paths.set_allow_outside(before[1])


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP during a run: stopped like Ctrl-C (finished items kept, resumable)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


@contextmanager
def _run_signals() -> Iterator[None]:
    """For the length of a run: SIGTERM and SIGHUP stop it as Ctrl-C does (the workers are
    stopped, the journal keeps what finished), and SIGXFSZ is ignored, so a write past a
    file size limit fails with EFBIG, reported as an output error, instead of killing the
    process. Only from the main thread (signal handlers can be set nowhere else)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signal.SIGTERM: _raise_interrupted, signal.SIGHUP: _raise_interrupted, signal.SIGXFSZ: signal.SIG_IGN}
    # a signal the caller ignores stays ignored: under nohup a hangup must not stop the run
    handlers = {sig: h for sig, h in handlers.items() if signal.getsignal(sig) is not signal.SIG_IGN}
    before = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


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
    max_pixels: int | None = None,
    allow_outside_paths: bool = False,
    report: str | os.PathLike[str] | None = None,
    only: set[str] | None = None,
) -> Summary:
    """Convert every item of ``reader`` into ``writer``; return counts and messages.

    OUTPUT is locked for the whole run (a second run into it stops at once). ``only``:
    convert just these reference_ids (``--only-failed``); the other items finished before
    stay in the dataset files as they are, unchecked. ``report``: where the JSON lines of
    every failure and warning go besides ``OUTPUT/.segconvert/report.jsonl``.
    ``executor``: None or "local" for worker processes here, "dask" or a scheduler address
    (tcp://host:8786) for a Dask cluster (see :mod:`segconvert.execution.executors`).
    Raises SourceError for the run as a whole (OutputError when OUTPUT cannot be written:
    the finished items are kept and the same call resumes).
    """
    start = time.perf_counter()
    mode_from_env()  # a mistyped SEGCONVERT_WRITE_BEHIND: one clear error before anything is written
    writer.store.check()  # a missing bucket or bad credentials: one clear error, before anything else
    lock = writer.store.lock()
    try:
        with _run_signals(), policies(max_pixels, allow_outside_paths):
            return _run_locked(reader, writer, plan, jobs=jobs, overwrite=overwrite, settings=settings,
                               progress=progress, report=report, only=only, start=start, executor=executor)
    finally:
        unlock(lock)


def _run_locked(
    reader: Reader, writer: Writer, plan: ModePlan, *, jobs: int, overwrite: bool, settings: dict[str, Any] | None,
    progress: Callable[[int], None] | None, report: str | os.PathLike[str] | None, only: set[str] | None,
    start: float, executor: str | None = None,
) -> Summary:
    writer.store.remove_stale_temps()
    try:
        writer.prepare()
        journal = Journal(writer.state_dir, settings or {}, fresh=overwrite, output=writer.output)
    except SourceError:
        raise
    except OSError as exc:
        raise output_error(exc, writer.output) from None
    summary = Summary(report=writer.state_dir / "report.jsonl")
    start_progress = getattr(progress, "start", None)
    if start_progress is not None and getattr(progress, "wants_total", True):  # a count can cost a pass
        start_progress(len(only) if only is not None else len(reader))
    order = array("q")  # journal offsets of the items that made it, in source order
    seen = NameTable()  # name_key -> (reference_id, source), ~32 bytes per item (a dict: ~250)
    offsets: dict[str, int] = {}  # reference_id -> journal offset of an item checked for reuse

    def tasks() -> Iterator[Item | _Check]:
        for item in reader.items():
            ref = item.reference_id
            if only is not None and ref not in only:
                kept = journal.done.get(ref)
                if kept is not None:  # finished before and not asked for: stays as it is, unchecked
                    offsets[ref] = kept[0]
                    yield _Check(item, kept[0], kept[1], trusted=True)
                continue
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

    reports = [summary.report, *([Path(report)] if report is not None else [])]
    try:
        # the outcomes are closed on the way out, whatever stops the loop: no file is written after it
        with _Reports(reports) as rep, \
                closing(_ordered_outcomes(tasks(), plan, writer, jobs, executor, str(reader.source))) as outcomes:
            for outcome in outcomes:
                if outcome.fatal is not None:
                    raise outcome.fatal
                summary.total += 1
                if outcome.reused:
                    summary.skipped += 1
                    order.append(offsets.pop(outcome.reference_id))
                elif outcome.error is not None:
                    summary.failed += 1
                    if len(summary.failures) < SHOWN:
                        summary.failures.append(outcome.error)
                    rep.write({"status": "failed", "reference_id": outcome.reference_id,
                               "item": outcome.reference_id, "file": outcome.error_file,
                               "reason": outcome.error_reason, "kind": outcome.error_kind,
                               "message": outcome.error})
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
                        message = f"{where}: {w}"
                        if len(summary.warnings) < SHOWN:
                            summary.warnings.append(message)
                        rep.write({"status": "warning", "reference_id": outcome.reference_id,
                                   "item": outcome.reference_id, "file": outcome.source, "reason": w,
                                   "kind": "warning", "message": message})
                if progress is not None:
                    progress(1)
        if not order and summary.failed:
            summary.dataset_files_kept = True  # nothing to write: keep what an earlier run made
        else:
            try:
                writer.finish(journal.records(order))
            except SourceError:
                raise
            except OSError as exc:
                raise output_error(exc, writer.output) from None
    finally:
        journal.close()
    writer.store.mirror_state(writer.state_dir, force=True)
    summary.seconds = time.perf_counter() - start
    return summary


class _Reports:
    """The report files of a run, written line by line (a killed run's report is as far as it got)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self._files: list[Any] = []

    def __enter__(self) -> _Reports:
        for path in self.paths:
            try:
                self._files.append(open(path, "w", encoding="utf-8"))
            except IsADirectoryError:
                self.__exit__()
                raise SourceError("the report file is a folder: name a file", file=path) from None
            except FileNotFoundError:
                self.__exit__()
                raise SourceError("cannot write the report there: its folder does not exist", file=path) from None
            except OSError as exc:
                self.__exit__()
                raise output_error(exc, path) from None
        return self

    def write(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, ensure_ascii=False) + "\n"
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a name that is not UTF-8 (a file named b"\xff.json"): escaped, as
            line = json.dumps(row) + "\n"  # JSON allows, so that read_failed gets the same string back
        for fh, path in zip(self._files, self.paths):
            try:
                fh.write(line)
            except OSError as exc:
                raise output_error(exc, path) from None

    def __exit__(self, exc_type: object = None, *_: object) -> None:
        files, self._files = self._files, []
        for fh, path in zip(files, self.paths):
            try:
                fh.close()
            except OSError as exc:
                if exc_type is None:
                    raise output_error(exc, path) from None


def read_failed(report: str | os.PathLike[str]) -> set[str]:
    """The reference_ids a report (``--report FILE`` or ``OUTPUT/.segconvert/report.jsonl``) lists as failed."""
    failed: set[str] = set()
    try:
        with open(report, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    if row["status"] == "failed":
                        failed.add(str(row["reference_id"]))
                except (ValueError, KeyError, TypeError):
                    raise SourceError(f"line {n} is not a segconvert report line", file=report) from None
    except IsADirectoryError:
        raise SourceError("is a folder; --only-failed takes a report file (--report FILE)", file=report) from None
    except OSError as exc:
        raise SourceError(f"cannot read the report: {exc.strerror or exc}", file=report) from None
    return failed


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
