"""The shape of a T5 and the names the rest of spot refers to it by.

`T5Config` and its presets (with the bare size aliases `canonical_preset` resolves), T5's
token-id conventions, and the option names `T5(...)` accepts; `spot.config` derives its
choice lists from these constants. Nothing here imports JAX, so the run config and the CLI
can read them without loading it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from spot.errors import ConfigError

# Token ids shared by every T5 SentencePiece vocabulary (and the embedded backbone's).
PAD_ID = 0  # also t5x's decoder start token
EOS_ID = 1

# Options of `spot.model.api.T5` (and so of `spot.config.ModelConfig`). float16 is not
# offered: T5 1.1's activations overflow it (t5x trains and serves in bfloat16).
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}
DTYPE_CHOICES = ("auto", *DTYPES)  # auto: bfloat16 on GPU/TPU, float32 on CPU
ATTENTION_IMPLS = ("xla", "fused")
REMAT_POLICIES = ("full", "dots")  # see `spot.model.scan.remat_policy`
ACTIVATIONS = ("gelu", "relu", "linear", "silu")

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
    unchanged. The one place size aliases are spelled out."""
    return _ALIASES.get(name, name)


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
        if not self.mlp_activations or any(a not in ACTIVATIONS for a in self.mlp_activations):
            raise ConfigError(
                f"T5Config.mlp_activations must be a non-empty tuple of {ACTIVATIONS}, "
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
