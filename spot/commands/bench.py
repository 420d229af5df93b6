"""`spot bench ...`: throughput benchmarks that print one JSON object each.

    spot bench train-step --model t5_1_1_small --random-weights --batch 8 --input-length 64 \
        --target-length 8 --prompt-length 100 --steps 20 --dtype float32 --json
    spot bench train-step --config configs/runs/source_glue.toml --set model.remat=dots --json

The train-step, decode and predict benchmarks measure a `RunConfig`: their shorthand flags
(--model, --batch, --dtype, --remat, ...) and `--set` are overrides of it, applied after
`--config` files, as in the train commands.
"""

from __future__ import annotations

import json

import click

from spot.bench.settings import DECODE_DEFAULTS, PREDICT_DEFAULTS, TRAIN_STEP_DEFAULTS
from spot.commands.library import library_folder_option
from spot.config import REMAT_POLICIES
from spot.model.t5_config import ATTENTION_IMPLS, DTYPE_CHOICES

_DTYPES = click.Choice(list(DTYPE_CHOICES))


def _emit(result: dict, as_json: bool) -> None:
    click.echo(json.dumps(result, sort_keys=True) if as_json
               else json.dumps(result, indent=2, sort_keys=True))


# Shorthand flags -> RunConfig keys (--max-length is the decoded length, data.target_length).
_RUN_FLAGS = {"model": "model.name", "checkpoint": "model.checkpoint",
              "random_weights": "model.random_weights", "dtype": "model.dtype",
              "param_dtype": "model.param_dtype", "attention_impl": "model.attention_impl",
              "remat": "model.remat", "scan_layers": "model.scan_layers",
              "batch": "data.batch_size", "input_length": "data.input_length",
              "target_length": "data.target_length", "max_length": "data.target_length",
              "prompt_length": "prompt.length", "seed": "train.seed"}


def _run_config(defaults: dict, flags: dict):
    """The benchmark's defaults < --config files < shorthand flags < --set."""
    from spot.bench.settings import bench_config
    from spot.config import parse_set_args

    overrides = {key: flags[flag] for flag, key in _RUN_FLAGS.items()
                 if flags.get(flag) is not None}
    if flags.get("dtype") is not None and flags.get("param_dtype") is None:
        overrides["model.param_dtype"] = flags["dtype"]  # the frozen weights follow --dtype
    overrides.update(parse_set_args(flags.get("set_args") or ()))
    return bench_config(defaults, flags.get("config_files") or (), overrides)


