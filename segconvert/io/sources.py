"""Reading SOURCE files by URL: object storage (``s3://``, ``gs://``, ``memory://``...) through fsspec.

Local paths never come here (``png.read_bytes`` and the readers keep their plain ``os``
fast paths); a ``scheme://`` URL goes to the fsspec filesystem of its protocol. The
protocol's package is the user's to install (``s3fs`` for ``s3://``, ``gcsfs`` for
``gs://``); a missing one is a :class:`SourceError` naming the pip command.

Filesystem instances are per process: fsspec's instances hold sockets and an event loop
that do not survive a fork, so every worker (a pool process or a Dask worker) builds its
own on first use (the cache below is keyed by process id as well as by protocol).

Credentials and endpoints are the protocol's own business: s3fs reads AWS_ACCESS_KEY_ID,
AWS_PROFILE, ``~/.aws``..., and fsspec's configuration sets any constructor argument
from the environment, e.g. ``FSSPEC_S3_ENDPOINT_URL=http://127.0.0.1:9000`` for an
S3-compatible server (MinIO, Ceph) or ``FSSPEC_S3_ANON=true`` for a public bucket.
Workers inherit them from the environment they run in.

It also says what the command line accepts as SOURCE (:data:`SOURCE`): a path that exists,
a URL, or a quoted glob that matches (``'masks/**/*.png'`` for the rgb reader, which
expands it with :func:`glob.glob`, ``recursive=True``, the same rule).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

import click

from segconvert.errors import SourceError

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_filesystems: dict[tuple[int, str], Any] = {}  # (pid, protocol) -> fsspec filesystem


def is_url(location: object) -> bool:
    """Whether ``location`` is a ``scheme://`` URL (not a local path)."""
    return isinstance(location, str | UrlPath) and _URL.match(str(location)) is not None


def local_path_of(url: str) -> str | None:
    """The local path a ``file://`` URL names (None for any other URL)."""
    if url.startswith("file://"):
        return url[len("file://"):]
    return None


def filesystem(url: str) -> tuple[Any, str]:
    """This process' fsspec filesystem for ``url`` and the path inside it."""
    match = _URL.match(url)
    assert match is not None, url
    protocol = match.group(1).lower()
    key = (os.getpid(), protocol)
    fs = _filesystems.get(key)
    if fs is None:
        try:
            import fsspec
        except ImportError:
            raise SourceError(
                f"reading or writing {protocol}:// URLs needs fsspec: pip install fsspec", file=url
            ) from None
        try:
            # fsspec.filesystem applies fsspec's config (FSSPEC_<PROTOCOL>_<ARG> variables)
            fs = fsspec.filesystem(protocol)
        except ImportError as exc:  # fsspec's message names the package (e.g. "Install s3fs to access S3")
            raise SourceError(f"{protocol}:// needs a package that is not installed: {exc}", file=url) from None
        except ValueError as exc:  # an unknown protocol
            raise SourceError(f"cannot open {protocol}:// URLs: {exc}", file=url) from None
        _filesystems[key] = fs
    return fs, fs._strip_protocol(url)


def read_bytes(url: str) -> bytes:
    """The whole object at ``url``; OSError (FileNotFoundError, PermissionError) as ``open`` raises.

    Storage clients raise their own kinds too (botocore's NoCredentialsError,
    EndpointConnectionError, ...): those become OSError with the client's message, so a
    reader reports "cannot read" for the item instead of an unexpected error.
    """
    fs, path = filesystem(url)
    try:
        return fs.cat_file(path)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - any client's failure to read is a read error
        raise OSError(f"{type(exc).__name__}: {exc}") from exc


def open_binary(location: str | os.PathLike[str]) -> IO[bytes]:
    """A SOURCE index file (a COCO JSON, a CVAT XML) opened for reading: local paths with
    ``open`` (unchanged fast path), URLs through fsspec (seekable, read in blocks)."""
    text = os.fspath(location)
    if not is_url(text):
        return open(text, "rb")
    fs, path = filesystem(text)
    if fs.isdir(path):
        raise IsADirectoryError(21, "Is a directory", text)
    return fs.open(path, "rb")


