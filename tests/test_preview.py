"""segconvert preview: the pixels of a known fixture (colour under a segment, instance shades,
outlines, the legend), the contact sheet (relative links, failures with their reason), and the
page in headless Chromium (every image loads, the screenshot is not blank)."""

from __future__ import annotations

import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FIXTURES, write_panoptic
from PIL import Image
from test_detect import sources  # noqa: F401  (one source per readable format, from the fixtures)

import segconvert
from segconvert.checks.preview import ALPHA, GREY, LEGEND_PAD, LEGEND_ROW, OUTLINE, class_colour, instance_shade
from segconvert.interfaces.cli import main

CHROMIUM = Path("/usr/bin/chromium")
PERSON, CAR, SKY = 1, 3, 7


def known_set(root: Path) -> Path:
    """'street' (8x8): row 0 void, rows 1-3 sky, rows 4-7 two persons side by side;
    'parking' (8x8): one car on void; 'broken': a pixel id without a segment."""
    street = np.zeros((8, 8), np.int64)
    street[1:4] = 30
    street[4:, :4] = 10
    street[4:, 4:] = 11
    street_info = [{"id": 30, "category_id": SKY}, {"id": 10, "category_id": PERSON},
                   {"id": 11, "category_id": PERSON}]
    parking = np.zeros((8, 8), np.int64)
    parking[2:6, 2:6] = 20
    broken = np.array([[5, 6], [0, 0]])
    return write_panoptic(root, [
        ("street", street, street_info),
        ("parking", parking, [{"id": 20, "category_id": CAR}]),
        ("broken", broken, [{"id": 5, "category_id": CAR}]),
    ])


def run_preview(src: Path, out: Path, *extra: str) -> tuple[int, str, list[dict]]:
    result = CliRunner().invoke(main, ["preview", str(src), str(out), "--from", "coco-panoptic", *extra])
    sidecar = json.loads((out / "preview.json").read_text()) if (out / "preview.json").exists() else []
    return result.exit_code, result.output, sidecar


def blend(under: tuple[int, ...], colour: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(np.rint((1 - ALPHA) * u + ALPHA * c)) for u, c in zip(under, colour))


def hex_colour(rgb: tuple[int, ...]) -> str:
    return "#" + "".join(f"{v:02x}" for v in rgb)


