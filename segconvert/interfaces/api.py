"""The Python API: ``segconvert.convert(...)`` does what ``segconvert convert`` does.

Format options are plain keyword arguments (``masks_dir=...``, ``mask_url_prefix=...``),
routed to the reader or the writer that declares them; an option neither declares is
an error rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from segconvert.errors import SourceError, opt
from segconvert.execution.pipeline import Summary, default_jobs, policies, read_failed, run
from segconvert.interfaces import registry
from segconvert.interfaces.format import Reader, Writer, option_defaults
from segconvert.io.sources import NOT_FOUND, check_url_exists, is_pattern, is_url, location
from segconvert.model.modes import ModePlan


def open_reader(source: str | Path, from_format: str, **options: Any) -> Reader:
    """The reader of ``from_format`` on ``source``, for use without a writer."""
    cls = registry.reader_for(from_format).reader
    assert cls is not None
    return _open(cls, from_format, source, {**option_defaults(cls.options), **options})


_KIND_WORDS = {"file": "one file", "dir": "a folder"}


def check_source_kind(cls: type[Reader], from_format: str, source: str | Path) -> None:
    """SourceError when SOURCE is a folder where the reader takes a file, or the other way
    round (checked once here, so no reader meets an IsADirectoryError). A SOURCE that does
    not exist is left to the reader (a glob pattern, say), except a URL: a missing object or
    prefix is said so here, in one line (every reader would call it something else)."""
    kind = cls.source_kind
    path = location(source)
    if is_url(str(source)) and not is_pattern(str(source)):
        check_url_exists(path, "file not found" if kind == "file" else NOT_FOUND)
    if kind is None or not path.exists():
        return
    if kind == "file" and path.is_dir():
        raise SourceError(f"is a folder, but {from_format} reads {_KIND_WORDS[kind]}: give its path", file=source)
    if kind == "dir" and not path.is_dir():
        raise SourceError(f"is a file, but {from_format} reads {_KIND_WORDS[kind]}: give the folder", file=source)


def _open(cls: type[Reader], from_format: str, source: str | Path, options: dict[str, Any]) -> Reader:
    check_source_kind(cls, from_format, source)
    try:
        return cls(source, **options)
    except IsADirectoryError as exc:
        raise SourceError(f"is a folder where {from_format} expects a file", file=exc.filename or source) from None
    except NotADirectoryError as exc:
        raise SourceError(f"is not a folder where {from_format} expects one", file=exc.filename or source) from None


def _split_options(
    reader_cls: type[Reader], writer_cls: type[Writer], options: dict[str, Any], names: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    reader_opts = option_defaults(reader_cls.options)
    writer_opts = option_defaults(writer_cls.options)
    for key, value in options.items():
        if key in reader_opts or key in writer_opts:  # an option both declare goes to both
            if key in reader_opts:
                reader_opts[key] = value
            if key in writer_opts:
                writer_opts[key] = value
        else:
            known = sorted(reader_opts) + sorted(writer_opts)
            raise SourceError(f"{names} has no option {key!r}; its options: {', '.join(known) or 'none'}")
    return reader_opts, writer_opts


def convert(
    source: str | Path,
    output: str | Path,
    *,
    from_format: str = "auto",
    to_format: str = "nucleus",
    mode: str | None = None,
    index: str | None = None,
    jobs: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    executor: str | None = None,
    max_pixels: int | None = None,
    allow_outside_paths: bool = False,
    report: str | Path | None = None,
    only_failed: str | Path | None = None,
    **options: Any,
) -> Summary:
    """Convert ``source`` (in ``from_format``; ``auto`` recognises it) into ``output`` (in ``to_format``).

    ``mode`` defaults to the reader's natural one (panoptic for COCO panoptic, semantic
    for colour masks, instance for polygons). ``index`` (stable | compact |
    category-id) applies to semantic mode only. ``executor``: "local" (worker processes,
    the default), "dask" (a local Dask cluster of ``jobs`` workers) or a Dask scheduler's
    address (tcp://host:8786); the output is the same bytes with any. ``max_pixels``: the
    largest image size accepted (default ``limits.DEFAULT_MAX_PIXELS``);
    ``allow_outside_paths``: let file names inside annotation files lead outside their
    base folder; ``report``: also write the failures as JSON lines there;
    ``only_failed``: a report file, convert just the items it lists as failed. Returns a
    :class:`Summary`; it raises only for problems with the whole run (unreadable source,
    bad options, OUTPUT not writable).
    """
    if executor not in (None, "local"):
        from segconvert.execution.executors import check_executor  # Dask's glue: imported when named

        check_executor(executor)
    only = read_failed(only_failed) if only_failed is not None else None  # before this run rewrites it
    with policies(max_pixels, allow_outside_paths):  # the reader checks paths as it opens the source
        return _convert(source, output, from_format=from_format, to_format=to_format, mode=mode, index=index,
                        jobs=jobs, overwrite=overwrite, progress=progress, max_pixels=max_pixels,
                        allow_outside_paths=allow_outside_paths, report=report, only=only, options=options,
                        executor=executor)


def _convert(
    source: str | Path, output: str | Path, *, from_format: str, to_format: str, mode: str | None,
    index: str | None, jobs: int | None, overwrite: bool, progress: Callable[[int], None] | None,
    max_pixels: int | None, allow_outside_paths: bool, report: str | Path | None, only: set[str] | None,
    options: dict[str, Any], executor: str | None,
) -> Summary:
    if from_format == "auto":
        from_format = registry.detect(location(source))
    reader_fmt, writer_fmt = registry.reader_for(from_format), registry.writer_for(to_format)
    assert reader_fmt.reader is not None and writer_fmt.writer is not None
    names = f"{from_format} -> {to_format}"
    reader_opts, writer_opts = _split_options(reader_fmt.reader, writer_fmt.writer, options, names)
    reader = _open(reader_fmt.reader, from_format, source, reader_opts)
    mode = mode or reader.default_mode
    reader.use_mode(mode)
    if index is not None and mode != "semantic":
        raise SourceError(f"{opt('index')} applies to {opt('mode', 'semantic')} only (this run is {mode})")
    plan = ModePlan(mode=mode, index=index or "stable", categories=reader.categories)
    writer = writer_fmt.writer(output, plan, **writer_opts)
    settings = {
        "from": from_format,
        "to": to_format,
        "source": str(location(source).resolve()),
        "mode": mode,
        "index": plan.index,
        "options": {**reader_opts, **writer_opts},
    }
    return run(
        reader, writer, plan,
        jobs=jobs if jobs is not None else default_jobs(),
        overwrite=overwrite, settings=settings, progress=progress, executor=executor,
        max_pixels=max_pixels, allow_outside_paths=allow_outside_paths, report=report, only=only,
    )
