"""The embedded backbone: a tiny T5 1.1 the project pretrains itself on offline English prose.

Recipe (mirrors how the LM-adapted T5 1.1 checkpoints were made, at toy scale, then adds
the supervised multi-task stage T5 1.0 had):
  (optional, `random_copy_steps`) copy a short sequence of random pieces in order, with its
     own Adafactor: the cheapest task that forces the decoder to read its encoder, and the one
     that made a frozen miniature steerable by a prompt (docs/offline_suite.md, section 5);
  (optional, `copy_steps`, off by default) copy a window of corpus tokens given in a random
     order, which only a decoder that reads its encoder can do;
  0. a short warm-up on full reconstruction (the span-corrupted input, the whole original
     window as target) for `reconstruct_steps` steps, meant to push the decoder to read
     the encoder (`spot backbone info --diagnose` measures how much it does);
  1. span corruption (noise density 0.15, mean span length 3, sentinels from the top of the
     vocabulary) for `span_steps` steps;
  2. prefix-LM adaptation (split a text window at a random point; predict the continuation)
     for `prefix_lm_steps` more steps;
  3. (optional, `multitask_steps`) model tuning of every weight on a mixture of tasks
     (`multitask_mixture`: the offline suite's *source* tasks; its targets are not in it),
     so that the frozen model holds what a prompt then only has to elicit.
`EMBEDDED_RECIPE` (the demo's backbone, shipped inside the package in bfloat16) turns both
optional phases on; `BackboneRecipe()` leaves them off (the tests' tiny recipes build on it).
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
from spot.errors import CheckpointError, ConfigError
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
    # The corpus phases: 1,360 steps, about 10 minutes on 2 CPU cores (docs/offline_suite.md);
    # scripts/bench_backbone_step.py predicts the step time of a recipe from measured ones.
    # Optional first phase: copy a window of corpus tokens in a random order (the order is
    # the only thing the decoder cannot guess, so it must read the encoder).
    copy_steps: int = 0
    # Optional first phase (before `copy_steps`): in-order copy of `random_copy_length`
    # random pieces (ids 3 .. 3 + alphabet), parameter-scaled Adafactor at its own rate.
    random_copy_steps: int = 0
    random_copy_length: int = 8
    random_copy_alphabet: int = 500
    random_copy_learning_rate: float = 0.03
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
    # Optional last stage: model tuning (`spot.train.run.train`, mode "model": Adafactor,
    # batch `batch_size`) on a registered mixture for `multitask_steps` steps.
    multitask_steps: int = 0
    multitask_mixture: str = "offline_sources"
    multitask_learning_rate: float = 1e-3
    multitask_eval_every: int = 500
    # The dtype of the saved weights ("float32" or "bfloat16"); held-out figures are measured
    # on the weights as saved.
    save_dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.save_dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"save_dtype must be float32 or bfloat16, got {self.save_dtype!r}")

    @property
    def pretraining_steps(self) -> int:
        """The steps of the corpus phases (random copy to prefix LM), not the task stage."""
        return (self.random_copy_steps + self.copy_steps + self.reconstruct_steps
                + self.span_steps + self.prefix_lm_steps)

    def key(self) -> str:
        """The recipe alone; the cache folder also hashes the data (`backbone_key`)."""
        blob = json.dumps({**dataclasses.asdict(self), "version": RECIPE_VERSION},
                          sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# The demo's backbone (`spot demo`, `--model embedded`): shipped inside the package in
# `SHIPPED_DIR` and rebuilt from this recipe by `spot backbone build --force` (about 40 minutes
# on 2 CPU cores; docs/offline_suite.md says what it was trained on and what it shows).
EMBEDDED_RECIPE = BackboneRecipe(random_copy_steps=300, multitask_steps=3000,
                                 save_dtype="bfloat16")
SHIPPED_DIR = Path(__file__).with_name("embedded_backbone")
_VERIFIED: dict[tuple, bool] = {}


def shipped_backbone(recipe: BackboneRecipe) -> Path | None:
    """The backbone folder shipped with the package when it was built from `recipe` (its
    weights checked against the sha256 its pretraining.json records), else None."""
    report = SHIPPED_DIR / "pretraining.json"
    if not report.is_file():
        return None
    made = json.loads(report.read_text(encoding="utf-8"))
    if made.get("recipe_key") != recipe.key():
        return None
    if made.get("data_digest", {}).get("stage") != stage_digest(recipe):
        return None  # model-tuned on another mixture than the package's source tasks
    weights = SHIPPED_DIR / "params.safetensors"
    st = weights.stat() if weights.is_file() else None
    ident = (str(weights), st and st.st_size, st and st.st_mtime_ns)
    if ident not in _VERIFIED:
        _VERIFIED[ident] = st is not None and hashlib.sha256(
            weights.read_bytes()).hexdigest() == made.get("params_sha256")
    if not _VERIFIED[ident]:
        raise CheckpointError(f"{weights}: missing or not the file its pretraining.json records "
                              f"(sha256 {made.get('params_sha256')}); reinstall spot or run "
                              f"`spot backbone build --force`")
    return SHIPPED_DIR


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


_STAGE_DIGESTS: dict[tuple, str] = {}


def stage_digest(recipe: BackboneRecipe) -> str | None:
    """sha256 of what the multi-task stage trains on: the mixture's member names and, for
    offline suite tasks, every example of their training splits (None without a stage). A
    change of which tasks are sources, or of how one is built, changes it, so a backbone
    model-tuned on another mixture is never taken for this recipe's. The first computation
    builds the source tasks (about 7 s on 2 cores); it is then kept in the user cache."""
    if not recipe.multitask_steps:
        return None
    from spot.data import registry

    members = registry.get(recipe.multitask_mixture).members
    if members not in _STAGE_DIGESTS:
        _STAGE_DIGESTS[members] = _stage_digest_on_disk(members)
    return _STAGE_DIGESTS[members]


def _stage_digest_on_disk(members: tuple[str, ...]) -> str:
    """`stage_digest` of a mixture, kept in the user cache under what the offline tasks are
    built from (the suite's module, the corpus files and their modules, and the versions of
    the three packages whose data they read), so a later process reads it instead of
    building the tasks again."""
    import importlib.metadata

    from spot.data.offline import suite
    from spot.fileio import atomic_write_text

    inputs = {"members": list(members),
              "files": [f"{p.name}:{_file_digest(p)}"
                        for p in (Path(suite.__file__), *corpus_files())],
              "packages": {name: _version(importlib.metadata, name)
                           for name in ("gensim", "vaderSentiment", "textblob")}}
    tag = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "stage-digests" / f"{tag}.txt"
    try:
        text = path.read_text(encoding="utf-8").strip()
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
            return text
    except OSError:
        pass
    blob = {m: (suite.build_task(m, 0).splits["train"] if m in suite.TASK_NAMES else None)
            for m in members}
    digest = hashlib.sha256(json.dumps({"members": list(members), "train": blob},
                                       sort_keys=True).encode()).hexdigest()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, digest + "\n")
    except OSError:
        pass  # a read-only cache: computed again next time
    return digest


def _version(metadata, name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def data_digest(vocabulary: Path, recipe: BackboneRecipe | None = None) -> dict[str, str]:
    """Digests of the vocabulary model's bytes and of the corpus files (a few ms: about
    2.5 MB hashed once per process), and with a multi-task stage in `recipe`, of its
    training data (`stage_digest`)."""
    corpus = hashlib.sha256("|".join(f"{p.name}:{_file_digest(p)}" for p in corpus_files())
                            .encode()).hexdigest()
    out = {"vocabulary": _file_digest(Path(vocabulary)), "corpus": corpus}
    if recipe is not None and (stage := stage_digest(recipe)) is not None:
        out["stage"] = stage
    return out


def backbone_key(recipe: BackboneRecipe, vocabulary: Path | None = None) -> str:
    """The cache key: the recipe, the vocabulary's bytes, the corpus's identity and the
    stage's training data, so a build on another corpus, vocabulary or task mixture never
    reuses (or overwrites) this one."""
    vocabulary = vocabulary or vocabulary_path(recipe, build=False)
    if not Path(vocabulary).is_file():
        return f"{recipe.key()}-novocab"  # nothing can be built or cached under it yet
    blob = json.dumps({"recipe": recipe.key(), **data_digest(vocabulary, recipe)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cached_backbone_path(recipe: BackboneRecipe) -> Path:
    """Where a build of `recipe` is cached (whether or not it is built)."""
    return cache_root() / f"backbone-{backbone_key(recipe)}"


def backbone_path(recipe: BackboneRecipe | None = None) -> Path:
    """The backbone folder of `recipe` (default `EMBEDDED_RECIPE`; native format + vocabulary):
    a build in the user cache, else the copy shipped with the package; raises if neither."""
    recipe = recipe or EMBEDDED_RECIPE
    path = cached_backbone_path(recipe)
    if (path / "config.json").is_file():
        return path
    shipped = shipped_backbone(recipe)
    if shipped is not None:
        return shipped
    raise CheckpointError(
        f"the embedded backbone is not built yet (expected at {path}); run "
        f"`spot backbone build`")


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


def random_copy_batch(rng: np.random.Generator, batch_size: int, length: int = 8,
                      alphabet: int = 500) -> dict[str, np.ndarray]:
    """In-order copy of `length` random pieces (ids 3 .. 3 + alphabet), EOS-terminated: only
    the encoder knows the next token, so the loss falls only as the decoder reads it."""
    from spot.model.decode import shift_right

    seq = rng.integers(3, 3 + alphabet, size=(batch_size, length)).astype(np.int32)
    enc = np.concatenate([seq, np.full((batch_size, 1), EOS_ID, np.int32)], 1)
    return {"encoder_input_tokens": enc, "decoder_target_tokens": enc.copy(),
            "decoder_input_tokens": shift_right(enc),
            "decoder_loss_weights": np.ones_like(enc, np.float32)}


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
