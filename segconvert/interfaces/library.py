"""The library as a Python user meets it: ``segconvert.open`` and ``segconvert.write``.

``segconvert.open(source)`` gives a :class:`Dataset`: iterate it for the intermediate
representation (one :class:`~segconvert.model.ir.Segmentation` per image, decoded lazily),
or call :meth:`Dataset.masks` for the Nucleus-style masks themselves, in memory: the
same values, Segments and order that ``segconvert convert`` writes, because both go
through the same mode plan and the same packing. ``segconvert.write`` runs the
pipeline (workers, journal, atomic files) from Python over a Dataset or any iterable
of Segmentations, so a user's own loader can feed every writer.
"""

from __future__ import annotations

import os
import warnings as _warnings
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from segconvert.errors import ItemError, SourceError, opt
from segconvert.interfaces import registry
from segconvert.interfaces.format import Reader, option_defaults
from segconvert.model.ir import Category, Item, Segmentation

if TYPE_CHECKING:
    import numpy as np

    from segconvert.execution.pipeline import Summary
    from segconvert.model.modes import ModePlan

ERRORS = ("raise", "skip")


class ItemWarning(UserWarning):
    """An item skipped by ``masks(errors="skip")``: the message names the item and the file."""


@dataclass
class Mask:
    """One image as Nucleus stores it: a uint8 index mask and its Segments.

    ``segments`` are the dicts ``segconvert convert`` writes into the payload's
    ``annotations`` (background first), JSON-ready.
    """

    reference_id: str
    mask: np.ndarray
    segments: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    source: str | None = None

    def png(self) -> bytes:
        """The mask as the PNG bytes the CLI writes (8-bit grayscale, mode L)."""
        from segconvert.codecs import png

        return png.encode_gray8(self.mask)

    def save(self, target: str | os.PathLike[str] | IO[bytes]) -> None:
        """Write the PNG to a path (atomically) or to a binary file object."""
        if isinstance(target, str | os.PathLike):
            from segconvert.codecs import png

            png.write_atomic(target, self.png())
        else:
            target.write(self.png())

    def payload(self, mask_url: str, annotation_id: str | None = None) -> dict[str, Any]:
        """The SegmentationAnnotation payload (as in annotations.jsonl) for ``mask_url``."""
        return {
            "type": "mask",
            "mask_url": mask_url,
            "annotations": self.segments,
            "annotation_id": annotation_id,
            "reference_id": self.reference_id,
        }

    def to_nucleus(self, mask_url: str, annotation_id: str | None = None) -> Any:
        """A ``nucleus.SegmentationAnnotation`` (needs the official client, ``scale-nucleus``).

        ``mask_url`` is where the mask will be: a URL Nucleus can fetch, or a local path
        (save the PNG there first) that the client uploads itself.
        """
        try:
            from nucleus import SegmentationAnnotation
        except ImportError:
            raise SourceError("to_nucleus needs the official Nucleus client: pip install scale-nucleus") from None
        return SegmentationAnnotation.from_json(self.payload(mask_url, annotation_id))


class Dataset:
    """A source opened with one reader: iterate for Segmentations, ``masks()`` for masks."""

    def __init__(self, reader: Reader, format: str, source: str | os.PathLike[str]) -> None:
        self.reader = reader
        self.format = format
        self.source = source

    @property
    def categories(self) -> list[Category] | None:
        """The dataset-wide category table (``None`` when the format knows classes per image only)."""
        return self.reader.categories

    @property
    def default_mode(self) -> str:
        return self.reader.default_mode

    def __len__(self) -> int:
        return len(self.reader)

    def __repr__(self) -> str:
        return f"<segconvert.Dataset {self.format} {str(self.source)!r}: {len(self)} items>"

    def items(self) -> Iterator[Item]:
        """The reader's light item descriptions (nothing decoded yet)."""
        return self.reader.items()

    def __iter__(self) -> Iterator[Segmentation]:
        for item in self.reader.items():
            yield _located_load(item)

    def plan(self, mode: str | None = None, index: str = "stable") -> ModePlan:
        """The mode plan ``convert`` would use: the reader's default mode and its categories."""
        from segconvert.model.modes import ModePlan

        mode = mode or self.reader.default_mode
        if index != "stable" and mode != "semantic":
            raise SourceError(f"{opt('index')} applies to {opt('mode', 'semantic')} only (this is {mode})")
        return ModePlan(mode=mode, index=index, categories=self.reader.categories)

    def masks(
        self,
        mode: str | None = None,
        index: str = "stable",
        background_label: str = "background",
        jobs: int = 1,
        errors: str = "raise",
    ) -> Iterator[Mask]:
        """The masks ``segconvert convert`` would write, one image at a time, in source order.

        ``jobs`` > 1 decodes in that many worker processes (still yielding in order).
        A bad item raises :class:`~segconvert.ItemError`; ``errors="skip"`` skips it with
        an :class:`ItemWarning` instead.
        """
        if errors not in ERRORS:
            raise SourceError(f"errors={errors!r}: choose one of {', '.join(map(repr, ERRORS))}")
        plan = self.plan(mode, index)
        self.reader.use_mode(plan.mode)  # as convert does: e.g. VOC semantic reads the class PNGs alone
        return _masks(self.reader.items(), plan, background_label, jobs, errors)


def _located_load(item: Item) -> Segmentation:
    try:
        return item.load()
    except ItemError as exc:
        raise exc.located(item=item.reference_id, file=item.source) from None


