"""`spot bench` builds a RunConfig: the benchmark's defaults < --config files < shorthand
flags < --set, and the benchmark functions read nothing else."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from spot.bench.settings import DECODE_DEFAULTS, TRAIN_STEP_DEFAULTS, bench_config
from spot.cli import cli
from spot.commands.bench import _run_config
from spot.errors import ConfigError


def test_precedence_defaults_toml_flags_set(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[model]\nname = "test_tiny"\nremat = "dots"\n[data]\nbatch_size = 4\n'
                    'input_length = 40\n')
    config = _run_config(TRAIN_STEP_DEFAULTS, {
        "config_files": (str(toml),), "batch": 2, "dtype": "float32",
        "set_args": ("data.input_length=12",)})
    assert config.model.name == "test_tiny" and config.model.remat == "dots"
    assert config.data.batch_size == 2  # the flag beats the file
    assert config.data.input_length == 12  # --set beats the file
    assert config.data.target_length == TRAIN_STEP_DEFAULTS["data.target_length"]
    assert config.model.dtype == config.model.param_dtype == "float32"  # weights follow --dtype
    assert _run_config(TRAIN_STEP_DEFAULTS, {"batch": 2, "set_args": ("data.batch_size=3",)}
                       ).data.batch_size == 3
    both = _run_config(TRAIN_STEP_DEFAULTS, {"dtype": "float32", "param_dtype": "bfloat16"})
    assert both.model.param_dtype == "bfloat16"


def test_max_length_is_the_decoded_length_and_unknown_keys_fail():
    config = _run_config(DECODE_DEFAULTS, {"max_length": 5, "remat": "full"})
    assert config.data.target_length == 5 and config.model.remat == "full"
    assert bench_config(DECODE_DEFAULTS).data.target_length == 16
    with pytest.raises(ConfigError, match="unknown config key"):
        _run_config(DECODE_DEFAULTS, {"set_args": ("data.no_such_key=1",)})
    with pytest.raises(ConfigError, match="remat"):
        _run_config(DECODE_DEFAULTS, {"set_args": ("model.remat=everything",)})


def test_train_step_compile_only_from_set_and_bare_remat():
    result = CliRunner().invoke(cli, [
        "bench", "train-step", "--set", "model.name=test_tiny", "--set",
        "model.random_weights=true", "--batch", "2", "--input-length", "6", "--target-length",
        "4", "--prompt-length", "3", "--dtype", "float32", "--compile-only", "--remat",
        "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["model"] == "test_tiny" and out["random_weights"] is True
    assert out["remat"] == "full" and out["steps"] == 0 and out["batch"] == 2
    assert out["flops_per_step"] > 0
