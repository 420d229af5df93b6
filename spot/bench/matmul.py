"""The machine's own matmul ceiling: one square matrix product through XLA, so a step's
utilization can be read against what the chip delivers as well as against its data sheet.

Timing: `repeats` products are dispatched back to back and waited for once (no host gap
between them), for `rounds` rounds; the figure is the median round's time per product.
"""

from __future__ import annotations

import datetime as _dt
import statistics
import time
from typing import Any

from spot.bench.device import PEAK_SOURCE, describe, device_kind, peak_flops_per_sec
from spot.errors import ConfigError


def bench_matmul(n: int = 8192, *, dtype: str = "bfloat16", repeats: int = 10,
                 rounds: int = 3, warmup: int = 3, seed: int = 0) -> dict[str, Any]:
    """FLOP/s of an [n, n] x [n, n] product on the default device, random normal inputs."""
    import jax

    for name, value in (("n", n), ("repeats", repeats), ("rounds", rounds), ("warmup", warmup)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if dtype not in ("bfloat16", "float32"):
        raise ConfigError(f"dtype must be bfloat16 or float32, got {dtype!r}")
    ka, kb = jax.random.split(jax.random.PRNGKey(seed))
    a_NN = jax.random.normal(ka, (n, n), dtype)
    b_NN = jax.random.normal(kb, (n, n), dtype)
    matmul = jax.jit(lambda a, b: a @ b)
    for _ in range(warmup):
        out = matmul(a_NN, b_NN)
    jax.block_until_ready(out)
    per_call = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = matmul(a_NN, b_NN)
        jax.block_until_ready(out)
        per_call.append((time.perf_counter() - t0) / repeats)
    median = statistics.median(per_call)
    flops = 2.0 * n ** 3
    devices = jax.devices()[:1]
    peak = peak_flops_per_sec(device_kind(devices[0]), dtype)
    return {
        "benchmark": "matmul", "n": n, "dtype": dtype, "repeats": repeats, "rounds": rounds,
        "flops_per_call": flops, "time_ms_median": median * 1e3,
        "time_ms_min": min(per_call) * 1e3, "flops_per_sec": flops / median,
        "peak_flops_per_sec": peak, "peak_source": PEAK_SOURCE,
        "fraction_of_peak": None if peak is None else flops / median / peak,
        "device": describe(devices), "backend": jax.default_backend(), "jax": jax.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
