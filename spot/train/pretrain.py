"""Pretraining the embedded backbone (the recipe, corpus batches and cache layout live in
`spot.data.offline.backbone`): the loop, its held-out perplexities and the encoder-reliance
diagnosis (`spot backbone info --diagnose`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from spot.data.offline import backbone
from spot.data.offline.backbone import (
    EMBEDDED_RECIPE,
    EXTRA_IDS,
    BackboneRecipe,
    backbone_key,
    backbone_path,
    data_digest,
    make_batch,
    model_config,
    random_copy_batch,
    reference_objectives,
    shipped_backbone,
    token_stream,
)
from spot.data.offline.vocab import cache_root
from spot.errors import CheckpointError
from spot.fileio import atomic_write_text
from spot.model.loss import cross_entropy


def _optimizer(recipe: BackboneRecipe, total_steps: int):
    import optax

    # Short builds (tests) cap the warm-up at a tenth of the run so the decay stays positive.
    warmup = max(1, min(recipe.warmup_steps, total_steps // 10))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, recipe.learning_rate, warmup, max(total_steps, warmup + 1),
        end_value=recipe.learning_rate * 0.1)
    if recipe.optimizer == "adafactor":
        return optax.adafactor(schedule, multiply_by_parameter_scale=True,
                               clipping_threshold=1.0)
    return optax.chain(optax.clip_by_global_norm(1.0),
                       optax.adamw(schedule, b2=0.98, weight_decay=0.01))


def _step_fns(module, optimizer):
    import jax
    import jax.numpy as jnp
    import optax

    def loss_fn(params, batch, rng, deterministic):
        logits = module.apply({"params": params}, batch["encoder_input_tokens"],
                              batch["decoder_input_tokens"], deterministic=deterministic,
                              decoder_target_tokens=batch["decoder_target_tokens"],
                              rngs={"dropout": rng})
        return cross_entropy(logits, batch["decoder_target_tokens"],
                             batch["decoder_loss_weights"], 0.0)

    @jax.jit
    def train_step(params, opt_state, batch, rng):
        (loss, metrics), grads = jax.value_and_grad(
            lambda p: loss_fn(p, batch, rng, False), has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def eval_step(params, batch):
        _, metrics = loss_fn(params, batch, jax.random.PRNGKey(0), True)
        return metrics["cross_entropy"] * metrics["num_tokens"], metrics["num_tokens"]

    del jnp
    return train_step, eval_step


def heldout_perplexity(eval_step, params, stream: np.ndarray, recipe: BackboneRecipe,
                       vocab_size: int, objective: str, batches: int = 8, *,
                       other_inputs: bool = False) -> float:
    """Perplexity on the same seeded held-out batches every call; `other_inputs` gives each
    example the encoder input of its neighbour in the batch (see `diagnose`)."""
    rng = np.random.default_rng(recipe.seed + 999)
    total, count = 0.0, 0.0
    for _ in range(batches):
        batch = make_batch(stream, objective, recipe, vocab_size, rng)
        if other_inputs:
            batch["encoder_input_tokens"] = np.roll(batch["encoder_input_tokens"], 1, axis=0)
        nll, n = eval_step(params, batch)
        total += float(nll)
        count += float(n)
    return float(math.exp(total / max(count, 1.0)))


def encoder_reliance(eval_step, params, stream: np.ndarray, recipe: BackboneRecipe,
                     vocab_size: int, batches: int = 8) -> dict[str, dict[str, float]]:
    """Per objective: held-out perplexity with each example's own encoder input, with its
    neighbour's, and the gain in nats per target token (see `diagnose`)."""
    out: dict[str, dict[str, float]] = {}
    for objective in ("span", "prefix_lm"):
        own, other = (heldout_perplexity(eval_step, params, stream, recipe, vocab_size,
                                         objective, batches, other_inputs=swap)
                      for swap in (False, True))
        out[objective] = {"perplexity": own, "perplexity_other_example_input": other,
                          "nats_from_encoder": math.log(other / own)}
    return out


@dataclasses.dataclass(frozen=True)
class _Build:
    """One backbone build: its recipe, destination, vocabulary and token streams."""

    recipe: BackboneRecipe
    out: Path
    sp_path: Path
    digest: str
    started: float
    cfg: Any  # the model's T5Config
    train_stream: np.ndarray
    heldout_stream: np.ndarray


