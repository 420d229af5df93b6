"""Three ways to use a ranked list of source prompts for a target (SPoT section 3):

- best of top-k: train the target once from each of the top-k source prompts, keep the best;
- top-k weighted average: one initial prompt, sum_r a_r * prompt_r with a_r = sim_r / sum sim;
- top-k multi-task mixture: train one prompt on the top-k sources' data mixed with the
  target's (examples-proportional), then use it as the target's initial prompt.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from spot.errors import ConfigError, PromptError

STRATEGIES = ("best", "weighted", "mixture")


def weighted_average(prompts: Sequence[np.ndarray], scores: Sequence[float]) -> np.ndarray:
    """sum_r a_r prompt_r with a_r = score_r / sum(scores). Scores must be positive (all
    similarity metrics here are: cosines of prompts are in practice > 0, distances map to
    1/(1+d)); a non-positive total is an error rather than a silently flipped prompt."""
    if not prompts:
        raise ConfigError("weighted average needs at least one prompt")
    shapes = {np.shape(p) for p in prompts}
    if len(shapes) != 1:
        raise PromptError(f"prompts to average have different shapes: {sorted(shapes)}")
    s = np.asarray(scores, np.float64)
    if s.shape != (len(prompts),) or not np.all(np.isfinite(s)):
        raise ConfigError(f"need one finite score per prompt, got {scores!r}")
    if s.sum() <= 0:
        raise ConfigError(f"similarity scores sum to {s.sum():.4g}; weights would be undefined")
    weights = s / s.sum()
    out = np.zeros(shapes.pop(), np.float64)
    for w, p in zip(weights, prompts):
        out += w * np.asarray(p, np.float64)
    return out.astype(np.float32)


def mixture_of(target: str, sources: Sequence[str], *, K: int = 2**19) -> str:
    """Register (or reuse) the ad-hoc mixture of the top-k sources and the target."""
    from spot.data import registry

    tasks = list(dict.fromkeys([*sources, target]))
    return registry.make_mixture(tasks, K=K)


def best_of_top_k(sources: Sequence[str], train_from: Callable[[str], float]
                  ) -> tuple[str, float, dict[str, float]]:
    """Train from each source (callback returns the target's validation score); the best
    source, its score, and every score."""
    if not sources:
        raise ConfigError("best of top-k needs at least one source")
    scores = {s: float(train_from(s)) for s in sources}
    best = max(scores, key=lambda s: (scores[s], -list(sources).index(s)))
    return best, scores[best], scores


def ranked_sources(library: Any, target_embedding: Any, *, metric: str, k: int,
                   exclude: Sequence[str] = ()) -> list[tuple[str, float]]:
    """Top-k source tasks by task-level similarity, leaving out the target itself."""
    from spot.retrieval.similarity import check_k

    k = check_k(k)
    ranked = library.rank(target_embedding, metric=metric, k=None, by="task")
    out = [(t, float(s)) for t, s in ranked if t not in set(exclude)]
    if k > len(out):
        raise ConfigError(f"k={k} but the library holds only {len(out)} candidate source tasks")
    return out[:k]
