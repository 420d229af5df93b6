"""Saving an affinity scorer over an old one is all or nothing: a failure leaves the old
scorer loadable and unchanged (no new head beside an old affinity.json)."""

from __future__ import annotations

import numpy as np
import pytest

from spot.errors import DataError
from spot.retrieval.affinity import AffinityConfig, AffinityScorer
from tests.retrieval.test_affinity import _synthetic


def test_failed_save_keeps_the_old_scorer(tmp_path):
    pairs, emb = _synthetic(n_sources=4, n_targets=2)
    old = AffinityScorer(AffinityConfig(steps=5, hidden=8)).fit(pairs, emb)
    path = old.save(tmp_path / "aff")
    (path / "NOTES.md").write_text("kept")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    new = AffinityScorer(AffinityConfig(steps=5, hidden=8, seed=1)).fit(pairs, emb)
    new.scale = object()  # not JSON-serializable: the save fails after computing the head
    with pytest.raises(TypeError):
        new.save(path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aff"]
    t, s = emb["t0"], emb["s1"]
    np.testing.assert_allclose(AffinityScorer.load(path).predict(t, s), old.predict(t, s),
                               rtol=1e-6)
    new.scale = old.scale
    new.save(path)  # a successful save replaces the scorer and keeps other files
    assert (path / "NOTES.md").read_text() == "kept"
    np.testing.assert_allclose(AffinityScorer.load(path).predict(t, s), new.predict(t, s),
                               rtol=1e-6)


def test_save_refuses_a_folder_that_is_not_a_scorer(tmp_path):
    pairs, emb = _synthetic(n_sources=4, n_targets=2)
    scorer = AffinityScorer(AffinityConfig(steps=5, hidden=8)).fit(pairs, emb)
    (tmp_path / "data.csv").write_text("x")
    with pytest.raises(DataError, match="not an affinity scorer folder"):
        scorer.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]
