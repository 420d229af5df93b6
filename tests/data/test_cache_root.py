"""One cache root for everything spot caches (token arrays, the offline vocabulary, the
embedded backbone, XLA's compilation cache): $SPOT_CACHE (or its older name
$SPOT_CACHE_DIR), else $XDG_CACHE_HOME/spot, else ~/.cache/spot."""

from __future__ import annotations

from pathlib import Path

import pytest

from spot.data import pipeline
from spot.data.offline.vocab import cache_root
from spot.errors import ConfigError


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("SPOT_CACHE", "SPOT_CACHE_DIR", "XDG_CACHE_HOME", "SPOT_TOKEN_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_default_is_the_user_cache(clean_env, tmp_path):
    assert cache_root() == tmp_path / "home" / ".cache" / "spot"
    assert pipeline.cache_dir() == cache_root() / "tokens"


def test_token_cache_honours_xdg_cache_home(clean_env, tmp_path):
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "spot"
    assert pipeline.cache_dir() == tmp_path / "xdg" / "spot" / "tokens"


def test_spot_cache_moves_the_token_cache_too(clean_env, tmp_path):
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    clean_env.setenv("SPOT_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    assert pipeline.cache_dir() == tmp_path / "mine" / "tokens"


def test_spot_cache_dir_still_works_and_moves_everything(clean_env, tmp_path):
    clean_env.setenv("SPOT_CACHE_DIR", str(tmp_path / "old"))
    assert pipeline.cache_dir() == tmp_path / "old" / "tokens"
    assert cache_root() == tmp_path / "old"
    clean_env.setenv("SPOT_CACHE", str(tmp_path / "old"))  # both naming one folder is fine
    assert cache_root() == tmp_path / "old"


def test_two_different_cache_roots_are_an_error(clean_env, tmp_path):
    clean_env.setenv("SPOT_CACHE", str(tmp_path / "a"))
    clean_env.setenv("SPOT_CACHE_DIR", str(tmp_path / "b"))
    with pytest.raises(ConfigError, match="SPOT_CACHE .* and SPOT_CACHE_DIR .* name different"):
        cache_root()


def test_token_cache_can_be_turned_off(clean_env):
    clean_env.setenv("SPOT_TOKEN_CACHE", "0")
    assert pipeline.cache_dir() is None
    clean_env.setenv("SPOT_TOKEN_CACHE", "1")
    assert isinstance(pipeline.cache_dir(), Path)
