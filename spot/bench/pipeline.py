"""Input-pipeline throughput: tokenization (cold start), steady batches/s and resume, through
exactly the code training uses (`spot.data.registry` and `spot.data.pipeline`)."""

from __future__ import annotations

import time
from typing import Any

from spot.data import registry
from spot.data.pipeline import token_store, train_batches


def benchmark(name: str | None = None, *, vocab: Any = None, batch_size: int = 32,
              input_length: int = 512, target_length: int = 8, steps: int = 300,
              seed: int = 0, examples_per_task: int = 5000,
              resume_step: int = 2**18) -> dict[str, Any]:
    """Measure the input pipeline: tokenization (cold start), steady batches/s, resume.

    With no `name`, a synthetic GLUE-style mixture (8 tasks in GLUE's formats and typical
    lengths, `examples_per_task` each) goes through exactly the same code as real tasks.
    `vocab` defaults to T5's public vocabulary, which needs network access; pass a path or
    a loaded vocabulary otherwise.
    """
    from spot.data.vocab import load_vocabulary

    if vocab is None or isinstance(vocab, str) or hasattr(vocab, "__fspath__"):
        vocab = load_vocabulary(vocab)
    if name is None:
        from spot.bench.glue_like import register_glue_like

        name = register_glue_like(vocab, examples_per_task=examples_per_task, seed=seed)
    info = registry.get(name)
    t0 = time.perf_counter()
    sizes = {m: len(token_store(m, "train", vocab)) for m in info.members}
    cold = time.perf_counter() - t0
    it = train_batches(name, vocab=vocab, batch_size=batch_size, input_length=input_length,
                       target_length=target_length, seed=seed)
    for _ in range(3):
        next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        batch = next(it)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    next(train_batches(name, vocab=vocab, batch_size=batch_size, input_length=input_length,
                       target_length=target_length, seed=seed, start_step=resume_step))
    resume = time.perf_counter() - t0
    total = sum(sizes.values())
    return {
        "task": name, "members": len(info.members), "train_examples": total,
        "batch_size": batch_size, "input_length": input_length,
        "target_length": target_length, "steps": steps,
        "examples_per_s": steps * batch_size / warm, "batches_per_s": steps / warm,
        "cold_start_s": cold, "tokenize_examples_per_s": total / cold if cold else float("inf"),
        "resume_step": resume_step, "resume_first_batch_s": resume,
        "input_fill": float((batch["encoder_input_tokens"] != 0).mean()),
    }
