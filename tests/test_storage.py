"""Object storage through fsspec, against a real S3 API on loopback (moto's server, s3fs as
the client): s3 -> s3 gives the local run's bytes, a killed run resumes to the same objects,
and a missing bucket, bad credentials or a missing protocol package are one clear error.

Nothing here can reach a real cloud endpoint: the credentials are dummies and every S3
call goes to the moto server on 127.0.0.1 (FSSPEC_S3_ENDPOINT_URL and AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import snapshot
from test_pipeline import good_dataset

import segconvert
from segconvert.errors import SourceError
from segconvert.io import sources
from segconvert.io.storage import OutputStore

s3fs = pytest.importorskip("s3fs")
pytest.importorskip("moto")
import fsspec  # noqa: E402  (after s3fs: installed together)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start")


def _point_at(endpoint: str, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    """Dummy credentials, every S3 call to ``endpoint``; fsspec re-reads its config."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        mp.delenv(key, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    mp.setenv("AWS_CONFIG_FILE", str(tmp / "no-aws-config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-aws-credentials"))
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    mp.setenv("AWS_ENDPOINT_URL", endpoint)
    mp.setenv("FSSPEC_S3_ENDPOINT_URL", endpoint)  # how a user points s3:// at MinIO, Ceph...
    mp.setenv("SEGCONVERT_CACHE", str(tmp / "cache"))
    fsspec.config.conf.clear()
    fsspec.config.set_conf_env(fsspec.config.conf)
    sources._filesystems.clear()
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[s3fs.S3FileSystem]:
    """A moto S3 server on 127.0.0.1, and an s3fs client for it; fsspec's s3 config points there,
    one try, 1 s to connect (test_remote_readers uses this fixture too)."""
    proc, endpoint = _moto_server({})
    mp = pytest.MonkeyPatch()
    _point_at(endpoint, mp, tmp_path_factory.mktemp("aws"))
    conf = fsspec.config.conf.setdefault("s3", {})
    assert conf["endpoint_url"].startswith("http://127.0.0.1:")
    conf["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 1}
    sources._filesystems.clear()
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield fsspec.filesystem("s3")
    finally:
        mp.undo()
        fsspec.config.conf.clear()
        fsspec.config.set_conf_env(fsspec.config.conf)
        sources._filesystems.clear()
        s3fs.S3FileSystem.clear_instance_cache()
        proc.terminate()
        proc.wait()


@pytest.fixture
def bucket(s3, request) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50].strip("-")
    s3.mkdir(name)
    return name


