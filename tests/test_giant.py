"""Giant annotation files: coco-instances indexes its JSON in one streaming pass and keeps
byte ranges, not the parsed JSON. Peak memory does not grow with the file; per-image state
in the main process stays under 100 bytes; any layout (annotations before images, not
grouped by image, pretty-printed, non-ASCII) gives the items json.load would."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from test_coco_instances import CATEGORIES, pycocotools_paint

import segconvert
from segconvert.converters.coco_instances import CocoInstancesReader
from segconvert.model.ir import FailedItem

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2


def write_instances(path: Path, n_images: int, per_image: int, seed: int = 0, *, indent: int | None = None,
                    annotations_first: bool = False, names: str = "img") -> Path:
    """A COCO instances JSON of small polygons, annotations shuffled across images (as COCO's are
    not grouped). Written piece by piece: the generator does not hold the document either."""
    rng = random.Random(seed)
    order = [k % n_images + 1 for k in range(n_images * per_image)]
    rng.shuffle(order)
    def dump(value: object) -> str:
        return json.dumps(value, indent=indent, ensure_ascii=False)

    with open(path, "w", encoding="utf-8") as fh:
        def images() -> None:
            fh.write('"images": [')
            for k in range(1, n_images + 1):
                fh.write(("," if k > 1 else "") + dump({"id": k, "file_name": f"{names}{k:06d}.jpg",
                                                        "width": 64, "height": 48}))
            fh.write("]")

        def annotations() -> None:
            fh.write('"annotations": [')
            for aid, image_id in enumerate(order, start=1):
                x, y = rng.randrange(50), rng.randrange(36)
                poly = [x, y, x + 12.5, y, x + 12.5, y + 10, x, y + 10.25]
                fh.write(("," if aid > 1 else "\n") + dump({
                    "id": aid, "image_id": image_id, "category_id": rng.choice([1, 3]),
                    "segmentation": [poly], "area": 125.0, "bbox": [x, y, 12.5, 10], "iscrowd": 0,
                }))
            fh.write("]")

        fh.write('{"info": {"description": "generated"}, "categories": ' + json.dumps(CATEGORIES) + ", ")
        parts = [annotations, images] if annotations_first else [images, annotations]
        parts[0]()
        fh.write(", ")
        parts[1]()
        fh.write("}")
    return path


@pytest.mark.parametrize(("indent", "annotations_first", "names"), [(None, False, "img"), (2, True, "bild-ä")])
def test_any_layout_gives_what_json_load_gives(tmp_path, indent, annotations_first, names):
    path = write_instances(tmp_path / "i.json", 12, 5, seed=3, indent=indent,
                           annotations_first=annotations_first, names=names)
    doc = json.loads(path.read_text(encoding="utf-8"))
    items = list(CocoInstancesReader(path).items())
    assert [it.reference_id for it in items] == [Path(im["file_name"]).stem for im in doc["images"]]
    for image, item in zip(doc["images"], items):
        anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]  # in file order
        seg = item.load()
        assert [s.metadata["annotation_id"] for s in seg.segments] == [a["id"] for a in anns]
        assert [s.metadata["bbox"] for s in seg.segments] == [a["bbox"] for a in anns]
        np.testing.assert_array_equal(seg.label_map, pycocotools_paint(anns, 48, 64))


def test_a_bad_annotation_still_fails_its_image_in_the_reader(tmp_path):
    path = write_instances(tmp_path / "i.json", 3, 2)
    doc = json.loads(path.read_text())
    doc["annotations"][3]["category_id"] = 99
    victim = doc["annotations"][3]["image_id"]
    path.write_text(json.dumps(doc))
    items = list(CocoInstancesReader(path).items())
    failed = [it for it in items if isinstance(it, FailedItem)]
    assert [it.reference_id for it in failed] == [f"img{victim:06d}"]
    assert f"annotation {doc['annotations'][3]['id']}: category_id 99 is not in categories" in str(failed[0].error)


def test_main_process_state_is_under_100_bytes_per_image(tmp_path):
    """COCO train has 7.3 annotations per image; what the reader keeps for the whole run."""
    path = write_instances(tmp_path / "i.json", 2000, 7)
    reader = CocoInstancesReader(path)
    kept = sum(getattr(reader, name).nbytes for name in
               ("_bounds", "_ann_offsets", "_ann_lengths", "_image_offsets", "_image_lengths"))
    assert kept / 2000 < 100, kept / 2000


def test_coco_instances_from_a_url(tmp_path):
    """The JSON read through fsspec (memory://: no package needed) and the ranges by URL too."""
    fsspec = pytest.importorskip("fsspec")
    path = write_instances(tmp_path / "i.json", 4, 3)
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/giant-test/instances.json", path.read_bytes())
    local = [it.load() for it in CocoInstancesReader(path).items()]
    remote = [it.load() for it in CocoInstancesReader("memory://giant-test/instances.json").items()]
    for a, b in zip(local, remote, strict=True):
        np.testing.assert_array_equal(a.label_map, b.label_map)
        assert a.segments == b.segments
    out = tmp_path / "out"
    summary = segconvert.convert("memory://giant-test/instances.json", out, jobs=1)  # --from auto by URL
    assert summary.ok and summary.converted == 4


def test_name_table_finds_duplicates_and_survives_hash_collisions(monkeypatch):
    from segconvert.execution import nametable
    from segconvert.io.paths import name_key

    table = nametable.NameTable(capacity=4)  # grows several times below
    refs = [f"Img{k}" for k in range(300)]
    for k, ref in enumerate(refs):
        assert table.get(name_key(ref)) is None
        table[name_key(ref)] = (ref, f"src{k}.json" if k % 2 else None)
    assert len(table) == 300
    assert table.get(name_key("IMG7")) == ("Img7", "src7.json")
    assert table.get(name_key("img8")) == ("Img8", None)
    monkeypatch.setattr(nametable, "_hash", lambda key: 12345)  # every key collides
    colliding = nametable.NameTable(capacity=4)
    colliding[name_key("a")] = ("a", "x")
    colliding[name_key("b\tc\n")] = ("b\tc\n", "y")
    assert colliding.get(name_key("a")) == ("a", "x")
    assert colliding.get(name_key("B\tC\n")) == ("b\tc\n", "y")
    assert colliding.get(name_key("d")) is None


def test_name_table_reads_records_from_its_file_and_its_buffer(monkeypatch):
    """Records move from the in-memory buffer to the temporary file when the buffer fills; a
    lookup finds every one, wherever it is, also when all hashes collide."""
    from segconvert.execution import nametable
    from segconvert.io.paths import name_key

    monkeypatch.setattr(nametable.NameTable, "BUFFER_BYTES", 64)  # a spill every few records
    monkeypatch.setattr(nametable, "_hash", lambda key: 777)
    table = nametable.NameTable(capacity=4)
    refs = [f"name-{k}-" + "x" * (k % 7) for k in range(60)]
    for k, ref in enumerate(refs):
        assert table.get(name_key(ref)) is None
        table[name_key(ref)] = (ref, f"s{k}")
    if not table._buffer:  # the last record filled the buffer: one more, kept in the buffer
        refs.append("last")
        table[name_key("last")] = ("last", "s60")
    assert table._file is not None and table._spilled > 0 and table._buffer  # both parts in use
    for k, ref in enumerate(refs):
        assert table.get(name_key(ref.upper())) == (ref, f"s{k}")
    table.close()


def test_name_table_of_a_small_run_makes_no_file():
    """A few hundred names stay in memory: no temporary file (tempfile costs ~6 ms of start-up)."""
    from segconvert.execution import nametable

    table = nametable.NameTable()
    for k in range(500):
        table[f"image-{k:06d}"] = (f"image-{k:06d}", f"/data/masks/image-{k:06d}.png")
    assert table._file is None and table.get("image-000123") == ("image-000123", "/data/masks/image-000123.png")


def test_name_table_keeps_names_of_undecodable_bytes():
    """A file name of bytes that are not UTF-8 (a surrogate-escaped str) is stored and read back."""
    from segconvert.execution import nametable

    table = nametable.NameTable()
    ref = b"\xffa".decode("utf-8", "surrogateescape")
    table[ref] = (ref, f"/data/{ref}.json")
    table["b"] = ("b", None)
    assert table.get(ref) == (ref, f"/data/{ref}.json") and table.get("b") == ("b", None)


PEAK = textwrap.dedent("""
    import resource, sys
    from segconvert.converters.coco_instances import CocoInstancesReader
    reader = CocoInstancesReader(sys.argv[1])
    n = sum(len(item.ranges) for item in reader.items())
    print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def _peak_kb(path: Path) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, check=True)
    n, kb = out.stdout.split()
    return int(n), int(kb)


def test_peak_memory_does_not_grow_with_the_file(tmp_path):
    """10x the annotations (a 40 MB JSON), within 1.3x the peak; json.load would need ~10x."""
    small = write_instances(tmp_path / "small.json", 1000, 6)
    big = write_instances(tmp_path / "big.json", 10000, 6)
    (n_small, kb_small), (n_big, kb_big) = _peak_kb(small), _peak_kb(big)
    assert (n_small, n_big) == (6000, 60000)
    assert kb_big < 1.3 * kb_small, (kb_small, kb_big, big.stat().st_size)


def test_a_file_ending_inside_a_utf8_character_is_a_source_error(tmp_path):
    """Found by the fuzz: the last bytes of the file start a multi-byte character."""
    from segconvert.errors import SourceError

    path = tmp_path / "instances.json"
    path.write_bytes(b'{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a\xf1')
    with pytest.raises(SourceError, match="not valid UTF-8"):
        segconvert.convert(path, tmp_path / "o", from_format="coco-instances", jobs=1)


@given(st.text(alphabet="ab./ \\", max_size=12))
@example("a.")
@example(".a")
@example("a/.")
@example("a/..")
@example("..")
@example("a.b.c")
@example("/")
@example("")
def test_file_stem_is_pathlibs(name):
    from pathlib import PurePosixPath

    from segconvert.io.paths import file_stem

    assert file_stem(name) == PurePosixPath(name).stem


HELD = textwrap.dedent("""
    import gc, sys, tracemalloc
    from segconvert.converters.cvat import CvatReader
    from segconvert.converters.label_studio import LabelStudioReader
    reader = (CvatReader if sys.argv[1].endswith(".xml") else LabelStudioReader)(sys.argv[1])
    n = int(sys.argv[2])
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    it = reader.items()
    for k, item in enumerate(it, start=1):
        if k == n:  # the last item: the reader's table of reference ids is still alive
            break
    del item
    gc.collect()
    print((tracemalloc.get_traced_memory()[0] - base) / n)
""")


def test_cvat_and_label_studio_readers_hold_under_100_bytes_per_image(tmp_path):
    """#12: what items() keeps per image (its duplicate table): a dict of reference ids was ~220 B.

    10,000 images fill the table as 20,000 do (0.3 of its slots, 52 B per image): the
    figure is the same, in half the time."""
    n = 10_000
    xml = tmp_path / "a.xml"
    xml.write_text('<annotations><version>1.1</version><meta><task><labels><label><name>car</name></label>'
                   "</labels></task></meta>"
                   + "".join(f'<image id="{k}" name="train/images/frame_{k:06d}.jpg" width="64" height="48">'
                             '<box label="car" xtl="1" ytl="1" xbr="9" ybr="9"/></image>' for k in range(n))
                   + "</annotations>")
    export = tmp_path / "export.json"
    region = {"type": "rectanglelabels", "original_width": 64, "original_height": 48,
              "value": {"x": 1, "y": 1, "width": 10, "height": 10, "rectanglelabels": ["car"]}}
    export.write_text(json.dumps([{"id": k + 1, "data": {"image": f"/data/upload/1/3f2a9c1e-frame_{k:06d}.jpg"},
                                   "annotations": [{"id": k + 1, "result": [region]}]} for k in range(n)]))
    for source in (xml, export):
        out = subprocess.run([sys.executable, "-c", HELD, str(source), str(n)], capture_output=True, text=True,
                             check=True)
        assert float(out.stdout) < 100, (source.name, out.stdout)
