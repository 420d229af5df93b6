"""spot against Hugging Face PEFT prompt tuning, same shapes, same machine, one go.

Runs `spot bench train-step` and `scripts/peft_reference.py` as separate processes (so their
thread pools never share a process), alternating their order every round (A B, B A, ...) so
slow drift and other load hit both alike, with the same thread count pinned for both.
Prints each run, then one JSON summary: the median examples/s of each and their ratio.

CPU (the 2-core target):
    python scripts/bench_vs_peft.py --model t5_1_1_small --batch 8 --input-length 64 \
        --target-length 8 --prompt-length 100 --dtype float32 --rounds 3
GPU:
    python scripts/bench_vs_peft.py --model t5_1_1_base --batch 32 --input-length 512 \
        --target-length 8 --prompt-length 100 --dtype bfloat16 --attention fused --rounds 3
    (add --peft-compile to compare against torch.compile'd PEFT as well)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   OPENBLAS_NUM_THREADS=str(threads))
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = (f"{flags} --xla_cpu_multi_thread_eigen=true "
                            f"intra_op_parallelism_threads={threads}").strip()
    return env


def _run(cmd: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"{' '.join(cmd)} printed no JSON:\n{proc.stdout[-2000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="t5_1_1_small")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--input-length", type=int, default=64)
    p.add_argument("--target-length", type=int, default=8)
    p.add_argument("--prompt-length", type=int, default=100)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--attention", choices=("xla", "fused"), default="xla")
    p.add_argument("--remat", action="store_true")
    p.add_argument("--peft-compile", action="store_true", help="torch.compile the PEFT model")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="Intra-op threads for both (XLA and torch); 0 leaves the defaults.")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)

    shape = ["--model", args.model, "--batch", str(args.batch),
             "--input-length", str(args.input_length), "--target-length", str(args.target_length),
             "--prompt-length", str(args.prompt_length), "--steps", str(args.steps),
             "--warmup", str(args.warmup), "--dtype", args.dtype]
    spot_cmd = [sys.executable, "-c", "import sys; from spot.cli import main; main(sys.argv[1:])",
                "bench", "train-step", "--random-weights", "--json",
                "--attention", args.attention, *shape] + (["--remat"] if args.remat else [])
    peft_cmd = [sys.executable, str(ROOT / "scripts" / "peft_reference.py"), *shape,
                "--threads", str(args.threads)] + (["--compile"] if args.peft_compile else [])
    env = _env(args.threads)
    runs: dict[str, list[dict]] = {"spot": [], "peft": []}
    for r in range(args.rounds):
        order = ("spot", "peft") if r % 2 == 0 else ("peft", "spot")
        for name in order:
            out = _run(spot_cmd if name == "spot" else peft_cmd, env)
            runs[name].append(out)
            print(f"round {r + 1} {name}: {out['examples_per_sec']:.3f} examples/s, "
                  f"{out['step_time_ms_median']:.1f} ms/step", file=sys.stderr, flush=True)
    med = {k: statistics.median(o["examples_per_sec"] for o in v) for k, v in runs.items()}
    per_round = [s["examples_per_sec"] / q["examples_per_sec"]
                 for s, q in zip(runs["spot"], runs["peft"])]
    last = {k: v[-1] for k, v in runs.items()}
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    summary = {
        "shape": {k: getattr(args, k) for k in ("model", "batch", "input_length",
                                                "target_length", "prompt_length", "dtype")},
        "rounds": args.rounds, "threads": args.threads, "steps_per_run": args.steps,
        "spot_examples_per_sec_median": med["spot"], "peft_examples_per_sec_median": med["peft"],
        "ratio_of_medians": med["spot"] / med["peft"],
        "ratio_per_round": per_round,
        "spot_examples_per_sec": [o["examples_per_sec"] for o in runs["spot"]],
        "peft_examples_per_sec": [o["examples_per_sec"] for o in runs["peft"]],
        "spot_mfu": last["spot"].get("mfu"), "peft_mfu": last["peft"].get("mfu"),
        "spot_peak_memory_bytes": last["spot"].get("peak_memory_bytes"),
        "peft_peak_memory_bytes": last["peft"].get("peak_memory_bytes"),
        "flops_per_step": last["spot"]["flops_per_step"],
        "spot_attention": args.attention, "spot_remat": args.remat,
        "peft_compiled": bool(args.peft_compile),
        "peft_attn_implementation": last["peft"].get("attn_implementation"),
        "device": last["spot"]["device"], "peft_device": last["peft"]["device"],
        "load_average_after": load, "date": last["spot"]["date"],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
