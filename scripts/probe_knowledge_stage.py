"""Probe: a multi-task stage that teaches the source tasks' knowledge but not their formats.

Section 11 of docs/offline_suite.md found that the shipped backbone does every source task by
itself, in the task's own format (no prompt: the stage's ceilings), so a tuned source prompt
holds little of its task and transfer has little to carry. This probe builds a backbone whose
stage model-tunes the same training examples rewritten as yes/no questions with other words
("word valence: serene" -> "positive" becomes "is serene good ?" -> "yes"; a part of speech
becomes "is W a noun ?" about the true class for half the examples and another class for the
rest), then checks on the demo's own tasks, unchanged:

  no prompt     the bare backbone (should be near the majority: the formats are new)
  untrained     the source's sampled-vocabulary prompt / the target's class-label prompt
  tuned         the demo's source run (200 steps) and target run from scratch (300 steps)
  sibling       each target from its first sibling source's tuned prompt (300 steps)

Everything builds in a private cache (`--cache`, default /tmp/spot-probe-knowledge; the user's
cache and the shipped backbone are untouched), with the shipped vocabulary copied in. One JSON
line per measurement goes to `--out`.

    python scripts/probe_knowledge_stage.py --stage-steps 1500 \
        --out scripts/results/knowledge_stage.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

POS = ("noun", "verb", "adjective", "adverb")
SIBLING = {"offline_review_polarity": "offline_news_tone",
           "offline_pos_inflected": "offline_pos_word",
           "offline_rel_comparative": "offline_rel_plural",
           "offline_snippet_source": "offline_text_source"}


def _after(text: str, prefix: str) -> str:
    assert text.startswith(prefix), (text, prefix)
    return text[len(prefix):].strip()


def rewrite(task: str, i: int, ex: dict) -> dict:
    """One source example as a yes/no question in words the demo's formats do not use."""
    x, y = ex["inputs"], ex["targets"]
    if task == "offline_vader_valence":
        q, yes = f"is {_after(x, 'word valence:')} good ?", y == "positive"
    elif task == "offline_news_tone":
        q, yes = f"good news ? {_after(x, 'sentence valence:')}", y == "positive"
    elif task in ("offline_pos_word", "offline_pos_in_context"):
        asked = y if i % 2 == 0 else POS[(POS.index(y) + 1 + (i // 2) % 3) % 4]
        body = _after(x, "part of speech:")
        article = "an" if asked[0] in "aeiou" else "a"
        if " | context: " in body:
            word, context = body.split(" | context: ", 1)
            q = f"is {word} {article} {asked} here ? {context}"
        else:
            q = f"is {body} {article} {asked} ?"
        yes = asked == y
    elif task in ("offline_rel_plural", "offline_rel_past_tense"):
        prefix = "relation plural:" if task == "offline_rel_plural" else "relation past tense:"
        base, cand = (s.strip() for s in _after(x, prefix).split("->"))
        kind = "plural" if task == "offline_rel_plural" else "past"
        q, yes = f"is {cand} the {kind} of {base} ?", y == "yes"
    elif task == "offline_text_source":
        q, yes = f"from wikipedia ? {_after(x, 'text source:')}", y == "encyclopedia"
    elif task == "offline_word_source":
        q, yes = f"is {_after(x, 'word source:')} a wikipedia word ?", y == "encyclopedia"
    else:
        raise ValueError(task)
    return {"inputs": q, "targets": "yes" if yes else "no"}


def rewrite_own_labels(task: str, i: int, ex: dict) -> dict:
    """One source example as a question in words the demo's formats do not use, answered
    with the task's own label word ("word valence: serene" -> "positive" becomes "how does
    serene feel ?" -> "positive"): the stage binds the knowledge to the demo's label words
    but not to the demo's input formats."""
    x, y = ex["inputs"], ex["targets"]
    if task == "offline_vader_valence":
        q = f"how does {_after(x, 'word valence:')} feel ?"
    elif task == "offline_news_tone":
        q = f"how does this news feel ? {_after(x, 'sentence valence:')}"
    elif task in ("offline_pos_word", "offline_pos_in_context"):
        body = _after(x, "part of speech:")
        if " | context: " in body:
            word, context = body.split(" | context: ", 1)
            q = f"what kind of word is {word} here ? {context}"
        else:
            q = f"what kind of word is {body} ?"
    elif task in ("offline_rel_plural", "offline_rel_past_tense"):
        prefix = "relation plural:" if task == "offline_rel_plural" else "relation past tense:"
        base, cand = (s.strip() for s in _after(x, prefix).split("->"))
        kind = "plural" if task == "offline_rel_plural" else "past"
        q = f"is {cand} the {kind} of {base} ?"
    elif task == "offline_text_source":
        q = f"where is this from ? {_after(x, 'text source:')}"
    elif task == "offline_word_source":
        q = f"where is the word {_after(x, 'word source:')} found ?"
    else:
        raise ValueError(task)
    return {"inputs": q, "targets": y}


def register_knowledge_tasks(labels: str = "yesno") -> str:
    """The stage's mixture: every source task rewritten by `rewrite` (labels "yesno") or by
    `rewrite_own_labels` (labels "own")."""
    from spot.data.offline.suite import SOURCE_TASKS, build_task
    from spot.data.registry import TextTaskSpec, register_mixture, register_text_task

    names = []
    for task in SOURCE_TASKS:
        built = build_task(task, 0)
        fn = rewrite if labels == "yesno" else rewrite_own_labels
        splits = {split: [fn(task, i, ex) for i, ex in enumerate(built.splits[split])]
                  for split in ("train", "validation")}
        name = f"probe_know_{labels}_{task.removeprefix('offline_')}"
        words = ("yes", "no") if labels == "yesno" else tuple(built.label_words)
        register_text_task(TextTaskSpec(
            name, family="knowledge", load_split=lambda split, s=splits: [dict(e) for e in s[split]],
            label_words=words, description=f"{task} as questions ({labels} labels)",
            source="offline", num_examples={k: len(v) for k, v in splits.items()}))
        names.append(name)
    mixture = "probe_knowledge" if labels == "yesno" else f"probe_knowledge_{labels}"
    register_mixture(mixture, names)
    return mixture


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--stage-steps", type=int, default=1500)
    ap.add_argument("--cache", default="/tmp/spot-probe-knowledge")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="prompt-tuning seeds: the sources and the target runs are trained at "
                         "each (the bare backbone is scored once; it does not depend on a seed)")
    ap.add_argument("--labels", choices=("yesno", "own"), default="yesno",
                    help="the stage's answers: yes/no questions (the first try) or the demo "
                         "task's own label words")
    args = ap.parse_args()

    cache = Path(args.cache)
    os.environ["SPOT_CACHE"] = str(cache)
    from spot.data.offline.vocab import default_vocabulary_path

    vocab_dir = default_vocabulary_path()
    if not (cache / vocab_dir.parent.name).exists():
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copytree(vocab_dir.parent, cache / vocab_dir.parent.name)

    from scripts._demo_session import append_row, score_as_it_stands
    from spot.data import registry
    from spot.data.offline.backbone import EMBEDDED_RECIPE
    from spot.data.offline.suite import SOURCE_TASKS, TARGET_TASKS
    from spot.train.pretrain import build_backbone
    from spot.workflows import demo as demo_mod
    from spot.workflows.pool import ModelSource, TrainPool

    mixture = register_knowledge_tasks(args.labels)
    recipe = dataclasses.replace(EMBEDDED_RECIPE, multitask_mixture=mixture,
                                 multitask_steps=args.stage_steps)
    t0 = time.perf_counter()
    path = build_backbone(recipe, log=lambda m: print(m, flush=True), progress=False)
    append_row(args.out, {"what": "build", "stage_steps": args.stage_steps, "labels": args.labels, "path": str(path),
                          "seconds": round(time.perf_counter() - t0, 1)})

    demo_mod.enable_compilation_cache()
    out = cache / "runs-probe"
    cfg = demo_mod.DemoConfig(out=str(out), backbone=recipe)
    source = ModelSource(path=str(path))
    pool = TrainPool(1, source=source)
    s = demo_mod._Session(demo=cfg, out=out, vocab=source.vocabulary(), log=lambda m: None,
                          pool=pool)

    def row(task: str, arm: str, score: float, seed: int, **extra) -> None:
        append_row(args.out, {"what": arm, "task": task, "score": score,
                              "majority": 100.0 / len(registry.get(task).label_words),
                              "stage_steps": args.stage_steps, "labels": args.labels, "seed": seed,
                              **extra})

    for task in [*SOURCE_TASKS, *TARGET_TASKS]:
        bare = score_as_it_stands(s, f"bare-{task}", {"data.task": task, "train.mode": "model"},
                                  args.seeds[0])
        row(task, "no_prompt", bare, args.seeds[0])
    for seed in args.seeds:
        prompts = {}
        for task in SOURCE_TASKS:
            r = s.train(f"source-{task}", {"data.task": task, "train.steps": cfg.source_steps,
                                           "prompt.init": "sampled_vocab"}, seed)
            prompts[task] = r.prompt_paths["best"]
            row(task, "tuned_source", r.best_score, seed, untrained=r.initial_score,
                seconds=round(r.seconds, 1))
        for target in TARGET_TASKS:
            r = s.train(f"scratch-{target}", {"data.task": target,
                                              "train.steps": cfg.target_steps,
                                              "prompt.init": "class_labels"}, seed)
            row(target, "from_scratch", r.best_score, seed, untrained=r.initial_score,
                seconds=round(r.seconds, 1))
            src = SIBLING[target]
            r = s.train(f"sibling-{target}", {"data.task": target,
                                              "train.steps": cfg.target_steps,
                                              "prompt.init": "file",
                                              "prompt.init_path": str(prompts[src])}, seed)
            row(target, "from_sibling", r.best_score, seed, source=src,
                seconds=round(r.seconds, 1))

if __name__ == "__main__":
    main()
