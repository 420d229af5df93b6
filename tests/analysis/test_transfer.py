"""Transfer analysis on hand-made tables with hand-computed answers; correlations vs scipy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner

from spot.analysis.transfer import (
    Row,
    markdown_table,
    ranking_quality,
    read_results,
    read_similarities,
    relative_error_reduction,
    summarize,
)
from spot.cli import cli
from spot.errors import DataError

TABLE = """source,target,seed,score,note
none,A,0,60,
none,A,1,70,
s1,A,0,80,
s1,A,1,84,
s2,A,0,70,single seed
none,B,0,50,
s1,B,0,40,
s1,B,1,50,
s1,B,2,60,
s2,B,0,75,
s2,B,1,85,
"""
SIMS = {"avg_cosine": {("s1", "A"): 0.9, ("s2", "A"): 0.1, ("s1", "B"): 0.8, ("s2", "B"): 0.3}}


@pytest.fixture
def results_csv(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(TABLE)
    return path


def test_relative_error_reduction():
    assert relative_error_reduction(82.0, 65.0) == pytest.approx(17 / 35 * 100)
    assert relative_error_reduction(40.0, 50.0) == pytest.approx(-20.0)
    with pytest.raises(DataError, match="no error to reduce"):
        relative_error_reduction(100.0, 100.0)


def test_summarize_hand_computed(results_csv):
    rows = read_results(results_csv)
    assert rows[0] == Row("none", "A", 0, 60.0, 2) and len(rows) == 11
    s = summarize(rows, SIMS)
    assert s["targets"] == ["A", "B"] and s["sources"] == ["s1", "s2"]
    assert s["baseline"] == {"A": 65.0, "B": 50.0}
    pairs = {(p["source"], p["target"]): p for p in s["pairs"]}
    # A: baseline 65, error 35.  B: baseline 50, error 50.
    assert pairs[("s1", "A")]["mean"] == 82.0 and pairs[("s1", "A")]["n"] == 2
    assert pairs[("s1", "A")]["std"] == pytest.approx(np.sqrt(8.0))  # sample std of 80, 84
    assert pairs[("s1", "A")]["relative_error_reduction"] == pytest.approx(17 / 35 * 100)
    assert pairs[("s2", "A")]["std"] is None
    assert pairs[("s2", "A")]["relative_error_reduction"] == pytest.approx(5 / 35 * 100)
    assert pairs[("s1", "B")]["std"] == pytest.approx(10.0)
    assert pairs[("s1", "B")]["relative_error_reduction"] == pytest.approx(0.0)
    assert pairs[("s2", "B")]["relative_error_reduction"] == pytest.approx(60.0)
    assert s["best_source"] == {"A": "s1", "B": "s2"}
    assert s["baseline_average"] == pytest.approx(57.5)
    assert s["oracle_average"] == pytest.approx(81.0)
    assert s["oracle_relative_error_reduction_average"] == pytest.approx((17 / 35 * 100 + 60) / 2)

    curve = s["best_of_top_k"]["avg_cosine"]
    # Top-1 by similarity: s1 for both targets (82 on A, 50 on B); top-2: the oracle.
    assert curve["k"] == [1, 2]
    assert curve["average_score"] == pytest.approx([66.0, 81.0])
    assert curve["average_relative_error_reduction"] == pytest.approx([(17 / 35 * 100 + 0) / 2,
                                                                       (17 / 35 * 100 + 60) / 2])
    assert curve["average_regret"] == pytest.approx([(0 + 30 / 80 * 100) / 2, 0.0])
    quality = s["ranking_quality"]["avg_cosine"]
    assert quality["B"]["spearman"] == pytest.approx(-1.0) and quality["B"]["pearson"] == pytest.approx(-1.0)
    assert quality["B"]["regret@1"] == pytest.approx(37.5) and quality["A"]["regret@1"] == 0.0
    json.dumps(s, allow_nan=False)  # the summary is plain JSON


def test_summarize_without_baseline_keeps_going():
    s = summarize([Row("s1", "A", 0, 70.0), Row("none", "B", 0, 100.0), Row("s1", "B", 0, 100.0)])
    assert [p["relative_error_reduction"] for p in s["pairs"]] == [None, None]
    assert len(s["notes"]) == 2 and s["baseline_average"] == 100.0 and s["oracle_average"] == 85.0
    assert "n/a" in markdown_table(s)


def test_markdown_table(results_csv):
    table = markdown_table(summarize(read_results(results_csv), SIMS))
    lines = table.splitlines()
    assert lines[0] == "| source \\ target | A | B | avg RER |"
    assert lines[2] == "| none (baseline) | 65.0 ± 7.1 | 50.0 | 0.0 |"
    assert lines[3] == "| s1 | **82.0 ± 2.8 (+48.6)** | 50.0 ± 10.0 (+0.0) | +24.3 |"
    assert lines[4] == "| s2 | 70.0 (+14.3) | **80.0 ± 7.1 (+60.0)** | +37.1 |"
    assert lines[5] == "| oracle (best source) | 82.0 (s1) | 80.0 (s2) | +54.3 |"
    assert "Baseline average: 57.50; oracle average: 81.00." in table
    assert "| 1 | 66.00 | +24.3 | 18.75 |" in table


def test_ranking_quality_matches_scipy():
    rng = np.random.default_rng(0)
    names = [f"s{i}" for i in range(12)]
    pred_values = np.round(rng.normal(size=12), 1)  # rounding makes ties
    true_values = pred_values * 0.5 + rng.normal(size=12)
    true_values[3] = true_values[5]
    predicted = dict(zip(names, pred_values))
    true = dict(zip(names, 60 + true_values))
    q = ranking_quality(predicted, true, ks=(1, 3, 12))
    assert q["n"] == 12
    assert q["spearman"] == pytest.approx(scipy.stats.spearmanr(pred_values, true_values).statistic, abs=1e-12)
    assert q["pearson"] == pytest.approx(scipy.stats.pearsonr(pred_values, true_values).statistic, abs=1e-12)
    order = sorted(names, key=lambda n: (-predicted[n], n))
    best = max(true.values())
    for k in (1, 3):
        assert q[f"regret@{k}"] == pytest.approx((best - max(true[n] for n in order[:k])) / best * 100)
    assert q["regret@12"] == 0.0


def test_random_regret_is_the_mean_over_every_pick():
    """The exact expectation against brute force over every k-subset (ties included)."""
    import itertools

    from spot.retrieval.quality import random_regret

    rng = np.random.default_rng(1)
    true = list(np.round(50 + 10 * rng.random(8), 0))  # rounding makes ties
    best = max(true)
    for k in (1, 2, 3, 8, 9):
        picks = list(itertools.combinations(true, min(k, len(true))))
        brute = float(np.mean([(best - max(p)) / best * 100.0 for p in picks]))
        assert random_regret(true, k) == pytest.approx(brute, abs=1e-10)
    q = ranking_quality({f"s{i}": float(i) for i in range(8)},
                        {f"s{i}": v for i, v in enumerate(true)}, ks=(1, 3))
    assert q["random_regret@3"] == pytest.approx(random_regret(true, 3))
    assert q["random_regret@1"] == pytest.approx((best - np.mean(true)) / best * 100.0)
    with pytest.raises(DataError):
        random_regret([-1.0, -2.0], 1)


def test_ranking_quality_undefined_cases():
    q = ranking_quality({"a": 1.0}, {"a": 5.0, "b": 3.0})
    assert q["n"] == 1 and q["spearman"] is None and q["pearson"] is None and q["regret@1"] == 0.0
    q = ranking_quality({"a": 1.0, "b": 1.0}, {"a": 5.0, "b": 3.0})
    assert q["pearson"] is None  # constant prediction
    assert ranking_quality({"a": 1.0, "b": 2.0}, {"a": -1.0, "b": -3.0})["regret@1"] is None


@pytest.mark.parametrize("text, message", [
    ("source,target,score\nnone,A,50\n", r"missing column\(s\) seed"),
    ("source,target,seed,score\nnone,A,0,high\n", r"results.csv:2: column 'score' must be a number, got 'high'"),
    ("source,target,seed,score\nnone,A,0,50\ns1,A,x,60\n", r"results.csv:3: column 'seed' must be an integer"),
    ("source,target,seed,score\nnone,A,0,nan\n", r":2: column 'score' is not finite"),
    ("source,target,seed,score\nnone,A,0,50\nnone,A,0,51\n", r":3: duplicate result .*first on line 2"),
    ("source,target,seed,score\n,A,0,50\n", r":2: column 'source' is empty"),
    ("source,target,seed,score\nnone,A,0\n", r":2: column 'score' is missing"),
    ("source,target,seed,score\nnone,A,0,50,7\n", r":2: more fields"),
    ("source,target,seed,score\ns1,none,0,50\n", r"'target' cannot be 'none'"),
    ("source,target,seed,score\n", "no data rows"),
    ("", "is empty"),
])
def test_bad_results_csv(tmp_path, text, message):
    path = tmp_path / "results.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_results(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_results(tmp_path / "nope.csv")


def test_read_similarities(tmp_path):
    path = tmp_path / "sims.csv"
    path.write_text("metric,source,target,similarity\navg_cosine,s1,A,0.9\nper_token_cosine,s1,A,0.2\n")
    assert read_similarities(path) == {"avg_cosine": {("s1", "A"): 0.9}, "per_token_cosine": {("s1", "A"): 0.2}}
    path.write_text("metric,source,target,similarity\ncosine,s1,A,0.9\n")
    with pytest.raises(DataError, match=":2: unknown metric 'cosine'"):
        read_similarities(path)


def test_cli_summarize(results_csv, tmp_path):
    sims = tmp_path / "sims.csv"
    sims.write_text("metric,source,target,similarity\n" + "".join(
        f"avg_cosine,{s},{t},{v}\n" for (s, t), v in SIMS["avg_cosine"].items()))
    out = tmp_path / "out" / "summary.json"
    result = CliRunner().invoke(cli, ["study", "summarize", str(results_csv), "--json", str(out),
                                      "--similarities", str(sims)])
    assert result.exit_code == 0, result.output
    assert "| s1 | **82.0 ± 2.8 (+48.6)**" in result.output
    summary = json.loads(out.read_text())
    assert summary["oracle_average"] == 81.0 and summary["baseline_average"] == 57.5
    assert summary["best_of_top_k"]["avg_cosine"]["average_score"] == [66.0, 81.0]

    bad = tmp_path / "bad.csv"
    bad.write_text("source,target,seed\nnone,A,0\n")
    result = CliRunner().invoke(cli, ["study", "summarize", str(bad)])
    assert isinstance(result.exception, DataError) and "missing column(s) score" in str(result.exception)
