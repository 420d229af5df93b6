"""`spot tasks`: what can be trained on, and what its examples look like.

Listing never reads data: sizes come from the catalogue (or a prepared dataset's info) and
availability from the file system, so it is quick and works offline.
"""

from __future__ import annotations

import json

import click

from spot.commands.options import registered_task_file_option


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def _rows(kind: str, family: str | None, available_only: bool) -> list[dict]:
    from spot.data import registry

    rows = []
    for name in registry.names(None if kind == "all" else kind):
        info = registry.get(name)
        if family and info.family != family:
            continue
        if info.is_mixture:
            have = sum(registry.get(m).available() for m in info.members)
            available = have == len(info.members)
            data = f"{have}/{len(info.members)}"
            try:
                size: int | None = int(sum(info.rates().values()))
                size_note = "rate sum"
            except Exception:  # a member of unknown size (its files are not here)
                size, size_note = None, ""
            metrics = f"{len(info.members)} tasks"
        else:
            available = info.available()
            data = "yes" if available else "no"
            size, size_note = info.num_examples("train"), ""
            metrics = ",".join(info.metrics) or "-"
        if available_only and not available:
            continue
        rows.append({"name": name, "kind": "mixture" if info.is_mixture else "task",
                     "family": info.family, "source": info.source, "train": size,
                     "size_note": size_note, "metrics": metrics, "available": available,
                     "data": data, "location": info.location()})
    return rows


@click.group("tasks", invoke_without_command=True)
@click.option("--kind", type=click.Choice(["all", "task", "mixture"]), default="all",
              show_default=True)
@click.option("--family", default=None, help="Only this family (glue, nli, gem, ...).")
@click.option("--available", "available_only", is_flag=True,
              help="Only tasks whose data are on this machine.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@registered_task_file_option
@click.pass_context
def tasks(ctx: click.Context, kind: str, family: str | None, available_only: bool,
          as_json: bool) -> None:
    """List registered tasks and mixtures: family, training size, metrics, and whether
    their data are on this machine (mixtures: how many members are)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _rows(kind, family, available_only)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = ("NAME", "KIND", "FAMILY", "SOURCE", "TRAIN", "METRICS", "DATA")
    table = [header] + [(r["name"], r["kind"], r["family"], r["source"], _size(r["train"]),
                         r["metrics"], r["data"]) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    n_tasks = sum(r["kind"] == "task" for r in rows)
    click.echo(f"\n{n_tasks} tasks, {len(rows) - n_tasks} mixtures; TRAIN of a mixture is the "
               f"sum of its rates min(n, K). `spot tasks show NAME` prints examples.")


@tasks.command("show")
@click.argument("name")
@click.option("--split", default="validation", show_default=True)
@click.option("-n", "--num", "num", default=3, show_default=True,
              help="Examples to print (per member, for a mixture: 1 each).")
@click.option("--vocab", default=None,
              help="SentencePiece model for token counts (default: T5's public vocabulary).")
@click.option("--input-length", default=512, show_default=True,
              help="Flags inputs that would be truncated.")
@click.option("--target-length", default=128, show_default=True)
@click.option("--download", is_flag=True,
              help="Let TFDS download and prepare a missing dataset (off by default).")
@registered_task_file_option
def show(name: str, split: str, num: int, vocab: str | None, input_length: int,
         target_length: int, download: bool) -> None:
    """Print a few preprocessed examples of NAME: input and target text, token counts."""
    import itertools

    from spot.data import registry
    from spot.data.pipeline import encode_many
    from spot.data.vocab import load_vocabulary
    from spot.errors import DataError

    for flag, value in (("--num", num), ("--input-length", input_length),
                        ("--target-length", target_length)):
        if value < 1:
            raise DataError(f"{flag} must be at least 1, got {value}")
    info = registry.get(name)
    members = info.members if info.is_mixture else (name,)
    per_task = 1 if info.is_mixture else num
    vocab_obj = load_vocabulary(vocab)
    click.echo(f"{name}: {info.description}")
    for member in members:
        m = registry.get(member)
        click.echo(f"\n== {member} [{split}] metrics: {', '.join(m.metrics) or '-'}; "
                   + _scoring(m))
        try:
            examples = list(itertools.islice(m.iter_examples(split, download=download),
                                             per_task))
        except DataError as e:
            if not info.is_mixture:
                raise
            click.echo(f"  (not available: {e})")
            continue
        if not examples:
            click.echo("  (no examples)")
        for i, ex in enumerate(examples):
            n_in, n_tg = (len(x) + 1 for x in encode_many(vocab_obj, [ex["inputs"],
                                                                        ex["targets"]]))
            flags = []
            if n_in > input_length:
                flags.append(f"inputs truncated to {input_length}")
            if n_tg > target_length:
                flags.append(f"targets truncated to {target_length}")
            click.echo(f"-- example {i}  (inputs {n_in} tokens, targets {n_tg} tokens incl. EOS"
                       + (f"; {'; '.join(flags)}" if flags else "") + ")")
            click.echo(f"  inputs:  {ex['inputs']}")
            click.echo(f"  targets: {ex['targets']}")
            extra = {k: v for k, v in ex.items() if k not in ("inputs", "targets")}
            if extra:
                click.echo(f"  fields:  {json.dumps(extra, ensure_ascii=False)[:300]}")


def _scoring(info) -> str:
    """How the task is scored: its labels (and where they came from), or generation."""
    note = f" ({info.labels_note})" if info.labels_note else ""
    if info.label_words:
        return f"labels: {' | '.join(info.label_words)}{note}"
    return info.labels_note or "no closed label set: scored by generation (greedy decoding)"


@tasks.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@registered_task_file_option
def info_cmd(name: str, as_json: bool) -> None:
    """What NAME is, without reading its data: family, source, splits and sizes, metrics,
    and how it is scored (its label set and where it came from, or generation)."""
    from spot.data import registry

    info = registry.get(name)
    report = {"name": name, "kind": "mixture" if info.is_mixture else "task",
              "family": info.family, "source": info.source, "description": info.description,
              "splits": {s: info.num_examples(s) for s in info.splits},
              "metrics": list(info.metrics), "members": list(info.members),
              "label_words": list(info.label_words) if info.label_words else None,
              "labels_note": info.labels_note, "location": info.location()}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{name}: {info.description}")
    click.echo(f"  {report['kind']}, family {info.family}, source {info.source}")
    click.echo("  splits: " + ", ".join(f"{s} {_size(n)}" for s, n in report["splits"].items()))
    if info.is_mixture:
        click.echo(f"  members: {', '.join(info.members)}")
    else:
        click.echo(f"  metrics: {', '.join(info.metrics) or '-'}")
        click.echo(f"  {_scoring(info)}")
    click.echo(f"  data: {report['location']}")


def register(cli: click.Group) -> None:
    cli.add_command(tasks)
