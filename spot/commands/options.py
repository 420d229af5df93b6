"""Flags several commands share, declared once so they mean the same everywhere.

Each is a decorator; `training_options` stacks the ones every training command takes (the
flags of `spot train-source`, `train-target`, `retrieve`, `transfer`). `--task-file` comes
in two forms with one spelling: `task_file_option` passes the paths on (they become
`data.task_files` of a run config, so a resumed run sees them too), while
`registered_task_file_option` registers the files before the command body runs (for
commands that take no run config, such as `spot tasks`).
"""

from __future__ import annotations

from typing import Callable

import click

Decorator = Callable[[Callable], Callable]

TASK_FILE_HELP = "Register a task from a JSONL/TSV/CSV file or TOML spec (repeatable)."


def stack(*decorators: Decorator) -> Decorator:
    """One decorator applying `decorators` so they list in the given order in --help."""
    def apply(fn: Callable) -> Callable:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


def model_option(fn: Callable) -> Callable:
    return click.option("--model", "model", help="Preset (small, base, large, xl, xxl, "
                        "embedded) or checkpoint path / HF id / gs:// t5x path.")(fn)


def checkpoint_option(fn: Callable) -> Callable:
    return click.option("--checkpoint",
                        help="Checkpoint location overriding the preset's default.")(fn)


def vocab_option(fn: Callable) -> Callable:
    return click.option("--vocab", help="SentencePiece model (default: beside the checkpoint, "
                        "else T5's public vocabulary).")(fn)


def mode_option(fn: Callable) -> Callable:
    return click.option("--mode", type=click.Choice(["prompt", "model"]),
                        help="prompt tuning (default) or model tuning (all weights; lr 1e-3)."
                        )(fn)


def batch_size_option(fn: Callable) -> Callable:
    return click.option("--batch-size", type=int, help="data.batch_size")(fn)


def config_file_option(fn: Callable) -> Callable:
    return click.option("--config", "config_files", multiple=True,
                        type=click.Path(dir_okay=False),
                        help="TOML config file(s), applied in order before the flags.")(fn)


def set_option(fn: Callable) -> Callable:
    return click.option("--set", "set_args", multiple=True, metavar="KEY=VALUE",
                        help="Override any config key, e.g. --set train.eval_every=1000.")(fn)


def task_file_option(fn: Callable) -> Callable:
    """`--task-file PATH` (repeatable) as `task_files`, for a command that builds a config."""
    return click.option("--task-file", "task_files", multiple=True, type=click.Path(),
                        help=TASK_FILE_HELP)(fn)


def registered_task_file_option(fn: Callable) -> Callable:
    """`--task-file PATH` (repeatable) for a command that only needs the task registered:
    the files are validated and registered before the command body runs."""
    def callback(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]):
        from spot.data.local import register_task_file

        names = [register_task_file(v) for v in value or ()]
        ctx.meta.setdefault("spot_task_files", []).extend(names)
        return tuple(value or ())

    return click.option("--task-file", "task_files", multiple=True, type=click.Path(),
                        expose_value=False, is_eager=True, callback=callback,
                        help=TASK_FILE_HELP)(fn)


def dry_run_option(fn: Callable) -> Callable:
    return click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")(fn)


# --config then --set: a TOML RunConfig and KEY=VALUE overrides (flags win over the files,
# --set wins over the flags); every command that builds a RunConfig takes both.
config_options = stack(config_file_option, set_option)

training_options = stack(
    model_option, checkpoint_option,
    click.option("--steps", type=int, help="Training steps (train.steps)."),
    click.option("--out", "out", type=click.Path(file_okay=False),
                 help="Run folder (train.out_dir); rerunning resumes it."),
    click.option("--seed", type=int, help="Seed for init, dropout and data order."),
    batch_size_option, vocab_option, mode_option,
    click.option("--init", "init", type=click.Path(dir_okay=True),
                 help="Initialize the prompt from this file (.npy, safetensors, PEFT dir)."),
    click.option("--resize-prompt", is_flag=True, default=None,
                 help="Allow an --init prompt of another length (truncate or pad)."),
    config_options, task_file_option, dry_run_option)
