"""The six similarity metrics against definitional float64 implementations and scipy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from spot.errors import ConfigError, PromptError
from spot.retrieval.similarity import METRICS, similarity, similarity_matrix, task_similarity

RTOL, ATOL = 1e-10, 1e-12


def naive_similarity(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    """The METHOD.md definitions written out token by token: every token pair visited, sums
    over tokens exactly rounded (math.fsum)."""
    a = [np.asarray(t, dtype=np.float64) for t in a]
    b = [np.asarray(t, dtype=np.float64) for t in b]
    width = len(a[0])

    def mean(tokens):
        return np.array([math.fsum(t[d] for t in tokens) / len(tokens) for d in range(width)])

    def dot(x, y):
        return float(np.dot(x, y))

    def cos(x, y):
        return dot(x, y) / (math.sqrt(dot(x, x)) * math.sqrt(dot(y, y)))

    def euclid(x, y):
        d = x - y
        return math.sqrt(float(np.dot(d, d)))

    def manhattan(x, y):
        return float(np.sum(np.abs(x - y)))

    if metric == "avg_cosine":
        return cos(mean(a), mean(b))
    if metric == "avg_euclidean":
        return 1.0 / (1.0 + euclid(mean(a), mean(b)))
    if metric == "avg_manhattan":
        return 1.0 / (1.0 + manhattan(mean(a), mean(b)))
    pair = {"per_token_cosine": cos, "per_token_euclidean": euclid, "per_token_manhattan": manhattan}[metric]
    total = math.fsum(pair(x, y) for x in a for y in b) / (len(a) * len(b))
    return total if metric == "per_token_cosine" else 1.0 / (1.0 + total)


def scipy_similarity(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    """The same definitions through scipy's distance functions."""
    ma, mb = a.mean(0, keepdims=True), b.mean(0, keepdims=True)
    if metric == "avg_cosine":
        return 1.0 - cdist(ma, mb, "cosine")[0, 0]
    if metric == "avg_euclidean":
        return 1.0 / (1.0 + cdist(ma, mb, "euclidean")[0, 0])
    if metric == "avg_manhattan":
        return 1.0 / (1.0 + cdist(ma, mb, "cityblock")[0, 0])
    if metric == "per_token_cosine":
        return float(np.mean(1.0 - cdist(a, b, "cosine")))
    kind = "euclidean" if metric == "per_token_euclidean" else "cityblock"
    return 1.0 / (1.0 + float(np.mean(cdist(a, b, kind))))


@pytest.fixture(scope="module")
def released(released_prompts_dir):
    return {p.stem: np.load(p, allow_pickle=False) for p in sorted(released_prompts_dir.glob("*.npy"))}


@pytest.mark.parametrize("metric", METRICS)
def test_released_prompts_match_naive(released, metric):
    assert sorted(released) == ["mrpc", "rte", "sst2"]
    for x, y in itertools.combinations_with_replacement(sorted(released), 2):
        a, b = released[x], released[y]
        assert a.shape == (100, 768) and a.dtype == np.float32
        got = similarity(a, b, metric)
        assert isinstance(got, float)
        assert got == pytest.approx(naive_similarity(a, b, metric), rel=RTOL, abs=ATOL), (x, y)
        assert got == pytest.approx(scipy_similarity(a.astype(np.float64), b.astype(np.float64), metric),
                                    rel=1e-9, abs=1e-12), (x, y)


def test_released_prompt_self_similarity(released):
    rte = released["rte"]
    assert similarity(rte, rte, "avg_cosine") == pytest.approx(1.0, abs=1e-14)
    assert similarity(rte, rte, "avg_euclidean") == 1.0
    assert similarity(rte, rte, "avg_manhattan") == 1.0
    # Per-token metrics compare every token with every other token, so a prompt is not
    # maximally similar to itself under them; its diagonal terms alone give 1/L.
    assert similarity(rte, rte, "per_token_cosine") > 1.0 / 100


