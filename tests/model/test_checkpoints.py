"""Native format, format detection, config inference and the `spot convert` command."""

from __future__ import annotations

import json
import sys

import ml_dtypes
import numpy as np
import pytest

from spot.errors import CheckpointError, ConfigError
from spot.model.checkpoints import (
    expected_shapes,
    flatten_params,
    infer_config,
    load_checkpoint,
    read_config_file,
    save_native,
    unflatten_params,
)
from spot.model.t5 import T5Config

SMALL = T5Config(vocab_size=40, emb_dim=6, num_heads=3, head_dim=2, mlp_dim=10,
                 num_encoder_layers=2, num_decoder_layers=1,
                 relative_attention_num_buckets=6, relative_attention_max_distance=12)


def random_params(config: T5Config, seed: int = 0, dtype=np.float32) -> dict:
    """A parameter tree of the right shapes with distinct random values (numpy only)."""
    rng = np.random.default_rng(seed)
    flat = {name: rng.normal(size=shape).astype(np.float32).astype(dtype)
            for name, shape in expected_shapes(config).items()}
    return unflatten_params(flat)


def assert_trees_equal(a: dict, b: dict) -> None:
    fa, fb = flatten_params(a), flatten_params(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        assert fa[name].dtype == fb[name].dtype, name
        np.testing.assert_array_equal(fa[name], fb[name], err_msg=name)


def test_flatten_roundtrip_and_names():
    tree = {"a": {"b": np.ones(2), "c": {"d": np.zeros((1, 2))}}, "e": np.arange(3)}
    flat = flatten_params(tree)
    assert sorted(flat) == ["a/b", "a/c/d", "e"]
    back = unflatten_params(flat)
    np.testing.assert_array_equal(back["a"]["c"]["d"], tree["a"]["c"]["d"])
    with pytest.raises(CheckpointError, match="contains '/'"):
        flatten_params({"a/b": np.ones(1)})
    with pytest.raises(CheckpointError, match="nests under"):
        unflatten_params({"a": np.ones(1), "a/b": np.ones(1)})


def test_expected_shapes_cover_t5_1_0_and_1_1():
    gated = expected_shapes(SMALL)
    assert gated["encoder/layers_1/mlp/wi_1/kernel"] == (6, 10)
    assert gated["decoder/logits_dense/kernel"] == (6, 40)
    assert gated["encoder/relpos_bias/rel_embedding"] == (3, 6)
    assert "decoder/layers_1/mlp/wo/kernel" not in gated
    tied = expected_shapes(SMALL.replace(mlp_activations=("relu",), logits_via_embedding=True))
    assert "decoder/logits_dense/kernel" not in tied
    assert tied["encoder/layers_0/mlp/wi/kernel"] == (6, 10)
    assert "encoder/layers_0/mlp/wi_0/kernel" not in tied


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_native_roundtrip_keeps_dtype(tmp_path, dtype):
    params = random_params(SMALL, seed=1, dtype=dtype)
    out = save_native(tmp_path / "model", SMALL, params, metadata={"step": np.int64(7)})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "params.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary leftovers
    header = json.loads((out / "config.json").read_text())
    assert header["format"] == "spot-t5" and header["format_version"] == 1
    assert header["metadata"] == {"step": 7}
    assert header["emb_dim"] == 6 and header["mlp_activations"] == ["gelu", "linear"]
    config, loaded = load_checkpoint(out)
    assert config == SMALL
    assert_trees_equal(loaded, params)


def test_save_native_replaces_own_format_and_refuses_other_folders(tmp_path):
    out = save_native(tmp_path / "m", SMALL, random_params(SMALL, seed=1))
    newer = random_params(SMALL, seed=2)
    save_native(out, SMALL, newer)
    assert_trees_equal(load_checkpoint(out)[1], newer)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="not a spot checkpoint"):
        save_native(other, SMALL, newer)
    assert (other / "notes.txt").read_text() == "keep me"


def test_save_native_checks_shapes_against_config(tmp_path):
    params = random_params(SMALL)
    params["encoder"]["layers_0"]["mlp"]["wo"]["kernel"] = np.zeros((11, 6), np.float32)
    with pytest.raises(CheckpointError, match=r"encoder/layers_0/mlp/wo/kernel has shape "
                                              r"\(11, 6\) but the config implies \(10, 6\)"):
        save_native(tmp_path / "m", SMALL, params)
    assert not (tmp_path / "m").exists()


def test_config_override_that_disagrees_names_parameter_and_shapes(tmp_path):
    out = save_native(tmp_path / "m", SMALL, random_params(SMALL))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(out, config=SMALL.replace(mlp_dim=12))
    msg = str(err.value)
    assert "encoder/layers_0/mlp/wi_0/kernel has shape (6, 10)" in msg and "(6, 12)" in msg
    with pytest.raises(CheckpointError, match="logits_via_embedding=True"):
        load_checkpoint(out, config=SMALL.replace(logits_via_embedding=True))
    with pytest.raises(ConfigError):
        load_checkpoint(out, config={"emb_dim": 6})


