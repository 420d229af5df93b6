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

_CACHE: dict[tuple[str, int], Any] = {}
_LOCK = threading.Lock()


def _is_remote(path: str) -> bool:
    return "://" in path


def load_vocabulary(path: str | os.PathLike | None = None, extra_ids: int = 100):
    """A `seqio.SentencePieceVocabulary` for `path` (default: T5's public model), cached by path.

    Local files are opened and parsed now, so a missing or corrupt file fails here with a
    `DataError` instead of deep inside the first batch.
    """
    import seqio

    raw = str(path) if path is not None else DEFAULT_VOCAB
    key_path = raw if _is_remote(raw) else str(Path(raw).expanduser().resolve())
    key = (key_path, int(extra_ids))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if not _is_remote(raw):
            p = Path(key_path)
            if not p.is_file():
                raise DataError(f"vocabulary file {raw} does not exist")
        vocab = seqio.SentencePieceVocabulary(key_path, extra_ids=extra_ids)
        try:
            vocab.load_model()
        except Exception as e:  # sentencepiece/protobuf/gfile raise many unrelated types
            raise DataError(f"cannot load the SentencePiece vocabulary {raw}: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                            ) from None
        _CACHE[key] = vocab
        return vocab


def vocab_key(vocab: Any) -> str:
    """A short stable identity for a vocabulary, used to key token caches."""
    path = getattr(vocab, "sentencepiece_model_file", None)
    extra = getattr(vocab, "extra_ids", 0)
    if path:
        return hashlib.sha1(f"{path}|{extra}|{type(vocab).__name__}".encode()).hexdigest()[:12]
    return f"obj{id(vocab):x}"
