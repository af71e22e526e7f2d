"""Nucleus: ``masks/<reference_id>.png`` (uint8, mode L) + ``annotations.jsonl``.

Each line of ``annotations.jsonl`` is exactly what
``nucleus.SegmentationAnnotation(...).to_payload()`` gives (same keys, same order),
so ``SegmentationAnnotation.from_json(json.loads(line))`` rebuilds it and
``dataset.annotate(...)`` uploads it. Without ``--mask-url-prefix`` the mask_url is
the mask's absolute path, which the official client uploads as a local file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import orjson

from segconvert import png
from segconvert.errors import ItemError
from segconvert.format import Format, Writer
from segconvert.ir import Segmentation
from segconvert.modes import ModePlan
from segconvert.pack import pack

ANNOTATIONS_FILE = "annotations.jsonl"
MASKS_DIR = "masks"
_BAD_NAME_CHARS = set('/\\\0')


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
        self.masks = self.output.resolve() / MASKS_DIR
        self._masks_prefix = os.path.join(str(self.masks), "")

    def prepare(self) -> None:
        self.masks.mkdir(parents=True, exist_ok=True)

    def mask_path(self, reference_id: str) -> str:
        """Where the mask goes, as a str joined by hand: this runs once per image."""
        return f"{self._masks_prefix}{reference_id}.png"

    def item_done(self, reference_id: str) -> bool:
        return os.path.isfile(self.mask_path(reference_id))

    def write(self, seg: Segmentation) -> str:
        ref = seg.reference_id
        if not ref or ref in (".", "..") or _BAD_NAME_CHARS & set(ref):
            raise ItemError(f"reference_id {ref!r} cannot be used as a file name", item=ref, file=seg.source)
        packed = pack(seg, renumber=self.plan.renumbers, background_label=self.background_label)
        path = self.mask_path(ref)
        png.write_atomic(path, png.encode_gray8(packed.mask))
        mask_url = f"{self.mask_url_prefix}{ref}.png" if self.mask_url_prefix is not None else path
        payload: dict[str, Any] = {  # key order of SegmentationAnnotation.to_payload()
            "type": "mask",
            "mask_url": mask_url,
            "annotations": packed.segments,
            "annotation_id": None,
            "reference_id": ref,
        }
        return _to_json(payload)

    def finish(self, records: Iterator[str]) -> None:
        target = self.output / ANNOTATIONS_FILE
        tmp = target.with_name(f".{ANNOTATIONS_FILE}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for line in records:
                fh.write(line)
                fh.write("\n")
        os.replace(tmp, target)


FORMAT = Format(
    name="nucleus",
    description="Scale Nucleus: uint8 index masks + SegmentationAnnotation payloads (annotations.jsonl)",
    writer=NucleusWriter,
)
