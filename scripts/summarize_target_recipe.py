"""Mean and std over seeds of `scripts/probe_target_recipe.py` rows, one line per arm, target,
learning rate, step count and override set (the `--set` keys a row carries), with the
transfer-minus-scratch gap of each recipe; prints a Markdown table.

    python scripts/summarize_target_recipe.py scripts/results/target_schedule.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np

_BASE = {"arm", "target", "lr", "steps", "seed", "dev_best", "best_step", "majority", "train_n",
         "dev_n", "dev_seed", "prompt_length", "seconds", "source"}


def main(path: str) -> None:
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        extra = ",".join(f"{k}={r[k]}" for k in sorted(set(r) - _BASE)) or "constant"
        groups[(r["target"], extra, r["lr"], r["steps"], r["arm"])].append(r)
    print("| target | recipe | lr | steps | arm | seeds | dev best (mean ± std) | best step |"
          " transfer - scratch |")
    print("|---|---|---|---|---|---|---|---|---|")
    mean = {key: float(np.mean([r["dev_best"] for r in rs])) for key, rs in groups.items()}
    for key in sorted(groups):
        target, extra, lr, steps, arm = key
        vals = np.array([r["dev_best"] for r in groups[key]])
        scratch = mean.get((target, extra, lr, steps, "scratch"))
        gap = f"{mean[key] - scratch:+.1f}" if arm == "transfer" and scratch is not None else ""
        print(f"| {target.removeprefix('offline_')} | {extra} | {lr} | {steps} | {arm} | "
              f"{len(vals)} | {vals.mean():.1f} ± {vals.std(ddof=1) if len(vals) > 1 else 0:.1f}"
              f" | {np.mean([r['best_step'] for r in groups[key]]):.0f} | {gap} |")
    print("\n| recipe | lr | steps | targets | scratch mean | transfer mean | mean gap |")
    print("|---|---|---|---|---|---|---|")
    for extra, lr, steps in sorted({key[1:4] for key in groups}):
        pairs = [(mean[(t, extra, lr, steps, "scratch")], mean[(t, extra, lr, steps, "transfer")])
                 for t in sorted({key[0] for key in groups})
                 if (t, extra, lr, steps, "scratch") in mean
                 and (t, extra, lr, steps, "transfer") in mean]
        if not pairs:
            continue
        s, t = np.array(pairs).T
        print(f"| {extra} | {lr} | {steps} | {len(pairs)} | {s.mean():.1f} | {t.mean():.1f} |"
              f" {np.mean(t - s):+.1f} |")

if __name__ == "__main__":
    main(sys.argv[1])