def _prepare(recipe: BackboneRecipe, sp_path: Path, out: Path, started: float,
             log: Callable[[str], None]) -> _Build:
    """The vocabulary, model config and corpus token streams of a build."""
    import sentencepiece as spm

    from spot.data.offline.corpus import load_corpus
    from spot.data.vocab import load_vocabulary

    digest = data_digest(sp_path, recipe)
    vocab = load_vocabulary(sp_path, extra_ids=EXTRA_IDS)
    sp_size = spm.SentencePieceProcessor(model_file=str(sp_path)).get_piece_size()
    cfg = model_config(recipe, sp_size)
    # The vocabulary and the corpus split share the seed, so the suite's validation text
    # stays out of both.
    train_stream = token_stream(load_corpus("train", seed=recipe.seed), vocab)
    heldout_stream = token_stream(load_corpus("heldout", seed=recipe.seed), vocab)
    log(f"corpus: {len(train_stream):,} train tokens, {len(heldout_stream):,} held-out tokens; "
        f"vocabulary {sp_size} pieces + {EXTRA_IDS} sentinels (model vocab {cfg.vocab_size})")
    return _Build(recipe=recipe, out=out, sp_path=sp_path, digest=digest, started=started,
                  cfg=cfg, train_stream=train_stream, heldout_stream=heldout_stream)


class _History:
    """The build's history records (loss every 50 steps, diagnoses every `every` steps),
    each also handed to `on_record` as it is made."""

    def __init__(self, build: _Build, on_record: Callable[[dict], None] | None, every: int,
                 batches: int):
        self.build, self.on_record, self.every, self.batches = build, on_record, every, batches
        self.records: list[dict] = []

    def record(self, entry: dict) -> None:
        self.records.append(entry)
        if self.on_record is not None:
            self.on_record(entry)

    def diagnosis_due(self, step: int, total: int) -> bool:
        return bool(self.every) and (step % self.every == 0 or step == total)

    def diagnose(self, eval_step, params, step: int) -> None:
        """`encoder_reliance` on the default recipe's objectives (comparable across
        recipes), and on the recipe's own ones when they differ ("own_" keys)."""
        b = self.build
        t0 = time.time()
        reference = reference_objectives(b.recipe)
        rel = encoder_reliance(eval_step, params, b.heldout_stream, reference, b.cfg.vocab_size,
                               self.batches)
        own = {} if reference == b.recipe else encoder_reliance(
            eval_step, params, b.heldout_stream, b.recipe, b.cfg.vocab_size, self.batches)
        self.record({
            "step": step, "objective": "diagnosis", "seconds": round(time.time() - b.started, 1),
            "measure_seconds": round(time.time() - t0, 2), "batches": self.batches,
            **{f"{obj}_{k}": v for obj, d in rel.items() for k, v in d.items()},
            **{f"own_{obj}_{k}": v for obj, d in own.items() for k, v in d.items()}})


def _objective(recipe: BackboneRecipe, step: int) -> str:
    """The pretraining objective of `step`: random copy, copy, reconstruct, span, prefix LM."""
    if step < recipe.random_copy_steps:
        return "random_copy"
    phase = step - recipe.random_copy_steps - recipe.copy_steps
    return ("copy" if phase < 0 else
            "reconstruct" if phase < recipe.reconstruct_steps else
            "span" if phase < recipe.reconstruct_steps + recipe.span_steps else
            "prefix_lm")


