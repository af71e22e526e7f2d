"""A small process pool: batches go out over pipes, results come back in order.

Why not ``concurrent.futures``: with two cores, the main process competes with the
workers for CPU, and the executor's queue-feeder and result threads cost the main
process ~0.5 ms per image in pickling hand-offs and GIL switches (measured: 0.72 ms
of main-process CPU per image, of which the reader itself is ~0.2). Here the main
thread alone sends each batch straight down a worker's pipe and reads replies with
``multiprocessing.connection.wait``; nothing else runs in the main process.

Each worker has at most ``depth`` batches outstanding, so it never waits for the main
process and memory stays bounded; results are re-ordered by sequence number.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from segconvert.errors import SourceError

T = TypeVar("T")

WORKER_DIED = (
    "a worker process died (killed, or out of memory); run the same command again to resume "
    "where it stopped, with fewer --jobs if memory is short"
)


PR_SET_PDEATHSIG = 1
PARENT_CHECK_SECONDS = 2.0


def _die_with_parent(parent_pid: int) -> None:
    """End this worker when the main process ends, however it ends (even SIGKILL).

    On Linux the kernel sends SIGKILL on the parent's death (``PR_SET_PDEATHSIG``); a
    parent that died before that was set is caught by comparing ``getppid``. Elsewhere
    a thread checks ``getppid`` every few seconds. (A worker blocked in ``recv`` also
    sees EOF then, since no other process holds the main process' pipe ends: see
    ``_serve``.)
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
        else:
            if os.getppid() != parent_pid:
                os._exit(1)
            return

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            threading.Event().wait(PARENT_CHECK_SECONDS)

    threading.Thread(target=watch, daemon=True).start()


def _serve(conn: Connection, inherited: list[Connection], parent_pid: int, setup: Callable[..., None],
           setup_args: tuple[Any, ...], handler: Callable[[Any], Any]) -> None:
    # Ctrl-C goes to the whole process group: the main process stops the workers, which
    # must not print tracebacks of their own. SIGTERM (how the pool stops a worker) and
    # SIGHUP end it quietly, whatever Python handlers the main process had when it forked,
    # unless the run ignores them (nohup): then the workers do too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file size limit: EFBIG, reported as an output error
    for other in inherited:  # the main process' ends, forked into this worker: close them, or
        other.close()  # no worker would see EOF when the main process dies
    _die_with_parent(parent_pid)
    setup(*setup_args)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the main process is gone
            return
        if message is None:
            return
        seq, batch = message
        conn.send((seq, handler(batch)))


def batched(tasks: Iterable[T], size: int) -> Iterator[list[T]]:
    """``tasks`` in lists of ``size`` (the last one shorter): what the pool's callers send
    (itertools.batched, which gives tuples, is Python 3.12+)."""
    batch: list[T] = []
    for task in tasks:
        batch.append(task)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class WorkerPool:
    """``jobs`` processes, each running ``setup(*setup_args)`` once and ``handler(batch)`` per batch."""

    def __init__(self, jobs: int, setup: Callable[..., None], setup_args: tuple[Any, ...],
                 handler: Callable[[Any], Any], depth: int = 2) -> None:
        self.depth = depth
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        ctx = mp.get_context()
        forks = ctx.get_start_method() == "fork"  # only then do workers inherit the main process' ends
        for _ in range(jobs):
            parent, child = ctx.Pipe()
            inherited = [*self._conns, parent] if forks else []
            proc = ctx.Process(target=_serve, args=(child, inherited, os.getpid(), setup, setup_args, handler),
                               daemon=True)
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)

    def imap(self, batches: Iterable[Any]) -> Iterator[Any]:
        """``handler(batch)`` for every batch, in the order given."""
        source = iter(batches)
        outstanding = dict.fromkeys(self._conns, 0)
        done: dict[int, Any] = {}
        sent = yielded = 0
        exhausted = False
        sentinels = {proc.sentinel: proc for proc in self._procs}
        while True:
            while not exhausted:
                conn = min(self._conns, key=outstanding.__getitem__)
                if outstanding[conn] >= self.depth:
                    break
                try:
                    batch = next(source)
                except StopIteration:
                    exhausted = True
                    break
                try:
                    conn.send((sent, batch))
                except OSError:
                    raise SourceError(WORKER_DIED) from None
                outstanding[conn] += 1
                sent += 1
            while yielded in done:
                yield done.pop(yielded)
                yielded += 1
            if exhausted and yielded == sent:
                return
            # every worker has `depth` batches (or the source is done): wait for replies
            for ready in wait([*self._conns, *sentinels]):
                if ready in sentinels:  # workers only end when closed: this one died
                    raise SourceError(WORKER_DIED)
                assert isinstance(ready, Connection)
                try:
                    seq, result = ready.recv()
                except (EOFError, OSError):
                    raise SourceError(WORKER_DIED) from None
                outstanding[ready] -= 1
                done[seq] = result

    def close(self, *, kill: bool = False) -> None:
        for conn, proc in zip(self._conns, self._procs):
            if not kill:
                try:
                    conn.send(None)
                except OSError:
                    pass
            conn.close()
            proc.join(timeout=0 if kill else 10)
            if proc.is_alive():
                proc.terminate()
                proc.join()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(kill=exc_type is not None)
