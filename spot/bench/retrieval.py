"""Time `PromptLibrary.rank` on a real on-disk library and check it against the naive ranking.

A library of 100,000 real [100, 768] prompts would take ~30 GB, so the benchmark stores
short entries ([entry_length, E], 4 tokens by default). Ranking by a cheap metric only
reads each entry's stored summaries (two float64 vectors of width E, whatever L is), so the
query path and its cost are exactly those of full-length entries; queries are full
[prompt_length, E] embeddings.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from spot.errors import ConfigError, LibraryError
from spot.library.store import PromptLibrary
from spot.retrieval.similarity import SUMMARY_METRICS, check_k, check_metric, similarity

BENCH_MODEL = "benchmark"
_TASKS = 1000


def _entry_batches(start: int, stop: int, emb_dim: int, entry_length: int, seed: int, batch: int):
    """Random prompts with per-task structure (a shared task direction plus noise), std ~40
    like the released prompts, so scores spread the way real libraries do."""
    task_rng = np.random.default_rng(seed)
    centers = task_rng.normal(0.0, 30.0, size=(_TASKS, emb_dim)).astype(np.float32)
    for lo in range(start, stop, batch):
        hi = min(stop, lo + batch)
        rng = np.random.default_rng([seed, lo])
        noise = rng.normal(0.0, 25.0, size=(hi - lo, entry_length, emb_dim)).astype(np.float32)
        items = []
        for j, i in enumerate(range(lo, hi)):
            task = i % _TASKS
            items.append(dict(task=f"bench_task_{task:04d}", prompt=centers[task] + noise[j],
                              model=BENCH_MODEL, run=str(i // _TASKS), bench_index=i))
        yield items


def _reference_matvec_ms(rows: int, width: int, repeats: int, seed: int) -> float:
    """Median time of one float32 [rows, width] x [width] product: the cost of merely reading
    float32 summaries once, measured alongside so timings on a busy machine can be compared."""
    rng = np.random.default_rng([seed, 2])
    matrix = rng.standard_normal((rows, width), dtype=np.float32)
    vec = rng.standard_normal(width, dtype=np.float32)
    matrix @ vec
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        matrix @ vec
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


@dataclass(frozen=True)
class RankBenchConfig:
    """Sizes of one retrieval benchmark; checked on construction.

    `spot bench retrieval --entries 100000 --queries 50 --json` runs the defaults; figures are
    in docs/performance.md (Retrieval).
    """

    entries: int = 100_000
    emb_dim: int = 768
    prompt_length: int = 100  # query length; stored entries are entry_length tokens
    queries: int = 50
    metric: str = "per_token_cosine"
    k: int = 10
    entry_length: int = 4
    check_queries: int = 3  # queries also ranked naively, which must match exactly
    seed: int = 0

    def __post_init__(self) -> None:
        check_metric(self.metric)
        check_k(self.k)
        if self.metric not in SUMMARY_METRICS:
            raise ConfigError(f"benchmark_rank times the cheap metrics ({', '.join(SUMMARY_METRICS)}); "
                              f"{self.metric} costs O(L^2 E) per entry and needs full-length keys")
        for name in ("entries", "emb_dim", "prompt_length", "queries", "k", "entry_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.k > self.entries:
            raise ConfigError(f"k={self.k} is larger than the benchmark library ({self.entries} entries)")


@dataclass
class _Timings:
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    load_average: tuple[float, float] = (0.0, 0.0)


def _fill(root: str, cfg: RankBenchConfig, say: Callable[[str], None]) -> float:
    """Create or extend the benchmark library at `root` to `cfg.entries`; seconds spent adding."""
    with PromptLibrary(root) as lib:
        present = len(lib)
        strangers = [e for e in lib.entries()[:1] if e.model != BENCH_MODEL or e.width != cfg.emb_dim
                     or e.key_shape[0] != cfg.entry_length] if present else []
        if strangers or present > cfg.entries:
            raise LibraryError(f"{root} holds a library that is not a benchmark library of width {cfg.emb_dim}, "
                               f"entry length {cfg.entry_length} and at most {cfg.entries} entries; "
                               "use another folder")
        if present >= cfg.entries:
            return 0.0
        say(f"adding {cfg.entries - present} entries to {root}")
        t0 = time.perf_counter()
        for items in _entry_batches(present, cfg.entries, cfg.emb_dim, cfg.entry_length, cfg.seed, 2000):
            lib.add_many(items, batch=2000)
            say(f"  {items[-1]['bench_index'] + 1}/{cfg.entries}")
        return time.perf_counter() - t0


def _time_queries(lib: PromptLibrary, qs: list[np.ndarray], cfg: RankBenchConfig) -> tuple[_Timings, list]:
    lib.rank(qs[0], metric=cfg.metric, k=cfg.k)  # warm-up (allocator, BLAS threads)
    timings, results = _Timings(), []
    load_before = os.getloadavg()[0]
    for q in qs:
        t0, c0 = time.perf_counter(), time.process_time()
        results.append(lib.rank(q, metric=cfg.metric, k=cfg.k))
        timings.wall_s.append(time.perf_counter() - t0)
        timings.cpu_s.append(time.process_time() - c0)
    timings.load_average = (load_before, os.getloadavg()[0])
    return timings, results


def _matches_naive(lib: PromptLibrary, qs: list[np.ndarray], results: list, cfg: RankBenchConfig,
                   say: Callable[[str], None]) -> bool:
    """The first `check_queries` fast rankings against `similarity` on every stored key."""
    checked = min(cfg.check_queries, cfg.queries)
    if not checked:
        return True
    say(f"naive check on {checked} queries (loads all {cfg.entries} keys)")
    all_entries = lib.entries()
    keys = [lib.load_embedding(e) for e in all_entries]
    matches = True
    for q, fast in zip(qs[:checked], results[:checked]):
        naive = sorted(((similarity(q, key, cfg.metric), e.id) for e, key in zip(all_entries, keys)),
                       key=lambda t: (-t[0], t[1]))[:cfg.k]
        matches &= [(e.id, s) for e, s in fast] == [(i, s) for s, i in naive]
    return matches


def _report(cfg: RankBenchConfig, timings: _Timings, measured: dict[str, Any]) -> dict[str, Any]:
    ms = [t * 1e3 for t in timings.wall_s]
    return {
        "metric": cfg.metric, "entries": cfg.entries, "emb_dim": cfg.emb_dim, "k": cfg.k, "queries": cfg.queries,
        "query_shape": [cfg.prompt_length, cfg.emb_dim], "stored_entry_shape": [cfg.entry_length, cfg.emb_dim],
        "ms_per_query_median": statistics.median(ms), "ms_per_query_p90": float(np.percentile(ms, 90)),
        "ms_per_query_min": min(ms), "ms_per_query_mean": statistics.fmean(ms),
        # CPU time of this process (all threads): close to the wall time on an idle machine.
        "cpu_ms_per_query_median": statistics.median(c * 1e3 for c in timings.cpu_s),
        "load_average_1min": list(timings.load_average),
        "reference_float32_matvec_ms_median": measured["reference_ms"],
        "open_s": measured["open_s"], "build_s": measured["build_s"],
        "naive_checked_queries": min(cfg.check_queries, cfg.queries), "matches_naive": bool(measured["matches"]),
        "root": measured["root"], "cpus": os.cpu_count(),
        "machine": f"{platform.system()} {platform.machine()} ({platform.processor() or 'cpu'})",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "note": (f"entries are stored as [{cfg.entry_length}, {cfg.emb_dim}] prompts; ranking by {cfg.metric} "
                 "reads only the per-entry float64 summaries of width E, so the query path equals that of "
                 "[100, E] entries"),
    }


def benchmark_rank(root: str | None, config: RankBenchConfig = RankBenchConfig(), *,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build (or reuse, or extend) a benchmark library at `root` and time `rank` per query.

    `root=None` builds in a temporary folder that is deleted afterwards. Timings exclude
    opening the library (reported separately as `open_s`). The first `check_queries`
    queries are also ranked naively, `similarity` against every stored key, and must match
    exactly (ids, order and scores).
    """
    cfg = config
    say = progress or (lambda msg: None)
    tmp = tempfile.mkdtemp(prefix="spot-bench-library-") if root is None else None
    where = tmp if root is None else root
    try:
        build_s = _fill(where, cfg, say)
        t0 = time.perf_counter()
        with PromptLibrary(where, create=False) as lib:
            lib.refresh()
            open_s = time.perf_counter() - t0
            rng = np.random.default_rng([cfg.seed, 1])
            qs = [rng.normal(0.0, 40.0, size=(cfg.prompt_length, cfg.emb_dim)).astype(np.float32)
                  for _ in range(cfg.queries)]
            timings, results = _time_queries(lib, qs, cfg)
            reference_ms = _reference_matvec_ms(cfg.entries, cfg.emb_dim, cfg.queries, cfg.seed)
            matches = _matches_naive(lib, qs, results, cfg, say)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return _report(cfg, timings, {"reference_ms": reference_ms, "open_s": open_s, "build_s": build_s,
                                  "matches": matches, "root": None if tmp is not None else str(root)})


def main(argv: list[str] | None = None) -> None:
    """`python -m spot.bench.retrieval [--library DIR] ...`: print the result as JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--library", help="library folder to build or reuse (default: a temporary one)")
    parser.add_argument("--root", dest="library", help=argparse.SUPPRESS)  # the old spelling
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--emb-dim", type=int, default=768)
    parser.add_argument("--prompt-length", type=int, default=100)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--metric", default="per_token_cosine")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--check-queries", type=int, default=3)
    args = parser.parse_args(argv)
    config = RankBenchConfig(entries=args.entries, emb_dim=args.emb_dim, prompt_length=args.prompt_length,
                             queries=args.queries, metric=args.metric, k=args.k,
                             check_queries=args.check_queries)
    result = benchmark_rank(args.library, config, progress=lambda msg: print(msg, flush=True))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
