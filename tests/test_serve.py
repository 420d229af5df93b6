"""Mixed-task inference: per-example prompts and label sets in one batch."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from spot.errors import DataError
from spot.model.api import T5
from spot.model.t5 import T5Config, init_params
from spot.workflows.serve import PredictConfig, Request, predict_jsonl, run_grouped, run_requests


@pytest.fixture(scope="module")
def model_and_vocab():
    from spot.data.offline.vocab import default_vocabulary_path
    from spot.data.vocab import load_vocabulary

    cfg = T5Config.preset("test_tiny", vocab_size=8192)
    params = init_params(cfg, 1)
    rng = np.random.default_rng(1)
    k = params["decoder"]["logits_dense"]["kernel"]
    params["decoder"]["logits_dense"]["kernel"] = rng.normal(size=k.shape).astype(np.float32)
    return T5(cfg, params), load_vocabulary(default_vocabulary_path())


def _requests(n=23):
    rng = np.random.default_rng(0)
    words = ["good", "bad", "film", "plural", "walked", "river", "quickly", "the", "news"]
    tasks = [("sentiment", ("positive", "negative")), ("pos", ("noun", "verb", "adjective",
                                                               "adverb")), ("open", None)]
    out = []
    for i in range(n):
        task, labels = tasks[i % 3]
        text = " ".join(rng.choice(words, size=int(rng.integers(1, 12))))
        out.append(Request(i, f"{task}: {text}", task, f"p{i % 3}", labels, {}))
    return out


def test_mixed_batches_equal_single_task_batches(model_and_vocab):
    t5, vocab = model_and_vocab
    rng = np.random.default_rng(2)
    prompts = {f"p{i}": rng.normal(size=(5, 16)).astype(np.float32) for i in range(3)}
    reqs = _requests()
    mixed = run_requests(t5, vocab, reqs, prompts, input_length=48, max_length=6, batch_size=8)
    single = run_grouped(t5, vocab, reqs, prompts, input_length=48, max_length=6, batch_size=8)
    assert [m[0] for m in mixed] == [s[0] for s in single]
    np.testing.assert_allclose([m[1] for m in mixed], [s[1] for s in single], rtol=1e-4,
                               atol=1e-4)
    # The prompts matter: the same inputs with one shared prompt give other scores.
    shared = run_requests(t5, vocab, [Request(r.line, r.inputs, r.task, "p0", r.labels, {})
                                      for r in reqs], prompts, input_length=48, max_length=6,
                          batch_size=8)
    assert not np.allclose([m[1] for m in mixed], [s[1] for s in shared])
    labels_ok = [m[0] in r.labels for m, r in zip(mixed, reqs) if r.labels]
    assert all(labels_ok) and len(labels_ok) > 10


def test_predict_jsonl_with_library_and_bad_lines(tmp_path, model_and_vocab):
    from spot.library.store import PromptLibrary

    t5, vocab = model_and_vocab
    rng = np.random.default_rng(3)
    lib = PromptLibrary(tmp_path / "lib")
    lib.add(task="offline_review_polarity", prompt=rng.normal(size=(4, 16)).astype(np.float32),
            metrics={"score": 60.0})
    lib.add(task="offline_pos_inflected", prompt=rng.normal(size=(4, 16)).astype(np.float32))
    lines = [{"inputs": "sentence valence: a fine film", "task": "offline_review_polarity"},
             {"inputs": "part of speech: walked", "task": "offline_pos_inflected"},
             {"inputs": "x", "task": "no_such_task"},
             "not json",
             {"inputs": "sentence valence: dull", "task": "offline_review_polarity", "k": 7}]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    out = io.StringIO()
    warnings = []
    settings = PredictConfig(library_root=str(tmp_path / "lib"), input_length=48, batch_size=4)
    report = predict_jsonl(t5, vocab, path, out, settings, warn=warnings.append)
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert report == {"written": 3, "skipped": 2}
    assert len(rows) == 5  # one output line per input line, in order
    assert rows[0]["prediction"] in ("positive", "negative")
    assert rows[1]["prediction"] in ("noun", "verb", "adjective")
    assert "in.jsonl:3: unknown task 'no_such_task'" in rows[2]["error"]
    assert "in.jsonl:4:" in rows[3]["error"] and rows[4]["k"] == 7
    assert len(warnings) == 2
    with pytest.raises(DataError, match="in.jsonl:3: unknown task"):
        predict_jsonl(t5, vocab, path, io.StringIO(),
                      PredictConfig(library_root=str(tmp_path / "lib"), input_length=48,
                                    on_error="stop"))
