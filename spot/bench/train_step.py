"""Time the real prompt-tuning train step: `make_train_step` jitted by `jit_train_step`, the
function and compilation `spot.train.loop` uses, on synthetic full-length batches.

What is measured is a `RunConfig` (model, dtypes, attention, remat, scan, batch and lengths,
optimizer, mesh): the step a training run with that config would take.

Timing: after warm-up (compilation included there), each step is dispatched before the
previous one is waited for, as the loop pulls metrics one step late, so the device never
idles on the host; a step's time is the gap between consecutive completions. Figures use the
median, which shrugs off other processes on a shared machine.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import statistics
import time
from typing import Any

import numpy as np

from spot.bench.device import describe, device_kind, peak_flops_per_sec, peak_memory
from spot.bench.flops import train_step_flops
from spot.bench.settings import Timing, check_at_least
from spot.config import ModelConfig, RunConfig
from spot.errors import ConfigError
from spot.model.t5 import T5Config


def _preset_config(model: ModelConfig) -> T5Config | None:
    """The preset's shapes for random weights; None when a checkpoint supplies them."""
    if not model.random_weights:
        return None
    try:
        return T5Config.preset(model.name)
    except ConfigError:
        raise ConfigError(f"--random-weights needs a preset name, got {model.name!r}; known: "
                          f"{', '.join(T5Config.preset_names())}") from None


def build_model(model: ModelConfig, *, seed: int = 0, abstract: bool = False):
    """(config, module, frozen params on device) for `model` (dtypes resolved as training
    resolves them). Random weights are drawn on the device and cast there, so a large model
    never holds a float32 copy on the host. `abstract` returns shapes only
    (ShapeDtypeStructs), enough to compile and size a step for any model."""
    import jax
    import jax.numpy as jnp

    from spot.model.api import resolve_dtype
    from spot.model.t5 import Transformer

    compute = resolve_dtype(model.dtype)
    stored = resolve_dtype(model.param_dtype)
    cfg = _preset_config(model)
    if cfg is None:
        from spot.model.api import load_t5
        from spot.train.model_paths import resolve_model_path

        t5 = load_t5(resolve_model_path(model.name, model.checkpoint), "float32")
        cfg = t5.config
    remat = False if model.remat in ("none", False) else model.remat
    module = Transformer(cfg, dtype=compute, attention_impl=model.attention_impl, remat=remat,
                         scan_layers=model.scan_layers)
    if model.random_weights:
        init_module = Transformer(cfg, scan_layers=model.scan_layers)
        tokens = jnp.ones((1, 2), jnp.int32)

        @jax.jit
        def init(key):
            params = init_module.init(key, tokens, tokens, deterministic=True)["params"]
            return jax.tree_util.tree_map(lambda x: x.astype(stored), params)

        key = jax.random.PRNGKey(seed)
        params = jax.eval_shape(init, key) if abstract else init(key)
    else:
        from spot.model.t5 import stack_layers

        host = stack_layers(t5.params) if model.scan_layers else t5.params
        params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, stored), host)
    return cfg, module, params


