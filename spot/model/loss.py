"""The training loss of a T5 output: token cross-entropy plus t5x's z-loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy_sums(logits_BTV: jax.Array, targets_BT: jax.Array, weights_BT: jax.Array,
                       z_loss: float) -> dict[str, jax.Array]:
    """The weighted sums behind `cross_entropy` (negative log-likelihood, z-loss, correct
    tokens, weight): sums of parts add up to the sums of the whole, so a batch split into
    microbatches gives the whole batch's mean once they are divided by the total weight."""
    logits_BTV = logits_BTV.astype(jnp.float32)
    log_z_BT = jax.nn.logsumexp(logits_BTV, axis=-1)
    target_logit_BT = jnp.take_along_axis(logits_BTV, targets_BT[..., None], axis=-1)[..., 0]
    correct = (jnp.argmax(logits_BTV, axis=-1) == targets_BT).astype(jnp.float32)
    return {"nll": jnp.sum((log_z_BT - target_logit_BT) * weights_BT),
            "z": jnp.sum(z_loss * jnp.square(log_z_BT) * weights_BT),
            "correct": jnp.sum(correct * weights_BT), "weight": jnp.sum(weights_BT)}


def cross_entropy(logits_BTV: jax.Array, targets_BT: jax.Array, weights_BT: jax.Array,
                  z_loss: float) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Token cross-entropy (plus t5x's z-loss on log Z) averaged over real target tokens."""
    logits_BTV = logits_BTV.astype(jnp.float32)
    log_z_BT = jax.nn.logsumexp(logits_BTV, axis=-1)
    target_logit_BT = jnp.take_along_axis(logits_BTV, targets_BT[..., None], axis=-1)[..., 0]
    nll_BT = log_z_BT - target_logit_BT
    z_BT = z_loss * jnp.square(log_z_BT)
    num_tokens = jnp.maximum(jnp.sum(weights_BT), 1.0)
    nll = jnp.sum(nll_BT * weights_BT) / num_tokens
    z = jnp.sum(z_BT * weights_BT) / num_tokens
    correct = (jnp.argmax(logits_BTV, axis=-1) == targets_BT).astype(jnp.float32)
    metrics = {"loss": nll + z, "cross_entropy": nll, "z_loss": z,
               "token_accuracy": jnp.sum(correct * weights_BT) / num_tokens,
               "num_tokens": jnp.sum(weights_BT)}
    return nll + z, metrics