@pytest.mark.parametrize("metric", METRICS)
def test_random_unequal_lengths_match_naive(metric):
    rng = np.random.default_rng(7)
    for la, lb, width, scale in [(7, 11, 16, 1.0), (1, 5, 3, 40.0), (13, 2, 33, 1e-3)]:
        a = rng.normal(0.0, scale, size=(la, width)) + rng.normal(size=width)
        b = rng.normal(0.0, scale, size=(lb, width)).astype(np.float32)
        got = similarity(a, b, metric)
        assert got == pytest.approx(naive_similarity(a, b, metric), rel=RTOL, abs=ATOL)
        assert got == pytest.approx(scipy_similarity(a, b.astype(np.float64), metric), rel=1e-9, abs=1e-12)
        assert got == pytest.approx(similarity(b, a, metric), rel=1e-13, abs=1e-15)  # symmetric


def test_per_token_cosine_is_not_the_average_cosine():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[1.0, 1.0]])
    assert similarity(a, b, "avg_cosine") == pytest.approx(1.0)
    assert similarity(a, b, "per_token_cosine") == pytest.approx(math.sqrt(0.5))
    # 1 / (1 + mean(|a_i - b|_2)) with both distances equal to 1
    assert similarity(a, b, "per_token_euclidean") == pytest.approx(0.5)
    assert similarity(a, b, "avg_manhattan") == pytest.approx(1.0 / (1.0 + 1.0))


@pytest.mark.parametrize("metric", METRICS)
def test_matrix_and_task_similarity(metric):
    rng = np.random.default_rng(3)
    runs_a = [rng.normal(size=(n, 8)) for n in (3, 5, 4)]
    runs_b = [rng.normal(size=(n, 8)) + 0.5 for n in (6, 2)]
    matrix = similarity_matrix(runs_a, runs_b, metric)
    assert matrix.shape == (3, 2)
    naive = np.array([[naive_similarity(a, b, metric) for b in runs_b] for a in runs_a])
    np.testing.assert_allclose(matrix, naive, rtol=RTOL, atol=ATOL)
    # Task similarity averages over all 3 x 2 run pairs.
    assert task_similarity(runs_a, runs_b, metric) == pytest.approx(naive.mean(), rel=RTOL, abs=ATOL)


def test_unknown_metric():
    a = np.ones((2, 3))
    with pytest.raises(ConfigError, match="unknown similarity metric 'cosine'.*avg_cosine"):
        similarity(a, a, "cosine")
    with pytest.raises(ConfigError):
        task_similarity([a], [a], "l2")


@pytest.mark.parametrize("metric", METRICS)
def test_bad_embeddings(metric):
    good = np.ones((2, 3))
    with pytest.raises(PromptError, match="widths differ: 3 vs 4"):
        similarity(good, np.ones((2, 4)), metric)
    with pytest.raises(PromptError, match="2-D"):
        similarity(np.ones(3), good, metric)
    with pytest.raises(PromptError, match="2-D"):
        similarity(good, np.ones((1, 2, 3)), metric)
    with pytest.raises(PromptError, match="empty"):
        similarity(np.ones((0, 3)), good, metric)
    for bad in (np.nan, np.inf, -np.inf):
        x = good.copy()
        x[1, 2] = bad
        with pytest.raises(PromptError, match="non-finite value at token 1, dim 2"):
            similarity(good, x, metric)
    with pytest.raises(PromptError, match="numbers"):
        similarity(np.array([["a", "b"]]), np.ones((1, 2)), metric)


def test_zero_norm_tokens():
    a = np.array([[0.0, 0.0], [1.0, 2.0]])
    b = np.array([[1.0, 1.0]])
    with pytest.raises(PromptError, match="zero-norm token"):
        similarity(a, b, "per_token_cosine")
    with pytest.raises(PromptError, match="mean token is zero"):
        similarity(np.array([[1.0, 0.0], [-1.0, 0.0]]), b, "avg_cosine")
    # Distance metrics stay defined.
    assert similarity(a, b, "avg_euclidean") == pytest.approx(naive_similarity(a, b, "avg_euclidean"))


def test_matrix_input_errors():
    with pytest.raises(PromptError, match="sequence of"):
        similarity_matrix(np.ones((2, 3)), [np.ones((2, 3))], "avg_cosine")
    with pytest.raises(PromptError, match="empty"):
        task_similarity([], [np.ones((2, 3))], "avg_cosine")
    with pytest.raises(PromptError, match=r"embeddings_b\[1\]"):
        similarity_matrix([np.ones((2, 3))], [np.ones((2, 3)), np.full((2, 3), np.nan)], "per_token_euclidean")
