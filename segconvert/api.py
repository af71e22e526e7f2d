"""The Python API: ``segconvert.convert(...)`` does what ``segconvert convert`` does.

Format options are plain keyword arguments (``masks_dir=...``, ``mask_url_prefix=...``),
routed to the reader or the writer that declares them; an option neither declares is
an error rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from segconvert import registry
from segconvert.errors import SourceError, opt
from segconvert.executors import check_executor
from segconvert.format import Reader, Writer, option_defaults
from segconvert.modes import ModePlan
from segconvert.pipeline import Summary, default_jobs, run
from segconvert.sources import location


def open_reader(source: str | Path, from_format: str, **options: Any) -> Reader:
    """The reader of ``from_format`` on ``source``, for use without a writer."""
    cls = registry.reader_for(from_format).reader
    assert cls is not None
    return cls(source, **{**option_defaults(cls.options), **options})


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
    **options: Any,
) -> Summary:
    """Convert ``source`` (in ``from_format``; ``auto`` recognises it) into ``output`` (in ``to_format``).

    ``mode`` defaults to the reader's natural one (panoptic for COCO panoptic, semantic
    for colour masks, instance for polygons). ``index`` (stable | compact |
    category-id) applies to semantic mode only. ``executor``: "local" (worker processes,
    the default), "dask" (a local Dask cluster of ``jobs`` workers) or a Dask scheduler's
    address (tcp://host:8786); the output is the same bytes with any. Returns a :class:`Summary`; it raises
    only for problems with the whole run (unreadable source, bad options).
    """
    check_executor(executor)
    if from_format == "auto":
        from_format = registry.detect(location(source))
    reader_fmt, writer_fmt = registry.reader_for(from_format), registry.writer_for(to_format)
    assert reader_fmt.reader is not None and writer_fmt.writer is not None
    names = f"{from_format} -> {to_format}"
    reader_opts, writer_opts = _split_options(reader_fmt.reader, writer_fmt.writer, options, names)
    reader = reader_fmt.reader(source, **reader_opts)
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
    )
