"""Probe: candidate replacements for `offline_same_article`, the text family's second source.

same_article (two Wikipedia sentences: same article or not) is learned by no recipe on the
demo's held-out articles (the backbone's model-tuned stage reaches 52.5, a prompt 52-54), so
it gives the text family one source that learns nothing. This probe builds each candidate from
the suite's own corpus split (training documents for train, held-out documents for
validation, as every prose task), counts how many examples each split can give, and scores a
word-count naive Bayes classifier (unigrams and bigrams, add-one smoothing) trained on the
train pool and scored on the validation pool: a surface baseline, the same for every task, to
compare a candidate with text_source (the stage reaches 79 there) and same_article (52.5).
It reads no demo validation set of another task and no target.

    .venv/bin/python scripts/probe_text_sources.py --out scripts/results/text_source_candidates.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def feats(text: str) -> list[str]:
    w = text.lower().split()
    if len(w) == 1:  # a single word: its character trigrams (with boundaries)
        x = f"^{w[0]}$"
        return [x[i:i + 3] for i in range(len(x) - 2)]
    return w + [a + " " + b for a, b in zip(w, w[1:])]


def naive_bayes(train: list[tuple[str, str]], val: list[tuple[str, str]]) -> float:
    labels = sorted({y for _, y in train})
    counts = {y: Counter() for y in labels}
    prior = Counter(y for _, y in train)
    for x, y in train:
        counts[y].update(feats(x))
    vocab = set().union(*counts.values())
    tot = {y: sum(c.values()) for y, c in counts.items()}
    right = 0
    for x, y in val:
        def score(lab):
            return math.log(prior[lab]) + sum(
                math.log((counts[lab][f] + 1) / (tot[lab] + len(vocab))) for f in feats(x))
        right += max(labels, key=score) == y
    return 100.0 * right / len(val)


def balanced(pools: dict[str, list[str]], per: int, rng) -> list[tuple[str, str]]:
    out = []
    for y, items in pools.items():
        items = sorted(set(items))
        idx = rng.permutation(len(items))[:per]
        out += [(items[i], y) for i in idx]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from spot.data.offline import suite

    src = suite._source_of
    rows = {}
    for split in ("train", "validation"):
        docs = suite._sentences(args.seed, split)
        pools = {
            "text_source": {"encyclopedia": [], "news": []},
            "passage_source": {"encyclopedia": [], "news": []},
            "snippet_source": {"encyclopedia": [], "news": []},
        }
        rng = np.random.default_rng(args.seed)
        for d, ss in docs:
            lab = src(d)
            for s in ss:
                if suite._fits(s, 6, 28):
                    pools["text_source"][lab].append(s)
                if (x := suite._snippet(s, rng)) is not None:
                    pools["snippet_source"][lab].append(x)
            # two consecutive sentences of one document, 5-14 words and 80 characters each
            for a, b in zip(ss, ss[1:]):
                if suite._fits(a, 5, 14, 80) and suite._fits(b, 5, 14, 80):
                    pools["passage_source"][lab].append(f"{a} {b}")
        rows[split] = pools
    # word_source: the suite's own task (`suite.word_source_pools`, split by word)
    built = suite.build_task("offline_word_source", args.seed).splits
    for split in rows:
        rows[split]["word_source"] = {
            y: [ex["inputs"].removeprefix("word source: ") for ex in built[split]
                if ex["targets"] == y] for y in ("encyclopedia", "news")}
    report = {}
    for task in rows["train"]:
        sizes = {split: {y: len(set(v)) for y, v in rows[split][task].items()}
                 for split in rows}
        per_tr = min(1000, *sizes["train"].values())
        per_va = min(200, *sizes["validation"].values())
        rng = np.random.default_rng(1)
        tr = balanced(rows["train"][task], per_tr, rng)
        va = balanced(rows["validation"][task], per_va, rng)
        report[task] = {"pool_sizes": sizes, "train_per_label": per_tr,
                        "validation_per_label": per_va, "naive_bayes_accuracy": naive_bayes(tr, va)}
        print(task, json.dumps(report[task]))
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
