"""Backbone probe: a supervised multi-task stage on surface tasks generated from the corpus.

Issue 16's lever "a supervised multi-task stage (T5 1.0 was pretrained with one)": continue
training a built backbone (every weight) on a mixture of span corruption, prefix LM and short
instruction tasks made from the *training* corpus's sentences, so that the decoder learns to
give a short answer that only the encoder input determines. None of the tasks is a demo task
or uses a demo format or label word (the demo's labels are positive/negative, noun/verb/...,
yes/no, encyclopedia/news, same/different; these use true/false and words of the input):

    repeat: <sentence>              -> the sentence (first pieces)
    first word: <sentence>          -> its first word
    last word: <sentence>           -> its last word
    word after <w>: <sentence>      -> the word after w (w occurs once)
    contains <w>: <sentence>        -> true / false (w from the sentence or another one)
    ends in <s>: <word>             -> true / false (s: 1-3 final letters of it or another word)
    longer word: <a> , <b>          -> the longer of the two

The result is saved as a backbone folder (config, safetensors weights, vocabulary and a
`pretraining.json` whose `recipe` is the starting backbone's, plus a `surface_stage` record),
so `scripts/probe_gate.py --backbone DIR` measures the issue's gate on it.

    .venv/bin/python scripts/probe_surface_stage.py --start /tmp/spot-probe-cache/backbone-<key> \
        --steps 600 --out-dir /tmp/spot-probe-cache/surface-600 \
        --log scripts/results/surface_stage.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_WORD = re.compile(r"[A-Za-z]+")


def corpus_sentences(split: str, seed: int) -> list[list[str]]:
    """Sentences of the corpus split as lists of alphabetic words (4-20 words each)."""
    from spot.data.offline.corpus import load_corpus, sentences

    out = []
    for paragraph in load_corpus(split, seed=seed):
        for s in sentences(paragraph):
            words = _WORD.findall(s)
            if 4 <= len(words) <= 20:
                out.append(words)
    return out


KINDS = ("repeat", "first_word", "last_word", "word_after", "contains", "ends_in", "longer_word")


def surface_example(sents: list[list[str]], rng: np.random.Generator,
                    kind: int | None = None) -> tuple[str, str]:
    """One (input, target) pair of surface task `kind` (an index of KINDS; default random)."""
    words = sents[int(rng.integers(len(sents)))]
    other = sents[int(rng.integers(len(sents)))]
    kind = int(rng.integers(len(KINDS))) if kind is None else kind
    text = " ".join(words)
    if kind == 0:
        return f"repeat: {text}", " ".join(words[:8])
    if kind == 1:
        return f"first word: {text}", words[0]
    if kind == 2:
        return f"last word: {text}", words[-1]
    if kind == 3:
        once = [i for i, w in enumerate(words[:-1]) if words.count(w) == 1]
        i = once[int(rng.integers(len(once)))] if once else 0
        return f"word after {words[i]}: {text}", words[i + 1]
    if kind == 4:
        if rng.random() < 0.5:
            return f"contains {words[int(rng.integers(len(words)))]}: {text}", "true"
        absent = [w for w in other if w not in words] or ["zebra"]
        return f"contains {absent[int(rng.integers(len(absent)))]}: {text}", "false"
    if kind == 5:
        w = words[int(rng.integers(len(words)))].lower()
        donor = w if rng.random() < 0.5 else other[int(rng.integers(len(other)))].lower()
        suffix = donor[-int(rng.integers(1, min(3, len(donor)) + 1)):]
        return f"ends in {suffix}: {w}", "true" if w.endswith(suffix) else "false"
    a, b = words[int(rng.integers(len(words)))], other[int(rng.integers(len(other)))]
    if len(a) == len(b):
        b = b + "s"
    return f"longer word: {a} , {b}", a if len(a) > len(b) else b


def surface_batch(sents, vocab, rng, batch_size: int, in_len: int, tgt_len: int,
                  kind: int | None = None):
    from spot.data.offline.backbone import EOS_ID, _batch

    inputs, targets = [], []
    for _ in range(batch_size):
        i, t = surface_example(sents, rng, kind)
        inputs.append(list(vocab.encode(i))[: in_len - 1] + [EOS_ID])
        targets.append(list(vocab.encode(t))[: tgt_len - 1] + [EOS_ID])
    return _batch(inputs, targets, in_len, tgt_len)


def heldout_surface_loss(eval_step, params, sents, vocab, batches: int = 8) -> dict[str, float]:
    """Held-out loss per target token: all tasks mixed ("all") and each task alone (2 batches)."""
    out = {}
    for name, kind, n_batches in [("all", None, batches)] + [(k, i, 2) for i, k in enumerate(KINDS)]:
        rng = np.random.default_rng(12345)
        total = count = 0.0
        for _ in range(n_batches):
            nll, n = eval_step(params, surface_batch(sents, vocab, rng, 32, 64, 16, kind))
            total, count = total + float(nll), count + float(n)
        out[name] = total / count
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", required=True, help="backbone folder to continue from")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--cycle", default="surface,surface,span,prefix_lm",
                    help="objectives taken in turn, one per step: surface, copyrand (in-order "
                         "copy of 8 random pieces), span, prefix_lm")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--save-every", type=int, default=0,
                    help="also save OUT_DIR-stepN folders every N steps (gate them while it runs)")
    args = ap.parse_args()

    import jax
    from probe_copy_task import copy_batch, save_backbone_folder

    from spot.data.offline import backbone
    from spot.data.offline.corpus import load_corpus
    from spot.data.vocab import load_vocabulary
    from spot.model.api import load_t5
    from spot.train import pretrain

    start = Path(args.start)
    made = json.loads((start / "pretraining.json").read_text())
    recipe = backbone.BackboneRecipe(**made["recipe"])
    t5 = load_t5(start, "float32")
    vocab = load_vocabulary(start / "vocab.model", extra_ids=backbone.EXTRA_IDS)
    vsize = t5.config.vocab_size
    train_stream = backbone.token_stream(load_corpus("train", seed=recipe.seed), vocab)
    heldout_stream = backbone.token_stream(load_corpus("heldout", seed=recipe.seed), vocab)
    train_sents = corpus_sentences("train", recipe.seed)
    heldout_sents = corpus_sentences("heldout", recipe.seed)
    stage = dataclasses.replace(recipe, learning_rate=args.lr, warmup_steps=50)
    optimizer = pretrain._optimizer(stage, args.steps)
    params = t5.params
    opt_state = optimizer.init(params)
    train_step, eval_step = pretrain._step_fns(t5.module, optimizer)
    reference = backbone.reference_objectives(recipe)
    cycle = args.cycle.split(",")
    rng = np.random.default_rng(recipe.seed + 7)
    key = jax.random.PRNGKey(recipe.seed + 7)
    log = open(args.log, "a", encoding="utf-8")  # noqa: SIM115
    name = Path(args.out_dir).name
    t0 = time.time()

    def measure(step: int) -> None:
        rel = pretrain.encoder_reliance(eval_step, params, heldout_stream, reference, vsize, 4)
        surface = heldout_surface_loss(eval_step, params, heldout_sents, vocab)
        rec = {"name": name, "step": step, "seconds": round(time.time() - t0, 1),
               "heldout_surface_loss": surface["all"], "heldout_surface_by_task": surface,
               **{f"{o}_{k}": v for o, d in rel.items() for k, v in d.items()}}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        tasks = " ".join(f"{k}={v:.2f}" for k, v in surface.items() if k != "all")
        print(f"[{name}] step {step} {rec['seconds']:.0f}s surface {surface['all']:.3f} ({tasks}) "
              f"span nats {rec['span_nats_from_encoder']:.3f} ppl {rec['span_perplexity']:.0f}; "
              f"prefix nats {rec['prefix_lm_nats_from_encoder']:.3f}", flush=True)

    def save(out: Path, steps: int) -> None:
        report = {**made, "surface_stage": {"start": str(start), "steps": steps, "lr": args.lr,
                                            "cycle": cycle, "seconds": round(time.time() - t0, 1)}}
        save_backbone_folder(out, t5.config, params, start / "vocab.model", report)

    measure(0)
    losses: dict[str, list[float]] = {}
    for step in range(args.steps):
        objective = cycle[step % len(cycle)]
        if objective == "surface":
            batch = surface_batch(train_sents, vocab, rng, recipe.batch_size, 64, 16)
        elif objective == "copyrand":
            batch = copy_batch(rng, recipe.batch_size)
        else:
            batch = backbone.make_batch(train_stream, objective, recipe, vsize, rng)
        params, opt_state, loss = train_step(params, opt_state, batch,
                                             jax.random.fold_in(key, step))
        losses.setdefault(objective, []).append(float(loss))
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            log.write(json.dumps({"name": name, "step": step + 1, "train_loss": {
                k: float(np.mean(v)) for k, v in losses.items()}}) + "\n")
            losses = {}
            measure(step + 1)
        if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < args.steps:
            save(Path(f"{args.out_dir}-step{step + 1}"), step + 1)
    save(Path(args.out_dir), args.steps)
    log.close()


if __name__ == "__main__":
    main()
