"""Inference on the frozen model: greedy decoding with a key/value cache, and
rank classification (scoring a closed set of candidate targets).

Both are pure functions of (module, params, inputs, prompt) so they jit once per shape and
serve training-time evaluation, `spot eval` and mixed-task `spot predict` alike.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from spot.model.t5 import Transformer
from spot.model.t5_config import EOS_ID, PAD_ID

__all__ = ["EOS_ID", "PAD_ID", "greedy_decode", "greedy_decode_uncached", "score_candidates",
           "score_candidates_per_example", "shift_right"]


@functools.partial(jax.jit, static_argnames=("module", "max_length", "eos_id"))
def greedy_decode(module: Transformer, params: dict, encoder_input_tokens: jax.Array,
                  prompt: jax.Array | None, *, max_length: int,
                  eos_id: int = EOS_ID) -> tuple[jax.Array, jax.Array]:
    """Greedy tokens [B, max_length] (0 after EOS) and their summed log-probabilities [B].

    Stops early once every sequence has produced EOS.
    """
    variables = {"params": params}
    encoded, enc_mask = module.apply(variables, encoder_input_tokens, prompt,
                                     method=Transformer.encode)
    cache = module.apply(variables, encoded, max_length, method=Transformer.init_cache)
    batch = encoder_input_tokens.shape[0]

    def cond(state):
        i, _, _, done, _, _ = state
        return (i < max_length) & ~jnp.all(done)

    def body(state):
        i, token, cache, done, out, logp = state
        logits, cache = module.apply(variables, token, i, cache, enc_mask,
                                     method=Transformer.decode_step)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        next_token = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
        token_logp = jnp.take_along_axis(log_probs, next_token[:, None], axis=-1)[:, 0]
        logp = logp + jnp.where(done, 0.0, token_logp)
        emitted = jnp.where(done, PAD_ID, next_token)
        out = out.at[:, i].set(emitted)
        done = done | (next_token == eos_id)
        return i + 1, emitted, cache, done, out, logp

    init = (jnp.asarray(0, jnp.int32), jnp.zeros((batch,), jnp.int32), cache,
            jnp.zeros((batch,), bool), jnp.zeros((batch, max_length), jnp.int32),
            jnp.zeros((batch,), jnp.float32))
    _, _, _, _, out, logp = jax.lax.while_loop(cond, body, init)
    return out, logp


def greedy_decode_uncached(module: Transformer, params: dict, encoder_input_tokens,
                           prompt, *, max_length: int, eos_id: int = EOS_ID) -> np.ndarray:
    """Reference decoder that recomputes the whole decoder each step (for tests only)."""
    variables = {"params": params}
    encoded, enc_mask = module.apply(variables, encoder_input_tokens, prompt,
                                     method=Transformer.encode)
    batch = encoder_input_tokens.shape[0]
    dec_in = np.zeros((batch, max_length), np.int32)
    out = np.zeros((batch, max_length), np.int32)
    done = np.zeros(batch, bool)
    for i in range(max_length):
        logits = np.asarray(module.apply(variables, jnp.asarray(dec_in), encoded, enc_mask,
                                         method=Transformer.decode))
        token = logits[:, i].argmax(-1).astype(np.int32)
        out[:, i] = np.where(done, PAD_ID, token)
        done |= token == eos_id
        if i + 1 < max_length:
            dec_in[:, i + 1] = out[:, i]
        if done.all():
            break
    return out


def shift_right(targets: np.ndarray | jax.Array):
    """Decoder inputs from targets: prepend 0 (t5x's BOS) and drop the last position."""
    xp = jnp if isinstance(targets, jax.Array) else np
    zeros = xp.zeros(targets.shape[:-1] + (1,), dtype=targets.dtype)
    return xp.concatenate([zeros, targets[..., :-1]], axis=-1)


@functools.partial(jax.jit, static_argnames=("module",))
def score_candidates(module: Transformer, params: dict, encoder_input_tokens: jax.Array,
                     prompt: jax.Array | None, candidate_targets: jax.Array) -> jax.Array:
    """Rank classification: log-likelihood [B, C] of each candidate target given each input.

    `candidate_targets` [C, T] (EOS-terminated, 0-padded) is shared by the batch. The encoder
    runs once per example; the decoder runs on every (example, candidate) pair.
    """
    variables = {"params": params}
    encoded, enc_mask = module.apply(variables, encoder_input_tokens, prompt,
                                     method=Transformer.encode)
    batch = encoder_input_tokens.shape[0]
    num_candidates = candidate_targets.shape[0]
    enc_rep = jnp.repeat(encoded, num_candidates, axis=0)
    mask_rep = jnp.repeat(enc_mask, num_candidates, axis=0)
    targets = jnp.tile(candidate_targets, (batch, 1))
    logits = module.apply(variables, shift_right(targets), enc_rep, mask_rep,
                          method=Transformer.decode)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    token_lp = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    total = jnp.sum(jnp.where(targets > 0, token_lp, 0.0), axis=-1)
    return total.reshape(batch, num_candidates)


@functools.partial(jax.jit, static_argnames=("module",))
def score_candidates_per_example(module: Transformer, params: dict,
                                 encoder_input_tokens: jax.Array, prompt: jax.Array | None,
                                 candidate_targets: jax.Array) -> jax.Array:
    """Rank classification where each example has its own candidates [B, C, T] (mixed-task
    batches); all-padding candidate rows score -inf."""
    variables = {"params": params}
    encoded, enc_mask = module.apply(variables, encoder_input_tokens, prompt,
                                     method=Transformer.encode)
    batch, num_candidates, length = candidate_targets.shape
    enc_rep = jnp.repeat(encoded, num_candidates, axis=0)
    mask_rep = jnp.repeat(enc_mask, num_candidates, axis=0)
    targets = candidate_targets.reshape(batch * num_candidates, length)
    logits = module.apply(variables, shift_right(targets), enc_rep, mask_rep,
                          method=Transformer.decode)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    token_lp = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    total = jnp.sum(jnp.where(targets > 0, token_lp, 0.0), axis=-1)
    total = jnp.where(jnp.any(targets > 0, axis=-1), total, -jnp.inf)
    return total.reshape(batch, num_candidates)
