"""Backbone probe: a supervised multi-task stage on the demo's *source* tasks, then a frozen model.

Issue 16's lever "put the knowledge in the backbone, leave the task to the prompt": model-tune
(every weight, `spot.train.run.train` in model mode: Adafactor lr 1e-3) a backbone folder on
the `offline_sources` mixture (examples-proportional; the demo's targets and their formats
are not in it), keep the run folder, and print each source's validation accuracy along the way
(the upper bound a prompt on the frozen result can elicit). The tuned model is
`OUT/model` (with its vocabulary and the start's `pretraining.json` plus a
`multitask_stage` record), which `scripts/probe_model_tuning.py --mode prompt
--backbone OUT/model` then prompt-tunes on a target.

    .venv/bin/python scripts/probe_multitask_stage.py --backbone /tmp/spot-probe-cache/copy8-mix \
        --steps 1500 --out-dir /tmp/spot-probe-cache/mt-copy8 --log scripts/results/multitask_stage.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--mixture", default="offline_sources")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--max-eval", type=int, default=200)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()

    from spot.config import RunConfig, apply_overrides
    from spot.data.pipeline import fitted_input_length
    from spot.data.vocab import load_vocabulary
    from spot.fileio import atomic_write_text
    from spot.model.api import load_t5
    from spot.train.run import train

    path = Path(args.backbone)
    vocab = load_vocabulary(path / "vocab.model")
    t5 = load_t5(path, "float32")
    input_length = fitted_input_length(args.mixture, vocab, 64)
    cfg = apply_overrides(RunConfig(), {
        "model.name": "embedded", "model.dtype": "float32", "model.param_dtype": "float32",
        "data.mixture": args.mixture, "data.task": "", "data.batch_size": args.batch_size,
        "data.input_length": input_length, "data.target_length": 8,
        "data.max_eval_examples": args.max_eval, "data.eval_batch_size": 100,
        "optimizer.learning_rate": args.lr, "optimizer.factored": True,
        "train.mode": "model", "train.steps": args.steps, "train.eval_every": args.eval_every,
        "train.checkpoint_every": args.steps, "train.log_every": 50, "train.seed": 0,
        "train.out_dir": args.out_dir, "train.progress": False})
    t0 = time.time()
    result = train(cfg, t5=t5, vocab=vocab, log=lambda s: print(s, flush=True))
    rows = [json.loads(line) for line in
            (Path(args.out_dir) / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["kind"] == "eval"]
    losses = [(r["step"], round(r["cross_entropy"], 4)) for r in rows if r["kind"] == "train"]
    record = {"backbone": str(path), "mixture": args.mixture, "steps": args.steps, "lr": args.lr,
              "input_length": input_length, "seconds": round(time.time() - t0, 1),
              "model": str(Path(args.out_dir) / "model"), "train_loss_curve": losses,
              "eval": [{k: v for k, v in r.items() if k.endswith("score") or k == "step"}
                       for r in evals], "best_score": result.best_score}
    for r in record["eval"]:
        print(json.dumps(r))
    start = path / "pretraining.json"
    if start.is_file():  # so spot backbone info --diagnose and probe_gate.py read OUT/model
        made = json.loads(start.read_text())
        made["multitask_stage"] = {k: v for k, v in record.items() if k != "train_loss_curve"}
        atomic_write_text(Path(args.out_dir) / "model" / "pretraining.json",
                          json.dumps(made, indent=1))
    with open(args.log, "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
