"""Panoptic / instance / semantic views of one segmentation, as in the Nucleus guide.

- panoptic: every stuff region and thing instance is its own segment;
- instance: stuff folds into background (void), each thing stays its own segment;
- semantic: the segments of one class merge into one.

The transforms rewrite the segment table only (see ``segconvert.model.ir``); pixels are
touched once, when a writer packs the result.

Semantic indices are a dataset-wide decision, so :class:`ModePlan` is built once per
run from the reader's category table: ``stable`` gives each class one value in every
mask (position in the table + 1, background 0), ``category-id`` uses the category id
itself (as the COCO panoptic API's semantic converter does), ``compact`` numbers the
classes present in each image 1..k.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from segconvert.errors import ItemError, SourceError, opt
from segconvert.model.ir import MODES, Category, Segmentation, SegmentInfo

INDEX_POLICIES = ("stable", "compact", "category-id")
MAX_INDEX = 255  # a uint8 mask holds background 0 and at most 255 segments


@dataclass
class ModePlan:
    """How every item of one run is viewed: mode, semantic index policy, category table."""

    mode: str = "panoptic"
    index: str = "stable"
    categories: list[Category] | None = None
    _by_id: dict[int, int] = field(default_factory=dict, init=False, repr=False)
    _by_name: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SourceError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.index not in INDEX_POLICIES:
            raise SourceError(
                f"unknown index policy {self.index!r}; choose one of {', '.join(INDEX_POLICIES)}"
            )
        if self.mode != "semantic":
            return
        if self.index == "stable":
            if self.categories is None:
                raise SourceError(
                    "stable semantic indices need a dataset-wide category table, and none was given "
                    f"(the reader's categories, or categories=[...]); use {opt('index', 'compact')} to number "
                    "the classes per image"
                )
            if len(self.categories) > MAX_INDEX:
                raise SourceError(
                    f"{len(self.categories)} classes do not fit stable uint8 indices (at most {MAX_INDEX} "
                    f"besides background); use {opt('index', 'compact')} to number the classes per image"
                )
            for pos, cat in enumerate(self.categories, start=1):
                self._by_id.setdefault(cat.id, pos)
                self._by_name.setdefault(cat.name, pos)
        elif self.index == "category-id" and self.categories is not None:
            bad = [f"{c.name} ({c.id})" for c in self.categories if not 1 <= c.id <= MAX_INDEX]
            if bad:
                raise SourceError(
                    f"{opt('index', 'category-id')} needs category ids in 1..{MAX_INDEX}; these are not: "
                    f"{', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}; use {opt('index', 'stable')} or "
                    f"{opt('index', 'compact')}"
                )

    @property
    def renumbers(self) -> bool:
        """Whether a writer numbers segments 1..n per image (else segment ids are the values)."""
        return self.mode != "semantic"

    def apply(self, seg: Segmentation) -> Segmentation:
        if self.mode == "panoptic":
            return seg
        if self.mode == "instance":
            things = [s for s in seg.segments if s.isthing]
            stuff = [raw for s in seg.segments if not s.isthing for raw in s.pixels]
            return seg.replace_segments(things, dropped_ids=stuff)
        return self._semantic(seg)

    def _semantic(self, seg: Segmentation) -> Segmentation:
        # once per segment of every image (semantic readers give one per class, ~20 an image):
        # positional arguments and dict displays, no comprehension or property per segment
        classes: dict[object, SegmentInfo] = {}
        for s in seg.segments:
            cat = s.category_id
            key = cat if cat is not None else s.label
            pixels = s.pixel_ids if s.pixel_ids is not None else (s.id,)
            merged = classes.get(key)
            if merged is None:
                source = s.metadata
                meta = ({"supercategory": source["supercategory"], "instances": 1} if "supercategory" in source
                        else {"instances": 1})
                classes[key] = SegmentInfo(0, s.label, cat, s.isthing, False, meta, pixels)
            else:
                merged.pixel_ids = (*merged.pixels, *pixels)
                merged.metadata["instances"] += 1
        ordered = list(classes.values())
        if self.index == "stable":
            for c in ordered:
                if c.category_id is not None:
                    pos = self._by_id.get(c.category_id)
                else:
                    pos = self._by_name.get(c.label)
                if pos is None:
                    raise ItemError(
                        f"class {c.label!r} (category {c.category_id}) is not in the category table",
                        item=seg.reference_id, file=seg.source,
                    )
                c.id = pos
            ordered.sort(key=lambda c: c.id)
        elif self.index == "category-id":
            for c in ordered:
                if c.category_id is None or not 1 <= c.category_id <= MAX_INDEX:
                    raise ItemError(
                        f"class {c.label!r} has category id {c.category_id}, which cannot be a uint8 "
                        f"mask value (1..{MAX_INDEX}); use {opt('index', 'stable')} or {opt('index', 'compact')}",
                        item=seg.reference_id, file=seg.source,
                    )
                c.id = c.category_id
            ordered.sort(key=lambda c: c.id)
        else:
            if self.categories is not None:
                table_pos = {cat.id: i for i, cat in enumerate(self.categories)}
                ordered.sort(key=lambda c: table_pos.get(c.category_id, len(table_pos)))  # type: ignore[arg-type]
            for i, c in enumerate(ordered, start=1):
                c.id = i
        return seg.replace_segments(ordered)

