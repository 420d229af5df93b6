"""A synthetic, deterministic task for loop tests that do not need the data registry."""

from __future__ import annotations

import numpy as np

from spot.model.decode import shift_right


def synthetic_batch(step: int, *, seed: int = 0, batch: int = 8, length: int = 10,
                    vocab: int = 128) -> dict[str, np.ndarray]:
    """Label token 10 if the first input token is below vocab/2, else 11 (then EOS)."""
    rng = np.random.default_rng([seed, step])
    enc = rng.integers(3, vocab, (batch, length)).astype(np.int32)
    enc[:, -1] = 1
    label = np.where(enc[:, 0] < vocab // 2, 10, 11).astype(np.int32)
    targets = np.stack([label, np.ones_like(label)], axis=1)
    return {"encoder_input_tokens": enc, "decoder_target_tokens": targets,
            "decoder_input_tokens": shift_right(targets),
            "decoder_loss_weights": (targets > 0).astype(np.float32)}


def synthetic_batches(seed: int = 0, **kw):
    def batches(start_step: int):
        step = start_step
        while True:
            yield synthetic_batch(step, seed=seed, **kw)
            step += 1

    return batches


class Killed(RuntimeError):
    """A simulated preemption raised by `dying_batches`."""


def dying_batches(kill_at: int, seed: int = 0, **kw):
    """`synthetic_batches`, except that producing the batch of step index `kill_at` raises
    `Killed` (the process dies mid-run, after whatever checkpoints came before)."""
    def batches(start_step: int):
        for i, b in enumerate(synthetic_batches(seed, **kw)(start_step)):
            if start_step + i == kill_at:
                raise Killed("simulated preemption")
            yield b

    return batches


def loop_config(out_dir, **overrides):
    """A run-loop config for the synthetic task on test_tiny; `overrides` are dotted keys."""
    from spot.config import RunConfig, apply_overrides

    base = {"train.steps": 12, "train.eval_every": 6, "train.checkpoint_every": 4,
            "train.embedding_step": 5, "train.log_every": 2, "train.progress": False,
            "train.out_dir": str(out_dir), "prompt.length": 4, "data.task": "synthetic",
            "model.name": "test_tiny", "optimizer.learning_rate": 0.3}
    base.update(overrides)
    return apply_overrides(RunConfig(), base)
