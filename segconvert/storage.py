"""Where writers put their files: one output store, so every writer gets the same guarantees.

A writer never opens output files itself; it asks its :class:`OutputStore` to ``put``
bytes under a path relative to OUTPUT. The store writes atomically (readers see the
old file or the new, never half of one) and returns a :class:`FileStamp` (size and
CRC-32 of what it wrote). The pipeline journals the stamps with the item, so a re-run
trusts a finished item only while its files still hold those bytes: a mask replaced by
garbage, truncated or deleted since is converted again.

OUTPUT may also be an fsspec URL (``s3://bucket/prefix``, ``gs://``, ``memory://``): the
same methods then go to object storage, from each worker process directly (no staging on
local disk; each process opens its own filesystem, see :mod:`segconvert.sources`).
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

import hashlib
import os
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from segconvert import png, sources
from segconvert.errors import SourceError

STATE_DIR = ".segconvert"
MIRROR_SECONDS = 30.0  # how often a remote OUTPUT's journal is copied to the store


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
    """A writer's output root: a local folder, or an fsspec URL (object storage).

    Paths given to it are relative and already safe (:mod:`segconvert.paths` checks
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
        if not self.remote:
            os.makedirs(self.path(rel) if rel else self.root, exist_ok=True)
        # object stores have no folders: a key's prefix exists once an object is under it

    def check(self) -> None:
        """Fail early, with one clear message, when OUTPUT cannot be written (a missing
        bucket, bad credentials); a small probe object is written and read back."""
        if not self.remote:
            self.makedirs()
            return
        probe = f"{STATE_DIR}/probe"
        try:
            self.put(probe, b"segconvert")
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

    def put(self, rel: str, data: bytes) -> FileStamp:
        """Write ``data`` to ``rel`` atomically; the stamp of what was written."""
        if self.remote:
            fs, base = self._fs()
            fs.pipe_file(base + "/" + rel, data)  # type: ignore[attr-defined]  # one PUT: atomic
        else:
            png.write_atomic(self.path(rel), data)
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
            return len(data) == stamp.size and zlib.crc32(data) == stamp.crc32
        path = self.path(stamp.path)
        try:
            if os.stat(path).st_size != stamp.size:
                return False
            return zlib.crc32(png.read_bytes(path)) == stamp.crc32
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
            with tempfile.TemporaryDirectory(prefix="segconvert-") as tmpdir:
                tmp = os.path.join(tmpdir, "upload")
                with open(tmp, "w", encoding="utf-8") as fh:
                    yield fh
                fs, base = self._fs()
                fs.put_file(tmp, f"{base}/{rel}")  # type: ignore[attr-defined]
            return
        target = Path(self.path(rel))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp_path, "w", encoding="utf-8") as fh:
                yield fh
            os.replace(tmp_path, target)
        except BaseException:
            try:
                os.unlink(tmp_path)
            except OSError:
                pass
            raise


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