def exists(location: str | os.PathLike[str]) -> bool:
    text = os.fspath(location)
    if not is_url(text):
        return os.path.exists(text)
    fs, path = filesystem(text)
    return fs.exists(path)


class UrlPath(PurePosixPath):
    """A ``scheme://`` SOURCE or OUTPUT where readers and writers expect a Path.

    A pure path (suffix, with_suffix, ``/``, name work as for a local path) whose ``str``
    is the URL again: PurePosixPath folds ``s3://b/k`` into ``s3:/b/k``, and ``__str__``
    puts the second slash back. ``is_file``/``is_dir``/``exists`` ask the filesystem.
    """

    def __str__(self) -> str:
        text = super().__str__()
        return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)", r"\1://", text, count=1)

    def __fspath__(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"UrlPath({str(self)!r})"

    def is_file(self) -> bool:
        fs, path = filesystem(str(self))
        return fs.isfile(path)

    def is_dir(self) -> bool:
        fs, path = filesystem(str(self))
        return fs.isdir(path)

    def exists(self) -> bool:
        fs, path = filesystem(str(self))
        return fs.exists(path)

    def glob(self, pattern: str) -> Iterator[UrlPath]:
        fs, path = filesystem(str(self))
        return iter([UrlPath(fs.unstrip_protocol(p)) for p in sorted(fs.glob(f"{path}/{pattern}"))])

    def rglob(self, pattern: str) -> Iterator[UrlPath]:
        return self.glob(f"**/{pattern}")

    def resolve(self) -> UrlPath:
        return self


def location(source: str | os.PathLike[str]) -> Path | UrlPath:
    """A SOURCE or OUTPUT as the path object readers and writers use: a ``Path`` for a
    local path or a ``file://`` URL, a :class:`UrlPath` for any other URL."""
    if isinstance(source, UrlPath):
        return source
    text = os.fspath(source)
    if is_url(text):
        local = local_path_of(text)
        return Path(local) if local is not None else UrlPath(text)
    return Path(text)


#: the characters that make a SOURCE a pattern (those :mod:`glob` expands)
GLOB_CHARS = re.compile(r"[*?\[]")


def is_pattern(text: str) -> bool:
    return GLOB_CHARS.search(text) is not None


def is_local_pattern(source: str | os.PathLike[str]) -> bool:
    """Whether SOURCE is a glob pattern to expand here: a local path with glob characters
    that does not exist as it is (``x[1].png`` that exists is that file)."""
    text = os.fspath(source)
    return not is_url(text) and is_pattern(text) and not os.path.exists(text)


def expand_pattern(pattern: str | os.PathLike[str]) -> list[Path]:
    """The files a SOURCE pattern matches (:func:`glob.glob`, ``recursive=True``: ``**`` spans
    folders), sorted by path, folders left out: the one expansion every reader that takes
    patterns, and ``--from auto``, use."""
    text = os.fspath(pattern)
    return sorted((Path(p) for p in glob.glob(text, recursive=True) if os.path.isfile(p)), key=lambda p: p.as_posix())


def pattern_root(pattern: str | os.PathLike[str]) -> Path:
    """The folder a pattern searches below: its leading path parts without glob characters
    (``data/gtFine/*/*.png`` -> ``data/gtFine``), where a dataset keeps its colour table."""
    parts = Path(os.fspath(pattern)).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if is_pattern(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


class SourcePath(click.ParamType):
    """A path that exists, a URL, or a glob pattern that matches at least one path.

    A pattern that matches nothing is a usage error (exit 2) naming the pattern, not a run
    that converts 0 of 0 items.
    """

    name = "path|glob"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = os.fspath(value)
        if is_url(text) or os.path.exists(text):  # a URL is checked by its reader, through fsspec
            return text
        if is_pattern(text):
            if next(glob.iglob(text, recursive=True), None) is not None:
                return text
            self.fail(f"the pattern {text!r} matches no file or folder", param, ctx)
        self.fail(f"{text!r} does not exist", param, ctx)


SOURCE = SourcePath()
