"""The backbone's pretraining corpus: real prose, a seeded document-level held-out split."""

from __future__ import annotations

import pytest

from spot.data.offline import corpus
from spot.errors import DataError


def test_sizes_and_sources():
    docs = corpus.all_documents()
    wiki = [d for d in docs if d.source == "wikipedia"]
    lee = [d for d in docs if d.source == "lee"]
    assert len(wiki) == 100 and len(lee) == 343
    chars = sum(len(p) for d in docs for p in d.paragraphs)
    assert 2_500_000 < chars < 3_200_000
    # prose, not markup
    text = " ".join(p for d in wiki for p in d.paragraphs)
    for marker in ("[[", "]]", "{{", "}}", "<ref", "'''", "==", "&nbsp;", "|}"):
        assert marker not in text, marker


def test_heldout_split_disjoint_and_seeded():
    split = corpus.split_documents(0)
    train_titles = {d.title for d in split["train"]}
    heldout_titles = {d.title for d in split["heldout"]}
    assert not train_titles & heldout_titles
    assert len(train_titles | heldout_titles) == len(corpus.all_documents())
    for source in ("wikipedia", "lee"):
        n_all = sum(d.source == source for d in corpus.all_documents())
        n_held = sum(d.source == source for d in split["heldout"])
        assert n_held == -(-n_all // 10)
    train, heldout = corpus.load_corpus("train", 0), corpus.load_corpus("heldout", 0)
    assert not set(train) & set(heldout)
    assert corpus.load_corpus("heldout", 0) == heldout  # deterministic
    assert corpus.load_corpus("heldout", 1) != heldout  # seeded


def test_unknown_split():
    with pytest.raises(DataError, match="unknown corpus split 'validation'"):
        corpus.load_corpus("validation")


def test_sentence_split():
    text = ('Mr. Smith met J. R. R. Tolkien in the U.S. on Monday. He said "hello." '
            "It was 4.5 m long! Was it? (Yes.) Done")
    assert corpus.sentences(text) == [
        "Mr. Smith met J. R. R. Tolkien in the U.S. on Monday.", 'He said "hello."',
        "It was 4.5 m long!", "Was it?", "(Yes.)", "Done"]
