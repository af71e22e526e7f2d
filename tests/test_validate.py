"""segconvert validate: every defect the issue lists is caught and named with its reference_id,
good sets pass (our own output, a hand-written payload), and the rules agree with the official
client (scale-nucleus) on what it accepts and what it treats as a local file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FIXTURES
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageOps

from segconvert.checks.shared import oriented_size
from segconvert.checks.validate import CheckContext, check_line, is_local_path, validate
from segconvert.interfaces.cli import main

nucleus = pytest.importorskip("nucleus")
from nucleus.annotation import SegmentationAnnotation  # noqa: E402
from nucleus.annotation import is_local_path as client_is_local_path  # noqa: E402
from nucleus.annotation_uploader import AnnotationUploader  # noqa: E402


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def validate_json(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["validate", *args, "--json"])
    return result.exit_code, json.loads(result.stdout)  # stdout alone (click >= 8.2): one JSON document


def save_mask(path: Path, mask: np.ndarray) -> str:
    Image.fromarray(mask).save(path)  # uint8 (H, W): mode L; (H, W, 3|4): RGB(A); uint16: 16-bit grayscale
    return str(path)


def payload(ref: str, mask_url: str, segments: list[dict] | None = None) -> dict:
    if segments is None:
        segments = [{"label": "background", "index": 0}, {"label": "car", "index": 1}]
    return {"type": "mask", "mask_url": mask_url, "annotations": segments, "annotation_id": None,
            "reference_id": ref}


def two_value_mask(h: int = 6, w: int = 8) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[2:4, 2:6] = 1
    return mask


def write_set(root: Path, lines: list[str | dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    (root / "annotations.jsonl").write_text(text)
    return root


# ------------------------------------------------------------------ good sets pass


def test_our_own_output_passes(tmp_path):
    out = tmp_path / "out"
    code, text = run_cli("convert", str(FIXTURES / "coco-panoptic" / "panoptic.json"), str(out),
                         "--from", "coco-panoptic", "--jobs", "1")
    assert code == 0, text
    code, text = run_cli("validate", str(out), "--jobs", "1")
    assert code == 0, text
    assert "0 error(s)" in text and "0 warning(s)" in text and "OK" in text
    assert "asynchronous=True" in text  # local masks: said once, as a note
    assert text.count("asynchronous=True") == 1
    # in parallel, and the file given directly: the same verdict
    code, doc = validate_json(str(out / "annotations.jsonl"), "--jobs", "2")
    assert code == 0 and doc["problems"] == [] and doc["summary"]["items"] == 3
    assert doc["summary"]["local_masks"] == 3


def test_our_output_with_remote_urls_passes_with_a_note(tmp_path):
    out = tmp_path / "out"
    code, text = run_cli("convert", str(FIXTURES / "coco-panoptic" / "panoptic.json"), str(out),
                         "--from", "coco-panoptic", "--jobs", "1", "--mask-url-prefix", "s3://bucket/masks/")
    assert code == 0, text
    code, doc = validate_json(str(out))
    assert code == 0 and doc["problems"] == []
    assert doc["summary"]["remote_masks"] == 3 and doc["summary"]["local_masks"] == 0
    assert any("unchecked" in n for n in doc["summary"]["notes"])


def test_hand_written_payload_passes_and_the_client_reads_it(tmp_path):
    mask = np.zeros((10, 12), np.uint8)
    mask[:, 6:] = 1
    mask[2:5, 1:4] = 2
    url = save_mask(tmp_path / "street_1.png", mask)
    line = {"mask_url": url, "reference_id": "street_1", "annotations": [
        {"label": "road", "index": 0}, {"label": "grass", "index": 1},
        {"label": "bus", "index": 2, "metadata": {"vehicle_color": "yellow"}}]}
    root = write_set(tmp_path / "set", [line])
    code, text = run_cli("validate", str(root))
    assert code == 0, text
    ann = SegmentationAnnotation.from_json(line)
    assert ann.has_local_files_to_upload()


def test_images_dir_with_exif_rotation(tmp_path):
    """A phone photo stored 8x6 with orientation 6 (rotate 90) is shown 6x8: a 8x6 mask mismatches."""
    masks = tmp_path / "masks"
    masks.mkdir()
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for ref, stored, orientation in (("upright", (8, 6), 1), ("turned", (6, 8), 6), ("phone", (8, 6), 6)):
        lines.append(payload(ref, save_mask(masks / f"{ref}.png", two_value_mask(6, 8))))
        img = Image.new("RGB", stored, (200, 100, 50))
        exif = img.getexif()
        exif[0x0112] = orientation
        img.save(images / f"{ref}.JPG", exif=exif.tobytes())  # any image extension, any case
    lines.append(payload("no_image", save_mask(masks / "no_image.png", two_value_mask(6, 8))))
    root = write_set(tmp_path / "set", lines)
    code, doc = validate_json(str(root), "--images", str(images))
    assert code == 1
    by_kind = {}
    for p in doc["problems"]:
        by_kind.setdefault(p["kind"], []).append(p["reference_id"])
    assert by_kind == {"size-mismatch": ["phone"], "image-missing": ["no_image"]}
    mismatch = next(p for p in doc["problems"] if p["kind"] == "size-mismatch")
    assert "8x6" in mismatch["message"] and "6x8" in mismatch["message"] and "EXIF" in mismatch["message"]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_oriented_size_is_exif_transpose(tmp_path, orientation):
    img = Image.new("RGB", (7, 3))
    exif = img.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "x.jpg"
    img.save(path, exif=exif.tobytes())
    with Image.open(path) as opened:
        expected = ImageOps.exif_transpose(opened).size
    assert oriented_size(path.read_bytes()) == expected


# ------------------------------------------------------------------ every defect, caught and named


def crafted_set(root: Path) -> tuple[Path, dict[str, set[str]]]:
    """One item per defect; returns the set and, per reference_id, the problem kinds expected."""
    m = root / "m"
    m.mkdir(parents=True)
    good = two_value_mask()
    expect: dict[str, set[str]] = {}
    lines: list[str | dict] = []

    def add(ref: str, line: str | dict, kinds: set[str]) -> None:
        lines.append(line)
        expect[ref] = kinds

    add("line 1", "{not json", {"not-json"})
    add("line 2", "", {"not-json"})
    add("line 3", "[1, 2]", {"not-segmentation"})
    add("line 4", {"mask_url": save_mask(m / "noref.png", good), "annotations": payload("", "")["annotations"]},
        {"not-segmentation"})
    add("no_url", {"reference_id": "no_url", "annotations": []}, {"not-segmentation"})
    add("ann_dict", {"reference_id": "ann_dict", "mask_url": "s3://b/x.png", "annotations": {"label": "x"}},
        {"not-segmentation"})
    add("no_annotations", {"reference_id": "no_annotations", "mask_url": "s3://b/x.png"}, {"not-segmentation"})
    seg_url = save_mask(m / "seg.png", good)
    add("index_str", payload("index_str", seg_url, [{"label": "bg", "index": 0}, {"label": "car", "index": "1"}]),
        {"bad-index", "unlisted-values"})
    add("index_none", payload("index_none", seg_url, [{"label": "bg", "index": 0}, {"label": "car", "index": None}]),
        {"bad-index", "unlisted-values"})
    add("index_256", payload("index_256", seg_url, [{"label": "bg", "index": 0}, {"label": "car", "index": 1},
                                                     {"label": "bus", "index": 256}]), {"bad-index"})
    add("index_float", payload("index_float", seg_url, [{"label": "bg", "index": 0}, {"label": "car", "index": 1},
                                                         {"label": "bus", "index": 2.0}]), {"bad-index"})
    add("index_twice", payload("index_twice", seg_url, [{"label": "bg", "index": 0}, {"label": "car", "index": 1},
                                                         {"label": "bus", "index": 1}]), {"duplicate-index"})
    add("no_label", payload("no_label", seg_url, [{"label": "bg", "index": 0}, {"index": 1}]), {"bad-label"})
    add("type_box", {**payload("type_box", seg_url), "type": "box"}, {"bad-type"})
    add("twice", payload("twice", seg_url), set())
    lines.append(payload("twice", seg_url))  # the second line of the same reference_id
    expect["twice"] = {"duplicate-reference-id"}
    add("missing", payload("missing", str(m / "missing.png")), {"mask-missing"})
    (m / "folder.png").mkdir()
    add("folder", payload("folder", str(m / "folder.png")), {"mask-unreadable"})
    Image.fromarray(good).save(m / "jpeg.png", format="JPEG")
    add("jpeg", payload("jpeg", str(m / "jpeg.png")), {"mask-not-png"})
    rgb = np.stack([good, good, good + 1], axis=-1)
    add("rgb", payload("rgb", save_mask(m / "rgb.png", rgb)), {"mask-format"})
    add("rgba", payload("rgba", save_mask(m / "rgba.png", np.dstack([good] * 4))), {"mask-format"})
    Image.fromarray(good).convert("P").save(m / "palette.png")
    add("palette", payload("palette", str(m / "palette.png")), {"mask-format"})
    add("sixteen", payload("sixteen", save_mask(m / "sixteen.png", good.astype(np.uint16))),
        {"mask-format"})
    Image.fromarray(good).convert("LA").save(m / "la.png")
    add("gray_alpha", payload("gray_alpha", str(m / "la.png")), {"mask-format"})
    add("rgb_equal", payload("rgb_equal", save_mask(m / "rgb_equal.png", np.dstack([good] * 3))), {"rgb-mask"})
    full = (m / "seg.png").read_bytes()
    (m / "truncated.png").write_bytes(full[: len(full) // 2])
    add("truncated", payload("truncated", str(m / "truncated.png")), {"mask-corrupt"})
    three = good.copy()
    three[0, 0] = 7
    three[5, 7] = 9
    three[5, 6] = 9
    add("unlisted", payload("unlisted", save_mask(m / "unlisted.png", three)), {"unlisted-values"})
    add("no_background", payload("no_background", seg_url, [{"label": "car", "index": 1}]), {"unlisted-background"})
    add("empty", payload("empty", seg_url, [{"label": "bg", "index": 0}, {"label": "car", "index": 1},
                                             {"label": "bus", "index": 2}]), {"empty-segment"})
    save_mask(m / "upper.PNG", good)
    add("upper", payload("upper", str(m / "upper.PNG")), {"bad-mask-url"})
    add("file_url", payload("file_url", "file://" + seg_url), {"mask-missing"})
    add("gcs_url", payload("gcs_url", "gcs://bucket/seg.png"), {"mask-missing"})
    add("az_url", payload("az_url", "az://container/seg.png"), {"mask-missing"})
    add("relative", payload("relative", os.path.relpath(seg_url, root)), {"relative-mask-url"})
    add("remote", payload("remote", "https://example.com/seg.png"), set())
    add("fine", payload("fine", seg_url), set())
    return write_set(root, lines), expect


def test_each_defect_is_caught_and_named(tmp_path, monkeypatch):
    root, expect = crafted_set(tmp_path / "set")
    monkeypatch.chdir(root)  # relative mask paths are opened from here, as the client would
    for jobs in ("1", "2"):
        code, doc = validate_json(str(root), "--jobs", jobs)
        assert code == 1
        found: dict[str, set[str]] = {ref: set() for ref in expect}
        for p in doc["problems"]:
            found.setdefault(p["reference_id"], set()).add(p["kind"])
        assert found == expect
        lines = [p["line"] for p in doc["problems"]]
        assert lines == sorted(lines)  # in source order, whatever the number of workers
    messages = {(p["reference_id"], p["kind"]): p["message"] for p in doc["problems"]}
    assert "7 (1 px)" in messages[("unlisted", "unlisted-values")]
    assert "9 (2 px)" in messages[("unlisted", "unlisted-values")]
    assert "RGBA" in messages[("rgba", "mask-format")]
    assert "palette" in messages[("palette", "mask-format")]
    assert "16-bit grayscale" in messages[("sixteen", "mask-format")]
    assert "grayscale+alpha" in messages[("gray_alpha", "mask-format")]
    assert "8-bit RGB" in messages[("rgb", "mask-format")]
    assert "JPEG" in messages[("jpeg", "mask-not-png")]
    first_twice = 1 + list(expect).index("twice")
    assert f"also on line {first_twice}" in messages[("twice", "duplicate-reference-id")]
    assert "'file'" in messages[("file_url", "mask-missing")]
    assert "'1'" in messages[("index_str", "bad-index")]
    summary = doc["summary"]
    assert summary["kinds"]["mask-format"]["count"] == 5
    assert summary["errors"] == sum(1 for p in doc["problems"] if p["severity"] == "error")
    assert summary["remote_masks"] == 1  # https (s3/gs too); gcs:// and az:// are local to the client


def test_terminal_summary_names_kinds_and_items(tmp_path, monkeypatch):
    root, _ = crafted_set(tmp_path / "set")
    monkeypatch.chdir(root)
    code, text = run_cli("validate", str(root), "--jobs", "1")
    assert code == 1
    assert "mask-format: 5" in text
    for ref in ("rgba", "palette", "sixteen", "gray_alpha", "rgb"):
        assert f"{ref} (line" in text
    assert "NOT OK" in text


def test_warnings_alone_exit_zero(tmp_path):
    m = tmp_path / "m"
    m.mkdir()
    good = two_value_mask()
    root = write_set(tmp_path / "set", [
        payload("rgb_equal", save_mask(m / "rgb_equal.png", np.dstack([good] * 3))),
        payload("empty", save_mask(m / "empty.png", good), [{"label": "bg", "index": 0}, {"label": "car", "index": 1},
                                                             {"label": "bus", "index": 2}]),
    ])
    code, doc = validate_json(str(root))
    assert code == 0
    assert {p["kind"] for p in doc["problems"]} == {"rgb-mask", "empty-segment"}
    assert doc["summary"]["ok"] is True and doc["summary"]["warnings"] == 2


def test_unusable_source_exits_2(tmp_path):
    code, text = run_cli("validate", str(tmp_path))
    assert code == 2 and "annotations.jsonl" in text
    code, doc = validate_json(str(tmp_path))  # --json: still one document
    assert code == 2 and "annotations.jsonl" in doc["error"]


# ------------------------------------------------------------------ agreement with the official client

urls = st.one_of(
    st.text(max_size=30),
    st.builds(lambda scheme, rest: f"{scheme}{rest}",
              st.sampled_from(["http://", "https://", "s3://", "gs://", "file://", "gcs://", "az://", "HTTP://",
                               "S3://", "c:", "", "/", "./", "s3:", "ftp://", "[::1]://"]),
              st.text(max_size=20)),
)


@given(urls)
def test_local_path_rule_is_the_clients(url):
    try:
        expected = client_is_local_path(url)
    except ValueError:
        with pytest.raises(ValueError):
            is_local_path(url)
        return
    assert is_local_path(url) == expected


json_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.text(max_size=5),
                        st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                                  max_size=2))
segments = st.one_of(
    st.fixed_dictionaries({}, optional={"label": json_values, "index": json_values, "metadata": json_values}),
    json_values,
)
payloads = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "mask_url": st.one_of(st.just("s3://bucket/m.png"), json_values),
        "reference_id": st.one_of(st.just("img_1"), json_values),
        "annotations": st.one_of(st.lists(segments, max_size=3), json_values),
        "type": st.one_of(st.just("mask"), json_values),
    }),
)


@given(payloads)
def test_what_the_client_refuses_is_reported(p):
    """Whenever SegmentationAnnotation.from_json raises, validate reports the line as an error."""
    result = check_line((1, json.dumps(p).encode()), CheckContext())
    kinds = {kind for kind, _, _ in result.problems}
    try:
        SegmentationAnnotation.from_json(p)
    except Exception:
        assert "not-segmentation" in kinds, (p, result.problems)


@pytest.mark.parametrize("name", ["m.png", "m.PNG", "m.png.bak", "m.Png", "mpng"])
def test_png_name_rule_is_the_uploaders(tmp_path, name):
    """The client's local upload refuses a mask whose name does not end in '.png' exactly."""
    path = tmp_path / name
    Image.fromarray(two_value_mask()).save(path, format="PNG")
    ann = SegmentationAnnotation(mask_url=str(path), annotations=[], reference_id="r")
    make_form = AnnotationUploader("ds_1", client=None).get_form_data_and_file_pointers_fn([ann], False)
    try:
        _, pointers = make_form()
        for fp in pointers:
            fp.close()
        client_refuses = False
    except ValueError:
        client_refuses = True
    result = check_line((1, json.dumps(payload("r", str(path))).encode()), CheckContext())
    assert ("bad-mask-url" in {k for k, _, _ in result.problems}) == client_refuses


