"""Figures of a transfer study, each written as `<out_stem>.png` and `<out_stem>.pdf`.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot, no global backend
switch), so plotting works headless and never disturbs a notebook's own backend.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from spot.errors import DataError
from spot.fileio import atomic_open


def _save(fig: Any, out_stem: str | os.PathLike) -> list[Path]:
    stem = Path(out_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, dpi in (("png", 150), ("pdf", None)):
        path = stem.with_name(stem.name + "." + fmt)
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    return paths


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=None)


def _symmetric_norm(values: np.ndarray) -> Any:
    from matplotlib.colors import TwoSlopeNorm

    finite = values[np.isfinite(values)]
    span = float(np.abs(finite).max()) if finite.size else 1.0
    span = span or 1.0
    return TwoSlopeNorm(vmin=-span, vcenter=0.0, vmax=span)


def plot_transfer_heatmap(summary: Mapping[str, Any], out_stem: str | os.PathLike) -> list[Path]:
    """Source x target heatmap of relative error reduction (%); the oracle source of each
    target is outlined. Blue is better than the from-scratch baseline, red worse."""
    targets, sources = list(summary["targets"]), list(summary["sources"])
    if not targets or not sources:
        raise DataError("the summary has no transfer pairs to plot (need sources other than 'none')")
    values = np.full((len(sources), len(targets)), np.nan)
    for p in summary["pairs"]:
        if p["relative_error_reduction"] is not None:
            values[sources.index(p["source"]), targets.index(p["target"])] = p["relative_error_reduction"]
    fig = _figure(2.5 + 0.75 * len(targets), 1.4 + 0.42 * len(sources))
    ax = fig.add_subplot(1, 1, 1)
    cmap = _cmap("RdBu")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=_symmetric_norm(values), aspect="auto")
    ax.set_xticks(range(len(targets)), labels=targets, rotation=45, ha="right")
    ax.set_yticks(range(len(sources)), labels=sources)
    ax.set_xlabel("target task")
    ax.set_ylabel("source prompt")
    ax.set_title("Relative error reduction over prompt tuning from scratch (%)")
    annotate = len(targets) * len(sources) <= 400
    span = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    from matplotlib.patches import Rectangle

    for j, t in enumerate(targets):
        best = summary["best_source"].get(t)
        for i, s in enumerate(sources):
            v = values[i, j]
            if annotate and np.isfinite(v):
                label = f"{v:.0f}".replace("-0", "0") if round(v) == 0 else f"{v:.0f}"
                ax.text(j, i, label, ha="center", va="center", fontsize=8,
                        color="white" if abs(v) > 0.6 * span else "black",
                        fontweight="bold" if s == best else "normal")
            if s == best:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.8))
    colorbar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colorbar.set_label("relative error reduction (%)")
    return _save(fig, out_stem)


def _cmap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="#d9d9d9")


def cluster_order(matrix: np.ndarray, method: str = "average") -> tuple[list[int], Any]:
    """Leaf order of an average-linkage clustering of a similarity matrix, and its linkage.

    Distances are `max(S) - S` (symmetrized, zero diagonal), so the most similar tasks merge
    first whatever the metric's scale.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    m = np.asarray(matrix, dtype=np.float64)
    if len(m) < 2:
        return list(range(len(m))), None
    dist = m.max() - (m + m.T) / 2.0
    np.fill_diagonal(dist, 0.0)
    dist = np.clip(dist, 0.0, None)
    link = linkage(squareform(dist, checks=False), method=method)
    return [int(i) for i in leaves_list(link)], link


