"""Scan plumbing: one stack of layers as `nn.scan` over a leading layer axis, or as t5x's
list of `layers_0..N-1`, each optionally rematerialized.

A scanned layer takes `nn.scan`'s (carry, inputs) -> (carry, outputs) form; `StackSpec`
records, per stack, which layer classes to use and how their calls are split into static,
broadcast and scanned arguments. Parameters of a scanned stack carry a leading layer axis
(`spot.model.layout.stack_layers` converts checkpoints to that layout).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax

from spot.errors import ConfigError
from spot.model.layers import Array, DecoderLayer, EncoderLayer
from spot.model.t5_config import REMAT_POLICIES


class ScannedEncoderLayer(EncoderLayer):
    """One encoder layer in `nn.scan`'s (carry, inputs) -> (carry, outputs) form."""

    def __call__(self, x_BLE: Array, masking: tuple, deterministic: bool):
        return EncoderLayer.__call__(self, x_BLE, masking, deterministic), None


class ScannedDecoderLayer(DecoderLayer):
    """One decoder layer in `nn.scan`'s (carry, inputs) -> (carry, outputs) form.

    `mode` (static) picks what one pass over the stacked layers does: "full" (teacher forcing),
    "cross_kv" (each layer's cross-attention keys/values, for the decoding cache) or "step"
    (one cached decoding step; `cache` is this layer's slice of the stacked cache).
    """

    def __call__(self, y_BTE: Array, cache: dict | None, self_masking: tuple,
                 cross_masking: tuple, deterministic: bool, encoded_BLE: Array | None,
                 cache_index: Array | None, mode: str):
        if mode == "full":
            y_BTE, _ = DecoderLayer.__call__(self, y_BTE, self_masking, cross_masking,
                                             deterministic, encoded_BLE=encoded_BLE)
            return y_BTE, None
        if mode == "cross_kv":
            return y_BTE, self.cross_kv(encoded_BLE)
        if mode == "step":
            return DecoderLayer.__call__(
                self, y_BTE, self_masking, cross_masking, True, cross_kv=(cache["ck"], cache["cv"]),
                cache={"k": cache["k"], "v": cache["v"]}, cache_index=cache_index)
        raise ValueError(f"unknown scanned decoder mode {mode!r}")


@dataclasses.dataclass(frozen=True)
class StackSpec:
    """How one stack's layers are called.

    `static_argnums` index the plain layer's `__call__` (self is 0) for `nn.remat`;
    `scanned_static_argnums` index the scanned layer's, and `in_axes` says, for each of its
    arguments after the carry, whether it is scanned over (0) or broadcast to every layer.
    """

    layer: type
    scanned: type
    static_argnums: tuple[int, ...]
    scanned_static_argnums: tuple[int, ...]
    in_axes: tuple


# Encoder layer: (x, masking, deterministic). Scanned decoder layer: (y, cache, self_masking,
# cross_masking, deterministic, encoded, cache_index, mode); only the cache slice is scanned.
ENCODER_STACK = StackSpec(EncoderLayer, ScannedEncoderLayer, static_argnums=(3,),
                          scanned_static_argnums=(3,), in_axes=(nn.broadcast, nn.broadcast))
DECODER_STACK = StackSpec(DecoderLayer, ScannedDecoderLayer, static_argnums=(4,),
                          scanned_static_argnums=(5, 8), in_axes=(0,) + (nn.broadcast,) * 6)


def layer_stack(spec: StackSpec, args: tuple, *, num_layers: int, scan: bool,
                remat: bool | str):
    """The layers of one stack, built from `args` (the layer's constructor arguments): a list
    named layers_0..N-1 (t5x's layout), or one scanned module named `layers` whose parameters
    carry a leading layer axis (`scan_layers`)."""
    if not scan:
        layer_cls = spec.layer
        if remat:
            layer_cls = nn.remat(layer_cls, static_argnums=spec.static_argnums,
                                 policy=remat_policy(remat))
        return [layer_cls(*args, name=f"layers_{i}") for i in range(num_layers)]
    scanned_cls = spec.scanned
    if remat:
        # prevent_cse=False is safe (and faster) inside scan, whose loop already blocks CSE.
        scanned_cls = nn.remat(scanned_cls, static_argnums=spec.scanned_static_argnums,
                               policy=remat_policy(remat), prevent_cse=False)
    return nn.scan(scanned_cls, variable_axes={"params": 0},
                   split_rngs={"params": True, "dropout": True}, in_axes=spec.in_axes,
                   length=num_layers)(*args, name="layers")


def remat_policy(remat: bool | str):
    """What a rematerialized layer keeps for the backward pass.

    "full" (or True): only the layer's inputs; the whole layer forward runs again (least
    memory, about one more forward's FLOPs). "dots": also the outputs of the weight matmuls
    (projections and MLP), so only attention products and elementwise work are recomputed.
    """
    if remat is True or remat == "full":
        return None
    if remat == "dots":
        return jax.checkpoint_policies.dots_with_no_batch_dims_saveable
    raise ConfigError(f"remat must be False, True or one of {REMAT_POLICIES}, got {remat!r}")
