"""The screening intervals always hold the exact float64 score, at every stage and scale."""

from __future__ import annotations

import numpy as np
import pytest

from spot.library import ranking
from spot.retrieval.similarity import SUMMARY_METRICS, summarize, summary_similarity


def _group(keys):
    summaries = [summarize(k) for k in keys]
    group = ranking.WidthGroup(keys[0].shape[1])
    group.append(np.arange(len(keys), dtype=np.int64), [f"{i:016x}" for i in range(len(keys))],
                 [f"t{i % 7}" for i in range(len(keys))], ["m"] * len(keys),
                 np.stack([s.mean for s in summaries]), np.stack([s.unit_mean for s in summaries]))
    return group, summaries


@pytest.mark.parametrize("metric", SUMMARY_METRICS)
@pytest.mark.parametrize("scale", [1e-12, 1.0, 40.0, 1e6])
def test_intervals_contain_exact_scores(metric, scale):
    rng = np.random.default_rng(11)
    width = 48
    keys = []
    for i in range(300):
        kind = i % 4
        if kind == 0:  # heavy tails: one huge coordinate dominates the int8 scale
            k = rng.standard_t(1.5, size=(3, width))
        elif kind == 1:  # near-duplicates of one direction
            k = np.ones((2, width)) + rng.normal(size=(2, width)) * 1e-7
        elif kind == 2:  # a constant offset shared by every token, as real prompts have
            k = rng.normal(size=(5, width)) + 3.0
        else:
            k = rng.normal(size=(1 + i % 6, width))
        keys.append(k * scale)
    group, summaries = _group(keys)
    queries = [[rng.normal(size=(4, width)) * scale], [np.ones((3, width)) * scale],
               [rng.normal(size=(2, width)) * scale, rng.standard_t(1.5, size=(6, width)) * scale]]
    for runs in queries:
        q_summ = [summarize(q) for q in runs]
        exact = np.array([np.mean([summary_similarity(q, s, metric) for q in q_summ]) for s in summaries])
        for stage in ranking.stages(metric):
            for rows in (None, np.arange(0, 300, 3)):
                lo, hi = ranking.screen(group, rows, q_summ, metric, stage)
                want = exact if rows is None else exact[rows]
                assert np.all(lo <= want) and np.all(want <= hi), (stage, np.max(lo - want), np.max(want - hi))
                if stage == "float32":
                    assert np.median(hi - lo) < 1e-3  # tight enough to decide all but near-ties
                else:
                    assert np.median(hi - lo) < 0.2


def test_candidates_keep_every_possible_top_k():
    lo = np.array([0.1, 0.5, 0.45, 0.2, 0.5])
    hi = lo + 0.06
    # the 2nd best lower bound is 0.5: everything whose upper bound reaches it stays
    assert ranking.candidates(lo, hi, 2).tolist() == [1, 2, 4]
    assert ranking.candidates(lo, hi, None).tolist() == [0, 1, 2, 3, 4]
    assert ranking.candidates(lo, hi, 9).tolist() == [0, 1, 2, 3, 4]


def test_unsafe_entries_are_always_candidates():
    keys = [np.full((2, 4), 1e-200), np.ones((2, 4)), np.ones((2, 4)) * [1, 2, 3, 4]]
    group, _ = _group(keys)
    assert group.unsafe_count == 1
    lo, hi = ranking.screen(group, None, [summarize(np.ones((1, 4)))], "avg_cosine", "int8")
    assert lo[0] == -np.inf and hi[0] == np.inf and np.isfinite(lo[1:]).all()
