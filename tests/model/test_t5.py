"""Unit tests of the Flax network on tiny configs (parity with PyTorch lives in test_parity_hf)."""

import flax
import jax
import numpy as np
import pytest

from spot.errors import ConfigError, PromptError, SpotError
from spot.model.api import T5, batch_pad
from spot.model.decode import greedy_decode_uncached, shift_right
from spot.model.t5 import T5Config, init_params, relative_position_bucket

CFG = T5Config.preset("test_tiny")


def _model(seed=0, logit_scale=2.0, cfg=CFG):
    params = init_params(cfg, seed)
    if not cfg.logits_via_embedding:
        # Random init gives near-uniform logits; sharpen them so greedy paths are informative.
        rng = np.random.default_rng(seed)
        k = params["decoder"]["logits_dense"]["kernel"]
        params["decoder"]["logits_dense"]["kernel"] = (
            rng.normal(size=k.shape).astype(np.float32) * logit_scale)
    return T5(cfg, params)


def _batch(rng, batch=3, length=11, vocab=128):
    enc = rng.integers(2, vocab, (batch, length)).astype(np.int32)
    enc[1, 6:] = 0
    enc[2, 3:] = 0
    return enc


def test_param_tree_has_t5x_names():
    flat = flax.traverse_util.flatten_dict(init_params(CFG), sep="/")
    expected = {
        "token_embedder/embedding": (128, 16),
        "encoder/relpos_bias/rel_embedding": (2, 8),
        "encoder/encoder_norm/scale": (16,),
        "encoder/layers_0/attention/query/kernel": (16, 16),
        "encoder/layers_1/mlp/wi_0/kernel": (16, 32),
        "encoder/layers_1/mlp/wo/kernel": (32, 16),
        "encoder/layers_0/pre_attention_layer_norm/scale": (16,),
        "encoder/layers_0/pre_mlp_layer_norm/scale": (16,),
        "decoder/layers_1/self_attention/out/kernel": (16, 16),
        "decoder/layers_0/encoder_decoder_attention/key/kernel": (16, 16),
        "decoder/layers_0/pre_cross_attention_layer_norm/scale": (16,),
        "decoder/layers_0/pre_self_attention_layer_norm/scale": (16,),
        "decoder/decoder_norm/scale": (16,),
        "decoder/relpos_bias/rel_embedding": (2, 8),
        "decoder/logits_dense/kernel": (16, 128),
    }
    for name, shape in expected.items():
        assert flat[name].shape == shape, name
    # 2 layers x (4 attention + 3 mlp kernels + 2 norms) in the encoder, 2 x (8 + 3 + 3) in the
    # decoder, plus embedding, 2 relpos, 2 final norms and logits.
    assert len(flat) == 2 * 9 + 2 * 14 + 6


def test_t5_1_0_variant_is_tied_and_plain_relu():
    cfg = CFG.replace(mlp_activations=("relu",), logits_via_embedding=True)
    flat = flax.traverse_util.flatten_dict(init_params(cfg), sep="/")
    assert "decoder/logits_dense/kernel" not in flat
    assert "encoder/layers_0/mlp/wi/kernel" in flat
    t5 = T5(cfg, init_params(cfg))
    rng = np.random.default_rng(0)
    enc = _batch(rng)
    out = t5.logits(enc, shift_right(enc[:, :4]))
    # Numerics of the tied variant are checked against PyTorch in test_parity_hf.
    assert out.shape == (3, 4, 128) and np.all(np.isfinite(out))


def test_jit_and_eager_agree():
    t5 = _model()
    rng = np.random.default_rng(1)
    enc, dec = _batch(rng), shift_right(_batch(rng, length=5))
    prompt = rng.normal(size=(4, 16)).astype(np.float32)
    jitted = t5.logits(enc, dec, prompt)
    with jax.disable_jit():
        eager = np.asarray(t5.module.apply({"params": t5.params}, enc, dec, prompt=prompt))
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)


def test_padding_does_not_change_valid_logits():
    t5 = _model()
    rng = np.random.default_rng(2)
    enc = rng.integers(2, 128, (1, 6)).astype(np.int32)
    dec = shift_right(rng.integers(2, 128, (1, 4)).astype(np.int32))
    prompt = rng.normal(size=(3, 16)).astype(np.float32)
    short = t5.logits(enc, dec, prompt)
    padded = t5.logits(np.pad(enc, ((0, 0), (0, 9))), np.pad(dec, ((0, 0), (0, 3))), prompt)
    np.testing.assert_allclose(short, padded[:, :4], rtol=1e-5, atol=1e-5)


def test_prompt_changes_output_and_per_example_prompts_match_shared():
    t5 = _model()
    rng = np.random.default_rng(3)
    enc, dec = _batch(rng), shift_right(_batch(rng, length=5))
    p1, p2 = (rng.normal(size=(4, 16)).astype(np.float32) for _ in range(2))
    shared = t5.logits(enc, dec, p1)
    assert not np.allclose(shared, t5.logits(enc, dec))
    per_example = t5.logits(enc, dec, np.stack([p1, p1, p1]))
    np.testing.assert_allclose(shared, per_example, rtol=1e-6, atol=1e-6)
    mixed = t5.logits(enc, dec, np.stack([p1, p2, p1]))
    np.testing.assert_allclose(mixed[1], t5.logits(enc[1:2], dec[1:2], p2)[0], rtol=1e-5, atol=1e-5)


