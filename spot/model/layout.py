"""Parameter layouts: t5x's per-layer tree (`encoder/layers_0` .. `layers_{N-1}`, what every
checkpoint holds) and the stacked one a scanned model runs on (`encoder/layers` with a leading
layer axis; see `spot.model.scan`)."""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from spot.errors import ConfigError


def stack_layers(params: Mapping[str, Any], xp=np) -> dict:
    """t5x's per-layer tree (`encoder/layers_0` .. `layers_{N-1}`) to the scanned layout: one
    `encoder/layers` subtree whose arrays have a leading layer axis (same for the decoder).
    Returns `params` unchanged when it is already stacked."""
    out = dict(params)
    for stack in ("encoder", "decoder"):
        if stack not in params or "layers" in params[stack]:
            continue
        sub = dict(params[stack])
        names = sorted((k for k in sub if k.startswith("layers_")), key=lambda k: int(k[7:]))
        if [int(k[7:]) for k in names] != list(range(len(names))) or not names:
            raise ConfigError(f"{stack}: expected layers_0..layers_N-1, got {names}")
        layers = [sub.pop(k) for k in names]
        sub["layers"] = jax.tree_util.tree_map(lambda *xs: xp.stack(xs), *layers)
        out[stack] = sub
    return out


def unstack_layers(params: Mapping[str, Any]) -> dict:
    """The inverse of `stack_layers`: back to t5x's per-layer names (for saving and export).
    Returns `params` unchanged when it is not stacked."""
    out = dict(params)
    for stack in ("encoder", "decoder"):
        if stack not in params or "layers" not in params[stack]:
            continue
        sub = dict(params[stack])
        stacked = sub.pop("layers")
        count = jax.tree_util.tree_leaves(stacked)[0].shape[0]
        for i in range(count):
            sub[f"layers_{i}"] = jax.tree_util.tree_map(lambda x, i=i: x[i], stacked)
        out[stack] = sub
    return out


def is_stacked(params: Mapping[str, Any]) -> bool:
    return any(isinstance(params.get(s), Mapping) and "layers" in params[s]
               for s in ("encoder", "decoder"))
