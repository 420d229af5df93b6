"""Every GPU figure in one command: spot's train step against PEFT on T5 1.1 base, large,
xl and xxl, decoding, and the chip's own matmul ceiling, each step a separate process with
its own time limit, inside one overall budget.

    # the GPU machine (about 8 minutes; no install needed, nothing downloaded)
    PYTHONPATH=. python3 scripts/gpu_bench.py --out "$OUT" --budget-s 450
    # CPU dry run: the same steps at tiny sizes (tests/bench/test_gpu_bench_script.py)
    python scripts/gpu_bench.py --tiny --out /tmp/gpu_bench_dry

Writes under --out:
  results.jsonl   one JSON object per step (first `env`), appended, flushed and fsynced as
                  each step ends, so a run cut at its limit keeps everything it measured
  summary.json    the headline figures so far (spot vs PEFT, MFU, memory), rewritten
                  atomically after every step
  gpu_bench.log   every step's command, then its stderr and stdout as it ran

Order: the base spot vs PEFT figures first (spot XLA, PEFT eager, spot fused, PEFT
torch.compile), then decode at base, large, xl (scanned), xxl (scanned, full remat, batch 32
or the largest of 16, 8 that fits), and the matmul ceiling last. A step that fails or runs past
its limit is recorded and the next one starts; one that no longer fits the budget is recorded
as skipped.

Shape (the paper's): batch 32, inputs 512, targets 8, prompt 100, bfloat16 weights and
compute, random weights (t5x init for spot, transformers init for PEFT). MFU is counted FLOPs
(`spot.bench.flops`) over the dense bf16 peak of the data sheet (`spot.bench.device`); the
matmul step gives the machine's measured ceiling beside it.

--tiny swaps in the test_tiny model and tiny shapes and runs on the CPU, with four
changes for speed on a busy two-core machine: torch.compile traces with the `eager` backend
(inductor's CPU code generation takes minutes), PEFT runs on one thread, XLA:CPU skips
its optimization passes, and the steps share a compilation cache for the run. Every step,
flag and record is otherwise the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spot.bench.device import PEAK_SOURCE, peak_flops_per_sec  # noqa: E402

SPOT_CLI = "import sys; from spot.cli import main; main(sys.argv[1:])"
MATMUL = ("import json, sys; from spot.bench.matmul import bench_matmul; "
          "print(json.dumps(bench_matmul(int(sys.argv[1]), dtype='bfloat16')))")
# PEFT's torch.compile figure is quoted only if its first step (compilation included) took
# at most this long.
PEFT_COMPILE_LIMIT_S = 120.0
OOM_MARKERS = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "OutOfMemory")
PACKAGES = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax",
            "numpy", "torch", "transformers", "peft", "triton", "click")
# Keys every successful step's result carries (the test checks them on the dry run).
TRAIN_KEYS = ("examples_per_sec", "tokens_per_sec", "step_time_ms_median", "flops_per_step",
              "mfu", "peak_flops_per_sec", "peak_memory_bytes", "memory_source", "device",
              "final_loss")
RESULT_KEYS = {
    "spot_train": TRAIN_KEYS + ("compile_s", "step_memory_bytes", "init_peak_memory_bytes",
                                "xla_flops_per_step", "backend"),
    "peft_train": TRAIN_KEYS + ("compiled", "first_step_s", "warmup_s"),
    "decode": ("examples_per_sec", "tokens_per_sec", "step_time_ms_median", "flops_per_step",
               "mfu", "peak_memory_bytes", "compile_s", "device"),
    "matmul": ("flops_per_sec", "time_ms_median", "peak_flops_per_sec", "fraction_of_peak",
               "device"),
}
RECORD_KEYS = ("step", "kind", "status", "returncode", "wall_s", "timeout_s", "command",
               "started", "note", "result", "error")
BEST_ATTENTION = "{best-attention}"  # replaced by the faster of the two base runs
SUMMARY_KEYS = ("spot_base", "peft_base", "spot_vs_peft", "decode_base", "large", "xl", "xxl",
                "matmul_ceiling", "peak_flops_per_sec", "peak_source", "steps", "tiny")


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    kind: str  # a RESULT_KEYS key
    argv: tuple[str, ...]
    timeout_s: float
    note: str = ""
    retry_batches: tuple[int, ...] = ()  # smaller batches to try when the step runs out of memory


def plan(tiny: bool) -> list[Step]:
    """The steps in the order they run (most important first)."""
    py = sys.executable
    if tiny:
        shape = dict(batch=2, input_length=8, target_length=4, prompt_length=3)
        model = dict.fromkeys(("base", "large", "xl", "xxl"), "test_tiny")
        steps = dict(base=(2, 1), large=(2, 1), xl=(2, 1), xxl=(1, 1))
        peft_device, compile_backend, matmul_n, decode_steps = "cpu", "eager", 64, 1
        peft_extra: tuple[str, ...] = ("--threads", "1")  # two spinning threads on a busy
        # two-core machine make a tiny step 20x slower
        retry = (1,)
    else:
        shape = dict(batch=32, input_length=512, target_length=8, prompt_length=100)
        model = {k: f"t5_1_1_{k}" for k in ("base", "large", "xl", "xxl")}
        steps = dict(base=(20, 3), large=(10, 2), xl=(5, 2), xxl=(1, 1))
        peft_device, compile_backend, matmul_n, decode_steps = "cuda", "inductor", 8192, 5
        peft_extra = ()
        retry = (16, 8)
    common = ("--batch", str(shape["batch"]), "--input-length", str(shape["input_length"]),
              "--prompt-length", str(shape["prompt_length"]), "--dtype", "bfloat16")
    train_shape = common + ("--target-length", str(shape["target_length"]))

    def spot_train(size: str, *extra: str) -> tuple[str, ...]:
        n, w = steps[size]
        return (py, "-c", SPOT_CLI, "bench", "train-step", "--model", model[size],
                "--random-weights", *train_shape, "--steps", str(n), "--warmup", str(w),
                *extra, "--json")

    def peft(*extra: str) -> tuple[str, ...]:
        n, w = steps["base"]
        return (py, str(ROOT / "scripts" / "peft_reference.py"), "--model", model["base"],
                *train_shape, "--steps", str(n), "--warmup", str(w), "--device", peft_device,
                *peft_extra, *extra)

    return [
        Step("spot_base_xla", "spot_train", spot_train("base", "--attention", "xla"), 150),
        Step("peft_base_eager", "peft_train", peft(), 120, "PEFT eager, SDPA attention"),
        Step("spot_base_fused", "spot_train", spot_train("base", "--attention", "fused"), 150),
        Step("peft_base_compiled", "peft_train",
             peft("--compile", "--compile-backend", compile_backend), 180,
             f"torch.compile ({compile_backend}); quoted only if its first step took at most "
             f"{PEFT_COMPILE_LIMIT_S:.0f} s"),
        Step("decode_base", "decode",
             (py, "-c", SPOT_CLI, "bench", "decode", "--model", model["base"],
              "--random-weights", *common, "--max-length", str(shape["target_length"]),
              "--steps", str(decode_steps), "--json"), 120,
             "greedy decoding with the KV cache, max length = target length"),
        Step("spot_large", "spot_train", spot_train("large", "--attention", BEST_ATTENTION),
             180, "attention: the faster of the base runs"),
        Step("spot_xl_scan", "spot_train",
             spot_train("xl", "--attention", BEST_ATTENTION, "--scan-layers"), 210,
             "attention: the faster of the base runs"),
        Step("spot_xxl_remat", "spot_train",
             spot_train("xxl", "--attention", BEST_ATTENTION, "--scan-layers", "--remat",
                        "full"), 240,
             "compile and one timed step after one warm-up step; attention: the faster of "
             "the base runs", retry),
        Step("matmul_ceiling", "matmul", (py, "-c", MATMUL, str(matmul_n)), 90,
             "bf16 square matmul through XLA: the machine's measured ceiling"),
    ]


class Recorder:
    """results.jsonl (append + fsync per record), summary.json (atomic rewrite), the log."""

    def __init__(self, out: Path, tiny: bool):
        out.mkdir(parents=True, exist_ok=True)
        self.out, self.tiny = out, tiny
        self.results = out / "results.jsonl"
        self.log_path = out / "gpu_bench.log"
        self.records: list[dict[str, Any]] = []
        self.env: dict[str, Any] = {}

    def log(self, text: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with open(self.results, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp = self.out / ".summary.json.tmp"
        tmp.write_text(json.dumps(summarize(self.records, self.env, self.tiny), indent=2,
                                  sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.out / "summary.json")
        result = record.get("result") or {}
        figure = result.get("examples_per_sec") or result.get("flops_per_sec")
        print(f"[gpu_bench] {record['step']}: {record['status']} in {record['wall_s']:.1f} s"
              + (f", {figure:.4g}/s" if figure else "")
              + (f" ({record['error'][-300:]})" if record.get("error") else ""), flush=True)


def run_step(step: Step, rec: Recorder, timeout_s: float, env: dict[str, str],
             argv: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run one step as its own process group, killed (TERM, then KILL) past `timeout_s`."""
    argv = argv or step.argv
    started = _now()
    rec.log(f"\n===== {step.name} ({started}, limit {timeout_s:.0f} s) =====\n"
            f"$ {shlex.join(argv)}")
    t0 = time.perf_counter()
    status, rc = "ok", None
    with tempfile.TemporaryFile("w+", encoding="utf-8") as stdout, \
            open(rec.log_path, "a", encoding="utf-8") as log:
        proc = subprocess.Popen(argv, stdout=stdout, stderr=log, env=env, cwd=ROOT,
                                process_group=0)
        _CURRENT[0] = proc
        try:
            rc = proc.wait(timeout=max(timeout_s, 1.0))
        except subprocess.TimeoutExpired:
            status = "timeout"
            _kill_group(proc)
            rc = proc.returncode
        finally:
            _CURRENT[0] = None
        stdout.seek(0)
        printed = stdout.read()
    wall = time.perf_counter() - t0
    rec.log(f"--- stdout ---\n{printed}--- {step.name}: exit {rc}, {wall:.1f} s ---")
    result, error = None, None
    lines = [line for line in printed.splitlines() if line.startswith("{")]
    if status == "ok" and rc == 0 and lines:
        try:
            result = json.loads(lines[-1])
        except json.JSONDecodeError as e:
            status, error = "failed", f"unparsable JSON: {e}"
    elif status == "ok":
        status = "failed"
    if status != "ok" and error is None:
        error = _tail(rec.log_path, 2000)
    return {"step": step.name, "kind": step.kind, "status": status, "returncode": rc,
            "wall_s": wall, "timeout_s": timeout_s, "command": shlex.join(argv),
            "started": started, "note": step.note, "result": result, "error": error}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="Folder for the results and the log.")
    p.add_argument("--tiny", action="store_true", help="CPU dry run at tiny sizes.")
    p.add_argument("--budget-s", type=float, default=450.0,
                   help="Overall limit: a step gets at most what is left of it.")
    p.add_argument("--min-step-s", type=float, default=None,
                   help="Skip a step when less than this is left (default: 30 s, tiny 0).")
    p.add_argument("--only", default="", help="Comma-separated step names to run (default: all).")
    args = p.parse_args(argv)
    steps = plan(args.tiny)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {s.name for s in steps}
        if unknown:
            p.error(f"unknown steps {sorted(unknown)}; known: {[s.name for s in steps]}")
        steps = [s for s in steps if s.name in wanted]
    min_step = args.min_step_s if args.min_step_s is not None else (0.0 if args.tiny else 30.0)
    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        return _run_all(args, steps, min_step)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_all(args: argparse.Namespace, steps: list[Step], min_step: float) -> int:
    start = time.perf_counter()
    rec = Recorder(args.out, args.tiny)
    rec.log(f"gpu_bench {_now()}: {shlex.join(sys.argv)}")
    cache = tempfile.TemporaryDirectory(prefix="gpu_bench_xla_") if args.tiny else None
    env = child_env(args.tiny, cache.name if cache else None)
    rec.env = environment(args.tiny, env)
    rec.add({"step": "env", "kind": "env", "status": "ok", "returncode": 0, "wall_s": 0.0,
             "timeout_s": None, "command": None, "started": _now(), "note": "", "error": None,
             "result": rec.env})
    for step in steps:
        batches = (None, *step.retry_batches)
        for batch in batches:
            left = args.budget_s - (time.perf_counter() - start)
            step_argv = tuple(best_attention(rec.records) if a == BEST_ATTENTION else a
                              for a in step.argv)
            if batch is not None:
                step_argv = _with_batch(step_argv, batch)
            if left < max(min_step, 1.0):
                rec.add({"step": step.name, "kind": step.kind, "status": "skipped",
                         "returncode": None, "wall_s": 0.0, "timeout_s": 0.0,
                         "command": shlex.join(step_argv), "started": _now(),
                         "note": step.note, "result": None,
                         "error": f"budget: {max(left, 0):.0f} s left of {args.budget_s:.0f}"})
                break
            record = run_step(step, rec, min(step.timeout_s, left), env, step_argv)
            rec.add(record)
            if record["status"] == "ok" or not any(m in (record["error"] or "")
                                                   for m in OOM_MARKERS):
                break
    if cache:
        cache.cleanup()
    failed = [r["step"] for r in rec.records if r["status"] != "ok"]
    rec.log(f"gpu_bench done in {time.perf_counter() - start:.0f} s; not ok: {failed}")
    return 0 if not failed else 1


