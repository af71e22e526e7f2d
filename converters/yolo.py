"""Ultralytics YOLO segmentation sets: ``data.yaml`` + ``labels/<split>/<stem>.txt`` polygons.

Reader. SOURCE is the dataset's YAML, or a folder holding ``data.yaml`` (or ``data.yml``,
or a single ``*.yaml`` with ``names``). The YAML gives ``names`` (a list, or ``{id: name}``),
``path`` (the root; relative to the YAML's folder here, and the YAML's folder itself when
that does not exist, as for a downloaded set whose ``path`` names the machine it was made
on), and ``train`` / ``val`` / ``test``: an images folder, a ``.txt`` list of image paths
(``./x`` relative to the list, as Ultralytics reads it), or a list of those; an entry
``../x`` that does not exist is tried as ``x``, as Ultralytics does (Roboflow's exports
need it). A label file is found as Ultralytics' ``img2label_paths`` finds it: the last
``/images/`` of the image path becomes ``/labels/`` and the suffix ``.txt``.

Each line is ``class x1 y1 x2 y2 ...`` normalised to [0, 1]; ``class cx cy w h`` (4
numbers) is a box. Pixels: the polygon scaled to the image (x·W, y·H, float64) and
rasterised by pycocotools (``frPyObjects``), the rule COCO polygons follow in
``coco_instances`` — so a YOLO set and its COCO twin give the same masks; a box is the
polygon of its four corners, as ``frBbox`` makes it. Lines are painted in file order
(later on top) unless ``--overlap`` says otherwise. Image sizes come from the image
headers (never decoded), turned by EXIF orientations 5-8 as Ultralytics' ``exif_size``
does (its labels are relative to the upright image).

Numbers are parsed by a C pass over the file's bytes where they are plain decimals (as every
exporter writes them; the pass gives exactly float()'s values), else by Python. Failing an
image, with its line number: fewer than 3 points, an odd number of
coordinates, a class id not in ``names``, a coordinate outside [0, 1] by more than
``TOLERANCE`` (1e-6: rounding of exporters writing 6 digits; Ultralytics itself refuses
anything above 1), a number that is not finite. A label file whose image is missing is
a failed item; an image without a label file is all background.

reference_id is the image's stem; when a stem occurs in more than one of the splits
being converted (``images/train/1.jpg`` and ``images/val/1.jpg``), every image with that
stem is named ``<split>-<stem>`` instead, so the splits stay apart; ``--split NAME``
converts one split. The image listing (names only) is held in memory.

Writer. ``data.yaml`` (names ``{0: ..., K-1: ...}`` in category order),
``labels/<split>/<stem>.txt`` with one polygon per segment, and, with ``--link-images DIR``,
``images/<split>/`` symlinks to the source photos (the IR does not know where photos
are; without ``--link-images`` the folder is left for the user to fill). Polygons are lossy:
each segment's outer contours (``cv2.findContours``, external), moved from pixel
centres onto the pixel corners around them (so a rectangle of pixels gives back exactly
those pixels), several parts joined into one line as Ultralytics' ``merge_multi_segment``
joins them (its two-pass walk over the nearest points between consecutive parts).
Every polygon is rasterised back and compared with its mask: instances below
``--min-iou`` are named in the item's warnings, and ``polygon_iou.json`` keeps the mean
IoU of the set and of every image.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
import numpy as np
import PIL.Image
from pycocotools import mask as mask_utils

from segconvert.codecs import png, raster
from segconvert.codecs.opencv import cv2
from segconvert.codecs.shapes import check_overlap, find_image
from segconvert.converters.voc import ClassNumbering
from segconvert.errors import ItemError, SourceError, opt
from segconvert.interfaces.format import Format, Reader, Writer, Written
from segconvert.io import sources
from segconvert.io.paths import output_stem
from segconvert.io.sources import location
from segconvert.model.ir import Category, FailedItem, Item, Segmentation, SegmentInfo
from segconvert.model.modes import ModePlan
from segconvert.model.pack import pack

try:  # the C kernel parsing plain decimals (setup.py builds it where a compiler is available)
    from segconvert.codecs._kernels import parse_numbers as _parse_numbers_c
except ImportError:  # pragma: no cover - depends on the build
    _parse_numbers_c = None

#: how far outside [0, 1] a normalised coordinate may be (rounding) before the image fails
TOLERANCE = 1e-6
#: Ultralytics' IMG_FORMATS
IMAGE_SUFFIXES = frozenset((".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm",
                            ".heic"))
SPLITS = ("train", "val", "test")
YAML_NAMES = ("data.yaml", "data.yml")


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml  # PyYAML: only the YOLO converter needs it

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", file=path) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SourceError(f"not valid YAML: {exc}", file=path) from None
    if not isinstance(doc, dict):
        raise SourceError("expected a YAML mapping with 'names' and train/val/test", file=path)
    return doc


def _find_yaml(source: Path) -> Path:
    if source.is_file():
        return source
    if not source.is_dir():
        raise SourceError("no such file or folder", file=source)
    for name in YAML_NAMES:
        if (source / name).is_file():
            return source / name
    cands = [p for p in sorted(source.glob("*.y*ml")) if b"names" in p.read_bytes()[:1 << 16]]
    if len(cands) == 1:
        return cands[0]
    raise SourceError("no data.yaml (a YOLO set's YAML with 'names' and train/val/test) in this folder", file=source)


def parse_names(doc: dict[str, Any], path: Path) -> dict[int, str]:
    """``names`` as a list or ``{id: name}``; ids must be integers from 0."""
    names = doc.get("names")
    if isinstance(names, list):
        out = dict(enumerate(names))
    elif isinstance(names, dict):
        out = {}
        for k, v in names.items():
            if isinstance(k, bool) or not isinstance(k, int):
                try:
                    k = int(str(k))
                except ValueError:
                    raise SourceError(f"names: key {k!r} is not a class id", file=path) from None
            out[k] = v
    else:
        raise SourceError("no 'names' list or {id: name} mapping", file=path)
    for k, v in out.items():
        if k < 0 or not isinstance(v, (str, int)) or isinstance(v, bool) or str(v) == "":
            raise SourceError(f"names[{k}] = {v!r}: class ids are 0, 1, ... and names non-empty", file=path)
    if not out:
        raise SourceError("'names' lists no classes", file=path)
    return {k: str(v) for k, v in sorted(out.items())}


def label_path(image: str) -> str:
    """Ultralytics' img2label_paths: last /images/ -> /labels/, suffix -> .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    joined = sb.join(image.rsplit(sa, 1))
    return joined.rsplit(".", 1)[0] + ".txt"


