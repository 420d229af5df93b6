"""Time the real prompt-tuning train step: `make_train_step` jitted by `jit_train_step`, the
function and compilation `spot.train.loop` uses, on synthetic full-length batches.

Timing: after warm-up (compilation included there), each step is dispatched before the
previous one is waited for, as the loop pulls metrics one step late, so the device never
idles on the host; a step's time is the gap between consecutive completions. Figures use the
median, which shrugs off other processes on a shared machine.
"""

from __future__ import annotations

import datetime as _dt
import os
import statistics
import time
from typing import Any

import numpy as np

from spot.bench.device import describe, device_kind, peak_flops_per_sec, peak_memory
from spot.bench.flops import train_step_flops
from spot.errors import ConfigError
from spot.model.t5 import T5Config


def build_model(model: str, *, random_weights: bool, checkpoint: str = "", dtype: str,
                param_dtype: str | None = None, attention_impl: str = "xla",
                remat: bool | str = False, scan_layers: bool = False, seed: int = 0,
                abstract: bool = False):
    """(config, module, frozen params on device). Random weights are drawn on the device and
    cast there, so a large model never holds a float32 copy on the host. `abstract` returns
    shapes only (ShapeDtypeStructs), enough to compile and size a step for any model."""
    import jax
    import jax.numpy as jnp

    from spot.model.api import resolve_dtype
    from spot.model.t5 import Transformer

    compute = resolve_dtype(dtype)
    stored = resolve_dtype(param_dtype) if param_dtype else compute
    if random_weights:
        try:
            cfg = T5Config.preset(model)
        except ConfigError:
            raise ConfigError(f"--random-weights needs a preset name, got {model!r}; known: "
                              f"{', '.join(T5Config.preset_names())}") from None
    else:
        from spot.model.api import load_t5
        from spot.train.model_paths import resolve_model_path

        t5 = load_t5(resolve_model_path(model, checkpoint), "float32")
        cfg = t5.config
    module = Transformer(cfg, dtype=compute, attention_impl=attention_impl, remat=remat,
                         scan_layers=scan_layers)
    if random_weights:
        init_module = Transformer(cfg, scan_layers=scan_layers)
        tokens = jnp.ones((1, 2), jnp.int32)

        @jax.jit
        def init(key):
            params = init_module.init(key, tokens, tokens, deterministic=True)["params"]
            return jax.tree_util.tree_map(lambda x: x.astype(stored), params)

        key = jax.random.PRNGKey(seed)
        params = jax.eval_shape(init, key) if abstract else init(key)
    else:
        from spot.model.t5 import stack_layers

        host = stack_layers(t5.params) if scan_layers else t5.params
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


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")


