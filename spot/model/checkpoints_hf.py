"""Hugging Face T5 checkpoints: folders (safetensors, flax msgpack, weights-only PyTorch) and
hub ids, mapped onto t5x parameter names.

HF stores Linear weights as [out, in]; t5x kernels are [in, out], so every projection is
transposed, and the relative-attention table [K, H] becomes t5x's [H, K].

Tied output projections need care. T5 1.0 ties `lm_head` to the embedding and rescales the
decoder output by 1/sqrt(E) (t5x `logits_via_embedding=True`). `transformers` 5.x also ties
T5 1.1's `lm_head` to the embedding but without the rescaling (`scale_decoder_outputs:
false` in its config.json); such a model is mapped to an explicit `decoder/logits_dense`
equal to the transposed embedding, which is exactly what it computes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from spot.errors import CheckpointError, ConfigError
from spot.fileio import confined_path
from spot.model.t5_config import T5Config

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
FLAX_MSGPACK = "flax_model.msgpack"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS, SAFETENSORS_INDEX, FLAX_MSGPACK, TORCH_BIN, TORCH_BIN_INDEX)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_T5_MODEL_TYPES = ("t5", "mt5")

# HF activation names -> spot's (spot's "gelu" is the tanh approximation, HF's "gelu_new").
_ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu",
                "relu": "relu", "silu": "silu", "swish": "silu"}


def is_hf_folder(path: Path) -> bool:
    return any((path / name).is_file() for name in WEIGHT_FILES)


def looks_like_hub_id(text: str) -> bool:
    return bool(_HUB_ID.match(text)) and ".." not in text


# ----------------------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------------------

def read_hf_config(path: Path) -> dict | None:
    file = path / "config.json"
    if not file.is_file():
        return None
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    model_type = cfg.get("model_type")
    if model_type is not None and model_type not in _T5_MODEL_TYPES:
        raise CheckpointError(f"{file}: model_type {model_type!r} is not a T5 model "
                              f"(expected one of {', '.join(_T5_MODEL_TYPES)})")
    return cfg


def hf_activations(cfg: Mapping[str, Any], source: str = "config.json") -> tuple[str, ...]:
    proj = str(cfg.get("feed_forward_proj", "relu"))
    parts = proj.split("-")
    gated = parts[0] == "gated"
    act = cfg.get("dense_act_fn") or ("gelu_new" if proj == "gated-gelu" else parts[-1])
    if act not in _ACTIVATIONS:
        hint = (" (HF 'gelu' is the exact erf form; spot's gelu is the tanh approximation "
                "HF calls 'gelu_new')" if act == "gelu" else "")
        raise ConfigError(f"{source}: activation {act!r} (feed_forward_proj={proj!r}) has no "
                          f"spot equivalent{hint}")
    spot_act = _ACTIVATIONS[act]
    return (spot_act, "linear") if gated else (spot_act,)


def scales_tied_output(cfg: Mapping[str, Any] | None, has_lm_head: bool) -> bool:
    """Whether the decoder output is multiplied by 1/sqrt(E) before the output projection."""
    if cfg is None:
        return not has_lm_head
    if "scale_decoder_outputs" in cfg:
        return bool(cfg["scale_decoder_outputs"])
    return cfg.get("tie_word_embeddings", True) is not False


def config_from_hf(cfg: Mapping[str, Any], *, logits_via_embedding: bool,
                   source: str = "config.json") -> T5Config:
    try:
        layers = int(cfg["num_layers"])
        dec_layers = cfg.get("num_decoder_layers")
        return T5Config(
            vocab_size=int(cfg["vocab_size"]), emb_dim=int(cfg["d_model"]),
            num_heads=int(cfg["num_heads"]), head_dim=int(cfg["d_kv"]),
            mlp_dim=int(cfg["d_ff"]), num_encoder_layers=layers,
            num_decoder_layers=int(dec_layers) if dec_layers is not None else layers,
            relative_attention_num_buckets=int(cfg.get("relative_attention_num_buckets", 32)),
            relative_attention_max_distance=int(cfg.get("relative_attention_max_distance", 128)),
            dropout_rate=float(cfg.get("dropout_rate", 0.1)),
            mlp_activations=hf_activations(cfg, source),
            logits_via_embedding=logits_via_embedding,
            layer_norm_epsilon=float(cfg.get("layer_norm_epsilon", 1e-6)))
    except KeyError as e:
        raise CheckpointError(f"{source}: missing T5 field {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise CheckpointError(f"{source}: bad T5 field value ({e})") from None


# ----------------------------------------------------------------------------------------
# Weight files -> {hf name: array}
# ----------------------------------------------------------------------------------------

def _read_safetensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="numpy") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{file}: not a readable safetensors file (truncated or "
                              f"corrupt: {e})") from None


def _torch_to_numpy(t: Any, name: str, file: Path) -> np.ndarray:
    import torch

    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"{file}: entry {name!r} is a {type(t).__name__}, not a tensor")
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _read_torch_bin(file: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{file}: reading PyTorch weights needs torch; install it or "
                              "convert the checkpoint to safetensors") from None
    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError on torn zips, ...
        raise CheckpointError(f"{file}: not a weights-only PyTorch state dict (spot refuses to "
                              f"unpickle arbitrary objects): {e}") from None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{file}: expected a state dict, got {type(state).__name__}")
    return {str(k): _torch_to_numpy(v, str(k), file) for k, v in state.items()}


def _read_flax_msgpack(file: Path) -> dict[str, np.ndarray]:
    """Flax names (`.../q/kernel` [in, out], `.../embedding`) -> PyTorch names and layouts."""
    from spot.model.checkpoints_t5x import decode_flax_msgpack

    tree = decode_flax_msgpack(file.read_bytes(), str(file))
    flat: dict[str, Any] = {}

    def walk(node: Mapping, prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, Mapping):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v

    walk(tree, "")
    out = {}
    for name, value in flat.items():
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{file}: entry {name!r} is not an array")
        if name.endswith(".kernel"):
            out[name[: -len("kernel")] + "weight"] = value.T
        elif name.endswith(".embedding"):
            out[name[: -len("embedding")] + "weight"] = value
        else:
            out[name] = value
    return out


def _read_sharded(folder: Path, index_name: str, reader) -> dict[str, np.ndarray]:
    index_file = folder / index_name
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
        shards = sorted(set(weight_map.values()))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{index_file}: not a valid shard index ({e})") from None
    out: dict[str, np.ndarray] = {}
    for shard in shards:
        if not isinstance(shard, str):
            raise CheckpointError(f"{index_file}: shard name {shard!r} is not a string")
        try:
            file = confined_path(folder, shard)
        except Exception:  # noqa: BLE001
            raise CheckpointError(
                f"{index_file}: shard {shard!r} points outside {folder}") from None
        if not file.is_file():
            raise CheckpointError(f"{index_file}: shard file {shard} is missing")
        out.update(reader(file))
    missing = sorted(set(weight_map) - set(out))
    if missing:
        raise CheckpointError(f"{index_file}: tensors listed in the index are absent from the "
                              f"shards: {', '.join(missing[:5])}")
    return out


def read_hf_weights(folder: Path) -> tuple[dict[str, np.ndarray], str]:
    """All tensors of an HF folder, preferring safetensors, then flax msgpack, then torch."""
    if (folder / SAFETENSORS).is_file():
        return _read_safetensors(folder / SAFETENSORS), SAFETENSORS
    if (folder / SAFETENSORS_INDEX).is_file():
        return _read_sharded(folder, SAFETENSORS_INDEX, _read_safetensors), SAFETENSORS_INDEX
    if (folder / FLAX_MSGPACK).is_file():
        return _read_flax_msgpack(folder / FLAX_MSGPACK), FLAX_MSGPACK
    if (folder / TORCH_BIN).is_file():
        return _read_torch_bin(folder / TORCH_BIN), TORCH_BIN
    if (folder / TORCH_BIN_INDEX).is_file():
        return _read_sharded(folder, TORCH_BIN_INDEX, _read_torch_bin), TORCH_BIN_INDEX
    raise CheckpointError(f"{folder}: no Hugging Face weights ({', '.join(WEIGHT_FILES)})")


# ----------------------------------------------------------------------------------------
# HF names -> t5x names
# ----------------------------------------------------------------------------------------

_BLOCK = re.compile(r"^(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(.+)$")
_ATTN = {"q": "query", "k": "key", "v": "value", "o": "out"}
# (stack, sublayer index) -> (attention module name in HF, t5x attention name, t5x norm name)
_SUBLAYERS = {
    ("encoder", 0): ("SelfAttention", "attention", "pre_attention_layer_norm"),
    ("encoder", 1): ("DenseReluDense", "mlp", "pre_mlp_layer_norm"),
    ("decoder", 0): ("SelfAttention", "self_attention", "pre_self_attention_layer_norm"),
    ("decoder", 1): ("EncDecAttention", "encoder_decoder_attention",
                     "pre_cross_attention_layer_norm"),
    ("decoder", 2): ("DenseReluDense", "mlp", "pre_mlp_layer_norm"),
}
_IGNORED = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
            "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"}


def _block_name(stack: str, block: int, sub: int, rest: str) -> tuple[str, bool] | None:
    entry = _SUBLAYERS.get((stack, sub))
    if entry is None:
        return None
    module, t5x_module, norm = entry
    base = f"{stack}/layers_{block}"
    if rest == "layer_norm.weight":
        return f"{base}/{norm}/scale", False
    if not rest.startswith(module + "."):
        return None
    leaf = rest[len(module) + 1:]
    if module == "DenseReluDense":
        m = re.fullmatch(r"(wi|wi_\d+|wo)\.weight", leaf)
        return (f"{base}/mlp/{m.group(1)}/kernel", True) if m else None
    m = re.fullmatch(r"([qkvo])\.weight", leaf)
    if m:
        return f"{base}/{t5x_module}/{_ATTN[m.group(1)]}/kernel", True
    if leaf == "relative_attention_bias.weight" and block == 0 and module == "SelfAttention":
        return f"{stack}/relpos_bias/rel_embedding", True
    return None


def hf_to_t5x(weights: Mapping[str, np.ndarray], hf_config: Mapping[str, Any] | None,
              source: str) -> tuple[dict[str, np.ndarray], bool]:
    """Flat t5x-named arrays, and whether the output projection is tied and rescaled
    (`logits_via_embedding`)."""
    out: dict[str, np.ndarray] = {}
    unknown = []
    for name, value in weights.items():
        if name in _IGNORED or name == "lm_head.weight" or name == "shared.weight":
            continue
        if name == "encoder.final_layer_norm.weight":
            out["encoder/encoder_norm/scale"] = value
            continue
        if name == "decoder.final_layer_norm.weight":
            out["decoder/decoder_norm/scale"] = value
            continue
        m = _BLOCK.match(name)
        mapped = (_block_name(m.group(1), int(m.group(2)), int(m.group(3)), m.group(4))
                  if m else None)
        if mapped is None:
            unknown.append(name)
            continue
        t5x_name, transpose = mapped
        out[t5x_name] = np.ascontiguousarray(value.T) if transpose else value
    if unknown:
        raise CheckpointError(f"{source}: tensors that are not part of a T5 model: "
                              f"{', '.join(sorted(unknown)[:5])}"
                              + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""))
    shared = weights.get("shared.weight")
    if shared is None:
        shared = weights.get("encoder.embed_tokens.weight",
                             weights.get("decoder.embed_tokens.weight"))
    if shared is None:
        raise CheckpointError(f"{source}: no token embedding (shared.weight)")
    out["token_embedder/embedding"] = shared
    lm_head = weights.get("lm_head.weight")
    scaled = scales_tied_output(hf_config, lm_head is not None)
    tied = lm_head is None or (lm_head.shape == shared.shape and np.array_equal(lm_head, shared))
    if scaled and tied:
        return out, True
    kernel = np.ascontiguousarray((shared if lm_head is None else lm_head).T)
    if scaled:  # untied but rescaled: fold 1/sqrt(E) into the kernel
        kernel = (kernel.astype(np.float32) / np.sqrt(kernel.shape[0])).astype(kernel.dtype)
    out["decoder/logits_dense/kernel"] = kernel
    return out, False


# ----------------------------------------------------------------------------------------
# Hub ids
# ----------------------------------------------------------------------------------------

def _hub_module(what: str):
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError(
            f"{what!r} is not a local path; fetching it as a Hugging Face hub id needs the "
            "huggingface_hub package (pip install 'spot[hub]')") from None
    return huggingface_hub


def _hub_failure(repo_id: str, e: Exception) -> CheckpointError:
    return CheckpointError(
        f"{repo_id!r} is not a local path and could not be fetched from the Hugging Face hub "
        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). If this machine is "
        "offline, download the model elsewhere and pass its folder")


def download_hub_model(repo_id: str) -> Path:
    """A local snapshot of a hub model: config.json plus one weight format (safetensors first)."""
    hub = _hub_module(repo_id)
    patterns = (["*.safetensors", SAFETENSORS_INDEX], [FLAX_MSGPACK],
                ["pytorch_model*.bin", TORCH_BIN_INDEX])
    try:
        for weights in patterns:
            folder = Path(hub.snapshot_download(repo_id,
                                                allow_patterns=["config.json", *weights]))
            if is_hf_folder(folder):
                return folder
    except Exception as e:  # noqa: BLE001 - offline, missing repo, auth, ...
        raise _hub_failure(repo_id, e) from None
    raise CheckpointError(f"hub model {repo_id!r} has no T5 weights ({', '.join(WEIGHT_FILES)})")


def hub_config(repo_id: str) -> dict:
    """Only the config.json of a hub model (what a PEFT adapter needs to know)."""
    hub = _hub_module(repo_id)
    try:
        file = Path(hub.hf_hub_download(repo_id, "config.json"))
    except Exception as e:  # noqa: BLE001
        raise _hub_failure(repo_id, e) from None
    cfg = read_hf_config(file.parent)
    if cfg is None:
        raise CheckpointError(f"hub model {repo_id!r} has no config.json")
    return cfg


def resolve_hf_config(base_model: str | os.PathLike) -> dict:
    """config.json of a local HF folder or hub id."""
    path = Path(base_model).expanduser()
    if path.is_dir():
        cfg = read_hf_config(path)
        if cfg is None:
            raise CheckpointError(f"{path}: no config.json (is this a Hugging Face model folder?)")
        return cfg
    if path.exists():
        raise CheckpointError(f"{path}: expected a Hugging Face model folder, found a file")
    if not looks_like_hub_id(str(base_model)):
        raise CheckpointError(f"{base_model}: no such folder")
    return hub_config(str(base_model))
