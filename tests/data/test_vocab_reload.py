"""A vocabulary file replaced in place is loaded anew within the same process (the cache
keys on the file's size and modification time, not its path alone)."""

from __future__ import annotations

import os
import shutil

from spot.data.offline.vocab import train_sentencepiece, training_text
from spot.data.vocab import load_vocabulary


def test_a_replaced_vocabulary_file_is_not_served_stale(tmp_path):
    text = training_text(0)[:400]
    small, large = train_sentencepiece(text, 400), train_sentencepiece(text, 600)
    path = tmp_path / "vocab.model"
    path.write_bytes(small)
    first = load_vocabulary(path, extra_ids=10)
    assert first.vocab_size == 410
    again = load_vocabulary(path, extra_ids=10)
    assert again is first  # unchanged file: the cached object

    tmp = tmp_path / "new.model"
    tmp.write_bytes(large)
    os.replace(tmp, path)  # the way a rebuild replaces it
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a distinct mtime
    second = load_vocabulary(path, extra_ids=10)
    assert second.vocab_size == 610
    assert second.tokenizer.get_piece_size() == 610  # seqio's parsed model is the new one


def test_a_copy_at_another_path_is_its_own_entry(tmp_path):
    text = training_text(0)[:400]
    a = tmp_path / "a.model"
    a.write_bytes(train_sentencepiece(text, 400))
    b = tmp_path / "b.model"
    shutil.copyfile(a, b)
    assert load_vocabulary(a, extra_ids=0) is not load_vocabulary(b, extra_ids=0)
