"""Index PNGs: ``OUTPUT/masks/<reference_id>.png``, one class value per pixel, + ``labels.json``.

The layout semantic-segmentation training code reads. Every segment of a class gets
the class' value, whatever the mode (in instance mode stuff is void); values are one
dataset-wide table, decided before the first image from the reader's category table,
so a class has the same value in every mask. The masks are 8-bit grayscale, or
16-bit when a value exceeds 255 (never wrapped), for the whole dataset alike.

Values:

- default: void/background 0 (``--void-value V`` to move it), classes 1..K in the
  category table's order;
- ``--preset detectron2``: as detectron2's ``datasets/prepare_panoptic_fpn.py`` (the
  semantic half of PanopticFPN): every thing class 0, stuff classes 1..K in category
  order, void 255;
- ``--preset panopticapi``: as the COCO panoptic API's
  ``converters/panoptic2semantic_segmentation.py``: value = category id, void 0 (ids above
  255 make 16-bit masks where the tool's uint8 array would wrap them);
- ``--preset mmseg``: what mmsegmentation's ``reduce_zero_label`` makes of the default:
  classes 0..K-1, void 255.

``labels.json`` maps each value to its label (``{"0": "background", "1": "person"}``, the
``--labels`` file the ``rgb`` reader takes with ``--encoding palette``), and
``colors.json`` each value to its colour where the category table has one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import orjson

from segconvert.codecs.writing import encode_mapped, segment_pixels, warn_empty
from segconvert.errors import ItemError, SourceError, opt
from segconvert.interfaces.format import Format, Writer, Written
from segconvert.io.paths import output_stem
from segconvert.model.ir import Category, Segmentation
from segconvert.model.modes import ModePlan

PRESETS = ("detectron2", "panopticapi", "mmseg")
MASKS_DIR = "masks"
LABELS_FILE = "labels.json"
COLORS_FILE = "colors.json"


class ClassValues:
    """The dataset's class -> mask value table for one preset (main process, before any image)."""

    def __init__(self, categories: list[Category], preset: str | None, void_value: int | None) -> None:
        self.by_id: dict[int, int] = {}
        self.by_name: dict[str, int] = {}
        self.labels: dict[int, str] = {}
        self.colors: dict[int, tuple[int, int, int]] = {}
        if preset is not None and void_value is not None:
            raise SourceError(f"{opt('void-value')} does not go with {opt('preset', preset)} (its void is fixed)")
        if preset is None:
            self.void = 0 if void_value is None else void_value
            values = list(range(1, len(categories) + 1))
        elif preset == "detectron2":
            self.void = 255
            stuff = [c for c in categories if not c.isthing]
            if len(stuff) > 254:
                raise SourceError(f"{len(stuff)} stuff classes: detectron2's layout has room for 254 (1..254)")
            rank = {id(c): k for k, c in enumerate(stuff, start=1)}
            values = [rank.get(id(c), 0) for c in categories]
        elif preset == "panopticapi":
            self.void = 0
            bad = [f"{c.name} ({c.id})" for c in categories if c.id <= 0]
            if bad:
                raise SourceError(f"{opt('preset', 'panopticapi')} writes category ids, and these are not positive: "
                                  f"{', '.join(bad[:10])}")
            values = [c.id for c in categories]
        elif preset == "mmseg":
            self.void = 255
            if len(categories) > 255:
                raise SourceError(f"{len(categories)} classes: mmseg's 0..K-1 with void 255 holds 255 at most")
            values = list(range(len(categories)))
        else:
            raise SourceError(f"unknown {opt('preset', preset)}; choose one of {', '.join(PRESETS)}")
        for c, v in zip(categories, values):
            self.by_id.setdefault(c.id, v)
            self.by_name.setdefault(c.name, v)
        if preset is None and self.void in values:
            raise SourceError(
                f"{opt('void-value', self.void)} is also the value of a class (classes are 1..{len(values)})")
        if not 0 <= self.void <= 65535:
            raise SourceError(f"{opt('void-value', self.void)} does not fit a 16-bit mask")
        top = max([self.void, *values])
        if top > 65535:
            raise SourceError(f"value {top} does not fit a 16-bit mask")
        self.dtype = np.dtype(np.uint8 if top <= 255 else np.uint16)
        self.labels[self.void] = "background" if preset is None else "void"
        for c, v in zip(categories, values):
            if preset == "detectron2" and c.isthing:
                self.labels[0] = "things"
                continue
            self.labels.setdefault(v, c.name)
            if c.color is not None:
                self.colors.setdefault(v, c.color)

    def value(self, label: str, category_id: int | None) -> int | None:
        if category_id is not None and category_id in self.by_id:
            return self.by_id[category_id]
        return self.by_name.get(label)


class IndexWriter(Writer):
    """Writes one class-index PNG per image and the value table."""

    options = (
        click.Option(
            ["--preset"], type=click.Choice(PRESETS), default=None,
            help="Values as the named tool makes them: detectron2 (things 0, stuff 1..K, void 255), "
            "panopticapi (category id, void 0), mmseg (classes 0..K-1, void 255) "
            "[default: background 0, classes 1..K in category order].",
        ),
        click.Option(
            ["--void-value"], type=click.IntRange(0, 65535), default=None, metavar="V",
            help="Value of void pixels without a preset [default: 0, with background].",
        ),
    )

    def __init__(self, output: str | Path, plan: ModePlan, preset: str | None = None,
                 void_value: int | None = None) -> None:
        super().__init__(output, plan)
        if plan.categories is None:
            raise SourceError(
                "index masks need a dataset-wide category table so that a class has one value in every "
                f"mask; this source has none (LabelMe/CVAT: pass {opt('labels')})"
            )
        self.values = ClassValues(plan.categories, preset, void_value)

    def prepare(self) -> None:
        self.store.makedirs(MASKS_DIR)

    def write(self, seg: Segmentation) -> Written:
        ref = output_stem(seg.reference_id, source=seg.source)
        pixels = segment_pixels(seg)
        warn_empty(seg, pixels)
        values = [self.values.void]  # a Python list, then one array: per-element numpy stores cost more
        by_id, by_name = self.values.by_id, self.values.by_name
        for s in seg.segments:  # ClassValues.value inline (once per segment of every image)
            v = by_id.get(s.category_id) if s.category_id is not None else None
            if v is None:
                v = by_name.get(s.label)
            if v is None:
                raise ItemError(f"class {s.label!r} (category {s.category_id}) is not in the category table",
                                item=seg.reference_id, file=seg.source)
            values.append(v)
        data = encode_mapped(pixels.code_map, np.array(values, self.values.dtype))
        name = f"{MASKS_DIR}/{ref}.png"
        return Written(orjson.dumps(name).decode(), (self.store.put(name, data),))

    def finish(self, records: Iterator[str]) -> None:
        for _ in records:  # the table is the dataset's, not the records': nothing to gather
            pass
        with self.store.replacing(LABELS_FILE) as fh:
            fh.write(orjson.dumps({str(v): n for v, n in sorted(self.values.labels.items())},
                                  option=orjson.OPT_INDENT_2).decode() + "\n")
        if self.values.colors:
            with self.store.replacing(COLORS_FILE) as fh:
                fh.write(orjson.dumps({str(v): list(c) for v, c in sorted(self.values.colors.items())},
                                      option=orjson.OPT_INDENT_2).decode() + "\n")


FORMAT = Format(
    name="index",
    description="class-index PNGs (uint8, uint16 past 255) + labels.json; presets detectron2, panopticapi, mmseg",
    writer=IndexWriter,
)
