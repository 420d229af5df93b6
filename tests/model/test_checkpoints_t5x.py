"""t5x checkpoints: the real tiny checkpoint from the prompt-tuning release, and checkpoints
written here in the same layout (flax msgpack + tensorstore zarr) to exercise bfloat16,
gin hints, corruption and the gs:// path translation."""

from __future__ import annotations

import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from spot.errors import CheckpointError
from spot.model import checkpoints_t5x as t5x
from spot.model.checkpoints import flatten_params, load_checkpoint
from spot.model.t5 import T5Config
from tests.model.test_checkpoints import random_params


def write_t5x_checkpoint(folder: Path, flat: dict[str, np.ndarray], *,
                         inline_max_size: int = 16) -> Path:
    """Write `flat` as t5x does: small leaves inline in the msgpack file, the others as zarr
    folders named `target.<dotted name>` referenced by gfile tensorstore specs."""
    import tensorstore as ts
    from flax import serialization

    folder.mkdir(parents=True, exist_ok=True)
    target: dict = {}
    for name, arr in flat.items():
        node = target
        parts = name.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if arr.size <= inline_max_size:
            node[parts[-1]] = arr
            continue
        dirname = "target." + name.replace("/", ".")
        dtype = "bfloat16" if arr.dtype == ml_dtypes.bfloat16 else arr.dtype.str
        metadata = {"chunks": list(arr.shape), "compressor": {"id": "gzip", "level": 1},
                    "dtype": dtype, "shape": list(arr.shape)}
        store = ts.open({"driver": "zarr", "kvstore": {"driver": "file",
                                                       "path": str(folder / dirname) + "/"},
                         "metadata": metadata}, create=True).result()
        store.write(arr).result()
        node[parts[-1]] = {"driver": "zarr", "kvstore": {"driver": "gfile", "path": dirname},
                           "metadata": metadata}
    state = {"step": np.asarray(3, np.int32), "param_states": {}}
    raw = serialization.msgpack_serialize(
        {"version": 3, "optimizer": {"target": target, "state": state}})
    (folder / "checkpoint").write_bytes(raw)
    return folder


def test_real_tiny_checkpoint_loads_exactly_what_tensorstore_reads(t5x_tiny_checkpoint):
    import tensorstore as ts
    from flax import serialization

    config, params = load_checkpoint(t5x_tiny_checkpoint)
    assert config == T5Config.preset("t5_1_1_tiny")
    flat = flatten_params(params)
    # Independent reading: flax's own msgpack decoder, tensorstore on each zarr folder.
    raw = serialization.msgpack_restore((t5x_tiny_checkpoint / "checkpoint").read_bytes())
    ref = flatten_params({k: v for k, v in _spec_leaves(raw["optimizer"]["target"]).items()})
    assert sorted(flat) == sorted(ref)
    zarr_leaves = 0
    for name, leaf in ref.items():
        if leaf.dtype == object:
            leaf = leaf.item()
            folder = t5x_tiny_checkpoint / leaf["kvstore"]["path"]
            expected = ts.open({"driver": "zarr", "kvstore": {"driver": "file",
                                                             "path": str(folder)}}).result()
            expected = expected.read().result()
            zarr_leaves += 1
        else:
            expected = leaf
        assert flat[name].dtype == np.float32
        np.testing.assert_array_equal(flat[name], expected, err_msg=name)
    assert zarr_leaves == 38 and flat["token_embedder/embedding"].shape == (32128, 4)


