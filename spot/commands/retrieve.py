"""`spot retrieve`, `spot transfer` and `spot affinity`: targeted SPoT from a prompt library."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from spot.commands.library import command_library, library_folder_option
from spot.commands.options import training_options
from spot.commands.train import build_config
from spot.retrieval.similarity import METRICS

_library_option = library_folder_option("library_root")  # the same --library as `spot library`


def _target_embedding(target: str, embedding: str | None, flags: dict, log) -> list:
    """The target's task embedding: a given file, or a short run to the embedding step."""
    from spot.model.prompt_files import load_prompt

    if embedding:
        return [load_prompt(embedding)]
    from spot.config import apply_overrides
    from spot.train.run import train

    config = build_config(task=target, default_init="class_labels", **flags)
    steps = config.train.embedding_step
    if steps <= 0:
        raise click.UsageError("train.embedding_step must be positive to train an embedding")
    out = config.train.out_dir or f"runs/{target}-embedding-s{config.train.seed}"
    config = apply_overrides(config, {"train.steps": steps, "train.out_dir": out,
                                      "train.eval_every": steps})
    from spot.data.local import register_task_file
    from spot.train.preflight import preflight

    for path in config.data.task_files:
        register_task_file(path)
    preflight(config)  # an unreachable model or missing data fail now, not minutes in
    log(f"training {target}'s task embedding ({steps} steps) in {out}")
    result = train(config, log=log)
    return [load_prompt(result.prompt_paths["embedding"])]


@click.command("retrieve")
@click.option("--target", required=True, help="The target task.")
@click.option("--k", default=3, show_default=True, help="How many sources to retrieve.")
@click.option("--metric", default="per_token_cosine", show_default=True,
              type=click.Choice(list(METRICS)))
@click.option("--embedding", type=click.Path(exists=True),
              help="The target's task embedding; without it, it is trained first.")
@click.option("--write-init", type=click.Path(dir_okay=False),
              help="Write the target's initial prompt here.")
@click.option("--strategy", type=click.Choice(["best", "weighted"]), default="best",
              show_default=True, help="best: the top source's prompt; weighted: the "
              "similarity-weighted average of the top-k prompts.")
@click.option("--json", "as_json", is_flag=True)
@_library_option
@training_options
def retrieve(target, k, metric, embedding, write_init, strategy, as_json, library_root,
             dry_run, **flags):
    """Rank the library's source tasks for a target by task-embedding similarity."""
    from spot.model.prompt_files import save_prompt
    from spot.retrieval.similarity import check_k
    from spot.retrieval.strategies import ranked_sources, weighted_average

    check_k(k)

    library = command_library(library_root)
    if write_init:  # never over an input: the embedding, or a file of the library
        from spot.errors import ConfigError
        from spot.fileio import same_file

        if embedding and same_file(write_init, embedding):
            raise ConfigError(f"--write-init {write_init} is the --embedding file; write the "
                              "initial prompt to another file")
        if Path(os.path.realpath(library_root)) in Path(os.path.realpath(write_init)).parents:
            raise ConfigError(f"--write-init {write_init} lies inside --library {library_root}; "
                              "write the initial prompt outside it")
    if dry_run:
        click.echo(build_config(task=target, default_init="class_labels", **flags).to_json())
        return
    query = _target_embedding(target, embedding, flags, lambda s: click.echo(s, err=True))
    top = ranked_sources(library, query, metric=metric, k=k, exclude=[target])
    # The best run of each retrieved task supplies its prompt.
    best_entries = {}
    for task, _ in top:
        entries = library.entries(task=task)
        best_entries[task] = max(entries, key=lambda e: (e.metrics.get("score", float("-inf")),
                                                         e.id))
    if as_json:
        click.echo(json.dumps([{"rank": i + 1, "task": t, "entry": best_entries[t].id,
                                "run": best_entries[t].run, "score": s}
                               for i, (t, s) in enumerate(top)], indent=2))
    else:
        click.echo(f"{'rank':>4}  {'source task':<32} {'run':<10} {metric}")
        for i, (t, s) in enumerate(top):
            click.echo(f"{i + 1:>4}  {t:<32} {best_entries[t].run:<10} {s:.4f}")
    if write_init:
        if strategy == "best":
            prompt = library.load_prompt(best_entries[top[0][0]])
        else:
            prompt = weighted_average([library.load_prompt(best_entries[t]) for t, _ in top],
                                      [s for _, s in top])
        path = save_prompt(write_init, prompt, metadata={
            "strategy": strategy, "target": target, "metric": metric,
            "sources": [{"task": t, "entry": best_entries[t].id, "similarity": s}
                        for t, s in top]})
        click.echo(f"wrote {path}", err=True)


@click.command("transfer")
@click.option("--target", required=True)
@click.option("--strategy", type=click.Choice(["best", "weighted", "mixture"]),
              default="best", show_default=True,
              help="best: train from each top-k source, keep the best; weighted: train from "
              "the weighted average; mixture: train on the top-k sources + target mixture, "
              "then transfer.")
