"""``segconvert preview``: look at what a conversion would upload, before uploading it.

Per image one PNG: the packed mask (exactly what the Nucleus writer would write, so an
image that would fail to convert fails here with the same reason) colourised — one
stable colour per class, the instances of a class in shades of it — blended on the
image (``--images``) or on grey, segment outlines, and a legend of the labels present.
Then ``OUTPUT/index.html``, a contact sheet that opens from disk: relative links only,
inline CSS and script, nothing fetched from anywhere. ``OUTPUT/preview.json`` lists the
same facts for scripts (and tests): file, segment count, legend labels and colours.

Small masks are enlarged by a whole factor (nearest neighbour, so every mask pixel is
a square block of preview pixels) to at least ``MIN_SIDE`` on their longer side.
"""

from __future__ import annotations

import colorsys
import html
import io
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from segconvert.checks.shared import find_images, item_failure, open_oriented_rgb, ordered_map
from segconvert.codecs import png
from segconvert.interfaces.format import Reader
from segconvert.model.ir import Item
from segconvert.model.modes import ModePlan

PREVIEWS_DIR = "previews"
INDEX_FILE = "index.html"
SIDECAR_FILE = "preview.json"
MIN_SIDE = 320  # small masks are enlarged to at least this on their longer side
ALPHA = 0.55  # weight of the class colour over the image (or grey) under a segment
GREY = 128
OUTLINE = (255, 255, 255)
LEGEND_BG = (255, 255, 255)
LEGEND_TEXT = (0, 0, 0)
LEGEND_ROW, LEGEND_PAD, SWATCH = 16, 8, 12


def class_colour(label: str) -> tuple[int, int, int]:
    """A colour for the class, the same in every image and every run (from a CRC of the label)."""
    h = zlib.crc32(label.encode("utf-8"))
    hue = (h & 0xFFFF) / 0x10000
    saturation = 0.55 + 0.4 * ((h >> 16) & 0xFF) / 255
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, 0.9)
    return round(r * 255), round(g * 255), round(b * 255)


def instance_shade(colour: tuple[int, int, int], k: int, n: int) -> tuple[int, int, int]:
    """The k-th (0-based) of n instances of a class: the class colour for the first, then
    darker shades of it down to 45 % brightness, so instances touching each other differ."""
    if n <= 1 or k == 0:
        return colour
    factor = 1.0 - 0.55 * k / (n - 1)
    return tuple(round(c * factor) for c in colour)  # type: ignore[return-value]


def safe_name(k: int, reference_id: str) -> str:
    """A file name for the k-th preview: ordinal first (unique), then the reference_id's safe characters."""
    return f"{k:05d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', reference_id)[:80]}.png"


@dataclass(frozen=True)
class PreviewContext:
    plan: ModePlan
    output: str
    images_dir: str | None


@dataclass
class PreviewResult:
    reference_id: str
    source: str | None
    file: str | None = None  # relative to OUTPUT
    width: int = 0  # of the preview PNG (image part, legend excluded)
    height: int = 0
    scale: int = 1
    segments: int = 0
    legend: list[dict[str, Any]] = field(default_factory=list)  # {"label", "colour": "#rrggbb"}
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def _hex(colour: tuple[int, int, int]) -> str:
    r, g, b = colour
    return f"#{r:02x}{g:02x}{b:02x}"


