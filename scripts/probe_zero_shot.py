"""How much of each demo task the frozen backbone already does before any prompt tuning.

The shipped backbone's multi-task stage model-tuned every weight on the source tasks, in their
own input formats, and two targets share a source's format. If the backbone with an untrained
prompt already scores near a task's final prompt-tuned score, the prompt had little to learn,
and a source prompt has little task knowledge to carry to a target.

For each task: the demo's own run (shipped backbone, prompt 20 from class labels, the demo's
evaluation subset) for one step at a learning rate of 1e-9, i.e. the initial prompt scored
as the demo scores it. `--init sampled_vocab` scores a prompt of sampled vocabulary
embeddings instead, and `--init none` the bare backbone with no prompt at all. With `--dev`,
targets are scored on the development split of `probe_target_recipe.py` (a class-balanced
quarter of the training split) instead of their validation split. One JSON line per task
goes to `--out`.

    python scripts/probe_zero_shot.py --out scripts/results/untrained_floor.jsonl
    python scripts/probe_zero_shot.py --init none --out scripts/results/untrained_floor.jsonl
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--tasks", nargs="+", default=None,
                    help="default: the demo's sources and targets")
    ap.add_argument("--init", default="class_labels",
                    choices=["class_labels", "sampled_vocab", "none"],
                    help="none: no prompt at all, the bare backbone (a model-tuning run of one "
                         "step at lr 1e-9, which scores the model without a prompt)")
    ap.add_argument("--dev", action="store_true",
                    help="score targets on a dev split of their training split")
    args = ap.parse_args()

    from scripts._demo_session import append_row, demo_session, score_as_it_stands
    from spot.data import registry
    from spot.data.offline.suite import SOURCE_TASKS, TARGET_TASKS

    tasks = args.tasks or [*SOURCE_TASKS, *TARGET_TASKS]
    s, cfg, _ = demo_session("spot-probe-zero-")
    for task in tasks:
        name = task
        if args.dev and task in TARGET_TASKS:
            from scripts.probe_target_recipe import register_dev

            name, _, _ = register_dev(task, 0.25, 1234)
        t0 = time.perf_counter()
        how = ({"train.mode": "model"} if args.init == "none" else {"prompt.init": args.init})
        score = score_as_it_stands(s, f"zero-{name}-{args.init}", {"data.task": name, **how}, 0)
        append_row(args.out, {
            "task": task, "scored_on": "dev" if name != task else "validation",
            "init": args.init, "score_untrained": score,
            "majority": 100.0 / len(registry.get(task).label_words),
            "seconds": round(time.perf_counter() - t0, 1)})


if __name__ == "__main__":
    main()
