"""Every TFDS task under `tfds.testing.mock_data`: raw examples go through the real seqio
source, the real formatter and the seqio tokenization, and come out with the right features.

Mock examples are random, so labels drawn outside a closed set are only checked where TFDS
draws them from a ClassLabel.
"""

from __future__ import annotations

import numpy as np
import pytest

from spot.data import registry
from spot.data.tasks import TFDS_TASKS

tfds = pytest.importorskip("tensorflow_datasets")

FREE_LABELS = {"hellaswag", "race", "sentiment140"}  # labels mocked as arbitrary values
TFDS_NAMES = [d.name for d in TFDS_TASKS]


@pytest.fixture(scope="module")
def mocked():
    # Mock examples must never reach the on-disk token cache of a machine with real data.
    with pytest.MonkeyPatch.context() as mp, tfds.testing.mock_data(num_examples=3):
        mp.setenv("SPOT_TOKEN_CACHE", "0")
        yield


@pytest.fixture(scope="module")
def vocab(vocab_path):
    from spot.data.vocab import load_vocabulary

    return load_vocabulary(vocab_path)


@pytest.mark.parametrize("name", TFDS_NAMES)
def test_task_yields_formatted_text(mocked, vocab, name):
    from spot.data import pipeline

    info = registry.get(name)
    assert info.source == "tfds" and info.splits == ("train", "validation")
    es = pipeline.eval_set(name, vocab=vocab, split="validation", input_length=64,
                           target_length=16)
    for examples in (list(info.iter_examples("train")), es.examples):
        assert examples, name
        for ex in examples:
            assert isinstance(ex["inputs"], str) and ex["inputs"].strip()
            assert isinstance(ex["targets"], str)
            if name != "c4" and not name.startswith("wmt"):
                assert ex["inputs"].startswith(name.split("_")[0] if name.startswith("gem_")
                                               else name), ex["inputs"][:40]
            if info.label_words and name not in FREE_LABELS:
                assert ex["targets"] in info.label_words + ("<unk>",), ex["targets"]
    for key, length in (("encoder_input_tokens", 64), ("decoder_target_tokens", 16)):
        arr = getattr(es, key)
        assert arr.dtype == np.int32 and arr.shape == (len(es), length)
        lengths = (arr != 0).sum(axis=1)
        assert (arr[np.arange(len(es)), lengths - 1] == vocab.eos_id).all(), key


# One task per family through seqio's own tokenization (each costs a TF tokenizer build).
SEQIO_SAMPLE = ["cb", "stsb", "record", "snli", "goemotions", "squad", "hellaswag",
                "wmt_en_ro", "aeslc", "gem_sgd", "c4", "race"]


def test_every_tfds_task_tokenizes_through_seqio(mocked, vocab):
    from spot.data.seqio_tasks import seqio_task

    eos = vocab.eos_id
    for name in SEQIO_SAMPLE:
        task = seqio_task(name, vocab)
        ds = task.get_dataset({"inputs": 64, "targets": 16}, split="validation", shuffle=False,
                              try_in_mem_cache=False)
        rows = list(ds.take(2).as_numpy_iterator())
        assert rows, name
        for row in rows:
            for key, limit in (("inputs", 64), ("targets", 16)):
                ids = row[key]
                assert ids.dtype == np.int32 and ids.ndim == 1 and 0 < len(ids) <= limit, name
                assert ids[-1] == eos, (name, key)
                assert isinstance(row[f"{key}_pretokenized"], bytes)


def test_pipeline_over_mocked_cb(mocked, vocab):
    from spot.data import pipeline

    es = pipeline.eval_set("cb", vocab=vocab, input_length=32, target_length=4)
    assert len(es) == 3 and all(t.startswith("cb hypothesis: ") for t in es.inputs)
    assert es.label_token_ids and all(ids[-1] == vocab.eos_id for ids in es.label_token_ids)
    batch = next(pipeline.train_batches("superglue", vocab=vocab, batch_size=4, input_length=32,
                                        target_length=8, seed=0))
    assert batch["encoder_input_tokens"].shape == (4, 32)


def test_prepared_tfds_split_is_cached_on_disk(mocked, vocab, tmp_path, monkeypatch):
    from spot.data import pipeline

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("SPOT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SPOT_TOKEN_CACHE", "1")
    info_dir = tmp_path / "tfds" / "glue" / "cola" / "2.0.0"
    info_dir.mkdir(parents=True)
    (info_dir / "dataset_info.json").write_text(
        '{"splits": [{"name": "train", "shardLengths": ["3"]}]}')
    pipeline.clear_caches()
    store = pipeline.token_store("cola", "train", vocab)
    assert len(store) == 3
    assert len(list((tmp_path / "cache" / "tokens" / "cola").glob("train-*.npz"))) == 1
    pipeline.clear_caches()