def render(mask: np.ndarray, segments: list[dict[str, Any]], image: Any = None) -> tuple[Any, list[str], int]:
    """The preview of one packed mask: a Pillow RGB image, the legend's labels, the scale.

    ``segments`` are the Nucleus Segment payloads (index 0 background, uncoloured).
    """
    from PIL import Image, ImageDraw, ImageFont

    h, w = mask.shape
    scale = max(1, MIN_SIDE // max(h, w, 1))
    big = np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1) if scale > 1 else mask
    lut = np.zeros((256, 3), np.float32)
    coloured = np.zeros(256, bool)
    by_label: dict[str, list[int]] = {}
    for s in segments:
        if s["index"] != 0:
            by_label.setdefault(s["label"], []).append(s["index"])
    for label, indices in by_label.items():
        base = class_colour(label)
        for k, index in enumerate(indices):
            lut[index] = instance_shade(base, k, len(indices))
            coloured[index] = True
    if image is not None:
        base_rgb = np.asarray(image.resize((w * scale, h * scale), Image.BILINEAR), np.float32)
    else:
        base_rgb = np.full((h * scale, w * scale, 3), GREY, np.float32)
    on = coloured[big]
    blended = base_rgb.copy()
    blended[on] = (1 - ALPHA) * base_rgb[on] + ALPHA * lut[big[on]]
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    edge = np.zeros(big.shape, bool)  # a segment pixel with a 4-neighbour of another value
    edge[:, :-1] |= big[:, :-1] != big[:, 1:]
    edge[:, 1:] |= big[:, 1:] != big[:, :-1]
    edge[:-1, :] |= big[:-1, :] != big[1:, :]
    edge[1:, :] |= big[1:, :] != big[:-1, :]
    out[edge & on] = OUTLINE
    labels = list(by_label)
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max((probe.textlength(label, font=font) for label in labels), default=0)
    legend_w = int(LEGEND_PAD * 3 + SWATCH + text_w) if labels else 0
    legend_h = LEGEND_PAD * 2 + LEGEND_ROW * len(labels)
    canvas = Image.new("RGB", (w * scale + legend_w, max(h * scale, legend_h)), LEGEND_BG)
    canvas.paste(Image.fromarray(out), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x0 = w * scale + LEGEND_PAD
    for row, label in enumerate(labels):
        y = LEGEND_PAD + row * LEGEND_ROW
        draw.rectangle([x0, y, x0 + SWATCH - 1, y + SWATCH - 1], fill=class_colour(label), outline=LEGEND_TEXT)
        draw.text((x0 + SWATCH + LEGEND_PAD, y), label, fill=LEGEND_TEXT, font=font)
    return canvas, labels, scale


def preview_item(task: tuple[int, Item], ctx: PreviewContext) -> PreviewResult:
    """load → mode → pack → render → write for one item; failures become ``error``."""
    from segconvert.model.pack import pack

    k, item = task
    out = PreviewResult(item.reference_id, item.source)
    try:
        seg = item.load()
        packed = pack(ctx.plan.apply(seg), renumber=ctx.plan.renumbers)
        mask = packed.mask
        image = None
        if ctx.images_dir is not None:
            found = find_images(Path(ctx.images_dir), item.reference_id)
            if not found:
                out.notes.append(f"no image for {item.reference_id} in {ctx.images_dir}: drawn on grey")
            else:
                try:
                    image = open_oriented_rgb(png.read_bytes(found[0]))
                except (OSError, ValueError) as exc:
                    out.notes.append(f"cannot read image {found[0]}: {exc}; drawn on grey")
                if image is not None and image.size != (mask.shape[1], mask.shape[0]):
                    out.notes.append(f"image {found[0]} is {image.size[0]}x{image.size[1]} after its EXIF "
                                     f"orientation, the mask {mask.shape[1]}x{mask.shape[0]}: stretched to the mask")
        canvas, labels, scale = render(mask, packed.segments, image)
        buf = io.BytesIO()
        canvas.save(buf, format="PNG", compress_level=1)
        name = safe_name(k, item.reference_id)
        png.write_atomic(os.path.join(ctx.output, PREVIEWS_DIR, name), buf.getvalue())
        out.file = f"{PREVIEWS_DIR}/{name}"
        out.scale = scale
        out.width, out.height = mask.shape[1] * scale, mask.shape[0] * scale
        out.segments = len(packed.segments) - 1  # background is not a segment of the image
        out.legend = [{"label": label, "colour": _hex(class_colour(label))} for label in labels]
        out.notes.extend(packed.warnings)
    except Exception as exc:  # ItemError, or a bug / an input not foreseen: report it, keep going
        out.error = item_failure(exc, item)
    return out


def preview(
    reader: Reader,
    plan: ModePlan,
    output: str | Path,
    *,
    images_dir: str | Path | None = None,
    limit: int | None = None,
    jobs: int = 1,
    progress: Any = None,
    title: str = "",
) -> list[PreviewResult]:
    """Write previews of the first ``limit`` items, ``index.html`` and ``preview.json``; return the results."""
    output = Path(output)
    (output / PREVIEWS_DIR).mkdir(parents=True, exist_ok=True)
    ctx = PreviewContext(plan, os.fspath(output), os.fspath(images_dir) if images_dir is not None else None)
    items = islice(reader.items(), limit) if limit is not None else reader.items()
    tasks: Iterator[tuple[int, Item]] = enumerate(items)
    results = []
    for result in ordered_map(preview_item, tasks, ctx, jobs):
        results.append(result)
        if progress is not None:
            progress(1)
    png.write_atomic(output / SIDECAR_FILE, json.dumps([asdict(r) for r in results], indent=1))
    png.write_atomic(output / INDEX_FILE, contact_sheet(results, title=title, mode=plan.mode))
    return results


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; background: #f4f4f4; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; }
.sheet { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 12px; }
figure { margin: 0; padding: 8px; background: #fff; border: 1px solid #ccc; max-width: 440px; }
figure img { display: block; max-width: 100%; height: auto; }
figure.failed { border-color: #c00; background: #fff0f0; }
.reason { color: #900; white-space: pre-wrap; word-break: break-word; font-size: 12px; }
.notes { color: #855; font-size: 12px; margin: 4px 0 0; padding-left: 16px; }
figcaption { margin-top: 6px; word-break: break-all; }
.legend { list-style: none; margin: 4px 0 0; padding: 0; font-size: 12px; }
.legend li { display: inline-block; margin-right: 10px; }
.swatch { display: inline-block; width: 10px; height: 10px; border: 1px solid #000; margin-right: 4px; }
"""

# sets body[data-images-loaded] = "ok/total" once every <img> has finished, for checks without a person
_SCRIPT = """
(function () {
  function check() {
    var imgs = Array.prototype.slice.call(document.images);
    if (!imgs.every(function (i) { return i.complete; })) { return setTimeout(check, 50); }
    var ok = imgs.filter(function (i) { return i.naturalWidth > 0; }).length;
    document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
  }
  window.addEventListener("load", check);
})();
"""


def contact_sheet(results: list[PreviewResult], *, title: str = "", mode: str = "") -> str:
    """The index.html: one figure per item, previews linked by relative paths, no external resources."""
    esc = html.escape
    failed = sum(r.error is not None for r in results)
    figures = []
    for r in results:
        ref = esc(r.reference_id)
        notes = "".join(f"<li>{esc(n)}</li>" for n in r.notes)
        notes_html = f'<ul class="notes">{notes}</ul>' if notes else ""
        if r.error is not None:
            figures.append(
                f'<figure class="item failed" data-reference-id="{ref}" data-error="{esc(r.error)}">'
                f'<div class="reason">failed: {esc(r.error)}</div>'
                f"<figcaption><b>{ref}</b></figcaption></figure>"
            )
            continue
        assert r.file is not None
        href = esc("/".join(_quote(p) for p in r.file.split("/")))
        legend = esc(json.dumps([entry["label"] for entry in r.legend]))
        # the legend as text too: the PNG's is drawn with Pillow's built-in font, which has no
        # glyphs for most scripts (a label 猫 shows as a box there), the browser's fonts have
        keys = "".join(f'<li><span class="swatch" style="background:{entry["colour"]}"></span>'
                       f'{esc(entry["label"])}</li>' for entry in r.legend)
        keys_html = f'<ul class="legend">{keys}</ul>' if keys else ""
        figures.append(
            f'<figure class="item" data-reference-id="{ref}" data-segments="{r.segments}" data-legend="{legend}">'
            f'<a href="{href}"><img src="{href}" alt="{ref}"></a>'
            f"<figcaption><b>{ref}</b> · {r.segments} segment{'s' if r.segments != 1 else ''}</figcaption>"
            f"{keys_html}{notes_html}</figure>"
        )
    heading = esc(title) or "segconvert preview"
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{heading}</title><style>{_STYLE}</style></head>\n"
        f"<body data-items=\"{len(results)}\" data-failed=\"{failed}\">"
        f"<h1>{heading}</h1><p>{len(results)} item(s), mode {esc(mode)}, {failed} failed.</p>\n"
        f"<main class=\"sheet\">\n" + "\n".join(figures) + "\n</main>\n"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def _quote(part: str) -> str:
    from urllib.parse import quote

    return quote(part)
