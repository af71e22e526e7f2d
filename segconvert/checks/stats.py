"""``segconvert stats``: what a dataset holds, in the mode it would be converted in.

Per class: pixels, share of all pixels, instances, images it appears in; per image the
number of segments (the headroom to Nucleus' 255, and which images are over it); the
image sizes. Every item goes through what ``convert`` does — load, mode, pack — in
worker processes, so an item that would fail to convert fails here with the same
message, and the others are counted.

One difference on purpose: ``pack`` refuses an image with more than 255 segments
(convert fails it), but stats must count those images, so the segments are counted
first (the same raw-id lookup ``pack`` makes) and only images within the limit are
packed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from segconvert.checks.shared import item_failure, ordered_map
from segconvert.interfaces.format import Reader
from segconvert.model.ir import Item, Segmentation
from segconvert.model.modes import MAX_INDEX, ModePlan

SHOWN = 50  # failures / over-limit images kept for the summary


@dataclass
class ItemStats:
    """One image's counts (small: crosses back from a worker)."""

    reference_id: str
    source: str | None
    error: str | None = None
    width: int = 0
    height: int = 0
    segments: int = 0  # segments with pixels besides background, in this mode
    classes: list[tuple[str, int, int]] = field(default_factory=list)  # (label, pixels, instances)
    warnings: list[str] = field(default_factory=list)


def segment_areas(original: Segmentation, view: Segmentation) -> list[tuple[str, int, int]]:
    """(label, pixels, instances) of every segment of ``view`` with pixels, in table order.

    ``instances`` is 1 for a panoptic/instance segment; for a semantic class it is the
    number of the original image's segments of that class that have pixels. Raises
    ItemError, as packing does, for a pixel id no segment lists or an id listed twice.
    """
    from segconvert.model.pack import code_table, count_codes

    table = code_table(view)
    code_owner, code_raw = table.owner, table.raw_of_code
    _, counts = count_codes(view, table.codes)
    count_list = counts.tolist()
    source_of_raw = {raw: k for k, s in enumerate(original.segments) for raw in s.pixels}
    areas = [0] * len(view.segments)
    members: list[set[int]] = [set() for _ in view.segments]
    for code in range(1, len(code_owner)):
        n = count_list[code]
        if n:
            pos = code_owner[code]
            areas[pos] += n
            members[pos].add(source_of_raw.get(code_raw[code], -code))
    return [(s.label, areas[pos], len(members[pos])) for pos, s in enumerate(view.segments) if areas[pos]]


def item_stats(item: Item, plan: ModePlan) -> ItemStats:
    """load → mode → count → pack for one item; failures become ``error``, never an exception."""
    from segconvert.model.pack import pack

    out = ItemStats(item.reference_id, item.source)
    try:
        seg = item.load()
        out.height, out.width = seg.height, seg.width
        view = plan.apply(seg)
        out.classes = segment_areas(seg, view)
        out.segments = len(out.classes)
        if out.segments <= MAX_INDEX:  # over the limit pack refuses the image; it is counted, not failed
            packed = pack(view, renumber=plan.renumbers)
            out.warnings = packed.warnings
    except Exception as exc:  # ItemError, or a bug / an input not foreseen: report it, keep going
        out.error = item_failure(exc, item)
        out.classes, out.segments = [], 0
    return out


@dataclass
class ClassStats:
    label: str
    pixels: int = 0
    instances: int = 0
    images: int = 0


