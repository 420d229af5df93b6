"""Pure train/eval step functions.

Trainability is data: the step differentiates a loss with respect to the `trainable` pytree
only (the prompt, or every weight in model-tuning mode); the frozen weights are a separate
argument and never get a gradient. The state is a plain dict so that checkpoints, shardings
and donation all follow from its structure:

    state = {"step": int32[], "trainable": pytree, "opt_state": pytree, "rng": uint32[2]}
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from spot.config import OptimizerConfig
from spot.model.loss import cross_entropy
from spot.model.prompt import effective_prompt
from spot.model.t5 import Transformer

Batch = dict[str, jax.Array]
State = dict[str, Any]


def decoupled_weight_decay(rate: float) -> optax.GradientTransformation:
    """Adds `-rate * param` to the update after the learning rate is applied.

    t5x's Adafactor decays weights by a fixed fraction per step, independent of the learning
    rate: `new = (1 - rate) * param - lr * update`.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params):
        if params is None:
            raise ValueError("decoupled_weight_decay needs the parameters")
        updates = jax.tree_util.tree_map(lambda u, p: u - rate * p, updates, params)
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(cfg: OptimizerConfig, mode: str = "prompt") -> optax.GradientTransformation:
    """Adafactor with the prompt-tuning recipe: no momentum, no parameter scaling,
    decay rate 0.8, update clipping 1.0, constant learning rate, decoupled weight decay.
    Unset fields take `mode`'s recipe (a resolved config has none)."""
    cfg = cfg.resolve(mode)
    parts = [
        optax.scale_by_factored_rms(factored=cfg.factored, decay_rate=cfg.decay_rate,
                                    epsilon=cfg.epsilon),
        optax.clip_by_block_rms(cfg.clipping_threshold),
        optax.scale(-cfg.learning_rate),
    ]
    if cfg.weight_decay:
        parts.append(decoupled_weight_decay(cfg.weight_decay))
    return optax.chain(*parts)


def per_layer(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """`inner` applied to each layer's slice of stacked (scan_layers) weights: Adafactor's
    factored statistics and block-RMS clipping then see one layer's matrix at a time, exactly
    as they do with t5x's per-layer names."""

    def init(params):
        return jax.vmap(inner.init)(params)

    def update(updates, state, params=None):
        return jax.vmap(inner.update)(updates, state, params)

    return optax.GradientTransformation(init, update)


def layerwise(optimizer: optax.GradientTransformation,
              trainable: dict) -> optax.GradientTransformation:
    """`optimizer` itself, or (model tuning with scan_layers) the same optimizer applied per
    layer to the stacked `layers` subtrees and as usual to everything else."""
    from spot.model.t5 import is_stacked

    if not is_stacked(trainable.get("params", {})):
        return optimizer

    def label(path, _):
        keys = [getattr(k, "key", None) for k in path]
        # Each stack has its own depth, so each gets its own per-layer mapping.
        if "layers" in keys:
            return "layers_of_" + str(keys[keys.index("layers") - 1])
        return "flat"

    def labels(tree):
        return jax.tree_util.tree_map_with_path(label, tree)

    names = set(jax.tree_util.tree_leaves(labels(trainable)))
    return optax.multi_transform(
        {n: optimizer if n == "flat" else per_layer(optimizer) for n in names}, labels)


def split_trainable(trainable: dict, frozen: dict) -> tuple[dict, jax.Array | None]:
    """(model params, prompt) for either mode: prompt tuning keeps the model in `frozen`;
    model tuning keeps every weight in `trainable["params"]` and uses no prompt."""
    if "params" in trainable:
        return trainable["params"], None
    return frozen, effective_prompt(trainable)


def init_state(trainable: dict, optimizer: optax.GradientTransformation, seed: int) -> State:
    trainable = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), trainable)
    return {"step": jnp.asarray(0, jnp.int32), "trainable": trainable,
            "opt_state": optimizer.init(trainable), "rng": jax.random.PRNGKey(seed)}


def make_train_step(module: Transformer, optimizer: optax.GradientTransformation,
                    z_loss: float) -> Callable[[State, dict, Batch], tuple[State, dict]]:
    """The un-jitted train step; `spot.train.loop` jits it with shardings and donation."""

    def train_step(state: State, frozen: dict, batch: Batch) -> tuple[State, dict]:
        dropout_rng = jax.random.fold_in(state["rng"], state["step"])

        def loss_fn(trainable):
            params, prompt = split_trainable(trainable, frozen)
            logits = module.apply(
                {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
                prompt=prompt, deterministic=False,
                decoder_target_tokens=batch["decoder_target_tokens"],
                rngs={"dropout": dropout_rng})
            return cross_entropy(logits, batch["decoder_target_tokens"],
                                 batch["decoder_loss_weights"], z_loss)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["trainable"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["trainable"])
        trainable = optax.apply_updates(state["trainable"], updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        new_state = {"step": state["step"] + 1, "trainable": trainable, "opt_state": opt_state,
                     "rng": state["rng"]}
        return new_state, metrics

    return train_step


def jit_train_step(step_fn: Callable, mesh, state: State, frozen: dict, *,
                   model_tuning: bool = False):
    """The train step exactly as training compiles it: explicit shardings, state donated.

    Returns `(jitted_step, state_shardings, frozen_shardings, batch_sharding)`; the loop and
    the benchmark both call this so that what is timed is what trains.
    """
    from spot.train import sharding as shard

    state_sh = shard.state_shardings(mesh, state, model_tuning=model_tuning)
    frozen_sh = shard.frozen_shardings(mesh, frozen)
    batch_sh = shard.batch_sharding(mesh)
    jitted = jax.jit(step_fn, in_shardings=(state_sh, frozen_sh, batch_sh),
                     out_shardings=(state_sh, None), donate_argnums=(0,))
    return jitted, state_sh, frozen_sh, batch_sh
