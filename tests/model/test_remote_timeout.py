"""A remote checkpoint read that gets no answer times out with a clear error instead of
hanging (SPOT_REMOTE_TIMEOUT seconds, default 60)."""

from __future__ import annotations

import time

import pytest
import tensorstore as ts

from spot.errors import CheckpointError
from spot.model import checkpoints_t5x as t5x


class _SilentStore:
    """A kvstore whose every request stays pending, like a GCS endpoint that never answers."""

    def __init__(self):
        self._pending = []

    def _never(self):
        promise, future = ts.Promise.new()
        self._pending.append(promise)
        return future

    def read(self, key):
        return self._never()

    def list(self):
        return self._never()


@pytest.fixture
def silent(monkeypatch):
    monkeypatch.setenv("SPOT_REMOTE_TIMEOUT", "0.3")
    loc = t5x.gcs_location("gs://some-bucket/ckpt/checkpoint_1")
    monkeypatch.setattr(loc, "_kv", _SilentStore())
    return loc


@pytest.mark.parametrize("op", ["read", "list"])
def test_unanswered_remote_request_times_out_clearly(silent, op):
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match=r"gs://some-bucket/ckpt/checkpoint_1.*no answer "
                                              r"within 0.3 s.*--model PATH.*SPOT_REMOTE_TIMEOUT"):
        silent.read("checkpoint") if op == "read" else silent.subdirs()
    assert time.monotonic() - t0 < 5


def test_remote_timeout_setting_is_checked(monkeypatch):
    monkeypatch.setenv("SPOT_REMOTE_TIMEOUT", "soon")
    with pytest.raises(CheckpointError, match="SPOT_REMOTE_TIMEOUT must be a positive number"):
        t5x.remote_timeout()
    monkeypatch.delenv("SPOT_REMOTE_TIMEOUT")
    assert t5x.remote_timeout() == 60.0
