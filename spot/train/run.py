"""From a `RunConfig` to a finished run folder: model, vocabulary, data, evaluators, loop.

This is the function behind `spot train-source`, `spot train-target` and the study grid;
notebooks call `spot.train.run.train(config)` directly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from spot.config import RunConfig, validate
from spot.errors import ConfigError
from spot.model.api import T5, load_t5, random_t5, resolve_dtype
from spot.model.t5 import T5Config
from spot.train.model_paths import resolve_model_path, resolve_vocab
from spot.train.step_cache import StepCache


def build_model(config: RunConfig) -> T5:
    """The model `config` names, with its resolved dtypes (model tuning stores float32
    weights unless `model.param_dtype` says otherwise) and remat policy."""
    m = config.resolve().model
    dtype = resolve_dtype(m.dtype)
    options = {"param_dtype": resolve_dtype(m.param_dtype), "attention_impl": m.attention_impl,
               "remat": False if m.remat == "none" else m.remat, "scan_layers": m.scan_layers}
    if m.random_weights:
        try:
            cfg = T5Config.preset(m.name)
        except ConfigError:
            raise ConfigError("model.random_weights needs a preset name as model.name") from None
        return random_t5(cfg, seed=config.train.seed, dtype=dtype, **options)
    return load_t5(resolve_model_path(m.name, m.checkpoint), dtype, **options)


def default_out_dir(config: RunConfig) -> Path:
    name = config.task_or_mixture.replace("/", "_")
    mode = "model" if config.train.mode == "model" else "prompt"
    return Path("runs") / f"{name}-{mode}-s{config.train.seed}"


def _label_words(names: list[str]) -> list[str]:
    from spot.data import registry

    words: list[str] = []
    for n in names:
        for w in registry.get(n).label_words or ():
            if w not in words:
                words.append(w)
    return words


def initial_trainable_fn(config: RunConfig, t5: T5, vocab: Any, members: list[str]
                         ) -> Callable[[], dict]:
    """Steps 2 and 3 of the resume order: --init file, else the configured initializer."""
    from spot.model.prompt import make_initial_prompt
    from spot.train.loop import trainable_from_prompt

    p = config.prompt

    def make() -> dict:
        if config.train.mode == "model":
            # A copy: the train step donates its state, and the caller's T5 must survive.
            import jax
            import jax.numpy as jnp

            return {"params": jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True),
                                                     t5.params)}
        settings, labels = p, None
        if p.init == "class_labels":
            labels = _label_words(members)
            if not labels:  # open-ended targets have no label words to embed
                settings = dataclasses.replace(p, init="sampled_vocab")
        prompt = make_initial_prompt(settings, embedding=t5.embedding, seed=config.train.seed,
                                     vocab=vocab, labels=labels)
        return trainable_from_prompt(prompt, reparameterize=p.reparameterize,
                                     hidden=p.encoder_hidden, seed=config.train.seed)

    return make


def check_init_prompt(config: RunConfig, emb_dim: int) -> None:
    """Fail on a mismatched --init prompt before anything compiles: the same check, and the
    same `PromptError`, as the initializer that later reads it."""
    if config.prompt.init != "file":
        return
    from spot.model.prompt import load_init_prompt

    load_init_prompt(config.prompt, emb_dim)


def _batches_fn(config: RunConfig, vocab: Any) -> Callable[[int], Any]:
    from spot.data import pipeline

    d = config.data

    def batches(start_step: int):
        return pipeline.train_batches(
            config.task_or_mixture, vocab=vocab, batch_size=d.batch_size,
            input_length=d.input_length, target_length=d.target_length, seed=config.train.seed,
            start_step=start_step, K=d.mixing_K)

    return batches


def _evaluator(config: RunConfig, t5: T5, vocab: Any, members: list[str],
               log: Callable[[str], None]):
    """Scores on each member's `data.eval_split`, or None when no member has that split."""
    from spot.data import pipeline, registry
    from spot.train.evaluate import make_evaluator

    d = config.data
    eval_sets = {}
    for name in members:
        if registry.get(name).num_examples(d.eval_split) == 0:
            continue
        eval_sets[name] = pipeline.eval_set(
            name, vocab=vocab, split=d.eval_split, input_length=d.input_length,
            target_length=d.target_length, max_examples=d.max_eval_examples or None)
    if not eval_sets:
        log(f"no {d.eval_split} split for {config.task_or_mixture}: training without evaluation")
        return None
    return make_evaluator(t5.module, eval_sets, vocab=vocab, method=config.train.eval_method,
                          batch_size=d.eval_batch_size, max_length=d.target_length)


def train(config: RunConfig, *, t5: T5 | None = None, vocab: Any = None,
          log: Callable[[str], None] = print, step_wrapper: Callable | None = None,
          step_cache: StepCache | None = None):
    """Run (or resume) one training run and return its `RunResult`.

    The config is resolved first (`spot.config.resolve`): a config that sets only
    `train.mode` gets that mode's recipe. A caller running many runs passes one
    `spot.train.step_cache.StepCache` to each so they share the jitted step."""
    from spot.data import registry
    from spot.data.local import register_task_file
    from spot.train.loop import RunPieces, check_resumable, run_loop
    from spot.train.preflight import preflight
    from spot.train.sharding import maybe_initialize_distributed

    config = validate(config)
    maybe_initialize_distributed(config.mesh)
    for f in config.data.task_files:
        register_task_file(f)
    info = registry.get(config.task_or_mixture)
    members = list(info.members)
    # Fail in seconds, before anything loads: model, vocabulary, data, the --out folder.
    out_dir = Path(config.train.out_dir) if config.train.out_dir else default_out_dir(config)
    check_resumable(out_dir, config)
    preflight(config, model=t5 is None, vocab=vocab is None)
    if t5 is None:
        t5 = build_model(config)
    check_init_prompt(config, t5.config.emb_dim)
    if vocab is None:
        vocab = resolve_vocab(config)
    metadata = {"task": config.task_or_mixture, "members": members,
                "model": config.model.checkpoint or config.model.name,
                "model_config": t5.config.to_dict(), "mode": config.train.mode}
    pieces = RunPieces(
        out_dir=out_dir, module=t5.module,
        frozen={} if config.train.mode == "model" else t5.params,
        initial_trainable=initial_trainable_fn(config, t5, vocab, members),
        batches=_batches_fn(config, vocab), evaluate=_evaluator(config, t5, vocab, members, log),
        metadata=metadata, step_wrapper=step_wrapper)
    result = run_loop(config, pieces, log=log, step_cache=step_cache)
    if config.train.mode == "model":
        keep_vocab_with_model(out_dir / "model", vocab)
    return result


def keep_vocab_with_model(model_dir: Path, vocab: Any) -> None:
    """Copy the run's SentencePiece file (when it came from a local file) into the saved
    model folder as vocab.model, where `resolve_vocab` looks beside a checkpoint, so a
    command loading RUN/model needs no --vocab."""
    from spot.fileio import atomic_write_bytes

    src = getattr(vocab, "sentencepiece_model_file", None)
    if not src or "://" in str(src) or not Path(src).is_file() or not model_dir.is_dir():
        return
    data = Path(src).read_bytes()
    dst = model_dir / "vocab.model"
    if not dst.is_file() or dst.read_bytes() != data:
        atomic_write_bytes(dst, data)
