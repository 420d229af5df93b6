"""The embedded default end to end: SPoT on the offline suite with the project's own backbone.

`spot demo --out DIR` (the README's first command) runs, on a fresh machine with no network:
  1. the backbone: the copy of `EMBEDDED_RECIPE`'s build shipped inside the package (a build
     of it in the user cache comes first; with neither, it is built, about 40 minutes);
  2. the study grid of `spot study run` (`spot.workflows.study.run_study`): source prompts on
     every source task of the offline suite (task embedding = the prompt at an early fixed
     step, source prompt = best validation checkpoint) stored in OUT/library, each target from
     class labels (the baseline) and from every source prompt (which also gives the oracle);
  3. a prompt on the mixture of all sources and every target from it (generic SPoT);
  4. targeted SPoT with `spot.retrieval.strategies`, as `spot transfer` runs it: sources ranked
     by task-embedding similarity, best of top-k (read off the grid) and the top-k weighted
     average (trained);
  5. the study summary (`spot.analysis.transfer`), retrieval quality of every similarity
     metric against the measured transfers, the results CSV, the tables and three figures.

With `seeds` > 1 every run is repeated per seed and the tables give mean ± std; retrieval
ranks by the first seed's task embeddings.
Run folders are named as the study names its cells (`runs/source-TASK-sSEED`,
`runs/target-TASK-from-SOURCE-sSEED`, `none` for the baseline); a rerun skips finished cells
and resumes the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from spot.data.pipeline import fitted_input_length  # noqa: F401  (the demo's runs fit it)
from spot.fileio import atomic_write_text
from spot.workflows.study import write_results


def _default_recipe():
    from spot.data.offline.backbone import EMBEDDED_RECIPE

    return EMBEDDED_RECIPE


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    out: str = "demo_out"
    backbone: Any = dataclasses.field(default_factory=_default_recipe)
    # Sized so the study fits its 15-minute budget on 2 CPU cores (docs/offline_suite.md).
    source_steps: int = 200
    target_steps: int = 300
    embedding_step: int = 50
    eval_every: int = 50
    prompt_length: int = 20
    batch_size: int = 16
    # Each batch trains as this many parts (`train.microbatches`): the same step, faster on
    # CPU, where small parts stay in cache (docs/performance.md, "Microbatches").
    microbatches: int = 4
    input_length: int = 64
    target_length: int = 8
    max_eval_examples: int = 200
    k: int = 3
    metric: str = "per_token_cosine"
    seed: int = 0
    # Every run of the grid, the mixture's targets and the weighted top-k for seeds
    # seed .. seed + seeds - 1; tables give the mean (and the std over seeds when > 1).
    seeds: int = 1
    # Runs trained at a time, each in a worker process on its own core (spot.workflows.pool);
    # 0: one per usable core, 1: every run in this process.
    jobs: int = 0

    def __post_init__(self) -> None:
        # Checked before the backbone build (minutes) starts, so a bad flag fails at once.
        from spot.errors import ConfigError

        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in ("int", int) and (isinstance(value, bool) or not isinstance(value, int)
                                               or value < (0 if field.name in ("seed", "jobs") else 1)):
                least = "0 or more" if field.name in ("seed", "jobs") else "positive"
                raise ConfigError(f"demo {field.name} must be {least}, got {value!r}")


def _base_config(demo: DemoConfig, out: Path):
    """What every run of the demo shares; each run (a study cell or one of the demo's own)
    sets its task, steps and initialization on top, and `_fit` its lengths."""
    from spot.config import RunConfig, apply_overrides

    overrides = {
        "model.name": "embedded", "model.dtype": "float32", "model.param_dtype": "float32",
        "data.batch_size": demo.batch_size, "train.microbatches": demo.microbatches,
        "data.input_length": demo.input_length,
        "data.target_length": demo.target_length, "data.max_eval_examples": demo.max_eval_examples,
        "data.eval_batch_size": 100, "prompt.length": demo.prompt_length,
        "train.steps": demo.target_steps, "train.embedding_step": demo.embedding_step,
        "train.log_every": 25, "train.seed": demo.seed, "train.out_dir": str(out / "runs"),
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


@dataclasses.dataclass
class _Session:
    """The backbone, vocabulary and folders every phase of one demo run uses."""

    demo: DemoConfig
    out: Path
    vocab: Any
    log: Callable[[str], None]
    pool: Any  # a spot.workflows.pool.TrainPool: every run of the demo goes through it
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def base(self):
        return _base_config(self.demo, self.out)

    def fit(self, config):
        """Input length fitted to the run's task; evaluation at least once, one checkpoint.
        A source or baseline run (from sampled vocabulary or class labels) also scores its
        untrained prompt: what the frozen backbone does with it before any tuning, the floor
        the run's gain is read against. Transfers and the mixture do not."""
        from spot.config import apply_overrides

        steps = config.train.steps
        length = fitted_input_length(config.task_or_mixture, self.vocab, self.demo.input_length)
        return apply_overrides(config, {"data.input_length": length,
                                        "train.eval_every": min(self.demo.eval_every, steps),
                                        "train.checkpoint_every": steps,
                                        "train.eval_at_start": (config.prompt.init != "file"
                                                                and not config.data.mixture)})

    @property
    def seeds(self) -> list[int]:
        return list(range(self.demo.seed, self.demo.seed + self.demo.seeds))

    def submit(self, name: str, overrides: dict[str, Any], seed: int) -> tuple[str, Any]:
        """Start one of the demo's own runs (outside the study grid; resumed when it exists):
        (its name, a future of its result) for `result`."""
        from spot.config import apply_overrides

        name = f"{name}-s{seed}"
        config = self.fit(apply_overrides(self.base, {
            **overrides, "train.seed": seed, "train.out_dir": str(self.out / "runs" / name)}))
        return name, self.pool.submit(config)

    def result(self, started: tuple[str, Any]) -> Any:
        """Wait for a submitted run; log and time it."""
        name, future = started
        result = future.result()
        self.timings[name] = result.seconds
        self.log(f"  {name:<40} best score {result.best_score:6.2f} at step {result.best_step}"
                 f"  ({self.timings[name]:.0f}s)")
        return result

    def train(self, name: str, overrides: dict[str, Any], seed: int) -> Any:
        return self.result(self.submit(name, overrides, seed))


@dataclasses.dataclass
class _Grid:
    """The study grid: scores (per seed and their mean), and the first seed's prompts and
    task embeddings (what retrieval ranks by)."""

    runs: dict[tuple[str, str], dict[int, float]]  # (source or "none", target) -> seed -> score
    baseline: dict[str, float]  # target -> mean score from class labels
    transfer: dict[str, dict[str, float]]  # target -> source -> mean score
    source_prompts: dict[str, dict[int, Path]]  # source -> seed -> best prompt
    embeddings: dict[str, np.ndarray]  # sources then targets -> task embedding
    # source or target -> seed -> score of its untrained initial prompt, and of the
    # tuned prompt on its own task for sources (a run folder from before the untrained
    # score was kept has none: that seed is left out)
    untrained: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)
    sources: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)


