"""The frozen model as users see it: `spot.load_t5(...)` returns a `T5`.

`T5` bundles a config, the parameters (t5x names) and the Flax module, and offers the
operations the method needs on host arrays: logits, greedy generation and rank-classification
scores, each validating its inputs before anything reaches JAX.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from spot.errors import ConfigError, PromptError, SpotError
from spot.model.prompt_check import validate_prompt
from spot.model.t5 import T5Config, Transformer, is_stacked, stack_layers, unstack_layers
from spot.model.t5_config import ATTENTION_IMPLS, DTYPE_CHOICES, DTYPES


def resolve_dtype(dtype: Any):
    """A compute or parameter dtype from one of `DTYPE_CHOICES` (the names the run config
    accepts too) or a float32/bfloat16 dtype object; None is float32."""
    import jax.numpy as jnp

    if dtype is None:
        return jnp.float32
    if isinstance(dtype, str):
        if dtype == "auto":
            import jax

            return jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32
        if dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_CHOICES)}")
        return getattr(jnp, DTYPES[dtype])
    try:
        name = jnp.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES.values():
        raise ConfigError(f"unsupported dtype {dtype!r}; use one of {', '.join(DTYPE_CHOICES)}")
    return getattr(jnp, name)


def check_tokens(tokens: Any, vocab_size: int, name: str) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim != 2:
        raise SpotError(f"{name}: expected shape [batch, length], got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise SpotError(f"{name}: expected integer token ids, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        bad = arr[(arr < 0) | (arr >= vocab_size)]
        raise SpotError(
            f"{name}: token id {int(bad[0])} is outside the vocabulary range [0, {vocab_size})")
    return arr.astype(np.int32)


class T5:
    """A frozen T5 1.1 with parameters under t5x names.

    `dtype` is the compute dtype (norms, softmax and logits stay float32); parameters are kept
    in `param_dtype` (bfloat16 halves memory on accelerators; defaults to the compute dtype).
    `scan_layers=True` runs each stack as one `nn.scan` over its layers (compile time and
    program size independent of depth); `params` is then held in the stacked layout
    (`spot.model.layout.stack_layers`) and saved back under t5x's per-layer names.
    """

    def __init__(self, config: T5Config, params: dict, dtype: Any = "float32", *,
                 param_dtype: Any = None, attention_impl: str = "xla", remat: bool | str = False,
                 scan_layers: bool = False):
        import jax
        import jax.numpy as jnp

        self.config = config
        self.dtype = resolve_dtype(dtype)
        self.param_dtype = resolve_dtype(param_dtype) if param_dtype is not None else (
            self.dtype)
        if attention_impl not in ATTENTION_IMPLS:
            raise ConfigError(f"attention_impl must be one of {', '.join(ATTENTION_IMPLS)}, "
                              f"got {attention_impl!r}")
        self.module = Transformer(config, dtype=self.dtype, attention_impl=attention_impl,
                                  remat=remat, scan_layers=bool(scan_layers))
        if scan_layers:
            params = stack_layers(params)
        elif is_stacked(params):
            params = unstack_layers(params)
        self.params = jax.tree_util.tree_map(
            lambda x: jnp.asarray(x, dtype=self.param_dtype), params)

    def __repr__(self) -> str:
        c = self.config
        scan = ", scan_layers=True" if self.module.scan_layers else ""
        return (f"T5(emb_dim={c.emb_dim}, layers={c.num_encoder_layers}+{c.num_decoder_layers}, "
                f"vocab={c.vocab_size}, dtype={np.dtype(self.dtype).name}{scan})")

    @property
    def t5x_params(self) -> dict:
        """The parameters under t5x's per-layer names, whatever the layout in memory."""
        return unstack_layers(self.params)

    @property
    def num_params(self) -> int:
        import jax

        return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(self.params)))

    @property
    def embedding(self) -> np.ndarray:
        return np.asarray(self.params["token_embedder"]["embedding"], dtype=np.float32)

    def _prompt(self, prompt: Any, batch: int):
        if prompt is None:
            return None
        arr = validate_prompt(prompt, self.config.emb_dim, batched=True)
        if arr.ndim == 3 and arr.shape[0] != batch:
            raise PromptError(
                f"per-example prompts have batch {arr.shape[0]} but the inputs have {batch}")
        return arr

    def logits(self, encoder_input_tokens: Any, decoder_input_tokens: Any,
               prompt: Any = None) -> np.ndarray:
        """Teacher-forced logits [B, T, V] (float32). Token id 0 is padding."""
        enc = check_tokens(encoder_input_tokens, self.config.vocab_size, "encoder_input_tokens")
        dec = check_tokens(decoder_input_tokens, self.config.vocab_size, "decoder_input_tokens")
        if enc.shape[0] != dec.shape[0]:
            raise SpotError(f"encoder batch {enc.shape[0]} != decoder batch {dec.shape[0]}")
        return np.asarray(_logits_fn(self.module, self.params, enc, dec,
                                     self._prompt(prompt, enc.shape[0])))

    def generate(self, encoder_input_tokens: Any, prompt: Any = None, *,
                 max_length: int = 32) -> np.ndarray:
        """Greedy decoding with a key/value cache: tokens [B, max_length], 0 after EOS."""
        from spot.model.decode import greedy_decode

        enc = check_tokens(encoder_input_tokens, self.config.vocab_size, "encoder_input_tokens")
        tokens, _ = greedy_decode(self.module, self.params, enc,
                                  self._prompt(prompt, enc.shape[0]), max_length=max_length)
        return np.asarray(tokens)

    def score(self, encoder_input_tokens: Any, candidate_targets: Any,
              prompt: Any = None) -> np.ndarray:
        """Rank classification: log-likelihood [B, C] of each candidate target sequence."""
        from spot.model.decode import score_candidates

        enc = check_tokens(encoder_input_tokens, self.config.vocab_size, "encoder_input_tokens")
        cands = check_tokens(candidate_targets, self.config.vocab_size, "candidate_targets")
        return np.asarray(score_candidates(self.module, self.params, enc,
                                           self._prompt(prompt, enc.shape[0]), cands))


