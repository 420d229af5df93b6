"""Shared fixtures.

`../shared/testdata` holds real artifacts (a t5x checkpoint, the T5 vocabulary, released
prompts). Outside this workplace the folder is absent: tests that need it skip, except
under CI=true where its absence is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_TESTDATA = ROOT.parent / "shared" / "testdata"
RELEASE = SHARED_TESTDATA / "prompt_tuning_release"


@pytest.fixture(autouse=True)
def _no_network_probes(monkeypatch):
    """Tests never open connections off this machine: the preflight's reachability probe
    answers "unreachable" at once unless a test replaces it itself."""
    from spot.train import preflight

    monkeypatch.setattr(preflight, "_connects", lambda host, port=443: False)
    preflight._PROBES.clear()
    yield
    preflight._PROBES.clear()


def _require(path: Path) -> Path:
    if path.exists():
        return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{path} is missing; CI must provide ../shared/testdata")
    pytest.skip(f"{path} is absent (real test data only exists beside the project checkout)")


@pytest.fixture(scope="session")
def release_dir() -> Path:
    return _require(RELEASE)


@pytest.fixture(scope="session")
def vocab_path() -> Path:
    return _require(RELEASE / "t5_sentencepiece.model")


@pytest.fixture(scope="session")
def t5x_tiny_checkpoint() -> Path:
    return _require(RELEASE / "t5x_tiny_checkpoint" / "checkpoint_3")


@pytest.fixture(scope="session")
def released_prompts_dir() -> Path:
    return _require(RELEASE / "prompts_t5_1_1_lm100k_base")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random tiny T5 1.1 in the native format with the offline vocabulary beside it
    (one per test module, so no module sees another's changes)."""
    from spot.data.offline.vocab import default_vocabulary_path
    from spot.model.checkpoints import save_native
    from spot.model.t5 import T5Config, init_params

    cfg = T5Config.preset("test_tiny", vocab_size=8192)
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_native(path, cfg, init_params(cfg, 0))
    shutil.copyfile(default_vocabulary_path(), path / "vocab.model")
    return path
