"""`spot train-source`, `spot train-target`, `spot eval`, `spot predict`.

Every flag is an override of a typed `RunConfig` (see spot/config.py); `--config FILE` loads
TOML files first and `--set section.key=value` comes last, in all four commands, so `eval`
and `predict` can reuse a run's config file. `--dry-run` prints the resolved config and exits.
Shared flags are declared in `spot.commands.options`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from spot.commands.options import (
    checkpoint_option,
    config_options,
    model_option,
    task_file_option,
    training_options,
    vocab_option,
)


def build_config(*, task: str | None = None, mixture: str | None = None,
                 default_init: str = "sampled_vocab", **flags: Any):
    """Resolve defaults < TOML files < flags < --set into a validated RunConfig (the
    mode-dependent defaults come from `spot.config.resolve`, as for every entry point)."""
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


def _say_how_scored(config, log) -> None:
    """One line per task whose label set was inferred, or that is scored by generation
    for want of one (user task files; docs/tasks.md, "Label words")."""
    from spot.data import registry
    from spot.data.local import register_task_file

    for path in config.data.task_files:
        register_task_file(path)
    for name in registry.get(config.task_or_mixture).members:
        info = registry.get(name)
        if info.labels_note and info.source == "file":
            log(f"{name}: labels {' | '.join(info.label_words)} {info.labels_note}"
                if info.label_words else f"{name}: {info.labels_note}")


def _run_training(config) -> None:
    from spot.train.run import train

    log = lambda s: click.echo(s, err=True)  # noqa: E731
    _say_how_scored(config, log)
    result = train(config, log=log)
    summary = {
        "out_dir": str(result.out_dir), "final_step": result.final_step,
        "best_step": result.best_step, "best_score": result.best_score,
        "prompts": {k: str(v) for k, v in result.prompt_paths.items()}}
    if config.train.mode == "model":  # the trained weights, loadable with --checkpoint
        summary["model"] = str(result.out_dir / "model")
    summary.update({"resumed_from": result.resumed_from, "seconds": round(result.seconds, 1)})
    click.echo(json.dumps(summary, indent=2))


@click.command("train-source")
@click.option("--task", help="A registered task (see `spot tasks`).")
@click.option("--mixture", help="A registered mixture, e.g. glue, superglue, offline_sources.")
@training_options
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
@training_options
def train_target(task, dry_run, **flags):
    """Train a target prompt; --init PROMPT transfers a source prompt (SPoT), otherwise
    the prompt starts from the task's class labels (plain prompt tuning).

    With --mode model every weight trains instead; OUT/model is then the tuned checkpoint
    (with the run's vocabulary), for `spot eval --checkpoint OUT/model`.
    """
    config = build_config(task=task, default_init="class_labels", **flags)
    if dry_run:
        click.echo(config.to_json())
        return
    _run_training(config)


def _at_least_one(**counts: int | None) -> None:
    """Refuse a count flag below 1 before any model is loaded (unset flags pass)."""
    from spot.errors import ConfigError

    for flag, value in counts.items():
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")


# Flags of `spot eval` / `spot predict` and the RunConfig keys they set.
EVAL_KEYS = {"task": "data.task", "model": "model.name", "checkpoint": "model.checkpoint",
             "vocab": "data.vocab", "split": "data.eval_split",
             "input_length": "data.input_length", "target_length": "data.target_length",
             "batch_size": "data.eval_batch_size", "max_examples": "data.max_eval_examples",
             "method": "train.eval_method"}
PREDICT_KEYS = {"task": "data.task", "model": "model.name", "checkpoint": "model.checkpoint",
                "vocab": "data.vocab", "input_length": "data.input_length"}


def inference_config(flags: dict[str, Any], keys: dict[str, str]):
    """defaults < TOML files (--config) < flags < --set, for a command that loads a trained
    model: the same precedence as the training commands, so a run's config file serves."""
    from spot.config import RunConfig, apply_overrides, load_toml, parse_set_args

    config = RunConfig()
    for path in flags.get("config_files") or ():
        config = load_toml(path, config)
    overrides: dict[str, Any] = {key: flags[flag] for flag, key in keys.items()
                                 if flags.get(flag) is not None}
    if flags.get("task"):
        overrides["data.mixture"] = ""  # --task names what to score, whatever the file trained
    if flags.get("task_files"):
        overrides["data.task_files"] = tuple(str(p) for p in flags["task_files"])
    overrides.update(parse_set_args(flags.get("set_args") or ()))
    return apply_overrides(config, overrides)


def _load_for_inference(config):
    from spot.data.local import register_task_file
    from spot.train.run import build_model, resolve_vocab

    for f in config.data.task_files:
        register_task_file(f)
    return build_model(config), resolve_vocab(config)


def score_prompt(config, prompt_path: str | None, log) -> tuple[dict[str, Any], float, int]:
    """(metrics, score, examples) of a prompt, or of the model alone without one (a
    model-tuned checkpoint), on config.data.task's config.data.eval_split."""
    from spot.data import pipeline
    from spot.model.prompt import validate_prompt
    from spot.model.prompt_files import load_prompt
    from spot.train.evaluate import make_evaluator

    d = config.data
    t5, vocab = _load_for_inference(config)
    _say_how_scored(config, log)
    trainable, frozen = {"params": t5.params}, {}
    if prompt_path:
        prompt = validate_prompt(load_prompt(prompt_path), t5.config.emb_dim, source=prompt_path)
        trainable, frozen = {"prompt": prompt}, t5.params
    es = pipeline.eval_set(d.task, vocab=vocab, split=d.eval_split, input_length=d.input_length,
                           target_length=d.target_length, max_examples=d.max_eval_examples or None)
    evaluate = make_evaluator(t5.module, {d.task: es}, vocab=vocab, method=config.train.eval_method,
                              batch_size=d.eval_batch_size, max_length=d.target_length)
    metrics, score = evaluate(trainable, frozen)
    return metrics, score, len(es.targets)


def _default(key: str) -> str:
    from spot.config import RunConfig

    section, name = key.split(".")
    return f"{key}; default {getattr(getattr(RunConfig(), section), name)!r}"


@click.command("eval")
@click.option("--task", help="The task to score (data.task; may come from --config).")
@click.option("--prompt", "prompt_path", type=click.Path(exists=True),
              help="The prompt to score; omit it to score a model-tuned checkpoint "
                   "(--checkpoint RUN/model).")
@model_option
@checkpoint_option
@vocab_option
@click.option("--split", help=_default("data.eval_split"))
@click.option("--input-length", type=int, help=_default("data.input_length"))
@click.option("--target-length", type=int, help=_default("data.target_length"))
@click.option("--batch-size", type=int, help=_default("data.eval_batch_size"))
@click.option("--max-examples", type=int,
              help=_default("data.max_eval_examples") + " (0 = the whole split)")
@click.option("--method", type=click.Choice(["auto", "rank", "decode"]),
              help=_default("train.eval_method"))
@config_options
@task_file_option
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON.")
def eval_cmd(prompt_path, as_json, **flags):
    """Score a prompt on a task's split with the task's own metrics.

    Flags override --config TOML files (a RunConfig, e.g. the run's own) and --set wins."""
    from spot.config import validate

    _at_least_one(**{"--batch-size": flags["batch_size"], "--input-length": flags["input_length"],
                     "--target-length": flags["target_length"]})
    config = validate(inference_config(flags, EVAL_KEYS))
    metrics, score, n = score_prompt(config, prompt_path, lambda s: click.echo(s, err=True))
    task, split = config.data.task, config.data.eval_split
    if as_json:
        click.echo(json.dumps({"task": task, "split": split, "score": score, **metrics},
                              indent=2))
    else:
        click.echo(f"{task} [{split}, {n} examples]")
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
@click.option("--task", default=None, help="Task for lines that name none (data.task).")
@model_option
@checkpoint_option
@vocab_option
@click.option("--input-length", type=int, help=_default("data.input_length"))
@click.option("--max-length", default=64, show_default=True, help="Decoding length.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--on-error", type=click.Choice(["skip", "stop"]), default="skip",
              show_default=True, help="Bad lines: report and skip them, or stop the run.")
@config_options
@task_file_option
def predict_cmd(prompt_path, library_root, input_path, output_path, max_length, batch_size,
                on_error, **flags):
    """Predict for every JSONL line, in input order; lines of several tasks share batches.

    Flags override --config TOML files (a RunConfig, e.g. the run's own) and --set wins."""
    import contextlib

    from spot.fileio import atomic_open
    from spot.workflows.serve import PredictConfig, check_output_spares_inputs, predict_jsonl

    if bool(prompt_path) == bool(library_root):
        raise click.UsageError("give exactly one of --prompt or --library")
    _at_least_one(**{"--batch-size": batch_size, "--input-length": flags["input_length"],
                     "--max-length": max_length})
    config = inference_config(flags, PREDICT_KEYS)
    d = config.data
    _at_least_one(**{"data.input_length": d.input_length})
    settings = PredictConfig(prompt_path=prompt_path or "", library_root=library_root or "",
                             default_task=d.task, input_length=d.input_length,
                             max_length=max_length, batch_size=batch_size, on_error=on_error)
    with open(input_path, "rb") as f:
        if not any(line.strip() for line in f):
            raise click.UsageError(f"--input {input_path} has no lines to predict (it is empty "
                                   "or blank)")
    if output_path:
        check_output_spares_inputs(output_path, {"--input": [input_path], "--prompt": [prompt_path],
                                                 "--vocab": [d.vocab or None],
                                                 "--task-file": d.task_files,
                                                 "--library": [library_root]})
    t5, vocab_obj = _load_for_inference(config)
    # A file output appears only once every line is predicted (a failed run keeps the old one).
    with atomic_open(output_path, "w") if output_path else contextlib.nullcontext(sys.stdout) as out:
        report = predict_jsonl(t5, vocab_obj, Path(input_path), out, settings,
                               warn=lambda s: click.echo(s, err=True))
    click.echo(f"{report['written']} predictions, {report['skipped']} lines skipped", err=True)
    if not report["written"]:
        # every line was bad (with --on-error stop the first one already stopped the run)
        click.echo("error: no line could be predicted", err=True)
        sys.exit(1)


def register(cli: click.Group) -> None:
    for cmd in (train_source, train_target, eval_cmd, predict_cmd):
        cli.add_command(cmd)
