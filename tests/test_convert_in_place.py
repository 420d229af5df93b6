"""`spot convert SRC SRC --overwrite` (and any replacement of a native checkpoint or PEFT
adapter folder) rewrites spot's own files and keeps everything else in the folder."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

from spot.model.checkpoints import flatten_params, load_checkpoint, save_native
from tests.model.test_checkpoints import SMALL, random_params


def _decorate(folder):
    (folder / "vocab.model").write_bytes(b"sentencepiece bytes")
    (folder / "README.md").write_text("notes")
    (folder / "extra").mkdir()
    (folder / "extra" / "history.json").write_text("{}")
    (folder / "link").symlink_to("README.md")


def _assert_decorations(folder):
    assert (folder / "vocab.model").read_bytes() == b"sentencepiece bytes"
    assert (folder / "README.md").read_text() == "notes"
    assert (folder / "extra" / "history.json").read_text() == "{}"
    assert (folder / "link").is_symlink() and (folder / "link").read_text() == "notes"


def test_convert_in_place_keeps_other_files(tmp_path):
    from spot.cli import main

    src = save_native(tmp_path / "ckpt", SMALL, random_params(SMALL))
    _decorate(src)
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(src), str(src)])  # without --overwrite: refused, nothing touched
    assert exit_info.value.code == 2
    _assert_decorations(src)
    main(["convert", str(src), str(src), "--overwrite", "--dtype", "bfloat16"])
    _assert_decorations(src)
    config, params = load_checkpoint(src)
    assert config == SMALL
    ref = flatten_params(random_params(SMALL))
    for name, value in flatten_params(params).items():
        assert value.dtype == ml_dtypes.bfloat16
        np.testing.assert_array_equal(value, ref[name].astype(ml_dtypes.bfloat16))
    assert json.loads((src / "config.json").read_text())["metadata"]["converted_from"] == str(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporaries left


def test_failed_replacement_leaves_the_old_folder(tmp_path, monkeypatch):
    import safetensors.numpy

    src = save_native(tmp_path / "ckpt", SMALL, random_params(SMALL))
    _decorate(src)
    before = (src / "params.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_native(src, SMALL, random_params(SMALL, seed=1))
    assert (src / "params.safetensors").read_bytes() == before
    _assert_decorations(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_peft_export_over_an_adapter_keeps_other_files(tmp_path):
    from spot.model.prompt_files import export_peft, load_peft_prompt

    out = export_peft(np.ones((3, SMALL.emb_dim), np.float32), tmp_path / "adapter",
                      base_model="t5", config=SMALL)
    _decorate(out)
    export_peft(np.full((3, SMALL.emb_dim), 2.0, np.float32), out, base_model="t5", config=SMALL)
    _assert_decorations(out)
    np.testing.assert_array_equal(load_peft_prompt(out), np.full((3, SMALL.emb_dim), 2.0))
