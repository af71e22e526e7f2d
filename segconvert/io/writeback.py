"""Write-behind: when the file system is slow, output files are written by one thread while
the next item converts.

Creating a file costs what the file system makes it cost, and that is kernel time the
conversion itself does not need: 0.03 ms on tmpfs, 0.05 to 1 ms per file on the ext4 of
the VMs this was measured on (``benchmarks/bench.py`` measures it in the output folder
every run), as much as decoding and encoding a 640x480 mask on a bad minute. Handing the
bytes to a thread is not free either: waking it and passing the GIL back and forth cost
~0.04 ms of CPU per file (measured on 2 cores). So :meth:`WriteBehind.put` judges the file
system by the time its system calls take (``png.write_atomic`` returns it, measured in C
with the GIL released): writes are made in place while they average under ``INLINE_MS``,
and go behind, to the thread, once they average over ``BEHIND_MS`` (and back again). The
thread writes them atomically (``png.write_atomic``, as ``OutputStore.put`` always has), in
order, while the process decodes and encodes the next image.

What does not change:

- **An item is journalled only after its files are in place.** Each queued write gets a
  ticket; the pipeline notes the last ticket an item was given and ``wait`` for it
  before it reports the item done, so a run killed at any point leaves in the journal only
  items whose files were renamed into place, and resumes to the same bytes.
- **Output failures stop the run once.** The first failed write (disk full, read-only,
  ``ulimit -f``) drops every write queued after it, and ``wait`` for any of those tickets
  raises the ``OutputError`` that names the file; the items before it are unaffected. A
  write made in place fails in place, as it always did.
- **Nothing is written after the run.** ``close`` drops what is still queued and waits for
  the write in flight, so a library caller that gets its summary (or its exception) back
  finds OUTPUT as the journal says, and the OUTPUT lock is released over a quiet folder.
- **Memory stays flat.** At most ``depth`` writes wait at any time; ``submit`` blocks
  beyond that (a file system slower than the conversion sets the pace, as without it).

``SEGCONVERT_WRITE_BEHIND`` overrides the judgement: ``always`` (every write goes to the
thread: a network file system known to be slow), ``never`` (every write in place, as before
write-behind existed), ``auto`` (the default).

One instance per process and run; a forked child never inherits a parent's queue or
thread (``submit`` starts afresh in a new process). Object storage is not written behind
(each PUT is already a network round trip the store library handles).
"""

from __future__ import annotations

import os
import threading
from collections import deque

from segconvert.codecs import png
from segconvert.errors import OutputError, SourceError
from segconvert.io.storage import output_error

#: writes average over this (ms of system calls per file): they go behind, to the thread
BEHIND_MS = 0.1
#: ... and under this: they are made in place again (the gap keeps a noisy disk from flapping)
INLINE_MS = 0.05
#: weight of the newest write in the running average (~the last 10 writes count)
_WEIGHT = 0.1
MODES = ("auto", "always", "never")
ENV = "SEGCONVERT_WRITE_BEHIND"


def mode_from_env() -> str:
    """``SEGCONVERT_WRITE_BEHIND`` (default ``auto``); SourceError for another value, before a run starts."""
    mode = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise SourceError(f"{ENV}={os.environ[ENV]!r}: expected one of {', '.join(MODES)}")
    return mode


