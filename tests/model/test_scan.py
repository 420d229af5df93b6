"""scan_layers: one nn.scan per stack computes the same function as the unrolled layers,
trains the same prompt and weights, shards, saves under t5x's names, and keeps the traced
program's size independent of depth."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spot.errors import ConfigError
from spot.model.api import T5, load_t5
from spot.model.checkpoints import save_native
from spot.model.prompt import init_uniform
from spot.model.t5 import T5Config, Transformer, init_params, is_stacked, stack_layers, unstack_layers
from spot.train.loop import RunPieces, run_loop, trainable_from_prompt

from ..train.synthetic import loop_config, synthetic_batches

CFG = T5Config.preset("test_tiny", num_encoder_layers=3, num_decoder_layers=2)


def _leaves_equal(a, b) -> bool:
    return (jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
            and all(np.array_equal(x, y) for x, y in
                    zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))))


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    enc = rng.integers(2, CFG.vocab_size, (3, 7)).astype(np.int32)
    enc[1, 4:] = 0  # a padded example
    dec = rng.integers(2, CFG.vocab_size, (3, 5)).astype(np.int32)
    prompt = rng.normal(size=(4, CFG.emb_dim)).astype(np.float32)
    return enc, dec, prompt


def test_stack_unstack_round_trip_and_layout():
    params = init_params(CFG, 0)
    stacked = stack_layers(params)
    assert is_stacked(stacked) and not is_stacked(params)
    assert "layers_0" not in stacked["encoder"]
    assert stacked["encoder"]["layers"]["mlp"]["wi_0"]["kernel"].shape == (3, 16, 32)
    assert stacked["decoder"]["layers"]["self_attention"]["query"]["kernel"].shape == (2, 16, 16)
    np.testing.assert_array_equal(stacked["decoder"]["layers"]["mlp"]["wo"]["kernel"][1],
                                  params["decoder"]["layers_1"]["mlp"]["wo"]["kernel"])
    assert _leaves_equal(unstack_layers(stacked), params)
    assert _leaves_equal(stack_layers(stacked), stacked)
    assert _leaves_equal(unstack_layers(params), params)
    broken = {**params, "encoder": {k: v for k, v in params["encoder"].items()
                                    if k != "layers_1"}}
    with pytest.raises(ConfigError, match="layers_0..layers_N-1"):
        stack_layers(broken)


def test_scanned_init_has_the_stacked_layout():
    enc, dec, _ = _inputs()
    variables = Transformer(CFG, scan_layers=True).init(jax.random.PRNGKey(0), enc, dec)
    shapes = jax.tree_util.tree_map(np.shape, dict(variables["params"]))
    assert shapes == jax.tree_util.tree_map(np.shape, stack_layers(init_params(CFG, 0)))


def test_scanned_model_computes_the_same_logits_tokens_and_scores():
    params = init_params(CFG, 0)
    unrolled, scanned = T5(CFG, params), T5(CFG, params, scan_layers=True)
    assert is_stacked(scanned.params) and "scan_layers=True" in repr(scanned)
    enc, dec, prompt = _inputs()
    a, b = unrolled.logits(enc, dec, prompt), scanned.logits(enc, dec, prompt)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())
    np.testing.assert_array_equal(scanned.generate(enc, prompt, max_length=6),
                                  unrolled.generate(enc, prompt, max_length=6))
    cands = np.array([[5, 1, 0], [7, 9, 1]], np.int32)
    np.testing.assert_allclose(scanned.score(enc, cands, prompt),
                               unrolled.score(enc, cands, prompt), rtol=1e-5)
    assert _leaves_equal(jax.tree_util.tree_map(np.asarray, scanned.t5x_params),
                         jax.tree_util.tree_map(np.asarray, unrolled.params))


@pytest.mark.parametrize("remat", [False, "full", "dots"])
def test_scanned_prompt_gradients_match(remat):
    params = init_params(CFG, 0)
    enc, dec, prompt = _inputs(1)

    def grad(module, p):
        return jax.grad(lambda pr: module.apply({"params": p}, enc, dec, prompt=pr).sum())(prompt)

    g0 = grad(Transformer(CFG), params)
    g1 = grad(Transformer(CFG, remat=remat, scan_layers=True), stack_layers(params))
    assert np.abs(g0).max() > 1.0  # a real gradient, not zeros on both sides
    np.testing.assert_allclose(g1, g0, rtol=1e-5, atol=1e-5 * np.abs(g0).max())


@pytest.mark.slow
def test_scanned_dropout_draws_differ_per_layer_and_are_reproducible():
    params = stack_layers(init_params(CFG, 0))
    enc, dec, prompt = _inputs()
    module = Transformer(CFG, scan_layers=True)

    def run(seed):
        return np.asarray(module.apply({"params": params}, enc, dec, prompt=prompt,
                                       deterministic=False,
                                       rngs={"dropout": jax.random.PRNGKey(seed)}))

    clean = np.asarray(module.apply({"params": params}, enc, dec, prompt=prompt))
    np.testing.assert_array_equal(run(1), run(1))
    assert not np.allclose(run(1), run(2)) and not np.allclose(run(1), clean)


def _loop_config(out_dir, **overrides):
    return loop_config(out_dir, **{"train.steps": 6, "train.checkpoint_every": 6,
                                   "train.embedding_step": 3, **overrides})


def test_scanned_prompt_tuning_run_ends_with_the_same_prompt(tmp_path):
    from spot.model.prompt_files import load_prompt

    cfg = CFG.replace(dropout_rate=0.0)  # dropout draws differ by layout; the function doesn't
    params = init_params(cfg, 0)
    prompts = {}
    for scan in (False, True):
        t5 = T5(cfg, params, scan_layers=scan)
        config = _loop_config(tmp_path / f"scan{scan}")
        init = init_uniform(0, 4, cfg.emb_dim)
        result = run_loop(config, RunPieces(
            out_dir=config.train.out_dir, module=t5.module, frozen=t5.params,
            initial_trainable=lambda init=init: trainable_from_prompt(
                init, reparameterize=False, hidden=8, seed=0),
            batches=synthetic_batches(), metadata={"task": "synthetic"}), log=lambda s: None)
        prompts[scan] = load_prompt(result.prompt_paths["final"])
    assert np.abs(prompts[False] - init_uniform(0, 4, cfg.emb_dim)).max() > 1e-3
    np.testing.assert_allclose(prompts[True], prompts[False], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_scanned_model_tuning_saves_t5x_names_and_matches(tmp_path):
    cfg = CFG.replace(dropout_rate=0.0)
    params = init_params(cfg, 0)
    saved = {}
    for scan in (False, True):
        t5 = T5(cfg, params, scan_layers=scan)
        config = _loop_config(tmp_path / f"scan{scan}", **{
            "train.mode": "model", "optimizer.learning_rate": 1e-3})
        run_loop(config, RunPieces(
            out_dir=config.train.out_dir, module=t5.module, frozen={},
            initial_trainable=lambda t5=t5: {
                "params": jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), t5.params)},
            batches=synthetic_batches(),
            metadata={"task": "synthetic", "model_config": cfg.to_dict()}), log=lambda s: None)
        saved[scan] = load_t5(tmp_path / f"scan{scan}" / "model").params
    assert "layers_2" in saved[True]["encoder"] and "layers" not in saved[True]["encoder"]
    moved = max(float(np.abs(np.asarray(a) - b).max()) for a, b in zip(
        jax.tree_util.tree_leaves(saved[False]), jax.tree_util.tree_leaves(params)))
    assert moved > 1e-4  # the weights really trained
    for a, b in zip(jax.tree_util.tree_leaves(saved[True]),
                    jax.tree_util.tree_leaves(saved[False])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def _equation_count(num_layers: int, scan: bool) -> int:
    cfg = CFG.replace(num_encoder_layers=num_layers, num_decoder_layers=num_layers)
    module = Transformer(cfg, scan_layers=scan)
    enc, dec, prompt = _inputs()
    params = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), enc, dec)["params"])

    def loss(pr, p):
        return module.apply({"params": p}, enc, dec, prompt=pr).sum()

    return len(jax.make_jaxpr(jax.grad(loss))(prompt, params).jaxpr.eqns)


def test_traced_program_size_does_not_grow_with_depth():
    assert _equation_count(2, True) == _equation_count(8, True)
    assert _equation_count(8, False) > 2 * _equation_count(2, False)


def test_real_t5x_checkpoint_loads_scanned(t5x_tiny_checkpoint, tmp_path):
    unrolled = load_t5(t5x_tiny_checkpoint)
    scanned = load_t5(t5x_tiny_checkpoint, scan_layers=True)
    assert is_stacked(scanned.params)
    rng = np.random.default_rng(3)
    enc = rng.integers(2, unrolled.config.vocab_size, (2, 6)).astype(np.int32)
    dec = rng.integers(2, unrolled.config.vocab_size, (2, 4)).astype(np.int32)
    a = unrolled.logits(enc, dec)
    np.testing.assert_allclose(scanned.logits(enc, dec), a, rtol=1e-5,
                               atol=1e-5 * np.abs(a).max())
    # Saving the stacked weights writes t5x's per-layer names; they load back unchanged.
    save_native(tmp_path / "native", scanned.config, scanned.params)
    again = load_t5(tmp_path / "native")
    assert "layers_1" in again.params["decoder"]
    assert _leaves_equal(jax.tree_util.tree_map(np.asarray, again.params),
                         jax.tree_util.tree_map(np.asarray, unrolled.params))
