"""What the benchmarks know about the accelerator: its name, dense peak FLOP/s, memory use."""

from __future__ import annotations

import resource
import sys
from typing import Any

PEAK_SOURCE = ("vendor data sheets, dense matmul peak (the published 2:4-sparsity figure "
               "halved); table in spot/bench/device.py")

# Dense matmul peak per chip in FLOP/s, from vendor data sheets: (device_kind substring,
# bfloat16 peak, float32 peak as XLA runs it by default (TF32 on NVIDIA tensor cores;
# None where not published)). The first matching substring wins, so specific names go first.
# H200 SXM ('NVIDIA H200'): the H200 data sheet gives 1,979 TFLOP/s BF16 Tensor Core with
# sparsity, so 989 dense, the H100 SXM's; H200 NVL (PCIe): 1,671 with sparsity, 835 dense.
_PEAKS: list[tuple[str, float, float | None]] = [
    ("H100 PCIe", 756e12, 378e12),
    ("H100 NVL", 835e12, 418e12),
    ("H100", 989e12, 495e12),  # SXM
    ("H200 NVL", 835e12, 418e12),
    ("H200", 989e12, 495e12),  # SXM
    ("GH200", 989e12, 495e12),
    ("A100", 312e12, 156e12),
    ("L4", 121e12, 60e12),
    ("A10G", 70e12, 35e12),
    ("TPU v4", 275e12, None),
    ("TPU v5 lite", 197e12, None),
    ("TPU v5e", 197e12, None),
    ("TPU v5p", 459e12, None),
    ("TPU v5", 459e12, None),
    ("TPU v6 lite", 918e12, None),
]


def device_kind(device: Any) -> str:
    return str(getattr(device, "device_kind", device.platform))


def peak_flops_per_sec(kind: str, dtype: str) -> float | None:
    """Per-device dense peak for `dtype` ("bfloat16" or "float32"); None when unknown (CPU)."""
    for name, bf16, fp32 in _PEAKS:
        if name.lower() in kind.lower():
            return bf16 if dtype == "bfloat16" else fp32
    return None


def describe(devices: list) -> str:
    d = devices[0]
    return f"{len(devices)} x {device_kind(d)} ({d.platform})"


def peak_memory(devices: list) -> tuple[int | None, str]:
    """(bytes, source): the largest device `peak_bytes_in_use` where the backend reports it,
    else the process's maximum resident set size (CPU, where device memory is host memory)."""
    peaks = []
    for d in devices:
        try:
            stats = d.memory_stats()
        except Exception:  # noqa: BLE001 - backends without stats raise various errors
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    if peaks:
        return max(peaks), "device.memory_stats.peak_bytes_in_use"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "process_max_rss"