def exif_size(im: PIL.Image.Image) -> tuple[int, int]:
    """(width, height) as Ultralytics' ``exif_size``: swapped for EXIF orientations 5-8."""
    w, h = im.size
    if im.format == "JPEG":
        try:
            rotation = im.getexif().get(0x0112)
        except Exception:  # noqa: BLE001 - a broken EXIF block is no orientation, as there
            rotation = None
        if rotation in (5, 6, 7, 8):
            return h, w
    return w, h


def _header_size(fh: str | IO[bytes]) -> tuple[int, int]:
    with PIL.Image.open(fh) as im:
        return exif_size(im)


@dataclass
class YoloItem(Item):
    """One image: where its photo (for the size) and label file are, and the class names."""

    reference_id: str
    source: str  # the label file
    image_path: str
    names: dict[int, str]
    overlap: str = "paint"

    def _fail(self, message: str) -> ItemError:
        return ItemError(message, item=self.reference_id, file=self.source)

    def _size(self) -> tuple[int, int]:
        try:  # the header only (a URL: its first KBs), never the photo
            width, height = sources.probe(self.image_path, _header_size, final=(PIL.Image.DecompressionBombError,))
        except FileNotFoundError:
            raise ItemError("image not found", item=self.reference_id, file=self.image_path) from None
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
            raise ItemError(f"cannot read the image size: {exc}", item=self.reference_id,
                            file=self.image_path) from None
        return int(height), int(width)

    def _numbers(self, rows: list[tuple[int, list[str]]]) -> np.ndarray:
        """Every number of the file in one conversion; the first bad one named by its line."""
        flat = [tok for _, fields in rows for tok in fields]
        try:
            values = np.array(flat, dtype=np.float64)
        except ValueError:
            values = None
        if values is not None and np.isfinite(values).all():
            return values
        for lineno, fields in rows:  # the slow path, only to say where
            try:
                line_values = np.array(fields, dtype=np.float64)
            except ValueError:
                raise self._fail(f"line {lineno}: not all numbers: {' '.join(fields)[:80]!r}") from None
            if not np.isfinite(line_values).all():
                raise self._fail(f"line {lineno}: NaN or infinite number")
        raise self._fail("not all numbers")  # pragma: no cover - one of the lines fails above

    def _parse(self, data: bytes) -> tuple[list[tuple[int, int]], np.ndarray]:
        """(line number, how many numbers) of every non-empty line, and all the numbers.

        Plain decimals (what exporters write) are parsed by the C kernel in one pass over the
        bytes; a file it does not take (exponents, nan, other whitespace, non-ASCII) goes the
        Python way, which gives the same numbers and names a bad one by its line.
        """
        if _parse_numbers_c is not None:
            values = np.empty(len(data) // 2 + 1, np.float64)
            rows = np.empty((len(data) // 2 + 1, 2), np.int64)
            done = _parse_numbers_c(data, values, rows)
            if done is not None:
                n_values, n_rows = done
                return [(int(a), int(b)) for a, b in rows[:n_rows].tolist()], values[:n_values]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail("label file is not UTF-8 text") from None
        lines = [(lineno, fields) for lineno, fields in enumerate((ln.split() for ln in text.splitlines()), start=1)
                 if fields]
        return [(lineno, len(fields)) for lineno, fields in lines], self._numbers(lines)

    def _first_field(self, data: bytes, lineno: int) -> str:
        """Line ``lineno``'s first field as written (for a message)."""
        return data.decode("utf-8", "replace").splitlines()[lineno - 1].split()[0]

    def load(self) -> Segmentation:
        height, width = self._size()
        try:
            data = png.read_bytes(self.source)
        except FileNotFoundError:
            data = b""  # an image without a label file is all background
        except OSError as exc:
            raise self._fail(f"cannot read: {exc.strerror or exc}") from None
        rows, values = self._parse(data)
        segments: list[SegmentInfo] = []
        polygons: list[np.ndarray] = []
        scale = np.array([width, height], np.float64)
        at = 0
        for lineno, count in rows:  # per line: slices of one parsed array, checks on the slice
            line_values = values[at: at + count]
            at += count
            cls = float(line_values[0])
            if cls != int(cls) or int(cls) not in self.names:
                raise self._fail(f"line {lineno}: class {self._first_field(data, lineno)} is not in names "
                                 f"(0..{max(self.names)})")
            coords = line_values[1:]
            if len(coords) == 4:  # cx cy w h: the box's corners, as pycocotools' frBbox orders them
                cx, cy, bw, bh = coords.tolist()
                coords = np.array([cx - bw / 2, cy - bh / 2, cx - bw / 2, cy + bh / 2,
                                   cx + bw / 2, cy + bh / 2, cx + bw / 2, cy - bh / 2])
            elif len(coords) % 2:
                raise self._fail(f"line {lineno}: odd number of coordinates ({len(coords)})")
            elif len(coords) < 6:
                raise self._fail(f"line {lineno}: {len(coords) // 2} point(s); a polygon needs at least 3")
            lo, hi = float(coords.min()), float(coords.max())
            if lo < -TOLERANCE or hi > 1 + TOLERANCE:
                bad = lo if lo < -TOLERANCE else hi
                raise self._fail(f"line {lineno}: coordinate {bad:g} is outside [0, 1] (normalised coordinates)")
            polygons.append((coords.reshape(-1, 2) * scale).ravel())
            cid = int(cls)
            segments.append(SegmentInfo(id=len(segments) + 1, label=self.names[cid], category_id=cid, isthing=True,
                                        metadata={"line": lineno}))
        shapes: list[raster.Shape] = []
        if polygons:
            rles = mask_utils.frPyObjects(polygons, height, width)
            shapes = [(s.id, r) for s, r in zip(segments, rles)]
        label_map = raster.paint(height, width, shapes, self.overlap, item=self.reference_id, file=self.source)
        if len(segments) <= 255:  # uint8: packing then takes the 256-entry LUT path (no 64K table)
            label_map = label_map.astype(np.uint8)
        return Segmentation(self.reference_id, label_map, segments, source=self.source)


class YoloReader(Reader):
    """Reads an Ultralytics YOLO segmentation set (see the module doc)."""

    options = (
        raster.overlap_option(),
        click.Option(["--split"], default=None, help="Convert one split (train, val or test) [default: all]."),
    )
    default_mode = "instance"

    def __init__(self, source: str | Path, overlap: str = "paint", split: str | None = None) -> None:
        super().__init__(source)
        self.overlap = check_overlap(overlap)
        self.yaml = _find_yaml(self.source)
        doc = _load_yaml(self.yaml)
        self.names = parse_names(doc, self.yaml)
        self.categories = [Category(id=k, name=v) for k, v in self.names.items()]
        here = self.yaml.parent
        root = location(str(doc["path"])) if doc.get("path") else here
        if not root.is_absolute():
            root = here / root
        if not root.is_dir():  # the path of the machine the set was made on: the YAML's folder
            root = here
        self.root = root
        splits = [s for s in SPLITS if doc.get(s)]
        if split is not None:
            if split not in splits:
                raise SourceError(f"no split {split!r} in the YAML (it has: {', '.join(splits) or 'none'})",
                                  file=self.yaml)
            splits = [split]
        if not splits:
            raise SourceError("the YAML names no train, val or test images", file=self.yaml)
        self.splits = {s: doc[s] for s in splits}

    def _images(self, split: str, entry: Any) -> tuple[list[str], list[Path]]:
        """(image paths, images folders) of one split entry."""
        entries = entry if isinstance(entry, list) else [entry]
        images: list[str] = []
        folders: list[Path] = []
        for e in entries:
            p = location(str(e))
            p = p if p.is_absolute() else self.root / p
            if not p.exists() and str(e).startswith("../"):  # as Ultralytics' check_det_dataset retries
                p = self.root / str(e)[3:]
            if p.is_dir():
                folders.append(p)
                images += sorted(str(x) for x in p.rglob("*") if x.suffix.lower() in IMAGE_SUFFIXES)
            elif p.is_file() and p.suffix == ".txt":
                with p.open(encoding="utf-8") as fh:
                    for line in fh:
                        line = line.strip()
                        if not line:
                            continue
                        q = location(line[2:]) if line.startswith("./") else location(line)
                        images.append(str(q if q.is_absolute() else p.parent / q))
            else:
                raise SourceError(f"{split}: {e!r} is neither an images folder nor a .txt list of images "
                                  f"(looked for {p})", file=self.yaml)
        return images, folders

    def items(self) -> Iterator[Item]:
        listed: dict[str, tuple[list[str], list[Path]]] = {}
        seen: set[str] = set()
        for s, e in self.splits.items():  # an image listed in two splits (val: = train:) is converted once
            images, folders = self._images(s, e)
            unique = [img for img in images if not (img in seen or seen.add(img))]  # type: ignore[func-returns-value]
            listed[s] = (unique, folders)
        counts: dict[str, int] = {}
        for images, _ in listed.values():
            for img in images:
                stem = Path(img).stem
                counts[stem] = counts.get(stem, 0) + 1
        labels_seen: set[str] = set()
        checked: set[Path] = set()
        for split, (images, folders) in listed.items():
            for img in images:
                stem = Path(img).stem
                ref = stem if counts[stem] == 1 else f"{split}-{stem}"
                lab = label_path(img)
                labels_seen.add(lab)
                yield YoloItem(ref, lab, img, self.names, self.overlap)
            for folder in folders:  # label files whose image is missing
                labels = location(label_path(str(folder / "x.jpg"))).parent
                if labels == folder or labels in checked or not labels.is_dir():
                    continue
                checked.add(labels)
                for lab in sorted(labels.rglob("*.txt")):
                    if str(lab) not in labels_seen:
                        ref = lab.stem if counts.get(lab.stem, 0) == 0 else f"{split}-{lab.stem}"
                        err = ItemError(f"label file without its image (no {lab.stem}.* in {folder})", item=ref,
                                        file=lab)
                        yield FailedItem(ref, err, source=str(lab))


def _outward_corners(points: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """A contour through boundary pixels (cv2 coordinates = pixel indices) moved onto the
    pixel corners around them: pixel (x, y) covers [x, x+1) x [y, y+1) in COCO's continuous
    coordinates, so a polygon through the pixel indices would lose a row and a column.

    Each vertex is moved from its pixel centre by half a pixel along the miter of its two
    edges' outward normals (exact for axis-aligned corners); a spike's tip (edges folding
    back) becomes the two outer corners of its pixel. A miter can reach past the pixels'
    bounding box (up to ~22 px for the sharpest angles kept), never past ``bounds``.
    """
    p = points.astype(np.float64) + 0.5
    n = len(p)
    if n == 1:
        x, y = p[0]
        return np.array([[x - .5, y - .5], [x + .5, y - .5], [x + .5, y + .5], [x - .5, y + .5]])
    area2 = float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1]))
    sign = -1.0 if area2 >= 0 else 1.0  # which side is outside depends on the contour's orientation
    d_in = p - np.roll(p, 1, axis=0)  # edge arriving at each vertex
    d_out = np.roll(p, -1, axis=0) - p  # edge leaving it
    len_in = np.hypot(d_in[:, 0], d_in[:, 1])[:, None]
    len_out = np.hypot(d_out[:, 0], d_out[:, 1])[:, None]
    ahead = d_in / np.where(len_in == 0, 1, len_in)
    unit_out = d_out / np.where(len_out == 0, 1, len_out)
    n_in = sign * np.stack([-ahead[:, 1], ahead[:, 0]], axis=1)  # outward for this orientation
    n_out = sign * np.stack([-unit_out[:, 1], unit_out[:, 0]], axis=1)
    cos = np.sum(n_in * n_out, axis=1)
    spike = cos <= -0.999  # the edge folds back on itself: the tip's two outer corners
    miter = p + 0.5 * (n_in + n_out) / np.where(spike, 1.0, 1.0 + cos)[:, None]
    width = np.where(spike, 2, 1)
    at = np.cumsum(width) - width  # where each vertex's point(s) go
    corners = np.empty((int(width.sum()), 2))
    corners[at[~spike]] = miter[~spike]
    corners[at[spike]] = (p + 0.5 * (ahead + n_in))[spike]
    corners[at[spike] + 1] = (p + 0.5 * (ahead + n_out))[spike]
    x0, y0, x1, y1 = bounds  # the image's extent (a sharp vertex's miter may reach past it)
    np.clip(corners[:, 0], x0, x1, out=corners[:, 0])
    np.clip(corners[:, 1], y0, y1, out=corners[:, 1])
    return corners


def _polygon_iou(poly: np.ndarray, binary: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """IoU of the polygon (pycocotools' pixels) with its mask, both taken on the smallest
    window holding the mask's box and the polygon: pycocotools rasterises a polygon moved by
    whole pixels into the same pixels moved, so the window gives the full image's IoU."""
    h, w = binary.shape
    bx, by, bw, bh = box
    x0 = max(0, min(bx, int(np.floor(poly[:, 0].min()))))
    y0 = max(0, min(by, int(np.floor(poly[:, 1].min()))))
    x1 = min(w, max(bx + bw, int(np.ceil(poly[:, 0].max()))))
    y1 = min(h, max(by + bh, int(np.ceil(poly[:, 1].max()))))
    rle = mask_utils.frPyObjects([(poly - np.array([x0, y0], np.float64)).ravel()], y1 - y0, x1 - x0)
    truth = mask_utils.encode(np.asfortranarray(binary[y0:y1, x0:x1]))
    return float(mask_utils.iou(rle, [truth], [0])[0][0])


def _nearest_pair(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return int(i), int(j)


def merge_parts(parts: list[np.ndarray]) -> np.ndarray:
    """Several polygons as one, joined the way Ultralytics' ``merge_multi_segment`` joins
    COCO's multi-part annotations: consecutive parts are linked at their nearest points;
    a forward walk takes the first part whole, each middle part up to its next link, the
    last part whole, and a backward walk takes the rest of each middle part, so the line
    goes out and back along thin zero-area bridges. As ultralytics 8.4 does it (a middle part
    walked backwards has its link indices mapped into the reversed order; older releases
    reversed the index pair instead, which could cut a part short)."""
    if len(parts) == 1:
        return parts[0]
    segs = [np.asarray(p, np.float64) for p in parts]
    links: list[list[int]] = [[] for _ in segs]
    for i in range(1, len(segs)):
        a, b = _nearest_pair(segs[i - 1], segs[i])
        links[i - 1].append(a)
        links[i].append(b)
    last = len(segs) - 1
    pieces: list[np.ndarray] = []
    for i, idx in enumerate(links):
        if len(idx) == 2 and idx[0] > idx[1]:  # walk a middle part the other way round
            idx = [len(segs[i]) - 1 - x for x in idx]
            segs[i] = segs[i][::-1]
        segs[i] = np.roll(segs[i], -idx[0], axis=0)
        segs[i] = np.concatenate([segs[i], segs[i][:1]])
        if i in (0, last):
            pieces.append(segs[i])
        else:
            pieces.append(segs[i][: idx[1] - idx[0] + 1])
    for i in range(last, -1, -1):
        if i not in (0, last):
            idx = links[i]
            pieces.append(segs[i][abs(idx[1] - idx[0]):])
    return np.concatenate(pieces)


_TRAILING_ZEROS = re.compile(r"\.?0+(?= |$)")


def _format_coordinates(values: np.ndarray) -> str:
    """Normalised coordinates (in [0, 1]) with 6 decimals, trailing zeros dropped ("0.5", "1")."""
    return _TRAILING_ZEROS.sub("", ("%.6f " * len(values)).rstrip() % tuple(values.tolist()))


class YoloWriter(Writer):
    """Writes an Ultralytics YOLO segmentation set (see the module doc)."""

    options = (
        click.Option(["--min-iou"], type=float, default=0.5, show_default=True,
                     help="Name the instances whose polygon covers its mask with an IoU below this."),
        click.Option(["--split-name"], default="train", show_default=True,
                     help="Split folder to write: images/NAME and labels/NAME."),
        click.Option(["--link-images"], type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder of the source photos: images/<split>/ gets a symlink to each (found by stem)."),
    )

    def __init__(self, output: str | Path, plan: ModePlan, min_iou: float = 0.5, split_name: str = "train",
                 link_images: Path | None = None) -> None:
        super().__init__(output, plan)
        self.classes = ClassNumbering(plan.categories, "yolo", first=0)
        output_stem(split_name)
        self.min_iou = min_iou
        self.split = split_name
        self.images_dir = Path(link_images).resolve() if link_images is not None else None

    def prepare(self) -> None:
        self.store.makedirs(f"labels/{self.split}")
        self.store.makedirs(f"images/{self.split}")

    def write(self, seg: Segmentation) -> Written:
        ref = output_stem(seg.reference_id, source=seg.source)
        where = {"item": seg.reference_id, "file": seg.source}
        packed = pack(seg, renumber=self.plan.renumbers)
        mask = packed.mask
        h, w = mask.shape
        lines: list[str] = []
        ious: list[float] = []
        scale = np.array([w, h], np.float64)
        for payload in packed.segments[1:]:
            k = self.classes.of(payload, where)
            if k is None:
                continue
            # one full-image pass per segment (the compare); contours and IoU on its bounding box
            binary = (mask == payload["index"]).view(np.uint8)
            bx, by, bw, bh = cv2().boundingRect(binary)
            if bw == 0 or bh == 0:
                continue
            crop = np.ascontiguousarray(binary[by:by + bh, bx:bx + bw])
            contours, _ = cv2().findContours(crop, cv2().RETR_EXTERNAL, cv2().CHAIN_APPROX_SIMPLE,
                                             offset=(bx, by))
            parts = [_outward_corners(c.reshape(-1, 2), (0, 0, w, h)) for c in contours if len(c)]
            if not parts:
                continue
            poly = merge_parts(parts)
            iou = _polygon_iou(poly, binary, (bx, by, bw, bh))
            ious.append(iou)
            if iou < self.min_iou:
                seg.warnings.append(
                    f"{payload['label']} (segment {payload['index']}): its polygon covers the mask with IoU "
                    f"{iou:.3f}, below {opt('min-iou', f'{self.min_iou:g}')}"
                )
            norm = (poly / scale).ravel() + 0.0  # -0.0 would print as "-0"
            lines.append(f"{k} {_format_coordinates(norm)}")
        text = "".join(line + "\n" for line in lines)
        files = [self.store.put(f"labels/{self.split}/{ref}.txt", text.encode())]
        image_name = self._link_image(ref, seg)
        record = json.dumps({"ref": ref, "image": image_name, "ious": [round(x, 6) for x in ious]})
        return Written(record, tuple(files))

    def _link_image(self, ref: str, seg: Segmentation) -> str | None:
        if self.images_dir is None:
            return None
        photo = find_image(self.images_dir, None, seg.reference_id)
        if photo is None:
            seg.warnings.append(f"no photo {seg.reference_id}.* in {self.images_dir}: images/{self.split}/ lacks it")
            return None
        link = self.store.path(f"images/{self.split}/{ref}{photo.suffix}")
        tmp = f"{link}.{os.getpid()}.tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(photo, tmp)
        os.replace(tmp, link)
        return photo.name

    def finish(self, records: Iterator[str]) -> None:
        per_image: dict[str, float] = {}
        all_ious: list[float] = []
        for line in records:
            rec = json.loads(line)
            if rec["ious"]:
                per_image[rec["ref"]] = round(sum(rec["ious"]) / len(rec["ious"]), 6)
                all_ious += rec["ious"]
        with self.store.replacing("data.yaml") as fh:
            fh.write(f"# written by segconvert; images/{self.split}/ holds the photos (symlinks with --link-images)\n")
            fh.write(f"path: {json.dumps(self.store.root)}\n")
            fh.write(f"train: images/{self.split}\n")
            fh.write(f"val: images/{self.split}  # one split was written; point val at your validation images\n")
            fh.write("names:\n")
            for k, name in enumerate(self.classes.names):
                fh.write(f"  {k}: {json.dumps(name)}\n")
        with self.store.replacing("polygon_iou.json") as fh:
            mean = round(sum(all_ious) / len(all_ious), 6) if all_ious else None
            json.dump({"mean_iou": mean, "instances": len(all_ious),
                       "below_min_iou": sum(x < self.min_iou for x in all_ious), "min_iou": self.min_iou,
                       "per_image_mean_iou": per_image}, fh, indent=1)
            fh.write("\n")


def sniff(path: Path) -> bool:
    """A YOLO set's YAML (top-level ``names`` and ``train``/``val``/``test`` keys), or a folder
    holding one as data.yaml."""
    if path.is_dir():
        yaml_path = next((path / n for n in YAML_NAMES if (path / n).is_file()), None)
        if yaml_path is None:
            return False
    elif path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        yaml_path = path
    else:
        return False
    head = yaml_path.read_bytes()[:1 << 16]
    has_names = re.search(rb"(?m)^names\s*:", head) is not None
    return has_names and re.search(rb"(?m)^(train|val|test)\s*:", head) is not None


FORMAT = Format(
    name="yolo",
    description="Ultralytics YOLO segmentation set: data.yaml + labels/<split>/*.txt normalised polygons",
    reader=YoloReader,
    writer=YoloWriter,
    sniff=sniff,
)