def _pretrain(build: _Build, history: _History, *, log: Callable[[str], None],
              progress: bool):
    """The corpus phases' step loop; returns the trained parameters, the eval step and the
    size. The random-copy phase has its own optimizer (parameter-scaled Adafactor at
    `random_copy_learning_rate`, its own schedule); the corpus phases share the recipe's."""
    import jax

    from spot.model.t5 import Transformer, init_params

    recipe, cfg = build.recipe, build.cfg
    module = Transformer(cfg.replace(dropout_rate=recipe.dropout_rate))
    params = jax.tree_util.tree_map(jax.numpy.asarray, init_params(cfg, recipe.seed))
    total = recipe.pretraining_steps
    first = recipe.random_copy_steps
    copy_recipe = dataclasses.replace(recipe, optimizer="adafactor",
                                      learning_rate=recipe.random_copy_learning_rate)
    phases = [(copy_recipe, first), (recipe, total - first)]
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    log(f"pretraining a {n_params / 1e6:.1f}M-parameter T5 1.1: "
        + (f"{first} random-copy steps, " if first else "")
        + f"{recipe.reconstruct_steps} reconstruction steps, {recipe.span_steps} span-corruption "
        f"steps, then {recipe.prefix_lm_steps} prefix-LM steps, batch {recipe.batch_size}")
    rng = np.random.default_rng(recipe.seed)
    key = jax.random.PRNGKey(recipe.seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="step", desc="pretrain", dynamic_ncols=True)
    eval_step = _step_fns(module, None)[1]
    step = 0
    mean = float("nan")  # the last logged loss (shown on the progress bar)
    for phase_recipe, steps in phases:
        if not steps:
            continue
        optimizer = _optimizer(phase_recipe, steps)
        opt_state = optimizer.init(params)
        train_step, eval_step = _step_fns(module, optimizer)
        loss_acc = []
        for _ in range(steps):
            objective = _objective(recipe, step)
            batch = (random_copy_batch(rng, recipe.batch_size, recipe.random_copy_length,
                                       recipe.random_copy_alphabet)
                     if objective == "random_copy" else
                     make_batch(build.train_stream, objective, recipe, cfg.vocab_size, rng))
            params, opt_state, loss = train_step(params, opt_state, batch,
                                                 jax.random.fold_in(key, step))
            loss_acc.append(loss)
            step += 1
            if step % 50 == 0 or step == total or objective != _objective(recipe, step):
                mean = float(np.mean(jax.device_get(loss_acc)))
                if not math.isfinite(mean):
                    raise CheckpointError(f"backbone pretraining diverged at step {step}")
                history.record({"step": step, "objective": objective, "loss": mean,
                                "seconds": round(time.time() - build.started, 1)})
                loss_acc = []
            if history.diagnosis_due(step, total):
                history.diagnose(eval_step, params, step)
            if bar is not None:
                bar.set_postfix(objective=objective, loss=f"{mean:.3f}", refresh=False)
                bar.update(1)
    if bar is not None:
        bar.close()
    return params, eval_step, n_params


def _multitask_stage(build: _Build, params, history: _History, *,
                     log: Callable[[str], None], progress: bool) -> dict:
    """Model tuning of every weight on `recipe.multitask_mixture` (`spot.train.run.train`,
    mode "model"), in a run folder beside the cache entry that a killed build resumes.
    Returns the tuned parameters; each evaluation (the tuned model's score on every member
    task, the ceiling a prompt on the frozen result can reach) goes into the history."""
    import jax

    from spot.config import RunConfig, apply_overrides
    from spot.data.pipeline import fitted_input_length
    from spot.data.vocab import load_vocabulary
    from spot.model.api import T5, load_t5
    from spot.train.run import train

    recipe = build.recipe
    run_dir = build.out.with_name(build.out.name + ".multitask")
    vocab = load_vocabulary(build.sp_path, extra_ids=EXTRA_IDS)
    t5 = T5(build.cfg, jax.tree_util.tree_map(np.asarray, jax.device_get(params)), "float32")
    steps = recipe.multitask_steps
    log(f"multi-task stage: {steps} model-tuning steps on {recipe.multitask_mixture} "
        f"(Adafactor lr {recipe.multitask_learning_rate:g}, batch {recipe.batch_size}) in "
        f"{run_dir}")
    config = apply_overrides(RunConfig(), {
        "model.name": "embedded", "model.dtype": "float32", "model.param_dtype": "float32",
        "data.mixture": recipe.multitask_mixture, "data.task": "",
        "data.batch_size": recipe.batch_size,
        "data.input_length": fitted_input_length(recipe.multitask_mixture, vocab, 64),
        "data.target_length": 8, "data.max_eval_examples": 200, "data.eval_batch_size": 100,
        "optimizer.learning_rate": recipe.multitask_learning_rate, "optimizer.factored": True,
        "train.mode": "model", "train.steps": steps,
        "train.eval_every": min(recipe.multitask_eval_every, steps),
        "train.checkpoint_every": min(500, steps), "train.log_every": 50,
        "train.seed": recipe.seed, "train.out_dir": str(run_dir), "train.progress": progress})
    train(config, t5=t5, vocab=vocab, log=log)
    offset = recipe.pretraining_steps
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("kind") == "train":
            history.record({"step": offset + row["step"], "objective": "multitask",
                            "loss": row["cross_entropy"]})
        elif row.get("kind") == "eval":
            history.record({"step": offset + row["step"], "objective": "multitask_eval",
                            **{k: v for k, v in row.items() if k.endswith("score")}})
    return load_t5(run_dir / "model", "float32").params


