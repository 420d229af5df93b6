"""Batches for training and evaluation sets, with any vocabulary.

Design (and its costs):
* Each (task, split, vocabulary) is read and tokenized once into a flat token array with
  offsets (uint16 when the vocabulary fits), kept in host memory for the process and, for
  prepared TFDS data, built-in file tasks and user task files, in an on-disk cache
  (<cache root>/tokens, the root of `spot.data.offline.vocab.cache_root`: $SPOT_CACHE,
  else $XDG_CACHE_HOME/spot, else ~/.cache/spot; SPOT_TOKEN_CACHE=0 turns it off).
  Reading is O(split size); everything after is indexing.
* The training stream is a pure function of (seed, batch index): a task's stream visits a
  fresh permutation of its examples every epoch (permutation e is drawn from
  (seed, task, e)); a mixture assigns stream positions to members in chunks, each chunk
  drawing its member counts from a multinomial with the examples-proportional
  probabilities and then a random order of those draws (together: i.i.d. member choices).
* So resuming at `start_step=n` costs one multinomial draw per earlier chunk
  (n * batch / CHUNK draws; about 1 ms for 2**18 steps of 32) plus one permutation per
  member: no example is re-read or re-tokenized, and the batches equal those an
  uninterrupted iterator yields from its n-th batch on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import threading
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from spot.data import registry, scoring
from spot.data.vocab import vocab_key
from spot.errors import DataError
from spot.fileio import atomic_open

CHUNK = 16384  # stream positions per mixture chunk
_ENCODE_BATCH = 4096
_MIX_TAG = 0x6D6978  # separates the mixture's random stream from the tasks' permutations


@dataclasses.dataclass(frozen=True)
class TokenStore:
    """Token ids of one split: example i's inputs are inputs[in_off[i]:in_off[i+1]]."""

    inputs: np.ndarray
    in_off: np.ndarray
    targets: np.ndarray
    tg_off: np.ndarray

    def __len__(self) -> int:
        return len(self.in_off) - 1


_STORES: dict[tuple[str, str, str], TokenStore] = {}
_STORE_LOCKS: dict[tuple[str, str, str], threading.Lock] = {}
_LOCK = threading.Lock()


def clear_caches() -> None:
    with _LOCK:
        _STORES.clear()


def eos_id(vocab: Any) -> int:
    eid = getattr(vocab, "eos_id", None)
    return 1 if eid is None else int(eid)