@dataclass
class DatasetStats:
    mode: str
    images: int = 0  # images counted (failed ones are not)
    failed: int = 0
    pixels: int = 0  # every pixel of the counted images, background included
    background_pixels: int = 0
    classes: dict[str, ClassStats] = field(default_factory=dict)
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    max_segments: int = 0
    max_segments_item: str | None = None
    over_limit: list[str] = field(default_factory=list)  # the first SHOWN
    over_limit_count: int = 0
    failures: list[str] = field(default_factory=list)  # the first SHOWN
    warned: int = 0

    def add(self, s: ItemStats) -> None:
        if s.error is not None:
            self.failed += 1
            if len(self.failures) < SHOWN:
                self.failures.append(s.error)
            return
        self.images += 1
        self.warned += bool(s.warnings)
        area = s.width * s.height
        self.pixels += area
        self.background_pixels += area - sum(p for _, p, _ in s.classes)
        self.sizes[(s.width, s.height)] += 1
        if s.segments > self.max_segments or self.max_segments_item is None:
            self.max_segments, self.max_segments_item = s.segments, s.reference_id
        if s.segments > MAX_INDEX:
            self.over_limit_count += 1
            if len(self.over_limit) < SHOWN:
                self.over_limit.append(s.reference_id)
        seen_here = set()
        for label, pixels, instances in s.classes:
            c = self.classes.get(label)
            if c is None:
                c = self.classes[label] = ClassStats(label)
            c.pixels += pixels
            c.instances += instances
            if label not in seen_here:
                c.images += 1
                seen_here.add(label)

    def ordered_classes(self, order: list[str] | None) -> list[ClassStats]:
        """Category-table order when the reader has one, then first seen."""
        rank = {name: k for k, name in enumerate(order or [])}
        first_seen = {label: k for k, label in enumerate(self.classes)}
        return sorted(self.classes.values(), key=lambda c: (rank.get(c.label, len(rank)), first_seen[c.label]))

    def as_json(self, order: list[str] | None = None) -> dict[str, Any]:
        total = self.pixels or 1
        return {
            "images": self.images,
            "failed": self.failed,
            "mode": self.mode,
            "pixels": self.pixels,
            "background_pixels": self.background_pixels,
            "classes": [{"label": c.label, "pixels": c.pixels, "share": c.pixels / total,
                         "instances": c.instances, "images": c.images} for c in self.ordered_classes(order)],
            "max_segments": {
                "limit": MAX_INDEX,
                "max": self.max_segments,
                "reference_id": self.max_segments_item,
                "headroom": MAX_INDEX - self.max_segments,
                "over_limit": self.over_limit_count,
                "over_limit_items": self.over_limit,
            },
            "sizes": [{"width": w, "height": h, "images": n} for (w, h), n in self.sizes.most_common()],
            "failures": self.failures,
        }


def dataset_stats(reader: Reader, plan: ModePlan, *, jobs: int = 1, progress: Any = None) -> DatasetStats:
    """Count every item of ``reader`` as viewed by ``plan``."""
    result = DatasetStats(plan.mode)
    seen: set[str] = set()
    for s in ordered_map(item_stats, reader.items(), plan, jobs):
        if s.error is None and s.reference_id in seen:  # as convert: the second would overwrite the first
            s.error = f"{s.source} [{s.reference_id}]: reference_id {s.reference_id!r} is also an earlier item's"
        seen.add(s.reference_id)
        result.add(s)
        if progress is not None:
            progress(1)
    return result


def format_table(stats: DatasetStats, order: list[str] | None = None) -> str:
    doc = stats.as_json(order)
    rows = [(c["label"], f"{c['pixels']:,}", f"{100 * c['share']:.2f}%", str(c["instances"]), str(c["images"]))
            for c in doc["classes"]]
    head = ("class", "pixels", "share", "instances", "images")
    widths = [max(len(r[k]) for r in [head, *rows]) for k in range(5)]
    lines = [f"{stats.images} image(s) counted, {stats.failed} failed; mode {stats.mode}; "
             f"{stats.pixels:,} pixels, {stats.background_pixels:,} background"]
    lines.append("  ".join(h.ljust(w) if k == 0 else h.rjust(w) for k, (h, w) in enumerate(zip(head, widths))))
    for r in rows:
        lines.append("  ".join(v.ljust(w) if k == 0 else v.rjust(w) for k, (v, w) in enumerate(zip(r, widths))))
    m = doc["max_segments"]
    lines.append(f"segments per image: at most {m['max']} ({m['reference_id']}), headroom {m['headroom']} to "
                 f"{MAX_INDEX}; over {MAX_INDEX}: {m['over_limit']}"
                 + (f" ({', '.join(m['over_limit_items'][:10])}{' ...' if m['over_limit'] > 10 else ''})"
                    if m["over_limit"] else ""))
    sizes = ", ".join(f"{s['width']}x{s['height']} ({s['images']})" for s in doc["sizes"][:10])
    lines.append(f"image sizes: {sizes or 'none'}{' ...' if len(doc['sizes']) > 10 else ''}")
    if stats.failures:
        lines.append("failed:")
        lines.extend(f"  {f}" for f in stats.failures)
        if stats.failed > len(stats.failures):
            lines.append(f"  ... and {stats.failed - len(stats.failures)} more")
    return "\n".join(lines)
