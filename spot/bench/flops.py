"""Model FLOPs of a prompt-tuning train step, counted by hand from the config and shapes.

What is counted: matrix multiplications only (2*m*n*k each), attention's two batched
products included; norms, softmax, dropout, gathers and the optimizer are not counted.

  forward   every matmul of the encoder, decoder and output projection;
  backward  the gradients with respect to activations that the prompt's gradient needs,
            and no weight gradients (the weights are frozen):
            - a weight matmul y = x W needs dx = dy W^T: 1x its forward;
            - an attention product of two activations needs both operand gradients: 2x;
            - nothing upstream of the prompt's influence: decoder layer 0's self-attention
              sublayer and its cross-attention query depend only on the decoder's input
              tokens, so they get no backward (and its cross-attention scores need only
              dK: 1x). JAX's autodiff skips exactly these, which the jaxpr count checks.

`count_dot_flops` counts the dot products in a function's jaxpr instead, an independent
check of the hand count on the real train step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from spot.errors import ConfigError
from spot.model.t5 import T5Config


@dataclasses.dataclass(frozen=True)
class FlopCount:
    forward: int
    backward: int
    parts: dict[str, tuple[int, int]]  # name -> (forward, backward)

    @property
    def total(self) -> int:
        return self.forward + self.backward


def _mm(m: int, n: int, k: int) -> int:
    return 2 * m * n * k


def _check(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def train_step_flops(config: T5Config, *, batch: int, input_length: int, target_length: int,
                     prompt_length: int) -> FlopCount:
    """Forward plus activation-gradient FLOPs of one prompt-tuning step (see module doc)."""
    _check(batch=batch, input_length=input_length, target_length=target_length,
           prompt_length=prompt_length)
    c = config
    B, T, E, F, H, D = batch, target_length, c.emb_dim, c.mlp_dim, c.num_heads, c.head_dim
    L = prompt_length + input_length
    HD = H * D
    n_in = len(c.mlp_activations)  # gated T5 1.1: wi_0 and wi_1
    parts: dict[str, list[int]] = {}

    def add(name: str, fwd: int, bwd_factor: float) -> None:
        p = parts.setdefault(name, [0, 0])
        p[0] += fwd
        p[1] += int(fwd * bwd_factor)

    for _ in range(c.num_encoder_layers):
        add("encoder/attention_projections", 4 * _mm(B * L, E, HD), 1)
        add("encoder/attention_scores_values", 2 * _mm(B * H * L, L, D), 2)
        add("encoder/mlp", (n_in + 1) * _mm(B * L, E, F), 1)
    for i in range(c.num_decoder_layers):
        first = i == 0
        add("decoder/self_attention_projections", 4 * _mm(B * T, E, HD), 0 if first else 1)
        add("decoder/self_attention_scores_values", 2 * _mm(B * H * T, T, D), 0 if first else 2)
        add("decoder/cross_attention_query", _mm(B * T, E, HD), 0 if first else 1)
        add("decoder/cross_attention_out", _mm(B * T, HD, E), 1)
        add("decoder/cross_attention_key_value", 2 * _mm(B * L, E, HD), 1)
        add("decoder/cross_attention_scores", _mm(B * H * T, L, D), 1 if first else 2)
        add("decoder/cross_attention_values", _mm(B * H * T, L, D), 2)
        add("decoder/mlp", (n_in + 1) * _mm(B * T, E, F), 1)
    add("logits", _mm(B * T, E, c.vocab_size), 1)
    frozen = {k: (v[0], v[1]) for k, v in parts.items()}
    return FlopCount(forward=sum(v[0] for v in frozen.values()),
                     backward=sum(v[1] for v in frozen.values()), parts=frozen)


def decode_flops(config: T5Config, *, batch: int, input_length: int, prompt_length: int,
                 max_length: int) -> int:
    """Matmul FLOPs of greedy decoding with a KV cache for `max_length` steps.

    Encoder once; cross-attention keys/values once per layer; each step projects one token
    and attends over the whole cache (`max_length` slots, masked), as the cached decoder does.
    """
    _check(batch=batch, input_length=input_length, max_length=max_length)
    if prompt_length < 0:
        raise ConfigError(f"prompt_length must be >= 0, got {prompt_length}")
    c = config
    B, E, F, H, D = batch, c.emb_dim, c.mlp_dim, c.num_heads, c.head_dim
    L, HD, n_in = prompt_length + input_length, H * D, len(c.mlp_activations)
    enc = c.num_encoder_layers * (4 * _mm(B * L, E, HD) + 2 * _mm(B * H * L, L, D)
                                  + (n_in + 1) * _mm(B * L, E, F))
    cross_kv = c.num_decoder_layers * 2 * _mm(B * L, E, HD)
    per_token = c.num_decoder_layers * (
        4 * _mm(B, E, HD) + 2 * _mm(B * H, max_length, D)  # self-attention over the cache
        + 2 * _mm(B, E, HD) + 2 * _mm(B * H, L, D)  # cross-attention query, out, products
        + (n_in + 1) * _mm(B, E, F)) + _mm(B, E, c.vocab_size)
    return enc + cross_kv + max_length * per_token


def count_dot_flops(fn: Callable, *args: Any, **kwargs: Any) -> int:
    """2*m*n*k summed over every dot_general in `fn`'s jaxpr (nested calls, remat and scans
    included; a scan's body counts once per iteration)."""
    import jax

    closed = jax.make_jaxpr(fn)(*args, **kwargs)
    return _jaxpr_dots(closed.jaxpr)


def _jaxpr_dots(jaxpr) -> int:
    import math

    from jax.extend import core as jax_core

    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lc, rc), (lb, _rb) = eqn.params["dimension_numbers"]
            lhs, rhs = (v.aval.shape for v in eqn.invars)
            contract = math.prod(lhs[d] for d in lc)
            batch = math.prod(lhs[d] for d in lb)
            m = math.prod(s for d, s in enumerate(lhs) if d not in lc and d not in lb)
            n = math.prod(s for d, s in enumerate(rhs)
                          if d not in rc and d not in _rb)
            total += 2 * batch * m * n * contract
            continue
        times = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        for sub in jax_core.jaxprs_in_params(eqn.params):
            total += times * _jaxpr_dots(sub)
    return total
