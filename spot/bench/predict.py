"""Mixed-task inference against one-task-at-a-time: `spot.workflows.serve.run_requests` (prompts and
label sets mixed inside each batch) versus `spot.workflows.serve.run_grouped` on the same requests."""

from __future__ import annotations

import datetime as _dt
import statistics
import time
from typing import Any

import numpy as np

from spot.bench.settings import PredictLoad, check_at_least
from spot.config import RunConfig


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


def _time_both(t5: Any, vocab: Any, reqs: list, prompts: dict[str, np.ndarray],
               config: RunConfig, repeats: int) -> tuple[dict[str, list[float]], dict]:
    """Seconds per pass of mixed and grouped batching (alternating), and each side's output."""
    from spot.workflows.serve import run_grouped, run_requests

    d = config.data
    kw = dict(input_length=d.input_length, max_length=d.target_length, batch_size=d.batch_size)
    sides = (("mixed", run_requests), ("grouped", run_grouped))
    timings: dict[str, list[float]] = {"mixed": [], "grouped": []}
    outputs = {name: fn(t5, vocab, reqs, prompts, **kw)  # warm-up: compiles every shape
               for name, fn in sides}
    for _ in range(repeats):  # alternate so load from other processes hits both alike
        for name, fn in sides:
            t0 = time.perf_counter()
            fn(t5, vocab, reqs, prompts, **kw)
            timings[name].append(time.perf_counter() - t0)
    return timings, outputs


def bench_predict(config: RunConfig, load: PredictLoad = PredictLoad()) -> dict[str, Any]:
    """Mixed-task batches against one task at a time on the same requests: batches of
    `data.batch_size`, inputs cut to `data.input_length`, `data.target_length` decoded
    tokens (`spot.bench.settings.PREDICT_DEFAULTS`)."""
    import jax

    from spot.bench.train_step import build_model
    from spot.model.api import T5

    config = config.resolve()
    d = config.data
    check_at_least(1, tasks=load.tasks, requests=load.requests, batch=d.batch_size,
                   input_length=d.input_length, max_length=d.target_length,
                   prompt_length=config.prompt.length, repeats=load.repeats)
    cfg, module, params = build_model(config.model, seed=config.train.seed)
    t5 = T5(cfg, params, config.model.dtype)
    reqs, prompts = make_requests(load.tasks, load.requests, cfg.emb_dim, config.prompt.length,
                                  config.train.seed)
    timings, outputs = _time_both(t5, ByteVocab(cfg.vocab_size), reqs, prompts, config,
                                  load.repeats)
    mixed, grouped = (statistics.median(timings[k]) for k in ("mixed", "grouped"))
    same = [a[0] == b[0] for a, b in zip(outputs["mixed"], outputs["grouped"])]
    return {
        "benchmark": "predict", "model": config.model.name, "tasks": load.tasks,
        "requests": load.requests, "batch": d.batch_size, "input_length": d.input_length,
        "max_length": d.target_length, "prompt_length": config.prompt.length,
        "repeats": load.repeats, "mixed_requests_per_sec": load.requests / mixed,
        "grouped_requests_per_sec": load.requests / grouped, "mixed_s_median": mixed,
        "grouped_s_median": grouped, "speedup": grouped / mixed,
        "predictions_agree": float(np.mean(same)), "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
