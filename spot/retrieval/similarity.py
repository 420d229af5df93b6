"""Similarity between task embeddings (prompt checkpoints of shape [L, E]).

Six metrics, all "higher is more similar":

- ``avg_cosine``: cos(mean_i a_i, mean_j b_j)
- ``per_token_cosine``: (1 / (L1 L2)) sum_i sum_j cos(a_i, b_j), computed as the dot product
  of the two means of unit-normalized tokens (the same number, in O(L E) per pair)
- ``avg_euclidean`` / ``avg_manhattan``: 1 / (1 + d(mean a, mean b))
- ``per_token_euclidean`` / ``per_token_manhattan``: 1 / (1 + (1 / (L1 L2)) sum_i sum_j
  d(a_i, b_j)); these two look at every token pair and cost O(L1 L2 E) per pair.

The four cheap metrics only need a `Summary` of each embedding (its mean token and its mean
unit-normalized token); the library stores summaries at `add` time so ranking costs
O(entries x E). All arithmetic is float64; pair scores sum with numpy's own reductions
(never BLAS) so the same inputs always give bit-identical scores, which lets the library's
fast ranking reproduce the naive ranking exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from spot.errors import ConfigError, PromptError
from spot.model.prompt_check import validate_prompt

METRICS: tuple[str, ...] = (
    "avg_cosine",
    "per_token_cosine",
    "avg_euclidean",
    "per_token_euclidean",
    "avg_manhattan",
    "per_token_manhattan",
)
# Metrics that a `Summary` answers; the other two need the full token matrices.
SUMMARY_METRICS: tuple[str, ...] = ("avg_cosine", "per_token_cosine", "avg_euclidean", "avg_manhattan")

# Rows of `a` handled at once by the per-token distances (bounds the [rows, L2, E] temporary).
_PAIR_BLOCK_ELEMENTS = 4_000_000


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ConfigError(f"unknown similarity metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


def check_k(k: object, *, allow_none: bool = False) -> int | None:
    """How many sources (or entries) to keep: a positive integer (None = all, where allowed).

    The one validator behind `PromptLibrary.rank`, `ranked_sources` and every CLI `--k`.
    """
    if k is None and allow_none:
        return None
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return int(k)


def as_embedding(x: object, name: str = "embedding") -> np.ndarray:
    """Validate a task embedding and return it as a C-contiguous float64 [L, E] array (the
    prompt check of `spot.model.prompt_check.validate_prompt`, in float64)."""
    return validate_prompt(x, source=name, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Summary:
    """What the cheap metrics need from one embedding: float64 vectors of the embedding width.

    `unit_mean` holds NaN when some token has zero norm (its cosine is undefined); the
    metrics that need it then raise.
    """

    mean: np.ndarray
    unit_mean: np.ndarray
    length: int

    @property
    def width(self) -> int:
        return int(self.mean.shape[0])


def summarize(x: object, name: str = "embedding") -> Summary:
    arr = as_embedding(x, name)
    mean = arr.mean(axis=0)
    norms = np.sqrt(np.sum(arr * arr, axis=1))
    if (norms == 0).any():
        unit_mean = np.full(arr.shape[1], np.nan)
    else:
        unit_mean = (arr / norms[:, None]).mean(axis=0)
    return Summary(mean=mean, unit_mean=unit_mean, length=int(arr.shape[0]))


def _check_widths(wa: int, wb: int) -> None:
    if wa != wb:
        raise PromptError(f"embedding widths differ: {wa} vs {wb}; compare embeddings of one model size")


def _norm(v: np.ndarray) -> float:
    return float(np.sqrt(np.sum(v * v)))


def summary_similarity(a: Summary, b: Summary, metric: str) -> float:
    """One of the four cheap metrics from two summaries (float64, deterministic)."""
    _check_widths(a.width, b.width)
    if metric == "avg_cosine":
        na, nb = _norm(a.mean), _norm(b.mean)
        if na == 0 or nb == 0:
            raise PromptError("avg_cosine is undefined for an embedding whose mean token is zero")
        return float(np.sum(a.mean * b.mean)) / (na * nb)
    if metric == "per_token_cosine":
        if np.isnan(a.unit_mean[0]) or np.isnan(b.unit_mean[0]):
            raise PromptError("per_token_cosine is undefined for an embedding with a zero-norm token")
        return float(np.sum(a.unit_mean * b.unit_mean))
    if metric == "avg_euclidean":
        return 1.0 / (1.0 + _norm(a.mean - b.mean))
    if metric == "avg_manhattan":
        return 1.0 / (1.0 + float(np.sum(np.abs(a.mean - b.mean))))
    check_metric(metric)
    raise ConfigError(f"{metric} needs the full token matrices, not summaries")


def token_pair_similarity(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    """`per_token_euclidean` / `per_token_manhattan`: O(L1 L2 E) work per pair.

    Differences are taken directly (no |a|^2 + |b|^2 - 2ab shortcut) so near-identical
    tokens keep full precision.
    """
    _check_widths(a.shape[1], b.shape[1])
    rows = max(1, _PAIR_BLOCK_ELEMENTS // (b.shape[0] * b.shape[1]))
    dist = np.empty((a.shape[0], b.shape[0]))
    for start in range(0, a.shape[0], rows):
        diff = a[start:start + rows, None, :] - b[None, :, :]
        if metric == "per_token_euclidean":
            dist[start:start + rows] = np.sqrt(np.sum(diff * diff, axis=2))
        elif metric == "per_token_manhattan":
            dist[start:start + rows] = np.sum(np.abs(diff), axis=2)
        else:
            check_metric(metric)
            raise ConfigError(f"{metric} is not a per-token distance metric")
    return 1.0 / (1.0 + float(np.mean(dist)))


def similarity(a: object, b: object, metric: str = "per_token_cosine") -> float:
    """Similarity of two task embeddings [L1, E] and [L2, E]; see the module docstring."""
    check_metric(metric)
    if metric in SUMMARY_METRICS:
        return summary_similarity(summarize(a, "first embedding"), summarize(b, "second embedding"), metric)
    return token_pair_similarity(as_embedding(a, "first embedding"), as_embedding(b, "second embedding"), metric)


def prepare_embeddings(embeddings: Sequence[object], metric: str, side: str = "embeddings") -> list:
    """Validate a list of embeddings once and reduce them to what `metric` needs, so a
    matrix of n x m scores summarizes n + m inputs instead of 2 n m."""
    if isinstance(embeddings, np.ndarray) and embeddings.ndim == 2:
        raise PromptError(f"{side} must be a sequence of [L, E] embeddings, got one 2-D array")
    items = list(embeddings)
    if not items:
        raise PromptError(f"{side} is empty")
    if metric in SUMMARY_METRICS:
        return [summarize(x, f"{side}[{i}]") for i, x in enumerate(items)]
    return [as_embedding(x, f"{side}[{i}]") for i, x in enumerate(items)]


def prepared_matrix(prep_a: Sequence, prep_b: Sequence, metric: str) -> np.ndarray:
    """Pairwise scores of already summarized (or validated) embeddings."""
    pair = summary_similarity if metric in SUMMARY_METRICS else token_pair_similarity
    out = np.empty((len(prep_a), len(prep_b)))
    for i, a in enumerate(prep_a):
        for j, b in enumerate(prep_b):
            out[i, j] = pair(a, b, metric)
    return out


def similarity_matrix(embeddings_a: Sequence[np.ndarray], embeddings_b: Sequence[np.ndarray],
                      metric: str = "per_token_cosine") -> np.ndarray:
    """[len(a), len(b)] matrix of `similarity(a_i, b_j, metric)`; each input is summarized once."""
    check_metric(metric)
    return prepared_matrix(prepare_embeddings(embeddings_a, metric, "embeddings_a"),
                           prepare_embeddings(embeddings_b, metric, "embeddings_b"), metric)


def task_similarity(runs_a: Sequence[np.ndarray], runs_b: Sequence[np.ndarray],
                    metric: str = "per_token_cosine") -> float:
    """Similarity of two tasks: the mean over all run pairs (3 x 3 = 9 in the paper)."""
    return float(np.mean(similarity_matrix(runs_a, runs_b, metric)))
