"""Fast, exact ranking over the library's stored summaries (`rank` is `PromptLibrary.rank`).

A query *screens* entries in stages, each giving every entry an interval [lo, hi] that is
guaranteed to contain its float64 score; only entries (or tasks) whose interval reaches
the k-th best lower bound survive to the next stage. Survivors of the last stage are
rescored in float64 with exactly the code `spot.similarity` runs, so the result equals the
naive ranking, scores included.

Stages for the two cosine metrics (the speed-critical path: one pass over the library):

1. ``int8``: each summary vector v is stored as round(v / s) in int8 with s = max|v| / 127
   (a quarter of float32's bytes), decoded to float32 in cache-sized chunks and multiplied
   with the query. |v_i - s round(v_i / s)| <= s / 2, so the score moves by at most
   (s / 2) |q|_1, plus float32 rounding of the product.
2. ``float32``: the survivors (typically well under 1%) are rescored from float32 copies.

The distance metrics screen once, in float32. Rounding bounds, with u = 2**-24 and E the
width (float32 dot products and sums of E terms stay within E u of the exact value relative
to the sum of magnitudes, whatever the summation order; a float64 vector stored in float32
moves by at most u of its norm), are inflated fourfold:

- per_token_cosine, float32: |approx - exact| <= (E + 3) u |unit_x| |q|
- avg_cosine, float32: the same bound divided by |mean_x|, i.e. (E + 3) u
- int8 stage: (s / 2) |q|_1 + 127 (E + 2) u s |q|_1 (divided by |mean_x| for avg_cosine)
- avg_euclidean / avg_manhattan (distances d): |d_hat - d| <= (E + 8) u (|x| + |q| + d_hat)
  in the matching norm; the similarity 1 / (1 + d) is monotone so the interval carries over.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from spot.errors import ConfigError, LibraryError, PromptError
from spot.library.entry import Entry
from spot.retrieval import similarity as sim
from spot.retrieval.similarity import Summary

_U32 = 2.0 ** -24
_SAFETY = 4.0
# Below this norm float32 copies may be subnormal and the relative bounds no longer hold;
# such entries skip screening and are always rescored exactly.
_TINY_NORM = 1e-30
_CHUNK_ROWS = 8192
# int8 rows decoded per BLAS call: the float32 buffer (512 x 768 x 4 B = 1.5 MB) stays in
# cache, and calls this small run single-threaded, which holds up best on a busy machine.
_INT8_CHUNK = 512


def _quantize(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows as int8 with one float64 scale each: v ~= scale * q, |v - scale q| <= scale / 2."""
    scale = np.abs(v).max(axis=1) / 127.0
    safe = np.where(scale > 0, scale, 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.clip(np.rint(v / safe[:, None]), -127, 127)
    return np.nan_to_num(q).astype(np.int8), scale


class WidthGroup:
    """Loaded entries of one embedding width: identities plus screening copies.

    Arrays grow by doubling, so loading or refreshing n rows in chunks costs O(n).
    """

    _FIELDS = (("seq", np.int64), ("ids", object), ("tasks", object), ("models", object),
               ("mean_norm", np.float64), ("mean_l1", np.float64), ("unit_norm", np.float64),
               ("unit_scale", np.float64), ("mean_factor", np.float64), ("unsafe", bool))

    def __init__(self, width: int) -> None:
        self.width = width
        self._n = 0
        self._cap = 0
        self.unsafe_count = 0
        self._data: dict[str, np.ndarray] = {name: np.empty(0, dtype) for name, dtype in self._FIELDS}
        for name, dtype in (("means", np.float32), ("units", np.float32), ("means8", np.int8), ("units8", np.int8)):
            self._data[name] = np.empty((0, width), dtype)

    def __len__(self) -> int:
        return self._n

    def __getattr__(self, name: str) -> np.ndarray:
        data = self.__dict__.get("_data")
        if data is None or name not in data:
            raise AttributeError(name)
        return data[name][: self._n]

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        if need <= self._cap:
            return
        cap = max(need, 2 * self._cap, 1024)
        for name, arr in self._data.items():
            grown = np.empty((cap,) + arr.shape[1:], arr.dtype)
            grown[: self._n] = arr[: self._n]
            self._data[name] = grown
        self._cap = cap

    def append(self, seq: np.ndarray, ids: list[str], tasks: list[str], models: list[str],
               means64: np.ndarray, units64: np.ndarray) -> None:
        count = len(ids)
        if count == 0:
            return
        self._reserve(count)
        mean_norm = np.sqrt(np.einsum("ne,ne->n", means64, means64))
        unit_norm = np.sqrt(np.einsum("ne,ne->n", units64, units64))
        with np.errstate(over="ignore"):
            means32, units32 = means64.astype(np.float32), units64.astype(np.float32)
        unsafe = ((mean_norm < _TINY_NORM) | (unit_norm < _TINY_NORM) | ~np.isfinite(unit_norm)
                  | ~np.isfinite(means32).all(axis=1) | ~np.isfinite(units32).all(axis=1))
        means8, mean_scale = _quantize(means64)
        units8, unit_scale = _quantize(units64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_factor = mean_scale / mean_norm
        values = {"seq": seq, "ids": ids, "tasks": tasks, "models": models, "means": means32,
                  "units": units32, "means8": means8, "units8": units8, "mean_norm": mean_norm,
                  "mean_l1": np.abs(means64).sum(axis=1), "unit_norm": unit_norm,
                  "unit_scale": unit_scale, "mean_factor": mean_factor, "unsafe": unsafe}
        for name, value in values.items():
            self._data[name][self._n: self._n + count] = value
        self._n += count
        self.unsafe_count += int(unsafe.sum())


def stages(metric: str) -> tuple[str, ...]:
    """Screening stages for a metric; per-token distances have none (everything is exact)."""
    if metric in ("avg_cosine", "per_token_cosine"):
        return ("int8", "float32")
    if metric in ("avg_euclidean", "avg_manhattan"):
        return ("float32",)
    return ()


def _rows_matvec(matrix: np.ndarray, rows: np.ndarray | None, vec: np.ndarray) -> np.ndarray:
    """matrix[rows] @ vec without copying the whole matrix when most rows are wanted."""
    if rows is None:
        return matrix @ vec
    if len(rows) * 4 < matrix.shape[0]:
        return matrix[rows] @ vec
    return (matrix @ vec)[rows]


def _int8_matvec(matrix: np.ndarray, rows: np.ndarray | None, vec: np.ndarray) -> np.ndarray:
    """int8 rows decoded to float32 chunk by chunk, times `vec` (float32 results)."""
    n = matrix.shape[0] if rows is None else len(rows)
    out = np.empty(n, np.float32)
    buf = np.empty((_INT8_CHUNK, matrix.shape[1]), np.float32)
    for start in range(0, n, _INT8_CHUNK):
        stop = min(n, start + _INT8_CHUNK)
        block = matrix[start:stop] if rows is None else matrix[rows[start:stop]]
        dec = buf[: stop - start]
        dec[...] = block
        np.dot(dec, vec, out=out[start:stop])
    return out


def _distance_rows(matrix: np.ndarray, rows: np.ndarray | None, q32: np.ndarray, kind: str) -> np.ndarray:
    index = np.arange(matrix.shape[0]) if rows is None else rows
    out = np.empty(len(index), np.float32)
    for start in range(0, len(index), _CHUNK_ROWS):
        sel = index[start:start + _CHUNK_ROWS]
        block = matrix[sel[0]:sel[-1] + 1] if rows is None else matrix[sel]
        diff = block - q32
        if kind == "euclidean":
            out[start:start + len(sel)] = np.sqrt(np.einsum("ne,ne->n", diff, diff))
        else:
            out[start:start + len(sel)] = np.abs(diff).sum(axis=1)
    return out.astype(np.float64)


def _query_vector(queries: list[Summary], metric: str) -> np.ndarray:
    """The float64 vector whose dot product with an entry's summary gives the mean score
    over the query runs (both cosine metrics are linear in the query side)."""
    if metric == "per_token_cosine":
        return np.mean([q.unit_mean for q in queries], axis=0)
    return np.mean([q.mean / np.sqrt(np.sum(q.mean ** 2)) for q in queries], axis=0)


def screen(group: WidthGroup, rows: np.ndarray | None, queries: list[Summary], metric: str,
           stage: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """Intervals [lo, hi] that hold each selected entry's mean similarity to the query runs.

    Entries whose float arithmetic overflows or underflows get (-inf, inf): always rescored.
    """
    with np.errstate(all="ignore"):
        return _screen(group, rows, queries, metric, stage)


def _screen(group: WidthGroup, rows: np.ndarray | None, queries: list[Summary], metric: str,
            stage: str) -> tuple[np.ndarray, np.ndarray]:
    width = group.width
    pick = (lambda a: a) if rows is None else (lambda a: a[rows])
    slack = (width + 8) * 2.0 ** -126  # absolute float32 underflow allowance
    if stage == "int8":
        qvec = _query_vector(queries, metric)
        q_l1 = float(np.sum(np.abs(qvec)))
        matrix, factor = ((group.units8, pick(group.unit_scale)) if metric == "per_token_cosine"
                          else (group.means8, pick(group.mean_factor)))
        approx = _int8_matvec(matrix, rows, qvec.astype(np.float32)).astype(np.float64) * factor
        margin = factor * (q_l1 * (0.5 + 1e-9 + _SAFETY * 127 * (width + 2) * _U32) + slack)
        lo, hi = approx - margin, approx + margin
    elif metric == "per_token_cosine":
        qvec = _query_vector(queries, metric)
        qnorm = max(float(np.sqrt(np.sum(q.unit_mean ** 2))) for q in queries)
        approx = _rows_matvec(group.units, rows, qvec.astype(np.float32)).astype(np.float64)
        # |unit_x| <= 1 (a mean of unit vectors, up to float64 rounding), so one scalar margin
        # serves every entry.
        margin = _SAFETY * (width + 4) * _U32 * (1.0 + 1e-6) * qnorm + slack
        lo, hi = approx - margin, approx + margin
    elif metric == "avg_cosine":
        qvec = _query_vector(queries, metric)
        norms = pick(group.mean_norm)
        approx = _rows_matvec(group.means, rows, qvec.astype(np.float32)).astype(np.float64) / norms
        margin = _SAFETY * (width + 4) * _U32 + slack / np.maximum(norms, _TINY_NORM)
        lo, hi = approx - margin, approx + margin
    else:
        kind = "euclidean" if metric == "avg_euclidean" else "manhattan"
        x_size = pick(group.mean_norm) if kind == "euclidean" else pick(group.mean_l1)
        lo = np.zeros(len(x_size))
        hi = np.zeros(len(x_size))
        for q in queries:
            q_size = float(np.sqrt(np.sum(q.mean ** 2))) if kind == "euclidean" else float(np.sum(np.abs(q.mean)))
            d_hat = _distance_rows(group.means, rows, q.mean.astype(np.float32), kind)
            margin = _SAFETY * (width + 8) * _U32 * (x_size + q_size + d_hat) + slack
            lo += 1.0 / (1.0 + d_hat + margin)
            hi += 1.0 / (1.0 + np.maximum(d_hat - margin, 0.0))
        lo /= len(queries)
        hi /= len(queries)
    if not group.unsafe_count and np.isfinite(np.sum(lo)) and np.isfinite(np.sum(hi)):
        return lo, hi
    bad = pick(group.unsafe) | ~np.isfinite(lo) | ~np.isfinite(hi)
    if bad.any():
        lo = np.where(bad, -np.inf, lo)
        hi = np.where(bad, np.inf, hi)
    return lo, hi


def candidates(lo: np.ndarray, hi: np.ndarray, k: int | None) -> np.ndarray:
    """Positions that may be in the top k: every interval reaching the k-th best lower bound."""
    n = lo.shape[0]
    if k is None or k >= n:
        return np.arange(n)
    threshold = np.partition(lo, n - k)[n - k]
    return np.flatnonzero(hi >= threshold)


# -- ranking a library -----------------------------------------------------------------


class RankSource(Protocol):
    """What `rank` reads from a library (`PromptLibrary` provides it)."""

    root: Path

    def width_groups(self) -> Mapping[int, WidthGroup]:
        """Screening copies of every entry by key width, up to date with the index."""

    def summaries(self, seqs: Sequence[int]) -> dict[int, Summary]:
        """Stored float64 summaries by row number; removed rows are absent."""

    def load_embedding(self, entry: Entry | str) -> np.ndarray: ...

    def entries_by_seq(self, seqs: Sequence[int]) -> dict[int, Entry]:
        """Entries by row number; removed rows are absent."""


@dataclass(frozen=True)
class _Pool:
    """The entries a query is compared with: one width group, maybe only one model's rows."""

    group: WidthGroup
    rows: np.ndarray | None  # None: the whole group
    seqs: np.ndarray
    ids: np.ndarray
    tasks: np.ndarray


def query_runs(embedding: object) -> list[np.ndarray]:
    """One [L, E] query, or several runs of the query task (a list or an [R, L, E] array)."""
    if isinstance(embedding, (list, tuple)) and embedding and all(
            isinstance(q, np.ndarray) for q in embedding):
        return list(embedding)
    arr = np.asarray(embedding) if not isinstance(embedding, np.ndarray) else embedding
    if arr.ndim == 3:
        return list(arr)
    return [arr]


def _query_summaries(queries: list[np.ndarray]) -> list[Summary]:
    q_summ = [sim.summarize(q, f"query embedding {i}") for i, q in enumerate(queries)]
    if len({q.width for q in q_summ}) > 1:
        raise PromptError(f"query runs have different widths: {sorted({q.width for q in q_summ})}")
    return q_summ


def _pool(source: RankSource, width: int, model: str | None, k: int | None) -> _Pool | None:
    """The entries of the query's width (and `model`); None when there are none and k is None."""
    groups = source.width_groups()
    pools = {}
    for w, group in groups.items():
        rows = None if model is None else np.flatnonzero(group.models == model)
        size = len(group) if rows is None else len(rows)
        if size:
            pools[w] = rows
    where = f" for model {model!r}" if model is not None else ""
    others = sorted(w for w in pools if w != width)
    if others:
        raise PromptError(f"query width {width} does not match library width "
                          f"{', '.join(map(str, others))}{where} in {source.root}")
    if width not in pools:
        if k is None:
            return None
        raise ConfigError(f"k={k} but {source.root} holds no entries{where}")
    group, rows = groups[width], pools[width]
    pick = (lambda a: a) if rows is None else (lambda a: a[rows])
    return _Pool(group, rows, pick(group.seq), pick(group.ids), pick(group.tasks))


def _narrow(pool: _Pool, q_summ: list[Summary], metric: str, k: int | None,
            codes: np.ndarray | None) -> np.ndarray:
    """Pool positions that may rank in the top k, narrowed stage by stage (`codes`: the task
    of each position when ranking tasks; a task always keeps all its runs)."""
    group, rows = pool.group, pool.rows
    pos = np.arange(len(pool.seqs))
    for stage in stages(metric):
        if k is None:
            break
        rows_now = pos if rows is None else rows[pos]
        if rows is None and len(pos) == len(group):
            rows_now = None
        lo, hi = screen(group, rows_now, q_summ, metric, stage)
        if codes is not None:
            _, local = np.unique(codes[pos], return_inverse=True)
            counts = np.bincount(local)
            picked = candidates(np.bincount(local, weights=lo) / counts,
                                np.bincount(local, weights=hi) / counts, k)
            pos = pos[np.isin(local, picked)]
        else:
            pos = pos[candidates(lo, hi, k)]
    return pos


def _exact_inputs(source: RankSource, seqs: np.ndarray, ids: np.ndarray, metric: str) -> dict[int, Any]:
    """What the final float64 rescoring needs per candidate: summaries, or the whole key."""
    if metric in sim.SUMMARY_METRICS:
        out = source.summaries(seqs)
        missing = [int(s) for s in seqs if int(s) not in out]
        if missing:
            raise LibraryError(f"{len(missing)} entries were removed from {source.root} during ranking; retry")
        return out
    return {int(s): sim.as_embedding(source.load_embedding(str(i)), f"key of entry {i}") for s, i in zip(seqs, ids)}


def _top_entries(source: RankSource, pool: _Pool, cand: np.ndarray, queries_prep: list, prep: dict[int, Any],
                 metric: str, k: int | None) -> list[tuple[Entry, float]]:
    scored = [(float(np.mean(sim.prepared_matrix(queries_prep, [prep[int(s)]], metric))), str(i), int(s))
              for s, i in zip(pool.seqs[cand], pool.ids[cand])]
    scored.sort(key=lambda t: (-t[0], t[1]))
    top = scored[:k] if k is not None else scored
    found = source.entries_by_seq([s for _, _, s in top])
    return [(found[s], score) for score, _, s in top if s in found]


def _top_tasks(pool: _Pool, cand: np.ndarray, queries_prep: list, prep: dict[int, Any], metric: str,
               k: int | None) -> list[tuple[str, float]]:
    runs: dict[str, list] = {}
    for p in cand:  # insertion order within each task
        runs.setdefault(str(pool.tasks[p]), []).append(prep[int(pool.seqs[p])])
    scored = sorted(((float(np.mean(sim.prepared_matrix(queries_prep, task_runs, metric))), name)
                     for name, task_runs in runs.items()), key=lambda t: (-t[0], t[1]))
    top = scored[:k] if k is not None else scored
    return [(name, score) for score, name in top]


def rank(source: RankSource, embedding: np.ndarray | Sequence[np.ndarray], metric: str = "per_token_cosine",
         k: int | None = None, by: str = "entry", model: str | None = None
         ) -> list[tuple[Entry, float]] | list[tuple[str, float]]:
    """Entries (or tasks) most similar to `embedding`, best first; see `PromptLibrary.rank`."""
    sim.check_metric(metric)
    if by not in ("entry", "task"):
        raise ConfigError(f"by must be 'entry' or 'task', got {by!r}")
    k = sim.check_k(k, allow_none=True)
    queries = query_runs(embedding)
    q_summ = _query_summaries(queries)
    pool = _pool(source, q_summ[0].width, model, k)
    if pool is None:
        return []
    codes = None
    n_items = len(pool.seqs)
    if by == "task":
        names, codes = np.unique(pool.tasks.astype(str), return_inverse=True)
        n_items = len(names)
    if k is not None and k > n_items:
        raise ConfigError(f"k={k} is larger than the library: {n_items} "
                          f"{'tasks' if by == 'task' else 'entries'} to rank")
    cand = _narrow(pool, q_summ, metric, k, codes)
    prep = _exact_inputs(source, pool.seqs[cand], pool.ids[cand], metric)
    queries_prep = q_summ if metric in sim.SUMMARY_METRICS else \
        [sim.as_embedding(q, "query embedding") for q in queries]
    if by == "entry":
        return _top_entries(source, pool, cand, queries_prep, prep, metric, k)
    return _top_tasks(pool, cand, queries_prep, prep, metric, k)
