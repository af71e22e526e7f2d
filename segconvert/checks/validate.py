"""``segconvert validate``: check a Nucleus segmentation set before it is uploaded.

The official client never opens a mask: it does not check the PNG's mode, its values,
its size, or that every value has a Segment, so a bad set uploads and is misread later.
This reads the set itself — ``annotations.jsonl`` streamed line by line, each line's
mask in a worker — and reports everything wrong, per item, instead of stopping at the
first problem (which is why it does not use the ``nucleus`` reader, which fails an item
on its first problem).

What the client accepts is taken from its source (scale-nucleus 0.22,
``nucleus/annotation.py`` and ``annotation_uploader.py``): ``SegmentationAnnotation.
from_json`` needs an object with ``mask_url`` (non-empty) and ``reference_id`` and a list
of Segment objects; ``is_local_path`` calls every mask_url whose scheme is not http,
https, s3 or gs a local file, which must exist and whose name must end in ``.png``
(``mask_url.split(".")[-1] != "png"`` is refused, so ``.PNG`` is too); and
``annotate(asynchronous=True)`` refuses local masks. The tests check these rules against
the installed client.

Two judgement calls, both warnings rather than errors: pixels of value 0 without a
Segment (Nucleus shows them unlabelled, as background is commonly left out), and a
background Segment (index 0) with no pixels is not reported at all (segconvert and
others always list it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import orjson

from segconvert.checks.shared import find_images, ordered_map, oriented_size
from segconvert.codecs import png
from segconvert.errors import SourceError

ANNOTATIONS_FILE = "annotations.jsonl"
#: schemes the official client uploads by reference (``nucleus.annotation.is_local_path``)
REMOTE_SCHEMES = frozenset({"https", "http", "s3", "gs"})
MAX_INDEX = 255
SHOWN_PER_KIND = 5  # items named per problem kind in the terminal summary

ERROR, WARNING = "error", "warning"
#: every problem kind: severity and what it means (the JSON's ``kind`` values)
KINDS: dict[str, tuple[str, str]] = {
    "not-json": (ERROR, "line is not JSON"),
    "not-segmentation": (ERROR, "not a SegmentationAnnotation payload"),
    "bad-type": (ERROR, "type is not 'mask'"),
    "bad-label": (ERROR, "Segment label missing or not a string"),
    "bad-index": (ERROR, "Segment index not an integer in 0..255"),
    "duplicate-index": (ERROR, "Segment index listed twice"),
    "duplicate-reference-id": (ERROR, "reference_id twice in the set"),
    "bad-mask-url": (ERROR, "mask_url the client refuses"),
    "mask-missing": (ERROR, "mask file missing"),
    "mask-unreadable": (ERROR, "mask file unreadable"),
    "mask-not-png": (ERROR, "mask is not a PNG"),
    "mask-format": (ERROR, "mask is not single-channel 8-bit"),
    "mask-corrupt": (ERROR, "mask PNG cannot be decoded"),
    "unlisted-values": (ERROR, "pixel values without a Segment"),
    "size-mismatch": (ERROR, "mask size differs from its image"),
    "rgb-mask": (WARNING, "RGB mask with equal channels (Nucleus reads channel 0)"),
    "unlisted-background": (WARNING, "pixels of value 0 without a Segment"),
    "empty-segment": (WARNING, "Segment with no pixels"),
    "relative-mask-url": (WARNING, "mask_url is a relative path"),
    "image-missing": (WARNING, "no image for the reference_id in --images"),
    "ambiguous-image": (WARNING, "several images for the reference_id in --images"),
    "image-unreadable": (WARNING, "image in --images cannot be read"),
}


def is_local_path(url: str) -> bool:
    """The client's rule (``nucleus.annotation.is_local_path``): not http/https/s3/gs is local."""
    return urlparse(url).scheme not in REMOTE_SCHEMES


@dataclass
class Problem:
    kind: str
    reference_id: str  # the item's reference_id, or "line N" when it has none
    line: int
    message: str
    file: str | None = None

    @property
    def severity(self) -> str:
        return KINDS[self.kind][0]

    def as_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "severity": self.severity, "reference_id": self.reference_id,
               "line": self.line, "message": self.message}
        if self.file is not None:
            out["file"] = self.file
        return out

    def __str__(self) -> str:
        where = f"{self.reference_id} (line {self.line})"
        return f"{where}: {self.message}"


