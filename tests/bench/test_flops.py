"""The FLOP count against a hand count and against the dot products JAX actually traces."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from spot.bench.flops import count_dot_flops, decode_flops, train_step_flops
from spot.config import OptimizerConfig
from spot.errors import ConfigError
from spot.model.t5 import T5Config


def test_train_step_flops_equal_a_hand_count():
    # test_tiny: E=16, H=2, D=8 (HD=16), F=32, gated (wi_0, wi_1, wo), 2+2 layers, V=128.
    # Batch 2, inputs 5 + prompt 4 -> L=9, targets T=3.
    cfg = T5Config.preset("test_tiny")
    B, T = 2, 3  # L = 9 encoder positions (inputs 5 + prompt 4), written out below
    # Encoder layer: q,k,v,o 4*2*(B*L)*16*16; scores+values 2*2*(B*2*L)*L*8; mlp 3*2*(B*L)*16*32.
    enc_proj, enc_att, enc_mlp = 4 * 2 * 18 * 16 * 16, 2 * 2 * 36 * 9 * 8, 3 * 2 * 18 * 16 * 32
    assert (enc_proj, enc_att, enc_mlp) == (36864, 10368, 55296)
    # Decoder layer: self q,k,v,o; self scores+values; cross q and o; cross k,v on the
    # encoder output; cross scores; cross values; mlp.
    self_proj, self_att = 4 * 2 * 6 * 16 * 16, 2 * 2 * 12 * 3 * 8
    cross_q = cross_o = 2 * 6 * 16 * 16
    cross_kv = 2 * 2 * 18 * 16 * 16
    cross_scores = cross_values = 2 * 12 * 9 * 8
    dec_mlp = 3 * 2 * 6 * 16 * 32
    logits = 2 * 6 * 16 * 128
    dec_layer = self_proj + self_att + cross_q + cross_o + cross_kv + cross_scores \
        + cross_values + dec_mlp
    forward = 2 * (enc_proj + enc_att + enc_mlp) + 2 * dec_layer + logits
    # Backward: weight matmuls 1x, attention products 2x; decoder layer 0's self-attention
    # and cross query get none and its cross scores need only dK (1x).
    backward = (2 * (enc_proj + 2 * enc_att + enc_mlp)
                + (cross_o + cross_kv + cross_scores + 2 * cross_values + dec_mlp)  # layer 0
                + (dec_layer + self_att + cross_scores + cross_values)  # layer 1
                + logits)
    assert (forward, backward) == (349440, 360000)
    count = train_step_flops(cfg, batch=B, input_length=5, target_length=T, prompt_length=4)
    assert (count.forward, count.backward, count.total) == (forward, backward, 709440)
    assert sum(f for f, _ in count.parts.values()) == forward


@pytest.mark.parametrize("preset,shape", [("test_tiny", (2, 5, 3, 4)),
                                          ("t5_1_1_tiny", (3, 7, 4, 2))])
def test_train_step_flops_equal_the_traced_train_step(preset, shape):
    """JAX differentiates only what the prompt's gradient needs; its dots match the count."""
    from spot.model.api import random_t5
    from spot.train.step import init_state, make_optimizer, make_train_step

    B, S, T, P = shape
    t5 = random_t5(preset)
    opt = make_optimizer(OptimizerConfig())
    step = make_train_step(t5.module, opt, 1e-4)
    state = init_state({"prompt": np.zeros((P, t5.config.emb_dim), np.float32)}, opt, 0)
    rng = np.random.default_rng(0)
    v = t5.config.vocab_size
    batch = {"encoder_input_tokens": jnp.asarray(rng.integers(1, v, (B, S)), jnp.int32),
             "decoder_input_tokens": jnp.asarray(rng.integers(1, v, (B, T)), jnp.int32),
             "decoder_target_tokens": jnp.asarray(rng.integers(1, v, (B, T)), jnp.int32),
             "decoder_loss_weights": jnp.ones((B, T), jnp.float32)}
    traced = count_dot_flops(step, state, t5.params, batch)
    counted = train_step_flops(t5.config, batch=B, input_length=S, target_length=T,
                               prompt_length=P)
    assert traced == counted.total


def test_decode_flops_hand_count():
    cfg = T5Config.preset("test_tiny")
    # B=1, L=3 (no prompt), 2 decode steps over a 2-slot cache.
    enc_layer = 4 * 2 * 3 * 16 * 16 + 2 * 2 * 2 * 3 * 3 * 8 + 3 * 2 * 3 * 16 * 32
    cross_kv = 2 * 2 * 3 * 16 * 16
    per_token_layer = (4 * 2 * 16 * 16 + 2 * 2 * 2 * 2 * 8 + 2 * 2 * 16 * 16
                       + 2 * 2 * 2 * 3 * 8 + 3 * 2 * 16 * 32)
    expected = 2 * enc_layer + 2 * cross_kv + 2 * (2 * per_token_layer + 2 * 16 * 128)
    assert decode_flops(cfg, batch=1, input_length=3, prompt_length=0, max_length=2) == expected


def test_flops_reject_bad_sizes():
    cfg = T5Config.preset("test_tiny")
    with pytest.raises(ConfigError, match="prompt_length"):
        train_step_flops(cfg, batch=1, input_length=4, target_length=2, prompt_length=0)
    with pytest.raises(ConfigError, match="batch"):
        decode_flops(cfg, batch=0, input_length=4, prompt_length=0, max_length=2)
