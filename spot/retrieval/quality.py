"""How well a predicted ordering of sources (similarities, affinity scores) matches their
measured transfer: Spearman and Pearson correlations and Regret@k, beside the Regret@k a
uniformly random pick of k sources gives in expectation."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from spot.errors import DataError


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_vals = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 2:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(np.sum(dx * dx)) * float(np.sum(dy * dy)))
    if denom == 0.0:
        return None
    return max(-1.0, min(1.0, float(np.sum(dx * dy)) / denom))


def rank_by(predicted: Mapping[str, float], names: Sequence[str]) -> list[str]:
    """`names` ordered by predicted value, highest first; ties broken by name."""
    return sorted(names, key=lambda n: (-predicted[n], n))


def ranking_quality(predicted: Mapping[str, float], true: Mapping[str, float],
                    ks: Sequence[int] = (1, 3)) -> dict[str, Any]:
    """How well `predicted` (e.g. similarities) orders candidates by their `true` scores.

    Spearman and Pearson correlations (None when undefined: fewer than 2 items or a
    constant side); they are shift-invariant, so true gains or true scores give the same
    values. Regret@k = (best true - best true among the top-k predicted) / best true x 100
    needs true *scores* (a positive scale) and is None when the best true value is <= 0.
    `random_regret@k` is the expectation of the same quantity for k candidates drawn
    uniformly without replacement (`random_regret`): the floor a predictor must beat.
    Only names present in both mappings count.
    """
    names = sorted(set(predicted) & set(true))
    out: dict[str, Any] = {"n": len(names)}
    p = np.array([float(predicted[n]) for n in names])
    t = np.array([float(true[n]) for n in names])
    out["pearson"] = _pearson(p, t)
    out["spearman"] = _pearson(_ranks(p), _ranks(t)) if names else None
    order = rank_by(predicted, names)
    best = float(t.max()) if names else None
    for k in ks:
        if k < 1:
            raise DataError(f"regret k must be at least 1, got {k}")
        if best is None or best <= 0:
            out[f"regret@{k}"] = None
            continue
        picked = max(float(true[n]) for n in order[:k])
        out[f"regret@{k}"] = (best - picked) / best * 100.0
    for k in ks:
        out[f"random_regret@{k}"] = (random_regret([float(true[n]) for n in names], k)
                                     if best is not None and best > 0 else None)
    return out


def random_regret(true: Sequence[float], k: int) -> float:
    """Expected Regret@k (as `ranking_quality` defines it, in % of the best score) when the k
    candidates are drawn uniformly at random without replacement from `true`'s.

    Exact: with the scores sorted best first, the i-th best (1-based) is the best one drawn
    with probability C(n - i, k - 1) / C(n, k), so E[best drawn] is their weighted sum."""
    values = sorted((float(v) for v in true), reverse=True)
    n = len(values)
    if k < 1:
        raise DataError(f"regret k must be at least 1, got {k}")
    if not n or values[0] <= 0:
        raise DataError("random regret needs at least one candidate with a positive best score")
    k = min(k, n)
    total = math.comb(n, k)
    expected = sum(v * math.comb(n - i, k - 1) for i, v in enumerate(values, start=1)) / total
    return (values[0] - expected) / values[0] * 100.0
