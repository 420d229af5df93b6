"""Probe: can the backbone's architecture and training step learn to read its encoder at all?

Trains a randomly initialised T5 of the default backbone's shape with the backbone's own
train step (`pretrain._step_fns`, AdamW 3e-3) on a synthetic task that needs the encoder:
copy a random sequence of `--length` tokens (ids 3..3+alphabet) to the output. Prints, every
50 steps, the training loss and the held-out loss with each example's own input and with
another example's (the nats from the encoder, as in `spot backbone info --diagnose`). A
decoder that reads its encoder drives the own-input loss towards 0 and the gap towards
log(alphabet).

    .venv/bin/python scripts/probe_copy_task.py --steps 400
    .venv/bin/python scripts/probe_copy_task.py --steps 400 --set num_decoder_layers=2
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--length", type=int, default=16)
    ap.add_argument("--alphabet", type=int, default=500)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--embed-std", type=float, default=1.0,
                    help="std of the token embedding at init (T5's is 1.0)")
    ap.add_argument("--out", default="")
    ap.add_argument("--save", default="",
                    help="save the trained model as a backbone folder (the default vocabulary "
                         "copied in), so scripts/probe_gate.py can prompt-tune it")
    args = ap.parse_args()

    import jax

    from spot.commands.backbone import _recipe
    from spot.data.offline.backbone import model_config
    from spot.model.t5 import Transformer, init_params
    from spot.train.pretrain import _optimizer, _step_fns

    recipe = _recipe(0, tuple(args.sets))
    cfg = model_config(recipe, recipe.vocab_size)
    module = Transformer(cfg.replace(dropout_rate=0.0))
    params = init_params(cfg, 0)
    if args.embed_std != 1.0:
        params["token_embedder"]["embedding"] = (
            params["token_embedder"]["embedding"] * np.float32(args.embed_std))
    params = jax.tree_util.tree_map(jax.numpy.asarray, params)
    opt = _optimizer(recipe, args.steps)
    opt_state = opt.init(params)
    train_step, eval_step = _step_fns(module, opt)
    rng = np.random.default_rng(0)

    def batch(r, n=recipe.batch_size):
        return copy_batch(r, n, args.length, args.alphabet)

    held = [batch(np.random.default_rng(99 + i)) for i in range(4)]

    def heldout(swap: bool) -> float:
        tot = cnt = 0.0
        for b in held:
            b = dict(b)
            if swap:
                b["encoder_input_tokens"] = np.roll(b["encoder_input_tokens"], 1, axis=0)
            nll, n = eval_step(params, b)
            tot += float(nll)
            cnt += float(n)
        return tot / cnt

    t0 = time.time()
    curve = []
    losses = []
    for step in range(args.steps):
        params, opt_state, loss = train_step(params, opt_state, batch(rng),
                                             jax.random.PRNGKey(step))
        losses.append(loss)
        if (step + 1) % 50 == 0:
            own, other = heldout(False), heldout(True)
            row = {"step": step + 1, "train_loss": float(np.mean(jax.device_get(losses))),
                   "heldout_loss": own, "heldout_loss_other_input": other,
                   "nats_from_encoder": other - own, "seconds": round(time.time() - t0, 1)}
            losses = []
            curve.append(row)
            print(json.dumps(row), flush=True)
    result = {"probe": "copy", "sets": args.sets, "embed_std": args.embed_std,
              "length": args.length,
              "alphabet": args.alphabet, "log_alphabet": math.log(args.alphabet), "curve": curve}
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")
    if args.save:
        import dataclasses

        from spot.data.offline.backbone import vocabulary_path

        save_backbone_folder(Path(args.save), cfg, params, vocabulary_path(recipe),
                             {"recipe": dataclasses.asdict(recipe), "copy_probe": result})


def copy_batch(rng: np.random.Generator, batch_size: int, length: int = 8,
               alphabet: int = 500) -> dict[str, np.ndarray]:
    """In-order copy of `length` random pieces: the library's random-copy phase batch."""
    from spot.data.offline.backbone import random_copy_batch

    return random_copy_batch(rng, batch_size, length, alphabet)


def save_backbone_folder(out: Path, cfg, params, vocab_file: Path, report: dict) -> None:
    """A backbone folder the other probes read: native weights, vocabulary, pretraining.json
    (whose "recipe" `probe_gate.py` and `spot backbone info --diagnose` need)."""
    import shutil

    import jax

    from spot.fileio import atomic_write_text
    from spot.model.checkpoints import save_native

    shutil.rmtree(out, ignore_errors=True)
    save_native(out, cfg, jax.tree_util.tree_map(np.asarray, jax.device_get(params)),
                metadata={"recipe": report["recipe"]})
    shutil.copyfile(vocab_file, out / "vocab.model")
    atomic_write_text(out / "pretraining.json", json.dumps(report, indent=1))
    print(f"saved {out}", flush=True)

if __name__ == "__main__":
    main()
