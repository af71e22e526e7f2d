"""What ``validate``, ``stats`` and ``preview`` share: ordered work in worker processes (the
Python API's ``Dataset.masks`` uses it too), a progress bar on a terminal, and finding a
dataset's image by reference_id.

The three commands are read-only looks at a dataset, so they do not go through the
pipeline (no writer, no journal); they use the same pool and batching as
``segconvert.execution.pipeline`` so that results come back in source order for any ``--jobs``.
"""

from __future__ import annotations

import functools
import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

T = TypeVar("T")
R = TypeVar("R")

BATCH = 8  # tasks per message to a worker, as in segconvert.execution.pipeline

#: image file extensions looked for beside a reference_id (``--images DIR``), matched case-insensitively
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")

_worker_state: tuple[Callable[[Any, Any], Any], Any] | None = None


def _init_worker(handler: Callable[[Any, Any], Any], context: Any) -> None:
    global _worker_state
    _worker_state = (handler, context)
    from segconvert.execution.pipeline import _tune_process

    _tune_process()


def _run_batch(batch: list[Any]) -> list[Any]:
    assert _worker_state is not None, "worker not initialised"
    handler, context = _worker_state
    return [handler(task, context) for task in batch]


def ordered_map(handler: Callable[[T, Any], R], tasks: Iterable[T], context: Any, jobs: int, *,
                tune: bool = True) -> Iterator[R]:
    """``handler(task, context)`` for every task, in task order; in ``jobs`` worker processes when > 1.

    ``handler`` must be a module-level function (it runs in the workers) and must not
    raise: it turns every problem of one task into its result, as ``convert_item`` does.
    ``tasks`` is consumed lazily, a few batches ahead, so memory stays flat.
    ``tune=False`` leaves the calling process' settings alone with ``jobs`` 1 (the Python
    API's ``Dataset.masks`` runs in someone else's process); worker processes are ours and
    always tuned.
    """
    if jobs <= 1:
        from segconvert.execution.pipeline import _tune_process

        if tune:
            _tune_process()
        for task in tasks:
            yield handler(task, context)
        return
    from segconvert.execution.workers import WorkerPool, batched

    with WorkerPool(jobs, _init_worker, (handler, context), _run_batch) as pool:
        for results in pool.imap(batched(tasks, BATCH)):
            yield from results


def item_failure(exc: BaseException, item: Any) -> str:
    """The message for an item that failed in a worker, as ``segconvert.execution.pipeline.convert_item``
    words it: an ItemError located at the item, anything else named as unexpected."""
    from segconvert.errors import ItemError

    if isinstance(exc, ItemError):
        return str(exc.located(item=item.reference_id, file=item.source))
    if isinstance(exc, MemoryError):
        return f"{item.source} [{item.reference_id}]: out of memory reading this image"
    return (f"{item.source} [{item.reference_id}]: unexpected {type(exc).__name__}: {exc} "
            "(please report this with the file)")


class Progress:
    """click's progress bar on a terminal (stderr), nothing elsewhere (logs, pipes, tests)."""

    def __init__(self, label: str, total: int = 0) -> None:
        self._bar: Any = None
        if sys.stderr.isatty():
            self._bar = click.progressbar(length=total or None, label=label, file=sys.stderr,
                                          show_pos=True, show_eta=bool(total))

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def step(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def find_images(images_dir: Path, reference_id: str) -> list[str]:
    """Every file ``images_dir/<reference_id>.<image extension>`` (any case of the extension), sorted.

    A reference_id may hold a sub-path (``city/0001``). Each folder is listed once per
    process and kept while its modification time stays the same, so a folder of N
    images costs one listing per worker, not one per item (N² for the set).
    """
    head, stem = os.path.split(reference_id)
    folder = os.path.join(images_dir, head) if head else os.fspath(images_dir)
    try:
        mtime = os.stat(folder).st_mtime_ns
    except OSError:
        return []
    return list(_image_index(folder, mtime).get(stem, ()))


@functools.lru_cache(maxsize=64)
def _image_index(folder: str, mtime_ns: int) -> dict[str, tuple[str, ...]]:
    """stem -> image files of that stem in ``folder`` (``mtime_ns`` keys the cache: a changed folder is re-read)."""
    found: dict[str, list[str]] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                base, ext = os.path.splitext(entry.name)
                if ext.lower() in IMAGE_EXTENSIONS and entry.is_file():
                    found.setdefault(base, []).append(entry.path)
    except OSError:
        return {}
    return {stem: tuple(sorted(paths)) for stem, paths in found.items()}


def oriented_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an image as shown after its EXIF orientation.

    The same rule as Pillow's ``ImageOps.exif_transpose``: the EXIF Orientation tag
    (0x0112) values 5-8 are transposes or quarter turns, which swap width and height;
    1-4 keep them. Only the header is parsed (Pillow opens lazily), the pixels are not
    decoded. OSError/ValueError (Pillow's) when the data is not an image Pillow reads.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        orientation = img.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def open_oriented_rgb(data: bytes) -> Any:
    """The image as an RGB Pillow image, turned as its EXIF orientation says (for previews)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        return ImageOps.exif_transpose(img).convert("RGB")
