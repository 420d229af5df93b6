"""Everything a run needs is checked before it starts, and each gap fails in seconds with
one line saying what is missing and how to provide it (exit 2, no traceback)."""

from __future__ import annotations

import time

import pytest

from spot.cli import main
from spot.train import preflight


@pytest.fixture
def offline(monkeypatch):
    """No network: every probe fails at once."""
    monkeypatch.setattr(preflight, "_connects", lambda host, port=443: False)
    preflight._PROBES.clear()
    yield
    preflight._PROBES.clear()


@pytest.fixture
def no_model_load(monkeypatch):
    """The test fails (rather than hangs) if a run gets as far as loading the model."""
    import spot.train.run as run_mod

    def refuse(*a, **k):
        raise AssertionError("the model started loading before the run's inputs were checked")

    monkeypatch.setattr(run_mod, "build_model", refuse)



def _fails(args, capsys) -> str:
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    assert time.monotonic() - t0 < 20
    captured = capsys.readouterr()
    assert exit_info.value.code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_design_card_retrieve_offline_fails_in_seconds(tmp_path, offline, no_model_load,
                                                        capsys, monkeypatch):
    from spot.library.store import PromptLibrary

    monkeypatch.chdir(tmp_path)
    PromptLibrary(tmp_path / "L").close()
    line = _fails(["retrieve", "--target", "cb", "--k", "3", "--library", tmp_path / "L"],
                  capsys)
    assert "gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base" in line
    assert "storage.googleapis.com cannot be reached" in line and "--model" in line
    assert not (tmp_path / "runs").exists()


def test_missing_tfds_data_names_tfds_build(tmp_path, tiny_model, offline, no_model_load,
                                            capsys, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    line = _fails(["train-target", "--task", "cb", "--model", tiny_model, "--out",
                   tmp_path / "run"], capsys)
    assert "super_glue/cb:1.0.2" in line and "tfds build super_glue/cb:1.0.2" in line
    monkeypatch.setenv("SPOT_TFDS_DOWNLOAD", "0")
    line = _fails(["train-target", "--task", "cb", "--model", tiny_model, "--out",
                   tmp_path / "run"], capsys)
    assert "SPOT_TFDS_DOWNLOAD=0" in line and "tfds build" in line
    assert not (tmp_path / "run").exists()


def test_missing_local_file_task_data(tmp_path, tiny_model, no_model_load, capsys,
                                      monkeypatch):
    monkeypatch.setenv("SPOT_DATA_DIR", str(tmp_path / "data"))
    line = _fails(["train-target", "--task", "cr", "--model", tiny_model, "--out",
                   tmp_path / "run"], capsys)
    assert "task cr" in line and str(tmp_path / "data" / "cr") in line


def test_missing_model_and_vocab_paths(tmp_path, tiny_model, no_model_load, capsys):
    line = _fails(["train-target", "--task", "offline_review_polarity", "--model",
                   tmp_path / "nowhere", "--out", tmp_path / "run"], capsys)
    assert str(tmp_path / "nowhere") in line and "--model PATH" in line
    line = _fails(["train-target", "--task", "offline_review_polarity", "--model", tiny_model,
                   "--vocab", tmp_path / "none.model", "--out", tmp_path / "run"], capsys)
    assert str(tmp_path / "none.model") in line and "--vocab PATH" in line


def test_probe_is_bounded_and_remembered(monkeypatch):
    calls = []
    monkeypatch.setattr(preflight, "_connects", lambda host, port=443: calls.append(host) or False)
    preflight._PROBES.clear()
    assert preflight.reachable("example.invalid") is False
    assert preflight.reachable("example.invalid") is False
    assert calls == ["example.invalid"]
    preflight._PROBES.clear()
    monkeypatch.undo()

    # A connection that never answers (no traffic leaves the machine: the socket call is
    # replaced by one that hangs far past the probe's limit).
    import socket

    def hang(*a, **k):
        time.sleep(preflight.PROBE_TIMEOUT_S + 30)
        raise OSError("never answered")

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.monotonic()
    assert preflight._connects("storage.example.invalid") is False
    assert time.monotonic() - t0 < preflight.PROBE_TIMEOUT_S + 1.5