def synthetic_batch(cfg: T5Config, batch: int, input_length: int, target_length: int,
                    seed: int) -> dict[str, np.ndarray]:
    """Full-length random token batches (no padding: the most work per example)."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(2, cfg.vocab_size, (batch, target_length), dtype=np.int32)
    return {
        "encoder_input_tokens": rng.integers(2, cfg.vocab_size, (batch, input_length),
                                             dtype=np.int32),
        "decoder_input_tokens": np.concatenate(
            [np.zeros((batch, 1), np.int32), targets[:, :-1]], axis=1),
        "decoder_target_tokens": targets,
        "decoder_loss_weights": np.ones((batch, target_length), np.float32),
    }


def _check(config: RunConfig, timing: Timing) -> None:
    d = config.data
    check_at_least(1, batch=d.batch_size, input_length=d.input_length,
                   target_length=d.target_length, prompt_length=config.prompt.length,
                   steps=timing.steps)
    if timing.warmup < 1:
        raise ConfigError(f"warmup must be at least 1 (it holds the compilation), got "
                          f"{timing.warmup}")
    if timing.compile_only and not config.model.random_weights:
        raise ConfigError("--compile-only sizes a preset: add --random-weights")


@dataclasses.dataclass
class _Step:
    """A compiled train step with its state, frozen weights and two batches, ready to run."""

    cfg: T5Config
    module: Any
    params: Any
    state: Any
    batches: list
    compiled: Any
    compile_s: float
    init_peak: Any
    devices: list


def _compile_step(config: RunConfig, compile_only: bool) -> _Step:
    import jax

    from spot.train import sharding as shard
    from spot.train.step import init_state, jit_train_step, make_optimizer, make_train_step

    seed, d = config.train.seed, config.data
    cfg, module, params = build_model(config.model, seed=seed, abstract=compile_only)
    mesh = shard.make_mesh(config.mesh)
    if d.batch_size % mesh.shape["data"]:
        raise ConfigError(f"batch {d.batch_size} is not divisible by the "
                          f"{mesh.shape['data']} devices")
    optimizer = make_optimizer(config.optimizer)
    rng = np.random.default_rng(seed)
    prompt = rng.uniform(-0.5, 0.5, (config.prompt.length, cfg.emb_dim)).astype(np.float32)
    state = init_state({"prompt": prompt}, optimizer, seed)
    step_fn = make_train_step(module, optimizer, config.optimizer.z_loss)
    jitted, state_sh, frozen_sh, batch_sh = jit_train_step(step_fn, mesh, state, params)
    if not compile_only:
        params = jax.device_put(params, frozen_sh)
    state = jax.device_put(state, state_sh)
    batches = [shard.put_batch(synthetic_batch(cfg, d.batch_size, d.input_length,
                                               d.target_length, seed + i), batch_sh)
               for i in range(2)]
    devices = list(mesh.devices.flat)
    # Peak so far (weights drawn, cast and placed): when the final peak equals it, the
    # weights' initialization, not the step, set the peak.
    init_peak, _ = peak_memory(devices)
    t0 = time.perf_counter()
    compiled = jitted.lower(state, params, batches[0]).compile()
    return _Step(cfg, module, params, state, batches, compiled, time.perf_counter() - t0,
                 init_peak, devices)


def _describe(config: RunConfig, step: _Step, flops: Any, peak: float | None) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    m, d = config.model, config.data
    return {
        "benchmark": "train_step", "model": m.name, "random_weights": m.random_weights,
        "batch": d.batch_size, "input_length": d.input_length, "target_length": d.target_length,
        "prompt_length": config.prompt.length, "dtype": str(jnp.dtype(step.module.dtype)),
        "param_dtype": str(jax.tree_util.tree_leaves(step.params)[0].dtype),
        "attention_impl": m.attention_impl,
        "remat": False if m.remat in ("none", False) else m.remat, "scan_layers": m.scan_layers,
        "flops_per_step": flops.total, "flops_forward": flops.forward,
        "flops_backward": flops.backward,
        "flops_counted": "matmuls; forward + backward w.r.t. activations (no weight grads)",
        "xla_flops_per_step": _xla_flops(step.compiled), "compile_s": step.compile_s,
        "step_memory_bytes": _compiled_memory(step.compiled),
        "init_peak_memory_bytes": step.init_peak,
        "device": describe(step.devices), "backend": jax.default_backend(),
        "peak_flops_per_sec": None if peak is None else peak * len(step.devices),
        "jax": jax.__version__, "cpu_count": os.cpu_count(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _time_steps(step: _Step, timing: Timing) -> tuple[list[float], float]:
    """Seconds between consecutive step completions, and the last step's loss."""
    import jax

    state, params, batches = step.state, step.params, step.batches
    for i in range(timing.warmup):
        state, metrics = step.compiled(state, params, batches[i % 2])
    jax.block_until_ready((state, metrics))
    times = []
    pending = None
    last = time.perf_counter()
    for i in range(timing.steps):
        state, metrics = step.compiled(state, params, batches[i % 2])
        if pending is not None:
            jax.block_until_ready(pending["loss"])
            now = time.perf_counter()
            times.append(now - last)
            last = now
        pending = metrics
    final_loss = float(jax.device_get(pending["loss"]))
    times.append(time.perf_counter() - last)
    return times, final_loss


def bench_train_step(config: RunConfig, timing: Timing = Timing()) -> dict[str, Any]:
    """Throughput, FLOPs, utilization and memory of one prompt-tuning train step of `config`
    (`spot.bench.settings.bench_config(TRAIN_STEP_DEFAULTS, ...)` builds one)."""
    import jax.numpy as jnp

    config = config.resolve()
    _check(config, timing)
    d = config.data
    step = _compile_step(config, timing.compile_only)
    flops = train_step_flops(step.cfg, batch=d.batch_size, input_length=d.input_length,
                             target_length=d.target_length, prompt_length=config.prompt.length)
    peak = peak_flops_per_sec(device_kind(step.devices[0]),
                              "bfloat16" if "16" in str(jnp.dtype(step.module.dtype))
                              else "float32")
    result = _describe(config, step, flops, peak)
    if timing.compile_only:
        return {**result, "steps": 0, "examples_per_sec": None, "tokens_per_sec": None,
                "step_time_ms_median": None, "mfu": None,
                **dict(zip(("peak_memory_bytes", "memory_source"), peak_memory(step.devices)))}
    times, final_loss = _time_steps(step, timing)
    median = statistics.median(times)
    mem, mem_source = peak_memory(step.devices)
    tokens = d.batch_size * (d.input_length + d.target_length)
    result.update({
        "steps": timing.steps, "warmup": timing.warmup,
        "examples_per_sec": d.batch_size / median, "tokens_per_sec": tokens / median,
        "tokens_per_step": tokens, "step_time_ms_median": median * 1e3,
        "step_time_ms_mean": statistics.fmean(times) * 1e3,
        "step_time_ms_min": min(times) * 1e3,
        "mfu": None if peak is None else flops.total / median / (peak * len(step.devices)),
        "peak_memory_bytes": mem, "memory_source": mem_source, "final_loss": final_loss,
    })
    if not np.isfinite(final_loss):
        raise ConfigError(f"the benchmark's loss became {final_loss}; the step is broken")
    return result


def _xla_flops(compiled) -> float | None:
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - optional on some backends
        return None
    if isinstance(analysis, list):
        analysis = analysis[0] if analysis else None
    value = (analysis or {}).get("flops")
    return None if value is None else float(value)


def _compiled_memory(compiled) -> int | None:
    """Arguments + outputs + temporaries, minus donated buffers reused as outputs."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - optional on some backends
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)
