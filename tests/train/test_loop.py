"""The run loop on a tiny model and a synthetic task: invariants, resume, NaN guard."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from spot.errors import NonFiniteError
from spot.model.api import random_t5
from spot.model.prompt import init_uniform
from spot.train.loop import RunPieces, run_loop, trainable_from_prompt
from spot.train.step_cache import StepCache

from .synthetic import Killed, dying_batches, synthetic_batches
from .synthetic import loop_config as _config


def _pieces(config, t5, **kw):
    prompt = init_uniform(0, config.prompt.length, t5.config.emb_dim)
    return RunPieces(out_dir=config.train.out_dir, module=t5.module, frozen=t5.params,
                     initial_trainable=lambda: trainable_from_prompt(
                         prompt, reparameterize=False, hidden=8, seed=0),
                     batches=synthetic_batches(), metadata={"task": "synthetic"}, **kw)


def _run(config, t5, step_cache=None, **kw):
    return run_loop(config, _pieces(config, t5, **kw), log=lambda s: None,
                    step_cache=step_cache)


@pytest.fixture(scope="module")
def t5():
    return random_t5("test_tiny", seed=0)


def test_only_the_prompt_changes_and_loss_falls(tmp_path, t5):
    before = jax.tree_util.tree_map(np.array, t5.params)
    config = _config(tmp_path / "run", **{"train.steps": 40, "train.eval_every": 40,
                                          "train.checkpoint_every": 40})
    result = _run(config, t5)
    after = jax.tree_util.tree_map(np.array, t5.params)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, before, after))
    from spot.model.prompt_files import load_prompt

    final = load_prompt(result.prompt_paths["final"])
    init = init_uniform(0, 4, t5.config.emb_dim)
    assert final.shape == init.shape and not np.allclose(final, init)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    steps = [r["step"] for r in rows if r["kind"] == "train"]
    # Every log_every steps, plus the embedding step (a sync point).
    assert steps == sorted(set(range(2, 41, 2)) | {5})
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # the prompt learns something
    assert result.prompt_paths["embedding"].name == "embedding_step5.npy"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_step"] == 40


def test_kill_and_resume_equals_uninterrupted(tmp_path, t5):
    evaluate = lambda trainable, frozen: ({"accuracy": 1.0}, float(  # noqa: E731
        np.asarray(trainable["prompt"]).sum()))
    straight = _run(_config(tmp_path / "a"), t5, evaluate=evaluate)

    # Interrupted: the input pipeline dies while producing the batch of step 7 (index 6),
    # after the step-4 checkpoint; a second invocation of the same run resumes.
    config = _config(tmp_path / "b")
    prompt = init_uniform(0, 4, t5.config.emb_dim)

    common = dict(out_dir=config.train.out_dir, module=t5.module, frozen=t5.params,
                  initial_trainable=lambda: trainable_from_prompt(
                      prompt, reparameterize=False, hidden=8, seed=0),
                  evaluate=evaluate, metadata={"task": "synthetic"})
    with pytest.raises(Killed):
        run_loop(config, RunPieces(batches=dying_batches(6), **common), log=lambda s: None)
    resumed = run_loop(config, RunPieces(batches=synthetic_batches(), **common),
                       log=lambda s: None)
    assert resumed.resumed_from == 4
    for kind in ("final", "best", "embedding"):
        a = straight.prompt_paths[kind].read_bytes()
        b = resumed.prompt_paths[kind].read_bytes()
        assert a == b, kind
    assert resumed.best_step == straight.best_step
    # The metrics file reads as one run: one record per logged step, no duplicates.
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").open()
             if json.loads(line)["kind"] == "train"]
    assert steps == sorted(set(range(2, 13, 2)) | {5})


def test_planted_nan_stops_with_clear_message_and_checkpoint_loads(tmp_path, t5):
    def poison(step_fn):
        def wrapped(state, frozen, batch):
            new_state, metrics = step_fn(state, frozen, batch)
            bad = state["step"] == 6  # the 7th step
            metrics["loss"] = jax.numpy.where(bad, jax.numpy.nan, metrics["loss"])
            return new_state, metrics

        return wrapped

    config = _config(tmp_path / "nan")
    with pytest.raises(NonFiniteError, match=r"loss became nan at step 7.*last good checkpoint "
                                             r"\(step 4\)"):
        _run(config, t5, step_wrapper=poison)
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(tmp_path / "nan" / "checkpoints")
    assert manager.latest_step() == 4
    restored = manager.restore(4)
    assert int(restored["step"]) == 4
    assert np.all(np.isfinite(np.asarray(restored["trainable"]["prompt"])))
    manager.close()


def test_changed_config_is_refused_on_resume(tmp_path, t5):
    config = _config(tmp_path / "c", **{"train.steps": 4})
    _run(config, t5)
    from spot.errors import ConfigError

    with pytest.raises(ConfigError, match="different config .*optimizer.learning_rate"):
        _run(_config(tmp_path / "c", **{"train.steps": 4, "optimizer.learning_rate": 0.1}), t5)


def test_microbatches_reach_the_step_and_may_change_on_resume(tmp_path, t5):
    """Like remat, microbatches change how a step is computed, not what it computes: a run
    may resume with another value, which compiles its own step."""
    cache = StepCache()
    first = _config(tmp_path / "m", **{"train.steps": 4, "data.batch_size": 8})
    _run(first, t5, step_cache=cache)
    resumed = _config(tmp_path / "m", **{"train.steps": 8, "data.batch_size": 8,
                                         "train.microbatches": 2})
    result = _run(resumed, t5, step_cache=cache)
    assert result.final_step == 8 and result.resumed_from == 4
    assert len(cache) == 2  # the microbatched step is not the whole-batch one


def test_runs_sharing_a_step_cache_reuse_the_jitted_step(tmp_path, t5):
    """A second run with the same model and shapes reuses the first run's jitted step (no
    retrace) and ends exactly where the first, uncached run ended; another prompt length or
    another module object gets its own step; a run given no cache caches nothing."""
    from spot.model.prompt_files import load_prompt

    cache = StepCache()
    first = _run(_config(tmp_path / "a"), t5, step_cache=cache)
    assert len(cache) == 1
    cached = cache.steps()[0]
    second = _run(_config(tmp_path / "b"), t5, step_cache=cache)
    assert len(cache) == 1 and cache.steps()[0] is cached
    np.testing.assert_array_equal(load_prompt(first.prompt_paths["final"]),
                                  load_prompt(second.prompt_paths["final"]))
    longer = _config(tmp_path / "d", **{"prompt.length": 6})
    _run(longer, t5, step_cache=cache)
    assert len(cache) == 2
    other = random_t5("test_tiny", seed=1)
    _run(_config(tmp_path / "e"), other, step_cache=cache)
    assert len(cache) == 3  # another module object never shares a step
    _run(_config(tmp_path / "f"), t5)
    assert len(cache) == 3 and cache.steps()[0] is cached


def _prompt_sum(trainable, frozen):
    """An evaluation that tells prompts apart: the score is the prompt's sum."""
    return {"accuracy": 0.5}, float(np.asarray(trainable["prompt"], np.float64).sum())


