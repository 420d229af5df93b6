"""The layers of T5 1.1 in Flax, under t5x's parameter names (assembled in `spot.model.t5`).

Axis legend (fixed letters in einsum strings and names):
  B batch, L encoder length (prompt included), T decoder length, S key length,
  E embedding (emb_dim), H heads, D head_dim, F mlp hidden (mlp_dim), V vocabulary,
  P prompt length, K relative-position buckets.

Numerics follow t5x: no 1/sqrt(D) scaling in attention (T5 folds it into the query init),
RMS norm in float32 with eps 1e-6, softmax and logits in float32, compute dtype for the rest.
Dropout follows t5x too: hidden-state dropout masks are shared along the length axis and
attention-weight dropout masks are shared along the query axis.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spot.model.t5_config import T5Config

Array = jax.Array
NEG_INF = -1e10  # t5x's additive mask value

_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
_embed_init = nn.initializers.normal(stddev=1.0)
_relpos_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def relative_position_bucket(relative_position, *, bidirectional: bool, num_buckets: int,
                             max_distance: int, xp=np):
    """t5x's bucketing of `memory_position - query_position` (works with numpy or jnp).

    Half the buckets hold exact small distances, the rest grow logarithmically up to
    `max_distance`; bidirectional bucketing spends half of them on each direction.
    """
    ret = 0
    n = -relative_position
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).astype(xp.int32) * num_buckets
        n = xp.abs(n)
    else:
        n = xp.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    eps = np.finfo(np.float32).eps
    val_if_large = max_exact + (
        xp.log(n.astype(xp.float32) / max_exact + eps) / np.log(max_distance / max_exact)
        * (num_buckets - max_exact)).astype(xp.int32)
    val_if_large = xp.minimum(val_if_large, num_buckets - 1)
    return ret + xp.where(is_small, n, val_if_large)


def _activation(name: str):
    return {"gelu": functools.partial(jax.nn.gelu, approximate=True), "relu": jax.nn.relu,
            "silu": jax.nn.silu, "linear": lambda x: x}[name]


class Dense(nn.Module):
    """t5x DenseGeneral over the last axis with a 2D kernel [in, out]."""

    features: int
    dtype: jnp.dtype = jnp.float32
    kernel_init: callable = _kernel_init

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        # One 2D matmul over the flattened leading axes: its transposes (the backward pass)
        # are plain 2D matmuls too, where a 3D einsum's weight gradient contracts over two
        # axes, slower on XLA:CPU (scripts/bench_backbone_step.py measures the difference).
        x2 = x.reshape(-1, x.shape[-1]).astype(self.dtype)
        y = jnp.dot(x2, kernel.astype(self.dtype))
        return y.reshape(x.shape[:-1] + (self.features,))


class RMSNorm(nn.Module):
    """T5 layer norm: scale only, no mean subtraction, statistics in float32."""

    epsilon: float = 1e-6
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = (x32 * jax.lax.rsqrt(var + self.epsilon)).astype(self.dtype)
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        return y * scale.astype(self.dtype)


class Embed(nn.Module):
    num_embeddings: int
    features: int
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.embedding = self.param("embedding", _embed_init,
                                    (self.num_embeddings, self.features), jnp.float32)

    def __call__(self, ids: Array) -> Array:
        return jnp.take(self.embedding.astype(self.dtype), ids, axis=0)

    def attend(self, x_BTE: Array) -> Array:
        """Tied output projection (T5 1.0), in float32."""
        return jnp.einsum("bte,ve->btv", x_BTE.astype(jnp.float32),
                          self.embedding.astype(jnp.float32))


class RelativePositionBias(nn.Module):
    num_buckets: int
    max_distance: int
    num_heads: int
    bidirectional: bool

    def setup(self) -> None:
        self.rel_embedding = self.param("rel_embedding", _relpos_init,
                                        (self.num_heads, self.num_buckets), jnp.float32)

    def __call__(self, q_len: int, k_len: int) -> Array:
        """Bias [1, H, q_len, k_len] for queries and keys at positions 0..len-1."""
        context = np.arange(q_len, dtype=np.int32)[:, None]
        memory = np.arange(k_len, dtype=np.int32)[None, :]
        buckets_QK = relative_position_bucket(
            memory - context, bidirectional=self.bidirectional, num_buckets=self.num_buckets,
            max_distance=self.max_distance)
        return self.rel_embedding.astype(jnp.float32)[:, buckets_QK][None]

    def at_position(self, query_position: Array, k_len: int) -> Array:
        """Bias [1, H, 1, k_len] for one (traced) query position, used by cached decoding."""
        memory = jnp.arange(k_len, dtype=jnp.int32)
        buckets_K = relative_position_bucket(
            memory - query_position, bidirectional=self.bidirectional,
            num_buckets=self.num_buckets, max_distance=self.max_distance, xp=jnp)
        return self.rel_embedding.astype(jnp.float32)[:, buckets_K][None, :, None, :]


class Attention(nn.Module):
    """Multi-head dot-product attention without 1/sqrt(D) scaling (t5x names)."""

    num_heads: int
    head_dim: int
    out_features: int
    dropout_rate: float
    dtype: jnp.dtype = jnp.float32
    attention_impl: str = "xla"

    def setup(self) -> None:
        inner = self.num_heads * self.head_dim
        depth_scaling = float(np.sqrt(self.head_dim))

        def query_init(key, shape, dtype=jnp.float32):
            return _kernel_init(key, shape, dtype) / depth_scaling

        self.query = Dense(inner, dtype=self.dtype, kernel_init=query_init)
        self.key = Dense(inner, dtype=self.dtype)
        self.value = Dense(inner, dtype=self.dtype)
        self.out = Dense(self.out_features, dtype=self.dtype)
        self.dropout = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))

    def _split(self, x: Array) -> Array:
        return x.reshape(x.shape[:-1] + (self.num_heads, self.head_dim))

    def project_kv(self, x_BSE: Array) -> tuple[Array, Array]:
        return self._split(self.key(x_BSE)), self._split(self.value(x_BSE))

    def attend(self, x_BTE: Array, k_BSHD: Array, v_BSHD: Array, masking: tuple,
               deterministic: bool, *, causal: bool = False, allow_fused: bool = True) -> Array:
        """Attention of the queries from `x_BTE` over keys/values [B, S, H, D].

        `masking` = (bias, mask, kv_lengths), built once per pass by Encoder and Decoder: an
        additive float32 bias [1|B, H|1, T, S] (relative positions) or None, a boolean mask
        [B|1, 1, T|1, S] or None, and the count of leading valid keys per example [B] or None.
        The XLA path uses bias and mask; the fused path uses bias, `kv_lengths` and `causal`,
        which agree with the mask on every non-padding query of right-padded inputs.
        """
        bias, mask, kv_lengths = masking
        q_BTHD = self._split(self.query(x_BTE))
        k_BSHD = k_BSHD.astype(q_BTHD.dtype)
        v_BSHD = v_BSHD.astype(q_BTHD.dtype)
        if not deterministic and self.dropout_rate > 0.0:
            # t5x drops attention weights with one mask per (example, head, key) shared by
            # every query; sum_s w[t,s] m[s] v[s] = sum_s w[t,s] (m[s] v[s]), so dropping the
            # values instead is the same function, needs no [B, H, T, S] select, and lets the
            # fused kernel run in training. Same module, same key, same mask shape: same draw.
            batch, length = k_BSHD.shape[0], k_BSHD.shape[1]
            keep_BH1S = self.dropout(jnp.ones((batch, self.num_heads, 1, length), v_BSHD.dtype),
                                     deterministic=False)
            v_BSHD = v_BSHD * jnp.transpose(keep_BH1S, (0, 3, 1, 2))
        if self.attention_impl == "fused" and allow_fused:
            impl = _fused_backend(q_BTHD, k_BSHD, bias is not None, not deterministic)
            out_BTHD = jax.nn.dot_product_attention(
                q_BTHD, k_BSHD, v_BSHD, scale=1.0, is_causal=causal, implementation=impl,
                bias=None if bias is None else bias.astype(q_BTHD.dtype),
                key_value_seq_lengths=kv_lengths)
        else:
            logits_BHTS = jnp.einsum("bthd,bshd->bhts", q_BTHD, k_BSHD).astype(jnp.float32)
            if bias is not None:
                logits_BHTS = logits_BHTS + bias
            if mask is not None:
                logits_BHTS = logits_BHTS + _mask_to_bias(mask)
            weights_BHTS = jax.nn.softmax(logits_BHTS, axis=-1)
            out_BTHD = jnp.einsum("bhts,bshd->bthd", weights_BHTS.astype(self.dtype), v_BSHD)
        out_BTF = out_BTHD.reshape(out_BTHD.shape[:2] + (self.num_heads * self.head_dim,))
        return self.out(out_BTF)

    def __call__(self, x_BTE: Array, kv_BSE: Array, masking: tuple, deterministic: bool, *,
                 causal: bool = False) -> Array:
        k, v = self.project_kv(kv_BSE)
        return self.attend(x_BTE, k, v, masking, deterministic, causal=causal)


def _fused_backend(q_BTHD: Array, k_BSHD: Array, has_bias: bool, training: bool) -> str | None:
    """cuDNN flash attention where it applies (GPU, 16-bit, head_dim a multiple of 8 up to
    128, even lengths when a bias is trained through), else XLA's own implementation."""
    head_dim = q_BTHD.shape[-1]
    ok = (jax.default_backend() == "gpu" and q_BTHD.dtype in (jnp.bfloat16, jnp.float16)
          and head_dim % 8 == 0 and head_dim <= 128
          and not (training and has_bias and (q_BTHD.shape[1] % 2 or k_BSHD.shape[1] % 2)))
    return "cudnn" if ok else None