def test_bad_paths_get_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or folder"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="no such file or folder"):
        load_checkpoint("./definitely/not/here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="config.json but no weights"):
        load_checkpoint(tmp_path / "cfg")
    (tmp_path / "file.bin").write_bytes(b"123")
    with pytest.raises(CheckpointError, match="is a file"):
        load_checkpoint(tmp_path / "file.bin")


def test_truncated_native_params_are_reported(tmp_path):
    out = save_native(tmp_path / "m", SMALL, random_params(SMALL))
    data = (out / "params.safetensors").read_bytes()
    (out / "params.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="params.safetensors: not a readable safetensors"):
        load_checkpoint(out)
    (out / "params.safetensors").write_bytes(b"\x05\x00")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(out)


def test_newer_native_version_is_refused(tmp_path):
    out = save_native(tmp_path / "m", SMALL, random_params(SMALL))
    header = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**header, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(out)


def test_infer_config_reads_heads_from_relative_table_and_uses_presets():
    flat = flatten_params(random_params(T5Config.preset("test_tiny")))
    assert infer_config(flat) == T5Config.preset("test_tiny")
    # 32 buckets: t5x's standard network (max distance 128); heads from the [H, K] table.
    odd = T5Config(vocab_size=30, emb_dim=9, num_heads=3, head_dim=5, mlp_dim=7,
                   num_encoder_layers=1, num_decoder_layers=3,
                   relative_attention_max_distance=128, mlp_activations=("relu",),
                   logits_via_embedding=True)
    assert infer_config(flatten_params(random_params(odd))) == odd
    unknown = odd.replace(relative_attention_num_buckets=10)
    flat = flatten_params(random_params(unknown))
    with pytest.raises(CheckpointError, match="pass config="):
        infer_config(flat)
    got = infer_config(flat, hints={"relative_attention_max_distance": 33,
                                    "mlp_activations": ("silu",)})
    assert got == unknown.replace(relative_attention_max_distance=33, mlp_activations=("silu",))
    with pytest.raises(CheckpointError, match="num_heads=5 but the parameter shapes say 3"):
        infer_config(flat, hints={"num_heads": 5, "relative_attention_max_distance": 33},
                     hints_source="config.gin")


def test_read_config_file_accepts_spot_and_hf_json(tmp_path):
    spot_json = tmp_path / "spot.json"
    spot_json.write_text(json.dumps({**SMALL.to_dict(), "format": "spot-t5"}))
    assert read_config_file(spot_json) == SMALL
    hf_json = tmp_path / "hf.json"
    hf_json.write_text(json.dumps({
        "model_type": "t5", "vocab_size": 40, "d_model": 6, "num_heads": 3, "d_kv": 2,
        "d_ff": 10, "num_layers": 2, "num_decoder_layers": 1,
        "relative_attention_num_buckets": 6, "relative_attention_max_distance": 12,
        "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}))
    assert read_config_file(hf_json) == SMALL
    (tmp_path / "bad.json").write_text(json.dumps({"emb_dim": 6, "wings": 2}))
    with pytest.raises(ConfigError, match="wings"):
        read_config_file(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="no such config file"):
        read_config_file(tmp_path / "none.json")


def test_hub_id_without_huggingface_hub_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(CheckpointError, match="needs the huggingface_hub package"):
        load_checkpoint("spot-tests/no-such-model")


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="could not be fetched from the Hugging Face hub"):
        load_checkpoint("spot-tests-nonexistent/no-such-model")


def test_convert_cli_writes_native(tmp_path, t5x_tiny_checkpoint):
    from spot.cli import main

    out = tmp_path / "native"
    main(["convert", str(t5x_tiny_checkpoint), str(out), "--dtype", "bfloat16"])
    config, params = load_checkpoint(out)
    ref_config, ref = load_checkpoint(t5x_tiny_checkpoint)
    assert config == ref_config
    flat, ref_flat = flatten_params(params), flatten_params(ref)
    assert sorted(flat) == sorted(ref_flat)
    for name, value in flat.items():
        assert value.dtype == ml_dtypes.bfloat16
        np.testing.assert_array_equal(value, ref_flat[name].astype(ml_dtypes.bfloat16))
    assert json.loads((out / "config.json").read_text())["metadata"]["converted_from"] == str(
        t5x_tiny_checkpoint)


def test_convert_cli_refuses_existing_output_and_uses_config_json(tmp_path, capsys):
    from spot.cli import main

    src = save_native(tmp_path / "src", SMALL, random_params(SMALL))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(src), str(out)])
    assert exit_info.value.code == 2
    assert "already exists" in capsys.readouterr().err
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(SMALL.replace(mlp_dim=12).to_dict()))
    with pytest.raises(SystemExit):
        main(["convert", str(src), str(tmp_path / "out2"), "--config-json", str(cfg)])
    err = capsys.readouterr().err
    assert err.startswith("error:") and "wi_0/kernel has shape (6, 10)" in err
    assert "Traceback" not in err
