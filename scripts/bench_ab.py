"""A/B a change to spot's train step: two code versions and/or two flag sets, alternating.

Each side runs `spot bench train-step --json` in its own process; sides alternate every round
(A B, B A, ...) so load from other processes hits both alike. A side's code is the working
tree or any git revision (exported with `git archive` to a temporary folder; the repository
is not touched). Prints every run, then a JSON summary with medians and the B/A ratio.

    python scripts/bench_ab.py --a-ref HEAD~1 --b-ref WORKTREE --rounds 3 -- \
        --model t5_1_1_small --random-weights --batch 8 --input-length 64 --target-length 8 \
        --prompt-length 100 --steps 8 --dtype float32
    python scripts/bench_ab.py --b-args=--remat -- --model t5_1_1_small --random-weights
    python scripts/bench_ab.py --b-args=--scan-layers -- --model t5_1_1_large \
        --random-weights --compile-only          # compile time only (no steps run)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKTREE = "WORKTREE"


def _export(ref: str, into: Path) -> Path:
    """The `spot` package at `ref`, unpacked under `into` (never into the repository)."""
    archive = into / "src.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "archive", ref, "spot"], cwd=ROOT, stdout=f, check=True)
    dest = into / ref.replace("/", "_").replace("~", "_")
    dest.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _run(src: Path | None, args: list[str], threads: int, extra_env: dict[str, str]) -> dict:
    env = {**os.environ, **extra_env}
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    if threads:
        env["XLA_FLAGS"] = (f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=true "
                            f"intra_op_parallelism_threads={threads}").strip()
    code = ("import sys, spot; assert spot.__file__.startswith(sys.argv[1]), spot.__file__; "
            "from spot.cli import main; main(sys.argv[2:])")
    cmd = [sys.executable, "-c", code, str(src or ROOT), "bench", "train-step", "--json", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a-ref", default=WORKTREE, help="git revision for A (default: working tree)")
    p.add_argument("--b-ref", default=WORKTREE)
    p.add_argument("--a-args", default="", help="extra train-step flags for A")
    p.add_argument("--b-args", default="", help="extra train-step flags for B")
    p.add_argument("--a-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment for A only (e.g. XLA_FLAGS=...)")
    p.add_argument("--b-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("common", nargs=argparse.REMAINDER, help="-- then flags for both sides")
    args = p.parse_args(argv)
    common = [a for a in args.common if a != "--"]
    with tempfile.TemporaryDirectory(prefix="spot-ab-") as tmp:
        sides = {}
        for name, ref, extra, env in (("A", args.a_ref, args.a_args, args.a_env),
                                      ("B", args.b_ref, args.b_args, args.b_env)):
            src = None if ref == WORKTREE else _export(ref, Path(tmp))
            sides[name] = (src, common + shlex.split(extra), dict(e.split("=", 1) for e in env))
        runs: dict[str, list[dict]] = {"A": [], "B": []}
        for r in range(args.rounds):
            for name in (("A", "B") if r % 2 == 0 else ("B", "A")):
                src, flags, env = sides[name]
                out = _run(src, flags, args.threads, env)
                runs[name].append(out)
                step = out["step_time_ms_median"]
                print(f"round {r + 1} {name}: "
                      + (f"{step:.1f} ms/step, " if step is not None else "")
                      + f"compile {out['compile_s']:.1f} s", file=sys.stderr, flush=True)
    compile_only = runs["A"][0]["step_time_ms_median"] is None
    med = {k: None if compile_only else statistics.median(o["step_time_ms_median"] for o in v)
           for k, v in runs.items()}
    med_compile = {k: statistics.median(o["compile_s"] for o in v) for k, v in runs.items()}

    def side(name: str, ref: str, extra: str, env: list[str]) -> dict:
        return {"ref": ref, "args": extra, "env": env, "step_ms_median": med[name],
                "step_ms": [o["step_time_ms_median"] for o in runs[name]],
                "compile_s_median": med_compile[name],
                "compile_s": [o["compile_s"] for o in runs[name]],
                "step_memory_bytes": runs[name][-1].get("step_memory_bytes")}

    summary = {
        "A": side("A", args.a_ref, args.a_args, args.a_env),
        "B": side("B", args.b_ref, args.b_args, args.b_env),
        "speedup_b_over_a": None if compile_only else med["A"] / med["B"],
        "compile_speedup_b_over_a": med_compile["A"] / med_compile["B"],
        "common": common, "threads": args.threads,
        "device": runs["A"][-1]["device"], "date": runs["B"][-1]["date"],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
