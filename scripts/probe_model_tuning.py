"""Sanity probe: can model tuning (every weight trainable) learn an offline suite task?

Trains the embedded backbone (or a randomly initialised model of the same shape) on one task
with `spot.train.run.train` (the same code path as `spot train-target --mode model`), after
printing one training batch decoded back to text and the label prior, and writes one JSON line
with the final training loss and the best validation accuracy.

    .venv/bin/python scripts/probe_model_tuning.py --task offline_rel_plural --steps 300
    .venv/bin/python scripts/probe_model_tuning.py --task offline_rel_plural --steps 300 --random
    .venv/bin/python scripts/probe_model_tuning.py --task offline_pos_word --backbone DIR

Options: --lr (model-tuning learning rate, default 1e-3 as `--mode model`), --batch-size 32,
--eval-every 100, --max-eval 0 (whole validation split), --out results file (JSON lines).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def label_prior_loss(task: str, vocab, target_length: int = 8) -> dict:
    """Entropy (nats) of the train split's label distribution per target token, counting EOS
    the way the training loss does (every non-pad target token weighs the same)."""
    from spot.data import pipeline

    store = pipeline.token_store(task, "train", vocab)
    import numpy as np

    lens = np.diff(store.tg_off)
    labels = Counter(tuple(store.targets[store.tg_off[i]:store.tg_off[i + 1]].tolist())
                     for i in range(len(store)))
    n = sum(labels.values())
    entropy = -sum(c / n * math.log(c / n) for c in labels.values())
    # The best a model that ignores its input can do: the label prior on the first pieces;
    # the rest of the label and the EOS are then determined (zero loss).
    tokens_per_target = float(np.mean(np.minimum(lens, target_length - 1) + 1))
    return {"label_entropy_nats": entropy, "tokens_per_target": tokens_per_target,
            "label_prior_loss_per_token": entropy / tokens_per_target,
            "majority": max(labels.values()) / n, "labels": len(labels)}


def show_batch(task: str, vocab, input_length: int, target_length: int, n: int = 4) -> None:
    from spot.data import pipeline

    batch = next(pipeline.train_batches(task, vocab=vocab, batch_size=n, input_length=input_length,
                                        target_length=target_length, seed=0))
    for i in range(n):
        enc = batch["encoder_input_tokens"][i]
        tgt = batch["decoder_target_tokens"][i]
        print(f"  enc {enc[enc > 0].tolist()} -> {vocab.decode(enc[enc > 1].tolist())!r}")
        print(f"  tgt {tgt[tgt > 0].tolist()} -> {vocab.decode(tgt[tgt > 1].tolist())!r}; "
              f"dec_in {batch['decoder_input_tokens'][i][:4].tolist()} weights "
              f"{batch['decoder_loss_weights'][i].tolist()}")


def run(task: str, *, steps: int, mode: str = "model", random: bool = False, backbone: str = "",
        lr: float = 1e-3, prompt_lr: float = 0.3, prompt_length: int = 20, batch_size: int = 32,
        eval_every: int = 100, max_eval: int = 0, seed: int = 0) -> dict:
    """One training run; returns the curve, the best validation score and the label prior."""
    from spot.config import RunConfig, apply_overrides
    from spot.data.offline.backbone import backbone_path
    from spot.data.pipeline import fitted_input_length
    from spot.data.vocab import load_vocabulary
    from spot.model.api import load_t5, random_t5
    from spot.train.run import train

    if random and not backbone:
        # The default recipe's shape and vocabulary, no pretraining (needs no built backbone).
        import sentencepiece as spm

        from spot.data.offline.backbone import BackboneRecipe, model_config
        from spot.data.offline.vocab import default_vocabulary_path

        path = default_vocabulary_path(seed=0)
        vocab = load_vocabulary(path)
        sp_size = spm.SentencePieceProcessor(model_file=str(path)).get_piece_size()
        t5 = random_t5(model_config(BackboneRecipe(), sp_size), seed=0)
    else:
        path = Path(backbone) if backbone else backbone_path()
        vocab = load_vocabulary(path / "vocab.model")
        t5 = load_t5(path, "float32")
        if random:
            t5 = random_t5(t5.config, seed=0)
    input_length = fitted_input_length(task, vocab, 64)
    target_length = 8
    prior = label_prior_loss(task, vocab, target_length)
    print(f"{task}: input length {input_length}; label prior {prior}")
    show_batch(task, vocab, input_length, target_length)
    lr = lr if mode == "model" else prompt_lr
    with tempfile.TemporaryDirectory() as tmp:
        cfg = apply_overrides(RunConfig(), {
            "model.name": "embedded", "model.dtype": "float32", "model.param_dtype": "float32",
            "data.task": task, "data.batch_size": batch_size,
            "data.input_length": input_length, "data.target_length": target_length,
            "data.max_eval_examples": max_eval, "data.eval_batch_size": 100,
            "prompt.length": prompt_length, "prompt.init": "sampled_vocab",
            "optimizer.learning_rate": lr, "optimizer.factored": mode == "model",
            "train.mode": mode, "train.steps": steps,
            "train.eval_every": min(eval_every, steps),
            "train.checkpoint_every": steps, "train.embedding_step": 1,
            "train.log_every": 25, "train.seed": seed, "train.out_dir": tmp,
            "train.progress": False})
        t0 = time.time()
        result = train(cfg, t5=t5, vocab=vocab, log=lambda s: None)
        rows = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], round(r["cross_entropy"], 4)) for r in rows if r["kind"] == "train"]
    evals = [(r["step"], r["score"]) for r in rows if r["kind"] == "eval"]
    return {"task": task, "mode": mode, "random_init": random, "steps": steps, "seed": seed,
            "lr": lr, "backbone": str(path), "seconds": round(time.time() - t0, 1),
            "train_loss_curve": losses, "eval_curve": evals, "best_score": result.best_score,
            "best_step": result.best_step, **prior}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="offline_rel_plural")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--random", action="store_true", help="random init of the same shape")
    ap.add_argument("--backbone", default="", help="backbone folder (default: the cached one)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--max-eval", type=int, default=0)
    ap.add_argument("--mode", default="model", choices=("model", "prompt"))
    ap.add_argument("--prompt-length", type=int, default=20)
    ap.add_argument("--prompt-lr", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0, help="train.seed (prompt init and batches)")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    out = run(args.task, steps=args.steps, mode=args.mode, random=args.random,
              backbone=args.backbone, lr=args.lr, prompt_lr=args.prompt_lr,
              prompt_length=args.prompt_length, batch_size=args.batch_size,
              eval_every=args.eval_every, max_eval=args.max_eval, seed=args.seed)
    print(json.dumps(out))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