def _run_options(defaults: dict, *shapes: tuple[str, str, str]):
    """--model, --checkpoint, --random-weights, the shape flags (name, config key, help),
    --dtype, --seed, --config and --set: every one a RunConfig override."""
    def default(key: str) -> str:
        return f"{key}, default {defaults.get(key, '')!s}" if key in defaults else key

    options = [
        click.option("--model", help="Preset (t5_1_1_small..xxl, test_tiny) or checkpoint "
                     f"path ({default('model.name')})."),
        click.option("--checkpoint", help="Checkpoint path when --model is a preset (else "
                     "--model is the path)."),
        click.option("--random-weights", is_flag=True, default=None,
                     help="t5x random initialization of the preset (no checkpoint needed)."),
        *[click.option(flag, type=int, help=f"{text} ({default(key)}).")
          for flag, key, text in shapes],
        click.option("--dtype", type=_DTYPES, help="Compute dtype, and the frozen weights' "
                     "unless --param-dtype (auto: bfloat16 on GPU/TPU, float32 on CPU)."),
        click.option("--seed", type=int, help="train.seed, default 0."),
        click.option("--config", "config_files", multiple=True, type=click.Path(dir_okay=False),
                     help="TOML config file(s) (a run's config), applied in order before the "
                     "flags."),
        click.option("--set", "set_args", multiple=True, metavar="KEY=VALUE",
                     help="Override any config key last, e.g. --set model.scan_layers=true."),
        click.option("--json", "as_json", is_flag=True, help="One line of JSON."),
    ]

    def wrap(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return wrap


@click.group()
def bench() -> None:
    """Benchmarks: train step, decoding, retrieval, input pipeline, mixed-task inference."""


@bench.command("train-step")
@_run_options(TRAIN_STEP_DEFAULTS, ("--batch", "data.batch_size", "Batch size"),
              ("--input-length", "data.input_length", "Input tokens per example"),
              ("--target-length", "data.target_length", "Target tokens per example"),
              ("--prompt-length", "prompt.length", "Prompt tokens"))
@click.option("--steps", default=20, show_default=True, help="Timed steps.")
@click.option("--warmup", default=3, show_default=True, help="Untimed steps after compiling.")
@click.option("--param-dtype", type=_DTYPES, default=None,
              help="Frozen-weight dtype (model.param_dtype; default: the compute dtype).")
@click.option("--attention", "attention_impl", type=click.Choice(list(ATTENTION_IMPLS)),
              help="model.attention_impl, default xla.")
@click.option("--remat", type=click.Choice(list(REMAT_POLICIES)), default=None,
              is_flag=False, flag_value="full",
              help="model.remat: rematerialize each layer in the backward pass (bare --remat: "
                   "full; default none).")
@click.option("--scan-layers", is_flag=True, default=None,
              help="model.scan_layers: one nn.scan over each stack's layers (compile time "
                   "independent of depth).")
@click.option("--compile-only", is_flag=True,
              help="Compile and report FLOPs and the compiled step's memory; run nothing.")
def train_step_cmd(steps, warmup, compile_only, as_json, **flags):
    """Time the real prompt-tuning train step (forward, backward, Adafactor update).

    The step is that of a run config: the benchmark's defaults, then --config files, the
    flags and --set."""
    from spot.bench.settings import Timing
    from spot.bench.train_step import bench_train_step

    config = _run_config(TRAIN_STEP_DEFAULTS, flags)
    timing = Timing(steps=steps, warmup=warmup, compile_only=compile_only)
    _emit(bench_train_step(config, timing), as_json)


@bench.command("decode")
@_run_options(DECODE_DEFAULTS, ("--batch", "data.batch_size", "Batch size"),
              ("--input-length", "data.input_length", "Input tokens per example"),
              ("--prompt-length", "prompt.length", "Prompt tokens"),
              ("--max-length", "data.target_length", "Decoded tokens per example"))
@click.option("--steps", default=5, show_default=True, help="Timed decode calls.")
@click.option("--attention", "attention_impl", type=click.Choice(list(ATTENTION_IMPLS)),
              help="model.attention_impl, default xla.")
def decode_cmd(steps, as_json, **flags):
    """Time batched greedy decoding with a KV cache (evaluation and `spot predict`)."""
    from spot.bench.decode import bench_decode
    from spot.bench.settings import Timing

    config = _run_config(DECODE_DEFAULTS, flags)
    _emit(bench_decode(config, Timing(steps=steps, warmup=1)), as_json)


@bench.command("predict")
@_run_options(PREDICT_DEFAULTS, ("--batch", "data.batch_size", "Batch size"),
              ("--input-length", "data.input_length", "Input tokens per request"),
              ("--max-length", "data.target_length", "Decoded tokens per open-ended request"),
              ("--prompt-length", "prompt.length", "Prompt tokens"))
@click.option("--tasks", default=4, show_default=True, help="Distinct tasks (prompts).")
@click.option("--requests", default=64, show_default=True)
@click.option("--repeats", default=3, show_default=True)
def predict_cmd(tasks, requests, repeats, as_json, **flags):
    """Mixed-task batches (one model, many prompts) against one task at a time."""
    from spot.bench.predict import bench_predict
    from spot.bench.settings import PredictLoad

    config = _run_config(PREDICT_DEFAULTS, flags)
    load = PredictLoad(tasks=tasks, requests=requests, repeats=repeats)
    _emit(bench_predict(config, load), as_json)


@bench.command("retrieval")
@library_folder_option("root", old_root_flag=True, temporary=True)
@click.option("--entries", default=100_000, show_default=True)
@click.option("--emb-dim", default=768, show_default=True)
@click.option("--prompt-length", default=100, show_default=True)
@click.option("--queries", default=50, show_default=True)
@click.option("--metric", default="per_token_cosine", show_default=True)
@click.option("--k", default=10, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One line of JSON.")
def retrieval_cmd(root, entries, emb_dim, prompt_length, queries, metric, k, seed, as_json):
    """Time ranking a prompt library (spot.bench.retrieval.benchmark_rank)."""
    from spot.bench.retrieval import RankBenchConfig, benchmark_rank

    config = RankBenchConfig(entries=entries, emb_dim=emb_dim, prompt_length=prompt_length,
                             queries=queries, metric=metric, k=k, seed=seed)
    _emit(benchmark_rank(root, config, progress=lambda m: click.echo(m, err=True)), as_json)


@bench.command("pipeline")
@click.option("--task", default=None, help="Task or mixture (default: a synthetic GLUE-like mix).")
@click.option("--vocab", default=None, help="SentencePiece model (default: T5's).")
@click.option("--batch", default=32, show_default=True)
@click.option("--input-length", default=512, show_default=True)
@click.option("--target-length", default=8, show_default=True)
@click.option("--steps", default=300, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One line of JSON.")
def pipeline_cmd(task, vocab, batch, input_length, target_length, steps, seed, as_json):
    """Time the input pipeline (spot.bench.pipeline.benchmark)."""
    from spot.bench.pipeline import benchmark
    from spot.errors import ConfigError

    for name, value in (("batch", batch), ("input_length", input_length),
                        ("target_length", target_length), ("steps", steps)):
        if value < 1:  # checked before the vocabulary loads (T5's is fetched from GCS)
            raise ConfigError(f"{name} must be at least 1, got {value}")
    _emit(benchmark(task, vocab=vocab, batch_size=batch, input_length=input_length,
                    target_length=target_length, steps=steps, seed=seed), as_json)


def register(cli: click.Group) -> None:
    cli.add_command(bench)