def bench_train_step(model: str = "t5_1_1_small", *, random_weights: bool = True,
                     checkpoint: str = "", batch: int = 8, input_length: int = 64,
                     target_length: int = 8, prompt_length: int = 100, steps: int = 20,
                     warmup: int = 3, dtype: str = "float32", param_dtype: str | None = None,
                     attention_impl: str = "xla", remat: bool | str = False,
                     scan_layers: bool = False, compile_only: bool = False,
                     seed: int = 0) -> dict[str, Any]:
    """Throughput, FLOPs, utilization and memory of one prompt-tuning train step."""
    import jax
    import jax.numpy as jnp

    from spot.config import MeshConfig, OptimizerConfig
    from spot.train import sharding as shard
    from spot.train.step import init_state, jit_train_step, make_optimizer, make_train_step

    _check_sizes(batch=batch, input_length=input_length, target_length=target_length,
                 prompt_length=prompt_length, steps=steps)
    if warmup < 1:
        raise ConfigError(f"warmup must be at least 1 (it holds the compilation), got {warmup}")
    cfg, module, params = build_model(
        model, random_weights=random_weights, checkpoint=checkpoint, dtype=dtype,
        param_dtype=param_dtype, attention_impl=attention_impl, remat=remat,
        scan_layers=scan_layers, seed=seed, abstract=compile_only)
    if compile_only and not random_weights:
        raise ConfigError("--compile-only sizes a preset: add --random-weights")
    mesh = shard.make_mesh(MeshConfig())
    if batch % mesh.shape["data"]:
        raise ConfigError(f"batch {batch} is not divisible by the {mesh.shape['data']} devices")
    opt_cfg = OptimizerConfig()
    optimizer = make_optimizer(opt_cfg)
    rng = np.random.default_rng(seed)
    prompt = rng.uniform(-0.5, 0.5, (prompt_length, cfg.emb_dim)).astype(np.float32)
    state = init_state({"prompt": prompt}, optimizer, seed)
    step_fn = make_train_step(module, optimizer, opt_cfg.z_loss)
    jitted, state_sh, frozen_sh, batch_sh = jit_train_step(step_fn, mesh, state, params)
    if not compile_only:
        params = jax.device_put(params, frozen_sh)
    state = jax.device_put(state, state_sh)
    batches = [shard.put_batch(synthetic_batch(cfg, batch, input_length, target_length,
                                               seed + i), batch_sh) for i in range(2)]

    # Peak so far (weights drawn, cast and placed): when the final peak equals it, the
    # weights' initialization, not the step, set the peak.
    init_peak, _ = peak_memory(list(mesh.devices.flat))
    t0 = time.perf_counter()
    compiled = jitted.lower(state, params, batches[0]).compile()
    compile_s = time.perf_counter() - t0
    flops = train_step_flops(cfg, batch=batch, input_length=input_length,
                             target_length=target_length, prompt_length=prompt_length)
    devices = list(mesh.devices.flat)
    kind = device_kind(devices[0])
    peak = peak_flops_per_sec(kind, "bfloat16" if "16" in str(jnp.dtype(module.dtype))
                              else "float32")
    result: dict[str, Any] = {
        "benchmark": "train_step", "model": model, "random_weights": random_weights,
        "batch": batch, "input_length": input_length, "target_length": target_length,
        "prompt_length": prompt_length, "dtype": str(jnp.dtype(module.dtype)),
        "param_dtype": str(jax.tree_util.tree_leaves(params)[0].dtype),
        "attention_impl": attention_impl, "remat": remat, "scan_layers": scan_layers,
        "flops_per_step": flops.total, "flops_forward": flops.forward,
        "flops_backward": flops.backward,
        "flops_counted": "matmuls; forward + backward w.r.t. activations (no weight grads)",
        "xla_flops_per_step": _xla_flops(compiled), "compile_s": compile_s,
        "step_memory_bytes": _compiled_memory(compiled), "init_peak_memory_bytes": init_peak,
        "device": describe(devices), "backend": jax.default_backend(),
        "peak_flops_per_sec": None if peak is None else peak * len(devices),
        "jax": jax.__version__, "cpu_count": os.cpu_count(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if compile_only:
        return {**result, "steps": 0, "examples_per_sec": None, "tokens_per_sec": None,
                "step_time_ms_median": None, "mfu": None,
                **dict(zip(("peak_memory_bytes", "memory_source"), peak_memory(devices)))}

    for i in range(warmup):
        state, metrics = compiled(state, params, batches[i % 2])
    jax.block_until_ready((state, metrics))
    times = []
    pending = None
    last = time.perf_counter()
    for i in range(steps):
        state, metrics = compiled(state, params, batches[i % 2])
        if pending is not None:
            jax.block_until_ready(pending["loss"])
            now = time.perf_counter()
            times.append(now - last)
            last = now
        pending = metrics
    final_loss = float(jax.device_get(pending["loss"]))
    times.append(time.perf_counter() - last)
    median = statistics.median(times)
    mem, mem_source = peak_memory(devices)
    result.update({
        "steps": steps, "warmup": warmup,
        "examples_per_sec": batch / median,
        "tokens_per_sec": batch * (input_length + target_length) / median,
        "tokens_per_step": batch * (input_length + target_length),
        "step_time_ms_median": median * 1e3,
        "step_time_ms_mean": statistics.fmean(times) * 1e3,
        "step_time_ms_min": min(times) * 1e3,
        "mfu": None if peak is None else flops.total / median / (peak * len(devices)),
        "peak_memory_bytes": mem, "memory_source": mem_source,
        "final_loss": final_loss,
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