def test_eval_at_start_scores_the_initial_prompt_and_never_makes_it_the_best(tmp_path, t5):
    config = _config(tmp_path / "run", **{"train.eval_at_start": True})
    result = _run(config, t5, evaluate=_prompt_sum)
    init = init_uniform(0, 4, t5.config.emb_dim)
    initial = json.loads((tmp_path / "run" / "initial.json").read_text())
    assert initial["step"] == 0 and initial["metrics"] == {"accuracy": 0.5}
    assert initial["score"] == pytest.approx(float(init.astype(np.float64).sum()), rel=1e-6)
    assert result.initial_score == initial["score"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["initial_score"] == initial["score"]
    # the periodic evaluations and the best checkpoint are those of a run without it
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [6, 12]
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["step"] in (6, 12) and result.best_step == best["step"]
    plain = _run(_config(tmp_path / "plain"), t5, evaluate=_prompt_sum)
    assert plain.initial_score is None and not (tmp_path / "plain" / "initial.json").exists()
    assert (plain.best_step, plain.best_score) == (result.best_step, result.best_score)


def test_a_resumed_run_missing_its_initial_score_scores_the_initial_prompt_not_the_restored(
        tmp_path, t5):
    first = _run(_config(tmp_path / "run", **{"train.steps": 8, "train.eval_at_start": True}),
                 t5, evaluate=_prompt_sum)
    from spot.model.prompt_files import load_prompt

    restored_sum = float(load_prompt(first.prompt_paths["final"]).astype(np.float64).sum())
    assert restored_sum != pytest.approx(first.initial_score, rel=1e-6)  # the test can tell
    (tmp_path / "run" / "initial.json").unlink()
    resumed = _run(_config(tmp_path / "run", **{"train.steps": 12, "train.eval_at_start": True}),
                   t5, evaluate=_prompt_sum)
    assert resumed.resumed_from == 8
    assert resumed.initial_score == pytest.approx(first.initial_score, rel=1e-6)
    # a run of ours that has it keeps it (the file is read, not recomputed)
    path = tmp_path / "run" / "initial.json"
    path.write_text(json.dumps({"step": 0, "score": 123.0, "metrics": {}}))
    again = _run(_config(tmp_path / "run", **{"train.steps": 16, "train.eval_at_start": True}),
                 t5, evaluate=_prompt_sum)
    assert again.initial_score == 123.0
    # asking for it on resume of a run that started without it is allowed (not a config change)
    _run(_config(tmp_path / "late", **{"train.steps": 4}), t5, evaluate=_prompt_sum)
    late = _run(_config(tmp_path / "late", **{"train.steps": 8, "train.eval_at_start": True}),
                t5, evaluate=_prompt_sum)
    assert late.initial_score == pytest.approx(first.initial_score, rel=1e-6)
