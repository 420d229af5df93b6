"""The backbone shipped inside the package (`spot/data/offline/embedded_backbone`, the demo's
`--model embedded`): its weights are the file its report records, its recipe is
`EMBEDDED_RECIPE`, its held-out figures are reproduced from the weights, it is used without a
build, a damaged copy is refused, and a prompt tuned on it learns a source task."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil

import pytest

from spot.data.offline import backbone
from spot.errors import CheckpointError

SHIPPED = backbone.SHIPPED_DIR


def _report() -> dict:
    return json.loads((SHIPPED / "pretraining.json").read_text(encoding="utf-8"))


def test_files_hash_and_recipe():
    assert sorted(p.name for p in SHIPPED.iterdir()) == [
        "config.json", "params.safetensors", "pretraining.json", "vocab.model"]
    made = _report()
    assert hashlib.sha256((SHIPPED / "params.safetensors").read_bytes()).hexdigest() == \
        made["params_sha256"]
    assert made["recipe"] == dataclasses.asdict(backbone.EMBEDDED_RECIPE)
    assert made["recipe_key"] == backbone.EMBEDDED_RECIPE.key()
    from spot.model.checkpoints import load_native

    cfg, flat, meta = load_native(SHIPPED)
    assert meta["recipe"] == made["recipe"]
    assert {v.dtype.name for v in flat.values()} == {"bfloat16"}
    assert sum(v.size for v in flat.values()) == made["parameters"]
    assert (SHIPPED / "params.safetensors").stat().st_size < 16 * 2 ** 20
    assert cfg == backbone.model_config(backbone.EMBEDDED_RECIPE, backbone.EMBEDDED_RECIPE.vocab_size)


def test_the_recipe_rebuilds_the_shipped_vocabulary_byte_for_byte(tmp_path):
    """`spot backbone build` trains its vocabulary from the corpus and `VOCAB_TASKS`; that
    must give the shipped file exactly, or a rebuild would not be the shipped backbone."""
    from spot.data.offline import suite
    from spot.data.offline.vocab import VOCAB_TASKS, build_vocabulary

    assert set(VOCAB_TASKS) <= set(suite.TASK_NAMES)  # a renamed task must be caught here
    built = build_vocabulary(tmp_path, vocab_size=backbone.EMBEDDED_RECIPE.vocab_size)
    assert built.read_bytes() == (SHIPPED / "vocab.model").read_bytes()


@pytest.mark.slow
def test_heldout_figures_are_those_of_the_shipped_weights():
    from spot.train.pretrain import diagnose

    made = _report()
    measured = diagnose(SHIPPED)["heldout"]
    rel = 1e-5  # float32 sums of per-token losses differ that much between XLA:CPU builds
    for objective in ("span", "prefix_lm"):
        want = made["heldout_encoder_reliance"][objective]
        got = measured[objective]
        for key in ("perplexity", "perplexity_other_example_input"):
            assert got[key] == pytest.approx(want[key], rel=rel), key
        assert got["perplexity"] == pytest.approx(made["heldout_perplexity"][objective], rel=rel)
        # nats_from_encoder is log(other / own): two perplexities each within `rel` put it
        # within log((1 + rel) / (1 - rel)) ~ 2 rel *absolute*. It is near zero here, so a
        # relative tolerance on it would demand far more than the perplexities themselves.
        assert got["nats_from_encoder"] == pytest.approx(
            math.log(got["perplexity_other_example_input"] / got["perplexity"]), abs=1e-12)
        assert got["nats_from_encoder"] == pytest.approx(
            want["nats_from_encoder"], rel=0, abs=math.log((1 + rel) / (1 - rel)))


def test_used_without_a_build(private_cache):
    from spot.train.pretrain import build_backbone

    assert backbone.backbone_path() == SHIPPED
    logs: list[str] = []
    assert build_backbone(log=logs.append, progress=False) == SHIPPED
    assert "shipped" in logs[-1]
    from spot.config import RunConfig, apply_overrides
    from spot.train.model_paths import resolve_model_path, resolve_vocab

    assert resolve_model_path("embedded") == str(SHIPPED)
    vocab = resolve_vocab(apply_overrides(RunConfig(), {"model.name": "embedded"}))
    assert vocab.sentencepiece_model_file == str(SHIPPED / "vocab.model")


def test_a_damaged_copy_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "embedded_backbone"
    shutil.copytree(SHIPPED, copy)
    data = bytearray((copy / "params.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "params.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(backbone, "SHIPPED_DIR", copy)
    with pytest.raises(CheckpointError, match="not the file its pretraining.json records"):
        backbone.shipped_backbone(backbone.EMBEDDED_RECIPE)
    # Another recipe is simply not the shipped one.
    assert backbone.shipped_backbone(dataclasses.replace(backbone.EMBEDDED_RECIPE, seed=1)) is None


@pytest.mark.slow
def test_a_prompt_tuned_on_it_learns_a_source_task(tmp_path):
    """The demo's prompt-tuning recipe (prompt length 20 from class labels, Adafactor lr 0.3,
    batch 16) on the frozen shipped backbone, one source task: well above the majority class
    of the validation examples it is scored on."""
    from collections import Counter

    from spot.config import RunConfig, apply_overrides
    from spot.data import pipeline, registry
    from spot.data.vocab import load_vocabulary
    from spot.model.api import load_t5
    from spot.train.run import train

    task, max_eval = "offline_vader_valence", 200
    vocab = load_vocabulary(SHIPPED / "vocab.model")
    cfg = apply_overrides(RunConfig(), {
        "model.name": "embedded", "model.dtype": "float32", "model.param_dtype": "float32",
        "data.task": task, "data.batch_size": 16,
        "data.input_length": pipeline.fitted_input_length(task, vocab, 64),
        "data.target_length": 8, "data.max_eval_examples": max_eval, "data.eval_batch_size": 100,
        "prompt.length": 20, "train.steps": 200, "train.eval_every": 50,
        "train.checkpoint_every": 200, "train.log_every": 50, "train.progress": False,
        "train.out_dir": str(tmp_path / "run")})
    result = train(cfg, t5=load_t5(SHIPPED, "float32"), vocab=vocab, log=lambda s: None)
    scored = pipeline.eval_examples(registry.get(task), "validation", max_eval)
    majority = 100.0 * max(Counter(e["targets"] for e in scored).values()) / len(scored)
    print(f"{task}: best validation accuracy {result.best_score:.1f} at step "
          f"{result.best_step}; majority of the scored examples {majority:.1f}")
    assert result.best_score > majority + 15.0
