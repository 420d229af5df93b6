"""Fixtures of the data tests."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """spot's cache root in a folder of the test's own, holding a copy of the default
    offline vocabulary (so a backbone build trains no vocabulary)."""
    from spot.data.offline.vocab import default_vocabulary_path

    vocab = default_vocabulary_path()
    shutil.copytree(vocab.parent, tmp_path / vocab.parent.name)
    monkeypatch.setenv("SPOT_CACHE", str(tmp_path))
    return tmp_path