@dataclass
class LineResult:
    """What a worker finds in one line (small: crosses back over a pipe)."""

    line: int
    reference_id: str | None  # the payload's reference_id when it is a usable string
    problems: list[tuple[str, str, str | None]] = field(default_factory=list)  # (kind, message, file)
    mask_location: str | None = None  # "local" | "remote" | None (no usable mask_url)

    def add(self, kind: str, message: str, file: str | None = None) -> None:
        assert kind in KINDS, kind
        self.problems.append((kind, message, file))


@dataclass(frozen=True)
class CheckContext:
    images_dir: str | None = None


# ---------------------------------------------------------------- worker side


def check_line(task: tuple[int, bytes], ctx: CheckContext) -> LineResult:
    """Every problem of one annotations.jsonl line: the payload, its mask, its image."""
    line_no, raw = task
    result = LineResult(line_no, None)
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = "empty line" if not raw.strip() else f"not JSON ({exc})"
        result.add("not-json", f"{text}; each line must be one SegmentationAnnotation object")
        return result
    try:
        indices = _check_payload(payload, result)
        if indices is not None:
            _check_mask(payload, indices, ctx, result)
    except Exception as exc:  # a bug or an input not foreseen: report it on this line, go on
        result.add("not-segmentation", f"unexpected {type(exc).__name__} while checking: {exc} (please report this)")
    return result


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _check_payload(payload: Any, result: LineResult) -> dict[int, str] | None:
    """Problems of the payload's shape; the Segment labels by integer index when the mask can
    be checked against them (``None`` when the payload is too broken to say what it lists)."""
    if not isinstance(payload, dict):
        result.add("not-segmentation", f"the line is {_type_name(payload)}, not a SegmentationAnnotation object")
        return None
    ref = payload.get("reference_id")
    if isinstance(ref, str) and ref:
        result.reference_id = ref
    elif "reference_id" not in payload:
        result.add("not-segmentation", "no 'reference_id' (the item the mask belongs to)")
    else:
        result.add("not-segmentation", f"'reference_id' is {_type_name(ref)} {ref!r}, not a non-empty string")
    kind = payload.get("type", "mask")
    if kind != "mask":
        result.add("bad-type", f"'type' is {kind!r}; a segmentation is 'mask' (the client reads {kind!r} "
                   "as another annotation type)")
    url = payload.get("mask_url")
    if "mask_url" not in payload:
        result.add("not-segmentation", "no 'mask_url'")
    elif not isinstance(url, str) or not url:
        result.add("not-segmentation", f"'mask_url' is {_type_name(url)} {url!r}, not a non-empty string")
    segments = payload.get("annotations")
    if "annotations" not in payload:
        result.add("not-segmentation", "no 'annotations' (the Segment list saying what each mask value is)")
        return None
    if not isinstance(segments, list):
        result.add("not-segmentation", f"'annotations' is {_type_name(segments)}, not a list of Segments")
        return None
    labels: dict[int, str] = {}
    usable = True
    for j, seg in enumerate(segments):
        if not isinstance(seg, dict):
            result.add("not-segmentation", f"annotations[{j}] is {_type_name(seg)}, not a Segment object")
            usable = False
            continue
        label = seg.get("label")
        if not isinstance(label, str) or not label:
            what = "no 'label'" if "label" not in seg else f"'label' {label!r} is {_type_name(label)}"
            result.add("bad-label", f"annotations[{j}] has {what}; Nucleus needs a non-empty string")
        name = label if isinstance(label, str) else f"annotations[{j}]"
        index = seg.get("index")
        if index is None:
            what = "no 'index'" if "index" not in seg else "index null"
            result.add("bad-index", f"Segment {name!r} has {what}; it must be the mask value it labels (0..255)")
        elif isinstance(index, float) and index.is_integer() and not 0 <= index <= MAX_INDEX:
            # also an integer too large for 64 bits, which the JSON parser reads as a float
            result.add("bad-index", f"Segment {name!r} has index {index:.15g}, outside 0..{MAX_INDEX} (a uint8 mask "
                       "value)")
        elif isinstance(index, bool) or not isinstance(index, int):
            hint = " (the client's docs show index=\"1\", but the mask value must be an integer)" \
                if isinstance(index, str) else ""
            result.add("bad-index", f"Segment {name!r} has index {index!r}, {_type_name(index)}, not an integer{hint}")
        elif not 0 <= index <= MAX_INDEX:
            result.add("bad-index", f"Segment {name!r} has index {index}, outside 0..{MAX_INDEX} (a uint8 mask value)")
        elif index in labels:
            result.add("duplicate-index", f"index {index} is listed twice ({labels[index]!r} and {name!r}); "
                       "Nucleus cannot tell which label its pixels have")
        else:
            labels[index] = name
    return labels if usable else None


