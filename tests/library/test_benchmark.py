"""The retrieval benchmark on a small on-disk library (the 100,000-entry run is in docs/performance.md)."""

from __future__ import annotations

import numpy as np
import pytest

from spot.bench.retrieval import RankBenchConfig, benchmark_rank
from spot.errors import ConfigError, LibraryError
from spot.library.store import PromptLibrary


@pytest.mark.parametrize("metric", ["per_token_cosine", "avg_cosine", "avg_euclidean"])
def test_small_benchmark_matches_naive(tmp_path, metric):
    root = tmp_path / "bench"
    result = benchmark_rank(str(root), RankBenchConfig(entries=400, emb_dim=32, prompt_length=20, queries=4,
                                                       metric=metric, check_queries=2))
    assert result["matches_naive"] is True and result["naive_checked_queries"] == 2
    assert result["entries"] == 400 and result["stored_entry_shape"] == [4, 32]
    assert result["query_shape"] == [20, 32] and result["build_s"] > 0
    assert 0 < result["ms_per_query_min"] <= result["ms_per_query_median"] <= result["ms_per_query_p90"]
    with PromptLibrary(root, create=False) as lib:
        assert len(lib) == 400
    again = benchmark_rank(str(root), RankBenchConfig(entries=450, emb_dim=32, prompt_length=20, queries=2,
                                                      metric=metric, check_queries=1))
    assert again["matches_naive"] and again["entries"] == 450
    with PromptLibrary(root, create=False) as lib:  # extended, not rebuilt
        assert len(lib) == 450 and lib.entries()[-1].metadata["bench_index"] == 449


def test_benchmark_refuses_other_libraries_and_bad_arguments(tmp_path):
    with PromptLibrary(tmp_path / "mine") as lib:
        lib.add(task="t", prompt=np.ones((4, 32)))
    with pytest.raises(LibraryError, match="not a benchmark library"):
        benchmark_rank(str(tmp_path / "mine"), RankBenchConfig(entries=10, emb_dim=32, queries=1))
    with pytest.raises(ConfigError, match="per_token_euclidean costs"):
        benchmark_rank(None, RankBenchConfig(entries=10, metric="per_token_euclidean"))
    with pytest.raises(ConfigError, match="k=20 is larger"):
        benchmark_rank(None, RankBenchConfig(entries=10, k=20))
    result = benchmark_rank(None, RankBenchConfig(entries=30, emb_dim=8, prompt_length=5, queries=2, k=3))
    assert result["root"] is None and result["matches_naive"]