def _saved_weights(recipe: BackboneRecipe, params) -> dict:
    """The parameters as `recipe.save_dtype` stores them (numpy)."""
    import jax

    host = jax.tree_util.tree_map(np.asarray, jax.device_get(params))
    if recipe.save_dtype == "bfloat16":
        import ml_dtypes

        return jax.tree_util.tree_map(lambda x: x.astype(ml_dtypes.bfloat16), host)
    return host


def _save(build: _Build, params, eval_step, n_params: int, history: list[dict],
          log: Callable[[str], None]) -> Path:
    """Held-out perplexities and encoder reliance (of the weights as saved), then the model,
    vocabulary and report into the cache folder (written beside it and renamed, so a cached
    backbone is always complete)."""
    import jax

    from spot.model.checkpoints import PARAMS_FILE, save_native

    recipe, cfg, out = build.recipe, build.cfg, build.out
    weights = _saved_weights(recipe, params)
    measured = jax.tree_util.tree_map(lambda x: jax.numpy.asarray(x, np.float32), weights)
    reliance = encoder_reliance(eval_step, measured, build.heldout_stream, recipe,
                                cfg.vocab_size)  # what `diagnose` (backbone info) measures
    ppl = {obj: reliance[obj]["perplexity"] for obj in ("span", "prefix_lm")}  # same batches
    unigram = _unigram_perplexity(build.train_stream, build.heldout_stream, cfg.vocab_size)
    seconds = time.time() - build.started
    log(f"held-out perplexity: span corruption {ppl['span']:.1f}, prefix LM "
        f"{ppl['prefix_lm']:.1f} (unigram baseline {unigram:.1f}); nats from the encoder: "
        f"span {reliance['span']['nats_from_encoder']:.3f}, prefix LM "
        f"{reliance['prefix_lm']['nats_from_encoder']:.3f}; {seconds / 60:.1f} min")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_native(tmp, cfg, weights, metadata={"recipe": dataclasses.asdict(recipe)})
    shutil.copyfile(build.sp_path, tmp / "vocab.model")
    report = {"recipe": dataclasses.asdict(recipe), "recipe_key": recipe.key(),
              "backbone_key": out.name.removeprefix("backbone-"), "data_digest": build.digest,
              "params_sha256": hashlib.sha256((tmp / PARAMS_FILE).read_bytes()).hexdigest(),
              "parameters": n_params, "train_tokens": int(len(build.train_stream)),
              "heldout_tokens": int(len(build.heldout_stream)),
              "heldout_perplexity": ppl, "heldout_encoder_reliance": reliance,
              "unigram_perplexity": unigram, "seconds": round(seconds, 1), "history": history}
    stage = [r for r in history if r.get("objective") == "multitask_eval"]
    if stage:
        report["multitask_scores"] = stage[-1]
    atomic_write_text(tmp / "pretraining.json", json.dumps(report, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def _pretrained(build: _Build, history: _History, *, log: Callable[[str], None],
                progress: bool):
    """The corpus phases' result. With a multi-task stage to follow, it is also kept in a
    folder beside the cache entry, so a build killed in the stage does not pretrain again."""
    import jax

    from spot.model.api import load_t5
    from spot.model.checkpoints import save_native

    keep = build.out.with_name(build.out.name + ".pretrained")
    report = keep / "history.json"
    if build.recipe.multitask_steps and report.is_file():
        made = json.loads(report.read_text(encoding="utf-8"))
        if made.get("recipe_key") == build.recipe.key():
            log(f"corpus phases already done: {keep}")
            for entry in made["history"]:
                history.record(entry)
            module = load_t5(keep, "float32")
            return module.params, _step_fns(module.module, None)[1], made["parameters"]
    params, eval_step, n_params = _pretrain(build, history, log=log, progress=progress)
    if build.recipe.multitask_steps:
        save_native(keep, build.cfg, jax.tree_util.tree_map(np.asarray, jax.device_get(params)))
        atomic_write_text(report, json.dumps({"recipe_key": build.recipe.key(),
                                              "parameters": n_params,
                                              "history": history.records}))
    return params, eval_step, n_params


def build_backbone(recipe: BackboneRecipe | None = None, *, force: bool = False,
                   log: Callable[[str], None] = print, progress: bool = True,
                   diagnose_every: int = 0, diagnose_batches: int = 4,
                   on_record: Callable[[dict], None] | None = None) -> Path:
    """Pretrain (or reuse) a backbone (default `EMBEDDED_RECIPE`); returns its folder: the
    user cache's build of the recipe, else the copy shipped with the package, else a new
    build into the cache (`force` always builds).

    `diagnose_every=N` also measures `encoder_reliance` on `diagnose_batches` held-out
    batches every N steps (and at the end) into the build's history, as records with
    objective "diagnosis"; it changes neither the weights nor the cache key. `on_record` sees
    every history record as it is made (the curve probes write them out as they go).
    """
    recipe = recipe or EMBEDDED_RECIPE
    started = time.time()
    # Looked up on the module at call time, as `backbone_path` does, so both agree on the
    # recipe's vocabulary file (a test points it at another file).
    if not force:
        # Without the recipe's vocabulary in the cache nothing can be cached under it, and
        # the shipped copy carries its own: the vocabulary is trained only for a build.
        cached = backbone.cached_backbone_path(recipe)
        if (cached / "config.json").is_file():
            log(f"embedded backbone already built: {cached}")
            return cached
        shipped = shipped_backbone(recipe)
        if shipped is not None:
            log(f"embedded backbone: the copy shipped with spot ({shipped}); "
                f"`spot backbone build --force` rebuilds it from its recipe")
            return shipped
    sp_path = backbone.vocabulary_path(recipe)
    out = cache_root() / f"backbone-{backbone_key(recipe, sp_path)}"
    build = _prepare(recipe, sp_path, out, started, log)
    history = _History(build, on_record, diagnose_every, diagnose_batches)
    params, eval_step, n_params = _pretrained(build, history, log=log, progress=progress)
    if recipe.multitask_steps:
        params = _multitask_stage(build, params, history, log=log, progress=progress)
    path = _save(build, params, eval_step, n_params, history.records, log)
    for side in (".pretrained", ".multitask"):
        shutil.rmtree(out.with_name(out.name + side), ignore_errors=True)
    return path


def diagnose(path: str | os.PathLike | None = None, *, batches: int = 8) -> dict:
    """How much the backbone's decoder reads its encoder, on held-out text.

    For each objective, the held-out perplexity with each example's own encoder input and
    with the encoder input of another example of the batch (rolled by one). A decoder that
    ignores its encoder scores both the same; `nats_from_encoder` is the per-token gain the
    real input brings. Prompt tuning acts only through the encoder, so a gain near zero
    means prompts cannot steer this backbone.
    """
    from spot.data.offline.corpus import load_corpus
    from spot.data.vocab import load_vocabulary
    from spot.model.api import load_t5

    path = Path(path) if path is not None else backbone_path()
    report_path = path / "pretraining.json"
    if not report_path.is_file():
        raise CheckpointError(f"{path}: no pretraining.json; not an embedded backbone folder")
    made = json.loads(report_path.read_text(encoding="utf-8"))
    recipe = BackboneRecipe(**made["recipe"])
    t5 = load_t5(path, "float32")
    vocab = load_vocabulary(path / "vocab.model", extra_ids=EXTRA_IDS)
    stream = token_stream(load_corpus("heldout", seed=recipe.seed), vocab)
    _, eval_step = _step_fns(t5.module, None)
    out = encoder_reliance(eval_step, t5.params, stream, recipe, t5.config.vocab_size, batches)
    return {"path": str(path), "recipe_key": made.get("recipe_key"), "batches": batches,
            "batch_size": recipe.batch_size, "heldout": out}


def _unigram_perplexity(train: np.ndarray, heldout: np.ndarray, vocab_size: int) -> float:
    """Add-one unigram model: the floor a language model must beat to have learned context."""
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(np.exp(-logp[heldout].mean()))