def _check_mask(payload: dict[str, Any], labels: dict[int, str], ctx: CheckContext, result: LineResult) -> None:
    url = payload.get("mask_url")
    if not isinstance(url, str) or not url:
        return
    try:
        local = is_local_path(url)
    except ValueError as exc:
        result.add("bad-mask-url", f"mask_url {url!r} cannot be parsed as a URL ({exc})")
        return
    if not local:
        result.mask_location = "remote"
        return
    result.mask_location = "local"
    if "\0" in url:  # no file name holds a NUL byte: the OS refuses it (os.open raises ValueError)
        result.add("bad-mask-url", f"mask_url {url!r} holds a NUL character; no local file has such a name", url)
        return
    if url.split(".")[-1] != "png":
        result.add("bad-mask-url", f"mask_url {url!r} is a local file whose name does not end in '.png'; the "
                   "client uploads only names ending in lowercase '.png'", url)
    scheme = urlparse(url).scheme
    if scheme and len(scheme) > 1:  # "C:" is a Windows drive, not a scheme
        if not os.path.isfile(url):
            result.add("mask-missing", f"mask_url {url!r} has scheme {scheme!r}, which the client treats as a "
                       "local file name (only http, https, s3 and gs are URLs to it); there is no such file: "
                       "give the plain path, or an s3/gs/http(s) URL", url)
            return
    elif not os.path.isabs(url):
        result.add("relative-mask-url", f"mask_url {url!r} is a relative path; the client opens it from the "
                   f"folder it runs in (checked here from {os.getcwd()})", url)
    try:
        data = png.read_bytes(url)
    except FileNotFoundError:
        result.add("mask-missing", f"mask {url} does not exist", url)
        return
    except OSError as exc:
        result.add("mask-unreadable", f"cannot read mask {url}: {exc.strerror or exc}", url)
        return
    try:
        header = png.read_header(data)
    except ValueError as exc:
        result.add("mask-not-png", f"mask {url}: {exc}; Nucleus masks are PNGs", url)
        return
    single = header.color_type == 0 and header.bit_depth == 8
    rgb8 = header.color_type == 2 and header.bit_depth == 8
    if not (single or rgb8):
        result.add("mask-format", f"mask is {header.description}; Nucleus masks are single-channel 8-bit "
                   "(grayscale, Pillow mode L)", url)
        return
    try:
        pixels = _decode_8bit(data)
    except ValueError as exc:
        result.add("mask-corrupt", f"mask {url}: {exc}", url)
        return
    if rgb8:
        r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        if np.array_equal(r, g) and np.array_equal(r, b):
            result.add("rgb-mask", "mask is 8-bit RGB with equal channels; Nucleus reads channel 0, which works, "
                       "but a single-channel (mode L) PNG is the format", url)
            pixels = np.ascontiguousarray(r)
        else:
            result.add("mask-format", "mask is 8-bit RGB with differing channels; Nucleus reads channel 0 (R) "
                       "only: save the index mask as single-channel 8-bit (mode L)", url)
            return
    _check_values(pixels, labels, result, url)
    if ctx.images_dir is not None and result.reference_id is not None:
        _check_image_size(pixels.shape[1], pixels.shape[0], ctx.images_dir, result, url)


