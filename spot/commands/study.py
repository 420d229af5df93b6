"""`spot study ...`: transfer studies (`run`, `collect`) and their analysis (`summarize`, `plot`).

`spot study run` takes the model and training flags of `spot train-source` (built into a
`RunConfig` by `spot.commands.train.build_config`) and runs `spot.workflows.study.run_study` on one
shard of the sources x targets x seeds grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from spot.commands import options


@click.group("study")
def study() -> None:
    """Transfer studies: sources x targets x seeds, their results, summaries and plots."""


def _similarities(path: str | None, library: str | None, metric: str, tasks: list[str]):
    """{metric: {(source, target): similarity}} from a CSV or a prompt library, or None."""
    from spot.analysis import transfer

    if path:
        return transfer.read_similarities(path)
    if library:
        from spot.library.store import PromptLibrary

        with PromptLibrary(library, create=False) as lib:
            names, matrix = transfer.library_task_similarities(lib, tasks, metric)
        return {metric: {(a, b): float(matrix[i, j]) for i, a in enumerate(names) for j, b in enumerate(names)}}
    return None


@study.command("summarize")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the summary as JSON here.")
@click.option("--similarities", type=click.Path(dir_okay=False),
              help="CSV with columns metric,source,target,similarity: adds best-of-top-k curves "
                   "and ranking quality per metric.")
@click.option("--library", type=click.Path(file_okay=False),
              help="Prompt library to compute source-target similarities from (instead of --similarities).")
@click.option("--metric", default="per_token_cosine", show_default=True, help="Metric used with --library.")
def summarize_cmd(results: str, json_out: str | None, similarities: str | None, library: str | None,
                  metric: str) -> None:
    """Summarize a results CSV (source,target,seed,score; source 'none' = from scratch)."""
    from spot.analysis import transfer
    from spot.errors import ConfigError
    from spot.fileio import atomic_write_text, same_file

    for flag, given in (("RESULTS", results), ("--similarities", similarities)):
        if json_out and given and same_file(json_out, given):
            raise ConfigError(f"--json {json_out} is the same file as {flag} {given}; write the "
                              "summary to another file")
    rows = transfer.read_results(results)
    tasks = sorted({r.source for r in rows} | {r.target for r in rows})
    summary = transfer.summarize(rows, _similarities(similarities, library, metric, tasks))
    click.echo(transfer.markdown_table(summary), nl=False)
    if json_out:
        atomic_write_text(json_out, json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n")
        click.echo(f"wrote {json_out}")


@study.command("plot")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the figures.")
@click.option("--library", type=click.Path(file_okay=False),
              help="Prompt library holding the tasks' embeddings (for the similarity figures).")
@click.option("--similarities", type=click.Path(dir_okay=False),
              help="CSV metric,source,target,similarity instead of --library.")
@click.option("--metric", default="per_token_cosine", show_default=True, help="Similarity metric.")
def plot_cmd(results: str, out_dir: str, library: str | None, similarities: str | None, metric: str) -> None:
    """Heatmap of relative error reduction; with similarities, a clustered similarity heatmap
    and per-target scatter plots of similarity vs relative error reduction."""
    from spot.analysis import plots, transfer
    from spot.errors import DataError
    from spot.retrieval.similarity import check_metric

    check_metric(metric)
    rows = transfer.read_results(results)
    summary = transfer.summarize(rows)
    out = Path(out_dir)
    written = plots.plot_transfer_heatmap(summary, out / "transfer_heatmap")
    tasks = sorted(set(summary["sources"]) | set(summary["targets"]))
    sims = _similarities(similarities, library, metric, tasks)
    if sims is not None:
        if metric not in sims:
            raise DataError(f"{similarities} has no rows for metric {metric!r} (it has {', '.join(sorted(sims))})")
        pair_sims = sims[metric]
        names = sorted({a for a, _ in pair_sims} & {b for _, b in pair_sims})
        if len(names) >= 2 and all((a, b) in pair_sims for a in names for b in names):
            matrix = [[pair_sims[(a, b)] for b in names] for a in names]
            written += plots.plot_similarity_clustermap(names, matrix, out / "similarity_clustermap", metric)
        points: dict[str, list] = {}
        for p in summary["pairs"]:
            key = (p["source"], p["target"])
            if key in pair_sims and p["relative_error_reduction"] is not None:
                points.setdefault(p["target"], []).append((pair_sims[key], p["relative_error_reduction"], p["source"]))
        if points:
            written += plots.plot_similarity_vs_transfer(points, out / "similarity_vs_transfer",
                                                         xlabel=f"similarity ({metric})")
        else:
            click.echo("no (source, target) pair has both a similarity and a relative error reduction; "
                       "skipped the scatter plot", err=True)
    for path in written:
        click.echo(f"wrote {path}")


def _task_list(value: str, option: str) -> list[str]:
    """Comma-separated task names, in order, without blanks or repeats."""
    names = list(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
    if not names:
        raise click.BadParameter("give at least one task name (comma-separated)", param_hint=option)
    return names


def _check_tasks(names: list[str], option: str) -> None:
    from spot.data import registry
    from spot.errors import DataError

    for name in names:
        try:
            registry.get(name)
        except DataError as e:
            raise click.BadParameter(str(e), param_hint=option) from None


@study.command("run")
@click.option("--sources", required=True, metavar="A,B,...", help="Source tasks, comma-separated.")
@click.option("--targets", required=True, metavar="X,Y,...", help="Target tasks, comma-separated.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs per cell, seeds 0..N-1.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Study folder: runs/, results/shard-I-of-N.csv, library/, results.csv.")
@click.option("--shard", default="0/1", show_default=True, metavar="I/N",
              help="Run only this shard's cells (0 <= I < N); shards share nothing but --out.")
@click.option("--library", "library_root", type=click.Path(file_okay=False),
              help="Prompt library for the source prompts (default: OUT/library).")
@click.option("--jobs", default="1", show_default=True, metavar="N|auto",
              help="Cells trained at a time, each in a worker process on its own core "
                   "('auto': one per usable core). Worth it on CPUs, where one small run "
                   "leaves cores idle.")
@options.model_option
@options.checkpoint_option
@click.option("--steps", type=int, help="Training steps of every cell (train.steps).")
@click.option("--source-steps", type=click.IntRange(min=1), help="Training steps of source cells.")
@click.option("--target-steps", type=click.IntRange(min=1),
              help="Training steps of target cells (baselines and transfers).")
@options.batch_size_option
@options.vocab_option
@options.mode_option
@options.config_options
@options.task_file_option
@click.option("--dry-run", is_flag=True,
              help="Print the resolved base config and this shard's cells, and exit.")
def run_cmd(sources: str, targets: str, seeds: int, out_dir: str, shard: str,
            library_root: str | None, jobs: str, source_steps: int | None,
            target_steps: int | None, dry_run: bool, **flags) -> None:
    """Run a transfer study: for each seed, a source prompt per source task, a from-scratch
    baseline per target, and every target initialized from every source's prompt.

    Each cell is one training run under OUT/runs/. Finished cells are skipped on a rerun and an
    interrupted cell resumes from its checkpoint. With --shard I/N, machines sharing OUT split
    the grid; a target cell whose source prompt another shard has not finished yet waits for a
    rerun. Afterwards the finished rows of all shards are merged into OUT/results.csv
    (columns source,target,seed,score; source 'none' is the baseline), the input of
    `spot study summarize` and `spot study plot`.
    """
    from spot.data.local import register_task_file
    from spot.errors import ConfigError, DataError
    from spot.workflows.pool import resolve_jobs
    from spot.workflows.study import StudyConfig, collect, parse_shard, run_study

    from .train import build_config

    try:
        shard_pair = parse_shard(shard)
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--shard") from None
    try:
        n_jobs = resolve_jobs(jobs)
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--jobs") from None
    source_names = _task_list(sources, "--sources")
    target_names = _task_list(targets, "--targets")
    # data.task is required by validation; every cell replaces it with its own task.
    base = build_config(task=target_names[0], **flags)
    for path in base.data.task_files:  # --task-file and task files named in --config
        register_task_file(path)
    _check_tasks(source_names, "--sources")
    _check_tasks(target_names, "--targets")
    grid = StudyConfig(sources=source_names, targets=target_names, out=out_dir, seeds=seeds,
                       library_root=library_root or "", source_steps=source_steps,
                       target_steps=target_steps, shard=shard_pair)
    if dry_run:
        click.echo(json.dumps({"config": base.to_dict(), "shard": list(shard_pair),
                               "cells": [c.key for c in grid.cells()]}, indent=2, sort_keys=True))
        return
    report = run_study(base, grid, jobs=n_jobs, log=lambda s: click.echo(s, err=True))
    try:
        results: str | None = str(collect(out_dir))
    except DataError:
        results = None  # no baseline or transfer cell has finished yet (in any shard)
    click.echo(json.dumps({**report, "results": results}, indent=2))


@study.command("collect")
@click.argument("out_dir", metavar="OUT", type=click.Path(exists=True, file_okay=False))
def collect_cmd(out_dir: str) -> None:
    """Merge the finished rows of every shard of the study folder OUT into OUT/results.csv."""
    from spot.workflows.study import collect, read_rows

    path = collect(out_dir)
    rows = [r for r in read_rows(Path(out_dir)) if r["source"] != "source"]
    click.echo(f"wrote {path} ({len(rows)} rows)")


def register(cli: click.Group) -> None:
    cli.add_command(study)