def _logits_fn(module, params, enc, dec, prompt):
    import jax

    fn = _LOGITS_CACHE.get(module)
    if fn is None:
        fn = jax.jit(lambda p, e, d, pr: module.apply({"params": p}, e, d, prompt=pr))
        _LOGITS_CACHE[module] = fn
    return fn(params, enc, dec, prompt)


_LOGITS_CACHE: dict = {}


def load_t5(path_or_id: str | os.PathLike, dtype: Any = "float32", config: T5Config | None = None,
            **options: Any) -> T5:
    """Load a frozen T5 from an HF folder or hub id, a t5x checkpoint (local or gs://), or
    spot's native format. `config` overrides what the checkpoint says (shapes are checked)."""
    from spot.model.checkpoints import load_checkpoint

    cfg, params = load_checkpoint(path_or_id, config=config)
    return T5(cfg, params, dtype, **options)


def random_t5(config: T5Config | str, *, seed: int = 0, dtype: Any = "float32",
              **options: Any) -> T5:
    """A T5 with t5x's random initialization (benchmarks and tests)."""
    from spot.model.t5 import init_params

    cfg = T5Config.preset(config) if isinstance(config, str) else config
    return T5(cfg, init_params(cfg, seed), dtype, **options)


def batch_pad(sequences: Sequence[Sequence[int]], length: int | None = None) -> np.ndarray:
    """Right-pad token id lists with 0 into an int32 [B, length] array (truncating)."""
    length = length or max((len(s) for s in sequences), default=1)
    out = np.zeros((len(sequences), length), np.int32)
    for i, s in enumerate(sequences):
        s = list(s)[:length]
        out[i, : len(s)] = s
    return out
