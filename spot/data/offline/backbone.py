"""The embedded backbone: a tiny T5 1.1 the project pretrains itself on offline English prose.

Recipe (mirrors how the LM-adapted T5 1.1 checkpoints were made, at toy scale):
  (optional, `copy_steps`, off by default) copy a window of corpus tokens given in a random
     order, which only a decoder that reads its encoder can do;
  0. a short warm-up on full reconstruction (the span-corrupted input, the whole original
     window as target) for `reconstruct_steps` steps, meant to push the decoder to read
     the encoder (`spot backbone info --diagnose` measures how much it does);
  1. span corruption (noise density 0.15, mean span length 3, sentinels from the top of the
     vocabulary) for `span_steps` steps;
  2. prefix-LM adaptation (split a text window at a random point; predict the continuation)
     for `prefix_lm_steps` more steps.
The vocabulary is the project's own SentencePiece model trained on the same corpus
(`spot.data.offline.vocab`), plus 100 sentinel ids. Everything is seeded, so the build is
reproducible; the result is cached under the user cache folder and reused, in a folder
keyed by the recipe, the vocabulary's bytes and the corpus files (`backbone_key`).

`spot backbone build` runs it; `spot.train.run` loads it for `--model embedded`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from spot.errors import CheckpointError
from spot.fileio import atomic_write_text
from spot.data.offline.vocab import cache_root
from spot.model.t5 import T5Config

RECIPE_VERSION = 1
EOS_ID = 1
EXTRA_IDS = 100


@dataclasses.dataclass(frozen=True)
class BackboneRecipe:
    emb_dim: int = 128
    num_heads: int = 4
    head_dim: int = 32
    mlp_dim: int = 512
    num_layers: int = 4
    num_decoder_layers: int = 0  # 0: as many as the encoder (num_layers)
    vocab_size: int = 8000  # SentencePiece pieces, before the 100 sentinel ids
    batch_size: int = 32
    # 1,360 steps: the whole build measured 12.5 minutes on 2 CPU cores from a fresh clone
    # (docs/offline_suite.md), inside the 15-minute budget; scripts/bench_backbone_step.py
    # predicts the step time of a recipe from measured step times.
    # Optional first phase: copy a window of corpus tokens in a random order (the order is
    # the only thing the decoder cannot guess, so it must read the encoder).
    copy_steps: int = 0
    reconstruct_steps: int = 320
    span_steps: int = 600
    prefix_lm_steps: int = 440
    optimizer: str = "adamw"  # adamw | adafactor
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    window: int = 64  # raw tokens per example before corruption / splitting
    input_length: int = 64
    span_target_length: int = 24
    prefix_target_length: int = 16
    noise_density: float = 0.15
    mean_span: float = 3.0
    dropout_rate: float = 0.0
    seed: int = 0

    def key(self) -> str:
        """The recipe alone; the cache folder also hashes the data (`backbone_key`)."""
        blob = json.dumps({**dataclasses.asdict(self), "version": RECIPE_VERSION},
                          sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def vocabulary_path(recipe: BackboneRecipe, *, build: bool = True) -> Path:
    """The recipe's SentencePiece model in the user cache (trained on first use if `build`).

    The default size is exactly `vocab.default_vocabulary_path()` (same folder and file; a
    test checks it), other sizes sit beside it under the same naming rule."""
    import sentencepiece as spm

    from spot.data.offline import vocab as offline_vocab

    size, seed = int(recipe.vocab_size), int(recipe.seed)
    tag = hashlib.sha256(f"{offline_vocab.VOCAB_VERSION}|{spm.__version__}|{size}|{seed}"
                         .encode()).hexdigest()[:10]
    folder = cache_root() / f"offline-vocab-{tag}"
    path = folder / f"offline_sp{size}_seed{seed}.model"
    if build and not path.is_file():
        offline_vocab.build_vocabulary(folder, vocab_size=size, seed=seed)
    return path


def corpus_files() -> list[Path]:
    """What the pretraining corpus is made from: the raw package files `corpus.load_corpus`
    reads (`sources.wikipedia_articles`, `sources.lee_documents`) and the two modules that
    turn them into paragraphs. Their bytes identify the corpus (see `data_digest`)."""
    from spot.data.offline import corpus, sources

    raw = [sources.gensim_test_file(sources.WIKI_DUMP),
           sources.gensim_test_file("lee_background.cor"), sources.gensim_test_file("lee.cor")]
    return raw + [Path(sources.__file__), Path(corpus.__file__)]


_DIGESTS: dict[tuple, str] = {}


def _file_digest(path: Path) -> str:
    """sha256 of a file's bytes, memoized per (path, size, mtime) within the process."""
    st = path.stat()
    ident = (str(path), st.st_size, st.st_mtime_ns)
    if ident not in _DIGESTS:
        _DIGESTS[ident] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _DIGESTS[ident]


