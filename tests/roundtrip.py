"""Round-trip helpers shared by the writer tests: IR scene -> writer -> files -> reader -> IR.

The pattern (meshio's ``write_read``): build a :class:`Segmentation` directly (hypothesis
draws it with :func:`scenes`), write it through the real pipeline with a writer, read the
output back with a reader, and compare :func:`canonical` forms. The canonical form does
not depend on raw ids or on the order of the segment table: pixels are renumbered by
the order in which segments first appear in raster order, and each segment is
described by the fields a format can carry (``fields``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from segconvert.execution.pipeline import Summary, run
from segconvert.interfaces import api, registry
from segconvert.interfaces.format import Reader
from segconvert.model.ir import Category, Item, Segmentation, SegmentInfo
from segconvert.model.modes import ModePlan

CATEGORIES = [
    Category(1, "person", True, "person", (220, 20, 60)),
    Category(3, "car", True, "vehicle", (0, 0, 142)),
    Category(7, "sky", False, "sky", (70, 130, 180)),
    Category(9, "road", False, "ground", (128, 64, 128)),
]
ALL_FIELDS = ("label", "category_id", "isthing", "iscrowd")


@dataclass
class SceneItem(Item):
    """An item whose load() returns a Segmentation built by the test (pickles with it)."""

    reference_id: str
    seg: Segmentation
    source: str | None = None

    def load(self) -> Segmentation:
        return Segmentation(self.seg.reference_id, self.seg.label_map.copy(),
                            [SegmentInfo(s.id, s.label, s.category_id, s.isthing, s.iscrowd, dict(s.metadata),
                                         s.pixel_ids) for s in self.seg.segments],
                            source=self.seg.source)


class SceneReader(Reader):
    """A reader over Segmentations in memory."""

    def __init__(self, segs: list[Segmentation], categories: list[Category] | None = CATEGORIES) -> None:
        self.source = Path("<scenes>")
        self.segs = segs
        self.categories = categories

    def __len__(self) -> int:
        return len(self.segs)

    def items(self):
        for seg in self.segs:
            yield SceneItem(seg.reference_id, seg)


def write_scenes(segs: list[Segmentation], to_format: str, out: Path, *, mode: str = "panoptic",
                 index: str = "stable", jobs: int = 1, categories: list[Category] | None = CATEGORIES,
                 **options: Any) -> Summary:
    """Write ``segs`` with ``to_format``'s writer through the pipeline (as ``convert`` would)."""
    writer_cls = registry.writer_for(to_format).writer
    assert writer_cls is not None
    plan = ModePlan(mode=mode, index=index, categories=categories)
    from segconvert.interfaces.format import option_defaults

    writer = writer_cls(out, plan, **{**option_defaults(writer_cls.options), **options})
    return run(SceneReader(segs, categories), writer, plan, jobs=jobs, settings={"to": to_format})


def read_back(source: Path, from_format: str, **options: Any) -> dict[str, Segmentation]:
    """Every item of ``source`` loaded, by reference_id."""
    reader = api.open_reader(source, from_format, **options)
    return {item.reference_id: item.load() for item in reader.items()}


def canonical(seg: Segmentation, fields: tuple[str, ...] = ALL_FIELDS) -> tuple[list[tuple[Any, ...]], np.ndarray]:
    """(segment descriptions, label map) independent of raw ids and table order.

    Segments without pixels are left out (writers leave them out, with a warning).
    """
    ids = seg.ids().astype(np.int64)
    owner: dict[int, int] = {}
    for pos, s in enumerate(seg.segments):
        for raw in s.pixels:
            owner[raw] = pos
    for raw in seg.dropped_ids:
        owner[raw] = -1
    owner[0] = -1
    flat = ids.ravel()
    uniq, first = np.unique(flat, return_index=True)
    assert all(int(u) in owner for u in uniq), "pixel ids without a segment"
    # segments in the order their first pixel appears
    first_of: dict[int, int] = {}
    for u, f in zip(uniq.tolist(), first.tolist()):
        pos = owner[u]
        if pos >= 0:
            first_of[pos] = min(first_of.get(pos, f), f)
    order = sorted(first_of, key=first_of.get)  # type: ignore[arg-type]
    rank = {pos: k for k, pos in enumerate(order, start=1)}
    lut = {u: rank.get(owner[u], 0) for u in uniq.tolist()}
    canon = np.vectorize(lut.__getitem__, otypes=[np.int64])(ids) if ids.size else ids
    described = [tuple(getattr(seg.segments[pos], f) for f in fields) for pos in order]
    return described, canon


def semantic(seg: Segmentation, categories: list[Category] | None = CATEGORIES) -> Segmentation:
    """The semantic view with stable indices (what class-per-pixel formats store)."""
    return ModePlan("semantic", "stable", categories).apply(seg)


@st.composite
def scenes(draw: Any, *, max_side: int = 16, max_segments: int = 8, max_id: int = (1 << 24) - 1,
           crowd: bool = True) -> Segmentation:
    """A random image: label map of raw ids (0 = void) and a segment table over CATEGORIES."""
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    n = draw(st.integers(0, max_segments))
    raw_ids = draw(st.lists(st.integers(1, max_id), min_size=n, max_size=n, unique=True))
    cats = draw(st.lists(st.sampled_from(CATEGORIES), min_size=n, max_size=n))
    crowds = draw(st.lists(st.booleans() if crowd else st.just(False), min_size=n, max_size=n))
    values = [0, *raw_ids]
    pick = draw(st.lists(st.integers(0, len(values) - 1), min_size=h * w, max_size=h * w))
    dtype = np.uint8 if max_id < 256 else np.uint32
    label_map = np.array([values[p] for p in pick], dtype=dtype).reshape(h, w)
    segments = [SegmentInfo(r, c.name, c.id, c.isthing, cr, {"supercategory": c.supercategory})
                for r, c, cr in zip(raw_ids, cats, crowds)]
    return Segmentation("scene", label_map, segments)