def pack_item(item: Item, plan: ModePlan, background_label: str) -> Mask:
    """load -> mode -> pack for one item: what the Nucleus writer does, without the files."""
    import orjson

    from segconvert.model.pack import pack

    seg = _located_load(item)
    try:
        packed = pack(plan.apply(seg), renumber=plan.renumbers, background_label=background_label)
    except ItemError as exc:
        raise exc.located(item=item.reference_id, file=item.source) from None
    # the payload's Segments exactly as the CLI writes them (orjson: NaN -> null, int keys -> str)
    segments = orjson.loads(orjson.dumps(packed.segments, option=orjson.OPT_NON_STR_KEYS))
    return Mask(packed.reference_id, packed.mask, segments, list(packed.warnings), item.source)


def _pack_or_error(item: Item, job: tuple[ModePlan, str]) -> Mask | ItemError:
    """``pack_item``, an ItemError returned rather than raised (it crosses back from a worker)."""
    try:
        return pack_item(item, *job)
    except ItemError as exc:
        return exc


def _masks(items: Iterable[Item], plan: ModePlan, background_label: str, jobs: int, errors: str) -> Iterator[Mask]:
    from segconvert.checks.shared import ordered_map

    for result in ordered_map(_pack_or_error, items, (plan, background_label), jobs, tune=False):
        if isinstance(result, Mask):
            yield result
        elif errors == "skip":
            _warnings.warn(f"skipped: {result}", ItemWarning, stacklevel=2)
        else:
            raise result


def open(source: str | os.PathLike[str], format: str = "auto", **options: Any) -> Dataset:  # noqa: A001
    """Open ``source`` with the reader of ``format`` (``"auto"`` recognises it).

    ``options`` are the reader's own (``masks_dir=``, ``colormap=``, ``labels=``, ...:
    ``segconvert formats NAME`` lists them, as flags); an unknown one is an error.
    """
    from segconvert.interfaces.api import _open
    from segconvert.io.sources import location

    if format == "auto":
        format = registry.detect(location(source))
    cls = registry.reader_for(format).reader
    assert cls is not None
    reader = _open(cls, format, os.fspath(source), _with_defaults(cls.options, options, f"the {format} reader"))
    return Dataset(reader, format, source)


def _with_defaults(declared: tuple[Any, ...], options: dict[str, Any], whose: str) -> dict[str, Any]:
    """The declared options' defaults updated with ``options``; SourceError naming an unknown one."""
    known = option_defaults(declared)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SourceError(
            f"{whose} has no option {', '.join(map(repr, unknown))}; its options: {', '.join(sorted(known)) or 'none'}"
        )
    return {**known, **options}


# ---------------------------------------------------------------- writing from Python


@dataclass
class _GivenItem(Item):
    """A Segmentation the caller already has, as a pipeline item (it crosses to workers pickled)."""

    seg: Segmentation

    @property
    def reference_id(self) -> str:  # type: ignore[override]
        return self.seg.reference_id

    @property
    def source(self) -> str | None:  # type: ignore[override]
        return self.seg.source

    def load(self) -> Segmentation:
        return self.seg


class _IterableReader(Reader):
    """Any iterable of Segmentations as a reader, so every writer can be fed from Python."""

    default_mode = "panoptic"

    def __init__(self, segmentations: Iterable[Segmentation], categories: list[Category] | None) -> None:
        self.source = Path("<python>")
        self._segmentations = segmentations
        self.categories = categories
        self._len = len(segmentations) if isinstance(segmentations, Sized) else 0

    def __len__(self) -> int:
        return self._len

    def items(self) -> Iterator[Item]:
        for k, seg in enumerate(self._segmentations):
            if not isinstance(seg, Segmentation):
                raise SourceError(f"item {k} of the iterable is a {type(seg).__name__}, not a segconvert.Segmentation")
            yield _GivenItem(seg)


def write(
    data: Dataset | Iterable[Segmentation],
    output: str | os.PathLike[str],
    format: str = "nucleus",
    *,
    mode: str | None = None,
    index: str = "stable",
    categories: list[Category] | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    **options: Any,
) -> Summary:
    """Write ``data`` (a :class:`Dataset`, or any iterable of Segmentations) as ``format`` into ``output``.

    The same pipeline as ``segconvert convert``: atomic files, a journal (re-running
    resumes), byte-identical output for any ``jobs``. With a Dataset its reader's
    categories and default mode apply; with plain Segmentations pass ``categories``
    for stable semantic indices. Returns the :class:`~segconvert.execution.pipeline.Summary`.
    """
    from segconvert.execution.pipeline import run
    from segconvert.model.modes import ModePlan

    if isinstance(data, Dataset):
        reader: Reader = data.reader
        source = str(Path(data.source).resolve()) if "://" not in str(data.source) else str(data.source)
        origin = data.format
    else:
        reader = _IterableReader(data, categories)
        source, origin = "<python>", "python"
    if categories is not None and isinstance(data, Dataset):
        reader.categories = categories
    mode = mode or reader.default_mode
    if index != "stable" and mode != "semantic":
        raise SourceError(f"{opt('index')} applies to {opt('mode', 'semantic')} only (this is {mode})")
    reader.use_mode(mode)
    writer_cls = registry.writer_for(format).writer
    assert writer_cls is not None
    writer_opts = _with_defaults(writer_cls.options, options, f"the {format} writer")
    plan = ModePlan(mode=mode, index=index, categories=reader.categories)
    writer = writer_cls(Path(output), plan, **writer_opts)
    settings = {"from": origin, "to": format, "source": source, "mode": mode, "index": index,
                "options": writer_opts}
    return run(reader, writer, plan, jobs=jobs, overwrite=overwrite, settings=settings)

