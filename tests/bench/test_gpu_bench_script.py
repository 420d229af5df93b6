"""scripts/gpu_bench.py: the CPU dry run at tiny sizes (every step runs end to end and writes
valid JSON with every key, with seqio/TensorFlow/gensim absent as on the GPU machine), the
per-step time limit, the budget, and which PEFT figure the summary quotes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spot.bench.flops import train_step_flops
from spot.model.t5 import T5Config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_bench.py"
# Not installed on the GPU machine; `sys.modules[name] = None` makes `import name` fail and
# `importlib.util.find_spec(name)` answer None, as for a package that is not there.
ABSENT = ("seqio", "tensorflow", "tensorflow_datasets", "tensorflow_text", "gensim",
          "vaderSentiment", "textblob")


def _load():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = module
    spec.loader.exec_module(module)
    return module


gb = _load()


def _absent_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "absent"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nfor _name in %r:\n    sys.modules[_name] = None\n" % (ABSENT,))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    return env


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow  # about 60-75 s of CPU: nine processes, each importing jax or torch
def test_dry_run_writes_every_figure_without_seqio_or_tensorflow(tmp_path):
    env = _absent_env(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import seqio"], env=env, capture_output=True,
                           text=True)
    assert probe.returncode != 0 and "None in sys.modules" in probe.stderr  # the block holds

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    log = (out / "gpu_bench.log").read_text()
    assert proc.returncode == 0, proc.stdout + log[-4000:]

    records = _records(out)
    steps = gb.plan(tiny=True)
    assert [r["step"] for r in records] == ["env"] + [s.name for s in steps]
    for r in records:
        assert set(gb.RECORD_KEYS) <= r.keys(), r["step"]
        assert r["status"] == "ok", (r["step"], r["error"])
        if r["kind"] != "env":
            missing = set(gb.RESULT_KEYS[r["kind"]]) - r["result"].keys()
            assert not missing, (r["step"], missing)
            assert f"===== {r['step']} " in log
    env_rec = records[0]["result"]
    assert env_rec["tiny"] is True and env_rec["peak_source"] and env_rec["python"]

    res = {r["step"]: r["result"] for r in records}
    shape = dict(batch=2, input_length=8, target_length=4, prompt_length=3)
    flops = train_step_flops(T5Config.preset("test_tiny"), **shape).total
    for name in ("spot_base_xla", "spot_base_fused", "peft_base_eager", "peft_base_compiled"):
        assert res[name]["flops_per_step"] == flops  # same shape, same counted work
        assert res[name]["examples_per_sec"] > 0 and res[name]["final_loss"] > 0
        assert res[name]["dtype"] == "bfloat16"
    assert res["spot_base_xla"]["attention_impl"] == "xla"
    assert res["spot_base_fused"]["attention_impl"] == "fused"
    assert res["peft_base_compiled"]["compiled"] is True
    assert res["peft_base_compiled"]["compile_backend"] == "eager"
    assert res["peft_base_eager"]["compiled"] is False
    assert res["spot_xl_scan"]["scan_layers"] is True
    assert res["spot_xxl_remat"]["scan_layers"] is True
    assert res["spot_xxl_remat"]["remat"] == "full"
    best = gb.best_attention(records)
    assert {res[n]["attention_impl"] for n in ("spot_large", "spot_xl_scan",
                                               "spot_xxl_remat")} == {best}
    assert res["decode_base"]["tokens_per_sec"] == pytest.approx(
        res["decode_base"]["examples_per_sec"] * 4)
    assert res["matmul_ceiling"]["flops_per_sec"] > 0

    summary = json.loads((out / "summary.json").read_text())
    assert set(gb.SUMMARY_KEYS) <= summary.keys()
    assert set(summary["steps"].values()) == {"ok"}
    vs = summary["spot_vs_peft"]
    quoted = res[vs["peft_quoted"]]["examples_per_sec"]
    assert vs["ratio_examples_per_sec"] == pytest.approx(
        res[vs["spot"]]["examples_per_sec"] / quoted)
    assert summary["xxl"]["attempts"] == [["ok", 2]]


def test_a_hung_step_is_killed_with_its_children_and_the_next_one_runs(tmp_path):
    rec = gb.Recorder(tmp_path / "out", tiny=True)
    pid_file = tmp_path / "grandchild.pid"
    hang = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); print('started', flush=True); "
            "time.sleep(120)")
    t0 = time.perf_counter()
    record = gb.run_step(gb.Step("hang", "matmul", (sys.executable, "-c", hang), 3.0), rec, 3.0,
                         dict(os.environ))
    assert record["status"] == "timeout" and time.perf_counter() - t0 < 30
    assert "started" in (tmp_path / "out" / "gpu_bench.log").read_text()
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # the whole process group got the signal, not only the child
        if not _alive(grandchild):
            break
        time.sleep(0.1)
    assert not _alive(grandchild)

    ok = gb.run_step(gb.Step("next", "matmul", (sys.executable, "-c",
                                                "print('{\"flops_per_sec\": 1.5}')"), 30), rec,
                     30, dict(os.environ))
    assert ok["status"] == "ok" and ok["result"] == {"flops_per_sec": 1.5}


def test_steps_past_the_budget_are_recorded_as_skipped(tmp_path):
    out = tmp_path / "out"
    assert gb.main(["--tiny", "--out", str(out), "--budget-s", "0",
                    "--only", "spot_base_xla,matmul_ceiling"]) == 1
    records = _records(out)
    assert [(r["step"], r["status"]) for r in records] == [
        ("env", "ok"), ("spot_base_xla", "skipped"), ("matmul_ceiling", "skipped")]
    assert records[1]["error"].startswith("budget")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spot_vs_peft"] is None and summary["steps"]["matmul_ceiling"] == "skipped"


def _train_record(step: str, examples_per_sec: float, **extra) -> dict:
    result = {"examples_per_sec": examples_per_sec, "step_time_ms_median": 1e3 / examples_per_sec,
              "flops_per_step": 1.0, **extra}
    return {"step": step, "kind": "train", "status": "ok", "result": result,
            "command": "x --batch 32"}


def test_summary_quotes_compiled_peft_only_when_it_compiled_in_time():
    slow_compile = gb.PEFT_COMPILE_LIMIT_S + 1
    records = [_train_record("spot_base_xla", 100.0), _train_record("spot_base_fused", 120.0),
               _train_record("peft_base_eager", 40.0, first_step_s=2.0),
               _train_record("peft_base_compiled", 60.0, first_step_s=slow_compile)]
    vs = gb.summarize(records, {}, tiny=False)["spot_vs_peft"]
    assert (vs["spot"], vs["peft_quoted"]) == ("spot_base_fused", "peft_base_eager")
    assert vs["ratio_examples_per_sec"] == pytest.approx(3.0)

    records[-1]["result"]["first_step_s"] = gb.PEFT_COMPILE_LIMIT_S - 1
    vs = gb.summarize(records, {}, tiny=False)["spot_vs_peft"]
    assert vs["peft_quoted"] == "peft_base_compiled"
    assert vs["ratio_examples_per_sec"] == pytest.approx(2.0)
    assert vs["ratio_vs_eager"] == pytest.approx(3.0)
    assert gb.best_attention(records) == "fused"
    assert gb.best_attention(records[:1]) == "xla"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
