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

import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from segconvert import png


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
        os.makedirs(self.path(rel) if rel else self.root, exist_ok=True)

    def put(self, rel: str, data: bytes) -> FileStamp:
        """Write ``data`` to ``rel`` atomically; the stamp of what was written."""
        png.write_atomic(self.path(rel), data)
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
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                yield fh
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
