"""Mode-dependent defaults belong to the config: a run that sets nothing but the training
mode gets the paper's recipe for that mode from every entry point (CLI flag, --set, TOML,
a config built in Python), an explicit value always wins, and the resolved config (what
--dry-run prints) round-trips and shows the values the run will use."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from spot.cli import cli
from spot.config import (
    ModelConfig,
    OptimizerConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_toml,
    validate,
)


def _dry_run(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["train-target", "--task", "cb", "--dry-run", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _model_recipe(config: dict) -> None:
    assert config["optimizer"]["learning_rate"] == 1e-3
    assert config["optimizer"]["factored"] is True
    assert config["model"]["param_dtype"] == "float32"  # trained weights stay in float32


def test_mode_flag_gives_the_model_tuning_recipe():
    _model_recipe(_dry_run("--mode", "model"))


def test_set_mode_gives_the_model_tuning_recipe():
    _model_recipe(_dry_run("--set", "train.mode=model"))


def test_toml_mode_gives_the_model_tuning_recipe(tmp_path):
    toml = tmp_path / "model.toml"
    toml.write_text('[train]\nmode = "model"\n')
    _model_recipe(_dry_run("--config", str(toml)))
    loaded = validate(apply_overrides(load_toml(toml), {"data.task": "cb"}))
    _model_recipe(json.loads(loaded.to_json()))


def test_config_built_in_python_gets_the_model_tuning_recipe():
    config = RunConfig(train=TrainConfig(mode="model")).resolve()
    assert config.optimizer.learning_rate == 1e-3 and config.optimizer.factored is True
    assert config.model.param_dtype == "float32"
    prompt = RunConfig().resolve()
    assert prompt.optimizer.learning_rate == 0.3 and prompt.optimizer.factored is False
    assert prompt.model.param_dtype == "auto"


def test_train_passes_the_resolved_recipe_to_the_loop(tmp_path, monkeypatch):
    """`spot.train.run.train(config)` from a notebook: the loop sees the model-tuning recipe."""
    from spot.data.offline.vocab import default_vocabulary_path
    from spot.data.vocab import load_vocabulary
    from spot.model.api import random_t5
    from spot.train import loop, run

    seen = []
    monkeypatch.setattr(loop, "run_loop", lambda config, *a, **k: seen.append(config))
    config = apply_overrides(RunConfig(), {
        "data.task": "offline_text_source", "train.mode": "model", "train.progress": False,
        "train.out_dir": str(tmp_path / "run"), "model.name": "test_tiny",
        "data.max_eval_examples": 4})
    run.train(config, t5=random_t5("test_tiny"), vocab=load_vocabulary(default_vocabulary_path(), extra_ids=100),
              log=lambda s: None)
    assert seen and seen[0].optimizer.learning_rate == 1e-3 and seen[0].optimizer.factored


def test_explicit_values_win_over_the_mode_defaults(tmp_path):
    config = _dry_run("--set", "train.mode=model", "--set", "optimizer.learning_rate=0.01")
    assert config["optimizer"]["learning_rate"] == 0.01 and config["optimizer"]["factored"]
    config = _dry_run("--mode", "model", "--set", "optimizer.factored=false")
    assert config["optimizer"]["learning_rate"] == 1e-3
    assert config["optimizer"]["factored"] is False
    # An explicit value equal to the prompt-tuning default is still explicit.
    toml = tmp_path / "lr.toml"
    toml.write_text("[optimizer]\nlearning_rate = 0.3\n")
    config = _dry_run("--mode", "model", "--config", str(toml))
    assert config["optimizer"]["learning_rate"] == 0.3
    built = RunConfig(train=TrainConfig(mode="model"),
                      optimizer=OptimizerConfig(learning_rate=0.05)).resolve()
    assert built.optimizer.learning_rate == 0.05 and built.optimizer.factored is True
    explicit = RunConfig(train=TrainConfig(mode="model"),
                         model=ModelConfig(param_dtype="bfloat16")).resolve()
    assert explicit.model.param_dtype == "bfloat16"


def test_resolved_config_round_trips_through_its_dump():
    for mode in ("prompt", "model"):
        config = apply_overrides(RunConfig(), {"data.task": "cb", "train.mode": mode,
                                               "model.remat": "dots"}).resolve()
        again = from_dict(json.loads(config.to_json()))
        assert again == config and again.resolve() == config


@pytest.mark.parametrize("value, want", [("dots", "dots"), ("full", "full"), ("none", "none"),
                                         ("true", "full"), ("false", "none"),
                                         (True, "full"), (False, "none")])
def test_remat_accepts_policies_and_old_booleans(value, want):
    assert apply_overrides(RunConfig(), {"model.remat": value}).model.remat == want


def test_remat_policy_reaches_the_model(tmp_path):
    from spot.train.run import build_model

    config = _dry_run("--set", "model.remat=dots")
    assert config["model"]["remat"] == "dots"
    toml = tmp_path / "old.toml"
    toml.write_text("[model]\nremat = true\n")  # a TOML file written before the policies
    assert load_toml(toml).model.remat == "full"
    for remat, want in (("dots", "dots"), ("full", "full"), ("none", False)):
        built = build_model(apply_overrides(RunConfig(), {
            "model.name": "test_tiny", "model.random_weights": True, "model.remat": remat}))
        assert built.module.remat == want


def test_model_mode_builds_float32_weights_from_the_resolved_config():
    import jax
    import numpy as np

    from spot.train.run import build_model

    config = apply_overrides(RunConfig(), {"model.name": "test_tiny", "train.mode": "model",
                                           "model.random_weights": True,
                                           "model.dtype": "bfloat16"})
    leaves = jax.tree_util.tree_leaves(build_model(config).params)
    assert all(np.dtype(x.dtype) == np.float32 for x in leaves)