def test_library_call_streams_problems_in_order(tmp_path, monkeypatch):
    root, expect = crafted_set(tmp_path / "set")
    monkeypatch.chdir(root)
    seen = []
    report = validate(root, jobs=2, on_problem=seen.append)
    assert not report.ok and report.items == len(expect) + 1  # "twice" has two lines
    assert [p.line for p in seen] == sorted(p.line for p in seen)


def test_images_found_by_reference_id_with_a_sub_path_and_any_extension_case(tmp_path):
    from segconvert.checks.shared import find_images

    (tmp_path / "city").mkdir()
    for name in ("0001.Jpeg", "0001.txt", "00012.png", "0002.png"):
        (tmp_path / "city" / name).write_bytes(b"")
    assert find_images(tmp_path, "city/0001") == [str(tmp_path / "city" / "0001.Jpeg")]
    assert find_images(tmp_path, "city/0003") == [] and find_images(tmp_path, "nowhere/0001") == []
    (tmp_path / "city" / "0001.png").write_bytes(b"")  # a new file in the folder is seen
    os.utime(tmp_path / "city", ns=(1, 2))  # (a new mtime, whatever the clock's resolution)
    assert find_images(tmp_path, "city/0001") == sorted(str(tmp_path / "city" / n) for n in ("0001.Jpeg", "0001.png"))