def _decode_8bit(data: bytes) -> np.ndarray:
    """An 8-bit grayscale (H, W) or RGB (H, W, 3, in R, G, B order) PNG's pixels; ValueError if corrupt.

    libspng where installed (it reports a truncated file as an error, where OpenCV also
    prints a warning of its own to stderr), else OpenCV.
    """
    try:
        import pyspng
    except ImportError:  # pragma: no cover - depends on the environment
        img = png.decode(data)
        return img[..., ::-1] if img.ndim == 3 else img
    try:
        return pyspng.load(data)
    except RuntimeError as exc:
        raise ValueError(f"the PNG data is corrupt or truncated ({exc})") from None


def _check_values(mask: np.ndarray, labels: dict[int, str], result: LineResult, url: str) -> None:
    from segconvert.codecs.lut import histogram

    counts = histogram(mask, 256)
    present = np.flatnonzero(counts).tolist()
    unlisted = [v for v in present if v not in labels]
    if unlisted and unlisted[0] == 0:
        result.add("unlisted-background", f"{int(counts[0])} pixels of value 0 have no Segment (add "
                   "{'label': 'background', 'index': 0})", url)
        unlisted = unlisted[1:]
    if unlisted:
        listed = ", ".join(f"{v} ({int(counts[v])} px)" for v in unlisted)
        result.add("unlisted-values", f"{len(unlisted)} mask value(s) have no Segment: {listed}", url)
    for index, label in sorted(labels.items()):
        if index != 0 and counts[index] == 0:
            result.add("empty-segment", f"Segment {label!r} (index {index}) has no pixels in the mask", url)


def _check_image_size(width: int, height: int, images_dir: str, result: LineResult, mask: str) -> None:
    ref = result.reference_id
    assert ref is not None
    found = find_images(Path(images_dir), ref)
    if not found:
        result.add("image-missing", f"no image {ref}.<jpg|png|...> in {images_dir}: mask size not checked")
        return
    if len(found) > 1:
        result.add("ambiguous-image", f"several images for {ref!r}: {', '.join(found)}; checked {found[0]}")
    image = found[0]
    try:
        shown = oriented_size(png.read_bytes(image))
    except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        result.add("image-unreadable", f"cannot read image {image}: {exc}", image)
        return
    if shown != (width, height):
        result.add("size-mismatch", f"mask is {width}x{height} but image {image} is {shown[0]}x{shown[1]} as "
                   "shown (after its EXIF orientation)", mask)


# ---------------------------------------------------------------- main side


@dataclass
class KindSummary:
    severity: str
    count: int = 0
    items: list[str] = field(default_factory=list)  # distinct reference_ids, first SHOWN_PER_KIND
    shown: list[Problem] = field(default_factory=list)  # first SHOWN_PER_KIND problems


@dataclass
class ValidationReport:
    source: str
    items: int = 0
    items_with_errors: int = 0
    items_with_warnings: int = 0
    errors: int = 0
    warnings: int = 0
    local_masks: int = 0
    remote_masks: int = 0
    kinds: dict[str, KindSummary] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    @property
    def notes(self) -> list[str]:
        notes = []
        if self.local_masks:
            notes.append(
                f"{self.local_masks} mask(s) are local files: Dataset.annotate uploads them itself (at most 10 per "
                "request), but annotate(asynchronous=True), the path for large sets, refuses local masks; give "
                "s3://, gs:// or http(s):// mask URLs for that (segconvert convert --mask-url-prefix)"
            )
        if self.remote_masks:
            notes.append(f"{self.remote_masks} mask(s) are remote URLs: not opened here, so their pixels, mode and "
                         "size are unchecked")
        return notes

    def add(self, problem: Problem) -> None:
        summary = self.kinds.get(problem.kind)
        if summary is None:
            summary = self.kinds[problem.kind] = KindSummary(problem.severity)
        summary.count += 1
        if len(summary.shown) < SHOWN_PER_KIND:
            summary.shown.append(problem)
        if problem.reference_id not in summary.items and len(summary.items) < SHOWN_PER_KIND:
            summary.items.append(problem.reference_id)
        if problem.severity == ERROR:
            self.errors += 1
        else:
            self.warnings += 1

    def summary_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": self.ok,
            "items": self.items,
            "items_with_errors": self.items_with_errors,
            "items_with_warnings": self.items_with_warnings,
            "errors": self.errors,
            "warnings": self.warnings,
            "local_masks": self.local_masks,
            "remote_masks": self.remote_masks,
            "kinds": {k: {"severity": s.severity, "description": KINDS[k][1], "count": s.count, "items": s.items}
                      for k, s in self.kinds.items()},
            "notes": self.notes,
        }


