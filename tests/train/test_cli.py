"""CLI smoke runs: train-source, train-target (--init from the previous run), eval, predict,
on a tiny random T5 with the offline suite's vocabulary and offline tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from spot.cli import cli
from spot.errors import SpotError

FAST = ["--set", "data.input_length=48", "--set", "data.target_length=4",
        "--set", "data.batch_size=8", "--set", "prompt.length=4",
        "--set", "train.eval_every=4", "--set", "train.embedding_step=2",
        "--set", "train.checkpoint_every=4", "--set", "data.max_eval_examples=24",
        "--set", "data.eval_batch_size=24", "--set", "train.progress=false",
        "--set", "train.log_every=2"]



def _invoke(args):
    result = CliRunner().invoke(cli, args, catch_exceptions=True)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def test_train_source_target_eval_predict(tmp_path, tiny_model):
    src = tmp_path / "src"
    r = _invoke(["train-source", "--task", "offline_vader_valence", "--model", str(tiny_model),
                 "--steps", "8", "--out", str(src), *FAST])
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["final_step"] == 8 and summary["best_step"] in (4, 8)
    best = src / "prompts" / "best.npy"
    assert best.exists() and (src / "prompts" / "embedding_step2.npy").exists()
    meta = json.loads((src / "prompts" / "best.npy.json").read_text())["metadata"]
    assert meta["task"] == "offline_vader_valence" and meta["kind"] == "best"
    assert meta["step"] == summary["best_step"] and meta["config"]["train"]["steps"] == 8

    tgt = tmp_path / "tgt"
    r = _invoke(["train-target", "--task", "offline_review_polarity", "--model", str(tiny_model),
                 "--init", str(best), "--steps", "4", "--out", str(tgt), *FAST])
    assert json.loads(r.stdout[r.stdout.index("{"):])["final_step"] == 4
    config = json.loads((tgt / "config.json").read_text())
    assert config["prompt"]["init"] == "file" and config["prompt"]["init_path"] == str(best)

    r = _invoke(["eval", "--task", "offline_review_polarity", "--prompt",
                 str(tgt / "prompts" / "best.npy"), "--model", str(tiny_model),
                 "--input-length", "48", "--target-length", "4", "--max-examples", "20",
                 "--json"])
    metrics = json.loads(r.stdout)
    assert 0.0 <= metrics["accuracy"] <= 100.0 and metrics["score"] == metrics["accuracy"]

    lines = tmp_path / "in.jsonl"
    lines.write_text("\n".join(json.dumps({"inputs": f"sentence valence: {t}", "id": i})
                               for i, t in enumerate(["a fine film", "dull and long",
                                                      "wonderful"])) + "\n")
    out = tmp_path / "out.jsonl"
    _invoke(["predict", "--prompt", str(best), "--input", str(lines), "--output", str(out),
             "--task", "offline_review_polarity", "--model", str(tiny_model),
             "--input-length", "48"])
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2]
    assert all(r["prediction"] in ("positive", "negative") for r in rows)


def test_init_of_wrong_width_fails_before_compiling(tmp_path, tiny_model):
    bad = tmp_path / "wide.npy"
    np.save(bad, np.zeros((4, 32), np.float32))
    with pytest.raises(SpotError, match="width 32 does not match the model's embedding size 16"):
        _invoke(["train-target", "--task", "offline_review_polarity", "--model",
                 str(tiny_model), "--init", str(bad), "--out", str(tmp_path / "x"), *FAST])
    assert not (tmp_path / "x").exists()
    long = tmp_path / "long.npy"
    np.save(long, np.zeros((7, 16), np.float32))
    with pytest.raises(SpotError, match="length 7 differs .*--resize-prompt"):
        _invoke(["train-target", "--task", "offline_review_polarity", "--model",
                 str(tiny_model), "--init", str(long), "--out", str(tmp_path / "y"), *FAST])


def test_dry_run_and_config_errors(tmp_path):
    r = _invoke(["train-source", "--mixture", "glue", "--dry-run", "--set", "train.steps=7"])
    config = json.loads(r.stdout)
    assert config["data"]["mixture"] == "glue" and config["train"]["steps"] == 7
    assert config["optimizer"]["learning_rate"] == 0.3 and config["prompt"]["length"] == 100
    with pytest.raises(SpotError, match="unknown config key 'train.stepz'"):
        _invoke(["train-source", "--task", "cb", "--dry-run", "--set", "train.stepz=1"])
    with pytest.raises(SpotError, match="train.steps must be an integer"):
        _invoke(["train-source", "--task", "cb", "--dry-run", "--set", "train.steps=ten"])
    r = _invoke(["train-target", "--task", "cb", "--mode", "model", "--dry-run"])
    config = json.loads(r.stdout)
    assert config["optimizer"]["learning_rate"] == 1e-3 and config["optimizer"]["factored"]
    toml = tmp_path / "run.toml"
    toml.write_text("[train]\nsteps = 11\n[data]\nbatch_size = 4\n")
    r = _invoke(["train-source", "--task", "cb", "--config", str(toml), "--dry-run"])
    config = json.loads(r.stdout)
    assert config["train"]["steps"] == 11 and config["data"]["batch_size"] == 4
