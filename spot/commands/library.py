"""`spot library ...`: add, list, show, remove, import, export and rank library entries.

The library folder is `--library DIR`, else `$SPOT_LIBRARY`, else `./spot_library`, for
these commands and every other one that reads a library (`spot retrieve`, `spot transfer`,
`spot affinity`, `spot bench retrieval`). `--root DIR`, the old spelling on `spot library`
and `spot bench retrieval`, is still accepted but hidden from the help.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Callable

import click
from click.core import ParameterSource

_OLD_ROOT = "_old_root_flag"


def library_folder_option(dest: str = "root", *, old_root_flag: bool = False,
                          temporary: bool = False) -> Callable[[Callable], Callable]:
    """`--library DIR`, the one spelling of the library folder flag, stored as `dest`.

    `old_root_flag` also accepts the deprecated `--root DIR` (hidden; `--library` wins only
    when both are given and agree). `temporary`: no default folder and no environment
    variable; None tells the command to use a temporary one (the benchmark).
    """
    folder = click.Path(file_okay=False)
    if temporary:
        main = click.option("--library", dest, default=None, type=folder,
                            help="Library folder to build or reuse (default: a temporary one).")
    else:
        main = click.option("--library", dest, envvar="SPOT_LIBRARY", default="spot_library",
                            show_default=True, show_envvar=True, type=folder,
                            help="Prompt library folder.")

    def decorate(fn: Callable) -> Callable:
        if not old_root_flag:
            return main(fn)

        @functools.wraps(fn)
        def with_old_flag(*args: Any, **kwargs: Any) -> Any:
            old = kwargs.pop(_OLD_ROOT)
            if old is not None:
                given = click.get_current_context().get_parameter_source(dest) == ParameterSource.COMMANDLINE
                if given and kwargs[dest] != old:
                    raise click.UsageError("--root is the old spelling of --library; give only one of them")
                kwargs[dest] = old
            return fn(*args, **kwargs)

        hidden = click.option("--root", _OLD_ROOT, default=None, type=folder, hidden=True,
                              help="Deprecated spelling of --library.")
        return main(hidden(with_old_flag))

    return decorate


_root_option = library_folder_option("root", old_root_flag=True)


def command_library(root: str, *, create: bool = False):
    """The library at `root`, closed when the running command ends (also on errors).

    Closing the last connection lets SQLite checkpoint its write-ahead log and delete the
    `-wal`/`-shm` files; a connection left open would leave them in the library folder.
    """
    return click.get_current_context().with_resource(_open(root, create=create))


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    from spot.errors import ConfigError

    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} must look like NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def _metadata_value(text: str) -> Any:
    """Numbers and JSON literals keep their type (`seed=3`); anything else stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _open(root: str, create: bool = False):
    from spot.library.store import PromptLibrary

    return PromptLibrary(root, create=create)


def _read(path: str):
    from pathlib import Path

    from spot.library.import_export import read_prompt_file

    return read_prompt_file(Path(path))


@dataclass(frozen=True)
class _AddRequest:
    """`spot library add`'s flags, parsed: what one `PromptLibrary.add` call gets."""

    task: str
    prompt_file: str
    embedding_file: str | None
    run: str | None
    model: str
    step: int | None
    metrics: dict[str, float]
    metadata: dict[str, Any]

    @classmethod
    def from_flags(cls, *, metrics: tuple[str, ...], meta: tuple[str, ...], **flags: Any) -> "_AddRequest":
        from spot.errors import ConfigError

        metric_values = {}
        for name, text in _pairs(metrics, "--metric").items():
            try:
                metric_values[name] = float(text)
            except ValueError:
                raise ConfigError(f"--metric {name}={text!r}: the value must be a number") from None
        metadata = {k: _metadata_value(v) for k, v in _pairs(meta, "--meta").items()}
        return cls(metrics=metric_values, metadata=metadata, **flags)


@click.group("library")
def library() -> None:
    """The prompt library: source prompts keyed by task embeddings.

    Every command takes the library folder as --library DIR (default: $SPOT_LIBRARY, else
    ./spot_library).
    """


@library.command("add")
@click.option("--task", required=True, help="Task name.")
@click.option("--prompt", "prompt_file", required=True, type=click.Path(exists=True), help="Prompt file.")
@click.option("--embedding", "embedding_file", type=click.Path(exists=True),
              help="Task embedding file (early checkpoint); without it the prompt is the key.")
@click.option("--run", help="Run name (default: next free integer for this task and model).")
@click.option("--model", default="unspecified", show_default=True, help="Model the prompt was trained on.")
@click.option("--step", type=int, help="Training step of the embedding checkpoint.")
@click.option("--metric", "metrics", multiple=True, metavar="NAME=VALUE", help="A score, e.g. accuracy=91.2.")
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE", help="Extra metadata, e.g. source=glue.")
@_root_option
def add_cmd(task, prompt_file, embedding_file, run, model, step, metrics, meta, root) -> None:
    """Add a prompt (and optionally its task embedding)."""
    request = _AddRequest.from_flags(task=task, prompt_file=prompt_file, embedding_file=embedding_file,
                                     run=run, model=model, step=step, metrics=metrics, meta=meta)
    with _open(root, create=True) as lib:
        entry = lib.add(task=request.task, prompt=_read(request.prompt_file),
                        embedding=None if request.embedding_file is None else _read(request.embedding_file),
                        run=request.run, model=request.model, step=request.step, metrics=request.metrics,
                        **request.metadata)
    click.echo(entry.id)


