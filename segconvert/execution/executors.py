"""A Dask cluster as the executor: ``--executor dask`` (a local cluster) or ``tcp://HOST:PORT``.

The pipeline stays what it is for worker processes (:mod:`segconvert.execution.pipeline`): the
main process iterates the reader, ships batches of item *descriptions* (the light
``Item`` objects, never decoded arrays), and appends the outcomes to its journal in
source order. Here the batches go to Dask workers instead of local processes:

- the mode plan and the writer are scattered to every worker once, not pickled per batch;
- at most ``depth`` batches per worker thread are in flight (memory bounded, as locally);
- outcomes are taken in submission order, so the journal and every file built from it
  are the bytes a local run writes, and resuming works the same.

Workers read SOURCE and write OUTPUT themselves: both must be reachable from every worker
(object storage, or a filesystem mounted at the same path everywhere). A run checks that
up front: every worker stats SOURCE and reads back a probe file the main process has just
written into OUTPUT, so a worker that sees a different folder of the same name fails the
run with one message instead of writing masks where nobody looks.
"""

from __future__ import annotations

import os
import secrets
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from segconvert.codecs import limits
from segconvert.errors import SourceError
from segconvert.io import paths

INSTALL = "pip install 'segconvert[dask]'"
DEPTH = 2  # batches in flight per worker thread
CONNECT_TIMEOUT = "30s"  # to reach a scheduler given by address


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise SourceError(f"--executor dask needs Dask's distributed scheduler: {INSTALL}") from None
    return distributed


def is_dask(executor: str | None) -> bool:
    """Whether ``executor`` names a Dask cluster (``dask``, or a scheduler address)."""
    return executor is not None and (executor == "dask" or "://" in executor)


def check_executor(executor: str | None) -> None:
    """``--executor``: local (the default), dask, or a scheduler address such as tcp://host:8786."""
    if executor in (None, "local") or is_dask(executor):
        return
    raise SourceError(
        f"--executor {executor!r}: expected local, dask (a local Dask cluster) or a scheduler "
        "address such as tcp://HOST:8786"
    )


def _client(executor: str, jobs: int) -> tuple[Any, Any]:
    """A client of the cluster ``executor`` names, and the LocalCluster we started (or None)."""
    distributed = _import_distributed()
    if executor == "dask":
        cluster = distributed.LocalCluster(
            n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
        )
        return distributed.Client(cluster), cluster
    try:
        return distributed.Client(executor, timeout=CONNECT_TIMEOUT), None
    except (OSError, TimeoutError) as exc:
        raise SourceError(f"cannot reach the Dask scheduler at {executor}: {exc}") from None


def _worker_checks(
    source: str, probe_url: str, probe_rel: str, token: bytes, writer: Any, expected_codecs: str
) -> str | None:
    """Runs on each worker: None when SOURCE and OUTPUT are reachable, else what is wrong."""
    from segconvert.io import sources

    try:
        if not sources.exists(source):
            return f"cannot see SOURCE {source}"
    except (OSError, SourceError) as exc:
        return f"cannot see SOURCE {source}: {exc}"
    try:
        if writer.store.get(probe_rel) != token:
            return f"sees another OUTPUT: {probe_url} holds other bytes there"
    except (OSError, SourceError) as exc:
        return f"cannot read OUTPUT ({probe_url}: {type(exc).__name__}: {exc})"
    if codecs() != expected_codecs:
        return (f"encodes masks with {codecs()}, not {expected_codecs} as this process does: "
                "its PNGs would not be the bytes of a local run (install the same packages there)")
    return None


def codecs() -> str:
    """Which PNG codecs this process uses (segconvert.codecs.png's optional accelerators): a worker
    with another deflate writes other, equally valid, bytes."""
    from segconvert.codecs import png

    return f"deflate {png._deflate_lib.__name__}, decode {'pyspng' if png._pyspng is not None else 'opencv'}"


def _check_workers(client: Any, source: str, writer: Any) -> None:
    token = secrets.token_hex(16).encode()
    probe_rel = f".segconvert/worker-probe-{os.getpid()}"
    writer.store.put(probe_rel, token)
    try:
        problems = client.run(_worker_checks, source, writer.store.url(probe_rel), probe_rel, token, writer, codecs())
    finally:
        try:
            if writer.store.remote:
                fs, base = writer.store._fs()
                fs.rm_file(f"{base}/{probe_rel}")
            else:
                os.unlink(writer.store.path(probe_rel))
        except OSError:
            pass
    bad = {worker: why for worker, why in problems.items() if why is not None}
    if not problems:
        raise SourceError("the Dask cluster has no workers")
    if bad:
        worker, why = sorted(bad.items())[0]
        raise SourceError(
            f"Dask worker {worker} {why}; every worker must reach SOURCE and OUTPUT at the same "
            f"paths (object storage, or a shared filesystem) ({len(bad)} of {len(problems)} workers)"
        )


_tuned: set[int] = set()


def _run_batch(work: tuple[Any, Any], batch: list[Any]) -> list[Any]:
    """One batch on a Dask worker: the same convert_batch as a local worker process runs."""
    from segconvert.execution import pipeline

    if os.getpid() not in _tuned:  # once per worker process, as a local worker does at start
        pipeline._tune_process()
        _tuned.add(os.getpid())
    plan, writer, max_pixels, allow_outside = work
    limits.set_max_pixels(max_pixels)  # the run's policies, as a local worker gets them at start
    paths.set_allow_outside(allow_outside)
    return pipeline.convert_batch(batch, plan, writer)


def dask_map(
    executor: str, jobs: int, plan: Any, writer: Any, batches: Iterable[list[Any]], source: str
) -> Iterator[list[Any]]:
    """The outcomes of every batch, in the order given, computed on the Dask cluster."""
    distributed = _import_distributed()
    client, cluster = _client(executor, jobs)
    try:
        _check_workers(client, source, writer)
        threads = sum(client.nthreads().values()) or 1
        [work] = client.scatter([(plan, writer, limits.max_pixels(), paths.allow_outside())], broadcast=True)
        in_flight: deque[Any] = deque()
        source_batches = iter(batches)
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < DEPTH * threads:
                batch = next(source_batches, None)
                if batch is None:
                    exhausted = True
                    break
                # pure=False: two batches with equal items are still two tasks
                in_flight.append(client.submit(_run_batch, work, batch, pure=False))
            if not in_flight:
                return
            future = in_flight.popleft()
            try:
                results = future.result()
            except distributed.KilledWorker as exc:
                raise SourceError(
                    f"a Dask worker died running a batch ({exc}); run the same command again to resume"
                ) from None
            finally:
                future.release()
            yield results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
