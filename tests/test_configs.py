"""The shipped run configs load, validate, and say what their comments claim."""

from __future__ import annotations

from pathlib import Path

import pytest

from spot.config import load_toml, validate
from spot.data import registry

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "runs").glob("*.toml"))


def test_configs_exist():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_validates(path):
    config = validate(load_toml(path))
    # Every config names a registered task or mixture.
    registry.get(config.task_or_mixture)
    if config.train.mode == "model":
        assert config.optimizer.learning_rate == pytest.approx(1e-3)
    elif config.model.name != "embedded":
        # The paper's prompt-tuning recipe.
        assert config.optimizer.learning_rate == pytest.approx(0.3)
        assert config.prompt.length == 100