def best_attention(records: list[dict[str, Any]]) -> str:
    """The faster of the base runs' attention ("fused" on a tie), "xla" when neither ran."""
    eps = {r["step"]: r["result"]["examples_per_sec"] for r in records
           if r["status"] == "ok" and r["step"] in ("spot_base_xla", "spot_base_fused")}
    if "spot_base_fused" in eps and eps["spot_base_fused"] >= eps.get("spot_base_xla", 0.0):
        return "fused"
    return "xla"


def child_env(tiny: bool, cache_dir: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if tiny:
        env["JAX_PLATFORMS"] = "cpu"
        env["CUDA_VISIBLE_DEVICES"] = ""
        # Tiny programs: XLA:CPU's optimization passes would be most of the dry run's time.
        env["XLA_FLAGS"] = " ".join(filter(None, (
            env.get("XLA_FLAGS"), "--xla_backend_optimization_level=0",
            "--xla_llvm_disable_expensive_passes=true")))
        if cache_dir:  # the steps share their weight-init programs (GPU: no cache, so every
            # compile_s there is a cold compile)
            env.update(JAX_COMPILATION_CACHE_DIR=cache_dir,
                       JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                       JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    else:
        # Fail fast if JAX cannot see the GPU instead of timing a base model on the CPU.
        env["JAX_PLATFORMS"] = "cuda"
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.92")
    return env


def environment(tiny: bool, env: dict[str, str]) -> dict[str, Any]:
    """What ran where: versions (read without importing jax or torch), the GPU, the peak."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    gpu = None
    if shutil.which("nvidia-smi") and not tiny:
        try:
            gpu = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=30
            ).stdout.strip() or None
        except (subprocess.TimeoutExpired, OSError):
            gpu = None
    kind = gpu.split(",")[0] if gpu else ("cpu" if tiny else "unknown")
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (subprocess.TimeoutExpired, OSError):
        commit = None
    return {
        "tiny": tiny, "python": platform.python_version(), "executable": sys.executable,
        "packages": versions, "gpu": gpu, "peak_flops_per_sec": peak_flops_per_sec(kind,
                                                                                   "bfloat16"),
        "peak_dtype": "bfloat16", "peak_source": PEAK_SOURCE, "commit": commit,
        "cpu_count": os.cpu_count(), "host": platform.node(),
        "env": {k: env.get(k) for k in ("JAX_PLATFORMS", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                                        "XLA_FLAGS", "PYTHONPATH")},
        "peft_compile_limit_s": PEFT_COMPILE_LIMIT_S,
    }


def summarize(records: list[dict[str, Any]], env: dict[str, Any], tiny: bool) -> dict[str, Any]:
    """The headline figures from what has run so far; None for what has not (yet)."""
    ok: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["status"] == "ok" and r["kind"] != "env":
            ok[r["step"]] = r["result"]

    def train(res: dict | None, **extra: Any) -> dict | None:
        if res is None:
            return None
        keys = ("model", "batch", "attention_impl", "remat", "scan_layers", "compiled",
                "examples_per_sec", "step_time_ms_median", "mfu", "peak_memory_bytes",
                "step_memory_bytes", "init_peak_memory_bytes", "warmup_peak_memory_bytes",
                "compile_s", "first_step_s", "warmup_s")
        return {**{k: res[k] for k in keys if k in res}, **extra}

    spot_runs = {n: ok[n] for n in ("spot_base_xla", "spot_base_fused") if n in ok}
    spot_best = max(spot_runs, key=lambda n: spot_runs[n]["examples_per_sec"], default=None)
    peft_runs = {}
    if "peft_base_eager" in ok:
        peft_runs["peft_base_eager"] = ok["peft_base_eager"]
    compiled = ok.get("peft_base_compiled")
    compiled_in_time = (compiled is not None
                        and compiled["first_step_s"] <= PEFT_COMPILE_LIMIT_S)
    if compiled_in_time:
        peft_runs["peft_base_compiled"] = compiled
    peft_best = max(peft_runs, key=lambda n: peft_runs[n]["examples_per_sec"], default=None)
    vs = None
    if spot_best and peft_best:
        s, q = spot_runs[spot_best], peft_runs[peft_best]
        vs = {"spot": spot_best, "peft_quoted": peft_best,
              "why": "the faster PEFT run (torch.compile only if it compiled within "
                     f"{PEFT_COMPILE_LIMIT_S:.0f} s)",
              "ratio_examples_per_sec": s["examples_per_sec"] / q["examples_per_sec"],
              "ratio_vs_eager": (s["examples_per_sec"] / ok["peft_base_eager"]["examples_per_sec"]
                                 if "peft_base_eager" in ok else None)}
    matmul = ok.get("matmul_ceiling")
    ceiling = matmul["flops_per_sec"] if matmul else None
    spot_base = None
    if spot_best:
        s = spot_runs[spot_best]
        spot_base = train(s, step=spot_best,
                          fraction_of_measured_matmul=(s["flops_per_step"]
                                                       / (s["step_time_ms_median"] / 1e3)
                                                       / ceiling if ceiling else None),
                          all={n: train(r) for n, r in spot_runs.items()})
    xxl = [r for r in records if r["step"] == "spot_xxl_remat"]
    return {
        "tiny": tiny, "updated": _now(),
        "steps": {r["step"]: r["status"] for r in records},
        "peak_flops_per_sec": env.get("peak_flops_per_sec"),
        "peak_source": env.get("peak_source"),
        "spot_base": spot_base,
        "peft_base": {"eager": train(ok.get("peft_base_eager")),
                      "compiled": train(compiled, compiled_within_limit=compiled_in_time)},
        "spot_vs_peft": vs,
        "decode_base": ({k: ok["decode_base"][k] for k in ("examples_per_sec", "tokens_per_sec",
                                                            "step_time_ms_median", "mfu",
                                                            "peak_memory_bytes")}
                        if "decode_base" in ok else None),
        "large": train(ok.get("spot_large")),
        "xl": train(ok.get("spot_xl_scan")),
        "xxl": train(ok.get("spot_xxl_remat"),
                     attempts=[(r["status"], _batch_of(r["command"])) for r in xxl]),
        "matmul_ceiling": ({k: matmul[k] for k in ("n", "flops_per_sec", "fraction_of_peak")}
                           if matmul else None),
    }


_CURRENT: list[subprocess.Popen | None] = [None]


def _on_term(signum, frame) -> None:  # the outer limit: end the running step, keep the files
    if _CURRENT[0] is not None:
        _kill_group(_CURRENT[0])
    sys.exit(128 + signum)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _with_batch(argv: tuple[str, ...], batch: int) -> tuple[str, ...]:
    i = argv.index("--batch")
    return argv[:i + 1] + (str(batch),) + argv[i + 2:]


def _batch_of(command: str) -> int | None:
    parts = shlex.split(command)
    return int(parts[parts.index("--batch") + 1]) if "--batch" in parts else None


def _tail(path: Path, n: int) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(f.tell() - n, 0))
        return f.read().decode("utf-8", "replace")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


if __name__ == "__main__":
    sys.exit(main())