def encode_many(vocab: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of many strings; SentencePiece vocabularies encode the batch natively."""
    tokenizer = None
    if type(vocab).__name__ == "SentencePieceVocabulary":
        tokenizer = getattr(vocab, "tokenizer", None)
    if tokenizer is not None:
        return tokenizer.encode(list(texts), out_type=int)
    return [list(vocab.encode(t)) for t in texts]


def _id_dtype(vocab: Any) -> type:
    size = getattr(vocab, "vocab_size", None)
    return np.uint16 if size is not None and int(size) <= np.iinfo(np.uint16).max else np.int32


def _flatten(seqs: list[list[int]], dtype) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(s) for s in seqs), np.int64, count=len(seqs))
    flat = np.fromiter(itertools.chain.from_iterable(seqs), dtype, count=int(lengths.sum()))
    return flat, lengths


def token_store(task: str, split: str, vocab: Any) -> TokenStore:
    """The tokenized split (built on first use, then cached for the process)."""
    key = (task, split, vocab_key(vocab))
    with _LOCK:
        if key in _STORES:
            return _STORES[key]
        lock = _STORE_LOCKS.setdefault(key, threading.Lock())
    with lock:
        with _LOCK:
            if key in _STORES:
                return _STORES[key]
        store = _cached_or_built(task, split, vocab)
        with _LOCK:
            _STORES[key] = store
        return store


def fitted_input_length(name: str, vocab: Any, cap: int, multiple: int = 8) -> int:
    """The shortest input length (a multiple of 8, at most `cap`) that holds every train and
    validation input of a task or mixture with its EOS. Word tasks need about 16 tokens,
    sentence tasks about 48: padding them all to `cap` would spend most compute on padding."""
    longest = 1
    for member in registry.get(name).members:
        for split in ("train", "validation"):
            store = token_store(member, split, vocab)
            if len(store):
                longest = max(longest, int(np.diff(store.in_off).max()) + 1)
    return int(min(cap, -(-longest // multiple) * multiple))


def _build_store(task: str, split: str, vocab: Any) -> TokenStore:
    info = registry.get(task)
    dtype = _id_dtype(vocab)
    in_parts, in_lens, tg_parts, tg_lens = [], [], [], []
    examples = info.iter_examples(split)
    while True:
        chunk = list(itertools.islice(examples, _ENCODE_BATCH))
        if not chunk:
            break
        flat, lens = _flatten(encode_many(vocab, [e["inputs"] for e in chunk]), dtype)
        in_parts.append(flat)
        in_lens.append(lens)
        flat, lens = _flatten(encode_many(vocab, [e["targets"] for e in chunk]), dtype)
        tg_parts.append(flat)
        tg_lens.append(lens)
    if not in_lens:
        raise DataError(f"task {task} has no examples in split {split!r} "
                        f"({info.location()})")

    def offsets(lens: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(np.concatenate(lens))]).astype(np.int64)

    return TokenStore(np.concatenate(in_parts), offsets(in_lens), np.concatenate(tg_parts),
                      offsets(tg_lens))


# ---------------------------------------------------------------------------------------
# On-disk token cache: tokenizing a corpus-scale split takes minutes, and every process of
# a study grid would repeat it. Only data that cannot change under the same key are cached:
# prepared TFDS datasets, the built-in local-file tasks (keyed by file size and mtime) and
# user task files (keyed by their content digest).

FORMAT_VERSION = 1  # bump when a formatter's output changes


def cache_dir() -> Path | None:
    if os.environ.get("SPOT_TOKEN_CACHE", "1").lower() in ("0", "false", "no"):
        return None
    from spot.data.offline.vocab import cache_root

    return cache_root() / "tokens"


def _vocab_digest(vocab: Any) -> str | None:
    model = getattr(vocab, "sp_model", None)
    if not isinstance(model, bytes):
        return None
    return hashlib.sha256(model).hexdigest()


def _cache_key(task: str, split: str, vocab: Any) -> str | None:
    info = registry.get(task)
    if info.source not in ("tfds", "file") or not info.available():
        return None
    vocab_digest = _vocab_digest(vocab)
    if vocab_digest is None:
        return None
    # Each backend says what its split depends on: prepared TFDS stamps, a built-in task's
    # file stamp, or a user task file's content digest; None means "do not cache".
    identity = getattr(info._backend, "cache_identity", None)
    data = identity(split) if identity is not None else None
    if data is None:
        return None
    blob = repr((FORMAT_VERSION, task, split, data, vocab_digest))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _cached_or_built(task: str, split: str, vocab: Any) -> TokenStore:
    root = cache_dir()
    key = _cache_key(task, split, vocab) if root is not None else None
    path = root / task / f"{split}-{key}.npz" if key else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                store = TokenStore(z["inputs"], z["in_off"], z["targets"], z["tg_off"])
            if (store.in_off[-1] == len(store.inputs) and store.tg_off[-1] == len(store.targets)
                    and len(store.in_off) == len(store.tg_off)):
                return store
        except (OSError, ValueError, KeyError):
            pass  # a torn or foreign file: rebuild it below
    store = _build_store(task, split, vocab)
    if path is not None:
        try:
            with atomic_open(path, "wb") as f:
                np.savez(f, inputs=store.inputs, in_off=store.in_off, targets=store.targets,
                         tg_off=store.tg_off)
        except OSError:
            pass  # a read-only cache folder only costs the next process the tokenization
    return store


# ---------------------------------------------------------------------------------------
# The deterministic stream


def _task_salt(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


class _Permutations:
    """Epoch permutations of one member's examples, cached a few epochs deep."""

    def __init__(self, n: int, seed: int, name: str):
        self.n, self.seed, self.salt = n, seed, _task_salt(name)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def epoch(self, e: int) -> np.ndarray:
        p = self._cache.get(e)
        if p is None:
            p = np.random.default_rng([self.seed, self.salt, e]).permutation(self.n)
            self._cache[e] = p
            if len(self._cache) > 4:
                self._cache.popitem(last=False)
        return p

    def take(self, positions: np.ndarray) -> np.ndarray:
        """Example indices at these positions of the member's endless stream."""
        epochs, offsets = np.divmod(positions, self.n)
        out = np.empty(len(positions), np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self.epoch(int(e))[offsets[sel]]
        return out


def _chunk_rng(seed: int, chunk: int) -> np.random.Generator:
    return np.random.default_rng([seed, _MIX_TAG, chunk])


class _Stream:
    """Stream position -> (member, example index) for a task or a mixture."""

    def __init__(self, names: Sequence[str], sizes: Sequence[int], probs: np.ndarray | None,
                 seed: int):
        self.perms = [_Permutations(n, seed, name) for name, n in zip(names, sizes)]
        self.probs = probs
        self.seed = seed
        self._chunk = -1
        self._assign: np.ndarray | None = None
        self._local: np.ndarray | None = None
        self._base = np.zeros(len(names), np.int64)  # member positions before chunk _chunk

    def _counts(self, chunk: int) -> np.ndarray:
        return _chunk_rng(self.seed, chunk).multinomial(CHUNK, self.probs)

    def _load_chunk(self, c: int) -> None:
        if c == self._chunk + 1 and self._assign is not None:
            base = self._base + np.bincount(self._assign, minlength=len(self.perms))
        elif c == self._chunk:
            return
        else:  # a jump (resume): add up the member counts of every earlier chunk
            base = np.zeros(len(self.perms), np.int64)
            for k in range(c):
                base += self._counts(k)
        rng = _chunk_rng(self.seed, c)
        counts = rng.multinomial(CHUNK, self.probs)
        assign = rng.permutation(np.repeat(np.arange(len(self.perms)), counts))
        local = np.empty(CHUNK, np.int64)
        for m in range(len(self.perms)):
            sel = assign == m
            local[sel] = base[m] + np.arange(int(sel.sum()))
        self._chunk, self._assign, self._local, self._base = c, assign, local, base

    def take(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        positions = np.arange(start, start + count, dtype=np.int64)
        if self.probs is None:
            return np.zeros(count, np.int64), self.perms[0].take(positions)
        members = np.empty(count, np.int64)
        local = np.empty(count, np.int64)
        chunks, within = np.divmod(positions, CHUNK)
        for c in np.unique(chunks):
            self._load_chunk(int(c))
            sel = chunks == c
            members[sel] = self._assign[within[sel]]
            local[sel] = self._local[within[sel]]
        idx = np.empty(count, np.int64)
        for m in np.unique(members):
            sel = members == m
            idx[sel] = self.perms[int(m)].take(local[sel])
        return members, idx


def _pad_rows(flat: np.ndarray, offsets: np.ndarray, rows: np.ndarray, length: int,
              eos: int) -> tuple[np.ndarray, int]:
    """[len(rows), length] int32: each sequence truncated to length-1, EOS, zero padding."""
    out = np.zeros((len(rows), length), np.int32)
    truncated = 0
    for b, i in enumerate(rows):
        lo, hi = offsets[i], offsets[i + 1]
        n = hi - lo
        if n > length - 1:
            n = length - 1
            truncated += 1
        out[b, :n] = flat[lo:lo + n]
        out[b, n] = eos
    return out, truncated


def _batch(stores: Sequence[TokenStore], members: np.ndarray, idx: np.ndarray,
           input_length: int, target_length: int, eos: int) -> dict[str, np.ndarray]:
    B = len(idx)
    enc = np.zeros((B, input_length), np.int32)
    tgt = np.zeros((B, target_length), np.int32)
    for m in np.unique(members):
        sel = np.nonzero(members == m)[0]
        s = stores[int(m)]
        enc[sel] = _pad_rows(s.inputs, s.in_off, idx[sel], input_length, eos)[0]
        tgt[sel] = _pad_rows(s.targets, s.tg_off, idx[sel], target_length, eos)[0]
    dec_in = np.zeros_like(tgt)
    dec_in[:, 1:] = tgt[:, :-1]
    return {"encoder_input_tokens": enc, "decoder_target_tokens": tgt,
            "decoder_input_tokens": dec_in,
            "decoder_loss_weights": (tgt != 0).astype(np.float32)}


def _check_positive(**values: int) -> None:
    for k, v in values.items():
        if int(v) < 1:
            raise DataError(f"{k} must be positive, got {v}")


def _stream_for(name: str, *, vocab: Any, split: str, seed: int, K: int | None
                ) -> tuple[_Stream, list[TokenStore]]:
    info = registry.get(name)
    members = list(info.members)
    stores = [token_store(m, split, vocab) for m in members]
    probs = None
    if info.is_mixture:
        rates = info.rates(K)
        w = np.array([rates[m] for m in members], np.float64)
        if w.sum() <= 0:
            raise DataError(f"mixture {name}: every member has zero examples")
        probs = w / w.sum()
    return _Stream(members, [len(s) for s in stores], probs, int(seed)), stores


def train_batches(name: str, *, vocab: Any, batch_size: int, input_length: int,
                  target_length: int, seed: int, start_step: int = 0, split: str = "train",
                  K: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Endless, deterministic, resumable training batches of a task or mixture.

    Batch n is a function of (seed, n) alone, so `start_step=n` resumes exactly. Keys:
    encoder_input_tokens, decoder_target_tokens, decoder_input_tokens (int32) and
    decoder_loss_weights (float32); sequences end in EOS, are truncated and 0-padded.
    """
    _check_positive(batch_size=batch_size, input_length=input_length,
                    target_length=target_length)
    if int(start_step) < 0:
        raise DataError(f"start_step must be >= 0, got {start_step}")
    if K is not None and int(K) < 1:
        raise DataError(f"K must be positive, got {K}")
    stream, stores = _stream_for(name, vocab=vocab, split=split, seed=seed, K=K)
    eos = eos_id(vocab)
    B = int(batch_size)

    def generate() -> Iterator[dict[str, np.ndarray]]:
        step = int(start_step)
        while True:
            members, idx = stream.take(step * B, B)
            yield _batch(stores, members, idx, int(input_length), int(target_length), eos)
            step += 1

    return generate()


# ---------------------------------------------------------------------------------------
# Evaluation


@dataclasses.dataclass
class EvalSet:
    task: registry.TaskInfo
    split: str
    encoder_input_tokens: np.ndarray  # int32 [N, input_length]
    decoder_target_tokens: np.ndarray  # int32 [N, target_length]
    inputs: list[str]
    targets: list[str]
    examples: list[dict]
    label_token_ids: list[list[int]] | None
    num_truncated_inputs: int = 0

    def __len__(self) -> int:
        return len(self.targets)


def eval_examples(info: registry.TaskInfo, split: str, max_examples: int | None) -> list[dict]:
    """The examples a capped evaluation scores: the whole split, or `max_examples` of it.

    For a closed-label task (label words set) the cap takes the classes in equal shares (the
    first examples of each class, in split order; the remainder goes to the classes met first),
    so its majority baseline is that of the split and not of whatever order the split's head
    happens to have; a class with too few examples leaves its share to the others. Other
    tasks keep the first `max_examples`."""
    if max_examples is None or not info.label_words:
        return list(itertools.islice(info.iter_examples(split), max_examples))
    cap = int(max_examples)
    rows = list(info.iter_examples(split))
    if len(rows) <= cap:
        return rows
    by_class: dict[str, list[int]] = {}
    for i, e in enumerate(rows):
        by_class.setdefault(str(e["targets"]), []).append(i)
    queues = list(by_class.values())
    chosen: list[int] = []
    depth = 0
    while len(chosen) < cap:  # round robin: one example of each class per round
        for q in queues:
            if depth < len(q) and len(chosen) < cap:
                chosen.append(q[depth])
        depth += 1
    return [rows[i] for i in sorted(chosen)]


def eval_set(name: str, *, vocab: Any, split: str = "validation", input_length: int,
             target_length: int, max_examples: int | None = None) -> EvalSet:
    """A single task's split (or `max_examples` of it, see `eval_examples`), tokenized, with
    the raw fields its metrics need and the label words tokenized for rank classification."""
    _check_positive(input_length=input_length, target_length=target_length)
    info = registry.get(name)
    if info.is_mixture:
        raise DataError(f"{name} is a mixture: evaluate its members "
                        f"({', '.join(info.members)}) one at a time")
    if max_examples is not None and int(max_examples) < 1:
        raise DataError(f"max_examples must be positive, got {max_examples}")
    examples = eval_examples(info, split, max_examples)
    if not examples:
        raise DataError(f"task {name} has no examples in split {split!r} ({info.location()})")
    eos = eos_id(vocab)
    dtype = _id_dtype(vocab)
    inputs = [e["inputs"] for e in examples]
    targets = [e["targets"] for e in examples]
    flat, lens = _flatten(encode_many(vocab, inputs), dtype)
    off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    rows = np.arange(len(examples))
    enc, truncated = _pad_rows(flat, off, rows, int(input_length), eos)
    flat, lens = _flatten(encode_many(vocab, targets), dtype)
    off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    tgt, _ = _pad_rows(flat, off, rows, int(target_length), eos)
    label_ids = None
    if info.label_words:
        label_ids = [ids + [eos] for ids in encode_many(vocab, list(info.label_words))]
    return EvalSet(task=info, split=split, encoder_input_tokens=enc,
                   decoder_target_tokens=tgt, inputs=inputs, targets=targets,
                   examples=examples, label_token_ids=label_ids,
                   num_truncated_inputs=truncated)


def score(name: str, predictions: Sequence[str], eval_set: EvalSet) -> dict[str, float]:
    """The task's metrics on predicted text (0-100) plus `score`, their average."""
    info = registry.get(name)
    return scoring.compute(info.metrics, list(predictions), eval_set.targets,
                           eval_set.examples, label_words=info.label_words,
                           postprocessor=info.postprocessor)
