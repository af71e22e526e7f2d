"""The Dask executor: the same bytes as a local run, the same resume, and clear errors when
the workers cannot reach OUTPUT or Dask is not installed. One LocalCluster of 2 worker
processes (threads_per_worker=1) serves the module: starting one costs seconds."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from conftest import snapshot
from test_pipeline import good_dataset, run_cli
from test_storage import bucket, s3  # noqa: F401  (fixtures: a moto S3 server on loopback)

import segconvert
from segconvert.errors import SourceError

distributed = pytest.importorskip("distributed")

OPTS = {"from_format": "coco-panoptic", "mask_url_prefix": "s3://b/"}  # mask_url independent of OUTPUT


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def test_dask_gives_the_bytes_of_a_local_run(tmp_path, scheduler):
    src = good_dataset(tmp_path, 30)
    segconvert.convert(src, tmp_path / "local", jobs=2, **OPTS)
    summary = segconvert.convert(src, tmp_path / "dask", jobs=2, executor=scheduler, **OPTS)
    assert summary.ok and summary.converted == 30, (summary.converted, summary.failures)
    assert snapshot(tmp_path / "dask") == snapshot(tmp_path / "local")


def test_dask_resumes_like_a_local_run(tmp_path, scheduler):
    src = good_dataset(tmp_path, 20)
    clean = tmp_path / "clean"
    segconvert.convert(src, clean, jobs=1, **OPTS)
    want = snapshot(clean)
    journal = (clean / ".segconvert" / "journal.tsv").read_bytes()
    out = tmp_path / "cut"
    segconvert.convert(src, out, jobs=1, **OPTS)
    (out / ".segconvert" / "journal.tsv").write_bytes(journal[: len(journal) // 2 + 5])  # a kill mid-line
    (out / "annotations.jsonl").unlink()
    (out / "masks" / "img0002.png").write_bytes(b"garbage")  # a journalled item whose mask changed
    summary = segconvert.convert(src, out, jobs=2, executor=scheduler, **OPTS)
    assert summary.ok and summary.converted + summary.skipped == 20
    assert 0 < summary.skipped < 20
    assert snapshot(out) == want


def test_workers_that_cannot_reach_output_fail_the_run_up_front(tmp_path, scheduler, monkeypatch):
    """memory:// is per process: the workers see another, empty store, as a worker on another
    machine sees its own local folder of the same name."""
    monkeypatch.setenv("SEGCONVERT_CACHE", str(tmp_path / "cache"))
    src = good_dataset(tmp_path, 3)
    with pytest.raises(SourceError, match=r"Dask worker .* cannot read OUTPUT .*every worker must reach SOURCE"):
        segconvert.convert(src, "memory://not-shared/out", jobs=2, executor=scheduler, **OPTS)


def test_cli_executor_dask_starts_a_local_cluster(tmp_path):
    src = good_dataset(tmp_path, 6)
    segconvert.convert(src, tmp_path / "local", jobs=1, **OPTS)
    code, output = run_cli("convert", str(src), str(tmp_path / "dask"), "--from", "coco-panoptic",
                           "--mask-url-prefix", "s3://b/", "--executor", "dask", "--jobs", "1")
    assert code == 0, output
    assert snapshot(tmp_path / "dask") == snapshot(tmp_path / "local")


def test_unknown_executor_and_missing_dask_are_clear_errors(tmp_path, monkeypatch):
    src = good_dataset(tmp_path, 1)
    code, output = run_cli("convert", str(src), str(tmp_path / "o"), "--executor", "threads")
    assert code == 2 and "--executor 'threads': expected local, dask" in output
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    code, output = run_cli("convert", str(src), str(tmp_path / "o"), "--executor", "dask")
    assert code == 2
    assert output.strip().splitlines()[-1] == (
        "error: --executor dask needs Dask's distributed scheduler: pip install 'segconvert[dask]'"
    )


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    import socket

    from segconvert.execution import executors

    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", "1s")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    src = good_dataset(tmp_path, 1)
    code, output = run_cli("convert", str(src), str(tmp_path / "o"), "--executor", f"tcp://127.0.0.1:{port}")
    assert code == 2 and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in output


def test_dask_workers_read_and_write_s3_themselves(tmp_path, s3, bucket):  # noqa: F811 (fixtures)
    """s3 -> s3 on Dask workers started after the credentials and endpoint are set (as on a
    real cluster, where workers get them from their own environment): the objects are the
    ones a local run writes."""
    from test_pipeline import good_dataset as dataset

    src = dataset(tmp_path, 8)
    s3.put(str(tmp_path / "panoptic"), f"{bucket}/in/panoptic", recursive=True)
    s3.put_file(str(src), f"{bucket}/in/panoptic.json")
    local = segconvert.convert(f"s3://{bucket}/in/panoptic.json", f"s3://{bucket}/local", jobs=1)
    assert local.ok
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        summary = segconvert.convert(f"s3://{bucket}/in/panoptic.json", f"s3://{bucket}/dask", jobs=1,
                                     executor=cluster.scheduler_address)
    finally:
        cluster.close()
    assert summary.ok and summary.converted == 8
    s3.invalidate_cache()
    for key in s3.find(f"{bucket}/local"):
        rel = key[len(f"{bucket}/local"):]
        if "/.segconvert/" in rel:
            continue
        want = s3.cat_file(key).replace(f"s3://{bucket}/local".encode(), f"s3://{bucket}/dask".encode())
        assert s3.cat_file(f"{bucket}/dask{rel}") == want, rel
