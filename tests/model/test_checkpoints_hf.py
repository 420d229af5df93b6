"""Hugging Face folders: models written by `transformers` itself (safetensors, sharded,
weights-only PyTorch) and a flax msgpack in the layout of HF's Flax T5, mapped onto t5x."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from spot.errors import CheckpointError, ConfigError
from spot.model.checkpoints import flatten_params, load_checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def hf_t5(seed: int = 0, *, vocab: int = 64, d_model: int = 8, d_kv: int = 3,
          num_heads: int = 2, d_ff: int = 11, num_layers: int = 2,
          num_decoder_layers: int | None = None, buckets: int = 6, max_distance: int = 16,
          feed_forward_proj: str = "gated-gelu", tie_word_embeddings: bool = False):
    """A transformers T5 with every weight redrawn so that mix-ups cannot hide: norms away
    from 1, relative-position tables large enough to matter."""
    cfg = transformers.T5Config(
        vocab_size=vocab, d_model=d_model, d_kv=d_kv, d_ff=d_ff, num_layers=num_layers,
        num_decoder_layers=num_decoder_layers, num_heads=num_heads,
        relative_attention_num_buckets=buckets, relative_attention_max_distance=max_distance,
        feed_forward_proj=feed_forward_proj, tie_word_embeddings=tie_word_embeddings,
        dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(seed)
    model = transformers.T5ForConditionalGeneration(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif "relative_attention_bias" in name or name in ("shared.weight", "lm_head.weight"):
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * p.shape[1] ** -0.5)
    return model


def state_numpy(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "t5"
    model = hf_t5(1, num_decoder_layers=3)
    model.save_pretrained(folder)
    return folder, state_numpy(model)


def check_mapping(params: dict, sd: dict[str, np.ndarray], *, tied_logits: bool) -> None:
    flat = flatten_params(params)
    np.testing.assert_array_equal(flat["token_embedder/embedding"], sd["shared.weight"])
    np.testing.assert_array_equal(flat["encoder/layers_1/attention/query/kernel"],
                                  sd["encoder.block.1.layer.0.SelfAttention.q.weight"].T)
    np.testing.assert_array_equal(flat["encoder/relpos_bias/rel_embedding"],
                                  sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias"
                                     ".weight"].T)
    np.testing.assert_array_equal(
        flat["decoder/layers_2/encoder_decoder_attention/out/kernel"],
        sd["decoder.block.2.layer.1.EncDecAttention.o.weight"].T)
    np.testing.assert_array_equal(flat["decoder/layers_0/pre_cross_attention_layer_norm/scale"],
                                  sd["decoder.block.0.layer.1.layer_norm.weight"])
    np.testing.assert_array_equal(flat["decoder/layers_1/mlp/wo/kernel"],
                                  sd["decoder.block.1.layer.2.DenseReluDense.wo.weight"].T)
    np.testing.assert_array_equal(flat["encoder/encoder_norm/scale"],
                                  sd["encoder.final_layer_norm.weight"])
    if tied_logits:
        assert "logits_dense" not in params["decoder"]
    else:
        np.testing.assert_array_equal(flat["decoder/logits_dense/kernel"], sd["lm_head.weight"].T)


def test_safetensors_folder_maps_onto_t5x_names(hf_dir):
    folder, sd = hf_dir
    config, params = load_checkpoint(folder)
    assert (config.vocab_size, config.emb_dim, config.num_heads, config.head_dim,
            config.mlp_dim) == (64, 8, 2, 3, 11)
    assert (config.num_encoder_layers, config.num_decoder_layers) == (2, 3)
    assert config.relative_attention_num_buckets == 6
    assert config.relative_attention_max_distance == 16
    assert config.mlp_activations == ("gelu", "linear")
    # transformers 5 ties T5 1.1's lm_head to the embedding without rescaling: spot keeps
    # an explicit output kernel equal to the embedding.
    assert not config.logits_via_embedding
    check_mapping(params, sd, tied_logits=False)
    assert len(flatten_params(params)) == 5 + 2 * 9 + 3 * 14 + 1


def test_sharded_safetensors_folder(tmp_path, hf_dir):
    _, sd = hf_dir
    model = hf_t5(1, num_decoder_layers=3)
    model.save_pretrained(tmp_path, max_shard_size="2KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    _, params = load_checkpoint(tmp_path)
    check_mapping(params, sd, tied_logits=False)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[0]
    index["weight_map"]["shared.weight"] = "../../outside.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="points outside"):
        load_checkpoint(tmp_path)
    assert shard.endswith(".safetensors")


def test_pytorch_bin_is_read_weights_only(tmp_path, hf_dir):
    folder, sd = hf_dir
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    model = hf_t5(1, num_decoder_layers=3)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    _, params = load_checkpoint(tmp_path)
    check_mapping(params, sd, tied_logits=False)


class _Payload:
    def __reduce__(self):
        return (Path.write_text, (Path(_Payload.marker), "executed"))


def test_pytorch_bin_with_code_is_refused_not_executed(tmp_path, hf_dir):
    folder, _ = hf_dir
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    _Payload.marker = str(tmp_path / "pwned")
    torch.save({"shared.weight": torch.zeros(2), "x": _Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "pwned").exists()
    # A plain pickle file under the torch name is refused the same way.
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps({"x": _Payload()}))
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "pwned").exists()


def _flax_tree(sd: dict[str, np.ndarray]) -> dict:
    """The parameter tree HF's Flax T5 writes: kernels [in, out], embeddings `embedding`."""
    tree: dict = {}
    for name, value in sd.items():
        if name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            continue
        parts = name.split(".")
        leaf = parts[-1]
        if name == "shared.weight" or "relative_attention_bias" in name:
            leaf, value = "embedding", value
        elif "layer_norm" not in name:
            leaf, value = "kernel", np.ascontiguousarray(value.T)
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def test_flax_msgpack_folder(tmp_path, hf_dir):
    from flax import serialization

    folder, sd = hf_dir
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    sd = {**sd, "lm_head.weight": sd["shared.weight"]}
    (tmp_path / "flax_model.msgpack").write_bytes(serialization.to_bytes(_flax_tree(sd)))
    config, params = load_checkpoint(tmp_path)
    assert config == load_checkpoint(folder)[0]
    check_mapping(params, sd, tied_logits=False)
    (tmp_path / "flax_model.msgpack").write_bytes(b"\xc1\xc1\xc1")
    with pytest.raises(CheckpointError, match="flax_model.msgpack: not a readable flax msgpack"):
        load_checkpoint(tmp_path)


