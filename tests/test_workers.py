"""The process pool: results in the order given, whatever order the workers finish in."""

from __future__ import annotations

import os
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from segconvert.execution.workers import WorkerPool


def _noop() -> None:
    pass


def _tagged(batch: list[int]) -> list[tuple[int, int]]:
    time.sleep(0.002 * (batch[0] % 3))  # uneven batches, so replies come back out of order
    return [(x, os.getpid()) for x in batch]


@settings(max_examples=8, deadline=None)
@given(n_batches=st.integers(0, 40), workers=st.integers(1, 3), depth=st.integers(1, 3))
def test_results_come_back_in_order(n_batches, workers, depth):
    batches = [[3 * k, 3 * k + 1, 3 * k + 2] for k in range(n_batches)]
    with WorkerPool(workers, _noop, (), _tagged, depth=depth) as pool:
        results = list(pool.imap(iter(batches)))
    assert [x for batch in results for x, _ in batch] == list(range(3 * n_batches))
    pids = {pid for batch in results for _, pid in batch}
    assert os.getpid() not in pids and len(pids) <= workers