def _run_grid(s: _Session) -> _Grid:
    """Sources, baselines and every source -> target transfer: `spot study run`."""
    from spot.data.offline.suite import SOURCE_TASKS, TARGET_TASKS
    from spot.model.prompt_files import load_prompt
    from spot.workflows.study import Cell, StudyConfig, read_rows, run_prompts, run_study

    demo = s.demo
    study = StudyConfig(sources=SOURCE_TASKS, targets=TARGET_TASKS, out=str(s.out), seeds=demo.seeds,
                        first_seed=demo.seed, source_steps=demo.source_steps,
                        target_steps=demo.target_steps)
    report = run_study(s.base, study, adjust=s.fit, pool=s.pool, log=lambda m: s.log(f"  {m}"))
    s.timings.update(report["seconds"])
    runs: dict[tuple[str, str], dict[int, float]] = {}
    for r in read_rows(s.out):
        if int(r["seed"]) in s.seeds:
            runs.setdefault((r["source"], r["target"]), {})[int(r["seed"])] = float(r["score"])

    def prompts(source: str, target: str, seed: int) -> dict[str, Path]:
        return run_prompts(s.out / "runs" / Cell(source, target, seed).run_name)

    untrained: dict[str, dict[int, float]] = {}
    sources: dict[str, dict[int, float]] = {}
    for task, cell_source in [*((t, "source") for t in SOURCE_TASKS),
                              *((t, "none") for t in TARGET_TASKS)]:
        for seed in s.seeds:
            run = s.out / "runs" / Cell(cell_source, task, seed).run_name
            summary = _read_json(run / "summary.json")
            if summary.get("initial_score") is not None:
                untrained.setdefault(task, {})[seed] = float(summary["initial_score"])
            if cell_source == "source" and summary.get("best_score") is not None:
                sources.setdefault(task, {})[seed] = float(summary["best_score"])
    first = demo.seed
    embeddings = {task: load_prompt(prompts("source", task, first)["embedding"])
                  for task in SOURCE_TASKS}
    for target in TARGET_TASKS:
        embeddings[target] = load_prompt(prompts("none", target, first)["embedding"])
    return _Grid(runs=runs, baseline={t: _mean_of(runs[("none", t)]) for t in TARGET_TASKS},
                 transfer={t: {src: _mean_of(runs[(src, t)]) for src in SOURCE_TASKS}
                           for t in TARGET_TASKS},
                 source_prompts={task: {seed: prompts("source", task, seed)["best"]
                                        for seed in s.seeds} for task in SOURCE_TASKS},
                 embeddings=embeddings, untrained=untrained, sources=sources)


