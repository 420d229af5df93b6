"""PromptLibrary: storage, validation, exact ranking, concurrency, crashes and versions."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import time
from types import SimpleNamespace

import numpy as np
import pytest

from spot.errors import ConfigError, LibraryError, PromptError, SpotError
from spot.library.store import FORMAT_VERSION, Entry, PromptLibrary
from spot.retrieval.similarity import METRICS, similarity, task_similarity
from tests.library import workers
from tests.retrieval.test_similarity import naive_similarity

SPAWN = multiprocessing.get_context("spawn")


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.fixture
def lib(tmp_path):
    with PromptLibrary(tmp_path / "lib") as library:
        yield library


def _filled(lib, seed=0, tasks=4, runs=3, width=16):
    """Tasks with a shared direction per task so that rankings are meaningful."""
    rng = _rng(seed)
    for t in range(tasks):
        center = rng.normal(size=width) * 2
        for r in range(runs):
            lib.add(task=f"task{t}", prompt=(center + rng.normal(size=(5, width))).astype(np.float32),
                    embedding=(center + rng.normal(size=(3 + r, width))).astype(np.float32),
                    model="m", step=100, metrics={"accuracy": 50.0 + t})
    return lib


def naive_rank(lib, query, metric, k=None, by="entry", model=None, reference=naive_similarity):
    queries = query if isinstance(query, list) else [query]
    entries = lib.entries(model=model)
    keys = {e.id: lib.load_embedding(e) for e in entries}
    if by == "entry":
        scored = [(float(np.mean([reference(q, keys[e.id], metric) for q in queries])), e.id) for e in entries]
    else:
        tasks = {}
        for e in entries:
            tasks.setdefault(e.task, []).append(keys[e.id])
        scored = [(float(np.mean([[reference(q, key, metric) for key in runs] for q in queries])), task)
                  for task, runs in tasks.items()]
    scored.sort(key=lambda t: (-t[0], t[1]))
    return scored if k is None else scored[:k]


# -- storage ---------------------------------------------------------------------------


def test_add_and_read_back(lib):
    rng = _rng()
    prompt = rng.normal(size=(6, 8)).astype(np.float32)
    emb = rng.normal(size=(4, 8))  # float64 stays float64
    e = lib.add(task="boolq", prompt=prompt, embedding=emb, run="seed0", model="t5_base", step=10_000,
                metrics={"accuracy": 81.5}, source="glue", seed=0)
    assert isinstance(e, Entry) and len(e.id) == 16
    assert (e.task, e.run, e.model, e.step, e.kind) == ("boolq", "seed0", "t5_base", 10_000, "embedding")
    assert e.metrics == {"accuracy": 81.5} and e.metadata == {"source": "glue", "seed": 0}
    assert e.prompt_shape == (6, 8) and e.key_shape == (4, 8) and e.width == 8
    np.testing.assert_array_equal(lib.load_prompt(e), prompt)
    assert lib.load_prompt(e).dtype == np.float32
    got = lib.load_embedding(e.id)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, emb)
    assert lib.entries() == [e] and lib.get(e.id[:6]) == e and len(lib) == 1

    plain = lib.add(task="boolq", prompt=prompt, model="t5_base")
    assert plain.kind == "prompt" and plain.run == "0"
    np.testing.assert_array_equal(lib.load_embedding(plain), prompt)  # the prompt is its own key
    assert lib.add(task="boolq", prompt=prompt, model="t5_base").run == "1"
    assert lib.add(task="boolq", prompt=prompt, model="other").run == "0"
    assert [x.run for x in lib.entries(task="boolq", model="t5_base")] == ["seed0", "0", "1"]
    assert lib.tasks() == ["boolq"]

    lib.remove(plain)
    assert plain.id not in [x.id for x in lib.entries()]
    with pytest.raises(LibraryError, match="no entry"):
        lib.get(plain.id)
    assert not list((lib.root / "arrays").glob(f"*/{plain.id}*"))


def test_reopen_and_files_are_safe_formats(tmp_path):
    root = tmp_path / "lib"
    with PromptLibrary(root) as lib:
        e = lib.add(task="rte", prompt=np.ones((2, 3), np.float32) * [1, 2, 3])
    manifest = json.loads((root / "library.json").read_text())
    assert manifest == {"format": "spot-prompt-library", "format_version": FORMAT_VERSION}
    files = sorted(p.relative_to(root).as_posix() for p in (root / "arrays").rglob("*") if p.is_file())
    assert files == [f"arrays/{e.id[:2]}/{e.id}.prompt.npy"]
    np.load(root / files[0], allow_pickle=False)  # plain .npy, no pickle
    with PromptLibrary(root, create=False) as again:
        assert again.entries() == [e]


def test_duplicate_run_and_ambiguous_ids(lib):
    lib.add(task="t", prompt=np.ones((1, 2)), run="a")
    before = sorted((lib.root / "arrays").rglob("*.npy"))
    with pytest.raises(LibraryError, match="already holds task 't' run 'a'"):
        lib.add(task="t", prompt=np.ones((1, 2)), run="a")
    assert sorted((lib.root / "arrays").rglob("*.npy")) == before  # its arrays were removed
    with pytest.raises(LibraryError, match="ids are 16 hex"):
        lib.get("../../etc")
    with pytest.raises(LibraryError):
        lib.get("zzzz")


@pytest.mark.parametrize("task", ["../../escape", "a/b/../../../c", "/abs/path", "..", "name\\with\\backslash"])
def test_task_names_never_become_paths(tmp_path, task):
    root = tmp_path / "deep" / "lib"
    with PromptLibrary(root) as lib:
        e = lib.add(task=task, prompt=np.ones((2, 4)), run="../r", model="../m")
        assert (lib.get(e.id).task, lib.get(e.id).run, lib.get(e.id).model) == (task, "../r", "../m")
        lib.export(e, tmp_path / "out.npy")
    outside = sorted(p for p in tmp_path.rglob("*") if root not in p.parents and p != root)
    assert outside == [tmp_path / "deep", tmp_path / "out.npy", tmp_path / "out.npy.json"]


def test_add_validation(lib):
    good = np.ones((3, 4), np.float32)
    bad_cases = [
        (dict(task="t", prompt=np.ones(4)), PromptError, "2-D"),
        (dict(task="t", prompt=np.full((2, 4), np.nan)), PromptError, "non-finite"),
        (dict(task="t", prompt=good, embedding=np.ones((3, 5))), PromptError, "embedding width 5 differs"),
        (dict(task="t", prompt=np.zeros((2, 4))), PromptError, "zero-norm"),
        (dict(task="t", prompt=np.full((2, 4), 1e39, np.longdouble)), PromptError, "overflows float32"),
        (dict(task="", prompt=good), ConfigError, "task must be"),
        (dict(task="t\n", prompt=good), ConfigError, "control"),
        (dict(task="t", prompt=good, metrics={"acc": "high"}), ConfigError, "must be a number"),
        (dict(task="t", prompt=good, metrics={"acc": float("nan")}), ConfigError, "not finite"),
        (dict(task="t", prompt=good, step=-1), ConfigError, "step"),
        (dict(task="t", prompt=good, blob=object()), ConfigError, "JSON"),
    ]
    for kwargs, error, message in bad_cases:
        with pytest.raises(error, match=message):
            lib.add(**kwargs)
    assert len(lib) == 0 and not list((lib.root / "arrays").rglob("*.npy"))
    lib.add(task="t", prompt=good, model="m")
    with pytest.raises(PromptError, match="width 8 does not match the width 4 of model 'm'"):
        lib.add(task="t2", prompt=np.ones((3, 8)), model="m")


def test_corrupt_array_is_detected(lib):
    e = lib.add(task="t", prompt=np.ones((2, 4)) * np.arange(4))
    path = next((lib.root / "arrays").rglob(f"{e.id}.prompt.npy"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LibraryError, match="checksum"):
        lib.load_prompt(e)


def test_import_released_prompts(tmp_path, released_prompts_dir):
    with PromptLibrary(tmp_path / "lib") as lib:
        entries = lib.import_prompts(released_prompts_dir)
        assert [(e.task, e.model, e.run, e.prompt_shape) for e in entries] == [
            (t, "t5_1_1_lm100k_base", "0", (100, 768)) for t in ("mrpc", "rte", "sst2")]
        for e in entries:
            np.testing.assert_array_equal(lib.load_prompt(e),
                                          np.load(released_prompts_dir / f"{e.task}.npy", allow_pickle=False))
        rte = np.load(released_prompts_dir / "rte.npy", allow_pickle=False)
        (best, score), *_ = lib.rank(rte, metric="avg_cosine", k=3)
        assert best.task == "rte" and score == pytest.approx(1.0, abs=1e-12)
        again = lib.import_prompts([released_prompts_dir / "rte.npy"], task="rte", model="mine")
        assert again[0].metadata == {"source_file": "rte.npy"} and again[0].model == "mine"
        with pytest.raises(PromptError, match="does not exist"):
            lib.import_prompts([tmp_path / "missing.npy"])


def test_export(lib, tmp_path):
    from spot.model.prompt_files import load_prompt, load_prompt_metadata

    e = lib.add(task="t", prompt=np.arange(8, dtype=np.float32).reshape(2, 4) + 1,
                embedding=np.arange(12, dtype=np.float32).reshape(3, 4) + 1, run="s0")
    lib.export(e, tmp_path / "p.npy")
    lib.export(e, tmp_path / "k.safetensors", which="embedding")
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy", allow_pickle=False), lib.load_prompt(e))
    np.testing.assert_array_equal(load_prompt(tmp_path / "k.safetensors"), lib.load_embedding(e))
    meta = load_prompt_metadata(tmp_path / "k.safetensors")["metadata"]
    assert (meta["id"], meta["task"], meta["run"], meta["which"]) == (e.id, "t", "s0", "embedding")
    with pytest.raises(ConfigError):
        lib.export(e, tmp_path / "x.npy", which="key")
    with pytest.raises(PromptError):
        lib.export(e, tmp_path / "x.txt")


def test_import_layouts(lib, tmp_path):
    """Folders of files, single files, and a PEFT adapter folder counted as one prompt."""
    from spot.model.prompt_files import export_peft, save_prompt

    rng = _rng(4)
    (tmp_path / "many").mkdir()
    save_prompt(tmp_path / "many" / "cola.npy", rng.normal(size=(3, 4)))
    save_prompt(tmp_path / "many" / "stsb.safetensors", rng.normal(size=(3, 4)))
    peft_prompt = rng.normal(size=(3, 4)).astype(np.float32)
    tiny = SimpleNamespace(emb_dim=4, num_encoder_layers=1, num_heads=1)
    export_peft(peft_prompt, tmp_path / "wic_adapter", base_model="t5-tiny", config=tiny)
    entries = lib.import_prompts([tmp_path / "many", tmp_path / "wic_adapter"], model="m")
    assert [e.task for e in entries] == ["cola", "stsb", "wic_adapter"]
    np.testing.assert_array_equal(lib.load_prompt(entries[2]), peft_prompt)
    with pytest.raises(PromptError, match="no .npy or .safetensors"):
        lib.import_prompts(tmp_path / "wic_adapter" / "..")


# -- ranking ---------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_rank_equals_naive(lib, metric):
    _filled(lib)
    rng = _rng(1)
    query = rng.normal(size=(7, 16)) + lib.load_embedding(lib.entries(task="task2")[0]).mean(0)
    for k in (None, 1, 5):
        fast = lib.rank(query, metric=metric, k=k)
        naive = naive_rank(lib, query, metric, k)
        assert [e.id for e, _ in fast] == [i for _, i in naive]
        np.testing.assert_allclose([s for _, s in fast], [s for s, _ in naive], rtol=1e-10, atol=1e-12)
        # ... and bit for bit what spot.similarity says.
        exact = naive_rank(lib, query, metric, k, reference=similarity)
        assert [(e.id, s) for e, s in fast] == [(i, s) for s, i in exact]
    assert fast[0][0].task == "task2"
    tasks = lib.rank(query, metric=metric, k=2, by="task")
    naive_tasks = naive_rank(lib, query, metric, 2, by="task")
    assert [t for t, _ in tasks] == [t for _, t in naive_tasks]
    np.testing.assert_allclose([s for _, s in tasks], [s for s, _ in naive_tasks], rtol=1e-10, atol=1e-12)
    runs = [lib.load_embedding(e) for e in lib.entries(task=tasks[0][0])]
    assert tasks[0][1] == pytest.approx(task_similarity([query], runs, metric), rel=1e-12)


@pytest.mark.parametrize("metric", ["avg_cosine", "per_token_cosine", "avg_euclidean", "avg_manhattan"])
def test_rank_many_entries_and_query_runs(tmp_path, metric, monkeypatch):
    """Enough entries that screening prunes, near-ties below float32 resolution, exact ties."""
    from spot.library import ranking

    sizes = []
    real_candidates = ranking.candidates

    def recording(lo, hi, k):
        picked = real_candidates(lo, hi, k)
        sizes.append((len(picked), len(lo)))
        return picked

    monkeypatch.setattr(ranking, "candidates", recording)
    rng = _rng(5)
    base = rng.normal(size=(2, 24))
    items = []
    for i in range(600):
        if i < 40:  # near-duplicates of `base`: differences far below float32 resolution
            prompt = base + rng.normal(size=base.shape) * 1e-9
        elif i < 44:  # exact ties, broken by entry id
            prompt = base * 1.5
        else:
            prompt = rng.normal(size=(2, 24)) + base * rng.uniform(0, 1)
        items.append(dict(task=f"t{i % 60}", prompt=prompt, model="m"))
    with PromptLibrary(tmp_path / "lib") as lib:
        lib.add_many(items, batch=400)
        query = base + rng.normal(size=base.shape) * 1e-3
        for q in (query, [query, base * 0.5 + 0.1]):
            fast = lib.rank(q, metric=metric, k=50)
            exact = naive_rank(lib, q, metric, 50, reference=similarity)
            assert [(e.id, s) for e, s in fast] == [(i, s) for s, i in exact]
        by_task = lib.rank(query, metric=metric, k=5, by="task")
        exact_tasks = naive_rank(lib, query, metric, 5, by="task", reference=similarity)
        assert [t for t, _ in by_task] == [t for _, t in exact_tasks]
        np.testing.assert_allclose([s for _, s in by_task], [s for s, _ in exact_tasks], rtol=1e-13)
    # The screens kept every near-tie for exact rescoring yet pruned most of the library.
    first_query = sizes[:len(ranking.stages(metric))]
    assert first_query[0][1] == 600 and 50 <= first_query[-1][0] < 300, sizes


def test_rank_model_filter_and_widths(lib):
    rng = _rng(2)
    for i in range(3):
        lib.add(task=f"a{i}", prompt=rng.normal(size=(2, 4)), model="small")
        lib.add(task=f"b{i}", prompt=rng.normal(size=(2, 6)), model="base")
    q4 = rng.normal(size=(3, 4))
    got = lib.rank(q4, metric="avg_cosine", model="small")
    assert [e.model for e, _ in got] == ["small"] * 3
    assert [e.id for e, _ in got] == [i for _, i in naive_rank(lib, q4, "avg_cosine", model="small")]
    with pytest.raises(PromptError, match="query width 4 does not match library width 6"):
        lib.rank(q4, metric="avg_cosine")
    with pytest.raises(PromptError, match="query width 4 does not match library width 6 for model 'base'"):
        lib.rank(q4, model="base")
    with pytest.raises(ConfigError, match="no entries for model 'nope'"):
        lib.rank(q4, k=1, model="nope")
    assert lib.rank(q4, model="nope") == []


def test_rank_bad_input(lib):
    _filled(lib, tasks=2, runs=2)
    q = np.ones((2, 16))
    with pytest.raises(ConfigError, match="unknown similarity metric 'dot'"):
        lib.rank(q, metric="dot")
    with pytest.raises(ConfigError, match="k=5 is larger than the library: 4 entries"):
        lib.rank(q, k=5)
    with pytest.raises(ConfigError, match="k=3 is larger than the library: 2 tasks"):
        lib.rank(q, k=3, by="task")
    for k in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="k must be"):
            lib.rank(q, k=k)
    with pytest.raises(ConfigError, match="by must be"):
        lib.rank(q, by="model")
    with pytest.raises(PromptError, match="query width 8 does not match library width 16"):
        lib.rank(np.ones((2, 8)))
    with pytest.raises(PromptError, match="non-finite"):
        lib.rank(np.full((2, 16), np.inf))
    with pytest.raises(PromptError, match="different widths"):
        lib.rank([np.ones((2, 16)), np.ones((2, 8))])


def test_rank_sees_other_writers(tmp_path):
    root = tmp_path / "lib"
    with PromptLibrary(root) as reader, PromptLibrary(root) as writer:
        q = np.ones((1, 3))
        assert reader.rank(q) == []
        e = writer.add(task="x", prompt=np.array([[1.0, 1.0, 0.9]]))
        assert [x.id for x, _ in reader.rank(q)] == [e.id]
        f = writer.add(task="y", prompt=np.array([[1.0, 1.0, 1.0]]))
        assert [x.id for x, _ in reader.rank(q, metric="avg_cosine")] == [f.id, e.id]
        writer.remove(f)
        assert [x.id for x, _ in reader.rank(q, metric="avg_cosine")] == [e.id]


# -- concurrency, crashes, versions ----------------------------------------------------


def test_four_processes_add_at_once(tmp_path):
    root = str(tmp_path / "lib")  # created by whichever writer gets there first
    count = 25
    procs = [SPAWN.Process(target=workers.add_entries, args=(root, w, count)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with PromptLibrary(root, create=False) as lib:
        entries = lib.entries()
        assert len(entries) == 4 * count
        assert sorted((e.metadata["worker"], e.metadata["index"]) for e in entries) == \
            [(w, i) for w in range(4) for i in range(count)]
        for e in entries:
            np.testing.assert_array_equal(lib.load_prompt(e), workers._prompt(e.metadata["worker"],
                                                                              e.metadata["index"]))
        runs = [(e.task, e.run) for e in entries]
        assert len(set(runs)) == len(runs)
        defaults = sorted(int(e.run) for e in entries if e.task == "task0" and e.run.isdigit())
        assert defaults == list(range(len(defaults)))  # default runs numbered without gaps or clashes
        assert lib.cleanup(min_age_s=0) == []  # no orphans


def test_writer_killed_mid_add_loses_nothing_completed(tmp_path):
    root, log = tmp_path / "lib", tmp_path / "done.txt"
    proc = SPAWN.Process(target=workers.add_until_killed, args=(str(root), str(log)))
    proc.start()
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().split()) < 8):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    done = log.read_text().split()
    assert len(done) >= 8
    with PromptLibrary(root, create=False) as lib:
        entries = {e.id: e for e in lib.entries()}
        assert set(done) <= set(entries)
        assert len(entries) - len(done) <= 1  # at most the add whose log line was not written
        for e in entries.values():
            i = e.metadata["index"]
            np.testing.assert_array_equal(lib.load_prompt(e), workers._prompt(99, i))
            np.testing.assert_array_equal(lib.load_embedding(e), workers._prompt(98, i))
        lib.add(task="after", prompt=np.ones((1, 8)), model="tiny")
        assert len(lib.rank(np.ones((2, 8)), k=3)) == 3


@pytest.mark.parametrize("body", [workers.die_after_arrays, workers.die_inside_transaction])
def test_killed_writer_leaves_a_clean_library(tmp_path, body):
    root = tmp_path / "lib"
    if body is workers.die_inside_transaction:
        with PromptLibrary(root) as lib:
            lib.add(task="kept", prompt=workers._prompt(1, 1), model="tiny")
    proc = SPAWN.Process(target=body, args=(str(root),))
    proc.start()
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL
    with PromptLibrary(root, create=False) as lib:
        assert [e.task for e in lib.entries()] == ["kept"]
        kept = lib.entries()[0]
        arrays = sorted((root / "arrays").rglob("*.npy"))
        orphans = [p for p in arrays if not p.name.startswith(kept.id)]
        assert len(orphans) == (2 if body is workers.die_after_arrays else 1)
        assert lib.cleanup() == []  # too fresh: could belong to an add in flight
        assert sorted(lib.cleanup(min_age_s=0)) == orphans
        assert [p.name for p in (root / "arrays").rglob("*.npy")] == [f"{kept.id}.prompt.npy"]
        e = lib.add(task="lost", prompt=workers._prompt(1, 2), model="tiny")
        assert [x.id for x, _ in lib.rank(workers._prompt(1, 2), metric="avg_cosine")][0] == e.id


def test_future_format_version(tmp_path):
    root = tmp_path / "lib"
    PromptLibrary(root).close()
    manifest = root / "library.json"
    info = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(dict(info, format_version=FORMAT_VERSION + 1)))
    with pytest.raises(LibraryError, match=f"format version {FORMAT_VERSION + 1}.*upgrade spot"):
        PromptLibrary(root)
    manifest.write_text(json.dumps(info))
    with sqlite3.connect(root / "index.sqlite") as conn:
        conn.execute("UPDATE meta SET value = '7' WHERE key = 'format_version'")
    with pytest.raises(LibraryError, match="index format version 7.*upgrade spot"):
        PromptLibrary(root)


def test_not_a_library(tmp_path):
    with pytest.raises(LibraryError, match="no library.json"):
        PromptLibrary(tmp_path / "absent", create=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("hello")
    with pytest.raises(LibraryError, match="not empty and not a prompt library"):
        PromptLibrary(tmp_path / "busy")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "library.json").write_text("{not json")
    with pytest.raises(LibraryError, match="unreadable"):
        PromptLibrary(tmp_path / "broken")
    (tmp_path / "bad_index").mkdir()
    PromptLibrary(tmp_path / "bad_index").close()
    (tmp_path / "bad_index" / "index.sqlite").write_bytes(b"garbage" * 100)
    for suffix in ("-wal", "-shm"):
        (tmp_path / "bad_index" / f"index.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(LibraryError, match="not a usable SQLite index"):
        PromptLibrary(tmp_path / "bad_index")
    assert issubclass(LibraryError, SpotError)
