"""Size the demo's target-run recipe on a development split carved from each target's
*training* split, so that no choice is made on a demo validation set.

The demo trains every target run for 70 steps at the paper's prompt-tuning rate (0.3); on
the shipped backbone that leaves the from-scratch baseline of pos_inflected and
rel_comparative within 4 points of the majority, while 300 steps reach far above it. This
probe asks which learning rate and step count learn each target from scratch, and whether
a larger rate keeps what a sibling source prompt gives. For each target it registers
`<target>_dev`: a class-balanced quarter of the training split (drawn with the probe's own
seed) becomes its validation split and the rest its training split; the demo's validation
examples are never read.

  scratch   prompt from class labels, each `--lrs` x `--steps`, each seed
  transfer  from the sibling source's prompt (trained once at the demo's source recipe on
            that source's own training split), each learning rate at the first step count

Every run is the demo's own (`spot.workflows.demo._Session.train`: shipped backbone, batch
16, prompt length 20, evaluation every 50 steps and at the end, best checkpoint). One JSON
line per run goes to `--out`.

    python scripts/probe_target_recipe.py --targets offline_pos_inflected \
        --out scripts/results/target_recipe.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIBLING = {"offline_pos_inflected": "offline_pos_word",
           "offline_rel_comparative": "offline_rel_plural",
           "offline_review_polarity": "offline_news_tone",
           "offline_title_match": "offline_same_article",
           "offline_snippet_source": "offline_text_source",
           "offline_adjective_valence": "offline_vader_valence"}


def dev_split(examples: list[dict], fraction: float, seed: int) -> tuple[list, list]:
    """(train, dev): `fraction` of each class, drawn at random, becomes dev."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_label[ex["targets"]].append(i)
    rng = np.random.default_rng(seed)
    dev: set[int] = set()
    for label in sorted(by_label):
        idx = by_label[label]
        dev.update(rng.permutation(idx)[: max(1, round(fraction * len(idx)))].tolist())
    return ([ex for i, ex in enumerate(examples) if i not in dev],
            [ex for i, ex in enumerate(examples) if i in dev])


def register_dev(task: str, fraction: float, seed: int,
                 train_per_label: int | None = None) -> tuple[str, int, int]:
    from spot.data import registry
    from spot.data.offline.suite import build_task
    from spot.data.registry import TextTaskSpec, register_text_task

    built = build_task(task, 0)
    train, dev = dev_split(built.splits["train"], fraction, seed)
    if train_per_label is not None:  # a few-shot target: the first n of each class
        kept: dict[str, int] = defaultdict(int)
        few = []
        for ex in train:
            kept[ex["targets"]] += 1
            if kept[ex["targets"]] <= train_per_label:
                few.append(ex)
        train = few
    splits = {"train": train, "validation": dev}
    name = f"{task}_dev"
    register_text_task(TextTaskSpec(
        name, family=built.family, load_split=lambda split: [dict(e) for e in splits[split]],
        label_words=registry.get(task).label_words,
        description=f"{task}: training split minus a class-balanced {fraction:.0%} (dev)",
        source="offline", num_examples={"train": len(train), "validation": len(dev)}))
    return name, len(train), len(dev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--targets", nargs="+", default=list(SIBLING))
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    ap.add_argument("--steps", type=int, nargs="+", default=[70])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--dev-fraction", type=float, default=0.25)
    ap.add_argument("--dev-seed", type=int, default=1234)
    ap.add_argument("--no-transfer", action="store_true")
    ap.add_argument("--train-per-label", type=int, default=None,
                    help="keep only this many training examples of each class (few-shot)")
    ap.add_argument("--prompt-length", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for the target runs only (e.g. data.batch_size=8)")
    args = ap.parse_args()

    from scripts._demo_session import append_row, demo_session
    from spot.data import registry

    s, cfg, _ = demo_session("spot-probe-target-")
    extra = {} if args.prompt_length is None else {"prompt.length": args.prompt_length}
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}

    def run(arm: str, target: str, task: str, lr: float, steps: int, seed: int, init: dict,
            sizes: tuple[int, int]) -> None:
        t0 = time.perf_counter()
        tag = "".join(f"-{k}{v}" for k, v in overrides.items())
        r = s.train(f"{arm}-{task}-lr{lr}-n{steps}{tag}", {
            "data.task": task, "train.steps": steps, "optimizer.learning_rate": lr,
            **init, **extra, **overrides}, seed)
        row = {"arm": arm, "target": target, "lr": lr, "steps": steps, "seed": seed,
               "dev_best": r.best_score, "best_step": r.best_step,
               "majority": 100.0 / len(registry.get(target).label_words),
               "train_n": sizes[0], "dev_n": sizes[1], "dev_seed": args.dev_seed,
               "prompt_length": args.prompt_length or cfg.prompt_length,
               "seconds": round(time.perf_counter() - t0, 1), **overrides}
        if init.get("prompt.init") == "file":
            row["source"] = SIBLING[target]
        append_row(args.out, row)

    scratch = {"prompt.init": "class_labels"}
    for target in args.targets:
        task, n_train, n_dev = register_dev(target, args.dev_fraction, args.dev_seed,
                                             args.train_per_label)
        for steps in args.steps:
            for lr in args.lrs:
                for seed in args.seeds:
                    run("scratch", target, task, lr, steps, seed, scratch, (n_train, n_dev))
        if args.no_transfer:
            continue
        src = s.train(f"source-{SIBLING[target]}", {
            "data.task": SIBLING[target], "train.steps": cfg.source_steps, **scratch, **extra}, 0)
        init = {"prompt.init": "file", "prompt.init_path": str(src.prompt_paths["best"])}
        for lr in args.lrs:
            for seed in args.seeds:
                run("transfer", target, task, lr, args.steps[0], seed, init, (n_train, n_dev))


if __name__ == "__main__":
    main()