def plot_similarity_clustermap(names: Sequence[str], matrix: np.ndarray, out_stem: str | os.PathLike,
                               metric: str = "similarity") -> list[Path]:
    """Hierarchically clustered heatmap of task-embedding similarities, dendrogram on top."""
    from scipy.cluster.hierarchy import dendrogram

    names = [str(n) for n in names]
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(names):
        raise DataError(f"similarity matrix must be square with one row per name: shape {m.shape}, "
                        f"{len(names)} names")
    if len(names) < 2:
        raise DataError("a clustered heatmap needs at least two tasks")
    if not np.isfinite(m).all():
        raise DataError("similarity matrix holds non-finite values")
    order, link = cluster_order(m)
    n = len(names)
    size = 2.5 + 0.38 * n
    fig = _figure(size + 1.2, size + 1.0)
    grid = fig.add_gridspec(2, 2, width_ratios=[1.0, 0.04], height_ratios=[0.18, 1.0], wspace=0.03, hspace=0.01)
    ax_tree = fig.add_subplot(grid[0, 0])
    dendrogram(link, ax=ax_tree, no_labels=True, color_threshold=0, above_threshold_color="#444444")
    ax_tree.set_axis_off()
    ax = fig.add_subplot(grid[1, 0])
    reordered = m[np.ix_(order, order)]
    image = ax.imshow(reordered, cmap="viridis", aspect="auto")
    labels = [names[i] for i in order]
    ax.set_xticks(range(n), labels=labels, rotation=90)
    ax.set_yticks(range(n), labels=labels)
    if n <= 20:
        lo, hi = float(reordered.min()), float(reordered.max())
        for i in range(n):
            for j in range(n):
                v = reordered[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if hi > lo and (v - lo) / (hi - lo) > 0.6 else "white")
    ax_bar = fig.add_subplot(grid[1, 1])
    fig.colorbar(image, cax=ax_bar).set_label(f"task embedding similarity ({metric})")
    ax_tree.set_title(f"Task embeddings clustered by {metric} (average linkage)")
    return _save(fig, out_stem)


def plot_similarity_vs_transfer(points_by_target: Mapping[str, Sequence[Sequence[Any]]],
                                out_stem: str | os.PathLike, xlabel: str = "task embedding similarity"
                                ) -> list[Path]:
    """One panel per target: similarity of each source (x) vs its relative error reduction (y),
    with a least-squares line and Pearson r and two-sided p in the title.

    Points are (similarity, rer) or (similarity, rer, source_label); panels with more than
    eight points label only their three best sources, to stay legible.
    """
    from scipy.stats import pearsonr

    targets = [t for t in points_by_target if len(points_by_target[t])]
    if not targets:
        raise DataError("no (similarity, relative error reduction) points to plot")
    cols = min(4, len(targets))
    rows = math.ceil(len(targets) / cols)
    fig = _figure(3.6 * cols, 3.1 * rows)
    for idx, target in enumerate(targets):
        ax = fig.add_subplot(rows, cols, idx + 1)
        pts = points_by_target[target]
        x = np.array([float(p[0]) for p in pts])
        y = np.array([float(p[1]) for p in pts])
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise DataError(f"target {target!r}: non-finite similarity or relative error reduction")
        ax.scatter(x, y, s=22, color="#1f77b4", zorder=3)
        # Label every point in small panels; in crowded ones only the three best sources.
        labelled = pts if len(pts) <= 8 else sorted(pts, key=lambda p: -float(p[1]))[:3]
        for p in labelled:
            if len(p) > 2:
                ax.annotate(str(p[2]), (float(p[0]), float(p[1])), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        title = target
        if len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
            r, pval = pearsonr(x, y)
            title += f"\nr = {r:.2f}, p = {pval:.3g} (n = {len(x)})"
            slope, intercept = np.polyfit(x, y, 1)
            xs = np.linspace(x.min(), x.max(), 2)
            ax.plot(xs, slope * xs + intercept, color="#d62728", linewidth=1.2, zorder=2)
        else:
            title += f"\nr undefined (n = {len(x)})"
        ax.axhline(0.0, color="#999999", linewidth=0.8, zorder=1)
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # narrow similarity ranges crowd
        if idx % cols == 0:
            ax.set_ylabel("relative error reduction (%)", fontsize=9)
        if idx >= len(targets) - cols:
            ax.set_xlabel(xlabel, fontsize=9)
    fig.subplots_adjust(hspace=0.55, wspace=0.3)
    return _save(fig, out_stem)
