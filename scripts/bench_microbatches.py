"""Per-step cost of the demo's runs with the batch trained whole or in microbatches.

Every run is the demo's own (`spot.workflows.demo._Session.train`: shipped backbone, batch 16,
prompt length 20, fitted input length, one shared step cache, compilation cache on). For each
task and each `--microbatches` value it times runs of `--steps` and of twice as many steps
(one evaluation each, at the end), after a warm-up of each shape, arms interleaved in each of
`--repeats` rounds; a step costs the difference of the medians divided by `--steps`. The
ratio column is each arm's step against the first arm's, from the same process.

    python scripts/bench_microbatches.py --tasks offline_review_polarity offline_rel_comparative
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+",
                    default=["offline_review_polarity", "offline_rel_comparative"])
    ap.add_argument("--microbatches", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None, help="append one JSON line per task and arm")
    args = ap.parse_args()

    import dataclasses

    from scripts._demo_session import append_row, demo_session

    s, base, _ = demo_session("spot-bench-micro-")
    counter = iter(range(10**6))

    def run(task: str, steps: int, micro: int) -> float:
        s.demo = dataclasses.replace(base, eval_every=steps, microbatches=micro)
        t0 = time.perf_counter()
        s.train(f"{task}-{next(counter)}", {"data.task": task, "train.steps": steps,
                                            "prompt.init": "class_labels"}, 0)
        return time.perf_counter() - t0

    for task in args.tasks:
        for m in args.microbatches:  # warm-up: trace and compile every shape
            run(task, args.steps, m)
            run(task, 2 * args.steps, m)
        times = {m: {"short": [], "long": []} for m in args.microbatches}
        for _ in range(args.repeats):
            for m in args.microbatches:
                times[m]["short"].append(run(task, args.steps, m))
                times[m]["long"].append(run(task, 2 * args.steps, m))
        step = {m: (statistics.median(t["long"]) - statistics.median(t["short"])) / args.steps
                for m, t in times.items()}
        first = step[args.microbatches[0]]
        for m in args.microbatches:
            row = {"task": task, "microbatches": m, "batch_size": base.batch_size,
                   "step_ms": round(1000 * step[m], 1), "ratio": round(step[m] / first, 3),
                   "repeats": args.repeats, "steps": args.steps}
            if args.out:
                append_row(args.out, row)
            else:
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
