"""Time evaluation decoding: the jitted, KV-cached `greedy_decode` that evaluation and
`spot predict` call, run for exactly `max_length` steps (EOS never stops it early)."""

from __future__ import annotations

import datetime as _dt
import os
import statistics
import time
from typing import Any

import numpy as np

from spot.bench.device import describe, device_kind, peak_flops_per_sec, peak_memory
from spot.bench.flops import decode_flops
from spot.bench.train_step import build_model
from spot.errors import ConfigError


def bench_decode(model: str = "t5_1_1_small", *, random_weights: bool = True,
                 checkpoint: str = "", batch: int = 32, input_length: int = 64,
                 prompt_length: int = 100, max_length: int = 16, steps: int = 5,
                 warmup: int = 1, dtype: str = "float32", param_dtype: str | None = None,
                 attention_impl: str = "xla", seed: int = 0) -> dict[str, Any]:
    """Decoded examples and tokens per second of batched greedy decoding with a prompt."""
    import jax
    import jax.numpy as jnp

    from spot.model.decode import greedy_decode

    for name, value in (("batch", batch), ("input_length", input_length),
                        ("max_length", max_length), ("steps", steps), ("warmup", warmup)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if prompt_length < 0:
        raise ConfigError(f"prompt_length must be >= 0, got {prompt_length}")
    cfg, module, params = build_model(model, random_weights=random_weights,
                                      checkpoint=checkpoint, dtype=dtype,
                                      param_dtype=param_dtype, attention_impl=attention_impl,
                                      seed=seed)
    rng = np.random.default_rng(seed)
    tokens = jnp.asarray(rng.integers(2, cfg.vocab_size, (batch, input_length)), jnp.int32)
    prompt = None
    if prompt_length:
        prompt = jnp.asarray(rng.uniform(-0.5, 0.5, (prompt_length, cfg.emb_dim)), jnp.float32)

    def run():
        out, logp = greedy_decode(module, params, tokens, prompt, max_length=max_length,
                                  eos_id=-1)
        return jax.block_until_ready((out, logp))

    t0 = time.perf_counter()
    run()
    compile_s = time.perf_counter() - t0
    for _ in range(warmup - 1):
        run()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    devices = jax.devices()[:1]
    flops = decode_flops(cfg, batch=batch, input_length=input_length,
                         prompt_length=prompt_length, max_length=max_length)
    peak = peak_flops_per_sec(device_kind(devices[0]),
                              "bfloat16" if "16" in str(jnp.dtype(module.dtype)) else "float32")
    mem, mem_source = peak_memory(devices)
    return {
        "benchmark": "decode", "model": model, "random_weights": random_weights,
        "batch": batch, "input_length": input_length, "prompt_length": prompt_length,
        "max_length": max_length, "dtype": str(jnp.dtype(module.dtype)),
        "attention_impl": attention_impl, "steps": steps,
        "examples_per_sec": batch / median, "tokens_per_sec": batch * max_length / median,
        "step_time_ms_median": median * 1e3, "step_time_ms_min": min(times) * 1e3,
        "flops_per_step": flops, "flops_counted": "matmuls of one full decode call",
        "mfu": None if peak is None else flops / median / peak,
        "peak_flops_per_sec": peak, "peak_memory_bytes": mem, "memory_source": mem_source,
        "compile_s": compile_s, "device": describe(devices), "backend": jax.default_backend(),
        "jax": jax.__version__, "cpu_count": os.cpu_count(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
