"""The T5 1.1 encoder-decoder in Flax with t5x's parameter tree.

The model is split by concern; this module assembles it and is the one import most code needs:
  * `spot.model.t5_config`: `T5Config`, presets and size aliases (`canonical_preset`);
  * `spot.model.layers`: attention, MLP, norms, embeddings and one encoder/decoder layer
    (axis legend and numerics there);
  * `spot.model.scan`: a stack of layers as `nn.scan` or as a list, with rematerialization;
  * `spot.model.layout`: t5x's per-layer parameter tree <-> the stacked (scanned) layout.
Encoder, Decoder, Transformer and `init_params` live here; the names of the other four
modules that callers use are importable from here too.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spot.model.layers import (
    NEG_INF,
    Array,
    Attention,
    Dense,
    Embed,
    RelativePositionBias,
    RMSNorm,
    _fused_backend,
    relative_position_bucket,
)
from spot.model.layout import is_stacked, stack_layers, unstack_layers
from spot.model.scan import DECODER_STACK, ENCODER_STACK, layer_stack, remat_policy
from spot.model.t5_config import REMAT_POLICIES, T5_1_1_SIZES, T5Config, canonical_preset

__all__ = [
    "Attention", "Decoder", "Encoder", "NEG_INF", "REMAT_POLICIES", "T5Config", "T5_1_1_SIZES",
    "Transformer", "_fused_backend", "canonical_preset", "init_params", "is_stacked",
    "relative_position_bucket", "remat_policy", "stack_layers", "unstack_layers",
]


def _valid_lengths(mask_BL: Array) -> Array:
    """Keys up to the last valid one, per example (right padding: the valid count)."""
    positions = jnp.arange(1, mask_BL.shape[1] + 1, dtype=jnp.int32)
    return jnp.max(jnp.where(mask_BL, positions, 0), axis=1).astype(jnp.int32)


class Encoder(nn.Module):
    config: T5Config
    token_embedder: nn.Module
    dtype: jnp.dtype = jnp.float32
    attention_impl: str = "xla"
    remat: bool | str = False
    scan_layers: bool = False

    def setup(self) -> None:
        cfg = self.config
        self.relpos_bias = RelativePositionBias(cfg.relative_attention_num_buckets,
                                                cfg.relative_attention_max_distance,
                                                cfg.num_heads, bidirectional=True)
        self.layers = layer_stack(ENCODER_STACK, (cfg, self.dtype, self.attention_impl),
                                  num_layers=cfg.num_encoder_layers, scan=self.scan_layers,
                                  remat=self.remat)
        self.encoder_norm = RMSNorm(cfg.layer_norm_epsilon, self.dtype)
        self.drop = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))

    def __call__(self, tokens_BL: Array, prompt: Array | None, deterministic: bool):
        """Returns (encoded [B, P+L, E], mask [B, P+L]); the prompt is prepended after embedding."""
        x_BLE = self.token_embedder(tokens_BL)
        mask_BL = tokens_BL > 0
        if prompt is not None:
            batch = tokens_BL.shape[0]
            prompt_BPE = prompt if prompt.ndim == 3 else jnp.broadcast_to(
                prompt[None], (batch,) + prompt.shape)
            x_BLE = jnp.concatenate([prompt_BPE.astype(x_BLE.dtype), x_BLE], axis=1)
            mask_BL = jnp.concatenate(
                [jnp.ones(prompt_BPE.shape[:2], dtype=bool), mask_BL], axis=1)
        x_BLE = self.drop(x_BLE, deterministic)
        length = x_BLE.shape[1]
        # Relative positions and padding stay separate ([1, H, L, L] and [B, 1, L, L]) and
        # are added inside each layer's softmax, never materialized as one [B, H, L, L].
        masking = (self.relpos_bias(length, length),
                   mask_BL[:, None, :, None] & mask_BL[:, None, None, :], _valid_lengths(mask_BL))
        if self.scan_layers:
            x_BLE, _ = self.layers(x_BLE, masking, deterministic)
        else:
            for layer in self.layers:
                x_BLE = layer(x_BLE, masking, deterministic)
        x_BLE = self.encoder_norm(x_BLE)
        return self.drop(x_BLE, deterministic), mask_BL


class Decoder(nn.Module):
    config: T5Config
    token_embedder: nn.Module
    dtype: jnp.dtype = jnp.float32
    attention_impl: str = "xla"
    remat: bool | str = False
    scan_layers: bool = False

    def setup(self) -> None:
        cfg = self.config
        self.relpos_bias = RelativePositionBias(cfg.relative_attention_num_buckets,
                                                cfg.relative_attention_max_distance,
                                                cfg.num_heads, bidirectional=False)
        # Scanned call: (y, cache, self_masking, cross_masking, deterministic, encoded,
        # cache_index, mode); see `spot.model.scan.DECODER_STACK`.
        self.layers = layer_stack(DECODER_STACK, (cfg, self.dtype, self.attention_impl),
                                  num_layers=cfg.num_decoder_layers, scan=self.scan_layers,
                                  remat=self.remat)
        self.decoder_norm = RMSNorm(cfg.layer_norm_epsilon, self.dtype)
        self.drop = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
        if not cfg.logits_via_embedding:
            self.logits_dense = Dense(cfg.vocab_size, dtype=jnp.float32)

    def _logits(self, y_BTE: Array, deterministic: bool) -> Array:
        y_BTE = self.drop(self.decoder_norm(y_BTE), deterministic)
        if self.config.logits_via_embedding:
            # T5 1.0 ties the output projection to the embedding and rescales by 1/sqrt(E).
            return self.token_embedder.attend(y_BTE) / np.sqrt(y_BTE.shape[-1])
        return self.logits_dense(y_BTE.astype(jnp.float32))

    def __call__(self, decoder_input_tokens_BT: Array, encoded_BLE: Array, encoder_mask_BL: Array,
                 deterministic: bool, decoder_target_tokens_BT: Array | None = None) -> Array:
        """Teacher-forced logits [B, T, V] in float32."""
        y_BTE = self.drop(self.token_embedder(decoder_input_tokens_BT), deterministic)
        length = y_BTE.shape[1]
        causal_TT = np.tril(np.ones((length, length), dtype=bool))
        self_mask = jnp.asarray(causal_TT)[None, None]
        cross_mask = encoder_mask_BL[:, None, None, :]
        if decoder_target_tokens_BT is not None:  # t5x also masks padded query rows
            valid_BT = decoder_target_tokens_BT > 0
            self_mask = self_mask & valid_BT[:, None, :, None] & valid_BT[:, None, None, :]
            cross_mask = cross_mask & valid_BT[:, None, :, None]
        self_masking = (self.relpos_bias(length, length), self_mask, None)
        cross_masking = (None, cross_mask, _valid_lengths(encoder_mask_BL))
        if self.scan_layers:
            y_BTE, _ = self.layers(y_BTE, None, self_masking, cross_masking, deterministic,
                                   encoded_BLE, None, "full")
        else:
            for layer in self.layers:
                y_BTE, _ = layer(y_BTE, self_masking, cross_masking, deterministic,
                                 encoded_BLE=encoded_BLE)
        return self._logits(y_BTE, deterministic)

    def init_cache(self, encoded_BLE: Array, max_length: int) -> dict:
        """Empty self-attention caches and precomputed cross-attention keys/values per layer
        (with `scan_layers`: one dict of arrays with a leading layer axis)."""
        cfg = self.config
        batch = encoded_BLE.shape[0]
        shape = (batch, max_length, cfg.num_heads, cfg.head_dim)
        if self.scan_layers:
            _, (ck, cv) = self.layers(jnp.zeros((), self.dtype), None, None, None, True,
                                      encoded_BLE, None, "cross_kv")
            stacked = (cfg.num_decoder_layers,) + shape
            return {"layers": {"k": jnp.zeros(stacked, self.dtype),
                               "v": jnp.zeros(stacked, self.dtype), "ck": ck, "cv": cv}}
        layers = []
        for layer in self.layers:
            ck, cv = layer.cross_kv(encoded_BLE)
            layers.append({"k": jnp.zeros(shape, self.dtype), "v": jnp.zeros(shape, self.dtype),
                           "ck": ck, "cv": cv})
        return {"layers": layers}

    def decode_step(self, token_B: Array, index: Array, cache: dict,
                    encoder_mask_BL: Array) -> tuple[Array, dict]:
        """One greedy step at position `index`: logits [B, V] and the updated cache."""
        layers = cache["layers"]
        max_length = (layers["k"] if self.scan_layers else layers[0]["k"]).shape[-3]
        y_B1E = self.token_embedder(token_B[:, None])
        causal_K = jnp.arange(max_length) <= index
        self_masking = (self.relpos_bias.at_position(index, max_length),
                        causal_K[None, None, None, :], None)
        cross_masking = (None, encoder_mask_BL[:, None, None, :], None)
        if self.scan_layers:
            y_B1E, new = self.layers(y_B1E, layers, self_masking, cross_masking, True, None,
                                     index, "step")
            new_cache = {"layers": {**new, "ck": layers["ck"], "cv": layers["cv"]}}
            return self._logits(y_B1E, True)[:, 0], new_cache
        new_layers = []
        for layer, lc in zip(self.layers, cache["layers"]):
            y_B1E, new = layer(y_B1E, self_masking, cross_masking, True,
                               cross_kv=(lc["ck"], lc["cv"]),
                               cache={"k": lc["k"], "v": lc["v"]}, cache_index=index)
            new_layers.append({**new, "ck": lc["ck"], "cv": lc["cv"]})
        return self._logits(y_B1E, True)[:, 0], {"layers": new_layers}


class Transformer(nn.Module):
    """The T5 encoder-decoder; parameters are named exactly as in t5x checkpoints."""

    config: T5Config
    dtype: jnp.dtype = jnp.float32
    attention_impl: str = "xla"
    remat: bool | str = False
    scan_layers: bool = False  # parameters in the stacked layout (see `stack_layers`)

    def setup(self) -> None:
        cfg = self.config
        self.token_embedder = Embed(cfg.vocab_size, cfg.emb_dim, self.dtype)
        self.encoder = Encoder(cfg, self.token_embedder, self.dtype, self.attention_impl,
                               self.remat, self.scan_layers)
        self.decoder = Decoder(cfg, self.token_embedder, self.dtype, self.attention_impl,
                               self.remat, self.scan_layers)

    def encode(self, encoder_input_tokens: Array, prompt: Array | None = None,
               deterministic: bool = True):
        return self.encoder(encoder_input_tokens, prompt, deterministic)

    def decode(self, decoder_input_tokens: Array, encoded: Array, encoder_mask: Array,
               deterministic: bool = True, decoder_target_tokens: Array | None = None) -> Array:
        return self.decoder(decoder_input_tokens, encoded, encoder_mask, deterministic,
                            decoder_target_tokens)

    def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
                 prompt: Array | None = None, deterministic: bool = True,
                 decoder_target_tokens: Array | None = None) -> Array:
        encoded, mask = self.encode(encoder_input_tokens, prompt, deterministic)
        return self.decode(decoder_input_tokens, encoded, mask, deterministic,
                           decoder_target_tokens)

    def init_cache(self, encoded: Array, max_length: int) -> dict:
        return self.decoder.init_cache(encoded, max_length)

    def decode_step(self, token: Array, index: Array, cache: dict, encoder_mask: Array):
        return self.decoder.decode_step(token, index, cache, encoder_mask)


def init_params(config: T5Config, seed: int = 0) -> dict:
    """Randomly initialized parameters with t5x's initializers (for tests and pretraining)."""
    module = Transformer(config)
    tokens = jnp.ones((1, 2), jnp.int32)
    variables = jax.jit(functools.partial(module.init, deterministic=True))(
        jax.random.PRNGKey(seed), tokens, tokens)
    return jax.tree_util.tree_map(np.asarray, dict(variables["params"]))
