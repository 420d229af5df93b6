"""Mean and std over seeds of `scripts/probe_knowledge_stage.py` rows for one stage (its label
kind and step count): per task, the bare backbone, the tuned source prompt, and for the
targets from scratch and from the sibling source with the sibling-minus-scratch gap and the
relative error reduction (point 3's measure); prints Markdown tables.

    python scripts/summarize_knowledge_stage.py scripts/results/knowledge_stage.jsonl \
        --labels own --stage-steps 3000
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np


def _cell(vals: list[float]) -> str:
    if not vals:
        return ""
    a = np.asarray(vals)
    if len(a) == 1:
        return f"{a[0]:.1f}"
    return f"{a.mean():.1f} ± {a.std(ddof=1):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path")
    ap.add_argument("--labels", default="own")
    ap.add_argument("--stage-steps", type=int, default=3000)
    args = ap.parse_args()

    rows = [json.loads(line) for line in open(args.path, encoding="utf-8") if line.strip()]
    rows = [r for r in rows if r.get("what") != "build" and r.get("labels", "yesno") == args.labels
            and r.get("stage_steps") == args.stage_steps]
    # (task, arm) -> seed -> score; a seed measured twice (a rerun) keeps its last row
    by: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    majority: dict[str, float] = {}
    for r in rows:
        by[(r["task"], r["what"])][r["seed"]] = r["score"]
        majority[r["task"]] = r["majority"]

    def vals(task: str, arm: str) -> list[float]:
        return [by[(task, arm)][s] for s in sorted(by.get((task, arm), {}))]

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    sources = [t for t in tasks if by.get((t, "tuned_source"))]
    targets = [t for t in tasks if by.get((t, "from_scratch"))]
    seeds = sorted({r["seed"] for r in rows if r["what"] != "no_prompt"})
    print(f"stage: labels {args.labels}, {args.stage_steps} steps; prompt seeds {seeds}\n")
    print("| source | majority | no prompt | tuned source prompt | tuned - no prompt |")
    print("|---|---|---|---|---|")
    for t in sources:
        bare, tuned = vals(t, "no_prompt"), vals(t, "tuned_source")
        gain = f"{np.mean(tuned) - np.mean(bare):+.1f}" if bare else ""
        print(f"| {t.removeprefix('offline_')} | {majority[t]:.1f} | {_cell(bare)} | "
              f"{_cell(tuned)} | {gain} |")
    print("\n| target | majority | no prompt | from scratch | from sibling | sibling - scratch |"
          " sibling wins (seeds) | relative error reduction |")
    print("|---|---|---|---|---|---|---|---|")
    rers = []
    for t in targets:
        scratch, sibling = by[(t, "from_scratch")], by.get((t, "from_sibling"), {})
        common = sorted(set(scratch) & set(sibling))
        wins = sum(sibling[s] > scratch[s] for s in common)
        m_scratch, m_sibling = np.mean(list(scratch.values())), np.mean(list(sibling.values()))
        rer = (m_sibling - m_scratch) / (100.0 - m_scratch) * 100.0
        rers.append(rer)
        print(f"| {t.removeprefix('offline_')} | {majority[t]:.1f} | {_cell(vals(t, 'no_prompt'))} |"
              f" {_cell(vals(t, 'from_scratch'))} | {_cell(vals(t, 'from_sibling'))} |"
              f" {m_sibling - m_scratch:+.1f} | {wins}/{len(common)} | {rer:.1f}% |")
    if rers:
        print(f"\nmean relative error reduction of the sibling over scratch: {np.mean(rers):.1f}%")


if __name__ == "__main__":
    main()