def annotations_path(source: str | Path) -> Path:
    """The annotations.jsonl of SOURCE (a Nucleus set folder, or the file itself)."""
    path = Path(source)
    if path.is_dir():
        path = path / ANNOTATIONS_FILE
        if not path.is_file():
            raise SourceError(f"no {ANNOTATIONS_FILE} in this folder; is it a Nucleus set?", file=source)
    elif not path.exists():
        raise SourceError("no such file or folder", file=source)
    elif not path.is_file():
        raise SourceError(f"not a regular file or a folder; give the set's folder or its {ANNOTATIONS_FILE}",
                          file=source)
    return path


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            yield line_no, raw.rstrip(b"\r\n")


def count_lines(path: Path) -> int:
    """Lines in the file, for the progress bar (a fast byte count, no parsing)."""
    count, last = 0, b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def validate(
    source: str | Path,
    *,
    images_dir: str | Path | None = None,
    jobs: int = 1,
    on_problem: Callable[[Problem], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Check every line of a Nucleus set; ``on_problem`` sees every problem in source order.

    Raises SourceError when the set or ``images_dir`` cannot be used at all.
    """
    path = annotations_path(source)
    if images_dir is not None and not Path(images_dir).is_dir():
        raise SourceError("--images is not a folder", file=images_dir)
    ctx = CheckContext(os.fspath(images_dir) if images_dir is not None else None)
    report = ValidationReport(str(path))
    first_line: dict[str, int] = {}  # reference_id -> line it first appeared on
    for result in ordered_map(check_line, _lines(path), ctx, jobs):
        report.items += 1
        ref = result.reference_id
        problems = [Problem(kind, ref or f"line {result.line}", result.line, message, file)
                    for kind, message, file in result.problems]
        if ref is not None:
            if ref in first_line:
                problems.append(Problem("duplicate-reference-id", ref, result.line,
                                        f"reference_id {ref!r} is also on line {first_line[ref]}; Nucleus keeps "
                                        "one mask per item, so one of them would be lost"))
            else:
                first_line[ref] = result.line
        if result.mask_location == "local":
            report.local_masks += 1
        elif result.mask_location == "remote":
            report.remote_masks += 1
        severities = {p.severity for p in problems}
        report.items_with_errors += ERROR in severities
        report.items_with_warnings += WARNING in severities
        for problem in problems:
            report.add(problem)
            if on_problem is not None:
                on_problem(problem)
        if progress is not None:
            progress(1)
    return report


def format_report(report: ValidationReport) -> str:
    """The terminal summary: totals, then per problem kind its count and first items."""
    out = [
        f"checked {report.items} item(s) in {report.source}: "
        f"{report.errors} error(s) in {report.items_with_errors} item(s), "
        f"{report.warnings} warning(s) in {report.items_with_warnings} item(s)"
    ]
    for severity, title in ((ERROR, "errors"), (WARNING, "warnings")):
        kinds = [(k, s) for k, s in report.kinds.items() if s.severity == severity]
        if not kinds:
            continue
        out.append(f"{title}:")
        for kind, summary in kinds:
            out.append(f"  {kind}: {summary.count} ({KINDS[kind][1]})")
            for problem in summary.shown:
                out.append(f"    {problem}")
            if summary.count > len(summary.shown):
                out.append(f"    ... {summary.count - len(summary.shown)} more (all of them with --json)")
    for note in report.notes:
        out.append(f"note: {note}")
    out.append("OK: nothing wrong found" if report.ok else "NOT OK: fix the errors above before uploading")
    return "\n".join(out)