def test_json_is_one_document_in_every_failure_mode(tmp_path, monkeypatch):
    """--json stays one JSON document (with an "error") when SOURCE or --images does not exist,
    when click refuses the command line, and when the set's file fails mid-read; exit 2 each time."""
    good = write_set(tmp_path / "set", [payload("a", save_mask(tmp_path / "a.png", two_value_mask()))])
    cases = {
        "missing source": [str(tmp_path / "nope")],
        "missing --images": [str(good), "--images", str(tmp_path / "nope")],
        "--images a file": [str(good), "--images", str(good / "annotations.jsonl")],
        "not a regular file": ["/dev/null"],
        "bad --jobs": [str(good), "--jobs", "0"],
        "unknown option": [str(good), "--bogus"],
    }
    for what, args in cases.items():
        code, doc = validate_json(*args)
        assert code == 2, what
        assert doc["error"] and doc.get("problems", []) == [], what
    code, doc = validate_json("/dev/null")
    assert "not a regular file" in doc["error"]

    def broken(path):
        yield 1, b"{}"
        raise OSError(5, "Input/output error", str(path))

    monkeypatch.setattr("segconvert.checks.validate._lines", broken)
    code, doc = validate_json(str(good), "--jobs", "1")
    assert code == 2 and "Input/output error" in doc["error"]
    assert [p["line"] for p in doc["problems"]] == [1, 1, 1]  # what was checked before the failure stays


def test_mask_url_with_a_nul_character_is_a_bad_url_not_a_crash(tmp_path):
    root = write_set(tmp_path / "set", [payload("nul", "/masks/a\x00b.png")])
    code, doc = validate_json(str(root))
    assert code == 1
    [problem] = doc["problems"]
    assert problem["kind"] == "bad-mask-url" and "NUL" in problem["message"]


def test_index_too_large_for_64_bits_is_called_out_of_range(tmp_path):
    """99999999999999999999999999 is an integer in the file (the JSON parser reads it as a float):
    it is outside 0..255, not "a number, not an integer"."""
    root = tmp_path / "set"
    root.mkdir()
    (root / "annotations.jsonl").write_text(
        '{"reference_id": "big", "mask_url": "s3://b/x.png", "annotations": '
        '[{"label": "car", "index": 99999999999999999999999999}, {"label": "bus", "index": 2.0}]}\n')
    code, doc = validate_json(str(root))
    assert code == 1
    messages = [p["message"] for p in doc["problems"] if p["kind"] == "bad-index"]
    assert len(messages) == 2
    assert "outside 0..255" in messages[0] and "1e+26" in messages[0]
    assert "not an integer" in messages[1]  # 2.0 in range: still not an integer
