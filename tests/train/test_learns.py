"""Runs learn: on an offline suite task with a tiny T5 1.1 (random weights, the offline
vocabulary), the training loss falls and validation accuracy beats the majority class.

Model tuning (every weight trainable, the paper's baseline, same loop, same evaluator) is
what beats the majority class here: a frozen *random* network's output layer cannot put much
probability on any one word, so prompt tuning on it lowers the loss (checked below) but
cannot separate the classes. Prompt tuning that beats the majority class needs a pretrained
backbone; that is the demo's job (`spot demo`), not a unit test's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

TASK = "offline_text_source"  # encyclopedia vs news, balanced: majority = 50%


@pytest.fixture(scope="module")
def tiny():
    from spot.data.offline.vocab import default_vocabulary_path
    from spot.data.vocab import load_vocabulary
    from spot.model.api import random_t5
    from spot.model.t5 import T5Config

    cfg = T5Config.preset("test_tiny", vocab_size=8192, emb_dim=32, mlp_dim=64)
    return random_t5(cfg, seed=0), load_vocabulary(default_vocabulary_path(), extra_ids=100)


def _run(tmp_path, tiny, mode: str, steps: int, lr: float):
    from spot.config import RunConfig, apply_overrides
    from spot.train.run import train

    t5, vocab = tiny
    cfg = apply_overrides(RunConfig(), {
        "model.name": "embedded", "model.dtype": "float32", "model.param_dtype": "float32",
        "data.task": TASK, "data.batch_size": 32, "data.input_length": 64,
        "data.target_length": 4, "data.max_eval_examples": 300, "data.eval_batch_size": 100,
        "prompt.length": 10, "prompt.init": "class_labels", "train.steps": steps,
        "train.eval_every": 50, "train.checkpoint_every": 200, "train.embedding_step": 10,
        "train.log_every": 25, "train.progress": False, "train.out_dir": str(tmp_path / mode),
        "train.mode": mode, "optimizer.learning_rate": lr, "optimizer.factored": mode == "model"})
    result = train(cfg, t5=t5, vocab=vocab, log=lambda s: None)
    rows = [json.loads(line) for line in (tmp_path / mode / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    losses = [r["loss"] for r in rows if "loss" in r and "score" not in r]
    scores = [r["score"] for r in rows if "score" in r]
    from spot.data.offline.suite import build_suite

    majority = 100.0 * build_suite(seed=0)[TASK].majority_baseline("validation")
    print(f"{TASK} ({mode} tuning): loss {losses[0]:.3f} -> {losses[-1]:.3f}; validation accuracy per eval "
          f"{scores}; majority {majority:.1f}")
    return losses, result.best_score, majority


@pytest.mark.slow
def test_model_tuning_loss_falls_and_accuracy_beats_majority(tmp_path, tiny):
    losses, best, majority = _run(tmp_path, tiny, "model", steps=300, lr=3e-3)
    # The run trained a copy: the caller's model is intact (the step donates its state).
    import jax

    jax.tree_util.tree_map(np.asarray, tiny[0].params)
    assert np.mean(losses[-2:]) < 0.5 * np.mean(losses[:2])
    assert best > majority + 10.0


def test_prompt_tuning_loss_falls_on_a_random_frozen_model(tmp_path, tiny):
    losses, _, _ = _run(tmp_path, tiny, "prompt", steps=100, lr=0.3)
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.5
