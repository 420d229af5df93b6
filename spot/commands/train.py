"""`spot train-source`, `spot train-target`, `spot eval`, `spot predict`.

Every flag is an override of a typed `RunConfig` (see spot/config.py); `--config FILE` loads
TOML files first and `--set section.key=value` comes last. `--dry-run` prints the resolved
config and exits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def _common_options(fn):
    options = [
        click.option("--model", "model", help="Preset (small, base, large, xl, xxl, embedded) "
                     "or checkpoint path / HF id / gs:// t5x path."),
        click.option("--checkpoint", help="Checkpoint location overriding the preset's default."),
        click.option("--steps", type=int, help="Training steps (train.steps)."),
        click.option("--out", "out", type=click.Path(file_okay=False),
                     help="Run folder (train.out_dir); rerunning resumes it."),
        click.option("--seed", type=int, help="Seed for init, dropout and data order."),
        click.option("--batch-size", type=int, help="data.batch_size"),
        click.option("--vocab", help="SentencePiece model (default: beside the checkpoint, "
                     "else T5's public vocabulary)."),
        click.option("--mode", type=click.Choice(["prompt", "model"]),
                     help="prompt tuning (default) or model tuning (all weights; lr 1e-3)."),
        click.option("--init", "init", type=click.Path(dir_okay=True),
                     help="Initialize the prompt from this file (.npy, safetensors, PEFT dir)."),
        click.option("--resize-prompt", is_flag=True, default=None,
                     help="Allow an --init prompt of another length (truncate or pad)."),
        click.option("--config", "config_files", multiple=True, type=click.Path(dir_okay=False),
                     help="TOML config file(s), applied in order before the flags."),
        click.option("--set", "set_args", multiple=True, metavar="KEY=VALUE",
                     help="Override any config key, e.g. --set train.eval_every=1000."),
        click.option("--task-file", "task_files", multiple=True, type=click.Path(),
                     help="Register a task from a JSONL/TSV/CSV file or TOML spec."),
        click.option("--dry-run", is_flag=True, help="Print the resolved config and exit."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_config(*, task: str | None = None, mixture: str | None = None,
                 default_init: str = "sampled_vocab", **flags: Any):
    """Resolve defaults < TOML files < flags < --set into a validated RunConfig."""
    from spot.config import RunConfig, apply_overrides, load_toml, parse_set_args, validate

    config = RunConfig()
    config = apply_overrides(config, {"prompt.init": default_init})
    for path in flags.get("config_files") or ():
        config = load_toml(path, config)
    overrides: dict[str, Any] = {}
    if task:
        overrides["data.task"] = task
    if mixture:
        overrides["data.mixture"] = mixture
    mapping = {"model": "model.name", "checkpoint": "model.checkpoint", "steps": "train.steps",
               "out": "train.out_dir", "seed": "train.seed", "batch_size": "data.batch_size",
               "vocab": "data.vocab", "mode": "train.mode", "resize_prompt": "prompt.resize"}
    for flag, key in mapping.items():
        if flags.get(flag) is not None:
            overrides[key] = flags[flag]
    if flags.get("mode") == "model":
        # The paper's model-tuning baseline: Adafactor at 1e-3 with factored statistics.
        overrides.setdefault("optimizer.learning_rate", 1e-3)
        overrides.setdefault("optimizer.factored", True)
    if flags.get("init"):
        overrides["prompt.init"] = "file"
        overrides["prompt.init_path"] = str(flags["init"])
    if flags.get("task_files"):
        overrides["data.task_files"] = tuple(str(p) for p in flags["task_files"])
    overrides.update(parse_set_args(flags.get("set_args") or ()))
    config = apply_overrides(config, overrides)
    if config.data.task and config.data.mixture:
        config = apply_overrides(config, {"data.mixture": ""} if task else {"data.task": ""})
    return validate(config)


def _run_training(config) -> None:
    from spot.train.run import train

    result = train(config, log=lambda s: click.echo(s, err=True))
    click.echo(json.dumps({
        "out_dir": str(result.out_dir), "final_step": result.final_step,
        "best_step": result.best_step, "best_score": result.best_score,
        "prompts": {k: str(v) for k, v in result.prompt_paths.items()},
        "resumed_from": result.resumed_from, "seconds": round(result.seconds, 1)}, indent=2))


@click.command("train-source")
@click.option("--task", help="A registered task (see `spot tasks`).")
@click.option("--mixture", help="A registered mixture, e.g. glue, superglue, offline_sources.")
@_common_options
def train_source(task, mixture, dry_run, **flags):
    """Train a source prompt on a task or mixture (sampled-vocabulary init by default).

    Writes OUT/prompts/best.npy (the source prompt), embedding_step<N>.npy (the task
    embedding), final.npy, metrics, TensorBoard events and resumable checkpoints.
    """
    config = build_config(task=task, mixture=mixture, default_init="sampled_vocab", **flags)
    if dry_run:
        click.echo(config.to_json())
        return
    _run_training(config)


@click.command("train-target")
@click.option("--task", required=True, help="The target task.")
@_common_options
def train_target(task, dry_run, **flags):
    """Train a target prompt; --init PROMPT transfers a source prompt (SPoT), otherwise
    the prompt starts from the task's class labels (plain prompt tuning)."""
    config = build_config(task=task, default_init="class_labels", **flags)
    if dry_run:
        click.echo(config.to_json())
        return
    _run_training(config)


