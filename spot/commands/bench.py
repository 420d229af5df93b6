"""`spot bench ...`: throughput benchmarks that print one JSON object each.

    spot bench train-step --model t5_1_1_small --random-weights --batch 8 --input-length 64 \
        --target-length 8 --prompt-length 100 --steps 20 --dtype float32 --json
"""

from __future__ import annotations

import json

import click

_DTYPES = click.Choice(["float32", "bfloat16", "auto"])


def _emit(result: dict, as_json: bool) -> None:
    click.echo(json.dumps(result, sort_keys=True) if as_json
               else json.dumps(result, indent=2, sort_keys=True))


def _model_options(fn):
    fn = click.option("--checkpoint", default="",
                      help="Checkpoint path when --model is a preset (else --model is the path).")(fn)
    fn = click.option("--random-weights", is_flag=True,
                      help="t5x random initialization of the preset (no checkpoint needed).")(fn)
    return click.option("--model", default="t5_1_1_small", show_default=True,
                        help="Preset (t5_1_1_small..xxl, test_tiny) or checkpoint path.")(fn)


@click.group()
def bench() -> None:
    """Benchmarks: train step, decoding, retrieval, input pipeline, mixed-task inference."""


@bench.command("train-step")
@_model_options
@click.option("--batch", default=8, show_default=True)
@click.option("--input-length", default=64, show_default=True)
@click.option("--target-length", default=8, show_default=True)
@click.option("--prompt-length", default=100, show_default=True)
@click.option("--steps", default=20, show_default=True, help="Timed steps.")
@click.option("--warmup", default=3, show_default=True, help="Untimed steps after compiling.")
@click.option("--dtype", type=_DTYPES, default="auto", show_default=True,
              help="Compute dtype (auto: bfloat16 on GPU/TPU, float32 on CPU).")
@click.option("--param-dtype", type=_DTYPES, default=None,
              help="Frozen-weight dtype (default: the compute dtype).")
@click.option("--attention", "attention_impl", type=click.Choice(["xla", "fused"]),
              default="xla", show_default=True)
@click.option("--remat", type=click.Choice(["none", "full", "dots"]), default="none",
              is_flag=False, flag_value="full", show_default=True,
              help="Rematerialize each layer in the backward pass (bare --remat: full).")
@click.option("--scan-layers", is_flag=True,
              help="One nn.scan over each stack's layers (compile time independent of depth).")
@click.option("--compile-only", is_flag=True,
              help="Compile and report FLOPs and the compiled step's memory; run nothing.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One line of JSON.")
def train_step_cmd(model, checkpoint, random_weights, batch, input_length, target_length,
                   prompt_length, steps, warmup, dtype, param_dtype, attention_impl, remat,
                   scan_layers, compile_only, seed, as_json):
    """Time the real prompt-tuning train step (forward, backward, Adafactor update)."""
    from spot.bench.train_step import bench_train_step

    _emit(bench_train_step(
        model, random_weights=random_weights, checkpoint=checkpoint, batch=batch,
        input_length=input_length, target_length=target_length, prompt_length=prompt_length,
        steps=steps, warmup=warmup, dtype=dtype, param_dtype=param_dtype,
        attention_impl=attention_impl, remat=False if remat == "none" else remat,
        scan_layers=scan_layers, compile_only=compile_only, seed=seed),
        as_json)


@bench.command("decode")
@_model_options
@click.option("--batch", default=32, show_default=True)
@click.option("--input-length", default=64, show_default=True)
@click.option("--prompt-length", default=100, show_default=True)
@click.option("--max-length", default=16, show_default=True, help="Decoded tokens per example.")
@click.option("--steps", default=5, show_default=True, help="Timed decode calls.")
@click.option("--dtype", type=_DTYPES, default="auto", show_default=True)
@click.option("--attention", "attention_impl", type=click.Choice(["xla", "fused"]),
              default="xla", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One line of JSON.")
def decode_cmd(model, checkpoint, random_weights, batch, input_length, prompt_length,
               max_length, steps, dtype, attention_impl, seed, as_json):
    """Time batched greedy decoding with a KV cache (evaluation and `spot predict`)."""
    from spot.bench.decode import bench_decode

    _emit(bench_decode(model, random_weights=random_weights, checkpoint=checkpoint,
                       batch=batch, input_length=input_length, prompt_length=prompt_length,
                       max_length=max_length, steps=steps, dtype=dtype,
                       attention_impl=attention_impl, seed=seed), as_json)


@bench.command("predict")
@_model_options
@click.option("--tasks", default=4, show_default=True, help="Distinct tasks (prompts).")
@click.option("--requests", default=64, show_default=True)
@click.option("--batch", default=16, show_default=True)
@click.option("--input-length", default=64, show_default=True)
@click.option("--max-length", default=8, show_default=True)
@click.option("--prompt-length", default=20, show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--dtype", type=_DTYPES, default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One line of JSON.")
def predict_cmd(model, checkpoint, random_weights, tasks, requests, batch, input_length,
                max_length, prompt_length, repeats, dtype, seed, as_json):
    """Mixed-task batches (one model, many prompts) against one task at a time."""
    from spot.bench.predict import bench_predict

    _emit(bench_predict(model, random_weights=random_weights, checkpoint=checkpoint,
                        tasks=tasks, requests=requests, batch=batch, input_length=input_length,
                        max_length=max_length, prompt_length=prompt_length, repeats=repeats,
                        dtype=dtype, seed=seed), as_json)


@bench.command("retrieval")
@click.option("--root", default=None, help="Library folder to build or reuse (default: temp).")
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
    from spot.bench.retrieval import benchmark_rank

    _emit(benchmark_rank(root, entries=entries, emb_dim=emb_dim, prompt_length=prompt_length,
                         queries=queries, metric=metric, k=k, seed=seed,
                         progress=lambda m: click.echo(m, err=True)), as_json)


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
