"""The learned affinity scorer against the similarity metrics on a synthetic gain table whose
gains follow a known function of the embeddings (one that no similarity metric expresses)."""

from __future__ import annotations

import numpy as np
import pytest

from spot.errors import ConfigError, DataError
from spot.retrieval.affinity import (
    AffinityConfig,
    AffinityScorer,
    Pair,
    gains_from_results,
    leave_one_target_out,
    smooth_l1,
)
from spot.retrieval.strategies import weighted_average


def _synthetic(n_sources=14, n_targets=6, L=6, E=16, seed=0):
    """Gain = 10 * tanh(2 * <a(source), b(target)>) where a and b read different halves of
    the mean token: similar tasks need not transfer well, dissimilar ones may."""
    rng = np.random.default_rng(seed)
    emb = {}
    for i in range(n_sources):
        emb[f"s{i}"] = [rng.normal(size=(L, E)).astype(np.float32) + rng.normal(size=E)]
    for j in range(n_targets):
        emb[f"t{j}"] = [rng.normal(size=(L, E)).astype(np.float32) + rng.normal(size=E)]

    def gain(s, t):
        ms, mt = emb[s][0].mean(0), emb[t][0].mean(0)
        ms, mt = ms / np.linalg.norm(ms), mt / np.linalg.norm(mt)
        return float(10 * np.tanh(2 * np.dot(ms[: E // 2], mt[E // 2:])))

    pairs = [Pair(t, s, gain(s, t), 50.0 + gain(s, t))
             for t in (f"t{j}" for j in range(n_targets))
             for s in (f"s{i}" for i in range(n_sources))]
    return pairs, emb


def test_scorer_beats_every_similarity_metric_on_known_function():
    pairs, emb = _synthetic()
    quality = leave_one_target_out(pairs, emb, AffinityConfig(steps=800, hidden=32))
    scorer = quality.pop("affinity")
    print("affinity", scorer)
    for metric, q in quality.items():
        print(metric, q)
        assert scorer["spearman"] > q["spearman"] + 0.1, metric
    assert scorer["spearman"] > 0.5


def test_smooth_l1_matches_definition():
    import jax.numpy as jnp

    pred = jnp.array([0.0, 0.5, 3.0, -2.0])
    target = jnp.zeros(4)
    # beta 1: 0, 0.125, 2.5, 1.5 -> mean 1.03125
    assert abs(float(smooth_l1(pred, target, 1.0)) - 1.03125) < 1e-6
    # beta 2: 0, 0.0625, 2.0, 1.0 -> mean 0.765625
    assert abs(float(smooth_l1(pred, target, 2.0)) - 0.765625) < 1e-6


def test_save_load_roundtrip_and_errors(tmp_path):
    pairs, emb = _synthetic(n_sources=5, n_targets=2)
    scorer = AffinityScorer(AffinityConfig(steps=50)).fit(pairs, emb)
    scorer.save(tmp_path / "aff")
    again = AffinityScorer.load(tmp_path / "aff")
    t, s = emb["t0"], emb["s1"]
    np.testing.assert_allclose(again.predict(t, s), scorer.predict(t, s), rtol=1e-6)
    with pytest.raises(DataError, match="not an affinity scorer"):
        AffinityScorer.load(tmp_path)
    with pytest.raises(ConfigError, match="variant"):
        AffinityConfig(variant="huge")
    with pytest.raises(DataError, match="no task embedding"):
        AffinityScorer(AffinityConfig(steps=5)).fit([Pair("t9", "s0", 1.0, 51.0)], emb)


def test_gains_from_results():
    from types import SimpleNamespace as R

    rows = [R(source="none", target="a", seed=0, score=60.0),
            R(source="none", target="a", seed=1, score=62.0),
            R(source="x", target="a", seed=0, score=70.0),
            R(source="x", target="a", seed=1, score=72.0),
            R(source="mixture", target="a", seed=0, score=99.0)]
    (p,) = gains_from_results(rows)
    assert (p.source, p.target, p.gain, p.score) == ("x", "a", 10.0, 71.0)
    with pytest.raises(DataError):
        gains_from_results(rows[2:4])


def test_weighted_average():
    a, b = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    np.testing.assert_allclose(weighted_average([a, b], [3.0, 1.0]), 0.75)
    with pytest.raises(ConfigError, match="sum to"):
        weighted_average([a, b], [0.0, 0.0])
    from spot.errors import PromptError

    with pytest.raises(PromptError, match="different shapes"):
        weighted_average([a, np.ones((3, 3))], [1.0, 1.0])


def test_encoder_variant_reads_concatenated_prompts_with_the_frozen_encoder(tmp_path):
    from spot.model.api import random_t5

    t5 = random_t5("test_tiny", seed=0)
    pairs, emb = _synthetic(n_sources=4, n_targets=2, E=16)
    scorer = AffinityScorer(AffinityConfig(variant="encoder", steps=20), t5=t5).fit(pairs, emb)
    before = np.asarray(t5.params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"])
    after = np.asarray(scorer.params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"])
    assert not np.allclose(before, after)  # the backbone is fine-tuned, from the model's weights
    pred = scorer.predict(emb["t0"], emb["s0"])
    assert pred.shape == (1,) and np.isfinite(pred).all()
    scorer.save(tmp_path / "enc")
    again = AffinityScorer.load(tmp_path / "enc")
    np.testing.assert_allclose(again.predict(emb["t0"], emb["s0"]), pred, rtol=1e-5)
    from spot.errors import PromptError

    with pytest.raises(PromptError, match="width 8 does not match"):
        scorer.predict([np.zeros((3, 8), np.float32)], [np.zeros((3, 8), np.float32)])
