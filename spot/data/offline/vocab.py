"""The embedded backbone's own SentencePiece vocabulary, trained on the offline corpus.

The real T5 vocabulary has 32,000 pieces; at emb_dim 128 its embedding table alone would be
~4M parameters, most of them for pieces the 2.6M-character corpus never shows often enough
to learn. 8,000 unigram pieces keep the table at ~1M parameters while prose still costs
only about 1.6 pieces per word (4,000 pieces: 1.8; measured in docs/offline_suite.md).

Training text: the corpus's train split cut into sentences, plus the *train* splits of every
offline task and the label words, so every task tokenizes into real pieces (byte fallback
covers any character never seen). Nothing from a validation split or the held-out corpus
reaches the vocabulary.

Ids follow T5: pad 0, eos 1, unk 2, no bos, so the file works as
`seqio.SentencePieceVocabulary(path, extra_ids=100)` with sentinels at the top.

Reproducibility: SentencePiece's unigram trainer is deterministic once it reads every
sentence in order (no sampling, no shuffling) on one thread; `build_vocabulary` sets all
three, and two builds give byte-identical model files (tested).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from spot.errors import DataError
from spot.fileio import atomic_write_bytes
from spot.model.t5_config import EOS_ID, PAD_ID

VOCAB_VERSION = 1
DEFAULT_VOCAB_SIZE = 8000
UNK_ID = 2


def cache_root() -> Path:
    """The one folder for everything spot caches (token arrays, this vocabulary, the embedded
    backbone, XLA's compilation cache): $SPOT_CACHE (or its older name $SPOT_CACHE_DIR),
    else $XDG_CACHE_HOME/spot, else ~/.cache/spot."""
    from spot.errors import ConfigError

    named = {v: os.environ[v] for v in ("SPOT_CACHE", "SPOT_CACHE_DIR") if os.environ.get(v)}
    if len(named) == 2 and Path(named["SPOT_CACHE"]) != Path(named["SPOT_CACHE_DIR"]):
        raise ConfigError(f"SPOT_CACHE ({named['SPOT_CACHE']}) and SPOT_CACHE_DIR "
                          f"({named['SPOT_CACHE_DIR']}) name different cache folders; set one")
    if named:
        return Path(next(iter(named.values())))
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spot"


# The suite tasks whose training splits feed the vocabulary, in this order: the suite as it
# was when the shipped backbone was built. A task added to the suite later is not in the
# list, so it does not change the vocabulary that `spot backbone build` reproduces (its words
# are pieced from what the list already covers; byte fallback means nothing maps to unk).
VOCAB_TASKS: tuple[str, ...] = tuple("offline_" + t for t in (
    "vader_valence", "news_tone", "review_polarity", "adjective_valence", "pos_word",
    "pos_in_context", "pos_inflected", "rel_plural", "rel_past_tense", "rel_comparative",
    "text_source", "same_article", "title_match", "wordsim_relatedness", "simlex_similarity"))


def training_text(seed: int = 0) -> list[str]:
    """The lines SentencePiece is trained on, in a fixed order: the corpus's training
    sentences, then the inputs and targets of `VOCAB_TASKS`' training splits, then every label
    word once."""
    from spot.data.offline import corpus, suite

    lines = [s for p in corpus.load_corpus("train", seed) for s in corpus.sentences(p)]
    labels: dict[str, None] = {}
    for task in (suite.build_task(name, seed) for name in VOCAB_TASKS):
        for ex in task.splits["train"]:
            lines += (ex["inputs"], ex["targets"])  # targets: label words become whole pieces
        labels.update(dict.fromkeys(task.label_words))
    lines += list(labels)
    return lines


def train_sentencepiece(lines: list[str], vocab_size: int) -> bytes:
    """A serialized unigram model trained deterministically on `lines`."""
    import sentencepiece as spm

    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=buf, model_type="unigram",
            vocab_size=int(vocab_size), character_coverage=1.0, byte_fallback=True,
            pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
            num_threads=1, shuffle_input_sentence=False, input_sentence_size=0,
            max_sentence_length=8192, minloglevel=2)
    except RuntimeError as e:
        raise DataError(f"SentencePiece training failed (vocab_size={vocab_size}): {e}") from e
    return buf.getvalue()


def build_vocabulary(out_dir: str | os.PathLike, *, vocab_size: int = DEFAULT_VOCAB_SIZE,
                     seed: int = 0) -> Path:
    """Train the vocabulary and write `<out_dir>/offline_sp<size>_seed<seed>.model` atomically."""
    if int(vocab_size) < 300:
        raise DataError(f"vocab_size {vocab_size} is too small: byte fallback alone needs 259 "
                        f"pieces")
    path = Path(out_dir) / f"offline_sp{int(vocab_size)}_seed{int(seed)}.model"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, train_sentencepiece(training_text(seed), vocab_size))
    return path


def default_vocabulary_path(seed: int = 0) -> Path:
    """The cached default vocabulary, trained on first use (about 15 s on one core).

    The file name carries the recipe version and the SentencePiece version, so a change in
    either trains a fresh model instead of silently reusing one built differently."""
    import sentencepiece as spm

    tag = hashlib.sha256(f"{VOCAB_VERSION}|{spm.__version__}|{DEFAULT_VOCAB_SIZE}|{seed}"
                         .encode()).hexdigest()[:10]
    folder = cache_root() / f"offline-vocab-{tag}"
    path = folder / f"offline_sp{DEFAULT_VOCAB_SIZE}_seed{int(seed)}.model"
    if not path.is_file():
        build_vocabulary(folder, vocab_size=DEFAULT_VOCAB_SIZE, seed=seed)
    return path
