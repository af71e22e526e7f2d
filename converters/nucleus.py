"""Nucleus: ``masks/<reference_id>.png`` (uint8, mode L) + ``annotations.jsonl``.

Writer: each line of ``annotations.jsonl`` is exactly what
``nucleus.SegmentationAnnotation(...).to_payload()`` gives (same keys, same order),
so ``SegmentationAnnotation.from_json(json.loads(line))`` rebuilds it and
``dataset.annotate(...)`` uploads it. Without ``--mask-url-prefix`` the mask_url is
the mask's absolute path, which the official client uploads as a local file.

Reader: SOURCE is a folder holding ``annotations.jsonl``, a ``.jsonl`` of payloads, or a
``.json`` list of payloads or of the official client's export rows
(``Dataset.items_and_annotations()``: ``{"item": ..., "annotations": {"segmentation":
payload or [payload]}}``), each streamed one payload at a time. The reader reads the
file twice: once at the start, cheaply (no masks), to build the dataset-wide category
table that stable semantic indices need (by ``category_id`` when every segment's
metadata has one, ids in ascending order; else by label in first-seen order), and once
to yield the items. A mask is found by its ``mask_url`` (an absolute path; a path
relative to the payload file's folder; else ``<folder>/masks/<reference_id>.png``);
remote URLs are read through :func:`segconvert.codecs.png.read_bytes`, the I/O layer the
object-storage support extends. Index 0 is void (background); every other pixel value
must be a listed Segment's index.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import click
import numpy as np
import orjson

from segconvert.codecs import cocojson, png
from segconvert.codecs.lut import count_codes_uint8, histogram
from segconvert.errors import ItemError, SegconvertError, SourceError
from segconvert.interfaces.format import Format, Reader, Writer, Written
from segconvert.io.paths import output_stem
from segconvert.model.ir import Category, FailedItem, Item, Segmentation, SegmentInfo
from segconvert.model.modes import ModePlan
from segconvert.model.pack import pack

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


# --------------------------------------------------------------------------- reader

_REMOTE_PREFIXES = tuple(f"{s}://" for s in REMOTE_SCHEMES)  # what the client calls remote


@dataclass
class NucleusItem(Item):
    """One payload: where its mask is and its Segments, as parsed (checked in ``load``)."""

    reference_id: str
    source: str  # the mask_url (the resolved mask path once load() found it)
    folder: str  # the payload file's folder: relative mask_urls and masks/<reference_id>.png
    segments: list[Any]
    index_file: str  # the payload file, named in messages about the Segments
    background_label: str
    category_ids: bool  # the dataset's category table is by category_id (else by label)

    def load(self) -> Segmentation:
        try:
            segments = segments_from_payload(self.segments, self.background_label, self.category_ids)
        except ItemError as exc:
            raise exc.located(item=self.reference_id, file=self.index_file) from None
        path, data = self._read()
        where = {"item": self.reference_id, "file": path}
        try:
            header = png.read_header(data)
        except ValueError as exc:
            raise ItemError(str(exc), **where) from None
        warnings: list[str] = []
        counts = None
        try:
            # 8-bit grayscale (and palette) masks: inflate, unfilter and count the values in one
            # pass (the C kernel); the counts are what the Segment check below needs anyway
            decoded = png.decode_index8(data) if header.bit_depth == 8 and header.color_type in (0, 3) else None
            if decoded is not None:
                mask, counts = decoded
                if header.color_type == 3:
                    warnings.append("mask is a palette PNG; read its indices as the segment indices")
            elif header.color_type == 0 and header.bit_depth == 8:
                mask = png.decode_gray8(data)
            elif header.color_type == 2 and header.bit_depth == 8:
                rgb = png.decode_rgb8(data)
                mask = np.ascontiguousarray(rgb[..., 0])
                if not ((rgb[..., 1] == mask).all() and (rgb[..., 2] == mask).all()):
                    differ = np.argwhere((rgb[..., 1] != mask) | (rgb[..., 2] != mask))[0]
                    y, x = int(differ[0]), int(differ[1])
                    raise ItemError(
                        f"mask is RGB and its channels differ (pixel x={x}, y={y} is {tuple(rgb[y, x].tolist())}); "
                        "a Nucleus mask is one channel of segment indices", **where,
                    )
                warnings.append("mask is RGB with three equal channels; read its first channel, as Nucleus' "
                                "metrics do")
            elif header.color_type == 3 and header.bit_depth == 8:
                import io

                from PIL import Image

                with Image.open(io.BytesIO(data)) as im:
                    mask = np.asarray(im)  # the indices, not the colours
                warnings.append("mask is a palette PNG; read its indices as the segment indices")
            else:
                raise ItemError(f"mask is {header.description}; Nucleus masks are 8-bit grayscale PNGs", **where)
        except (ValueError, OSError) as exc:
            raise ItemError(str(exc), **where) from None
        if mask.ndim != 2 or mask.dtype != np.uint8:
            raise ItemError(f"mask decodes as {mask.dtype} {mask.shape}, not one uint8 channel", **where)
        if counts is None:
            counts = histogram(mask, 256)
        # every pixel value must be 0 or a listed index (distinct, 1..255: segments_from_payload): the
        # histogram says so in one sum; only when it does not are the values named (ItemError)
        raw = counts.tolist()
        if raw[0] + sum([raw[s.id] for s in segments]) != mask.size:
            count_codes_uint8(mask, {0: 0, **{s.id: s.id for s in segments}}, counts, **where)
        return Segmentation(self.reference_id, mask, segments, source=path, warnings=warnings,
                            pixel_counts=counts)

    def _read(self) -> tuple[str, bytes]:
        """(path, bytes) of the mask: mask_url as given, else the fallbacks of the module docstring."""
        url = self.source
        if url.startswith("file://"):
            url = url[len("file://"):]
        remote = url.startswith(_REMOTE_PREFIXES)
        tried: list[str] = []
        if not remote and url:  # the common case first: the mask_url is there (no fallback path to build)
            tried.append(url if os.path.isabs(url) else os.path.join(self.folder, url))
            data = self._read_local(tried[-1])
            if data is not None:
                return tried[-1], data
        try:
            tried.append(os.path.join(self.folder, "masks", output_stem(self.reference_id) + ".png"))
        except ItemError:
            pass  # a reference_id that is no file name has no masks/<reference_id>.png
        else:
            data = self._read_local(tried[-1])
            if data is not None:
                return tried[-1], data
        if remote:
            try:
                return url, png.read_bytes(url)
            except (OSError, ValueError, SegconvertError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise ItemError(
                    f"cannot read the remote mask ({reason}); check the URL and the storage credentials "
                    "(fsspec's FSSPEC_<PROTOCOL>_<OPTION> variables, e.g. FSSPEC_S3_ENDPOINT_URL), or put "
                    f"the masks in {os.path.join(self.folder, 'masks')}/<reference_id>.png",
                    item=self.reference_id, file=url,
                ) from None
        raise ItemError(f"mask not found (tried {', '.join(tried) or '(mask_url is empty)'})",
                        item=self.reference_id, file=self.source)

    def _read_local(self, path: str) -> bytes | None:
        """The file's bytes; None when it does not exist (the next candidate is tried)."""
        try:
            return png.read_bytes(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ItemError(f"cannot read the mask: {exc.strerror or exc}", item=self.reference_id,
                            file=path) from None


def _flag(meta: dict[str, Any], key: str, default: bool) -> bool:
    value = meta.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ItemError(f"metadata {key!r} must be true/false or 0/1, not {value!r}")


def segments_from_payload(raw: Any, background_label: str, category_ids: bool) -> list[SegmentInfo]:
    """A payload's ``annotations`` as SegmentInfo: index 0 is void; indices 1..255, each once;
    category_id/isthing/iscrowd from the metadata (a thing unless the label is the background
    label, when the metadata does not say)."""
    if not isinstance(raw, list):
        raise ItemError("'annotations' must be a list of Segments")
    segments: list[SegmentInfo] = []
    append = segments.append
    seen: set[int] = set()
    for j, s in enumerate(raw):
        if type(s) is dict:
            # every segment of every image: the common case (an index 1..255 seen once, a string label,
            # metadata with bools and an int category_id) in as few steps as it takes; anything else
            # goes the general way below, which names what is wrong
            index, label, meta = s.get("index"), s.get("label"), s.get("metadata")
            if type(index) is int and 0 < index <= 255 and type(label) is str and type(meta) is dict \
                    and index not in seen:
                rest = meta.copy()
                isthing, iscrowd = rest.pop("isthing", None), rest.pop("iscrowd", None)
                if category_ids:
                    category_id = rest.pop("category_id", None)
                    fast = type(category_id) is int and type(isthing) is bool and type(iscrowd) is bool
                else:
                    category_id, fast = None, type(isthing) is bool and type(iscrowd) is bool
                if fast:
                    seen.add(index)
                    append(SegmentInfo(index, label, category_id, isthing, iscrowd, rest))
                    continue
        if not isinstance(s, dict):
            raise ItemError(f"annotations[{j}] is not a Segment object")
        index, label = s.get("index"), s.get("label")
        if type(index) is not int or not 0 <= index <= 255:
            raise ItemError(f"annotations[{j}] ({label!r}) has index {index!r}; indices are integers 0..255")
        if not isinstance(label, str):
            raise ItemError(f"annotations[{j}] (index {index}) has no string 'label'")
        if index in seen:
            raise ItemError(f"index {index} is listed twice in annotations")
        seen.add(index)
        if index == 0:
            continue  # background / void
        meta = s.get("metadata") or {}
        if not isinstance(meta, dict):
            raise ItemError(f"annotations[{j}] ({label!r}): metadata must be an object")
        # runs for every segment of every image: the common case (bools, an int id) inline
        rest = dict(meta)
        isthing, iscrowd = rest.pop("isthing", None), rest.pop("iscrowd", None)
        category_id = rest.pop("category_id", None) if category_ids else None
        try:
            if type(category_id) is not int and category_ids:
                category_id = cocojson.integer(category_id)
            if type(isthing) is not bool:
                isthing = _flag(meta, "isthing", label != background_label)
            if type(iscrowd) is not bool:
                iscrowd = _flag(meta, "iscrowd", False)
        except TypeError:
            raise ItemError(f"annotations[{j}] ({label!r}): category_id {meta.get('category_id')!r} "
                            "is not an integer") from None
        except ItemError as exc:
            raise ItemError(f"annotations[{j}] ({label!r}): {exc.message}") from None
        append(SegmentInfo(index, label, category_id, isthing, iscrowd, rest))
    return segments


def _payload_of(row: Any) -> tuple[Any, str | None]:
    """(segmentation payload, error) of one row: a payload itself, or an export row."""
    if not isinstance(row, dict):
        return None, "is not a JSON object"
    if "mask_url" in row or "annotations" not in row or not isinstance(row.get("annotations"), dict):
        return row, None
    seg = row["annotations"].get("segmentation")
    if isinstance(seg, list):
        if len(seg) != 1:
            return None, f"has {len(seg)} segmentation annotations; segconvert converts one per item"
        seg = seg[0]
    if not isinstance(seg, dict):
        return None, "has no segmentation annotation (nothing to convert)"
    item = row.get("item")
    if "reference_id" not in seg and isinstance(item, dict) and "reference_id" in item:
        seg = {**seg, "reference_id": item["reference_id"]}
    return seg, None


class NucleusReader(Reader):
    """Reads SegmentationAnnotation payloads (ours, or anyone's) and their masks."""

    options = (
        click.Option(
            ["--background-label"], default="background", show_default=True,
            help="Without isthing in a Segment's metadata, this label is stuff and every other label a thing.",
        ),
    )
    default_mode = "panoptic"

    def __init__(self, source: str | Path, background_label: str = "background") -> None:
        super().__init__(source)
        path = self.source
        if path.is_dir():
            path = path / ANNOTATIONS_FILE
        if not path.is_file():
            raise SourceError(f"no {ANNOTATIONS_FILE} here (SOURCE: a folder with one, a .jsonl or a .json list)",
                              file=path)
        self.path = path
        self.folder = str(path.parent.resolve())
        self.background_label = background_label
        self._count = 0
        self._table(path)

    def _rows(self) -> Iterator[tuple[int, Any, str | None]]:
        """(line or position, row, parse error) of every payload, streamed."""
        if self.path.suffix.lower() == ".json":
            for k, row in enumerate(cocojson.stream(self.path, "item")):
                yield k, row, None
            return
        with open(self.path, "rb") as fh:
            for n, line in enumerate(fh, start=1):
                if not line or line.isspace():  # a blank line (strip() would copy every line)
                    continue
                try:
                    yield n, orjson.loads(line), None
                except orjson.JSONDecodeError as exc:
                    yield n, None, f"line {n} is not valid JSON ({exc})"

    def _table(self, path: Path) -> None:
        """The pre-pass: item count and category table, from the Segments alone (no masks)."""
        by_id: dict[int, Category] = {}
        by_label: dict[str, Category] = {}
        all_ids = True
        for _, row, error in self._rows():
            self._count += 1
            payload, _ = _payload_of(row) if error is None else (None, error)
            segments = payload.get("annotations") if isinstance(payload, dict) else None
            if not isinstance(segments, list):
                continue
            for s in segments:
                if type(s) is not dict:
                    if not isinstance(s, dict):
                        continue
                label, meta = s.get("label"), s.get("metadata")
                if type(meta) is dict and type(label) is str and label in by_label:
                    # the common case, once per segment of every image: a class already in the table
                    cid = meta.get("category_id")
                    if (type(cid) is int and cid in by_id) or (cid is None and not all_ids):
                        continue
                if s.get("index") == 0 or not isinstance(label, str):
                    continue
                meta = meta if isinstance(meta, dict) else {}
                isthing = meta.get("isthing")
                isthing = bool(isthing) if isinstance(isthing, bool | int) else label != self.background_label
                sup = meta.get("supercategory") if isinstance(meta.get("supercategory"), str) else None
                cid = meta.get("category_id")
                if cid is None:
                    all_ids = False
                elif type(cid) is int and cid not in by_id:  # a bad one fails its item in load()
                    by_id[cid] = Category(cid, label, isthing, sup)
                if label not in by_label:
                    by_label[label] = Category(len(by_label) + 1, label, isthing, sup)
        self.category_ids = all_ids and bool(by_id)
        self.categories = sorted(by_id.values(), key=lambda c: c.id) if self.category_ids else list(by_label.values())

    def __len__(self) -> int:
        return self._count

    def items(self) -> Iterator[Item]:
        index_file = str(self.path)
        jsonl = self.path.suffix.lower() != ".json"
        for pos, row, error in self._rows():
            name = f"line {pos}" if jsonl else f"[{pos}]"
            payload, problem = _payload_of(row) if error is None else (None, error)
            ref = payload.get("reference_id") if isinstance(payload, dict) else None
            if ref is None and isinstance(row, dict) and isinstance(row.get("item"), dict):
                ref = row["item"].get("reference_id")
            ref = ref if isinstance(ref, str) else name
            if problem is None and not isinstance(payload.get("mask_url"), str):
                problem = "has no string 'mask_url'"
            if problem is not None:
                yield FailedItem(ref, ItemError(f"payload {name} {problem}", item=ref, file=index_file),
                                 source=index_file)
                continue
            yield NucleusItem(ref, payload["mask_url"], self.folder, payload.get("annotations"), index_file,
                              self.background_label, self.category_ids)


def sniff(path: Path) -> bool:
    """A folder with annotations.jsonl, or a .jsonl whose first line is a mask payload."""
    if path.is_dir():
        path = path / ANNOTATIONS_FILE
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with open(path, "rb") as fh:
        return b'"mask_url"' in fh.readline(1 << 20)


FORMAT = Format(
    name="nucleus",
    description="Scale Nucleus: uint8 index masks + SegmentationAnnotation payloads (annotations.jsonl)",
    reader=NucleusReader,
    writer=NucleusWriter,
    sniff=sniff,
)
