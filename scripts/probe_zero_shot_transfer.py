"""What a source prompt does for a target before any target training (zero-shot transfer).

Each demo source prompt is trained at the demo's source recipe (seed 0, best checkpoint), then
scored on every demo target as it stands: the demo's own run on the target for one step at a
learning rate of 1e-9 from that prompt (`prompt.init = file`), so the figure is the source
prompt evaluated as the demo evaluates targets. The untrained class-label prompt of each
target (`probe_zero_shot.py`) is the row to compare with. One JSON line per (source, target).

    python scripts/probe_zero_shot_transfer.py --out scripts/results/zero_shot_transfer.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from scripts._demo_session import append_row, demo_session, score_as_it_stands
    from spot.data import registry
    from spot.data.offline.suite import SOURCE_TASKS, TARGET_TASKS

    s, cfg, _ = demo_session("spot-probe-zero-transfer-")
    for source in SOURCE_TASKS:
        src = s.train(f"source-{source}", {"data.task": source, "train.steps": cfg.source_steps,
                                           "prompt.init": "class_labels"}, args.seed)
        for target in TARGET_TASKS:
            score = score_as_it_stands(s, f"zero-{target}-from-{source}", {
                "data.task": target, "prompt.init": "file",
                "prompt.init_path": str(src.prompt_paths["best"])}, args.seed)
            append_row(args.out, {
                "source": source, "target": target, "seed": args.seed,
                "source_score": src.best_score, "zero_shot_on_target": score,
                "target_family": registry.get(target).family,
                "source_family": registry.get(source).family,
                "majority": 100.0 / len(registry.get(target).label_words)})


if __name__ == "__main__":
    main()
