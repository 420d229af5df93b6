"""Probe candidate replacements for the text family's target (title_match is never learned).

Candidates are built here from the corpus's *training* documents only, split by document into
a probe-train and a probe-dev part (so no demo validation set, and no held-out document, is
read); each is then prompt-tuned with the demo's own runs (shipped backbone, prompt 20, batch
16, the demo's target steps) from class labels and from the prompts of the text family's two
sources (text_source, same_article) and of one unrelated source (rel_plural), trained at the
demo's source recipe:

  snippet_source  `snippet source: <4-8 consecutive words of a sentence>` -> encyclopedia / news
                  (text_source's skill on shorter evidence, in a format of its own)
  source_pair     `same source: <a> | <b>` -> same / different (both sentences from the same
                  kind of text or not: text_source's skill in same_article's format)

One JSON line per run goes to `--out`.

    python scripts/probe_text_target.py --out scripts/results/text_target.jsonl
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SOURCES = ["offline_text_source", "offline_same_article", "offline_rel_plural"]


def _documents(seed: int):
    from spot.data.offline import suite

    return suite._sentences(seed, "train")


def _split_docs(docs, rng):
    order = rng.permutation(len(docs))
    dev = set(order[: len(docs) // 4].tolist())
    return ([d for i, d in enumerate(docs) if i not in dev],
            [d for i, d in enumerate(docs) if i in dev])


def _label(doc) -> str:
    return "encyclopedia" if doc.source == "wikipedia" else "news"


def snippet_source(docs, n_per_label: int, rng) -> list[dict]:
    pools: dict[str, list[str]] = {"encyclopedia": [], "news": []}
    for doc, sents in docs:
        for s in sents:
            words = s.split()
            if len(words) < 6:
                continue
            k = int(rng.integers(4, 9))
            start = int(rng.integers(0, max(1, len(words) - k + 1)))
            pools[_label(doc)].append(" ".join(words[start:start + k]))
    out = []
    for label, items in pools.items():
        items = sorted(set(items))
        pick = rng.permutation(len(items))[:n_per_label]
        out += [{"inputs": f"snippet source: {items[i]}", "targets": label} for i in pick]
    return [out[i] for i in rng.permutation(len(out))]


def source_pair(docs, n_per_label: int, rng) -> list[dict]:
    from spot.data.offline.suite import _fits

    pools: dict[str, list[str]] = {"encyclopedia": [], "news": []}
    for doc, sents in docs:
        pools[_label(doc)] += [s for s in sents if _fits(s, 5, 14, 80)]
    for k in pools:
        pools[k] = sorted(set(pools[k]))
    out = []

    def draw(label):
        items = pools[label]
        return items[int(rng.integers(len(items)))]

    for _ in range(n_per_label):
        kind = ["encyclopedia", "news"][int(rng.integers(2))]
        out.append({"inputs": f"same source: {draw(kind)} | {draw(kind)}", "targets": "same"})
        a, b = (("encyclopedia", "news") if rng.random() < 0.5 else ("news", "encyclopedia"))
        out.append({"inputs": f"same source: {draw(a)} | {draw(b)}", "targets": "different"})
    return [out[i] for i in rng.permutation(len(out))]


CANDIDATES = {"snippet_source": (snippet_source, ("encyclopedia", "news")),
              "source_pair": (source_pair, ("same", "different"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    ap.add_argument("--train-per-label", type=int, default=120)
    ap.add_argument("--dev-per-label", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=None, help="default: the demo's target steps")
    ap.add_argument("--probe-seed", type=int, default=1234)
    args = ap.parse_args()

    from scripts._demo_session import append_row, demo_session
    from spot.data.registry import TextTaskSpec, register_text_task

    s, cfg, _ = demo_session("spot-probe-text-")
    steps = args.steps or cfg.target_steps

    prompts = {}
    for src in SOURCES:
        r = s.train(f"source-{src}", {"data.task": src, "train.steps": cfg.source_steps,
                                      "prompt.init": "class_labels"}, 0)
        prompts[src] = str(r.prompt_paths["best"])

    for name in args.candidates:
        build, labels = CANDIDATES[name]
        rng = np.random.default_rng([args.probe_seed, len(name)])
        train_docs, dev_docs = _split_docs(_documents(0), rng)
        splits = {"train": build(train_docs, args.train_per_label, rng),
                  "validation": build(dev_docs, args.dev_per_label, rng)}
        task = f"probe_{name}"
        register_text_task(TextTaskSpec(
            task, family="text", load_split=lambda split, sp=splits: [dict(e) for e in sp[split]],
            label_words=labels, description=f"probe candidate {name}", source="offline",
            num_examples={k: len(v) for k, v in splits.items()}))
        print(name, splits["train"][:3], flush=True)
        for init in ["none", *SOURCES]:
            for seed in args.seeds:
                over = ({"prompt.init": "class_labels"} if init == "none" else
                        {"prompt.init": "file", "prompt.init_path": prompts[init]})
                t0 = time.perf_counter()
                r = s.train(f"{name}-from-{init}", {"data.task": task, "train.steps": steps,
                                                    **over}, seed)
                row = {"candidate": name, "init": init, "seed": seed, "steps": steps,
                       "dev_best": r.best_score, "best_step": r.best_step,
                       "majority": 100.0 / len(labels),
                       "train_n": len(splits["train"]), "dev_n": len(splits["validation"]),
                       "seconds": round(time.perf_counter() - t0, 1)}
                append_row(args.out, row)


if __name__ == "__main__":
    main()