class WriteBehind:
    """Atomic writes, made in place or queued for one daemon thread (in order), as the file
    system's speed makes worth it (module doc)."""

    def __init__(self, depth: int = 8, mode: str | None = None) -> None:
        self.depth = depth
        self.mode = mode if mode is not None else mode_from_env()
        if self.mode not in MODES:
            raise ValueError(f"write-behind mode {self.mode!r}: expected one of {', '.join(MODES)}")
        self._reset()

    def put(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically: now (OSError as ``png.write_atomic`` raises it)
        while the file system is fast, else queued (failures at ``wait``)."""
        if self._behind:
            self.submit(path, data)
            return
        self._observe(png.write_atomic(path, data))

    def _observe(self, seconds: float) -> None:
        if self.mode != "auto":
            return
        ms = self._average_ms = self._average_ms + _WEIGHT * (seconds * 1e3 - self._average_ms)
        if self._behind:
            if ms < INLINE_MS:
                self._behind = False
        elif ms > BEHIND_MS:
            self._behind = True

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, str, bytes]] = deque()
        self.ticket = 0  # the last ticket given out (0: none yet)
        self._done = 0  # every ticket up to this one is written (or dropped after a failure)
        self._failed: tuple[int, OutputError] | None = None  # the first failed write
        self._thread: threading.Thread | None = None
        self._closed = False
        self._behind = self.mode == "always"  # writes go to the thread (else they are made in place)
        self._average_ms = 0.0  # running average of the writes' system calls

    def submit(self, path: str, data: bytes) -> int:
        """Queue ``data`` for ``path``; its ticket. Blocks while ``depth`` writes wait."""
        if self._pid != os.getpid():  # a forked child: the parent's thread is not here
            self._reset()
        with self._cond:
            if self._closed:
                raise RuntimeError("WriteBehind.submit after close")
            while len(self._queue) >= self.depth and self._failed is None and not self._closed:
                self._cond.wait()
            if self._closed:  # closed while this waited for room: nothing is written after close
                raise RuntimeError("WriteBehind.submit after close")
            self.ticket += 1
            if self._failed is None:
                self._queue.append((self.ticket, path, data))
                self._cond.notify_all()
            else:  # nothing is written after a failure: this one is dropped (wait raises)
                self._done = self.ticket
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_queued, name="segconvert-write-behind",
                                                daemon=True)
                self._thread.start()
            return self.ticket

    def wait(self, ticket: int) -> None:
        """Return once every write up to ``ticket`` is in place; the OutputError of the first
        failed write if that one or any before it failed."""
        if ticket <= 0 or self._pid != os.getpid():
            return
        with self._cond:
            while self._done < ticket and not (self._failed is not None and self._failed[0] <= ticket):
                if not self._cond.wait(1.0) and self._thread is not None and not self._thread.is_alive():
                    raise OutputError("cannot write the output: the write-behind thread ended with writes owed")
            if self._failed is not None and self._failed[0] <= ticket:
                raise self._failed[1]

    @property
    def closed(self) -> bool:
        return self._closed and self._pid == os.getpid()

    def close(self) -> None:
        """Drop what is queued, wait for the write in flight, end the thread."""
        if self._pid != os.getpid():
            return
        with self._cond:
            self._closed = True
            if self._queue:  # dropped: a wait for one of them says so, never that it is in place
                ticket, path, _ = self._queue[0]
                self._drop_queued(ticket, OutputError("cannot write the output: the run stopped before this "
                                                      "file was written", file=path))
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _write_queued(self) -> None:
        cond, queue = self._cond, self._queue
        while True:
            with cond:
                while not queue and not self._closed:
                    cond.wait()
                if not queue:
                    return
                ticket, path, data = queue.popleft()
                cond.notify_all()  # room for a blocked submit
            failure: OutputError | None = None
            try:
                self._observe(png.write_atomic(path, data))
            except OSError as exc:
                failure = output_error(exc, path)
            except BaseException as exc:  # not the file system's: the write's failure all the same (the
                # thread must never end with writes owed: wait() would wait for them)
                failure = OutputError(f"cannot write the output: unexpected {type(exc).__name__}: {exc}", file=path)
            with cond:
                self._done = ticket
                if failure is not None:
                    self._drop_queued(ticket, failure)  # nothing after a failed write is written
                cond.notify_all()

    def _drop_queued(self, ticket: int, failure: OutputError) -> None:
        """Every queued write given up (under the lock): ``failure`` is what a wait for ``ticket``
        or any later one raises (the earliest failure recorded wins: a write in flight that fails
        after ``close`` dropped the queue fails its own ticket)."""
        if self._failed is None or ticket < self._failed[0]:
            self._failed = (ticket, failure)
        if self._queue:
            self._done = self._queue[-1][0]
            self._queue.clear()
