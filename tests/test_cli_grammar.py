"""One grammar across commands: `spot eval` and `spot predict` take `--config` and `--set`
like the training commands (defaults < TOML files < flags < --set), and `python -m spot`
is the `spot` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from spot.commands.train import EVAL_KEYS, inference_config
from spot.errors import SpotError
from tests.cli_helpers import invoke_ok

ROOT = Path(__file__).resolve().parents[1]
TASK = "offline_review_polarity"


_invoke = invoke_ok


def _run_toml(path: Path, model: Path) -> Path:
    path.write_text(f'[model]\nname = "{model}"\n[data]\ntask = "{TASK}"\ninput_length = 48\n'
                    'target_length = 4\nmax_eval_examples = 8\neval_split = "train"\n'
                    'eval_batch_size = 8\n', encoding="utf-8")
    return path


def test_eval_precedence_is_file_then_flags_then_set(tmp_path):
    toml = _run_toml(tmp_path / "run.toml", tmp_path / "m")
    flags = {"config_files": (str(toml),), "set_args": ("data.max_eval_examples=6",),
             "split": "validation", "max_examples": 7, "task": None, "input_length": None}
    config = inference_config(flags, EVAL_KEYS)
    assert config.data.task == TASK and config.model.name == str(tmp_path / "m")
    assert config.data.eval_split == "validation"  # the flag beats the file
    assert config.data.max_eval_examples == 6  # --set beats the flag
    assert config.data.input_length == 48  # the file beats the default
    mixture = tmp_path / "mix.toml"
    mixture.write_text('[data]\nmixture = "glue"\n', encoding="utf-8")
    config = inference_config({"config_files": (str(mixture),), "task": "cb"}, EVAL_KEYS)
    assert (config.data.task, config.data.mixture) == ("cb", "")  # --task names what to score


def test_eval_and_predict_reuse_a_run_config(tmp_path, tiny_model):
    toml = _run_toml(tmp_path / "run.toml", tiny_model)
    prompt = tmp_path / "p.npy"
    np.save(prompt, np.zeros((4, 16), np.float32))
    r = _invoke(["eval", "--config", toml, "--prompt", prompt, "--split", "validation",
                 "--set", "data.max_eval_examples=6"])
    assert f"{TASK} [validation, 6 examples]" in r.stdout
    lines = tmp_path / "in.jsonl"
    lines.write_text(json.dumps({"inputs": "sentence valence: a fine film"}) + "\n")
    out = tmp_path / "out.jsonl"
    _invoke(["predict", "--config", toml, "--prompt", prompt, "--input", lines,
             "--output", out])
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["task"] for r in rows] == [TASK]  # the file's task serves lines naming none


def test_eval_without_a_task_anywhere_is_a_config_error(tmp_path):
    try:
        _invoke(["eval", "--prompt", __file__])
    except SpotError as e:
        assert "data.task (--task)" in str(e)
    else:
        raise AssertionError("eval without a task ran")


def test_python_dash_m_spot(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "spot", *args], cwd=ROOT, text=True,
                              capture_output=True, timeout=300)

    r = run("--help")
    assert r.returncode == 0, r.stderr
    assert "Usage: spot" in r.stdout and "train-target" in r.stdout
    r = run("tasks", "info", "cb", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["label_words"] == ["entailment", "contradiction", "neutral"]
    r = run("tasks", "info", "nosuch_task")
    assert r.returncode == 2 and "error: unknown task or mixture 'nosuch_task'" in r.stderr
