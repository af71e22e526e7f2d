"""Where writers put their files: one output store, so every writer gets the same guarantees.

A writer never opens output files itself; it asks its :class:`OutputStore` to ``put``
bytes under a path relative to OUTPUT. The store writes atomically (readers see the
old file or the new, never half of one) and returns a :class:`FileStamp` (size and
CRC-32 of what it wrote). The pipeline journals the stamps with the item, so a re-run
trusts a finished item only while its files still hold those bytes: a mask replaced by
garbage, truncated or deleted since is converted again.

Local folders only for now; object storage (fsspec URLs) goes behind the same methods.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from segconvert import png
from segconvert.errors import OutputError, SourceError

#: what to do about an output error, by errno (the rest: "cannot write")
_OUTPUT_ERRNO = {
    errno.ENOSPC: ("no space left on the device", "free some space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or raise the quota"),
    errno.EFBIG: ("file too large for a file size limit in force (ulimit -f)", "raise the limit"),
    errno.EROFS: ("the file system is read-only", "make OUTPUT writable or choose another OUTPUT"),
    errno.EACCES: ("permission denied", "make OUTPUT writable or choose another OUTPUT"),
    errno.EPERM: ("operation not permitted", "make OUTPUT writable or choose another OUTPUT"),
}

#: names of segconvert's own temp files: ``.NAME.PID.N.tmp`` (png.write_atomic) and
#: ``.NAME.PID.tmp`` (OutputStore.replacing)
TEMP_NAME = re.compile(r"\..+\.[0-9]+(\.[0-9]+)?\.tmp")
LOCK_FILE = ".segconvert/lock"


#: lock file descriptors this process holds; a forked child closes its copies at once, so the
#: lock is the main process' alone and ends with it (a worker dying a moment later must not
#: keep a re-run out)
_held_locks: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in _held_locks:
        try:
            os.close(fd)
        except OSError:
            pass
    _held_locks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def unlock(fd: int) -> None:
    """Release a lock :meth:`OutputStore.lock` took."""
    _held_locks.discard(fd)
    os.close(fd)


def _file_in_the_way(folder: str) -> OutputError:
    """The error for a folder that cannot be made because a file has its name (or an ancestor's)."""
    blocker = folder
    while blocker != os.path.dirname(blocker) and not os.path.exists(blocker):
        blocker = os.path.dirname(blocker)
    return OutputError(
        "is a file, but segconvert needs a folder there: move or delete it, or choose another OUTPUT", file=blocker,
    )


def output_error(exc: OSError, path: str | os.PathLike[str]) -> OutputError:
    """``exc`` (raised writing ``path``) as the run-stopping error that says what to do."""
    why, fix = _OUTPUT_ERRNO.get(exc.errno or 0, (exc.strerror or str(exc), "fix it"))
    return OutputError(
        f"cannot write the output: {why}; the finished items are kept: {fix}, "
        "then run the same command again to resume", file=path,
    )


@dataclass(frozen=True, slots=True)
class FileStamp:
    """One file an item wrote: path relative to OUTPUT ('/'-separated), size, CRC-32."""

    path: str
    size: int
    crc32: int

    def to_json(self) -> list[object]:
        return [self.path, self.size, self.crc32]

    @classmethod
    def from_json(cls, row: list[object]) -> FileStamp:
        path, size, crc = row
        assert isinstance(path, str) and isinstance(size, int) and isinstance(crc, int)
        return cls(path, size, crc)


def stamp_of(path: str, data: bytes) -> FileStamp:
    return FileStamp(path, len(data), zlib.crc32(data))


class OutputStore:
    """A writer's output root. Paths given to it are relative and already safe
    (:mod:`segconvert.paths` checks reference_ids before they become names)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self._prefix = os.path.join(self.root, "")

    def path(self, rel: str) -> str:
        """The local path of ``rel`` (joined by hand: this runs once per file)."""
        return self._prefix + rel

    def url(self, rel: str) -> str:
        """What a payload should point at for ``rel``: the absolute local path here."""
        return self._prefix + rel

    def makedirs(self, rel: str = "") -> None:
        """Create ``rel`` (a folder); OutputError naming the file that is in the way, if any."""
        path = self.path(rel) if rel else self.root
        try:
            os.makedirs(path, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise _file_in_the_way(path) from None
        except OSError as exc:
            raise output_error(exc, path) from None

    def put(self, rel: str, data: bytes) -> FileStamp:
        """Write ``data`` to ``rel`` atomically; the stamp of what was written.

        Any OSError here is the output's fault (full, read-only, ...), never the input's:
        it becomes an :class:`OutputError`, which stops the run instead of failing items.
        """
        path = self.path(rel)
        try:
            png.write_atomic(path, data)
        except OSError as exc:
            raise output_error(exc, path) from None
        return stamp_of(rel, data)

    def get(self, rel: str) -> bytes:
        return png.read_bytes(self.path(rel))

    def exists(self, rel: str) -> bool:
        return os.path.isfile(self.path(rel))

    def matches(self, stamp: FileStamp) -> bool:
        """Whether ``stamp.path`` still holds exactly the bytes the stamp was made of."""
        path = self.path(stamp.path)
        try:
            if os.stat(path).st_size != stamp.size:
                return False
            return zlib.crc32(png.read_bytes(path)) == stamp.crc32
        except OSError:
            return False

    @contextmanager
    def replacing(self, rel: str) -> Iterator[IO[str]]:
        """A text file that replaces ``rel`` only when the ``with`` block completes.

        For dataset-wide files (annotations.jsonl, panoptic.json): a run that fails or is
        killed half-way leaves the previous file as it was, never a partial one.
        """
        target = Path(self.path(rel))
        if target.is_dir():
            raise OutputError(
                f"is a folder, but {target.name} is a file this format writes: move or delete the folder, "
                "then run the same command again (the converted items are kept)", file=target,
            )
        self.makedirs(os.path.dirname(rel))
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            try:
                with open(tmp, "w", encoding="utf-8") as fh:
                    yield fh
                os.replace(tmp, target)
            except OSError as exc:
                raise output_error(exc, target) from None
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def remove_stale_temps(self) -> int:
        """Delete temp files a killed run left (segconvert's own naming pattern only); how many.

        Call it while holding :meth:`lock`: then no other run is writing into OUTPUT, and
        every such file is a leftover that no later write would ever reuse.
        """
        removed = 0
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(".") and TEMP_NAME.fullmatch(name):
                    try:
                        os.unlink(os.path.join(folder, name))
                        removed += 1
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        raise output_error(exc, os.path.join(folder, name)) from None
        return removed

    def lock(self) -> int:
        """Take OUTPUT's advisory lock for this run; the file descriptor that holds it
        (give it to :func:`unlock` at the end).

        ``flock`` on ``OUTPUT/.segconvert/lock``: the OS releases it when the process ends,
        however it ends (even SIGKILL), so a stale lock never needs cleaning up. A second
        run into the same OUTPUT gets a SourceError at once, before touching anything.
        """
        path = self.path(LOCK_FILE)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except (FileExistsError, NotADirectoryError):
            raise _file_in_the_way(os.path.dirname(path)) from None
        except OSError as exc:
            raise output_error(exc, path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                # a file system without flock (some network mounts: ENOLCK, EOPNOTSUPP): run
                # unlocked rather than refuse to run at all
                _held_locks.add(fd)
                return fd
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            pid = f" (process {holder})" if holder.isdigit() else ""
            raise SourceError(
                f"another segconvert run{pid} is writing into this OUTPUT; wait for it to finish "
                "(then this command resumes where it stopped) or choose another OUTPUT", file=self.root,
            ) from None
        _held_locks.add(fd)
        try:  # who holds it, for the message a second run gives (a full disk may refuse: no matter)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass
        return fd
