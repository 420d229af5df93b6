"""Size the miniature's prompt-tuning learning rate on tasks the demo does not use.

The demo's runs are short (70 steps per target) and compute-bound on 2 cores, so a target
that needs 300 steps at the paper's learning rate (0.3) stays near chance in the demo. This
probe asks whether a larger constant learning rate reaches in 70 steps what 0.3 reaches in
300, without washing out a transferred initialization. It tunes only on the suite's **extra**
tasks (registered, never part of the demo: adjective_valence, simlex_similarity,
wordsim_relatedness), so no choice here is made on a demo validation set:

  scratch   prompt from class labels, `--steps` steps, each learning rate, each seed
  long      prompt from class labels, `--long-steps` steps at 0.3 (the reference ceiling)
  transfer  adjective_valence from a vader_valence source prompt (a sentiment sibling,
            trained once at the demo's source recipe), each learning rate

Every run is the demo's own (`spot.workflows.demo._Session.train`: shipped backbone, batch 16,
prompt length 20, evaluation every 50 steps and at the end, best checkpoint). One JSON line
per run goes to `--out`.

    python scripts/probe_pt_recipe.py --out scripts/results/pt_recipe.jsonl
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXTRAS = ["offline_adjective_valence", "offline_simlex_similarity", "offline_wordsim_relatedness"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=70)
    ap.add_argument("--long-steps", type=int, default=300)
    ap.add_argument("--tasks", nargs="+", default=EXTRAS)
    args = ap.parse_args()

    from scripts._demo_session import append_row, demo_session
    from spot.data import registry

    s, cfg, _ = demo_session("spot-probe-pt-")

    def run(arm: str, task: str, lr: float, steps: int, seed: int, init: dict) -> None:
        name = f"{arm}-{task}-lr{lr}-n{steps}"
        t0 = time.perf_counter()
        r = s.train(name, {"data.task": task, "train.steps": steps,
                           "optimizer.learning_rate": lr, **init}, seed)
        row = {"arm": arm, "task": task, "lr": lr, "steps": steps, "seed": seed,
               "best_score": r.best_score, "best_step": r.best_step,
               "majority": 100.0 / len(registry.get(task).label_words),
               "seconds": round(time.perf_counter() - t0, 1)}
        append_row(args.out, row)

    scratch = {"prompt.init": "class_labels"}
    for task in args.tasks:
        for lr in args.lrs:
            for seed in args.seeds:
                run("scratch", task, lr, args.steps, seed, scratch)
        run("long", task, 0.3, args.long_steps, args.seeds[0], scratch)
    src = s.train("source-vader", {"data.task": "offline_vader_valence",
                                   "train.steps": cfg.source_steps,
                                   "prompt.init": "class_labels"}, 0)
    init = {"prompt.init": "file", "prompt.init_path": str(src.prompt_paths["best"])}
    for lr in args.lrs:
        for seed in args.seeds:
            run("transfer", "offline_adjective_valence", lr, args.steps, seed, init)


if __name__ == "__main__":
    main()
