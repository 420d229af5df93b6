"""Does scoring the untrained prompt (`train.eval_at_start`) change a run? A/B on one machine.

The demo's vader_valence source run (shipped backbone, 200 steps, sampled-vocabulary init,
the demo's own config through `_Session.fit`), alternately without and with the initial
evaluation, twice each in one process: best score, initial score, wall seconds and the last
three logged training losses, one JSON line per run (to stdout and `--out`).

    python scripts/probe_eval_at_start_ab.py --out scripts/results/eval_at_start_ab.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from scripts._demo_session import append_row, demo_session
    from spot.config import apply_overrides

    s, _, tmp = demo_session("spot-probe-ab-")
    for i, arm in enumerate((False, True, False, True)):
        name = f"source-vader-{i}-{arm}"
        config = s.fit(apply_overrides(s.base, {
            "data.task": "offline_vader_valence", "train.steps": 200,
            "prompt.init": "sampled_vocab", "train.out_dir": str(tmp / name)}))
        config = apply_overrides(config, {"train.eval_at_start": arm})
        t0 = time.perf_counter()
        r = s.pool.submit(config).result()
        seconds = time.perf_counter() - t0
        rows = [json.loads(line) for line in (tmp / name / "metrics.jsonl").open()]
        losses = [row["loss"] for row in rows if row.get("kind") == "train"]
        append_row(args.out, {"eval_at_start": arm, "best": r.best_score,
                              "initial": r.initial_score, "seconds": round(seconds, 1),
                              "last_losses": losses[-3:]})


if __name__ == "__main__":
    main()
