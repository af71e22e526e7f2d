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

import fnmatch
import glob
import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any, TypeVar

import click

from segconvert.errors import SourceError

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_filesystems: dict[tuple[int, str], Any] = {}  # (pid, protocol) -> fsspec filesystem
T = TypeVar("T")


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

    One request per object: asked for the whole object, s3fs first HEADs it for its size
    (to split a big one into concurrent ranges), which doubles the requests per mask; a
    read from byte 0 on is one GET whatever the size.
    """
    return _cat(url, 0, None)


def _cat(url: str, start: int, end: int | None) -> bytes:
    """Bytes ``start``..``end`` (None: to the end) of the object, as one ranged GET. An empty
    object has no byte 0, and S3 refuses the range (416): such a refusal is read again whole."""
    fs, path = filesystem(url)
    try:
        try:
            return fs.cat_file(path, start=start, end=end)
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise
        except OSError:  # "the requested range is not satisfiable": an empty object
            return fs.cat_file(path)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - any client's failure to read is a read error
        raise OSError(f"{type(exc).__name__}: {exc}") from exc


def open_binary(location: str | os.PathLike[str], block_size: int | None = None) -> IO[bytes]:
    """A SOURCE index file (a COCO JSON, a CVAT XML) opened for reading: local paths with
    ``open`` (unchanged fast path), URLs through fsspec (seekable, read in blocks of
    ``block_size`` bytes, the protocol's default when None: s3fs reads ahead 50 MB, too
    much for a sniff of the first KBs)."""
    text = os.fspath(location)
    if not is_url(text):
        return open(text, "rb")
    fs, path = filesystem(text)
    if fs.isdir(path):
        raise IsADirectoryError(21, "Is a directory", text)
    if block_size is None:
        return fs.open(path, "rb")
    return fs.open(path, "rb", block_size=block_size)


def exists(location: str | os.PathLike[str]) -> bool:
    text = os.fspath(location)
    if not is_url(text):
        return os.path.exists(text)
    fs, path = filesystem(text)
    return fs.exists(path)


#: how much of an image a size probe reads first (PNG, JPEG, WebP... headers sit well inside it)
HEAD_BYTES = 1 << 16


def read_head(location: str | os.PathLike[str], size: int = HEAD_BYTES) -> bytes:
    """The first ``size`` bytes of a file (fewer when it is shorter): for sniffing a format or
    probing an image's header. A URL is one ranged GET, never the whole object."""
    text = os.fspath(location)
    if not is_url(text):
        with open(text, "rb") as fh:
            return fh.read(size)
    return _cat(text, 0, size)


class _Head(io.BytesIO):
    """An object's first bytes, shown as its URL: Pillow names what it cannot identify by the
    file object's repr, and a message should name the object, not ``<_io.BytesIO ...>``."""

    def __init__(self, data: bytes, url: str) -> None:
        super().__init__(data)
        self.url = url

    def __repr__(self) -> str:
        return repr(self.url)


def probe(location: str | os.PathLike[str], parse: Callable[[str | IO[bytes]], T],
          final: tuple[type[BaseException], ...] = ()) -> T:
    """``parse`` applied to a file to read, for an image's header (its size, its EXIF
    orientation) without the whole image.

    A local file is handed over by its path (``parse`` reads what it needs; Pillow opens it
    and names it in its errors, as before). A URL's first :data:`HEAD_BYTES` come in one
    ranged GET, as a file object named by the URL; only when ``parse`` fails on a head that
    was cut short (a JPEG whose EXIF block or ICC profile pushes the frame header further)
    is it tried again on 1 MiB, then on the whole object. OSError (FileNotFoundError...) of
    the read itself is raised as ``open`` raises it; ``parse``'s own errors on the last try,
    or at once for the kinds in ``final`` (a decompression bomb is one on any head).
    """
    text = os.fspath(location)
    if not is_url(text):
        return parse(text)
    for size in (HEAD_BYTES, 1 << 20, None):
        data = read_bytes(text) if size is None else read_head(text, size)
        try:
            return parse(_Head(data, text))
        except final:
            raise
        except Exception:  # noqa: BLE001 - re-raised below unless a longer head may do
            if size is None or len(data) < size:  # the whole file was there: its own error
                raise
    raise AssertionError("unreachable")  # pragma: no cover


