"""The embedded default end to end: SPoT on the offline suite with the project's own backbone.

`spot demo --out DIR` (the README's first command) runs, on a fresh machine with no network:
  1. the backbone (pretrained once, then cached);
  2. source prompts on every source task of the offline suite (task embedding = the prompt at
     an early fixed step, source prompt = best validation checkpoint), stored in a library;
  3. a prompt on the mixture of all sources (generic SPoT);
  4. for each target task: prompt tuning from class labels (baseline), from the mixture prompt
     (generic SPoT), from every source prompt (the transfer grid, which also gives the oracle),
     and targeted SPoT from the sources retrieved by task-embedding similarity (best of top-k
     and the top-k weighted average);
  5. retrieval quality of every similarity metric against the measured transfers, the results
     CSV, the summary and the three figures.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from spot.fileio import atomic_open, atomic_write_text


def _default_recipe():
    from spot.data.offline.backbone import BackboneRecipe

    return BackboneRecipe()


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    out: str = "demo_out"
    backbone: Any = dataclasses.field(default_factory=_default_recipe)
    # Sized so the study fits its 15-minute budget on 2 CPU cores (docs/offline_suite.md).
    source_steps: int = 200
    target_steps: int = 70
    embedding_step: int = 50
    eval_every: int = 50
    prompt_length: int = 20
    batch_size: int = 16
    input_length: int = 64
    target_length: int = 8
    max_eval_examples: int = 200
    k: int = 3
    metric: str = "per_token_cosine"
    seed: int = 0

    def __post_init__(self) -> None:
        # Checked before the backbone build (minutes) starts, so a bad flag fails at once.
        from spot.errors import ConfigError

        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in ("int", int) and (isinstance(value, bool) or not isinstance(value, int)
                                               or value < (0 if field.name == "seed" else 1)):
                least = "0 or more" if field.name == "seed" else "positive"
                raise ConfigError(f"demo {field.name} must be {least}, got {value!r}")


def fitted_input_length(name: str, vocab: Any, cap: int, multiple: int = 8) -> int:
    """The shortest input length (a multiple of 8, at most `cap`) that holds every train and
    validation input of a task or mixture with its EOS. Word tasks need about 16 tokens,
    sentence tasks about 48: padding them all to `cap` would spend most compute on padding."""
    from spot.data import pipeline, registry

    longest = 1
    for member in registry.get(name).members:
        for split in ("train", "validation"):
            store = pipeline.token_store(member, split, vocab)
            if len(store):
                longest = max(longest, int(np.diff(store.in_off).max()) + 1)
    return int(min(cap, -(-longest // multiple) * multiple))


def _run_config(demo: DemoConfig, *, out_dir: Path, task: str = "", mixture: str = "",
                steps: int, init: str, init_path: str = "", input_length: int = 0):
    from spot.config import RunConfig, apply_overrides

    overrides = {
        "model.name": "embedded", "model.dtype": "float32", "model.param_dtype": "float32",
        "data.task": task, "data.mixture": mixture, "data.batch_size": demo.batch_size,
        "data.input_length": input_length or demo.input_length, "data.target_length": demo.target_length,
        "data.max_eval_examples": demo.max_eval_examples, "data.eval_batch_size": 100,
        "prompt.length": demo.prompt_length, "prompt.init": init, "prompt.init_path": init_path,
        "train.steps": steps, "train.eval_every": min(demo.eval_every, steps),
        "train.checkpoint_every": steps, "train.embedding_step": demo.embedding_step,
        "train.log_every": 25, "train.seed": demo.seed, "train.out_dir": str(out_dir),
        "train.progress": False,
    }
    return apply_overrides(RunConfig(), overrides)


def enable_compilation_cache() -> None:
    """Keep compiled XLA programs on disk (under the user cache) unless the user chose a
    cache already: the demo's runs share a handful of shapes, so every run after the first
    of its shape skips XLA compilation, in this process and the next."""
    import jax

    from spot.data.offline.vocab import cache_root

    if jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", str(cache_root() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run_demo(demo: DemoConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    from spot.analysis import plots
    from spot.analysis.transfer import markdown_table, ranking_quality, summarize
    from spot.train.pretrain import build_backbone
    from spot.data.offline.suite import SOURCE_TASKS, TARGET_TASKS
    from spot.data.vocab import load_vocabulary
    from spot.library.store import PromptLibrary
    from spot.model.api import load_t5
    from spot.model.prompt_files import load_prompt, save_prompt
    from spot.retrieval.affinity import mean_quality
    from spot.retrieval.similarity import METRICS, similarity
    from spot.train.run import train

    started = time.time()
    enable_compilation_cache()
    out = Path(demo.out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = build_backbone(demo.backbone, log=log)
    t5 = load_t5(backbone, "float32")
    vocab = load_vocabulary(backbone / "vocab.model")
    # The suite registers itself (seed 0) on first lookup; `demo.seed` seeds the runs.
    library = PromptLibrary(out / "library")
    runs = out / "runs"
    timings: dict[str, float] = {}

    def run(name: str, **kw) -> Any:
        t0 = time.time()
        name_ = kw.get("task") or kw.get("mixture")
        kw["input_length"] = fitted_input_length(name_, vocab, demo.input_length)
        result = train(_run_config(demo, out_dir=runs / name, **kw), t5=t5, vocab=vocab,
                       log=lambda s: None)
        timings[name] = time.time() - t0
        log(f"  {name:<40} best score {result.best_score:6.2f} at step {result.best_step}"
            f"  ({timings[name]:.0f}s)")
        return result

    # 2. Source prompts and the library.
    log(f"[1/4] source prompts on {len(SOURCE_TASKS)} offline tasks ({demo.source_steps} steps)")
    source_prompts: dict[str, Path] = {}
    embeddings: dict[str, np.ndarray] = {}
    existing = {e.task for e in library.entries()}
    for task in SOURCE_TASKS:
        r = run(f"source-{task}", task=task, steps=demo.source_steps, init="sampled_vocab")
        source_prompts[task] = r.prompt_paths["best"]
        embeddings[task] = load_prompt(r.prompt_paths["embedding"])
        if task not in existing:
            library.add(task=task, prompt=load_prompt(r.prompt_paths["best"]),
                        embedding=embeddings[task], run=f"seed{demo.seed}", model="embedded",
                        metrics={"score": r.best_score}, step=r.best_step)
    # 3. The mixture (generic SPoT).
    log("[2/4] a prompt on the mixture of all sources (generic SPoT)")
    mix = run("source-mixture", mixture="offline_sources", steps=demo.source_steps,
              init="sampled_vocab")
    mixture_prompt = mix.prompt_paths["best"]

    # 4. Targets.
    log(f"[3/4] {len(TARGET_TASKS)} targets: baseline, generic SPoT, every source, targeted SPoT")
    rows: list[dict[str, Any]] = []
    targeted: list[dict[str, Any]] = []
    sims: dict[str, dict[tuple[str, str], float]] = {m: {} for m in METRICS}
    for target in TARGET_TASKS:
        base = run(f"target-{target}-baseline", task=target, steps=demo.target_steps,
                   init="class_labels")
        rows.append({"source": "none", "target": target, "seed": demo.seed,
                     "score": base.best_score})
        target_embedding = load_prompt(base.prompt_paths["embedding"])
        embeddings[target] = target_embedding
        generic = run(f"target-{target}-from-mixture", task=target, steps=demo.target_steps,
                      init="file", init_path=str(mixture_prompt))
        rows.append({"source": "mixture", "target": target, "seed": demo.seed,
                     "score": generic.best_score})
        grid: dict[str, float] = {}
        for source, path in source_prompts.items():
            r = run(f"target-{target}-from-{source}", task=target, steps=demo.target_steps,
                    init="file", init_path=str(path))
            grid[source] = r.best_score
            rows.append({"source": source, "target": target, "seed": demo.seed,
                         "score": r.best_score})
        for metric in METRICS:
            for source in source_prompts:
                sims[metric][(source, target)] = similarity(target_embedding, embeddings[source],
                                                            metric=metric)
        ranked = library.rank(target_embedding, metric=demo.metric, k=demo.k, by="task")
        top = [(task, float(score)) for task, score in ranked]
        weights = np.array([s for _, s in top], np.float64)
        weights = weights / weights.sum()
        avg = sum(w * load_prompt(source_prompts[t]) for (t, _), w in zip(top, weights))
        avg_path = save_prompt(runs / f"init-{target}-weighted.npy", avg.astype(np.float32),
                               metadata={"strategy": "weighted", "sources": top})
        weighted = run(f"target-{target}-weighted-top{demo.k}", task=target,
                       steps=demo.target_steps, init="file", init_path=str(avg_path))
        best_of_k = max(top, key=lambda ts: grid[ts[0]])
        targeted.append({
            "target": target, "baseline": base.best_score, "generic_spot": generic.best_score,
            "retrieved": [t for t, _ in top], "best_of_top_k": grid[best_of_k[0]],
            "best_of_top_k_source": best_of_k[0], "weighted_top_k": weighted.best_score,
            **oracle_of(grid)})

    # 5. Tables, retrieval quality, figures.
    log("[4/4] analysis")
    results_csv = write_results_csv(out / "results.csv", rows)
    grid_rows = [r for r in rows if r["source"] != "mixture"]
    from spot.analysis.transfer import read_results

    summary = summarize(read_results(results_csv), similarities=sims)
    baseline = {r["target"]: r["score"] for r in rows if r["source"] == "none"}
    quality: dict[str, dict[str, float]] = {}
    for metric in METRICS:
        per_target = []
        for target in TARGET_TASKS:
            predicted = {s: sims[metric][(s, target)] for s in source_prompts}
            true = {r["source"]: r["score"] for r in grid_rows
                    if r["target"] == target and r["source"] != "none"}
            per_target.append(ranking_quality(predicted, true, ks=(1, 3)))
        quality[metric] = mean_quality(per_target)
    report = {"targets": targeted, "retrieval_quality": quality, "baseline": baseline,
              "summary": summary, "timings_seconds": timings,
              "total_seconds": time.time() - started, "config": dataclasses.asdict(demo)}
    atomic_write_text(out / "summary.json", json.dumps(report, indent=2, default=float))
    atomic_write_text(out / "transfer_table.md", markdown_table(summary))
    figures = []
    figures += plots.plot_transfer_heatmap(summary, out / "fig_transfer_heatmap")
    names = list(embeddings)
    matrix = np.array([[similarity(embeddings[a], embeddings[b], metric="avg_cosine")
                        for b in names] for a in names])
    figures += plots.plot_similarity_clustermap(names, matrix, out / "fig_similarity_clustermap",
                                                 metric="avg_cosine")
    rer = {(p["source"], p["target"]): p["relative_error_reduction"] for p in summary["pairs"]}
    points = {t: [(sims[demo.metric][(s, t)], rer[(s, t)]) for s in source_prompts
                  if (s, t) in rer] for t in TARGET_TASKS}
    figures += plots.plot_similarity_vs_transfer(points, out / "fig_similarity_vs_transfer")
    report["figures"] = [str(f) for f in figures]
    atomic_write_text(out / "summary.json", json.dumps(report, indent=2, default=float))
    atomic_write_text(out / "tables.md", render_tables(report) + "\n")
    return report


def write_results_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """The results table (source,target,seed,score), written atomically: a crash keeps the
    previous table of a rerun whole."""
    with atomic_open(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=["source", "target", "seed", "score"])
        w.writeheader()
        w.writerows(rows)
    return path


def oracle_of(grid: dict[str, float]) -> dict[str, Any]:
    """The best transfer of a target over its sources (`grid`: source -> score), with every
    source that reaches it: a tie has no single best source."""
    best = max(grid.values())
    ties = [source for source, score in grid.items() if score == best]
    return {"oracle": best, "oracle_source": ties[0], "oracle_ties": ties,
            "num_sources": len(grid)}


def _oracle_label(target: dict[str, Any]) -> str:
    ties = target["oracle_ties"]
    if len(ties) == 1:
        return ties[0]
    return "all tie" if len(ties) == target["num_sources"] else f"{len(ties)} sources tie"


def render_tables(report: dict[str, Any]) -> str:
    lines = ["", "Targets (validation score, best checkpoint):",
             "| target | baseline | generic SPoT (mixture) | targeted best-of-top-k | "
             "targeted weighted | oracle | transfer helps? |",
             "|---|---|---|---|---|---|---|"]
    for t in report["targets"]:
        best = max(t["generic_spot"], t["best_of_top_k"], t["weighted_top_k"])
        verdict = "yes" if best > t["baseline"] else "no"
        lines.append(
            f"| {t['target']} | {t['baseline']:.2f} | {t['generic_spot']:.2f} | "
            f"{t['best_of_top_k']:.2f} ({t['best_of_top_k_source']}) | "
            f"{t['weighted_top_k']:.2f} | {t['oracle']:.2f} ({_oracle_label(t)}) | {verdict} |")
    lines.append("(one seed; validation sets of 100-400 examples, so differences of a few "
                 "points are within noise)")
    lines += ["", "Retrieval quality against the measured transfers (mean over targets):",
              "| metric | " + " | ".join(next(iter(report["retrieval_quality"].values()))) + " |",
              "|---|" + "---|" * len(next(iter(report["retrieval_quality"].values())))]
    for metric, q in report["retrieval_quality"].items():
        lines.append(f"| {metric} | " + " | ".join("n/a" if v is None else f"{v:g}" if key == "n" else f"{v:.3f}"
                                                for key, v in q.items()) + " |")
    lines.append(f"\ntotal {report['total_seconds'] / 60:.1f} min")
    return "\n".join(lines)