@click.option("--k", default=3, show_default=True)
@click.option("--metric", default="per_token_cosine", show_default=True)
@click.option("--embedding", type=click.Path(exists=True))
@_library_option
@training_options
def transfer(target, strategy, k, metric, embedding, library_root, dry_run, **flags):
    """Targeted SPoT end to end: retrieve the top-k sources and train the target with them."""
    from spot.config import apply_overrides
    from spot.model.prompt_files import save_prompt
    from spot.retrieval.similarity import check_k
    from spot.retrieval.strategies import best_of_top_k, mixture_of, ranked_sources, weighted_average
    from spot.train.run import train

    check_k(k)
    base = build_config(task=target, default_init="class_labels", **flags)
    if dry_run:
        click.echo(base.to_json())
        return
    library = command_library(library_root)
    log = lambda s: click.echo(s, err=True)  # noqa: E731
    query = _target_embedding(target, embedding, flags, log)
    top = ranked_sources(library, query, metric=metric, k=k, exclude=[target])
    root = Path(base.train.out_dir or f"runs/{target}-transfer-{strategy}")
    prompts = {t: library.load_prompt(max(library.entries(task=t),
                                          key=lambda e: (e.metrics.get("score", -1e9), e.id)))
               for t, _ in top}
    report: dict = {"target": target, "strategy": strategy, "retrieved": top}

    def run_from(init_path: Path, name: str) -> float:
        cfg = apply_overrides(base, {"prompt.init": "file", "prompt.init_path": str(init_path),
                                     "train.out_dir": str(root / name)})
        result = train(cfg, log=log)
        return float(result.best_score)

    if strategy == "best":
        def train_from(task: str) -> float:
            path = save_prompt(root / "inits" / f"{task}.npy", prompts[task],
                               metadata={"source": task})
            return run_from(path, f"from-{task}")

        best, score, all_scores = best_of_top_k([t for t, _ in top], train_from)
        report.update({"best_source": best, "best_score": score, "scores": all_scores})
    elif strategy == "weighted":
        avg = weighted_average([prompts[t] for t, _ in top], [s for _, s in top])
        path = save_prompt(root / "inits" / "weighted.npy", avg, metadata={"sources": top})
        report["score"] = run_from(path, "from-weighted")
    else:
        mixture = mixture_of(target, [t for t, _ in top], K=base.data.mixing_K)
        cfg = apply_overrides(base, {"data.task": "", "data.mixture": mixture,
                                     "prompt.init": "sampled_vocab",
                                     "train.out_dir": str(root / "mixture")})
        mixed = train(cfg, log=log)
        report["mixture"] = mixture
        report["score"] = run_from(mixed.prompt_paths["best"], "from-mixture")
    click.echo(json.dumps(report, indent=2))


@click.group("affinity")
def affinity() -> None:
    """The learned affinity scorer: predict transfer gains from task embeddings."""


def _embeddings_by_task(library) -> dict:
    out: dict = {}
    for e in library.entries():
        out.setdefault(e.task, []).append(library.load_embedding(e))
    return out


@affinity.command("train")
@click.option("--results", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Study results CSV (source,target,seed,score; source none = baseline).")
@_library_option
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--variant", type=click.Choice(["light", "encoder"]), default="light",
              show_default=True)
@click.option("--model", default=None, help="Frozen model for the encoder variant.")
@click.option("--beta", default=1.0, show_default=True, help="Smooth-L1 beta.")
@click.option("--steps", default=1500, show_default=True)
@click.option("--evaluate", is_flag=True, help="Also report leave-one-target-out quality "
              "beside the six similarity metrics.")
def affinity_train(results, library_root, out, variant, model, beta, steps, evaluate):
    """Fit the scorer on measured gains (library embeddings as inputs)."""
    from spot.analysis.transfer import read_results
    from spot.retrieval.affinity import AffinityConfig, AffinityScorer, gains_from_results, leave_one_target_out

    library = command_library(library_root)
    embeddings = _embeddings_by_task(library)
    pairs = gains_from_results(read_results(results))
    t5 = None
    if variant == "encoder":
        from spot.model.api import load_t5
        from spot.train.model_paths import resolve_model_path

        if not model:
            raise click.UsageError("--variant encoder needs --model")
        t5 = load_t5(resolve_model_path(model))
    config = AffinityConfig(variant=variant, beta=beta, steps=steps)
    AffinityScorer(config, t5=t5).fit(pairs, embeddings).save(out)
    click.echo(f"trained on {len(pairs)} (source, target) gains; saved to {out}", err=True)
    if evaluate:
        quality = leave_one_target_out(pairs, embeddings, config, t5=t5)
        click.echo(json.dumps(quality, indent=2))


@affinity.command("rank")
@click.option("--scorer", "scorer_path", required=True, type=click.Path(exists=True))
@click.option("--embedding", required=True, type=click.Path(exists=True),
              help="The target's task embedding.")
@click.option("--target", default=None, help="Leave this task out of the pool.")
@click.option("--k", default=None, type=int)
@_library_option
def affinity_rank(scorer_path, embedding, target, k, library_root):
    """Rank the library's source tasks by predicted transfer gain."""
    from spot.model.prompt_files import load_prompt
    from spot.retrieval.affinity import AffinityScorer
    from spot.retrieval.similarity import check_k

    check_k(k, allow_none=True)
    library = command_library(library_root)
    scorer = AffinityScorer.load(scorer_path)
    pool = {t: runs for t, runs in _embeddings_by_task(library).items() if t != target}
    scores = scorer.score_pool([load_prompt(embedding)], pool)
    ranked = sorted(scores.items(), key=lambda ts: (-ts[1], ts[0]))[:k]
    click.echo(f"{'rank':>4}  {'source task':<32} predicted gain")
    for i, (t, s) in enumerate(ranked):
        click.echo(f"{i + 1:>4}  {t:<32} {s:+.3f}")


def register(cli: click.Group) -> None:
    cli.add_command(retrieve)
    cli.add_command(transfer)
    cli.add_command(affinity)
