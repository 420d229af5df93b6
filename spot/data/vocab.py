"""The SentencePiece vocabulary every task is tokenized with.

Tasks are registered as text; the vocabulary is chosen per run (T5's for real checkpoints,
the offline suite's own model for the embedded backbone), so it is loaded here by path and
passed to the pipeline, never baked into a task.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from spot.errors import DataError

DEFAULT_VOCAB = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"

_CACHE: dict[tuple[str, int], tuple[tuple[int, int] | None, Any]] = {}
_LOCK = threading.Lock()


def _stamp(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of a local file, so a file replaced in place is loaded anew."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _forget_seqio_model(path: str) -> None:
    """seqio keeps every parsed model by path for the life of the process; when the file at
    `path` has changed, that copy is stale, so seqio's model cache is emptied (it only costs
    a re-parse of the vocabularies still in use)."""
    from seqio import vocabularies

    loader = getattr(vocabularies, "_load_model_internal", None)
    if loader is not None and hasattr(loader, "cache_clear"):
        loader.cache_clear()


def _is_remote(path: str) -> bool:
    return "://" in path


def load_vocabulary(path: str | os.PathLike | None = None, extra_ids: int = 100):
    """A `seqio.SentencePieceVocabulary` for `path` (default: T5's public model), cached by
    path and, for a local file, its size and modification time.

    Local files are opened and parsed now, so a missing or corrupt file fails here with a
    `DataError` instead of deep inside the first batch.
    """
    from spot.quiet import import_seqio

    seqio = import_seqio()

    raw = str(path) if path is not None else DEFAULT_VOCAB
    key_path = raw if _is_remote(raw) else str(Path(raw).expanduser().resolve())
    key = (key_path, int(extra_ids))
    with _LOCK:
        stamp = None if _is_remote(raw) else _stamp(key_path)
        hit = _CACHE.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        if not _is_remote(raw):
            p = Path(key_path)
            if not p.is_file():
                raise DataError(f"vocabulary file {raw} does not exist")
        if hit is not None:
            _forget_seqio_model(key_path)
        vocab = seqio.SentencePieceVocabulary(key_path, extra_ids=extra_ids)
        try:
            vocab.load_model()
        except Exception as e:  # sentencepiece/protobuf/gfile raise many unrelated types
            raise DataError(f"cannot load the SentencePiece vocabulary {raw}: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                            ) from None
        _CACHE[key] = (stamp, vocab)
        return vocab


def vocab_key(vocab: Any) -> str:
    """A short stable identity for a vocabulary, used to key token caches."""
    path = getattr(vocab, "sentencepiece_model_file", None)
    extra = getattr(vocab, "extra_ids", 0)
    if path:
        return hashlib.sha1(f"{path}|{extra}|{type(vocab).__name__}".encode()).hexdigest()[:12]
    return f"obj{id(vocab):x}"