def _at_least_one(**counts: int) -> None:
    """Refuse a count flag below 1 before any model is loaded."""
    from spot.errors import ConfigError

    for flag, value in counts.items():
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")


def _load_for_inference(model, checkpoint, vocab, task_files, dtype="auto"):
    from spot.config import RunConfig, apply_overrides
    from spot.data.local import register_task_file
    from spot.train.run import build_model, resolve_vocab

    for f in task_files or ():
        register_task_file(f)
    overrides = {"model.dtype": dtype}
    if model:
        overrides["model.name"] = model
    if checkpoint:
        overrides["model.checkpoint"] = checkpoint
    if vocab:
        overrides["data.vocab"] = vocab
    config = apply_overrides(RunConfig(), overrides)
    return build_model(config), resolve_vocab(config), config


@click.command("eval")
@click.option("--task", required=True)
@click.option("--prompt", "prompt_path", required=True, type=click.Path(exists=True))
@click.option("--model", default=None)
@click.option("--checkpoint", default=None)
@click.option("--vocab", default=None)
@click.option("--split", default="validation", show_default=True)
@click.option("--input-length", default=512, show_default=True)
@click.option("--target-length", default=128, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--max-examples", default=0, help="0 = the whole split.")
@click.option("--method", type=click.Choice(["auto", "rank", "decode"]), default="auto")
@click.option("--task-file", "task_files", multiple=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON.")
def eval_cmd(task, prompt_path, model, checkpoint, vocab, split, input_length, target_length,
             batch_size, max_examples, method, task_files, as_json):
    """Score a prompt on a task's split with the task's own metrics."""
    from spot.data import pipeline
    from spot.model.prompt import validate_prompt
    from spot.model.prompt_files import load_prompt
    from spot.train.evaluate import make_evaluator

    _at_least_one(**{"--batch-size": batch_size, "--input-length": input_length,
                     "--target-length": target_length})
    t5, vocab_obj, _ = _load_for_inference(model, checkpoint, vocab, task_files)
    prompt = validate_prompt(load_prompt(prompt_path), t5.config.emb_dim, source=prompt_path)
    es = pipeline.eval_set(task, vocab=vocab_obj, split=split, input_length=input_length,
                           target_length=target_length, max_examples=max_examples or None)
    evaluate = make_evaluator(t5.module, {task: es}, vocab=vocab_obj, method=method,
                              batch_size=batch_size, max_length=target_length)
    metrics, score = evaluate({"prompt": prompt}, t5.params)
    if as_json:
        click.echo(json.dumps({"task": task, "split": split, "score": score, **metrics},
                              indent=2))
    else:
        click.echo(f"{task} [{split}, {len(es.targets)} examples]")
        for k, v in metrics.items():
            click.echo(f"  {k:>20}: {v:.2f}")


@click.command("predict")
@click.option("--prompt", "prompt_path", type=click.Path(exists=True),
              help="One prompt for every line (or use --library for per-task prompts).")
@click.option("--library", "library_root", type=click.Path(file_okay=False),
              help="Prompt library: each line's task (or `entry`) picks its prompt.")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSONL; each line has `inputs` (text) and optionally `task` and `entry`.")
@click.option("--output", "output_path", type=click.Path(dir_okay=False),
              help="Write JSONL here (default: stdout).")
@click.option("--task", default=None, help="Task for lines that name none.")
@click.option("--model", default=None)
@click.option("--checkpoint", default=None)
@click.option("--vocab", default=None)
@click.option("--input-length", default=512, show_default=True)
@click.option("--max-length", default=64, show_default=True, help="Decoding length.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--on-error", type=click.Choice(["skip", "stop"]), default="skip",
              show_default=True, help="Bad lines: report and skip them, or stop the run.")
@click.option("--task-file", "task_files", multiple=True, type=click.Path())
def predict_cmd(prompt_path, library_root, input_path, output_path, task, model, checkpoint,
                vocab, input_length, max_length, batch_size, on_error, task_files):
    """Predict for every JSONL line, in input order; lines of several tasks share batches."""
    import contextlib

    from spot.fileio import atomic_open
    from spot.workflows.serve import check_output_spares_inputs, predict_jsonl

    if bool(prompt_path) == bool(library_root):
        raise click.UsageError("give exactly one of --prompt or --library")
    _at_least_one(**{"--batch-size": batch_size, "--input-length": input_length,
                     "--max-length": max_length})
    if output_path:
        check_output_spares_inputs(output_path, {"--input": [input_path], "--prompt": [prompt_path],
                                                 "--vocab": [vocab], "--task-file": task_files,
                                                 "--library": [library_root]})
    t5, vocab_obj, _ = _load_for_inference(model, checkpoint, vocab, task_files)
    # A file output appears only once every line is predicted (a failed run keeps the old one).
    with atomic_open(output_path, "w") if output_path else contextlib.nullcontext(sys.stdout) as out:
        report = predict_jsonl(t5, vocab_obj, Path(input_path), out, prompt_path=prompt_path,
                               library_root=library_root, default_task=task,
                               input_length=input_length, max_length=max_length,
                               batch_size=batch_size, on_error=on_error,
                               warn=lambda s: click.echo(s, err=True))
    click.echo(f"{report['written']} predictions, {report['skipped']} lines skipped", err=True)
    if report["skipped"] and on_error == "stop":
        sys.exit(1)


def register(cli: click.Group) -> None:
    for cmd in (train_source, train_target, eval_cmd, predict_cmd):
        cli.add_command(cmd)