class UrlPath(PurePosixPath):
    """A ``scheme://`` SOURCE or OUTPUT where readers and writers expect a Path.

    A pure path (suffix, with_suffix, ``/``, name work as for a local path) whose ``str``
    is the URL again: PurePosixPath folds ``s3://b/k`` into ``s3:/b/k``, and ``__str__``
    puts the second slash back. ``is_file``/``is_dir``/``exists`` ask the filesystem, and
    the pathlib methods readers use (``iterdir``, ``glob``, ``rglob``, ``read_bytes``,
    ``read_text``, ``open``) work as on a ``Path``, plus :meth:`walk` in ``os.walk``'s shape.

    Listing is stat-free: ``glob``/``rglob``/``walk`` ask for the whole tree (or the levels
    the pattern needs) in one listing call (``fs.find``: one request per 1000 keys on S3),
    never one request per file, and the paths they return know whether they are files or
    folders, so ``is_file()``/``is_dir()`` on them asks nothing more.
    """

    #: "file" or "directory" when this path came out of a listing; None: ask the filesystem
    _kind: str | None = None

    def __str__(self) -> str:
        text = super().__str__()
        return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)", r"\1://", text, count=1)

    def __fspath__(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"UrlPath({str(self)!r})"

    def _fs(self) -> tuple[Any, str]:
        return filesystem(str(self))

    def is_file(self) -> bool:
        if self._kind is not None:
            return self._kind == "file"
        fs, path = self._fs()
        return fs.isfile(path)

    def is_dir(self) -> bool:
        if self._kind is not None:
            return self._kind == "directory"
        fs, path = self._fs()
        return fs.isdir(path)

    def exists(self) -> bool:
        if self._kind is not None:
            return True
        fs, path = self._fs()
        return fs.exists(path)

    def is_absolute(self) -> bool:
        """A URL is absolute (``root / url`` must not glue it under a local root)."""
        return True

    def resolve(self) -> UrlPath:
        return self

    def absolute(self) -> UrlPath:
        return self

    def _child(self, rel: str, kind: str) -> UrlPath:
        child = self / rel
        child._kind = kind
        return child

    def _entries(self, maxdepth: int | None = None) -> dict[str, str]:
        """Relative path -> "file" | "directory" of everything below this folder, in one
        listing (``maxdepth`` levels, or all); folders implied by keys (S3 has no real ones)
        are included. A missing folder has no entries."""
        fs, root = self._fs()
        root = root.rstrip("/")
        fs.invalidate_cache(root)  # fresh: s3fs keeps listings for the process' life, and the store changes
        try:
            found = fs.find(root, maxdepth=maxdepth, withdirs=True, detail=True)
        except FileNotFoundError:
            return {}
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - as read_bytes: a client's failure to list is an OSError
            raise OSError(f"{type(exc).__name__}: {exc}") from exc
        out: dict[str, str] = {}
        for name, info in found.items():
            name = name.rstrip("/")
            if not name.startswith(root + "/"):
                continue  # the folder itself
            rel = name[len(root) + 1:]
            out[rel] = "directory" if info.get("type") == "directory" else "file"
            parts = rel.split("/")
            for k in range(1, len(parts)):
                out.setdefault("/".join(parts[:k]), "directory")
        return out

    def iterdir(self) -> Iterator[UrlPath]:
        """The folder's entries (sorted by name), from one listing of this level."""
        entries = self._entries(maxdepth=1)
        return iter([self._child(rel, kind) for rel, kind in sorted(entries.items()) if "/" not in rel])

    def glob(self, pattern: str) -> Iterator[UrlPath]:
        """pathlib's ``glob``: ``*``, ``?``, ``[...]`` within a name, ``**`` for any number of
        folders; sorted by relative path. One listing of the levels the pattern reaches."""
        parts = [p for p in pattern.split("/") if p]
        depth = None if "**" in parts else len(parts)
        entries = self._entries(maxdepth=depth)
        return iter([self._child(rel, kind) for rel, kind in sorted(entries.items())
                     if _matches(parts, rel.split("/"))])

    def rglob(self, pattern: str) -> Iterator[UrlPath]:
        return self.glob(f"**/{pattern}")

    def walk(self) -> Iterator[tuple[UrlPath, list[str], list[str]]]:
        """``os.walk`` top-down from one listing: (folder, sub-folder names, file names), names
        sorted; pruning ``dirs`` in place skips those folders, as with ``os.walk``."""
        entries = self._entries()
        children: dict[str, tuple[list[str], list[str]]] = {"": ([], [])}
        for rel, kind in sorted(entries.items()):
            head, _, name = rel.rpartition("/")
            if kind == "directory":
                children.setdefault(rel, ([], []))
            children.setdefault(head, ([], []))[0 if kind == "directory" else 1].append(name)

        def down(rel: str, folder: UrlPath) -> Iterator[tuple[UrlPath, list[str], list[str]]]:
            dirs, files = children.get(rel, ([], []))
            dirs, files = list(dirs), list(files)
            yield folder, dirs, files
            for d in dirs:
                sub = f"{rel}/{d}" if rel else d
                yield from down(sub, folder._child(d, "directory"))

        if entries or self.is_dir():
            yield from down("", self)

    def read_bytes(self) -> bytes:
        return read_bytes(str(self))

    def read_text(self, encoding: str | None = "utf-8", errors: str | None = None) -> str:
        return self.read_bytes().decode(encoding or "utf-8", errors or "strict")

    def open(self, mode: str = "r", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None) -> IO[Any]:
        """The object opened through fsspec (streamed in blocks), in ``mode`` "r"/"rb"."""
        if mode not in ("r", "rb", "rt"):
            raise ValueError(f"UrlPath.open reads only, not mode {mode!r}")
        handle = open_binary(str(self))
        if mode == "rb":
            return handle
        return io.TextIOWrapper(handle, encoding=encoding or "utf-8", errors=errors, newline=newline)


def _matches(pattern: list[str], parts: list[str]) -> bool:
    """Whether a relative path (split at ``/``) matches a pathlib glob pattern (split too):
    each pattern part against one name (``fnmatchcase``, as pathlib on POSIX), ``**`` any
    number of folders (one or more names when it ends the pattern)."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        start = 0 if rest else 1
        return any(_matches(rest, parts[k:]) for k in range(start, len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _matches(rest, parts[1:])


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


#: what a URL with nothing at it is called
NOT_FOUND = "not found: no object, and no objects under this prefix"


def check_url_exists(path: str | os.PathLike[str], missing: str = NOT_FOUND) -> None:
    """SourceError ``missing`` unless an object, or objects under the prefix, are at the URL;
    a client's failure to look (bad credentials...) is one too."""
    text = os.fspath(path)
    fs, inside = filesystem(text)
    try:
        found = fs.exists(inside)
    except Exception as exc:  # noqa: BLE001 - any client's failure to look is "cannot read"
        raise SourceError(f"cannot read: {type(exc).__name__}: {exc}", file=text) from None
    if not found:
        raise SourceError(missing, file=text)


def walk(root: Path | UrlPath) -> Iterator[tuple[Path | UrlPath, list[str], list[str]]]:
    """``os.walk(root)`` (top-down; prune ``dirs`` in place) with the folder as a path object:
    a local folder through ``os.walk``, a URL from one listing (:meth:`UrlPath.walk`)."""
    if isinstance(root, UrlPath):
        yield from root.walk()
        return
    for folder, dirs, files in os.walk(root):
        yield Path(folder), dirs, files


class PathOrUrl(click.ParamType):
    """An option's file or folder as :func:`location` makes it: a ``Path``, or a
    :class:`UrlPath` for an fsspec URL (``click.Path`` would fold ``s3://b/k`` into ``s3:/b/k``)."""

    name = "path|url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | UrlPath:
        return location(value)


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
