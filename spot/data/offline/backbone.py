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

`spot backbone build` runs it (the loop is `spot.train.pretrain`); `spot.train.run` loads it
for `--model embedded`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from spot.data.offline.vocab import cache_root
from spot.errors import CheckpointError
from spot.model.t5 import T5Config
from spot.model.t5_config import EOS_ID

RECIPE_VERSION = 1
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


OBJECTIVE_FIELDS = ("window", "input_length", "span_target_length", "prefix_target_length",
                    "noise_density", "mean_span")


def reference_objectives(recipe: BackboneRecipe) -> BackboneRecipe:
    """`recipe` with the default recipe's objective settings (window, lengths, noise density,
    mean span): recipes that train on other objectives are compared on the same held-out task."""
    default = BackboneRecipe()
    return dataclasses.replace(recipe, **{f: getattr(default, f) for f in OBJECTIVE_FIELDS})
