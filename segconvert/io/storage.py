"""Where writers put their files: one output store, so every writer gets the same guarantees.

A writer never opens output files itself; it asks its :class:`OutputStore` to ``put``
bytes under a path relative to OUTPUT. The store writes atomically (readers see the
old file or the new, never half of one) and returns a :class:`FileStamp` (size and
CRC-32 of what it wrote). The pipeline journals the stamps with the item, so a re-run
trusts a finished item only while its files still hold those bytes: a mask replaced by
garbage, truncated or deleted since is converted again.

OUTPUT may also be an fsspec URL (``s3://bucket/prefix``, ``gs://``, ``memory://``): the
same methods then go to object storage, from each worker process directly (no staging on
local disk; each process opens its own filesystem, see :mod:`segconvert.io.sources`).
Atomic in effect there too: ``put`` is one PUT of the whole object, which S3 and GCS
publish all at once, and ``replacing`` writes a local temporary file and uploads it
when the ``with`` block completes (a multipart upload is published only when it
completes), so no half-written object is ever listed.

The journal on object storage. Appending a line per item to an object is not possible
(objects are written whole), so the journal stays a local file, as for a local OUTPUT,
in a cache folder keyed by the OUTPUT URL (``$SEGCONVERT_CACHE``, default
``~/.cache/segconvert/state/<sha256 of the URL>``), and is mirrored to
``OUTPUT/.segconvert/`` in the store every ``MIRROR_SECONDS`` (longer when a copy takes
long) and when the run ends. A run on a machine without that cache starts from the
mirror. When both exist the local cache is used; an item it lacks (converted by a run on
another machine) is converted again, to the same bytes. Why a re-run after a kill
gives the same objects, byte for byte: an item is journalled only after its PUTs
returned; an item missing from the journal (or from a mirror a little behind it) is
converted again, which writes the same bytes (conversion is deterministic) over the
same keys; an item in the journal is reused only while its objects still match its
stamps (size + CRC-32, read back by the workers); and the dataset-wide files are
rebuilt from the journal at the end and uploaded whole.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from segconvert.codecs import png
from segconvert.errors import OutputError, SourceError
from segconvert.io import sources

STATE_DIR = ".segconvert"
MIRROR_SECONDS = 30.0  # how often a remote OUTPUT's journal is copied to the store


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
    return FileStamp(path, len(data), png.crc32(data))


class OutputStore:
    """A writer's output root: a local folder, or an fsspec URL (object storage).

    Paths given to it are relative and already safe (:mod:`segconvert.io.paths` checks
    reference_ids before they become names).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        text = os.fspath(root)
        if sources.is_url(text):
            local = sources.local_path_of(text)
            self.remote = local is None
            text = local if local is not None else text
        else:
            self.remote = False
        if self.remote:
            self.root = text.rstrip("/")
        else:
            self.root = os.path.abspath(text)
        self._prefix = self.root + "/" if self.remote else os.path.join(self.root, "")
        self._next_mirror = 0.0  # monotonic time of the next copy of the journal to the store
        self._state: Path | None = None
        self._behind: Any = None  # a WriteBehind while the pipeline writes behind (writing_behind)

    def __getstate__(self) -> dict[str, Any]:  # to a worker: never a thread's queue
        return {**self.__dict__, "_behind": None}

    @contextmanager
    def writing_behind(self, behind: Any) -> Iterator[None]:
        """For the length of a block, ``put`` of a local OUTPUT hands its bytes to ``behind`` (a
        :class:`segconvert.io.writeback.WriteBehind`, which writes them now or queues them for
        its thread); the caller waits for the write's ticket before it counts the item done.
        A no-op for object storage."""
        if self.remote:
            yield
            return
        before, self._behind = self._behind, behind
        try:
            yield
        finally:
            self._behind = before

    # fsspec filesystems do not survive pickling to a worker or a fork: each process
    # looks up its own (sources.filesystem caches one per process and protocol)
    def _fs(self) -> tuple[object, str]:
        fs, path = sources.filesystem(self.root)
        return fs, path

    def _key(self, rel: str) -> str:
        return self._fs()[1] + "/" + rel

    def path(self, rel: str) -> str:
        """The local path of ``rel`` (joined by hand: this runs once per file); on object
        storage, its URL."""
        return self._prefix + rel

    def url(self, rel: str) -> str:
        """What a payload should point at for ``rel``: the absolute local path, or the
        object's URL (``s3://bucket/prefix/masks/x.png``) on object storage."""
        return self._prefix + rel

    def makedirs(self, rel: str = "") -> None:
        """Create ``rel`` (a folder); OutputError naming the file that is in the way, if any.
        Object stores have no folders: a key's prefix exists once an object is under it."""
        if self.remote:
            return
        path = self.path(rel) if rel else self.root
        try:
            os.makedirs(path, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise _file_in_the_way(path) from None
        except OSError as exc:
            raise output_error(exc, path) from None

    def check(self) -> None:
        """Fail early, with one clear message, when OUTPUT cannot be written (a missing
        bucket, bad credentials); a small probe object is written and read back."""
        if not self.remote:
            self.makedirs()
            return
        probe = f"{STATE_DIR}/probe"
        try:
            self._put_remote(probe, b"segconvert")
            self.get(probe)
        except FileNotFoundError:
            raise SourceError(
                "cannot write there: the bucket (or container) does not exist", file=self.root
            ) from None
        except PermissionError as exc:
            raise SourceError(
                f"cannot write there: access denied ({_reason(exc)}); check the credentials "
                "(AWS_ACCESS_KEY_ID / AWS_PROFILE for s3) and the endpoint", file=self.root,
            ) from None
        except OSError as exc:
            raise SourceError(f"cannot write there: {_reason(exc)}", file=self.root) from None

    def _put_remote(self, rel: str, data: bytes) -> None:
        fs, base = self._fs()
        fs.pipe_file(base + "/" + rel, data)  # type: ignore[attr-defined]  # one PUT: atomic

    def put(self, rel: str, data: bytes) -> FileStamp:
        """Write ``data`` to ``rel`` atomically; the stamp of what was written.

        Any OSError here is the output's fault (full, read-only, ...), never the input's:
        it becomes an :class:`OutputError`, which stops the run instead of failing items.
        """
        path = self.path(rel)
        try:
            if self._behind is not None:
                self._behind.put(path, data)  # now, or queued for its thread (failures at its wait)
            elif self.remote:
                self._put_remote(rel, data)
            else:
                png.write_atomic(path, data)
        except OSError as exc:
            raise output_error(exc, path) from None
        return stamp_of(rel, data)

    def get(self, rel: str) -> bytes:
        if self.remote:
            fs, base = self._fs()
            data: bytes = fs.cat_file(base + "/" + rel)  # type: ignore[attr-defined]
            return data
        return png.read_bytes(self.path(rel))

    def exists(self, rel: str) -> bool:
        if self.remote:
            fs, base = self._fs()
            return bool(fs.isfile(base + "/" + rel))  # type: ignore[attr-defined]
        return os.path.isfile(self.path(rel))

    def matches(self, stamp: FileStamp) -> bool:
        """Whether ``stamp.path`` still holds exactly the bytes the stamp was made of."""
        if self.remote:
            try:
                data = self.get(stamp.path)
            except OSError:
                return False
            return len(data) == stamp.size and png.crc32(data) == stamp.crc32
        path = self.path(stamp.path)
        try:
            if os.stat(path).st_size != stamp.size:
                return False
            return png.crc32(png.read_bytes(path)) == stamp.crc32
        except OSError:
            return False

    # ------------------------------------------------------------ the journal's folder

    def state_dir(self) -> Path:
        """Where the pipeline keeps its journal: OUTPUT/.segconvert locally; for object
        storage a local cache folder keyed by the OUTPUT URL, filled from the store's
        mirror when this machine has none (see the module docstring)."""
        if not self.remote:
            return Path(self.root) / STATE_DIR
        if self._state is not None:
            return self._state
        cache = os.environ.get("SEGCONVERT_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "segconvert", "state"
        )
        import hashlib  # remote outputs only (hashlib loads OpenSSL: ~3 ms that a local run skips)

        folder = Path(cache) / hashlib.sha256(self.root.encode()).hexdigest()[:32]
        if not (folder / "journal.tsv").exists():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "output.txt").write_text(self.root + "\n")
            for name in ("settings.json", "journal.tsv"):  # settings first: a journal needs them
                try:
                    data = self.get(f"{STATE_DIR}/{name}")
                except FileNotFoundError:
                    break
                png.write_atomic(str(folder / name), data)
        self._state = folder
        return folder

    def mirror_state(self, state_dir: Path, *, force: bool = False) -> None:
        """Copy the local journal of a remote OUTPUT to OUTPUT/.segconvert/ (at most every
        MIRROR_SECONDS, or 20x the last copy's time, unless ``force``); a no-op for a local
        OUTPUT, whose journal is there."""
        if not self.remote:
            return
        now = time.monotonic()
        if not force and now < self._next_mirror:
            return
        fs, base = self._fs()
        try:
            for name in ("settings.json", "journal.tsv", "report.jsonl"):
                local = state_dir / name
                if local.exists():
                    fs.put_file(str(local), f"{base}/{STATE_DIR}/{name}")  # type: ignore[attr-defined]
            # the whole journal goes up each time: wait at least 20x as long as this upload took,
            # so a journal of millions of lines costs the run at most ~5% in uploads
            took = time.monotonic() - now
            self._next_mirror = time.monotonic() + max(MIRROR_SECONDS, 20 * took)
        except OSError as exc:
            if force:  # the end of a run: say so (the local journal in state_dir still has it all)
                raise SourceError(
                    f"cannot copy the journal to {STATE_DIR}/ in the store: {_reason(exc)}; "
                    f"it is kept in {state_dir}", file=self.root,
                ) from None
            # during the run: try again at the next interval

    @contextmanager
    def replacing(self, rel: str) -> Iterator[IO[str]]:
        """A text file that replaces ``rel`` only when the ``with`` block completes.

        For dataset-wide files (annotations.jsonl, panoptic.json): a run that fails or is
        killed half-way leaves the previous file as it was, never a partial one. On object
        storage the text goes to a local temporary file, uploaded whole at the end.
        """
        if self.remote:
            import tempfile  # remote outputs only: ~5 ms of start-up with shutil, random, bz2, lzma

            with tempfile.TemporaryDirectory(prefix="segconvert-") as tmpdir:
                tmp = os.path.join(tmpdir, "upload")
                with open(tmp, "w", encoding="utf-8") as fh:
                    yield fh
                fs, base = self._fs()
                fs.put_file(tmp, f"{base}/{rel}")  # type: ignore[attr-defined]
            return
        target = Path(self.path(rel))
        if target.is_dir():
            raise OutputError(
                f"is a folder, but {target.name} is a file this format writes: move or delete the folder, "
                "then run the same command again (the converted items are kept)", file=target,
            )
        self.makedirs(os.path.dirname(rel))
        tmp_path = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            try:
                with open(tmp_path, "w", encoding="utf-8") as fh:
                    yield fh
                os.replace(tmp_path, target)
            except OSError as exc:
                raise output_error(exc, target) from None
        except BaseException:
            try:
                os.unlink(tmp_path)
            except OSError:
                pass
            raise

    def remove_stale_temps(self) -> int:
        """Delete temp files a killed run left (segconvert's own naming pattern only); how many.

        Call it while holding :meth:`lock`: then no other run is writing into OUTPUT, and
        every such file is a leftover that no later write would ever reuse.
        """
        if self.remote:  # objects are written whole: there are no temp objects to find
            return 0
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
        # object storage has no locks: the local state folder of that OUTPUT is locked instead,
        # which keeps out a second run on this machine (runs on two machines are the user's to avoid)
        path = str(self.state_dir() / "lock") if self.remote else self.path(LOCK_FILE)
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


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
