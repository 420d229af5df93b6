"""Training batches (format, determinism, exact resume, mixing proportions) and eval sets,
with the real T5 SentencePiece vocabulary."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from spot.data import pipeline, registry
from spot.data.registry import TextTaskSpec
from spot.errors import DataError

WORDS = ["apple", "river", "mountain", "silver", "garden", "window", "thunder", "pencil"]


@pytest.fixture(scope="module")
def vocab(vocab_path):
    from spot.data.vocab import load_vocabulary

    return load_vocabulary(vocab_path)


def _task(name: str, n: int, first_word: str = "", long: bool = False) -> str:
    def load(split: str, n=n, first_word=first_word, long=long) -> list[dict[str, str]]:
        rows = []
        for i in range(n if split == "train" else 4):
            body = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(40 if long else 3))
            rows.append({"inputs": f"{first_word} {body} {i}".strip(),
                         "targets": "yes" if i % 2 else "no", "id": str(i)})
        return rows

    registry.register_text_task(TextTaskSpec(
        name, family="test", load_split=load, label_words=("no", "yes"),
                                metrics=("accuracy", "f1"),
                                num_examples={"train": n, "validation": 4}))
    return name


def _batches(name, vocab, n, **kw):
    it = pipeline.train_batches(name, vocab=vocab, **{"batch_size": 4, "input_length": 16,
                                                      "target_length": 4, "seed": 0, **kw})
    return [next(it) for _ in range(n)]


def test_batch_layout_matches_t5x_conventions(vocab):
    name = _task("p_layout", 4, long=True)
    (batch,) = _batches(name, vocab, 1, batch_size=4, input_length=8, target_length=4)
    assert set(batch) == {"encoder_input_tokens", "decoder_target_tokens",
                          "decoder_input_tokens", "decoder_loss_weights"}
    enc, tgt = batch["encoder_input_tokens"], batch["decoder_target_tokens"]
    assert enc.dtype == np.int32 and enc.shape == (4, 8) and tgt.shape == (4, 4)
    assert (enc[:, -1] == 1).all()  # long inputs truncated to 7 tokens + EOS
    texts = {ex["inputs"]: ex["targets"] for ex in registry.get(name).iter_examples("train")}
    for row_enc, row_tgt in zip(enc, tgt):
        # The row is the first 7 tokens of one of the task's inputs; its target is that label.
        matches = [t for s, t in texts.items() if list(vocab.encode(s))[:7] == list(row_enc[:7])]
        assert len(matches) == 1
        want = list(vocab.encode(matches[0])) + [1]
        assert list(row_tgt) == want + [0] * (4 - len(want))
    assert (batch["decoder_input_tokens"][:, 0] == 0).all()
    assert (batch["decoder_input_tokens"][:, 1:] == tgt[:, :-1]).all()
    assert (batch["decoder_loss_weights"] == (tgt != 0)).all()
    assert batch["decoder_loss_weights"].dtype == np.float32


def test_each_epoch_is_a_fresh_permutation(vocab):
    name = _task("p_epochs", 12)
    batches = _batches(name, vocab, 6, batch_size=4)  # two epochs of 12
    firsts = [tuple(r) for b in batches for r in b["encoder_input_tokens"]]
    assert len(set(firsts[:12])) == 12 and set(firsts[:12]) == set(firsts[12:])
    assert firsts[:12] != firsts[12:]


def test_same_seed_same_order_other_seed_other_order(vocab):
    name = _task("p_seed", 50)
    a = _batches(name, vocab, 5)
    b = _batches(name, vocab, 5)
    c = _batches(name, vocab, 5, seed=1)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert any((x["encoder_input_tokens"] != z["encoder_input_tokens"]).any()
               for x, z in zip(a, c))


@pytest.mark.parametrize("start", [1, 7, 37, 40])
def test_resume_yields_exactly_the_uninterrupted_batches(vocab, monkeypatch, start):
    monkeypatch.setattr(pipeline, "CHUNK", 64)  # small chunks: resume crosses several
    names = [_task("p_res_a", 9, "alpha"), _task("p_res_b", 30, "beta"),
             _task("p_res_c", 5, "gamma")]
    registry.register_mixture("p_res_mix", names, K=20)
    full = _batches("p_res_mix", vocab, start + 6, batch_size=5)
    resumed = _batches("p_res_mix", vocab, 6, batch_size=5, start_step=start)
    for x, y in zip(full[start:], resumed):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_mixture_sampling_matches_rates(vocab):
    sizes = {"p_mix_a": (100, "alpha"), "p_mix_b": (300, "beta"), "p_mix_c": (600, "gamma")}
    for name, (n, word) in sizes.items():
        _task(name, n, word)
    registry.register_mixture("p_mix_abc", list(sizes), K=400)
    info = registry.get("p_mix_abc")
    assert info.rates() == {"p_mix_a": 100.0, "p_mix_b": 300.0, "p_mix_c": 400.0}
    first = {vocab.encode(w)[0]: name for name, (_, w) in sizes.items()}
    counts = dict.fromkeys(sizes, 0)
    for b in _batches("p_mix_abc", vocab, 250, batch_size=32, input_length=4, target_length=2):
        for tok in b["encoder_input_tokens"][:, 0]:
            counts[first[int(tok)]] += 1
    total = sum(counts.values())
    expected = np.array([100, 300, 400]) / 800 * total
    observed = np.array([counts[n] for n in sizes])
    assert stats.chisquare(observed, expected).pvalue > 1e-4
    assert np.all(np.abs(observed - expected) < 5 * np.sqrt(expected))


def test_eval_set_and_score(vocab):
    name = _task("p_eval", 6)
    es = pipeline.eval_set(name, vocab=vocab, input_length=12, target_length=3)
    assert len(es) == 4 and es.encoder_input_tokens.shape == (4, 12)
    assert es.targets == ["no", "yes", "no", "yes"] and es.examples[1]["id"] == "1"
    assert es.label_token_ids == [list(vocab.encode("no")) + [1], list(vocab.encode("yes")) + [1]]
    perfect = pipeline.score(name, es.targets, es)
    assert perfect == {"accuracy": 100.0, "f1": 100.0, "score": 100.0}
    half = pipeline.score(name, ["no", "no", "no", "no"], es)
    assert half["accuracy"] == 50.0 and half["f1"] == 0.0 and half["score"] == 25.0
    assert len(pipeline.eval_set(name, vocab=vocab, input_length=8, target_length=3,
                                 max_examples=2)) == 2


def test_clear_errors(vocab):
    name = _task("p_err", 4)
    with pytest.raises(DataError, match="batch_size must be positive"):
        _batches(name, vocab, 1, batch_size=0)
    with pytest.raises(DataError, match="no split 'test'"):
        _batches(name, vocab, 1, split="test")
    with pytest.raises(DataError, match="is a mixture"):
        pipeline.eval_set("glue", vocab=vocab, input_length=8, target_length=2)
    registry.register_text_task(TextTaskSpec(
        "p_empty", family="test", load_split=lambda s: []))
    with pytest.raises(DataError, match="no examples in split 'train'"):
        _batches("p_empty", vocab, 1)


def test_benchmark_reports_throughput(vocab):
    from spot.bench.pipeline import benchmark

    r = benchmark(vocab=vocab, steps=5, examples_per_task=64, resume_step=1000)
    assert r["members"] == 8 and r["train_examples"] == 8 * 64
    assert r["examples_per_s"] > 0 and r["resume_first_batch_s"] >= 0


def test_seqio_task_and_mixture_per_vocabulary(vocab):
    from spot.data.seqio_tasks import seqio_mixture, seqio_task

    names = [_task("p_sq_a", 6, "alpha"), _task("p_sq_b", 40, "beta")]
    registry.register_mixture("p_sq_mix", names, K=10)
    mix = seqio_mixture("p_sq_mix", vocab)
    assert [mix.get_rate(t) for t in mix.tasks] == [6.0, 10.0]
    assert seqio_task("p_sq_mix", vocab) is mix  # cached per (name, vocabulary)
    task = seqio_task("p_sq_a", vocab)
    row = next(task.get_dataset({"inputs": 8, "targets": 4}, split="validation", shuffle=False,
                                try_in_mem_cache=False).as_numpy_iterator())
    want = list(vocab.encode("alpha apple river mountain 0"))[:7] + [1]
    assert list(row["inputs"]) == want and list(row["targets"]) == list(vocab.encode("no")) + [1]
    assert task.output_features["inputs"].vocabulary is vocab


def test_token_cache_on_disk_for_local_file_tasks(vocab, tmp_path, monkeypatch):
    monkeypatch.setenv("SPOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SPOT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "data" / "cr").mkdir(parents=True)
    train = tmp_path / "data" / "cr" / "train.tsv"
    train.write_text("sentence\tlabel\ngreat phone\t1\nbad battery\t0\n")
    (tmp_path / "data" / "cr" / "validation.tsv").write_text("sentence\tlabel\nok\t1\n")
    pipeline.clear_caches()
    first = pipeline.token_store("cr", "train", vocab)
    (cached,) = (tmp_path / "cache" / "tokens" / "cr").glob("train-*.npz")

    def no_rebuild(*args):
        raise AssertionError("should have been read from the disk cache")

    pipeline.clear_caches()
    monkeypatch.setattr(pipeline, "_build_store", no_rebuild)
    again = pipeline.token_store("cr", "train", vocab)
    for field in ("inputs", "in_off", "targets", "tg_off"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    monkeypatch.undo()
    monkeypatch.setenv("SPOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SPOT_CACHE_DIR", str(tmp_path / "cache"))
    # A changed file is a new key; a torn cache file is rebuilt, not trusted.
    train.write_text("sentence\tlabel\ngreat phone\t1\nbad battery life\t0\nfine\t1\n")
    pipeline.clear_caches()
    assert len(pipeline.token_store("cr", "train", vocab)) == 3
    for f in (tmp_path / "cache" / "tokens" / "cr").glob("train-*.npz"):
        f.write_bytes(b"not a zip")
    pipeline.clear_caches()
    assert len(pipeline.token_store("cr", "train", vocab)) == 3
    assert cached.exists()
    pipeline.clear_caches()
