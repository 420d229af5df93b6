"""`spot demo`: SPoT end to end on the embedded offline default."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--out", default="demo_out", show_default=True, type=click.Path(file_okay=False),
              help="Output folder: results CSV, summary, figures, runs and the library.")
@click.option("--source-steps", type=int, default=None, help="Steps per source prompt.")
@click.option("--target-steps", type=int, default=None, help="Steps per target run.")
@click.option("--k", type=int, default=None, help="Top-k sources for targeted SPoT.")
@click.option("--seed", type=int, default=None, help="The first seed.")
@click.option("--seeds", type=int, default=None,
              help="Seeds per run (default 1); the tables print mean ± std over them.")
@click.option("--jobs", default="auto", show_default=True, metavar="N|auto",
              help="Runs trained at a time, each in a worker process on its own core "
                   "('auto': one per usable core; 1: all in this process).")
def demo(out, source_steps, target_steps, k, seed, seeds, jobs):
    """Run the whole method offline on the tiny backbone shipped with spot (built from its
    recipe when missing): train source prompts and a mixture prompt, train each target from
    scratch, from the mixture and from every source, retrieve sources by task embedding, and
    write the tables and figures."""
    import dataclasses

    from spot.errors import ConfigError
    from spot.workflows.demo import DemoConfig, run_demo
    from spot.workflows.pool import resolve_jobs

    try:
        changes = {"out": out, "jobs": resolve_jobs(jobs)}
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--jobs") from None
    for name, value in (("source_steps", source_steps), ("target_steps", target_steps),
                        ("k", k), ("seed", seed), ("seeds", seeds)):
        if value is not None:
            changes[name] = value
    from spot.workflows.demo import render_tables

    report = run_demo(dataclasses.replace(DemoConfig(), **changes),
                      log=lambda s: click.echo(s, err=True))
    click.echo(render_tables(report))
    click.echo(f"\nwrote {out}/: results.csv, summary.json, tables.md, transfer_table.md, "
               f"figures (fig_*.png/pdf), runs/, library/")


def register(cli: click.Group) -> None:
    cli.add_command(demo)
