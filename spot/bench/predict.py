"""Mixed-task inference against one-task-at-a-time: `spot.workflows.serve.run_requests` (prompts and
label sets mixed inside each batch) versus `spot.workflows.serve.run_grouped` on the same requests."""

from __future__ import annotations

import datetime as _dt
import statistics
import time
from typing import Any

import numpy as np

from spot.errors import ConfigError


class ByteVocab:
    """A stand-in vocabulary (UTF-8 bytes shifted past pad/EOS) so the benchmark needs no
    SentencePiece file; the model work per request is what is measured, not tokenization."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def encode(self, text: str) -> list[int]:
        return [min(b + 3, self.vocab_size - 1) for b in text.encode("utf-8")]

    def decode(self, ids) -> str:
        return bytes(max(int(i) - 3, 0) for i in ids if 3 <= int(i) < 259).decode(
            "utf-8", errors="replace")


def make_requests(num_tasks: int, num_requests: int, emb_dim: int, prompt_length: int,
                  seed: int) -> tuple[list, dict[str, np.ndarray]]:
    """Requests spread round-robin over `num_tasks` tasks, each with its own prompt; even
    tasks are classification (rank two or three labels), odd ones are open-ended."""
    from spot.workflows.serve import Request

    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "river", "stone", "light", "quiet", "seven"]
    prompts = {f"task{t}": rng.uniform(-0.5, 0.5, (prompt_length, emb_dim)).astype(np.float32)
               for t in range(num_tasks)}
    label_sets = [("yes", "no"), ("positive", "negative", "neutral")]
    requests = []
    for i in range(num_requests):
        t = i % num_tasks
        text = " ".join(rng.choice(words, size=int(rng.integers(3, 12))))
        labels = label_sets[(t // 2) % 2] if t % 2 == 0 else None
        requests.append(Request(i + 1, text, f"task{t}", f"task{t}", labels, {}))
    return requests, prompts


def bench_predict(model: str = "test_tiny", *, random_weights: bool = True,
                  checkpoint: str = "", tasks: int = 4, requests: int = 64, batch: int = 16,
                  input_length: int = 64, max_length: int = 8, prompt_length: int = 20,
                  repeats: int = 3, dtype: str = "float32", seed: int = 0) -> dict[str, Any]:
    import jax

    from spot.model.api import T5
    from spot.bench.train_step import build_model
    from spot.workflows.serve import run_grouped, run_requests

    for name, value in (("tasks", tasks), ("requests", requests), ("batch", batch),
                        ("input_length", input_length), ("max_length", max_length),
                        ("prompt_length", prompt_length), ("repeats", repeats)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    cfg, module, params = build_model(model, random_weights=random_weights,
                                      checkpoint=checkpoint, dtype=dtype, seed=seed)
    t5 = T5(cfg, params, dtype)
    vocab = ByteVocab(cfg.vocab_size)
    reqs, prompts = make_requests(tasks, requests, cfg.emb_dim, prompt_length, seed)
    kw = dict(input_length=input_length, max_length=max_length, batch_size=batch)
    timings: dict[str, list[float]] = {"mixed": [], "grouped": []}
    outputs = {}
    for name, fn in (("mixed", run_requests), ("grouped", run_grouped)):
        outputs[name] = fn(t5, vocab, reqs, prompts, **kw)  # warm-up: compiles every shape
    for _ in range(repeats):  # alternate so load from other processes hits both alike
        for name, fn in (("mixed", run_requests), ("grouped", run_grouped)):
            t0 = time.perf_counter()
            fn(t5, vocab, reqs, prompts, **kw)
            timings[name].append(time.perf_counter() - t0)
    mixed, grouped = (statistics.median(timings[k]) for k in ("mixed", "grouped"))
    same = [a[0] == b[0] for a, b in zip(outputs["mixed"], outputs["grouped"])]
    return {
        "benchmark": "predict", "model": model, "tasks": tasks, "requests": requests,
        "batch": batch, "input_length": input_length, "max_length": max_length,
        "prompt_length": prompt_length, "repeats": repeats,
        "mixed_requests_per_sec": requests / mixed, "grouped_requests_per_sec": requests / grouped,
        "mixed_s_median": mixed, "grouped_s_median": grouped, "speedup": grouped / mixed,
        "predictions_agree": float(np.mean(same)), "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