class Mlp(nn.Module):
    """Gated (T5 1.1: wi_0, wi_1) or plain (T5 1.0: wi) feed-forward block."""

    mlp_dim: int
    activations: tuple[str, ...]
    dropout_rate: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BLE: Array, deterministic: bool) -> Array:
        if len(self.activations) == 1:
            names = ("wi",)
        else:
            names = tuple(f"wi_{i}" for i in range(len(self.activations)))
        h_BLF = None
        for name, act in zip(names, self.activations):
            a = _activation(act)(Dense(self.mlp_dim, dtype=self.dtype, name=name)(x_BLE))
            h_BLF = a if h_BLF is None else h_BLF * a
        h_BLF = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(h_BLF, deterministic)
        return Dense(x_BLE.shape[-1], dtype=self.dtype, name="wo")(h_BLF)


class EncoderLayer(nn.Module):
    config: T5Config
    dtype: jnp.dtype = jnp.float32
    attention_impl: str = "xla"

    def setup(self) -> None:
        cfg = self.config
        self.pre_attention_layer_norm = RMSNorm(cfg.layer_norm_epsilon, self.dtype)
        self.attention = Attention(cfg.num_heads, cfg.head_dim, cfg.emb_dim, cfg.dropout_rate,
                                   self.dtype, self.attention_impl)
        self.pre_mlp_layer_norm = RMSNorm(cfg.layer_norm_epsilon, self.dtype)
        self.mlp = Mlp(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, self.dtype)
        self.drop = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))

    def __call__(self, x_BLE: Array, masking: tuple, deterministic: bool) -> Array:
        h = self.pre_attention_layer_norm(x_BLE)
        h = self.attention(h, h, masking, deterministic)
        x_BLE = x_BLE + self.drop(h, deterministic)
        h = self.mlp(self.pre_mlp_layer_norm(x_BLE), deterministic)
        return x_BLE + self.drop(h, deterministic)


