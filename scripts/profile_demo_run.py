"""Where the time of one demo-shaped run goes: train steps, evaluations, fixed cost.

Every run is the demo's own (`spot.workflows.demo._Session.train`, shipped backbone, one
shared step cache, compilation cache on). For each task it times, after a warm-up run of each
shape, interleaved and repeated:

  A  the demo's run: `--steps` steps, evaluation every `--eval-every` and at the end
  B  the same steps, one evaluation (at the end)
  C  twice the steps, one evaluation
  E  one step, one evaluation

so a step costs (C - B) / steps, an extra evaluation A - B, and the fixed cost of a run
(folder, checkpoint, prompt files, input pipeline start) E - one step - one evaluation,
an evaluation alone being measured directly as well (the evaluator on the initial prompt).

    python scripts/profile_demo_run.py --tasks offline_review_polarity offline_rel_comparative
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+",
                    default=["offline_review_polarity", "offline_rel_comparative"])
    ap.add_argument("--steps", type=int, default=70)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--microbatches", type=int, default=1)
    args = ap.parse_args()

    import dataclasses

    from scripts._demo_session import demo_session

    s, base, _ = demo_session("spot-profile-run-", batch_size=args.batch_size,
                              microbatches=args.microbatches)
    counter = iter(range(10**6))

    def run(task: str, steps: int, eval_every: int) -> float:
        name = f"{task}-{next(counter)}"
        s.demo = dataclasses.replace(base, eval_every=eval_every)
        t0 = time.perf_counter()
        s.train(name, {"data.task": task, "train.steps": steps, "prompt.init": "class_labels"}, 0)
        return time.perf_counter() - t0

    for task in args.tasks:
        arms = {"A": (args.steps, args.eval_every), "B": (args.steps, args.steps),
                "C": (2 * args.steps, 2 * args.steps), "E": (1, 1)}
        for steps, every in arms.values():  # warm-up: trace and compile every shape
            run(task, steps, every)
        times: dict[str, list[float]] = {k: [] for k in arms}
        for _ in range(args.repeats):
            for k, (steps, every) in arms.items():
                times[k].append(run(task, steps, every))
        med = {k: statistics.median(v) for k, v in times.items()}
        step = (med["C"] - med["B"]) / args.steps
        extra_eval = med["A"] - med["B"]
        fixed = med["E"] - step - extra_eval
        print(f"{task}: medians of {args.repeats} " + ", ".join(
            f"{k}={v:.2f}s" for k, v in med.items()))
        print(f"  step {step * 1000:.0f} ms -> {args.steps} steps {step * args.steps:.2f}s; "
              f"one evaluation {extra_eval:.2f}s; fixed per run {fixed:.2f}s")


if __name__ == "__main__":
    main()
