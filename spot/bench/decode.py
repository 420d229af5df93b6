"""Time evaluation decoding: the jitted, KV-cached `greedy_decode` that evaluation and
`spot predict` call, run for exactly `data.target_length` steps (EOS never stops it early)."""

from __future__ import annotations

import datetime as _dt
import os
import statistics
import time
from typing import Any

import numpy as np

from spot.bench.device import describe, device_kind, peak_flops_per_sec, peak_memory
from spot.bench.flops import decode_flops
from spot.bench.settings import Timing, check_at_least
from spot.bench.train_step import build_model
from spot.config import RunConfig


def _decode_inputs(config: RunConfig, cfg: Any):
    """Random full-length input tokens and a random prompt (None for prompt length 0)."""
    import jax.numpy as jnp

    d = config.data
    rng = np.random.default_rng(config.train.seed)
    tokens = jnp.asarray(rng.integers(2, cfg.vocab_size, (d.batch_size, d.input_length)),
                         jnp.int32)
    prompt = None
    if config.prompt.length:
        prompt = jnp.asarray(rng.uniform(-0.5, 0.5, (config.prompt.length, cfg.emb_dim)),
                             jnp.float32)
    return tokens, prompt


def _time_calls(run, timing: Timing) -> tuple[float, list[float]]:
    """Seconds of the first (compiling) call, and of each timed call after the warm-up."""
    t0 = time.perf_counter()
    run()
    compile_s = time.perf_counter() - t0
    for _ in range(timing.warmup - 1):
        run()
    times = []
    for _ in range(timing.steps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return compile_s, times


def bench_decode(config: RunConfig, timing: Timing = Timing(steps=5, warmup=1)
                 ) -> dict[str, Any]:
    """Decoded examples and tokens per second of batched greedy decoding with a prompt:
    `data.batch_size` inputs of `data.input_length` tokens, `data.target_length` decoded
    tokens each (`spot.bench.settings.DECODE_DEFAULTS`)."""
    import jax
    import jax.numpy as jnp

    from spot.model.decode import greedy_decode

    config = config.resolve()
    d, m = config.data, config.model
    max_length = d.target_length
    check_at_least(1, batch=d.batch_size, input_length=d.input_length, max_length=max_length,
                   steps=timing.steps, warmup=timing.warmup)
    check_at_least(0, prompt_length=config.prompt.length)
    cfg, module, params = build_model(m, seed=config.train.seed)
    tokens, prompt = _decode_inputs(config, cfg)

    def run():
        out, logp = greedy_decode(module, params, tokens, prompt, max_length=max_length,
                                  eos_id=-1)
        return jax.block_until_ready((out, logp))

    compile_s, times = _time_calls(run, timing)
    median = statistics.median(times)
    devices = jax.devices()[:1]
    flops = decode_flops(cfg, batch=d.batch_size, input_length=d.input_length,
                         prompt_length=config.prompt.length, max_length=max_length)
    peak = peak_flops_per_sec(device_kind(devices[0]),
                              "bfloat16" if "16" in str(jnp.dtype(module.dtype)) else "float32")
    mem, mem_source = peak_memory(devices)
    return {
        "benchmark": "decode", "model": m.name, "random_weights": m.random_weights,
        "batch": d.batch_size, "input_length": d.input_length,
        "prompt_length": config.prompt.length, "max_length": max_length,
        "dtype": str(jnp.dtype(module.dtype)), "attention_impl": m.attention_impl,
        "steps": timing.steps, "examples_per_sec": d.batch_size / median,
        "tokens_per_sec": d.batch_size * max_length / median,
        "step_time_ms_median": median * 1e3, "step_time_ms_min": min(times) * 1e3,
        "flops_per_step": flops, "flops_counted": "matmuls of one full decode call",
        "mfu": None if peak is None else flops / median / peak,
        "peak_flops_per_sec": peak, "peak_memory_bytes": mem, "memory_source": mem_source,
        "compile_s": compile_s, "device": describe(devices), "backend": jax.default_backend(),
        "jax": jax.__version__, "cpu_count": os.cpu_count(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