def test_cached_greedy_decoding_equals_full_recompute():
    t5 = _model(seed=4)
    rng = np.random.default_rng(4)
    enc = _batch(rng, batch=5, length=13)
    prompt = rng.normal(size=(3, 16)).astype(np.float32)
    cached = t5.generate(enc, prompt, max_length=12)
    full = greedy_decode_uncached(t5.module, t5.params, enc, prompt, max_length=12)
    np.testing.assert_array_equal(cached, full)
    assert len(np.unique(cached)) > 3  # the test decodes real, varied sequences


def test_cached_decoding_stops_at_eos():
    cfg = CFG
    params = init_params(cfg, 5)
    # Make EOS (id 1) the argmax after the first step by biasing its logit column.
    rng = np.random.default_rng(5)
    k = rng.normal(size=params["decoder"]["logits_dense"]["kernel"].shape).astype(np.float32)
    params["decoder"]["logits_dense"]["kernel"] = k
    t5 = T5(cfg, params)
    enc = _batch(rng)
    out = t5.generate(enc, max_length=20)
    full = greedy_decode_uncached(t5.module, t5.params, enc, None, max_length=20)
    np.testing.assert_array_equal(out, full)
    for row in out:
        eos = np.flatnonzero(row == 1)
        if eos.size:
            assert np.all(row[eos[0] + 1:] == 0)


def test_rank_classification_equals_teacher_forced_loglik():
    t5 = _model(seed=6)
    rng = np.random.default_rng(6)
    enc = _batch(rng)
    prompt = rng.normal(size=(2, 16)).astype(np.float32)
    cands = batch_pad([[5, 1], [9, 10, 1], [7, 1]])
    scores = t5.score(enc, cands, prompt)
    assert scores.shape == (3, 3)
    for b in range(3):
        for c in range(3):
            tgt = cands[c:c + 1]
            logits = t5.logits(enc[b:b + 1], shift_right(tgt), prompt)[0]
            logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                                   keepdims=True)) - logits.max(-1, keepdims=True)
            want = sum(logp[t, tok] for t, tok in enumerate(tgt[0]) if tok > 0)
            assert abs(scores[b, c] - want) < 1e-3


def test_relative_position_buckets_match_definition():
    # Hand-checked values for 32 buckets / max distance 128 (bidirectional).
    rel = np.array([-200, -128, -20, -8, -7, -1, 0, 1, 7, 8, 20, 128, 200])
    b = relative_position_bucket(rel, bidirectional=True, num_buckets=32, max_distance=128)
    # Positive relative positions (key after query) use the upper half of the buckets.
    assert list(b[6:8]) == [0, 17] and b[5] == 1
    assert b[0] == 15 and b[-1] == 31  # both ends saturate at the last bucket of each half
    assert np.all(np.diff(b[:7]) <= 0) and np.all(np.diff(b[7:]) >= 0)
    causal = relative_position_bucket(rel, bidirectional=False, num_buckets=32, max_distance=128)
    assert np.all(causal[rel >= 0] == 0)  # future keys share bucket 0 (masked anyway)


def test_bad_inputs_give_clear_errors():
    t5 = _model()
    enc = np.array([[5, 6, 1]])
    dec = np.array([[0, 5]])
    with pytest.raises(SpotError, match="outside the vocabulary range"):
        t5.logits(np.array([[5, 600, 1]]), dec)
    with pytest.raises(PromptError, match="width 8 does not match the model's embedding size 16"):
        t5.logits(enc, dec, np.zeros((3, 8), np.float32))
    bad = np.zeros((3, 16), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(PromptError, match="non-finite"):
        t5.logits(enc, dec, bad)
    with pytest.raises(SpotError, match="expected shape"):
        t5.logits(np.array([5, 6, 1]), dec)
    with pytest.raises(ConfigError, match="unknown T5 preset"):
        T5Config.preset("gigantic")
    with pytest.raises(ConfigError, match="positive integer"):
        T5Config(emb_dim=0)


@pytest.mark.parametrize("name,emb,layers", [("small", 512, 8), ("base", 768, 12),
                                             ("large", 1024, 24), ("xl", 2048, 24),
                                             ("xxl", 4096, 24)])
def test_presets(name, emb, layers):
    cfg = T5Config.preset(name)
    assert cfg.emb_dim == emb and cfg.num_encoder_layers == layers and cfg.vocab_size == 32128
    assert cfg == T5Config.preset(f"t5_1_1_{name}")
    assert T5Config.from_dict(cfg.to_dict()) == cfg


def test_remat_and_fused_attention_do_not_change_results():
    params = init_params(CFG, 7)
    rng = np.random.default_rng(7)
    enc, dec = _batch(rng), shift_right(_batch(rng, length=5))
    prompt = rng.normal(size=(4, 16)).astype(np.float32)
    base = T5(CFG, params).logits(enc, dec, prompt)
    for opts in ({"remat": True}, {"attention_impl": "fused"}):
        np.testing.assert_allclose(T5(CFG, params, **opts).logits(enc, dec, prompt), base,
                                   rtol=1e-5, atol=1e-5)
