"""Evaluation curves of a probe's run folders, and how much they swing: for each run under the
given `runs/` folders, its eval scores by step and its last logged train loss, kept as one JSON
line per run (`--save`, so the figures outlive the temporary folders); then per recipe (the
run name without its seed) and arm, the mean absolute change between consecutive
evaluations, the final score, the best score and the final train loss.

    python scripts/curves_of_probe_runs.py /tmp/spot-probe-target-*/runs \
        --save scripts/results/target_schedule_curves.jsonl
    python scripts/curves_of_probe_runs.py --load scripts/results/target_schedule_curves.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np


def read_run(folder: Path) -> dict | None:
    metrics = folder / "metrics.jsonl"
    if not (folder / "summary.json").exists() or not metrics.exists():
        return None  # unfinished
    evals, loss = [], None
    for line in metrics.open(encoding="utf-8"):
        r = json.loads(line)
        if r.get("kind") == "eval":
            evals.append((r["step"], r["score"]))
        elif r.get("kind") == "train":
            loss = r["loss"]
    return {"run": folder.name, "evals": evals, "final_train_loss": loss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--save", type=Path)
    ap.add_argument("--load", type=Path)
    args = ap.parse_args()
    if args.load:
        rows = [json.loads(line) for line in args.load.open(encoding="utf-8")]
    else:
        rows = [r for d in args.runs for f in sorted(d.iterdir()) if (r := read_run(f))]
    if args.save:
        args.save.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["run"].startswith(("scratch-", "transfer-")):
            groups[re.sub(r"-s\d+$", "", r["run"])].append(r)
    print("| recipe | runs | mean abs change between evaluations | final | best | final train"
          " loss |")
    print("|---|---|---|---|---|---|")
    for name in sorted(groups):
        rs = groups[name]
        swings = [abs(b[1] - a[1]) for r in rs for a, b in zip(r["evals"], r["evals"][1:])]
        print(f"| {name} | {len(rs)} | {np.mean(swings):.1f} | "
              f"{np.mean([r['evals'][-1][1] for r in rs]):.1f} | "
              f"{np.mean([max(s for _, s in r['evals']) for r in rs]):.1f} | "
              f"{np.mean([r['final_train_loss'] for r in rs]):.3f} |")


if __name__ == "__main__":
    main()
