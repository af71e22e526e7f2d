"""What a converter module declares: a :class:`Format` with a reader and/or a writer.

A converter is one module in ``converters/`` that defines ``FORMAT = Format(...)``.
Options are ``click.Option`` objects on the reader/writer class, so the CLI can parse
``--masks-dir`` for coco-panoptic without the core knowing about it, and the Python
API takes the same names as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import click

from segconvert.io.sources import location, open_binary
from segconvert.io.storage import FileStamp, OutputStore
from segconvert.model.ir import Category, Item, Segmentation

if TYPE_CHECKING:
    from segconvert.model.modes import ModePlan


class Reader:
    """Opens a source and yields light :class:`Item` descriptions, in a stable order.

    ``__init__`` may read an index file (a COCO JSON) but must not decode masks: that
    happens in ``Item.load`` inside a worker process.
    """

    options: ClassVar[tuple[click.Option, ...]] = ()
    #: dataset-wide category table, when the format has one (needed for stable
    #: semantic indices); ``None`` when classes are only known per image.
    categories: list[Category] | None = None
    #: the mode a conversion uses when the user does not choose one.
    default_mode: str = "panoptic"
    #: what SOURCE must be, checked once before the reader opens it: "file" (a JSON, an
    #: XML), "dir" (a folder of files) or None (either, or the reader checks itself)
    source_kind: ClassVar[str | None] = None

    def __init__(self, source: str | Path, **options: Any) -> None:
        self.source = location(source)  # a Path, or a UrlPath for an fsspec URL

    def use_mode(self, mode: str) -> None:
        """Told the run's mode before ``items``: a reader may read less for it (VOC reads only
        the class PNGs for semantic), or refuse a mode its source cannot give (SourceError)."""

    def __len__(self) -> int:
        """How many items ``items`` will yield (for the progress bar); 0 when unknown."""
        return 0

    def items(self) -> Iterator[Item]:
        raise NotImplementedError


@dataclass(frozen=True)
class Written:
    """What ``Writer.write`` returns for one item: its record and the files it wrote.

    ``record`` is one line of text (no newline; e.g. the item's Nucleus payload) that
    ``finish`` gets back in source order. ``files`` are the stamps ``OutputStore.put``
    returned: the pipeline journals them, and a re-run skips the item only while every
    file still matches its stamp.
    """

    record: str
    files: tuple[FileStamp, ...] = ()


class Writer:
    """Writes converted items; per-item files in workers, dataset-wide files at the end.

    The pipeline calls ``write`` in a worker for each item; it writes that item's files
    through ``self.store`` (atomic, stamped) and returns a :class:`Written`. The
    pipeline journals it so that a killed run can resume, and hands the records to
    ``finish`` in source order once every item is through. Per-item file names come
    from :func:`segconvert.io.paths.output_stem`, the one rule for every writer.
    """

    options: ClassVar[tuple[click.Option, ...]] = ()

    def __init__(self, output: str | Path, plan: ModePlan, **options: Any) -> None:
        self.output = location(output)  # a Path, or a UrlPath for an fsspec URL
        self.plan = plan
        self.store = OutputStore(output)

    @property
    def state_dir(self) -> Path:
        """Where the pipeline keeps its journal for resuming (a local folder, also for
        object storage: see :mod:`segconvert.io.storage`)."""
        return self.store.state_dir()

    def prepare(self) -> None:
        """Create the output folders (main process, before any ``write``)."""
        self.store.makedirs()

    def item_done(self, reference_id: str) -> bool:
        """For writers whose ``write`` returns no file stamps: whether the item's files
        from an earlier run are there (stamped items are checked against their stamps)."""
        return True

    def write(self, seg: Segmentation) -> Written | str:
        raise NotImplementedError

    def finish(self, records: Iterator[str]) -> None:
        """Write dataset-wide files from the records of all converted items, in order."""


@dataclass(frozen=True)
class Format:
    """A named format: a reader, a writer, or both, and how to recognise its files."""

    name: str
    description: str
    reader: type[Reader] | None = None
    writer: type[Writer] | None = None
    #: cheap "is this mine?" check on a source path, for ``--from auto``
    sniff: Callable[[Path], bool] | None = None
    #: the same for a glob SOURCE, on the files it matches (sorted; never empty): only
    #: formats whose reader takes a pattern as SOURCE have one
    sniff_files: Callable[[list[Path]], bool] | None = None

    @property
    def abilities(self) -> str:
        return "/".join(x for x, c in (("read", self.reader), ("write", self.writer)) if c)


def read_ends(path: Path, window: int = 1 << 20) -> bytes:
    """The first and last ``window`` bytes of a file, for sniffing formats whose telling
    keys sit after a long list (COCO puts 'annotations' after every image)."""
    with open_binary(path, block_size=window) as fh:
        text = fh.read(window)
        size = fh.seek(0, 2)
        if size > window:
            fh.seek(max(window, size - window))
            text += fh.read()
    return text


def option_defaults(options: tuple[click.Option, ...]) -> dict[str, Any]:
    """The default of each declared option, by its Python name."""
    out: dict[str, Any] = {}
    for opt in options:
        assert opt.name is not None
        default = opt.default
        out[opt.name] = default() if callable(default) else default
    return out
