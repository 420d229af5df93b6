"""Figures: files are real PNG/PDF, clustering groups similar tasks, `spot study plot` end to end."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from spot.analysis.plots import (
    cluster_order,
    plot_similarity_clustermap,
    plot_similarity_vs_transfer,
    plot_transfer_heatmap,
)
from spot.analysis.transfer import read_results, summarize
from spot.cli import cli
from spot.errors import DataError
from spot.library.store import PromptLibrary
from tests.analysis.test_transfer import TABLE


def _check_files(paths, stem):
    assert [p.name for p in paths] == [f"{stem.name}.png", f"{stem.name}.pdf"]
    png, pdf = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2_000
    assert not list(stem.parent.glob(".*.tmp"))


def test_transfer_heatmap(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(TABLE)
    stem = tmp_path / "figs" / "heat"
    _check_files(plot_transfer_heatmap(summarize(read_results(path)), stem), stem)
    with pytest.raises(DataError, match="no transfer pairs"):
        plot_transfer_heatmap({"targets": ["A"], "sources": [], "pairs": [], "best_source": {}}, stem)


def test_cluster_order_groups_blocks():
    # Tasks 0, 2, 4 are close to each other, 1 and 3 to each other.
    group = np.array([0, 1, 0, 1, 0])
    sim = np.where(group[:, None] == group[None, :], 0.9, 0.1) + np.eye(5) * 0.1
    order, _ = cluster_order(sim)
    assert sorted(order) == [0, 1, 2, 3, 4]
    labels = [group[i] for i in order]
    assert labels in ([0, 0, 0, 1, 1], [1, 1, 0, 0, 0])


def test_clustermap_and_scatter(tmp_path):
    names = ["boolq", "cb", "copa", "rte", "wsc", "mnli"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    sim = np.corrcoef(x)
    stem = tmp_path / "cluster"
    _check_files(plot_similarity_clustermap(names, sim, stem, metric="avg_cosine"), stem)
    with pytest.raises(DataError, match="square"):
        plot_similarity_clustermap(names, sim[:, :5], stem)
    with pytest.raises(DataError, match="non-finite"):
        plot_similarity_clustermap(names[:2], [[1.0, np.nan], [np.nan, 1.0]], stem)

    points = {"A": [(0.9, 48.6, "s1"), (0.1, 14.3, "s2"), (0.5, 20.0, "s3")], "B": [(0.8, 0.0), (0.3, 60.0)],
              "C": [(0.2, 5.0)]}
    stem = tmp_path / "scatter"
    _check_files(plot_similarity_vs_transfer(points, stem), stem)
    with pytest.raises(DataError, match="no .* points"):
        plot_similarity_vs_transfer({"A": []}, stem)


def test_cli_plot_with_library(tmp_path):
    results = tmp_path / "r.csv"
    results.write_text(TABLE)
    rng = np.random.default_rng(1)
    with PromptLibrary(tmp_path / "lib") as lib:
        for task in ("A", "B", "s1", "s2"):
            for _ in range(2):
                lib.add(task=task, prompt=rng.normal(size=(3, 8)) + 1.0)
    out = tmp_path / "figs"
    result = CliRunner().invoke(cli, ["study", "plot", str(results), "--out", str(out), "--library",
                                      str(tmp_path / "lib"), "--metric", "avg_cosine"])
    assert result.exit_code == 0, (result.output, result.exception)
    made = sorted(p.name for p in out.iterdir())
    assert made == sorted(f"{s}.{e}" for s in ("transfer_heatmap", "similarity_clustermap", "similarity_vs_transfer")
                          for e in ("png", "pdf"))
    result = CliRunner().invoke(cli, ["study", "plot", str(results), "--out", str(out), "--metric", "cos"])
    assert result.exit_code != 0
