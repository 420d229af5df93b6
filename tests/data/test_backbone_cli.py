"""`spot backbone build|info --set ... [--diagnose]` on a few-step recipe in a private cache."""

from __future__ import annotations

import json

import pytest

from spot.errors import CheckpointError, ConfigError

from ..train.test_cli import _invoke

# On top of the embedded recipe, so its random-copy phase and multi-task stage are set off.
TINY = ["--set", "random_copy_steps=0", "--set", "multitask_steps=0",
        "--set", "reconstruct_steps=2", "--set", "span_steps=2", "--set", "prefix_lm_steps=2",
        "--set", "batch_size=4", "--set", "emb_dim=32", "--set", "mlp_dim=64",
        "--set", "num_layers=1", "--set", "num_heads=2", "--set", "head_dim=16"]


def test_recipe_changes_are_typed_and_checked(private_cache):
    with pytest.raises(ConfigError, match="not a recipe field"):
        _invoke(["backbone", "info", "--set", "span_stepz=3"])
    with pytest.raises(ConfigError, match="expected int"):
        _invoke(["backbone", "info", "--set", "span_steps=three"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        _invoke(["backbone", "info", "--set", "span_steps"])
    with pytest.raises(CheckpointError, match="not built yet"):
        _invoke(["backbone", "info", "--set", "span_steps=3"])


@pytest.mark.slow
def test_build_then_info_with_diagnosis(private_cache):
    built = _invoke(["backbone", "build", *TINY]).stdout.strip().splitlines()[-1]
    assert built.startswith(str(private_cache))
    report = json.loads(_invoke(["backbone", "info", *TINY, "--diagnose"]).stdout)
    assert report["path"] == built and report["recipe"]["emb_dim"] == 32
    for objective in ("span", "prefix_lm"):
        d = report["diagnosis"][objective]
        assert d["perplexity"] == pytest.approx(report["heldout_perplexity"][objective],
                                                rel=1e-4)
        # Swapped encoder inputs really reach the model: the score moves.
        assert d["perplexity_other_example_input"] != pytest.approx(d["perplexity"], rel=1e-7)
    # Another recipe is another cache entry: the default, not built in this cache, is the
    # copy shipped with the package.
    from spot.data.offline.backbone import SHIPPED_DIR

    assert json.loads(_invoke(["backbone", "info"]).stdout)["path"] == str(SHIPPED_DIR)