class DecoderLayer(nn.Module):
    config: T5Config
    dtype: jnp.dtype = jnp.float32
    attention_impl: str = "xla"

    def setup(self) -> None:
        cfg = self.config
        eps = cfg.layer_norm_epsilon
        self.pre_self_attention_layer_norm = RMSNorm(eps, self.dtype)
        self.self_attention = Attention(cfg.num_heads, cfg.head_dim, cfg.emb_dim,
                                        cfg.dropout_rate, self.dtype, self.attention_impl)
        self.pre_cross_attention_layer_norm = RMSNorm(eps, self.dtype)
        self.encoder_decoder_attention = Attention(cfg.num_heads, cfg.head_dim, cfg.emb_dim,
                                                   cfg.dropout_rate, self.dtype,
                                                   self.attention_impl)
        self.pre_mlp_layer_norm = RMSNorm(eps, self.dtype)
        self.mlp = Mlp(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, self.dtype)
        self.drop = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))

    def cross_kv(self, encoded_BLE: Array) -> tuple[Array, Array]:
        return self.encoder_decoder_attention.project_kv(encoded_BLE)

    def __call__(self, y_BTE: Array, self_masking: tuple, cross_masking: tuple,
                 deterministic: bool, *, encoded_BLE: Array | None = None,
                 cross_kv: tuple | None = None, cache: dict | None = None,
                 cache_index: Array | None = None):
        """Full-sequence mode (cache None) or one cached step (y_BTE has T=1).

        Returns (y_BTE, new_cache); new_cache is None in full-sequence mode.
        """
        h = self.pre_self_attention_layer_norm(y_BTE)
        k_new, v_new = self.self_attention.project_kv(h)
        new_cache = None
        if cache is not None:
            k = jax.lax.dynamic_update_slice_in_dim(cache["k"], k_new.astype(cache["k"].dtype),
                                                    cache_index, axis=1)
            v = jax.lax.dynamic_update_slice_in_dim(cache["v"], v_new.astype(cache["v"].dtype),
                                                    cache_index, axis=1)
            new_cache = {"k": k, "v": v}
        else:
            k, v = k_new, v_new
        full = cache is None  # a cached step attends with one query: the plain path
        h = self.self_attention.attend(h, k, v, self_masking, deterministic, causal=True,
                                       allow_fused=full)
        y_BTE = y_BTE + self.drop(h, deterministic)
        h = self.pre_cross_attention_layer_norm(y_BTE)
        ck, cv = cross_kv if cross_kv is not None else self.cross_kv(encoded_BLE)
        h = self.encoder_decoder_attention.attend(h, ck, cv, cross_masking, deterministic,
                                                  allow_fused=full)
        y_BTE = y_BTE + self.drop(h, deterministic)
        h = self.pre_mlp_layer_norm(y_BTE)
        h = self.mlp(h, deterministic)
        return y_BTE + self.drop(h, deterministic), new_cache


def _mask_to_bias(mask) -> Array:
    return jnp.where(mask, 0.0, NEG_INF).astype(jnp.float32)