def _objects(s3, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` by relative key, the way conftest.snapshot reads a folder."""
    s3.invalidate_cache()
    return {key[len(prefix) + 1:]: s3.cat_file(key) for key in s3.find(prefix)}


def _without_state(files: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if not k.startswith(".segconvert/")}


def _local_run(tmp_path: Path, src: Path) -> dict[str, bytes]:
    out = tmp_path / "local"
    summary = segconvert.convert(src, out, from_format="coco-panoptic", jobs=1)
    assert summary.ok
    return _without_state(snapshot(out))


def _same_as_local(remote: dict[str, bytes], local: dict[str, bytes], local_root: str, remote_root: str) -> None:
    """Masks byte for byte; annotations.jsonl line for line, with mask_url the object's URL."""
    assert sorted(remote) == sorted(local)
    for key in local:
        if key != "annotations.jsonl":
            assert remote[key] == local[key], key
    want = local["annotations.jsonl"].decode().replace(local_root, remote_root)
    assert remote["annotations.jsonl"].decode() == want
    urls = [json.loads(line)["mask_url"] for line in want.splitlines()]
    assert urls and all(u.startswith(remote_root + "/masks/") for u in urls)


@pytest.mark.parametrize("jobs", [1, 2])
def test_s3_to_s3_gives_the_local_bytes(tmp_path, s3, bucket, jobs):
    src = good_dataset(tmp_path, 10)
    s3.put(str(tmp_path / "panoptic"), f"{bucket}/in/panoptic", recursive=True)
    s3.put_file(str(src), f"{bucket}/in/panoptic.json")
    local = _local_run(tmp_path, src)
    out = f"s3://{bucket}/out"
    summary = segconvert.convert(f"s3://{bucket}/in/panoptic.json", out, jobs=jobs)  # --from auto sniffs it
    assert summary.ok and summary.converted == 10
    remote = _objects(s3, f"{bucket}/out")
    assert {".segconvert/journal.tsv", ".segconvert/settings.json"} <= set(remote)  # the mirror
    _same_as_local(_without_state(remote), local, str(tmp_path / "local"), out)
    # resumed from the store's mirror on a machine without the local journal
    cache = Path(os.environ["SEGCONVERT_CACHE"])
    for path in sorted(cache.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    again = segconvert.convert(f"s3://{bucket}/in/panoptic.json", out, jobs=jobs)
    assert again.skipped == 10 and again.converted == 0
    assert _without_state(_objects(s3, f"{bucket}/out")) == _without_state(remote)


def test_a_changed_object_is_converted_again(tmp_path, s3, bucket):
    src = good_dataset(tmp_path, 4)
    out = f"s3://{bucket}/out"
    segconvert.convert(src, out, from_format="coco-panoptic", jobs=1)
    before = _without_state(_objects(s3, f"{bucket}/out"))
    s3.pipe_file(f"{bucket}/out/masks/img0001.png", b"garbage")
    s3.rm_file(f"{bucket}/out/masks/img0002.png")
    summary = segconvert.convert(src, out, from_format="coco-panoptic", jobs=1)
    assert summary.converted == 2 and summary.skipped == 2
    assert _without_state(_objects(s3, f"{bucket}/out")) == before


def test_resume_after_sigkill_on_s3(tmp_path, s3, bucket):
    src = good_dataset(tmp_path, 120, h=120, w=160)
    clean = f"s3://{bucket}/clean"
    segconvert.convert(src, clean, from_format="coco-panoptic", jobs=1)
    want = _without_state(_objects(s3, f"{bucket}/clean"))
    out = f"s3://{bucket}/killed"
    cmd = [sys.executable, "-m", "segconvert", "convert", str(src), out, "--from", "coco-panoptic", "--jobs", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal = OutputStore(out).state_dir() / "journal.tsv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.stat().st_size > 0:
            break
        time.sleep(0.002)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # it finished first: resuming is then a no-op
        pass
    proc.wait()
    assert "annotations.jsonl" not in _objects(s3, f"{bucket}/killed") or proc.returncode == 0
    summary = segconvert.convert(src, out, from_format="coco-panoptic", jobs=2)
    assert summary.ok and summary.converted + summary.skipped == 120
    assert summary.skipped > 0
    got = _without_state(_objects(s3, f"{bucket}/killed"))
    assert got == {k: v.replace(clean.encode(), out.encode()) for k, v in want.items()}


def test_missing_bucket_is_one_clear_error(tmp_path, s3):
    src = good_dataset(tmp_path, 2)
    code, output = _cli(str(src), "s3://no-such-bucket-here/out", "--from", "coco-panoptic")
    assert code == 2
    assert output.strip().splitlines() == [
        "error: s3://no-such-bucket-here/out: cannot write there: the bucket (or container) does not exist"
    ]


def test_missing_source_object_is_one_clear_error(s3, bucket):
    code, output = _cli(f"s3://{bucket}/nothing.json", f"s3://{bucket}/out", "--from", "coco-panoptic")
    assert code == 2 and output.strip().splitlines() == [f"error: s3://{bucket}/nothing.json: file not found"]


def test_bad_credentials_are_one_clear_error(tmp_path, s3):
    """A second moto server that checks credentials (IAM auth on from the first request):
    the dummy key is unknown to it, as a wrong key is to AWS."""
    proc, endpoint = _moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    mp = pytest.MonkeyPatch()
    try:
        _point_at(endpoint, mp, tmp_path)
        src = good_dataset(tmp_path, 2)
        code, output = _cli(str(src), "s3://some-bucket/out", "--from", "coco-panoptic")
        assert code == 2
        lines = output.strip().splitlines()
        assert len(lines) == 1 and "access denied" in lines[0] and "credentials" in lines[0], output
    finally:
        mp.undo()
        _point_at(os.environ["FSSPEC_S3_ENDPOINT_URL"], pytest.MonkeyPatch(), tmp_path)
        proc.terminate()
        proc.wait()


def _cli(*args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from segconvert.interfaces.cli import main

    result = CliRunner().invoke(main, ["convert", *args])
    return result.exit_code, result.output


def test_memory_urls_and_a_missing_protocol_package(tmp_path):
    """memory:// (fsspec's own, no package needed) goes through the same methods; a protocol
    whose package is not installed is a SourceError naming it."""
    store = OutputStore("memory://segconvert-test/out")
    assert store.remote and store.url("masks/a.png") == "memory://segconvert-test/out/masks/a.png"
    stamp = store.put("masks/a.png", b"abc")
    assert store.get("masks/a.png") == b"abc" and store.exists("masks/a.png") and store.matches(stamp)
    with store.replacing("annotations.jsonl") as fh:
        fh.write("line\n")
    assert store.get("annotations.jsonl") == b"line\n"
    with pytest.raises(RuntimeError), store.replacing("half.jsonl") as fh:
        fh.write("half")
        raise RuntimeError("killed")
    assert not store.exists("half.jsonl")
    from segconvert.codecs import png

    assert png.read_bytes("memory://segconvert-test/out/masks/a.png") == b"abc"
    with pytest.raises(SourceError, match="needs a package that is not installed"):
        sources.filesystem("abfs://container/x")  # adlfs is not installed here


def test_file_urls_are_local_paths(tmp_path):
    store = OutputStore(f"file://{tmp_path}/out")
    assert not store.remote and store.root == str(tmp_path / "out")
