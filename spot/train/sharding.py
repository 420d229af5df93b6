"""Device mesh and logical-axis rules, in one place.

Every array gets logical axis names from its role (parameter name or batch field); one rule
table maps logical names to mesh axes `data` and `model`. With a model axis of size 1
(small..large) the frozen weights are replicated; for xl/xxl the `model` axis shards heads,
MLP and vocabulary dimensions. The prompt and optimizer state are always replicated (they are
tiny); batches are split on `data`.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from spot.config import MeshConfig
from spot.errors import ConfigError

# Logical axis name -> mesh axis (None = replicated).
RULES: dict[str, str | None] = {
    "batch": "data",
    "vocab": "model",
    "heads": "model",
    "mlp": "model",
    "embed": None,
    "relpos_buckets": None,
    "length": None,
    "prompt": None,
    "layers": None,  # the stacked layer axis of scan_layers: every device holds every layer
}

# Parameter name pattern -> logical axes of its dimensions.
_PARAM_AXES: list[tuple[str, tuple[str, ...]]] = [
    (r"token_embedder/embedding$", ("vocab", "embed")),
    (r"(attention|self_attention|encoder_decoder_attention)/(query|key|value)/kernel$",
     ("embed", "heads")),
    (r"(attention|self_attention|encoder_decoder_attention)/out/kernel$", ("heads", "embed")),
    (r"mlp/wi(_\d+)?/kernel$", ("embed", "mlp")),
    (r"mlp/wo/kernel$", ("mlp", "embed")),
    (r"logits_dense/kernel$", ("embed", "vocab")),
    (r"relpos_bias/rel_embedding$", ("heads", "relpos_buckets")),
    (r"scale$", ("embed",)),
]


def maybe_initialize_distributed(cfg: MeshConfig) -> None:
    """Join a multi-host job (coordinator and process ids come from the environment)."""
    if cfg.multihost:
        jax.distributed.initialize()


def make_mesh(cfg: MeshConfig, devices: list | None = None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    model = cfg.model
    if model <= 0 or len(devices) % model:
        raise ConfigError(f"mesh.model={model} must divide the {len(devices)} devices")
    data = cfg.data if cfg.data > 0 else len(devices) // model
    if data * model > len(devices):
        raise ConfigError(
            f"mesh data={data} x model={model} needs more than the {len(devices)} devices")
    devices = devices[: data * model]  # an explicit smaller mesh uses the first devices
    return Mesh(np.asarray(devices).reshape(data, model), ("data", "model"))


def param_logical_axes(path: str, ndim: int) -> tuple[str | None, ...]:
    if "/layers/" in f"/{path}" and ndim > 0:  # scan_layers: a leading layer axis
        inner = re.sub(r"(^|/)layers/", r"\1layers_0/", path, count=1)
        return ("layers",) + param_logical_axes(inner, ndim - 1)
    for pattern, axes in _PARAM_AXES:
        if re.search(pattern, path) and len(axes) == ndim:
            return axes
    return (None,) * ndim


def _spec(mesh: Mesh, logical: tuple[str | None, ...], shape: tuple[int, ...]) -> P:
    parts = []
    for name, dim in zip(logical, shape):
        axis = RULES.get(name) if name else None
        # A dimension the axis does not divide stays replicated rather than failing.
        if axis is not None and dim % mesh.shape[axis] != 0:
            axis = None
        parts.append(axis)
    return P(*parts)


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def frozen_shardings(mesh: Mesh, params: Any) -> Any:
    """NamedShardings for the frozen weights from their t5x names."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: NamedSharding(
            mesh, _spec(mesh, param_logical_axes(_path_str(path), x.ndim), x.shape)),
        params)


def replicated(mesh: Mesh, tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda _: NamedSharding(mesh, P()), tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def state_shardings(mesh: Mesh, state: Any, *, model_tuning: bool) -> Any:
    """Prompt-tuning state is replicated; in model tuning the trainable weights (and their
    same-shaped optimizer statistics) follow the frozen-weight rules."""
    if not model_tuning:
        return replicated(mesh, state)

    def rule(path, x):
        name = _path_str(path)
        if name.startswith("trainable/params/"):
            name = name[len("trainable/params/"):]
        return NamedSharding(mesh, _spec(mesh, param_logical_axes(name, x.ndim), x.shape))

    return jax.tree_util.tree_map_with_path(rule, state)


def put_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Place a global host batch on the mesh. Every host builds the same global batch (the
    pipeline is deterministic), so each contributes its addressable slice."""
    if jax.process_count() == 1:
        return {k: jax.device_put(v, sharding) for k, v in batch.items()}
    return {k: jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx])
            for k, v in batch.items()}
