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
from spot.model.loss import cross_entropy, cross_entropy_sums
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


def learning_rate_schedule(cfg: OptimizerConfig) -> Callable[[jax.Array], jax.Array] | None:
    """The rate at each update count under `cfg.schedule` and `cfg.warmup_steps`; None for
    the paper's constant rate (the optimizer then keeps no step count)."""
    lr, warmup = cfg.learning_rate, cfg.warmup_steps
    if cfg.schedule == "constant":
        if not warmup:
            return None
        after = optax.constant_schedule(lr)
    elif not cfg.decay_steps:
        raise ValueError(f"a {cfg.schedule} schedule needs decay_steps (resolve the RunConfig)")
    elif cfg.schedule == "linear":
        after = optax.linear_schedule(lr, 0.0, cfg.decay_steps - warmup)
    else:
        after = optax.cosine_decay_schedule(lr, cfg.decay_steps - warmup)
    if not warmup:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def make_optimizer(cfg: OptimizerConfig, mode: str = "prompt") -> optax.GradientTransformation:
    """Adafactor with the prompt-tuning recipe: no momentum, no parameter scaling,
    decay rate 0.8, update clipping 1.0, constant learning rate (or `cfg.schedule`),
    decoupled weight decay. Unset fields take `mode`'s recipe (a resolved config has none)."""
    cfg = cfg.resolve(mode)
    schedule = learning_rate_schedule(cfg)
    parts = [
        optax.scale_by_factored_rms(factored=cfg.factored, decay_rate=cfg.decay_rate,
                                    epsilon=cfg.epsilon),
        optax.clip_by_block_rms(cfg.clipping_threshold),
        optax.scale(-cfg.learning_rate) if schedule is None
        else optax.scale_by_schedule(lambda count: -schedule(count)),
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
                    z_loss: float, microbatches: int = 1
                    ) -> Callable[[State, dict, Batch], tuple[State, dict]]:
    """The un-jitted train step; `spot.train.loop` jits it with shardings and donation.

    With `microbatches` k > 1 the batch is split into k equal parts (example i goes to part
    i mod k, so a batch sharded in blocks stays on its devices); forward and backward run on
    one part at a time (`lax.scan`) and the gradients are summed in float32 before the one
    optimizer update. Each part's loss is divided by the whole batch's token weight, so the
    sum is the whole batch's gradient and the metrics are the whole batch's."""

    def apply(trainable, frozen: dict, part: Batch, rng):
        params, prompt = split_trainable(trainable, frozen)
        return module.apply(
            {"params": params}, part["encoder_input_tokens"], part["decoder_input_tokens"],
            prompt=prompt, deterministic=False,
            decoder_target_tokens=part["decoder_target_tokens"], rngs={"dropout": rng})

    def finish(state: State, grads, metrics: dict) -> tuple[State, dict]:
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["trainable"])
        trainable = optax.apply_updates(state["trainable"], updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        return {"step": state["step"] + 1, "trainable": trainable, "opt_state": opt_state,
                "rng": state["rng"]}, metrics

    def whole_step(state: State, frozen: dict, batch: Batch) -> tuple[State, dict]:
        dropout_rng = jax.random.fold_in(state["rng"], state["step"])

        def loss_fn(trainable):
            return cross_entropy(apply(trainable, frozen, batch, dropout_rng),
                                 batch["decoder_target_tokens"], batch["decoder_loss_weights"],
                                 z_loss)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["trainable"])
        return finish(state, grads, metrics)

    def micro_step(state: State, frozen: dict, batch: Batch) -> tuple[State, dict]:
        dropout_rng = jax.random.fold_in(state["rng"], state["step"])
        k = microbatches
        parts = {name: v.reshape(v.shape[0] // k, k, *v.shape[1:]).swapaxes(0, 1)
                 for name, v in batch.items()}
        total = jnp.maximum(jnp.sum(batch["decoder_loss_weights"]).astype(jnp.float32), 1.0)

        def part_loss(trainable, part, rng):
            sums = cross_entropy_sums(apply(trainable, frozen, part, rng), part["decoder_target_tokens"],
                                      part["decoder_loss_weights"], z_loss)
            return (sums["nll"] + sums["z"]) / total, sums

        grad_fn = jax.value_and_grad(part_loss, has_aux=True)

        def body(carry, xs):
            grads, sums = carry
            i, part = xs
            (_, part_sums), g = grad_fn(state["trainable"], part,
                                        jax.random.fold_in(dropout_rng, i))
            grads = jax.tree_util.tree_map(lambda a, b: a + b.astype(jnp.float32), grads, g)
            return (grads, jax.tree_util.tree_map(jnp.add, sums, part_sums)), None

        zeros = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, jnp.float32),
                                       state["trainable"])
        zero_sums = {name: jnp.zeros((), jnp.float32) for name in ("nll", "z", "correct",
                                                                     "weight")}
        (grads, sums), _ = jax.lax.scan(body, (zeros, zero_sums), (jnp.arange(k), parts))
        grads = jax.tree_util.tree_map(lambda g, x: g.astype(x.dtype), grads,
                                       state["trainable"])
        metrics = {"loss": (sums["nll"] + sums["z"]) / total, "cross_entropy": sums["nll"] / total,
                   "z_loss": sums["z"] / total, "token_accuracy": sums["correct"] / total,
                   "num_tokens": sums["weight"]}
        return finish(state, grads, metrics)

    if microbatches < 1:
        raise ValueError(f"microbatches must be >= 1, got {microbatches}")
    return whole_step if microbatches == 1 else micro_step


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
