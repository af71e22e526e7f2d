"""Nucleus: ``masks/<reference_id>.png`` (uint8, mode L) + ``annotations.jsonl``.

Each line of ``annotations.jsonl`` is exactly what
``nucleus.SegmentationAnnotation(...).to_payload()`` gives (same keys, same order),
so ``SegmentationAnnotation.from_json(json.loads(line))`` rebuilds it and
``dataset.annotate(...)`` uploads it. Without ``--mask-url-prefix`` the mask_url is
the mask's absolute path, which the official client uploads as a local file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import orjson

from segconvert import png
from segconvert.format import Format, Writer, Written
from segconvert.ir import Segmentation
from segconvert.modes import ModePlan
from segconvert.pack import pack
from segconvert.paths import output_stem

ANNOTATIONS_FILE = "annotations.jsonl"
MASKS_DIR = "masks"


def _to_json(payload: dict[str, Any]) -> str:
    """One compact JSON line: orjson, 10x faster than json here (a per-image cost);
    non-string metadata keys become strings, as json would make them."""
    return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS).decode()


class NucleusWriter(Writer):
    """Writes uint8 index masks and one SegmentationAnnotation payload per image."""

    options = (
        click.Option(
            ["--mask-url-prefix"],
            default=None,
            help="mask_url = PREFIX + '<reference_id>.png', e.g. s3://bucket/masks/ "
            "[default: the mask's absolute local path].",
        ),
        click.Option(
            ["--background-label"], default="background", show_default=True,
            help="Label of the Segment with index 0 (void, and stuff in instance mode).",
        ),
    )

    def __init__(
        self,
        output: str | Path,
        plan: ModePlan,
        mask_url_prefix: str | None = None,
        background_label: str = "background",
    ) -> None:
        super().__init__(output, plan)
        self.mask_url_prefix = mask_url_prefix
        self.background_label = background_label
        self.masks = Path(self.store.path(MASKS_DIR))

    def prepare(self) -> None:
        self.store.makedirs(MASKS_DIR)

    @staticmethod
    def mask_name(reference_id: str) -> str:
        """The mask's path relative to OUTPUT: the one place that builds it."""
        return f"{MASKS_DIR}/{reference_id}.png"

    def mask_path(self, reference_id: str) -> str:
        return self.store.path(self.mask_name(reference_id))

    def write(self, seg: Segmentation) -> Written:
        ref = output_stem(seg.reference_id, source=seg.source)
        packed = pack(seg, renumber=self.plan.renumbers, background_label=self.background_label)
        name = self.mask_name(ref)
        stamp = self.store.put(name, png.encode_gray8(packed.mask))
        mask_url = f"{self.mask_url_prefix}{ref}.png" if self.mask_url_prefix is not None else self.store.url(name)
        payload: dict[str, Any] = {  # key order of SegmentationAnnotation.to_payload()
            "type": "mask",
            "mask_url": mask_url,
            "annotations": packed.segments,
            "annotation_id": None,
            "reference_id": ref,
        }
        return Written(_to_json(payload), (stamp,))

    def finish(self, records: Iterator[str]) -> None:
        with self.store.replacing(ANNOTATIONS_FILE) as fh:
            for line in records:
                fh.write(line)
                fh.write("\n")


FORMAT = Format(
    name="nucleus",
    description="Scale Nucleus: uint8 index masks + SegmentationAnnotation payloads (annotations.jsonl)",
    writer=NucleusWriter,
)
