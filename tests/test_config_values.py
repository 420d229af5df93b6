"""Config values that types alone do not rule out: non-finite numbers and out-of-range
optimizer settings are config errors that show the value, from --set and from TOML, and
--dry-run only ever prints valid JSON."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from spot.cli import cli, main
from spot.config import RunConfig, apply_overrides, load_toml, validate
from spot.errors import ConfigError


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
@pytest.mark.parametrize("key", ["optimizer.learning_rate", "optimizer.weight_decay",
                                 "optimizer.z_loss", "prompt.uniform_scale"])
def test_non_finite_numbers_are_config_errors(key, value):
    with pytest.raises(ConfigError, match=rf"{key} must be a finite number, got {value}"):
        apply_overrides(RunConfig(), {key: value})


def test_non_finite_numbers_from_toml_name_the_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[optimizer]\nlearning_rate = nan\n")
    with pytest.raises(ConfigError, match=r"run.toml: optimizer.learning_rate must be a finite "
                                          r"number, got nan"):
        load_toml(path)


@pytest.mark.parametrize("key, value", [
    ("optimizer.learning_rate", "0"), ("optimizer.learning_rate", "-0.3"),
    ("optimizer.weight_decay", "-1e-5"), ("optimizer.z_loss", "-1"),
    ("optimizer.epsilon", "0"), ("optimizer.clipping_threshold", "0"),
    ("optimizer.decay_rate", "0"), ("optimizer.decay_rate", "1.5"),
    ("prompt.uniform_scale", "0")])
def test_out_of_range_optimizer_values_show_the_value(key, value):
    config = apply_overrides(RunConfig(), {"data.task": "cb", key: value})
    with pytest.raises(ConfigError, match=rf"{key} must be .*, got {float(value)!r}"):
        validate(config)


def test_defaults_and_model_tuning_recipe_still_validate():
    validate(apply_overrides(RunConfig(), {"data.task": "cb"}))
    validate(apply_overrides(RunConfig(), {"data.task": "cb", "optimizer.learning_rate": 1e-3,
                                           "optimizer.weight_decay": 0, "optimizer.z_loss": 0}))


def test_dry_run_with_nan_is_an_error_not_invalid_json(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-target", "--task", "cb", "--dry-run", "--set",
              "optimizer.learning_rate=nan"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "error: optimizer.learning_rate must be a finite number, got nan"]


def test_dry_run_output_is_strict_json():
    result = CliRunner().invoke(cli, ["train-target", "--task", "cb", "--dry-run"])
    assert result.exit_code == 0, result.output
    config = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert config["optimizer"]["learning_rate"] == 0.3
