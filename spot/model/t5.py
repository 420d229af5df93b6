"""T5 1.1 encoder-decoder in Flax with t5x's parameter tree.

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

import dataclasses
from typing import Any, Mapping

from spot.errors import ConfigError

# Presets: T5 1.1 sizes (vocab 32128 = 32,000 SentencePiece pieces + 100 sentinels, padded).
_PRESETS: dict[str, dict[str, Any]] = {
    "t5_1_1_small": dict(emb_dim=512, num_heads=6, head_dim=64, mlp_dim=1024,
                         num_encoder_layers=8, num_decoder_layers=8),
    "t5_1_1_base": dict(emb_dim=768, num_heads=12, head_dim=64, mlp_dim=2048,
                        num_encoder_layers=12, num_decoder_layers=12),
    "t5_1_1_large": dict(emb_dim=1024, num_heads=16, head_dim=64, mlp_dim=2816,
                         num_encoder_layers=24, num_decoder_layers=24),
    "t5_1_1_xl": dict(emb_dim=2048, num_heads=32, head_dim=64, mlp_dim=5120,
                      num_encoder_layers=24, num_decoder_layers=24),
    "t5_1_1_xxl": dict(emb_dim=4096, num_heads=64, head_dim=64, mlp_dim=10240,
                       num_encoder_layers=24, num_decoder_layers=24),
    # The shape of the real t5x checkpoint in the prompt-tuning release's test data.
    "t5_1_1_tiny": dict(emb_dim=4, num_heads=2, head_dim=2, mlp_dim=8,
                        num_encoder_layers=2, num_decoder_layers=2,
                        relative_attention_num_buckets=4, relative_attention_max_distance=8),
    # Small enough for unit tests with a small vocabulary.
    "test_tiny": dict(vocab_size=128, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=32,
                      num_encoder_layers=2, num_decoder_layers=2,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16),
}
T5_1_1_SIZES = ("small", "base", "large", "xl", "xxl")  # the released LM-adapted sizes
_ALIASES = {name.removeprefix("t5_1_1_"): name for name in _PRESETS if name.startswith("t5_1_1_")}


def canonical_preset(name: str) -> str:
    """`t5_1_1_<size>` for a bare size name (small .. xxl, or a test size); any other name
    unchanged."""
    return _ALIASES.get(name, name)

_ACTIVATIONS = ("gelu", "relu", "linear", "silu")


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Shape and numerics of a T5 1.1 (or 1.0) encoder-decoder.

    `mlp_activations=("gelu", "linear")` is T5 1.1's gated GELU (kernels `wi_0`, `wi_1`);
    `("relu",)` with `logits_via_embedding=True` is T5 1.0 (kernel `wi`, tied logits).
    """

    vocab_size: int = 32128
    emb_dim: int = 768
    num_heads: int = 12
    head_dim: int = 64
    mlp_dim: int = 2048
    num_encoder_layers: int = 12
    num_decoder_layers: int = 12
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    mlp_activations: tuple[str, ...] = ("gelu", "linear")
    logits_via_embedding: bool = False
    layer_norm_epsilon: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("vocab_size", "emb_dim", "num_heads", "head_dim", "mlp_dim",
                     "num_encoder_layers", "num_decoder_layers",
                     "relative_attention_num_buckets", "relative_attention_max_distance"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"T5Config.{name} must be a positive integer, got {value!r}")
        if not 0.0 <= float(self.dropout_rate) < 1.0:
            raise ConfigError(f"T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        object.__setattr__(self, "mlp_activations", tuple(self.mlp_activations))
        if not self.mlp_activations or any(a not in _ACTIVATIONS for a in self.mlp_activations):
            raise ConfigError(
                f"T5Config.mlp_activations must be a non-empty tuple of {_ACTIVATIONS}, "
                f"got {self.mlp_activations!r}")
        if self.relative_attention_num_buckets < 2:
            raise ConfigError("T5Config.relative_attention_num_buckets must be at least 2")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "T5Config":
        """A named size: small, base, large, xl, xxl (also `t5_1_1_<size>`), or a test size."""
        key = canonical_preset(name)
        if key not in _PRESETS:
            raise ConfigError(
                f"unknown T5 preset {name!r}; known: {', '.join(sorted(_PRESETS))}")
        return cls(**{**_PRESETS[key], **overrides})

    @staticmethod
    def preset_names() -> list[str]:
        return sorted(_PRESETS)

    def replace(self, **changes: Any) -> "T5Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mlp_activations"] = list(self.mlp_activations)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "T5Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown T5Config keys: {', '.join(sorted(unknown))}")
        return cls(**dict(d))

    @property
    def is_gated(self) -> bool:
        return len(self.mlp_activations) > 1


# ----------------------------------------------------------------------------------------
# The network.
# ----------------------------------------------------------------------------------------

import functools  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

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


class ScannedEncoderLayer(EncoderLayer):
    """One encoder layer in `nn.scan`'s (carry, inputs) -> (carry, outputs) form."""

    def __call__(self, x_BLE: Array, masking: tuple, deterministic: bool):
        return EncoderLayer.__call__(self, x_BLE, masking, deterministic), None


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


def _layer_stack(layer_cls, scanned_cls, *, scan: bool, remat: bool | str, num_layers: int,
                 static_argnums: tuple[int, ...], scanned_static_argnums: tuple[int, ...],
                 in_axes: tuple, args: tuple):
    """The layers of one stack: a list named layers_0..N-1 (t5x's layout), or one scanned
    module named `layers` whose parameters carry a leading layer axis (`scan_layers`)."""
    if not scan:
        if remat:
            layer_cls = nn.remat(layer_cls, static_argnums=static_argnums,
                                 policy=remat_policy(remat))
        return [layer_cls(*args, name=f"layers_{i}") for i in range(num_layers)]
    if remat:
        # prevent_cse=False is safe (and faster) inside scan, whose loop already blocks CSE.
        scanned_cls = nn.remat(scanned_cls, static_argnums=scanned_static_argnums,
                               policy=remat_policy(remat), prevent_cse=False)
    return nn.scan(scanned_cls, variable_axes={"params": 0},
                   split_rngs={"params": True, "dropout": True}, in_axes=in_axes,
                   length=num_layers)(*args, name="layers")


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


REMAT_POLICIES = ("full", "dots")


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


def _mask_to_bias(mask) -> Array:
    return jnp.where(mask, 0.0, NEG_INF).astype(jnp.float32)


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
        self.layers = _layer_stack(
            EncoderLayer, ScannedEncoderLayer, scan=self.scan_layers, remat=self.remat,
            num_layers=cfg.num_encoder_layers, static_argnums=(3,), scanned_static_argnums=(3,),
            in_axes=(nn.broadcast, nn.broadcast), args=(cfg, self.dtype, self.attention_impl))
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
        # cache_index, mode); only the cache slice is scanned over.
        self.layers = _layer_stack(
            DecoderLayer, ScannedDecoderLayer, scan=self.scan_layers, remat=self.remat,
            num_layers=cfg.num_decoder_layers, static_argnums=(4,),
            scanned_static_argnums=(5, 8), in_axes=(0,) + (nn.broadcast,) * 6,
            args=(cfg, self.dtype, self.attention_impl))
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
