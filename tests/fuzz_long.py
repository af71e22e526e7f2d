"""The long fuzz run (not collected by pytest): every reader's strategy from test_fuzz.py, N
examples each, generate phase only, and every failing example logged and counted instead of
stopping at the first one (as a @given test would), so one run finds all it can.

    nice -n 19 .venv/bin/python tests/fuzz_long.py 17000 fuzz-long.log [coco_panoptic=5000 ...]

(N examples per reader; ``name=N`` pairs override it for one reader.) A progress line with
the counts so far goes to the log every 1,000 cases, so a run stopped early still says how
far it got.

Prints (and appends to the log) the outcome counts per reader and each distinct failure with
its traceback; exit status 1 if any example failed.
"""

from __future__ import annotations

import collections
import json
import re
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_fuzz  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

READERS = ["test_fuzz_coco_instances", "test_fuzz_labelme", "test_fuzz_cvat", "test_fuzz_cityscapes",
           "test_fuzz_rgb", "test_fuzz_rgb_palette", "test_fuzz_coco_panoptic"]  # the costliest last


def main() -> int:
    examples, log = int(sys.argv[1]), Path(sys.argv[2])
    per_reader = {f"test_fuzz_{k}": int(v) for k, v in (arg.split("=") for arg in sys.argv[3:])}
    failures: dict[str, int] = collections.Counter()
    first: dict[str, str] = {}
    nonlocal_cases = [0]
    for name in READERS:
        inner = getattr(test_fuzz, name).hypothesis.inner_test
        start = time.monotonic()

        def make(inner=inner, name=name):
            def one(data):
                nonlocal_cases[0] += 1
                if nonlocal_cases[0] % 1000 == 0:
                    with log.open("a") as fh:
                        fh.write(json.dumps({"cases so far": nonlocal_cases[0], "failures": dict(failures)}) + "\n")
                try:
                    inner(data)
                except Exception as exc:  # noqa: BLE001 - every failure is recorded, the run goes on
                    text = str(exc).splitlines()[0][:200] if str(exc) else ""
                    text = re.sub(r"/\S*segconvert-fuzz-[^/]+", "<tmp>", text)  # one key per kind of failure
                    key = f"{name}: {type(exc).__name__}: {text}"
                    failures[key] += 1
                    first.setdefault(key, traceback.format_exc(limit=-6))
            return one  # noqa: B023 - returned at once, bound here

        test = make()
        run = settings(max_examples=per_reader.get(name, examples), database=None, deadline=None,
                       phases=[Phase.generate], suppress_health_check=list(HealthCheck))(given(st.data())(test))
        run()
        line = {"reader": name, "seconds": round(time.monotonic() - start, 1), "cases so far": nonlocal_cases[0],
                "outcomes": dict(test_fuzz.OUTCOMES), "failures": dict(failures)}
        with log.open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)
    with log.open("a") as fh:
        fh.write(f"total cases: {nonlocal_cases[0]}\n")
        for key, tb in first.items():
            fh.write(f"\n=== {key} ({failures[key]} examples)\n{tb}\n")
    print(f"total cases: {nonlocal_cases[0]}, distinct failures: {len(first)}")
    return 1 if first else 0


if __name__ == "__main__":
    sys.exit(main())
