"""What a run does with its --out folder before training: a folder that is not a run (a
model checkpoint, an HF folder) is refused in one line before anything loads, and partial
checkpoints a killed run left behind are removed and logged."""

from __future__ import annotations

import json

import pytest

from spot.cli import main
from spot.errors import ConfigError
from spot.model.api import random_t5
from spot.model.prompt import init_uniform
from spot.train.loop import RunPieces, check_resumable, run_loop, trainable_from_prompt

from .synthetic import loop_config, synthetic_batches


@pytest.fixture(scope="module")
def t5():
    return random_t5("test_tiny", seed=0)


def _run(config, t5, logs):
    prompt = init_uniform(0, config.prompt.length, t5.config.emb_dim)
    return run_loop(config, RunPieces(
        out_dir=config.train.out_dir, module=t5.module, frozen=t5.params,
        initial_trainable=lambda: trainable_from_prompt(
            prompt, reparameterize=False, hidden=8, seed=0),
        batches=synthetic_batches(), evaluate=None, metadata={"task": "synthetic"}),
        log=logs.append)


@pytest.fixture
def native_model(tmp_path):
    from spot.model.checkpoints import save_native
    from spot.model.t5 import T5Config, init_params

    cfg = T5Config.preset("test_tiny")
    path = tmp_path / "model"
    save_native(path, cfg, init_params(cfg, 0))
    return path


def test_out_at_a_model_folder_says_it_is_not_a_run_folder(native_model):
    config = loop_config(native_model)
    with pytest.raises(ConfigError, match=rf"^{native_model} is not a run folder") as e:
        check_resumable(native_model, config)
    assert "different config" not in str(e.value)


def test_out_at_an_hf_folder_says_it_is_not_a_run_folder(tmp_path):
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"d_model": 512, "model_type": "t5"}))
    with pytest.raises(ConfigError, match="is not a run folder"):
        check_resumable(hf, loop_config(hf))


def test_unreadable_run_config_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{torn")
    with pytest.raises(ConfigError, match="config.json .*not valid JSON"):
        check_resumable(run, loop_config(run))


def test_cli_refuses_a_model_folder_as_out_before_loading_it(native_model, capsys,
                                                               monkeypatch):
    import spot.train.run as run_mod

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(run_mod, "build_model", no_load)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in native_model.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        main(["train-target", "--task", "offline_review_polarity", "--model",
              str(native_model), "--out", str(native_model), "--steps", "2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {native_model} is not a run folder")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in native_model.iterdir()) == before


def test_stale_partial_checkpoint_is_removed_and_logged(tmp_path, t5):
    config = loop_config(tmp_path / "run", **{"train.steps": 4, "train.eval_every": 4})
    logs: list[str] = []
    _run(config, t5, logs)
    # A kill during the save of step 8 leaves orbax's temporary folder behind.
    stale = tmp_path / "run" / "checkpoints" / "8.orbax-checkpoint-tmp-1712345678"
    stale.mkdir()
    (stale / "partial").write_bytes(b"half a checkpoint")
    logs.clear()
    resumed = loop_config(tmp_path / "run", **{"train.steps": 8, "train.eval_every": 4})
    result = _run(resumed, t5, logs)
    assert not stale.exists()
    assert any("removed a partial checkpoint" in line and stale.name in line for line in logs)
    assert result.resumed_from == 4 and result.final_step == 8
    assert not list((tmp_path / "run" / "checkpoints").glob("*orbax-checkpoint-tmp*"))


def test_a_run_is_not_resumed_from_a_rewritten_initial_prompt_file(tmp_path):
    """The saved config names the init file, not its content: a run folder records the
    file's sha256 and refuses a resume once the file holds another prompt (the demo's
    weighted top-k init is rewritten when more seeds change the retrieved sources)."""
    import numpy as np

    from spot.model.prompt_files import save_prompt
    from spot.train.loop import prepare_run_folder

    init = save_prompt(tmp_path / "init.npy", np.ones((4, 8), np.float32))
    out = tmp_path / "run"
    config = loop_config(out, **{"prompt.init": "file", "prompt.init_path": str(init)})
    prepare_run_folder(out, config, log=lambda m: None)
    record = json.loads((out / "init_prompt.json").read_text())
    assert record["path"] == str(init) and len(record["sha256"]) == 64
    prepare_run_folder(out, config, log=lambda m: None)  # same file: resumes

    before = init.read_bytes()
    save_prompt(init, np.full((4, 8), 2.0, np.float32))
    changed = init.read_bytes()
    assert changed != before
    with pytest.raises(ConfigError, match="started from another initial prompt"):
        prepare_run_folder(out, config, log=lambda m: None)
    assert init.read_bytes() == changed  # the user's file is left as it is
    assert json.loads((out / "init_prompt.json").read_text()) == record

    save_prompt(init, np.ones((4, 8), np.float32))  # the original content again: resumes
    prepare_run_folder(out, config, log=lambda m: None)


def test_a_run_from_class_labels_records_no_initial_prompt_file(tmp_path):
    from spot.train.loop import prepare_run_folder

    out = tmp_path / "run"
    prepare_run_folder(out, loop_config(out, **{"prompt.init": "class_labels"}),
                       log=lambda m: None)
    assert (out / "config.json").is_file() and not (out / "init_prompt.json").exists()
