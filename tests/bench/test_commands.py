"""`spot bench ...` on a tiny config on CPU: valid JSON with every promised key."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from spot.bench.device import peak_flops_per_sec
from spot.bench.flops import train_step_flops
from spot.cli import cli, main
from spot.model.t5 import T5Config

TRAIN_KEYS = {"examples_per_sec", "tokens_per_sec", "step_time_ms_median", "flops_per_step",
              "mfu", "peak_memory_bytes", "memory_source", "device"}


def _run(args: list[str]) -> dict:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.output  # --json: exactly one JSON object on one line
    return json.loads(lines[0])


def test_train_step_prints_every_key():
    out = _run(["bench", "train-step", "--model", "test_tiny", "--random-weights", "--batch",
                "2", "--input-length", "6", "--target-length", "4", "--prompt-length", "3",
                "--steps", "3", "--warmup", "1", "--dtype", "float32", "--json"])
    assert TRAIN_KEYS <= out.keys()
    expected = train_step_flops(T5Config.preset("test_tiny"), batch=2, input_length=6,
                                target_length=4, prompt_length=3).total
    assert out["flops_per_step"] == expected
    assert out["examples_per_sec"] > 0 and out["step_time_ms_median"] > 0
    assert out["tokens_per_sec"] == pytest.approx(out["examples_per_sec"] * 10)
    assert out["mfu"] is None and out["device"].endswith("(cpu)")  # no known CPU peak
    assert out["peak_memory_bytes"] > 0 and out["memory_source"] == "process_max_rss"
    assert out["dtype"] == "float32" and out["steps"] == 3
    assert out["final_loss"] > 0


def test_decode_prints_every_key():
    out = _run(["bench", "decode", "--model", "test_tiny", "--random-weights", "--batch", "2",
                "--input-length", "5", "--prompt-length", "3", "--max-length", "4",
                "--steps", "2", "--dtype", "float32", "--json"])
    assert TRAIN_KEYS <= out.keys()
    assert out["tokens_per_sec"] == pytest.approx(out["examples_per_sec"] * 4)


def test_predict_mixed_and_grouped_agree():
    out = _run(["bench", "predict", "--model", "test_tiny", "--random-weights", "--tasks", "3",
                "--requests", "9", "--batch", "4", "--input-length", "16", "--max-length", "3",
                "--prompt-length", "2", "--repeats", "1", "--dtype", "float32", "--json"])
    assert out["predictions_agree"] == 1.0
    assert out["mixed_requests_per_sec"] > 0 and out["grouped_requests_per_sec"] > 0


def test_bad_sizes_are_user_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "train-step", "--model", "test_tiny", "--random-weights", "--batch", "0",
              "--json"])
    assert exc.value.code == 2
    assert "batch must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["bench", "train-step", "--model", "no_such_preset", "--random-weights"])
    assert exc.value.code == 2


def test_peak_table():
    assert peak_flops_per_sec("NVIDIA H100 80GB HBM3", "bfloat16") == 989e12
    assert peak_flops_per_sec("NVIDIA H100 PCIe", "bfloat16") == 756e12
    assert peak_flops_per_sec("NVIDIA H200", "bfloat16") == 989e12
    assert peak_flops_per_sec("NVIDIA A100-SXM4-80GB", "bfloat16") == 312e12
    assert peak_flops_per_sec("TPU v5 lite", "bfloat16") == 197e12
    assert peak_flops_per_sec("TPU v5p", "bfloat16") == 459e12
    assert peak_flops_per_sec("cpu", "float32") is None


def test_retrieval_subcommand_runs_the_library_benchmark():
    out = _run(["bench", "retrieval", "--entries", "50", "--emb-dim", "8", "--prompt-length",
                "3", "--queries", "2", "--k", "3", "--json"])
    assert out["entries"] == 50 and out["matches_naive"] is True


def test_pipeline_subcommand_runs_the_pipeline_benchmark(vocab_path):
    out = _run(["bench", "pipeline", "--vocab", str(vocab_path), "--steps", "3",
                "--input-length", "32", "--batch", "4", "--json"])
    assert out["batch_size"] == 4 and out["examples_per_s"] > 0
