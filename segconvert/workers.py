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

import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

from segconvert.errors import SourceError

WORKER_DIED = (
    "a worker process died (killed, or out of memory); run the same command again to resume "
    "where it stopped, with fewer --jobs if memory is short"
)


def _serve(conn: Connection, setup: Callable[..., None], setup_args: tuple[Any, ...],
           handler: Callable[[Any], Any]) -> None:
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


class WorkerPool:
    """``jobs`` processes, each running ``setup(*setup_args)`` once and ``handler(batch)`` per batch."""

    def __init__(self, jobs: int, setup: Callable[..., None], setup_args: tuple[Any, ...],
                 handler: Callable[[Any], Any], depth: int = 2) -> None:
        self.depth = depth
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        ctx = mp.get_context()
        for _ in range(jobs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, setup, setup_args, handler), daemon=True)
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