def data_digest(vocabulary: Path) -> dict[str, str]:
    """Digests of the vocabulary model's bytes and of the corpus files (a few ms: about
    2.5 MB hashed once per process)."""
    corpus = hashlib.sha256("|".join(f"{p.name}:{_file_digest(p)}" for p in corpus_files())
                            .encode()).hexdigest()
    return {"vocabulary": _file_digest(Path(vocabulary)), "corpus": corpus}


def backbone_key(recipe: BackboneRecipe, vocabulary: Path | None = None) -> str:
    """The cache key: the recipe, the vocabulary's bytes and the corpus's identity, so a build
    on another corpus or vocabulary never reuses (or overwrites) this one."""
    vocabulary = vocabulary or vocabulary_path(recipe, build=False)
    if not Path(vocabulary).is_file():
        return f"{recipe.key()}-novocab"  # nothing can be built or cached under it yet
    blob = json.dumps({"recipe": recipe.key(), **data_digest(vocabulary)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def backbone_path(recipe: BackboneRecipe | None = None) -> Path:
    """The cached backbone folder (native format + vocabulary); raises if not built yet."""
    recipe = recipe or BackboneRecipe()
    path = cache_root() / f"backbone-{backbone_key(recipe)}"
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"the embedded backbone is not built yet (expected at {path}); run "
            f"`spot backbone build` (about 10-15 minutes on 2 CPU cores)")
    return path


def model_config(recipe: BackboneRecipe, sp_size: int) -> T5Config:
    vocab = sp_size + EXTRA_IDS
    vocab = -(-vocab // 128) * 128  # pad like T5 (32,100 -> 32,128)
    return T5Config(vocab_size=vocab, emb_dim=recipe.emb_dim, num_heads=recipe.num_heads,
                    head_dim=recipe.head_dim, mlp_dim=recipe.mlp_dim,
                    num_encoder_layers=recipe.num_layers,
                    num_decoder_layers=recipe.num_decoder_layers or recipe.num_layers,
                    relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    dropout_rate=0.1)


# ---------------------------------------------------------------------------------------
# Objectives (numpy, seeded).
# ---------------------------------------------------------------------------------------

def random_spans_noise_mask(length: int, noise_density: float, mean_span: float,
                            rng: np.random.Generator) -> np.ndarray:
    """T5's span-corruption mask: about `noise_density * length` noise tokens in spans of
    mean length `mean_span`, alternating with non-noise spans, starting with non-noise."""
    num_noise = int(round(length * noise_density))
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = max(int(round(num_noise / mean_span)), 1)
    num_nonnoise = length - num_noise

    def segment(total: int, parts: int) -> np.ndarray:
        # Random composition of `total` into `parts` positive integers.
        cuts = np.sort(rng.choice(np.arange(1, total), size=parts - 1, replace=False)) \
            if parts > 1 else np.array([], int)
        return np.diff(np.concatenate([[0], cuts, [total]]))

    noise_lens = segment(num_noise, num_spans)
    nonnoise_lens = segment(num_nonnoise, num_spans)
    mask = np.zeros(length, bool)
    pos = 0
    for keep, drop in zip(nonnoise_lens, noise_lens):
        pos += keep
        mask[pos:pos + drop] = True
        pos += drop
    return mask


def span_corrupt(tokens: np.ndarray, mask: np.ndarray, vocab_size: int
                 ) -> tuple[list[int], list[int]]:
    """Inputs keep non-noise tokens with one sentinel per noise span; targets list each
    sentinel followed by the span it replaced (sentinel i = vocab_size - 1 - i)."""
    inputs, targets = [], []
    sentinel = 0
    prev = False
    for tok, noisy in zip(tokens.tolist(), mask.tolist()):
        if noisy:
            if not prev:
                s = vocab_size - 1 - sentinel
                inputs.append(s)
                targets.append(s)
                sentinel += 1
            targets.append(tok)
        else:
            inputs.append(tok)
        prev = noisy
    return inputs + [EOS_ID], targets + [EOS_ID]


def _pad(rows: list[list[int]], length: int) -> np.ndarray:
    out = np.zeros((len(rows), length), np.int32)
    for i, r in enumerate(rows):
        r = r[:length]
        out[i, : len(r)] = r
    return out


def _batch(inputs: list[list[int]], targets: list[list[int]], in_len: int, tgt_len: int):
    from spot.model.decode import shift_right

    enc, tgt = _pad(inputs, in_len), _pad(targets, tgt_len)
    return {"encoder_input_tokens": enc, "decoder_target_tokens": tgt,
            "decoder_input_tokens": shift_right(tgt),
            "decoder_loss_weights": (tgt > 0).astype(np.float32)}


def make_batch(stream: np.ndarray, objective: str, recipe: BackboneRecipe, vocab_size: int,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
    starts = rng.integers(0, len(stream) - recipe.window, size=recipe.batch_size)
    inputs, targets = [], []
    for s in starts:
        window = stream[s:s + recipe.window]
        if objective == "copy":
            shuffled = rng.permutation(window[: recipe.input_length - 1]).tolist()
            inputs.append(shuffled + [EOS_ID])
            targets.append(shuffled + [EOS_ID])
            continue
        if objective in ("span", "reconstruct"):
            mask = random_spans_noise_mask(len(window), recipe.noise_density, recipe.mean_span,
                                           rng)
            i, t = span_corrupt(window, mask, vocab_size)
            if objective == "reconstruct":
                t = window.tolist() + [EOS_ID]
        else:
            split = int(rng.integers(1, len(window)))
            i, t = window[:split].tolist() + [EOS_ID], window[split:].tolist() + [EOS_ID]
        inputs.append(i)
        targets.append(t)
    tgt_len = {"span": recipe.span_target_length, "prefix_lm": recipe.prefix_target_length,
               "reconstruct": recipe.window + 1, "copy": recipe.input_length}[objective]
    return _batch(inputs, targets, recipe.input_length, tgt_len)


def token_stream(texts: list[str], vocab) -> np.ndarray:
    """Concatenate documents as one token stream, EOS between documents."""
    out: list[int] = []
    for text in texts:
        ids = list(vocab.encode(text))
        if ids:
            out.extend(ids)
            out.append(EOS_ID)
    return np.asarray(out, np.int32)


# ---------------------------------------------------------------------------------------
# Training.
# ---------------------------------------------------------------------------------------

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

    from spot.train.step import cross_entropy

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


OBJECTIVE_FIELDS = ("window", "input_length", "span_target_length", "prefix_target_length",
                    "noise_density", "mean_span")


def reference_objectives(recipe: BackboneRecipe) -> BackboneRecipe:
    """`recipe` with the default recipe's objective settings (window, lengths, noise density,
    mean span): recipes that train on other objectives are compared on the same held-out task."""
    default = BackboneRecipe()
    return dataclasses.replace(recipe, **{f: getattr(default, f) for f in OBJECTIVE_FIELDS})


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


def build_backbone(recipe: BackboneRecipe | None = None, *, force: bool = False,
                   log: Callable[[str], None] = print, progress: bool = True,
                   diagnose_every: int = 0, diagnose_batches: int = 4,
                   on_record: Callable[[dict], None] | None = None) -> Path:
    """Pretrain (or reuse) the embedded backbone; returns its cached folder.

    `diagnose_every=N` also measures `encoder_reliance` on `diagnose_batches` held-out
    batches every N steps (and at the end) into the build's history, as records with
    objective "diagnosis"; it changes neither the weights nor the cache key. `on_record` sees
    every history record as it is made (the curve probes write them out as they go).
    """
    import jax

    from spot.data.offline.corpus import load_corpus
    from spot.data.vocab import load_vocabulary
    from spot.model.checkpoints import save_native
    from spot.model.t5 import Transformer, init_params

    recipe = recipe or BackboneRecipe()
    started = time.time()
    # The vocabulary and the corpus split share the seed, so the suite's validation text
    # stays out of both.
    sp_path = vocabulary_path(recipe)
    digest = data_digest(sp_path)
    out = cache_root() / f"backbone-{backbone_key(recipe, sp_path)}"
    if (out / "config.json").is_file() and not force:
        log(f"embedded backbone already built: {out}")
        return out
    vocab = load_vocabulary(sp_path, extra_ids=EXTRA_IDS)
    import sentencepiece as spm

    sp_size = spm.SentencePieceProcessor(model_file=str(sp_path)).get_piece_size()
    cfg = model_config(recipe, sp_size)
    train_stream = token_stream(load_corpus("train", seed=recipe.seed), vocab)
    heldout_stream = token_stream(load_corpus("heldout", seed=recipe.seed), vocab)
    log(f"corpus: {len(train_stream):,} train tokens, {len(heldout_stream):,} held-out tokens; "
        f"vocabulary {sp_size} pieces + {EXTRA_IDS} sentinels (model vocab {cfg.vocab_size})")

    module = Transformer(cfg.replace(dropout_rate=recipe.dropout_rate))
    params = jax.tree_util.tree_map(jax.numpy.asarray, init_params(cfg, recipe.seed))
    total = (recipe.copy_steps + recipe.reconstruct_steps + recipe.span_steps
             + recipe.prefix_lm_steps)
    optimizer = _optimizer(recipe, total)
    opt_state = optimizer.init(params)
    train_step, eval_step = _step_fns(module, optimizer)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    log(f"pretraining a {n_params / 1e6:.1f}M-parameter T5 1.1: {recipe.reconstruct_steps} "
        f"reconstruction steps, {recipe.span_steps} span-corruption steps, then "
        f"{recipe.prefix_lm_steps} prefix-LM steps, batch {recipe.batch_size}")
    rng = np.random.default_rng(recipe.seed)
    key = jax.random.PRNGKey(recipe.seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="step", desc="pretrain", dynamic_ncols=True)
    history: list[dict] = []
    loss_acc = []

    def record(entry: dict) -> None:
        history.append(entry)
        if on_record is not None:
            on_record(entry)

    def measure(step: int) -> None:
        t0 = time.time()
        # On the default recipe's objectives (comparable across recipes), and on the recipe's
        # own ones when they differ ("own_" keys).
        reference = reference_objectives(recipe)
        rel = encoder_reliance(eval_step, params, heldout_stream, reference, cfg.vocab_size,
                               diagnose_batches)
        own = {} if reference == recipe else encoder_reliance(
            eval_step, params, heldout_stream, recipe, cfg.vocab_size, diagnose_batches)
        record({"step": step, "objective": "diagnosis", "seconds": round(time.time() - started, 1),
                "measure_seconds": round(time.time() - t0, 2), "batches": diagnose_batches,
                **{f"{obj}_{k}": v for obj, d in rel.items() for k, v in d.items()},
                **{f"own_{obj}_{k}": v for obj, d in own.items() for k, v in d.items()}})

    for step in range(total):
        phase = step - recipe.copy_steps
        objective = ("copy" if phase < 0 else
                     "reconstruct" if phase < recipe.reconstruct_steps else
                     "span" if phase < recipe.reconstruct_steps + recipe.span_steps else
                     "prefix_lm")
        batch = make_batch(train_stream, objective, recipe, cfg.vocab_size, rng)
        params, opt_state, loss = train_step(params, opt_state, batch,
                                             jax.random.fold_in(key, step))
        loss_acc.append(loss)
        if (step + 1) % 50 == 0 or step + 1 == total:
            mean = float(np.mean(jax.device_get(loss_acc)))
            if not math.isfinite(mean):
                raise CheckpointError(f"backbone pretraining diverged at step {step + 1}")
            record({"step": step + 1, "objective": objective, "loss": mean,
                    "seconds": round(time.time() - started, 1)})
            loss_acc = []
        if diagnose_every and ((step + 1) % diagnose_every == 0 or step + 1 == total):
            measure(step + 1)
            if bar is not None:
                bar.set_postfix(objective=objective, loss=f"{mean:.3f}", refresh=False)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    ppl = {obj: heldout_perplexity(eval_step, params, heldout_stream, recipe, cfg.vocab_size, obj)
           for obj in ("span", "prefix_lm")}
    unigram = _unigram_perplexity(train_stream, heldout_stream, cfg.vocab_size)
    seconds = time.time() - started
    log(f"held-out perplexity: span corruption {ppl['span']:.1f}, prefix LM "
        f"{ppl['prefix_lm']:.1f} (unigram baseline {unigram:.1f}); {seconds / 60:.1f} min")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_native(tmp, cfg, jax.tree_util.tree_map(np.asarray, jax.device_get(params)),
                metadata={"recipe": dataclasses.asdict(recipe)})
    shutil.copyfile(sp_path, tmp / "vocab.model")
    report = {"recipe": dataclasses.asdict(recipe), "recipe_key": recipe.key(),
              "backbone_key": out.name.removeprefix("backbone-"), "data_digest": digest,
              "parameters": n_params, "train_tokens": int(len(train_stream)),
              "heldout_tokens": int(len(heldout_stream)),
              "heldout_perplexity": ppl, "unigram_perplexity": unigram,
              "seconds": round(seconds, 1), "history": history}
    atomic_write_text(tmp / "pretraining.json", json.dumps(report, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


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


def iterate_batches(stream: np.ndarray, objective: str, recipe: BackboneRecipe,
                    vocab_size: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    while True:
        yield make_batch(stream, objective, recipe, vocab_size, rng)