@library.command("list")
@click.option("--task", help="Only this task.")
@click.option("--model", help="Only this model.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_root_option
def list_cmd(task, model, as_json, root) -> None:
    """List entries in insertion order."""
    with _open(root) as lib:
        entries = lib.entries(task=task, model=model)
    if as_json:
        for e in entries:
            click.echo(json.dumps(e.to_dict(), sort_keys=True))
        return
    if not entries:
        click.echo("(no entries)")
        return
    header = ("id", "task", "run", "model", "step", "kind", "shape", "metrics")
    table = [header] + [(e.id, e.task, e.run, e.model, "" if e.step is None else str(e.step), e.kind,
                         "x".join(map(str, e.prompt_shape)),
                         " ".join(f"{k}={v:g}" for k, v in sorted(e.metrics.items()))) for e in entries]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@library.command("show")
@click.argument("entry_id")
@_root_option
def show_cmd(entry_id, root) -> None:
    """Everything about one entry (id or unique prefix), as JSON.

    Its arrays are read and checked too: a missing or corrupt file is listed under
    `problems` (the metadata is still shown) and the command exits with status 2.
    """
    from spot.errors import LibraryError

    problems = []
    with _open(root) as lib:
        entry = lib.get(entry_id)
        info = entry.to_dict()
        info["prompt_stats"] = None
        try:
            prompt = lib.load_prompt(entry)
            info["prompt_stats"] = {"mean": float(prompt.mean()), "std": float(prompt.std()),
                                    "min": float(prompt.min()), "max": float(prompt.max())}
        except LibraryError as e:
            problems.append(str(e))
        if entry.kind == "embedding":  # otherwise the prompt is its own key
            try:
                lib.load_embedding(entry)
            except LibraryError as e:
                problems.append(str(e))
    if problems:
        info["problems"] = problems
    click.echo(json.dumps(info, indent=2, sort_keys=True))
    if problems:
        raise LibraryError("; ".join(problems))


@library.command("remove")
@click.argument("entry_id")
@_root_option
def remove_cmd(entry_id, root) -> None:
    """Remove one entry and its arrays."""
    with _open(root) as lib:
        entry = lib.get(entry_id)
        lib.remove(entry)
    click.echo(f"removed {entry.id} ({entry.task} run {entry.run})")


@library.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--task", help="Task for every file (default: each file's stem).")
@click.option("--model", help="Model name (default: from a 'prompts_<model>' folder, else 'unspecified').")
@_root_option
def import_cmd(paths, task, model, root) -> None:
    """Import prompt files or folders of them (e.g. the prompt-tuning release's .npy prompts)."""
    with _open(root, create=True) as lib:
        entries = lib.import_prompts(paths, task=task, model=model)
    for e in entries:
        click.echo(f"{e.id}  {e.task}  run {e.run}  {e.model}  {'x'.join(map(str, e.prompt_shape))}")


@library.command("export")
@click.argument("entry_id")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output file (.npy or .safetensors; a .json sidecar goes beside it).")
@click.option("--which", type=click.Choice(["prompt", "embedding"]), default="prompt", show_default=True)
@_root_option
def export_cmd(entry_id, out, which, root) -> None:
    """Write an entry's prompt or task embedding to a file."""
    with _open(root) as lib:
        path = lib.export(entry_id, out, which=which)
    click.echo(f"wrote {path}")


@library.command("rank")
@click.argument("query", type=click.Path(exists=True, dir_okay=False))
@click.option("--metric", default="per_token_cosine", show_default=True)
@click.option("--k", "k", type=int, help="How many to show (default: all).")
@click.option("--by", type=click.Choice(["entry", "task"]), default="entry", show_default=True)
@click.option("--model", help="Only entries of this model.")
@_root_option
def rank_cmd(query, metric, k, by, model, root) -> None:
    """Rank entries (or tasks) by similarity to a query task embedding."""
    with _open(root) as lib:
        ranked = lib.rank(_read(query), metric=metric, k=k, by=by, model=model)
    for item, score in ranked:
        label = item if by == "task" else f"{item.id}  {item.task}  run {item.run}"
        click.echo(f"{score:.6f}  {label}")


@library.command("cleanup")
@click.option("--min-age", type=float, default=3600.0, show_default=True,
              help="Only delete orphaned files older than this many seconds.")
@_root_option
def cleanup_cmd(min_age, root) -> None:
    """Delete array files left behind by writers that crashed mid-add."""
    with _open(root) as lib:
        removed = lib.cleanup(min_age_s=min_age)
    click.echo(f"removed {len(removed)} orphaned file(s)")


def register(cli: click.Group) -> None:
    cli.add_command(library)
