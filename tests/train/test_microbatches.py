"""A batch split into microbatches takes the same optimizer step as the whole batch."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from spot.config import OptimizerConfig, RunConfig, apply_overrides, validate
from spot.errors import ConfigError
from spot.model.t5 import T5Config, Transformer, init_params
from spot.train.step import init_state, make_optimizer, make_train_step

CFG = T5Config.preset("test_tiny", dropout_rate=0.0)


def _batch(seed: int = 1, batch: int = 8):
    """Uneven padding, so parts hold different numbers of target tokens: a per-part mean
    would differ from the whole batch's."""
    rng = np.random.default_rng(seed)
    enc = rng.integers(2, 128, (batch, 9)).astype(np.int32)
    targets = rng.integers(2, 128, (batch, 6)).astype(np.int32)
    for i in range(batch):
        enc[i, 2 + i % 7:] = 0
        targets[i, 1 + (3 * i) % 5:] = 0
    dec = np.concatenate([np.zeros((batch, 1), np.int32), targets[:, :-1]], axis=1)
    return {"encoder_input_tokens": enc, "decoder_input_tokens": dec,
            "decoder_target_tokens": targets,
            "decoder_loss_weights": (targets > 0).astype(np.float32)}


def _two_steps(mode: str, microbatches: int, z_loss: float):
    params = init_params(CFG, 2)
    opt = make_optimizer(OptimizerConfig(), mode)
    if mode == "prompt":
        prompt = np.random.default_rng(2).normal(size=(4, CFG.emb_dim)).astype(np.float32)
        state, frozen = init_state({"prompt": prompt}, opt, 5), params
    else:
        state, frozen = init_state({"params": params}, opt, 5), {}
    step = jax.jit(make_train_step(Transformer(CFG), opt, z_loss, microbatches))
    metrics = []
    for seed in (1, 3):
        state, m = step(state, frozen, _batch(seed))
        metrics.append({k: float(v) for k, v in m.items()})
    return jax.tree_util.tree_map(np.asarray, state["trainable"]), metrics


@pytest.mark.parametrize("mode", ["prompt", "model"])
@pytest.mark.parametrize("microbatches", [2, 4, 8])
def test_microbatched_step_equals_whole_batch_step(mode, microbatches):
    # The batches are uneven for this k (parts hold different numbers of target tokens), so a
    # step that averaged per-part means would not pass the comparison below.
    for seed in (1, 3):
        w = _batch(seed)["decoder_loss_weights"]
        assert len({float(w[i::microbatches].sum()) for i in range(microbatches)}) > 1
    whole, whole_metrics = _two_steps(mode, 1, 1e-4)
    parts, part_metrics = _two_steps(mode, microbatches, 1e-4)
    for a, b in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(parts)):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6)
    for mw, mp in zip(whole_metrics, part_metrics):
        assert set(mw) == set(mp)
        for key in mw:
            np.testing.assert_allclose(mp[key], mw[key], rtol=2e-5, atol=1e-6, err_msg=key)
    # the step did move the weights (a no-op step would also compare equal)
    if mode == "prompt":
        initial = np.random.default_rng(2).normal(size=(4, CFG.emb_dim)).astype(np.float32)
        assert np.abs(whole["prompt"] - initial).max() > 1e-3
    else:
        initial = init_params(CFG, 2)
        moved = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(
            jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(initial))]
        assert max(moved) > 1e-4


def test_microbatches_must_divide_the_batch():
    base = apply_overrides(RunConfig(), {"data.task": "glue_rte", "data.batch_size": 16})
    assert validate(apply_overrides(base, {"train.microbatches": 4})).train.microbatches == 4
    with pytest.raises(ConfigError, match="must divide data.batch_size"):
        validate(apply_overrides(base, {"train.microbatches": 3}))
    with pytest.raises(ConfigError, match="train.microbatches must be positive"):
        validate(apply_overrides(base, {"train.microbatches": 0}))
    with pytest.raises(ValueError, match="microbatches"):
        make_train_step(Transformer(CFG), make_optimizer(OptimizerConfig(), "prompt"), 0.0, 0)