def _read_json(path: Path) -> dict[str, Any]:
    """A run's JSON file as a dict; {} when it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _mean_std(per_seed: dict[int, float] | None) -> tuple[float | None, float | None]:
    if not per_seed:
        return None, None
    return _mean_of(per_seed), _std_of(per_seed)


def _mean_of(per_seed: dict[int, float]) -> float:
    return float(np.mean(list(per_seed.values())))


def _std_of(per_seed: dict[int, float]) -> float | None:
    """Sample standard deviation over seeds (None for one seed), as `spot study summarize`."""
    return float(np.std(list(per_seed.values()), ddof=1)) if len(per_seed) > 1 else None


def _start_mixture(s: _Session) -> dict[int, tuple[str, Any]]:
    """Per seed, the prompt on the mixture of all sources, submitted (seed -> started run)."""
    return {seed: s.submit("source-mixture", {"data.mixture": "offline_sources", "data.task": "",
                                              "train.steps": s.demo.source_steps,
                                              "prompt.init": "sampled_vocab"}, seed)
            for seed in s.seeds}


def _run_generic(s: _Session, mixture: dict[int, tuple[str, Any]]
                 ) -> dict[str, dict[int, float]]:
    """Generic SPoT: per seed, every target from the mixture prompt; target -> seed -> score."""
    from spot.data.offline.suite import TARGET_TASKS

    started = {}
    for seed in s.seeds:
        path = str(s.result(mixture[seed]).prompt_paths["best"])
        for target in TARGET_TASKS:
            started[target, seed] = s.submit(f"target-{target}-from-mixture", {
                "data.task": target, "prompt.init": "file", "prompt.init_path": path}, seed)
    out: dict[str, dict[int, float]] = {target: {} for target in TARGET_TASKS}
    for (target, seed), run in started.items():
        out[target][seed] = float(s.result(run).best_score)
    return out


def _start_targeted(s: _Session, grid: _Grid, library: Any, target: str) -> dict[str, Any]:
    """Targeted SPoT for one target (`spot retrieve` / `spot transfer`): rank the library's
    sources by task-embedding similarity; best of top-k reads the grid's transfers, the
    top-k weighted average is submitted for training (`_finish_targeted` waits for it)."""
    from spot.model.prompt_files import load_prompt, save_prompt
    from spot.retrieval.strategies import best_of_top_k, ranked_sources, weighted_average

    demo = s.demo
    top = ranked_sources(library, grid.embeddings[target], metric=demo.metric, k=demo.k,
                         exclude=[target])
    sources = [task for task, _ in top]
    best_source, best_score, _ = best_of_top_k(sources, lambda src: grid.transfer[target][src])
    weighted: dict[int, Any] = {}
    for seed in s.seeds:  # each seed averages its own source prompts
        average = weighted_average([load_prompt(grid.source_prompts[t][seed]) for t in sources],
                                   [score for _, score in top])
        init = save_prompt(s.out / "runs" / f"init-{target}-weighted-s{seed}.npy", average,
                           metadata={"strategy": "weighted", "sources": top})
        # named by the average itself: with more seeds in the library the top-k (and so
        # this prompt) can change, and the run must then be a new one, not a resumed one
        digest = hashlib.sha256(np.ascontiguousarray(average).tobytes()).hexdigest()[:8]
        weighted[seed] = s.submit(f"target-{target}-weighted-top{demo.k}-{digest}", {
            "data.task": target, "prompt.init": "file", "prompt.init_path": str(init)}, seed)
    return {"retrieved": sources, "best_of_top_k": best_score,
            "best_of_top_k_std": _std_of(grid.runs[(best_source, target)]),
            "best_of_top_k_source": best_source, "weighted": weighted}


def _finish_targeted(s: _Session, picked: dict[str, Any]) -> dict[str, Any]:
    picked = dict(picked)
    weighted = {seed: float(s.result(run).best_score)
                for seed, run in picked.pop("weighted").items()}
    return {**picked, "weighted_top_k": _mean_of(weighted), "weighted_top_k_std": _std_of(weighted)}


def _results_rows(s: _Session, grid: _Grid, generic: dict[str, dict[int, float]]
                  ) -> list[dict[str, Any]]:
    """Per target and seed: the baseline, the mixture, then every source (the study's row
    format)."""
    rows = []
    for target in grid.baseline:
        runs = {"none": grid.runs[("none", target)], "mixture": generic[target],
                **{source: grid.runs[(source, target)] for source in grid.transfer[target]}}
        rows += [{"source": source, "target": target, "seed": seed, "score": f"{score:.6f}"}
                 for seed in s.seeds for source, per_seed in runs.items()
                 for score in [per_seed[seed]]]
    return rows


def run_demo(demo: DemoConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    from spot.train.pretrain import build_backbone
    from spot.workflows.pool import ModelSource, TrainPool

    started = time.time()
    enable_compilation_cache()
    out = Path(demo.out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = build_backbone(demo.backbone, log=log)
    # The suite registers itself (seed 0) on first lookup; `demo.seed` seeds the runs.
    source = ModelSource(path=str(backbone), dtype="float32")
    # The model loads where runs train: here with one job, else in each worker.
    with TrainPool(demo.jobs, source=source) as pool:
        s = _Session(demo, out, source.vocabulary(), log, pool)
        if pool.parallel:
            log(f"training {pool.jobs} runs at a time, one worker process per core")
        grid, report, sims = _run_phases(s)
    report["total_seconds"] = time.time() - started
    _write_report(s, grid, report, sims)
    return report


def _run_phases(s: _Session) -> tuple[_Grid, dict[str, Any], dict[str, Any]]:
    from spot.library.store import PromptLibrary

    demo, out, log = s.demo, s.out, s.log
    # With workers, the mixture prompt (independent of the grid) trains beside the grid.
    early = _start_mixture(s) if s.pool.parallel else None
    log("[1/4] the study grid: source prompts (the library), baselines from class labels, "
        "every source -> target transfer")
    grid = _run_grid(s)
    log("[2/4] a prompt on the mixture of all sources, every target from it (generic SPoT)")
    generic = _run_generic(s, early if early is not None else _start_mixture(s))
    log(f"[3/4] targeted SPoT: top-{demo.k} sources by {demo.metric}")
    targeted = []
    with PromptLibrary(out / "library") as library:  # the study's: sources' prompts and keys
        started = {target: _start_targeted(s, grid, library, target) for target in grid.baseline}
    for target, baseline in grid.baseline.items():
        picked = _finish_targeted(s, started[target])
        untrained, untrained_std = _mean_std(grid.untrained.get(target))
        targeted.append({"target": target, "baseline": baseline,
                         "baseline_std": _std_of(grid.runs[("none", target)]),
                         "untrained": untrained, "untrained_std": untrained_std,
                         "majority": _majority(target),
                         "generic_spot": _mean_of(generic[target]),
                         "generic_spot_std": _std_of(generic[target]), **picked,
                         **oracle_of(grid.transfer[target]), "seeds": s.seeds})
    log("[4/4] analysis")
    results_csv = write_results_csv(out / "results.csv", _results_rows(s, grid, generic))
    sims = _similarities(grid)
    return grid, _analyse(s, grid, results_csv, targeted, sims), sims


def _similarities(grid: _Grid) -> dict[str, dict[tuple[str, str], float]]:
    """{metric: {(source, target): similarity of their task embeddings}} for every metric."""
    from spot.retrieval.similarity import METRICS, similarity

    return {metric: {(source, target): similarity(grid.embeddings[target],
                                                  grid.embeddings[source], metric=metric)
                     for target in grid.baseline for source in grid.source_prompts}
            for metric in METRICS}


def _analyse(s: _Session, grid: _Grid, results_csv: Path, targeted: list[dict[str, Any]],
             sims: dict[str, dict[tuple[str, str], float]]) -> dict[str, Any]:
    """The study summary (`spot study summarize`) and each metric's retrieval quality, the
    mean over targets of `spot.retrieval.quality.ranking_quality` against the transfers."""
    from spot.analysis.transfer import read_results, summarize
    from spot.retrieval.affinity import mean_quality

    summary = summarize(read_results(results_csv), similarities=sims)
    quality = {metric: mean_quality(list(summary["ranking_quality"][metric].values()))
               for metric in sims}
    sources = []
    for task, per_seed in grid.sources.items():
        score, std = _mean_std(per_seed)
        untrained, untrained_std = _mean_std(grid.untrained.get(task))
        sources.append({"source": task, "majority": _majority(task), "score": score,
                        "score_std": std, "untrained": untrained, "untrained_std": untrained_std,
                        "seeds": sorted(per_seed)})
    return {"targets": targeted, "sources": sources, "retrieval_quality": quality,
            "baseline": dict(grid.baseline),
            "summary": summary, "timings_seconds": s.timings,
            "total_seconds": None,  # set once the analysis is done
            "config": dataclasses.asdict(s.demo)}


def _write_report(s: _Session, grid: _Grid, report: dict[str, Any],
                  sims: dict[str, dict[tuple[str, str], float]]) -> None:
    """summary.json, the tables and the three figures."""
    from spot.analysis import plots
    from spot.analysis.transfer import markdown_table
    from spot.retrieval.similarity import similarity

    out, summary = s.out, report["summary"]
    atomic_write_text(out / "summary.json", json.dumps(report, indent=2, default=float))
    atomic_write_text(out / "transfer_table.md", markdown_table(summary))
    figures = plots.plot_transfer_heatmap(summary, out / "fig_transfer_heatmap")
    names = list(grid.embeddings)
    matrix = np.array([[similarity(grid.embeddings[a], grid.embeddings[b], metric="avg_cosine")
                        for b in names] for a in names])
    figures += plots.plot_similarity_clustermap(names, matrix, out / "fig_similarity_clustermap",
                                                 metric="avg_cosine")
    rer = {(p["source"], p["target"]): p["relative_error_reduction"] for p in summary["pairs"]}
    points = {t: [(sims[s.demo.metric][(src, t)], rer[(src, t)]) for src in grid.transfer[t]
                  if (src, t) in rer] for t in grid.baseline}
    figures += plots.plot_similarity_vs_transfer(points, out / "fig_similarity_vs_transfer")
    report["figures"] = [str(f) for f in figures]
    atomic_write_text(out / "summary.json", json.dumps(report, indent=2, default=float))
    atomic_write_text(out / "tables.md", render_tables(report) + "\n")


write_results_csv = write_results  # the demo's results table is the study's format


def oracle_of(grid: dict[str, float]) -> dict[str, Any]:
    """The best transfer of a target over its sources (`grid`: source -> score), with every
    source that reaches it: a tie has no single best source."""
    best = max(grid.values())
    ties = [source for source, score in grid.items() if score == best]
    return {"oracle": best, "oracle_source": ties[0], "oracle_ties": ties,
            "num_sources": len(grid)}


def _majority(task: str) -> float:
    """The majority-class baseline: the suite's classes are balanced, and so is the
    evaluated subset (`spot.data.pipeline`)."""
    from spot.data import registry

    return 100.0 / len(registry.get(task).label_words)


def _oracle_label(target: dict[str, Any]) -> str:
    ties = target["oracle_ties"]
    if len(ties) == 1:
        return ties[0]
    return "all tie" if len(ties) == target["num_sources"] else f"{len(ties)} sources tie"


def _pm(target: dict[str, Any], key: str) -> str:
    """A score with its std over seeds when there is one."""
    std = target.get(f"{key}_std")
    return f"{target[key]:.2f}" + ("" if std is None else f" ± {std:.1f}")


def _opt(row: dict[str, Any], key: str, *, pm: bool = False) -> str:
    """A figure that may be missing (a run folder from before it was recorded): "n/a"."""
    if row.get(key) is None:
        return "n/a"
    return _pm(row, key) if pm else f"{row[key]:.2f}"


def _gain(score: float | None, floor: float | None) -> str:
    return "n/a" if score is None or floor is None else f"{score - floor:+.2f}"


_STRATEGIES = ("generic_spot", "best_of_top_k", "weighted_top_k")


def _verdict(target: dict[str, Any]) -> str:
    """Does the best SPoT strategy beat the baseline? With several seeds, a gain no larger
    than the spread over seeds (the larger std of the two) is called within noise."""
    top = max(target[k] for k in _STRATEGIES)
    # among strategies tied at the top, judge by the widest spread (the cautious reading;
    # without seeds there is no spread and the first tied one stands for them all)
    best = max((k for k in _STRATEGIES if target[k] == top),
               key=lambda k: target.get(f"{k}_std") or 0.0)
    gain = top - target["baseline"]
    if gain <= 0:
        return "no"
    stds = [target.get(f"{k}_std") for k in (best, "baseline")]
    if any(v is None for v in stds):
        return "yes"
    return "yes" if gain > max(stds) else f"within noise (+{gain:.1f}, std {max(stds):.1f})"


def render_tables(report: dict[str, Any]) -> str:
    lines = []
    if report.get("sources"):
        lines += ["", "Sources (validation score of each source prompt on its own task):",
                  "| source | majority | untrained prompt | tuned prompt | tuning added |",
                  "|---|---|---|---|---|"]
        for src in report["sources"]:
            lines.append(f"| {src['source']} | {_opt(src, 'majority')} | "
                         f"{_opt(src, 'untrained', pm=True)} | {_opt(src, 'score', pm=True)} | "
                         f"{_gain(src.get('score'), src.get('untrained'))} |")
    lines += ["", "Targets (validation score, best checkpoint; \"untrained prompt\" is the "
              "initial prompt before any tuning (class labels for targets, sampled vocabulary "
              "for sources): what the frozen backbone does with it):",
              "| target | majority | untrained prompt | from scratch (baseline) | "
              "generic SPoT (mixture) | targeted best-of-top-k | targeted weighted | oracle | "
              "transfer helps? |",
              "|---|---|---|---|---|---|---|---|---|"]
    seeds = 1
    for t in report["targets"]:
        seeds = len(t.get("seeds", [None]))
        verdict = _verdict(t)
        lines.append(
            f"| {t['target']} | {_opt(t, 'majority')} | {_opt(t, 'untrained', pm=True)} | "
            f"{_pm(t, 'baseline')} | {_pm(t, 'generic_spot')} | "
            f"{_pm(t, 'best_of_top_k')} ({t['best_of_top_k_source']}) | "
            f"{_pm(t, 'weighted_top_k')} | {t['oracle']:.2f} ({_oracle_label(t)}) | {verdict} |")
    lines.append(("(one seed" if seeds == 1 else f"(mean ± sample std over {seeds} seeds")
                 + f"; at most {report.get('config', {}).get('max_eval_examples', 200)} "
                 "validation examples per target, so differences of a few points are within "
                 "noise)")
    floor = [t["target"] for t in report["targets"] if t.get("untrained") is not None
             and t["baseline"] - t["untrained"] < 0.5 * (t["baseline"] - t.get("majority", 0.0))]
    if floor:
        lines.append(f"(on {', '.join(floor)}, most of from scratch's lead over the majority "
                     "was there before any tuning: the frozen backbone with the untrained prompt "
                     "does most of the task by itself, so no prompt has much to add)")
    lines += ["", "Retrieval quality against the measured transfers (mean over targets):",
              "| metric | " + " | ".join(next(iter(report["retrieval_quality"].values()))) + " |",
              "|---|" + "---|" * len(next(iter(report["retrieval_quality"].values())))]
    for metric, q in report["retrieval_quality"].items():
        lines.append(f"| {metric} | " + " | ".join("n/a" if v is None else f"{v:g}" if key == "n" else f"{v:.3f}"
                                                for key, v in q.items()) + " |")
    lines.append(f"\ntotal {report['total_seconds'] / 60:.1f} min")
    return "\n".join(lines)