def pixel(img: np.ndarray, y: int, x: int) -> tuple[int, ...]:
    return tuple(int(v) for v in img[y, x])


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_pixels_of_a_known_fixture(tmp_path, jobs):
    src = known_set(tmp_path)
    code, output, sidecar = run_preview(src, tmp_path / "out", "--jobs", jobs)
    assert code == 1, output  # 'broken' failed
    by_ref = {r["reference_id"]: r for r in sidecar}
    street = by_ref["street"]
    assert street["scale"] == 40 and (street["width"], street["height"]) == (320, 320)
    img = np.asarray(Image.open(tmp_path / "out" / street["file"]).convert("RGB"))
    s = street["scale"]

    def at(row: int, col: int, dy: int = 0, dx: int = 0) -> tuple[int, ...]:  # mask cell centre, offset
        return pixel(img, row * s + s // 2 + dy, col * s + s // 2 + dx)

    grey = (GREY,) * 3
    assert at(0, 3) == grey  # void: the grey ground, uncoloured
    assert at(2, 3) == blend(grey, class_colour("sky"))
    person = class_colour("person")
    assert at(5, 1) == blend(grey, person)  # first person: the class colour
    assert at(5, 6) == blend(grey, instance_shade(person, 1, 2))  # second: a darker shade of it
    assert at(5, 1) != at(5, 6)
    # outlines: the last row of sky and the first row of the persons, at the boundary
    assert pixel(img, 4 * s - 1, 3 * s) == OUTLINE and pixel(img, 4 * s, 3 * s) == OUTLINE
    assert pixel(img, 4 * s, 4 * s - 1) == OUTLINE  # between the two persons
    assert at(2, 3, dy=5) != OUTLINE  # inside a segment: no outline
    # the legend lists exactly the labels present, with their colours
    assert [e["label"] for e in street["legend"]] == ["sky", "person"]
    for row, entry in enumerate(street["legend"]):
        swatch = pixel(img, LEGEND_PAD + row * LEGEND_ROW + 5, 320 + LEGEND_PAD + 5)
        assert hex_colour(swatch) == entry["colour"] == hex_colour(class_colour(entry["label"]))
    assert img.shape[1] > 320  # the legend is beside the mask
    # the same class has the same colour in another image
    parking = by_ref["parking"]
    assert [e["label"] for e in parking["legend"]] == ["car"]
    pimg = np.asarray(Image.open(tmp_path / "out" / parking["file"]).convert("RGB"))
    assert pixel(pimg, 4 * 40, 4 * 40) == blend(grey, class_colour("car"))
    assert by_ref["broken"]["file"] is None and "6 (1 px)" in by_ref["broken"]["error"]
    assert "have no segment" in by_ref["broken"]["error"] and "[broken]" in output


def test_blended_on_the_image(tmp_path):
    src = known_set(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(images / "street.png")
    code, _, sidecar = run_preview(src, tmp_path / "out", "--images", str(images), "--jobs", "1")
    street = next(r for r in sidecar if r["reference_id"] == "street")
    img = np.asarray(Image.open(tmp_path / "out" / street["file"]).convert("RGB"))
    assert pixel(img, 20, 100) == (10, 200, 30)  # void: the image itself
    assert pixel(img, 100, 100) == blend((10, 200, 30), class_colour("sky"))
    parking = next(r for r in sidecar if r["reference_id"] == "parking")
    assert any("no image" in n for n in parking["notes"])  # drawn on grey, and said so


def test_semantic_mode_and_limit(tmp_path):
    src = known_set(tmp_path)
    code, _, sidecar = run_preview(src, tmp_path / "out", "--mode", "semantic", "--limit", "1", "--jobs", "1")
    assert code == 0 and [r["reference_id"] for r in sidecar] == ["street"]
    img = np.asarray(Image.open(tmp_path / "out" / sidecar[0]["file"]).convert("RGB"))
    person = blend((GREY,) * 3, class_colour("person"))
    assert pixel(img, 5 * 40 + 20, 1 * 40 + 20) == pixel(img, 5 * 40 + 20, 6 * 40 + 20) == person
    assert sidecar[0]["segments"] == 2


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: list[str] = []
        self.figures: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        d = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if tag == "figure":
            self.figures.append(d)


def test_contact_sheet_is_self_contained(tmp_path):
    src = known_set(tmp_path)
    run_preview(src, tmp_path / "out", "--jobs", "1")
    page = (tmp_path / "out" / "index.html").read_text()
    parser = _Links()
    parser.feed(page)
    assert parser.links and all(not re.match(r"^[a-z]+:|^/", link) for link in parser.links)
    from urllib.parse import unquote

    assert all((tmp_path / "out" / unquote(link)).is_file() for link in parser.links)
    assert "link" not in parser.tags and "http" not in page
    figures = {f["data-reference-id"]: f for f in parser.figures}
    assert json.loads(figures["street"]["data-legend"]) == ["sky", "person"]
    assert figures["street"]["data-segments"] == "3"
    assert "have no segment" in figures["broken"]["data-error"] and "failed" in figures["broken"]["class"]
    assert "failed: " in page  # the reason is on the page, not only in an attribute


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium)")
def test_page_in_headless_chromium(tmp_path):
    out = tmp_path / "out"
    code, output, sidecar = run_preview(FIXTURES / "coco-panoptic" / "panoptic.json", out, "--jobs", "1")
    assert code == 0, output
    url = (out / "index.html").as_uri()
    dom = chromium("--dump-dom", url, tmp=tmp_path)
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stderr[-2000:]
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', body.group(0))
    assert loaded, body.group(0)  # the page's script ran once every image had finished
    assert loaded.group(1) == loaded.group(2) == str(len(sidecar)) == "3"
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1000,560", url, tmp=tmp_path)
    pixels = np.asarray(Image.open(shot).convert("RGB"), np.float64)
    assert pixels.shape[:2] == (560, 1000)
    assert pixels.std() > 20  # not blank
    # and the previews themselves are on it: the sky's colour (blended on grey) appears
    sky = np.array(blend((GREY,) * 3, class_colour("sky-other-merged")), np.float64)
    assert (np.abs(pixels - sky).sum(axis=2) <= 3).sum() > 1000



def test_every_reader_previews_the_labels_it_converts(sources, tmp_path):  # noqa: F811 (the imported fixture)
    """For any reader format, each legend lists exactly the labels (besides background) of the
    Segments convert writes for that image, and the segment count is theirs."""
    from conftest import read_payloads

    for name, src in sources.items():
        options = {"colormap": "voc"} if name == "rgb" else {}
        segconvert.convert(src, tmp_path / f"conv-{name}", from_format=name, jobs=1, **options)
        converted = {p["reference_id"]: [s for s in p["annotations"] if s["index"] != 0]
                     for p in read_payloads(tmp_path / f"conv-{name}")}
        cli_options = [x for k, v in options.items() for x in (f"--{k}", v)]
        result = CliRunner().invoke(main, ["preview", str(src), str(tmp_path / f"prev-{name}"), "--from", name,
                                           "--jobs", "1", *cli_options])
        assert result.exit_code == 0, result.output
        sidecar = json.loads((tmp_path / f"prev-{name}" / "preview.json").read_text())
        assert [r["reference_id"] for r in sidecar] == list(converted), name
        for r in sidecar:
            segments = converted[r["reference_id"]]
            assert [e["label"] for e in r["legend"]] == list(dict.fromkeys(s["label"] for s in segments)), name
            assert r["segments"] == len(segments)


def test_image_turned_by_its_exif_orientation(tmp_path):
    """A photo stored on its side with EXIF orientation 6 is drawn upright under the mask."""
    ids = np.zeros((4, 6), np.int64)
    ids[0, 0] = 20
    src = write_panoptic(tmp_path, [("phone", ids, [{"id": 20, "category_id": CAR}])])
    shown = Image.new("RGB", (6, 4), (250, 0, 0))
    shown.paste((0, 0, 250), (3, 0, 6, 4))  # left half red, right half blue, as the viewer sees it
    stored = shown.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote: 4 wide, 6 tall
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    images = tmp_path / "images"
    images.mkdir()
    stored.save(images / "phone.png", exif=exif.tobytes())
    code, output, sidecar = run_preview(src, tmp_path / "out", "--images", str(images), "--jobs", "1")
    assert code == 0, output
    (r,) = sidecar
    assert r["notes"] == []  # the sizes match once turned: nothing stretched
    img = np.asarray(Image.open(tmp_path / "out" / r["file"]).convert("RGB"))
    s = r["scale"]
    assert pixel(img, 3 * s + s // 2, 1 * s + s // 2) == (250, 0, 0)  # void pixels: the image as shown
    assert pixel(img, 3 * s + s // 2, 5 * s + s // 2) == (0, 0, 250)


def test_images_folder_also_feeds_a_reader_that_reads_sizes_there(tmp_path):
    """LabelMe without imageHeight/imageWidth needs --images for the size: preview's one --images
    serves both the reader and the drawing."""
    doc = json.loads((FIXTURES / "labelme" / "dataset" / "shapes.json").read_text())
    del doc["imageHeight"], doc["imageWidth"]
    doc.pop("imageData", None)
    src = tmp_path / "labelme"
    src.mkdir()
    (src / "shapes.json").write_text(json.dumps(doc))
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 24), (0, 90, 0)).save(images / "shapes.jpg", quality=100)
    out = tmp_path / "out"
    without = CliRunner().invoke(main, ["preview", str(src), str(out), "--from", "labelme", "--jobs", "1"])
    assert without.exit_code == 1 and "pass --images" in without.output
    result = CliRunner().invoke(main, ["preview", str(src), str(out), "--from", "labelme", "--jobs", "1",
                                       "--images", str(images)])
    assert result.exit_code == 0, result.output
    (r,) = json.loads((out / "preview.json").read_text())
    assert r["error"] is None and r["notes"] == [] and r["width"] == 32 * r["scale"]


def test_hostile_reference_ids_and_labels_show_as_text(tmp_path):
    """A reference_id or label holding markup, '&', spaces, '#' or '%' is text on the page, and
    every preview link, relative, resolves to its file (OUTPUT itself with a space and '#')."""
    src = tmp_path / "src"
    src.mkdir()
    ref = '<img src=x onerror=alert(1)> a&b #1%'
    doc = {"version": "5.4.1", "flags": {}, "imagePath": "x.jpg", "imageData": None, "imageHeight": 8,
           "imageWidth": 10, "shapes": [
               {"label": "<script>alert(1)</script>", "points": [[0, 0], [4, 4]], "shape_type": "rectangle"},
               {"label": "a&b", "points": [[5, 5], [9, 7]], "shape_type": "rectangle"}]}
    (src / f"{ref}.json").write_text(json.dumps(doc))
    out = tmp_path / "out dir #1"
    code, _, sidecar = run_preview(src, out, "--from", "labelme", "--jobs", "1")
    assert code == 0
    page = (out / "index.html").read_text()
    parser = _Links()
    parser.feed(page)
    assert parser.tags.count("script") == 1 and parser.tags.count("img") == 1  # ours only
    (figure,) = parser.figures
    assert figure["data-reference-id"] == ref
    assert json.loads(figure["data-legend"]) == ["<script>alert(1)</script>", "a&b"]
    # the legend is on the page as text (any script shows there; the PNG's font has Latin only)
    assert "<li><span" in page and "&lt;script&gt;alert(1)&lt;/script&gt;</li>" in page and "a&amp;b</li>" in page
    from urllib.parse import unquote

    assert parser.links and all((out / unquote(link)).is_file() for link in parser.links)
