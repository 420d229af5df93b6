"""How a target run's score grows with steps, from class labels and from each source prompt,
read from a finished demo folder (`spot demo --out DIR`; every run evaluates every 50 steps).

For each target and evaluation step: the baseline (class labels), the mean over the two sibling
sources, the mean over the other families' sources, and the best single source, each the mean
over the folder's seeds, with the relative error reduction of the siblings' mean over the
baseline at that step. The untrained prompt (step 0, `initial.json`) comes first where the run
kept it. Answers whether a source prompt's head start is there early and gone by the end.

    python scripts/transfer_curves_of_demo.py /tmp/readme_run/clone/demo_out
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def curve(run: Path) -> dict[int, float]:
    """step -> score of one run's evaluations (step 0: its untrained prompt, when kept)."""
    out = {}
    initial = run / "initial.json"
    if initial.exists():
        out[0] = float(json.loads(initial.read_text())["score"])
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == "eval":
            out[int(row["step"])] = float(row["score"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("demo_out")
    ap.add_argument("--json", default=None, help="also write the table's figures here")
    args = ap.parse_args()

    from spot.data import registry
    from spot.data.offline.suite import SOURCE_TASKS, TARGET_TASKS

    runs = Path(args.demo_out) / "runs"
    rows = []
    for target in TARGET_TASKS:
        family = registry.get(target).family
        curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for run in sorted(runs.glob(f"target-{target}-from-*-s*")):
            source = run.name[len(f"target-{target}-from-"):].rsplit("-s", 1)[0]
            if source != "none" and source not in SOURCE_TASKS:
                continue  # the mixture and the weighted top-k are not the grid's
            for step, score in curve(run).items():
                curves[source][step].append(score)
        steps = sorted(curves["none"])
        siblings = [s for s in SOURCE_TASKS if registry.get(s).family == family]
        others = [s for s in SOURCE_TASKS if s not in siblings]
        print(f"\n{target} (siblings: {', '.join(siblings)})")
        print("| step | from scratch | siblings (mean) | other families (mean) | best source | "
              "siblings' RER % |")
        print("|---|---|---|---|---|---|")
        for step in steps:
            base = float(np.mean(curves["none"][step]))
            mean = {s: float(np.mean(curves[s][step])) for s in SOURCE_TASKS if curves[s].get(step)}
            sib = float(np.mean([mean[s] for s in siblings if s in mean])) if mean else float("nan")
            oth = float(np.mean([mean[s] for s in others if s in mean])) if mean else float("nan")
            best = max(mean, key=mean.get) if mean else None
            rer = 100.0 * (sib - base) / (100.0 - base) if mean else float("nan")
            print(f"| {step} | {base:.1f} | {sib:.1f} | {oth:.1f} | "
                  + (f"{mean[best]:.1f} ({best.replace('offline_', '')})" if best else "-")
                  + f" | {rer:.1f} |")
            rows.append({"target": target, "step": step, "scratch": base, "siblings": sib,
                         "others": oth, "best_source": best,
                         "best": mean.get(best) if best else None, "siblings_rer": rer,
                         "seeds": len(curves["none"][step])})
    if args.json:
        Path(args.json).write_text("\n".join(json.dumps(r) for r in rows) + "\n")


if __name__ == "__main__":
    main()