def _spec_leaves(tree: dict) -> dict:
    """Wrap tensorstore spec dicts so flatten_params treats them as leaves."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and "driver" in v:
            out[k] = np.array(v, dtype=object)
        elif isinstance(v, dict):
            out[k] = _spec_leaves(v)
        else:
            out[k] = v
    return out


def test_real_tiny_checkpoint_runs_forward(t5x_tiny_checkpoint):
    import spot

    model = spot.load_t5(t5x_tiny_checkpoint)
    enc = np.array([[37, 5, 9, 1, 0, 0], [8, 1, 0, 0, 0, 0]], np.int32)
    dec = np.array([[0, 37, 5], [0, 8, 0]], np.int32)
    logits = model.logits(enc, dec)
    assert logits.shape == (2, 3, 32128) and logits.dtype == np.float32
    assert np.isfinite(logits).all() and logits.std() > 0
    prompt = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    with_prompt = model.logits(enc, dec, prompt=prompt)
    assert np.isfinite(with_prompt).all() and not np.allclose(with_prompt, logits)


def test_model_folder_picks_highest_checkpoint(tmp_path, t5x_tiny_checkpoint):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "checkpoint_3").symlink_to(t5x_tiny_checkpoint, target_is_directory=True)
    cfg = T5Config.preset("t5_1_1_tiny")
    write_t5x_checkpoint(model_dir / "checkpoint_1", flatten_params(random_params(cfg, 5)))
    (model_dir / "checkpoint_9_tmp").mkdir()  # not a checkpoint_N name
    _, params = load_checkpoint(model_dir)
    _, ref = load_checkpoint(t5x_tiny_checkpoint)
    np.testing.assert_array_equal(params["encoder"]["encoder_norm"]["scale"],
                                  ref["encoder"]["encoder_norm"]["scale"])
    # The msgpack file itself is accepted too.
    config, _ = load_checkpoint(model_dir / "checkpoint_1" / "checkpoint")
    assert config == cfg


def test_bfloat16_checkpoint_with_gin_hints(tmp_path):
    cfg = T5Config(vocab_size=50, emb_dim=6, num_heads=2, head_dim=5, mlp_dim=7,
                   num_encoder_layers=2, num_decoder_layers=2,
                   relative_attention_num_buckets=10, relative_attention_max_distance=20,
                   dropout_rate=0.0)
    flat = flatten_params(random_params(cfg, 3, dtype=ml_dtypes.bfloat16))
    ckpt = write_t5x_checkpoint(tmp_path / "run" / "checkpoint_100", flat)
    with pytest.raises(CheckpointError, match="max distance does not show"):
        load_checkpoint(ckpt)
    (tmp_path / "run" / "config.gin").write_text(
        "from t5x import models\n"
        "DROPOUT_RATE = 0.0\n"
        "network.T5Config.emb_dim = 6  # comment\n"
        "network.T5Config.dropout_rate = %DROPOUT_RATE\n"
        "network.T5Config.dtype = 'bfloat16'\n"
        "layers.RelativePositionBiases.max_distance = 20\n")
    config, params = load_checkpoint(tmp_path / "run")
    assert config == cfg
    got = flatten_params(params)
    for name, value in flat.items():
        assert got[name].dtype == ml_dtypes.bfloat16, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_parse_gin_bindings_and_macros():
    hints = t5x.parse_gin(
        "NUM_HEADS = 12\n"
        "network.T5Config.num_heads = %NUM_HEADS\n"
        "network.T5Config.mlp_activations = ('gelu', 'linear')\n"
        "network.T5Config.logits_via_embedding = False\n"
        "network.T5Config.vocab_size = @unparsable()\n"
        "train.eval_period = 1000\n")
    assert hints == {"num_heads": 12, "mlp_activations": ("gelu", "linear"),
                     "logits_via_embedding": False}


def test_gin_that_disagrees_with_shapes_is_reported(tmp_path):
    cfg = T5Config.preset("test_tiny")
    ckpt = write_t5x_checkpoint(tmp_path / "checkpoint_1", flatten_params(random_params(cfg)))
    (tmp_path / "config.gin").write_text("network.T5Config.emb_dim = 32\n")
    with pytest.raises(CheckpointError, match="config.gin says emb_dim=32 but the parameter "
                                              "shapes say 16"):
        load_checkpoint(ckpt)


@pytest.fixture()
def small_ckpt(tmp_path):
    cfg = T5Config.preset("test_tiny")
    return write_t5x_checkpoint(tmp_path / "checkpoint_1", flatten_params(random_params(cfg)))


def test_corrupt_zarr_chunk_is_reported(small_ckpt):
    chunk = small_ckpt / "target.encoder.layers_0.attention.query.kernel" / "0.0"
    chunk.write_bytes(b"not gzip at all")
    with pytest.raises(CheckpointError, match="encoder/layers_0/attention/query/kernel"):
        load_checkpoint(small_ckpt)


def test_missing_zarr_chunk_or_folder_is_reported(small_ckpt):
    folder = small_ckpt / "target.decoder.logits_dense.kernel"
    (folder / "0.0").unlink()
    with pytest.raises(CheckpointError, match="chunk '0.0' of parameter "
                                              "decoder/logits_dense/kernel is missing"):
        load_checkpoint(small_ckpt)
    shutil.rmtree(folder)
    with pytest.raises(CheckpointError, match="missing zarr metadata"):
        load_checkpoint(small_ckpt)


def test_truncated_or_garbage_msgpack_is_reported(small_ckpt):
    data = (small_ckpt / "checkpoint").read_bytes()
    (small_ckpt / "checkpoint").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="not a readable flax msgpack file"):
        load_checkpoint(small_ckpt)
    import msgpack

    (small_ckpt / "checkpoint").write_bytes(msgpack.packb({"version": 3, "other": 1}))
    with pytest.raises(CheckpointError, match="holds no parameter tree"):
        load_checkpoint(small_ckpt)


def test_spec_paths_cannot_leave_the_checkpoint_folder(small_ckpt, tmp_path):
    location = t5x.LocalDir(small_ckpt)
    spec = {"driver": "zarr", "kvstore": {"driver": "gfile",
                                          "path": "/elsewhere/../target.token_embedder.embedding"}}
    rewritten = t5x.array_spec(location, spec, "token_embedder/embedding")
    assert rewritten["kvstore"] == {
        "driver": "file", "path": str((small_ckpt / "target.token_embedder.embedding").resolve())
        + "/"}
    with pytest.raises(CheckpointError, match="invalid path component"):
        t5x.gcs_location("gs://bucket/a/../b")
    with pytest.raises(CheckpointError, match="driver 'json'"):
        t5x.array_spec(location, {"driver": "json", "kvstore": {"path": "x"}}, "p")


def test_gs_paths_translate_to_the_gcs_kvstore():
    location = t5x.gcs_location("gs://t5-data/pretrained_models/t5x/base/checkpoint_1100000/")
    assert location.spec == {"driver": "gcs", "bucket": "t5-data",
                             "path": "pretrained_models/t5x/base/checkpoint_1100000/"}
    spec = t5x.array_spec(location, {"driver": "zarr", "kvstore": {
        "driver": "gfile", "path": "target.encoder.layers_0.mlp.wo.kernel"},
        "metadata": {"shape": [2048, 768]}}, "encoder/layers_0/mlp/wo/kernel")
    assert spec == {"driver": "zarr", "metadata": {"shape": [2048, 768]}, "kvstore": {
        "driver": "gcs", "bucket": "t5-data",
        "path": "pretrained_models/t5x/base/checkpoint_1100000/"
                "target.encoder.layers_0.mlp.wo.kernel/"}}
    assert str(location.parent()) == "gs://t5-data/pretrained_models/t5x/base"
    assert location.parent().spec["path"] == "pretrained_models/t5x/base/"


def test_kvstore_location_reads_a_whole_checkpoint(small_ckpt):
    """The gs:// code path, driven through tensorstore's file kvstore instead of gcs."""
    location = t5x.KvStoreDir({"driver": "file", "path": str(small_ckpt.parent)}, "kv")
    ckpt = t5x.resolve_checkpoint_dir(location)
    assert str(ckpt) == "kv/checkpoint_1"
    tree = t5x.open_tree(ckpt)
    got = tree.read(tree.leaves)
    _, ref = load_checkpoint(small_ckpt)
    ref = flatten_params(ref)
    assert sorted(got) == sorted(ref)
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name])


def test_prompt_inside_t5x_checkpoint_is_not_a_model_parameter(tmp_path):
    cfg = T5Config.preset("test_tiny")
    flat = flatten_params(random_params(cfg))
    flat[t5x.PROMPT_PATH] = np.ones((5, 16), np.float32)
    ckpt = write_t5x_checkpoint(tmp_path / "checkpoint_2", flat)
    config, params = load_checkpoint(ckpt)
    assert config == cfg and "prompt" not in params["encoder"]
    assert t5x.PROMPT_PATH in t5x.open_tree(t5x.LocalDir(ckpt)).leaves
