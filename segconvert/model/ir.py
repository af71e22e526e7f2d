"""The intermediate representation every reader produces and every writer consumes.

A reader yields :class:`Item` objects: a few hundred bytes each (a reference_id, where
the mask lives, the segment table), cheap to make and to send to a worker process.
``Item.load()`` runs in the worker and returns a :class:`Segmentation`: the label map
of raw segment ids as the source stores them plus the segment table.

Mode transforms (``segconvert.model.modes``) do not touch pixels: they rewrite the segment
table and say which raw ids each segment covers (``SegmentInfo.pixel_ids``) and which
raw ids become void (``Segmentation.dropped_ids``). A writer then turns raw ids into
its own values in one lookup-table pass (``segconvert.model.pack``), which is what keeps a
conversion close to the cost of decoding and encoding the PNGs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segconvert.errors import ItemError

MODES = ("panoptic", "instance", "semantic")


@dataclass(frozen=True)
class Category:
    """One class of the dataset-wide category table (COCO's ``categories``)."""

    id: int
    name: str
    isthing: bool = True
    supercategory: str | None = None
    color: tuple[int, int, int] | None = None


@dataclass(slots=True)  # slots: readers make one per segment, tens per image
class SegmentInfo:
    """One segment of one image: an instance, a stuff region, or (after ``semantic``) a class.

    ``id`` is unique within the image and never 0 (0 is void). ``pixel_ids`` lists the
    label-map values the segment covers; ``None`` means just ``(id,)``. ``metadata`` is
    free: readers put source facts there (bbox, supercategory, annotation id, ...) and
    writers carry it along.
    """

    id: int
    label: str
    category_id: int | None = None
    isthing: bool = True
    iscrowd: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    pixel_ids: tuple[int, ...] | None = None

    @property
    def pixels(self) -> tuple[int, ...]:
        return self.pixel_ids if self.pixel_ids is not None else (self.id,)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Items cross to worker processes by the tens per image; the default pickling of a
        # slotted dataclass goes through copyreg and cost 0.06 ms of main-process CPU per
        # image (COCO panoptic, 26 segments), a third of what the main process does there.
        return SegmentInfo, (self.id, self.label, self.category_id, self.isthing, self.iscrowd, self.metadata,
                             self.pixel_ids)


@dataclass
class Segmentation:
    """One image's segmentation: raw label map + segment table (+ warnings found on the way).

    ``label_map`` is (H, W) of integers, or (H, W, 3) uint8 holding 24-bit ids as their
    little-endian bytes R, G, B (id = R + 256·G + 256²·B, COCO panoptic's encoding), so
    a reader of RGB id PNGs can hand over the decoded image as it is and packing reads
    it in one fused pass. ``ids()`` always gives the 2-D integer form.
    """

    reference_id: str
    label_map: np.ndarray
    segments: list[SegmentInfo]
    source: str | None = None
    dropped_ids: frozenset[int] = frozenset()
    warnings: list[str] = field(default_factory=list)
    #: pixels per label-map value (256 counts, uint8 label maps only), when the reader
    #: already has them from its own pass: packing then skips a histogram of its own
    pixel_counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        lm = self.label_map
        rgb_packed = lm.ndim == 3 and lm.shape[2] == 3 and lm.dtype == np.uint8
        if not rgb_packed and (lm.ndim != 2 or lm.dtype.kind not in "ui"):
            raise ItemError(
                f"label map must be a 2-D integer array or (H, W, 3) uint8 RGB-packed ids, got {lm.dtype} {lm.shape}",
                item=self.reference_id,
                file=self.source,
            )

    @property
    def height(self) -> int:
        return int(self.label_map.shape[0])

    @property
    def width(self) -> int:
        return int(self.label_map.shape[1])

    def ids(self) -> np.ndarray:
        """The label map as a 2-D integer array (RGB-packed ids unpacked to uint32)."""
        if self.label_map.ndim == 3:
            from segconvert.codecs.png import rgb_to_id24

            return rgb_to_id24(self.label_map)
        return self.label_map

    def replace_segments(
        self, segments: Iterable[SegmentInfo], dropped_ids: Iterable[int] = ()
    ) -> Segmentation:
        """A copy with another segment table over the same (shared, unchanged) pixels."""
        return Segmentation(
            reference_id=self.reference_id,
            label_map=self.label_map,
            segments=list(segments),
            source=self.source,
            dropped_ids=self.dropped_ids | frozenset(dropped_ids),
            warnings=self.warnings,
            pixel_counts=self.pixel_counts,
        )

    def resolved_label_map(self, dtype: np.dtype | type = np.int32) -> np.ndarray:
        """The label map with every pixel set to its segment's ``id`` (0 for void/dropped).

        For writers that keep integer ids (a COCO panoptic writer, say); the Nucleus
        writer packs straight from the raw ids instead.
        """
        from segconvert.codecs.lut import to_codes

        codes = {0: 0, **{raw: 0 for raw in self.dropped_ids}}
        values = [0]
        for seg in self.segments:
            values.append(seg.id)
            for raw in seg.pixels:
                codes[raw] = len(values) - 1
        code_map, _ = to_codes(self.label_map, codes, item=self.reference_id, file=self.source)
        resolved: np.ndarray = np.asarray(values, dtype=dtype)[code_map]
        return resolved


class Item:
    """A light description of one image to convert; ``load`` does the heavy work.

    Subclasses are plain picklable objects defined at module level in a converter, so
    they can cross into a worker process. ``reference_id`` names the image in
    Nucleus; ``source`` is the file shown in messages.
    """

    # annotations only (no class defaults), so dataclass subclasses may order fields freely
    reference_id: str
    source: str | None

    def load(self) -> Segmentation:
        raise NotImplementedError


@dataclass
class FailedItem(Item):
    """An item the reader already knows is broken (e.g. an unknown category in the JSON).

    It goes through the pipeline like any other so that the failure is reported with
    the rest, in order, and the batch carries on.
    """

    reference_id: str
    error: ItemError
    source: str | None = None

    def load(self) -> Segmentation:
        raise self.error
