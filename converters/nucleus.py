"""Nucleus: ``masks/<reference_id>.png`` (uint8, mode L) + ``annotations.jsonl``.

Each line of ``annotations.jsonl`` is exactly what
``nucleus.SegmentationAnnotation(...).to_payload()`` gives (same keys, same order),
so ``SegmentationAnnotation.from_json(json.loads(line))`` rebuilds it and
``dataset.annotate(...)`` uploads it. Without ``--mask-url-prefix`` the mask_url is
the mask's absolute path, which the official client uploads as a local file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import click
import orjson

from segconvert import png
from segconvert.errors import SourceError
from segconvert.format import Format, Writer, Written
from segconvert.ir import Segmentation
from segconvert.modes import ModePlan
from segconvert.pack import pack
from segconvert.paths import output_stem

ANNOTATIONS_FILE = "annotations.jsonl"
MASKS_DIR = "masks"
#: mask_url schemes the Nucleus client sends to the server as they are (nucleus/annotation.py
#: ``is_local_path``); with any other scheme it reads the mask_url as a local file
REMOTE_SCHEMES = ("http", "https", "s3", "gs")


def url_quoter(prefix: str) -> Callable[[str], str]:
    """How a mask's file name is written after ``--mask-url-prefix``.

    http(s): percent-encoded as a URL path segment (space, ``#``, ``?``, ``%``, non-ASCII);
    s3/gs: only the characters that would end or change the key when the URL is parsed
    (space, ``#``, ``?``, ``%``), since object keys are otherwise taken as written; a
    prefix without a scheme is a local path and stays as it is. SourceError for a scheme
    the Nucleus client would take for a local file (``gcs://``, ``az://``, ``file://``...).
    """
    scheme = urlsplit(prefix).scheme.lower()
    if not scheme or (len(scheme) == 1 and prefix[1:2] == ":"):  # a path (C:\ on Windows)
        return lambda name: name
    if scheme not in REMOTE_SCHEMES:
        raise SourceError(
            f"--mask-url-prefix {prefix!r}: the Nucleus client reads a mask_url with scheme {scheme}:// as a "
            f"local file (only {', '.join(REMOTE_SCHEMES)} URLs go to the server as they are); "
            "use one of those (e.g. gs:// rather than gcs://), or a local folder path"
        )
    return _quote_path_segment if scheme in ("http", "https") else _quote_key


# module-level functions, not lambdas: the writer is pickled into workers under "spawn"
def _as_is(name: str) -> str:
    return name


def _quote_path_segment(name: str) -> str:
    return quote(name, safe="!$&'()*+,;=:@~")


def _quote_key(name: str) -> str:
    return name.replace("%", "%25").replace(" ", "%20").replace("#", "%23").replace("?", "%3F")


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
        self._quote = url_quoter(mask_url_prefix) if mask_url_prefix is not None else None
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
        if self._quote is not None:
            mask_url = f"{self.mask_url_prefix}{self._quote(ref + '.png')}"
        else:
            mask_url = self.store.url(name)
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
