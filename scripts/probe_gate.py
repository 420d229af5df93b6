"""The issue's first gate on one backbone folder: (1) held-out nats from the encoder on span
corruption >= 1.0 per target token (`pretrain.diagnose`, 8 batches, the recipe's objectives
and the default recipe's); (2) a 100-step prompt-tuning run on a source task whose training
loss falls well below the label-prior loss (entropy of the labels per target token, EOS
counted as the loss counts it), with validation accuracy against the majority baseline.

    .venv/bin/python scripts/probe_gate.py --backbone /tmp/spot-probe-cache/backbone-<key> \
        --out scripts/results/gate.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--task", default="offline_rel_plural")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    from probe_model_tuning import run

    from spot.data.offline import backbone
    from spot.data.offline.corpus import load_corpus
    from spot.data.vocab import load_vocabulary
    from spot.model.api import load_t5
    from spot.train import pretrain

    path = Path(args.backbone)
    made = json.loads((path / "pretraining.json").read_text())
    recipe = backbone.BackboneRecipe(**made["recipe"])
    own = pretrain.diagnose(path)["heldout"]
    t5 = load_t5(path, "float32")
    vocab = load_vocabulary(path / "vocab.model", extra_ids=backbone.EXTRA_IDS)
    stream = backbone.token_stream(load_corpus("heldout", seed=recipe.seed), vocab)
    _, eval_step = pretrain._step_fns(t5.module, None)
    reference = pretrain.encoder_reliance(eval_step, t5.params, stream,
                                          backbone.reference_objectives(recipe),
                                          t5.config.vocab_size, 8)
    pt = run(args.task, steps=args.steps, mode="prompt", backbone=str(path), eval_every=50)
    final_loss = pt["train_loss_curve"][-1][1]
    result = {"backbone": str(path), "recipe": made["recipe"], "diagnosis_own": own,
              "diagnosis_reference": reference,
              "gate_nats": reference["span"]["nats_from_encoder"] >= 1.0,
              "prompt_tuning": pt, "final_train_loss": final_loss,
              "label_prior_loss": pt["label_prior_loss_per_token"],
              "gate_prompt": final_loss < 0.5 * pt["label_prior_loss_per_token"],
              "best_accuracy": pt["best_score"], "majority": 100 * pt["majority"]}
    print(json.dumps({k: v for k, v in result.items() if k != "prompt_tuning"}, indent=1))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
