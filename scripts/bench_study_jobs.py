"""Whole-process wall time of one small study with `--jobs 1` against `--jobs N`.

Each arm is the command a user types, `spot study run` on the shipped embedded backbone with
the demo's run shape (batch 16, prompt length 20, input 64, target 8, 200 validation
examples, evaluation every 50 steps), in a fresh process and a fresh output folder; the arms
alternate (1, N, 1, N, ...) so both see the same machine load, and the ratio is taken pair by
pair. The XLA compilation cache is warmed by one untimed run of each arm first.

    python scripts/bench_study_jobs.py --jobs 2 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = ["--set", "data.batch_size=16", "--set", "data.input_length=64",
         "--set", "data.target_length=8", "--set", "prompt.length=20",
         "--set", "data.max_eval_examples=200", "--set", "data.eval_batch_size=100",
         "--set", "train.eval_every=50", "--set", "train.embedding_step=50",
         "--set", "train.progress=false", "--set", "model.dtype=float32"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sources", default="offline_vader_valence,offline_rel_plural")
    ap.add_argument("--targets", default="offline_review_polarity,offline_rel_comparative")
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()

    spot = [sys.executable, "-m", "spot"]
    tmp = Path(tempfile.mkdtemp(prefix="spot-bench-jobs-"))
    env = {**os.environ, "SPOT_CACHE": os.environ.get("SPOT_CACHE", str(tmp / "cache"))}

    def study(jobs: int, name: str) -> float:
        out = tmp / name
        cmd = spot + ["study", "run", "--sources", args.sources, "--targets", args.targets,
                      "--model", "embedded", "--steps", str(args.steps), "--out", str(out),
                      "--jobs", str(jobs), *SHAPE]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        shutil.rmtree(out)
        return seconds

    study(1, "warm-1"), study(args.jobs, f"warm-{args.jobs}")
    one, many = [], []
    for i in range(args.repeats):
        one.append(study(1, f"one-{i}"))
        many.append(study(args.jobs, f"many-{i}"))
    ratios = [b / a for a, b in zip(one, many)]
    print(f"cores usable: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}")
    print(f"--jobs 1:  median {statistics.median(one):.1f} s  ({', '.join(f'{x:.1f}' for x in one)})")
    print(f"--jobs {args.jobs}:  median {statistics.median(many):.1f} s  "
          f"({', '.join(f'{x:.1f}' for x in many)})")
    print(f"ratio jobs {args.jobs} / jobs 1 (pairwise): median {statistics.median(ratios):.3f} "
          f"({', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