def test_t5_1_0_tied_and_old_untied_checkpoints(tmp_path):
    model = hf_t5(2, num_decoder_layers=3, feed_forward_proj="relu", tie_word_embeddings=True)
    model.save_pretrained(tmp_path / "t5_1_0")
    config, params = load_checkpoint(tmp_path / "t5_1_0")
    assert config.logits_via_embedding and config.mlp_activations == ("relu",)
    assert "wi" in params["encoder"]["layers_0"]["mlp"]
    check_mapping(params, state_numpy(model), tied_logits=True)
    # A T5 1.1 folder from older transformers: separate lm_head, tie_word_embeddings false.
    old = tmp_path / "old"
    model = hf_t5(3)
    model.save_pretrained(old)
    from safetensors.numpy import load_file, save_file

    tensors = load_file(old / "model.safetensors")
    rng = np.random.default_rng(0)
    lm_head = rng.normal(size=tensors["shared.weight"].shape).astype(np.float32)
    save_file({**tensors, "lm_head.weight": lm_head}, old / "model.safetensors",
              metadata={"format": "pt"})
    cfg = json.loads((old / "config.json").read_text())
    cfg.pop("scale_decoder_outputs", None)
    (old / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": False}))
    config, params = load_checkpoint(old)
    assert not config.logits_via_embedding
    np.testing.assert_array_equal(params["decoder"]["logits_dense"]["kernel"], lm_head.T)


def test_corrupt_safetensors_and_mismatched_config(tmp_path, hf_dir):
    folder, _ = hf_dir
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "d_ff": 12}))
    with pytest.raises(CheckpointError, match=r"encoder/layers_0/mlp/wi_0/kernel has shape "
                                              r"\(8, 11\) but the config implies \(8, 12\)"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "bart"}))
    with pytest.raises(CheckpointError, match="model_type 'bart' is not a T5 model"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "feed_forward_proj": "gated-gelu",
                                                      "dense_act_fn": "gelu"}))
    with pytest.raises(ConfigError, match="exact erf"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    data = (folder / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors"):
        load_checkpoint(tmp_path)


def test_unknown_tensors_are_reported(tmp_path, hf_dir):
    folder, _ = hf_dir
    from safetensors.numpy import load_file, save_file

    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    tensors = load_file(folder / "model.safetensors")
    save_file({**tensors, "classifier.dense.weight": np.zeros((2, 2), np.float32)},
              tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="not part of a T5 model: classifier.dense.weight"):
        load_checkpoint(tmp_path)
