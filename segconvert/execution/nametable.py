"""The names seen so far in a run, for duplicate detection, in ~32 bytes per item.

The pipeline must remember every reference_id (case-folded) it has handed out, for the
whole run, to fail a later item whose output would overwrite an earlier one's. A dict
of ``name_key -> (reference_id, source)`` costs ~250 bytes per item (measured: 170 for
the dict entry and tuple, plus the strings it keeps alive): 30 MB for COCO train, GBs
for tens of millions of items. Here memory holds only a 64-bit hash of each key and
where its (reference_id, source) record is, in an open-addressing table kept at most
half full (2 x 8 bytes x 2 slots = 32 bytes per item); the records themselves go to an
unlinked temporary file once they pass 64 kB (the first ~700 items' records stay in a
buffer: a run of a few hundred images never imports ``tempfile``, which with its
``gettempdir`` probe cost ~6 ms of start-up). A hash match reads the record back and
compares the real key, so a 64-bit collision is never taken for a duplicate.
"""

from __future__ import annotations

import json
from array import array
from typing import IO

try:  # hashlib's blake2b is this one; hashlib itself also loads OpenSSL (~3 ms of start-up)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2b

import orjson

from segconvert.io.paths import name_key


def _hash(key: object) -> int:
    text = key if isinstance(key, str) else repr(key)
    digest = blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") | 1  # never 0: 0 marks an empty slot


class NameTable:
    """``table.get(key)`` -> (reference_id, source) of the earlier item, or None;
    ``table[key] = (reference_id, source)``. Keys are ``paths.name_key`` values."""

    BUFFER_BYTES = 1 << 16  # records kept in memory before they move to the temporary file

    def __init__(self, capacity: int = 1 << 12) -> None:
        # array, not numpy: indexing one element gives a Python int ~10x faster
        self._hashes = array("Q", bytes(8 * capacity))
        self._records = array("q", bytes(8 * capacity))  # byte offset of the record (file, then buffer)
        self._mask = capacity - 1
        self._count = 0
        self._file: IO[bytes] | None = None  # records before ``_spilled`` (created when the buffer fills)
        self._spilled = 0  # bytes of records in the file
        self._buffer = bytearray()  # the records after those
        self._last: tuple[object, int] = (None, 0)  # get then set of one key: hash once

    def __len__(self) -> int:
        return self._count

    def _record(self, offset: int) -> tuple[str, str | None]:
        # rare (a duplicate, or a 64-bit collision): json, which reads the escaped surrogates below
        if offset >= self._spilled:
            start = offset - self._spilled
            line = self._buffer[start:self._buffer.index(b"\n", start)]
        else:
            assert self._file is not None
            self._file.seek(offset)
            line = self._file.readline()
            self._file.seek(0, 2)
        ref, source = json.loads(line)
        return ref, source

    def get(self, key: object) -> tuple[str, str | None] | None:
        h = _hash(key)
        self._last = (key, h)
        hashes, mask = self._hashes, self._mask
        slot = h & mask
        while True:  # linear probing from the hash's home slot
            found = hashes[slot]
            if found == 0:
                return None
            if found == h:
                ref, source = self._record(self._records[slot])
                if ref == key or (isinstance(ref, str) and name_key(ref) == key):
                    return ref, source
            slot = (slot + 1) & mask

    def __setitem__(self, key: object, value: tuple[str, str | None]) -> None:
        if (self._count + 1) * 2 > len(self._hashes):
            self._grow()
        try:
            line = orjson.dumps(list(value)) + b"\n"  # one line: JSON escapes newlines
        except TypeError:  # a lone surrogate (a file name of undecodable bytes): orjson refuses it
            line = json.dumps(list(value)).encode("ascii") + b"\n"  # escaped as \udcff
        offset = self._spilled + len(self._buffer)  # where the record starts, file and buffer as one
        self._buffer += line
        if len(self._buffer) >= self.BUFFER_BYTES:
            self._spill()
        last_key, h = self._last
        self._insert(h if last_key is key else _hash(key), offset)
        self._count += 1

    def _spill(self) -> None:
        """Move the buffered records to the temporary file (created on the first spill)."""
        if self._file is None:
            import tempfile

            self._file = tempfile.TemporaryFile(prefix="segconvert-names-")
        self._file.write(self._buffer)
        self._spilled += len(self._buffer)
        self._buffer = bytearray()

    def _insert(self, h: int, offset: int) -> None:
        hashes, mask = self._hashes, self._mask
        slot = h & mask
        while hashes[slot] != 0:
            slot = (slot + 1) & mask
        hashes[slot] = h
        self._records[slot] = offset

    def _grow(self) -> None:
        hashes, records = self._hashes, self._records
        self._hashes = array("Q", bytes(16 * len(hashes)))
        self._records = array("q", bytes(16 * len(hashes)))
        self._mask = len(self._hashes) - 1
        for h, offset in zip(hashes, records):
            if h:
                self._insert(h, offset)

    def close(self) -> None:
        self._buffer = bytearray()
        if self._file is not None:
            self._file.close()
