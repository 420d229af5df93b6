"""The speed changes to the model compute the same function as the plain path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spot.config import OptimizerConfig
from spot.errors import ConfigError
from spot.model import t5 as t5_module
from spot.model.t5 import Attention, T5Config, Transformer, init_params, remat_policy
from spot.train.step import init_state, make_optimizer, make_train_step

CFG = T5Config.preset("test_tiny", dropout_rate=0.3)


class _WeightDropoutAttention(Attention):
    """t5x's formulation: dropout on the [B, H, T, S] attention weights."""

    def attend(self, x_BTE, k_BSHD, v_BSHD, masking, deterministic, *, causal=False,
               allow_fused=True):
        bias, mask, _ = masking
        q = self._split(self.query(x_BTE))
        logits = jnp.einsum("bthd,bshd->bhts", q, k_BSHD) + bias
        logits = jnp.where(mask, logits, t5_module.NEG_INF)
        weights = self.dropout(jax.nn.softmax(logits, axis=-1), deterministic=deterministic)
        out = jnp.einsum("bhts,bshd->bthd", weights, v_BSHD)
        return self.out(out.reshape(out.shape[:2] + (-1,)))


def test_dropping_values_equals_dropping_attention_weights():
    rng = np.random.default_rng(0)
    B, T, S, E = 3, 5, 7, 16
    x = jnp.asarray(rng.normal(size=(B, T, E)), jnp.float32)
    kv = jnp.asarray(rng.normal(size=(B, S, E)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(1, 2, T, S)), jnp.float32)
    mask = jnp.ones((B, 1, T, S), bool).at[1, :, :, 5:].set(False)
    masking = (bias, mask, None)
    ours = Attention(2, 8, E, 0.4)
    params = ours.init(jax.random.PRNGKey(0), x, kv, masking, True)
    outs = []
    for module in (ours, _WeightDropoutAttention(2, 8, E, 0.4)):
        outs.append(module.apply(params, x, kv, masking, False,
                                 rngs={"dropout": jax.random.PRNGKey(3)}))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    deterministic = ours.apply(params, x, kv, masking, True)
    assert not np.allclose(outs[0], deterministic)  # the dropout really acted


def _step_result(module, params, batch, prompt):
    opt = make_optimizer(OptimizerConfig())
    state = init_state({"prompt": prompt}, opt, 5)
    new_state, metrics = jax.jit(make_train_step(module, opt, 1e-4))(state, params, batch)
    return np.asarray(new_state["trainable"]["prompt"]), float(metrics["loss"])


@pytest.fixture(scope="module")
def padded_batch():
    rng = np.random.default_rng(1)
    enc = rng.integers(2, 128, (3, 9)).astype(np.int32)
    enc[1, 6:] = 0
    enc[2, 2:] = 0
    targets = rng.integers(2, 128, (3, 6)).astype(np.int32)
    targets[0, 4:] = 0
    dec = np.concatenate([np.zeros((3, 1), np.int32), targets[:, :-1]], axis=1)
    return {"encoder_input_tokens": enc, "decoder_input_tokens": dec,
            "decoder_target_tokens": targets,
            "decoder_loss_weights": (targets > 0).astype(np.float32)}


@pytest.mark.parametrize("options", [{"attention_impl": "fused"}, {"remat": "full"},
                                     {"remat": "dots"}, {"remat": "dots",
                                                         "attention_impl": "fused"}])
def test_train_step_is_unchanged_by_speed_options(options, padded_batch):
    """Same dropout draws, same padding semantics: the same loss and prompt update."""
    params = init_params(CFG, 2)
    prompt = np.random.default_rng(2).normal(size=(4, CFG.emb_dim)).astype(np.float32)
    base_prompt, base_loss = _step_result(Transformer(CFG), params, padded_batch, prompt)
    prompt_after, loss = _step_result(Transformer(CFG, **options), params, padded_batch, prompt)
    assert loss == pytest.approx(base_loss, rel=1e-5)
    np.testing.assert_allclose(prompt_after, base_prompt, rtol=1e-5, atol=1e-6)
    assert not np.allclose(prompt_after, prompt)


def test_fused_backend_choice(monkeypatch):
    q = jnp.zeros((2, 8, 4, 64), jnp.bfloat16)
    k = jnp.zeros((2, 10, 4, 64), jnp.bfloat16)
    assert t5_module._fused_backend(q, k, True, True) is None  # CPU: XLA's implementation
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert t5_module._fused_backend(q, k, True, True) == "cudnn"
    assert t5_module._fused_backend(q.astype(jnp.float32), k, True, True) is None
    odd = jnp.zeros((2, 7, 4, 64), jnp.bfloat16)
    assert t5_module._fused_backend(odd, k, True, True) is None  # cuDNN: even lengths
    assert t5_module._fused_backend(odd, k, True, False) == "cudnn"
    assert t5_module._fused_backend(jnp.zeros((2, 8, 4, 12), jnp.bfloat16), k, False,
                                    False) is None


def test_remat_policy_names():
    assert remat_policy(True) is None and remat_policy("full") is None
    assert remat_policy("dots") is jax.checkpoint_policies.dots_with_no_batch_dims_saveable
    with pytest.raises(ConfigError, match="remat"):
        remat_policy("everything")


def test_valid_lengths_count_through_the_last_real_token():
    mask = jnp.asarray([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(t5_module._valid_lengths(mask), [3, 1, 4])
