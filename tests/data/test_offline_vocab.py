"""The offline SentencePiece vocabulary: reproducible, T5 ids, covers every task."""

from __future__ import annotations

import numpy as np
import pytest

from spot.data.offline import suite, vocab


@pytest.fixture(scope="module")
def default_path(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPOT_CACHE", str(tmp_path_factory.mktemp("cache")))
        path = vocab.default_vocabulary_path()
        mtime = path.stat().st_mtime_ns
        assert vocab.default_vocabulary_path() == path  # cached, not rebuilt
        assert path.stat().st_mtime_ns == mtime
    return path


def test_cache_location(default_path, tmp_path, monkeypatch):
    assert default_path.parent.parent.name.startswith("cache")
    monkeypatch.delenv("SPOT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert vocab.cache_root() == tmp_path / "spot"


def test_two_builds_are_byte_identical(default_path, tmp_path):
    again = vocab.build_vocabulary(tmp_path, vocab_size=vocab.DEFAULT_VOCAB_SIZE, seed=0)
    assert again.read_bytes() == default_path.read_bytes()
    assert not list(tmp_path.glob("*.tmp*"))  # atomic write left nothing behind


def test_t5_special_ids_and_seqio(default_path):
    import sentencepiece as spm
    import seqio

    sp = spm.SentencePieceProcessor(model_file=str(default_path))
    assert sp.get_piece_size() == vocab.DEFAULT_VOCAB_SIZE
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    v = seqio.SentencePieceVocabulary(str(default_path), extra_ids=100)
    assert v.vocab_size == vocab.DEFAULT_VOCAB_SIZE + 100
    assert (v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2)
    text = "The abacus is a calculating tool."
    assert v.decode(v.encode(text)) == text


def test_every_task_tokenizes(default_path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(default_path))
    for name, task in suite.build_suite(0).items():
        for word in task.label_words:  # one piece each: rank classification scores one step
            assert len(sp.encode(word)) == 1, (name, word)
        lengths = []
        for ex in task.splits["validation"]:
            ids = sp.encode(ex["inputs"])
            assert vocab.UNK_ID not in ids, (name, ex)
            lengths.append(len(ids))
        assert max(lengths) <= 72 and np.percentile(lengths, 95) <= 56, name


def test_too_small_vocab_is_a_data_error(tmp_path):
    from spot.errors import DataError

    with pytest.raises(DataError, match="too small"):
        vocab.build_vocabulary(tmp_path, vocab_size=100)
