"""The embedded recipe's two extra phases on a tiny recipe: the random-copy phase (its own
optimizer), the multi-task stage (model tuning on the suite's sources), bfloat16 weights
whose held-out figures are measured as saved, and a build killed in the stage that resumes
without pretraining again."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from spot.data.offline import backbone
from spot.train import pretrain

TINY = backbone.BackboneRecipe(reconstruct_steps=2, span_steps=2, prefix_lm_steps=2,
                               random_copy_steps=3, multitask_steps=4, multitask_eval_every=2,
                               save_dtype="bfloat16", batch_size=4, emb_dim=16, mlp_dim=32,
                               num_layers=1, num_heads=2, head_dim=8, window=16, input_length=16,
                               span_target_length=8, prefix_target_length=8)


def test_random_copy_batch_is_an_in_order_copy():
    batch = backbone.random_copy_batch(np.random.default_rng(0), 5, length=8, alphabet=50)
    enc = batch["encoder_input_tokens"]
    assert enc.shape == (5, 9) and (enc[:, -1] == 1).all()
    assert ((enc[:, :-1] >= 3) & (enc[:, :-1] < 53)).all()
    np.testing.assert_array_equal(batch["decoder_target_tokens"], enc)
    np.testing.assert_array_equal(batch["decoder_input_tokens"][:, 1:], enc[:, :-1])
    assert (batch["decoder_input_tokens"][:, 0] == 0).all()


def test_phase_order():
    names = [pretrain._objective(TINY, step) for step in range(TINY.pretraining_steps)]
    assert names == ["random_copy"] * 3 + ["reconstruct"] * 2 + ["span"] * 2 + ["prefix_lm"] * 2


def test_bad_save_dtype_is_refused():
    from spot.errors import ConfigError

    with pytest.raises(ConfigError, match="save_dtype"):
        dataclasses.replace(TINY, save_dtype="float16")


@pytest.mark.slow
def test_stages_build_resume_and_record(private_cache, monkeypatch):
    logs: list[str] = []
    built = pretrain.build_backbone(TINY, log=logs.append, progress=False)
    made = json.loads((built / "pretraining.json").read_text())
    objectives = [r["objective"] for r in made["history"]]
    assert objectives[0] == "random_copy" and "multitask" in objectives
    evals = [r for r in made["history"] if r["objective"] == "multitask_eval"]
    # Evaluated at stage steps 2 and 4, on every source task of the suite.
    from spot.data import registry

    members = registry.get("offline_sources").members
    assert [r["step"] for r in evals] == [TINY.pretraining_steps + 2, TINY.pretraining_steps + 4]
    assert {k.removesuffix("/score") for k in evals[-1] if k.endswith("/score")} >= set(members)
    assert made["multitask_scores"] == evals[-1]
    # The weights are stored in bfloat16, their recorded hash is theirs, the side folders of
    # the build are gone, and the held-out figures are those of the weights as stored.
    from spot.model.checkpoints import load_native

    _, flat, _ = load_native(built)
    assert {v.dtype.name for v in flat.values()} == {"bfloat16"}
    assert hashlib.sha256((built / "params.safetensors").read_bytes()).hexdigest() == \
        made["params_sha256"]
    assert sorted(p.name for p in built.parent.glob(built.name + ".*")) == []
    d = pretrain.diagnose(built)["heldout"]
    for objective in ("span", "prefix_lm"):
        assert d[objective] == pytest.approx(made["heldout_encoder_reliance"][objective],
                                             rel=1e-5)
        assert d[objective]["perplexity"] == pytest.approx(made["heldout_perplexity"][objective],
                                                           rel=1e-5)

    # Killed in the stage: the corpus phases are kept, the stage run resumes, and the result
    # is the same file as the uninterrupted build's.
    calls = {"n": 0}
    real_stage = pretrain._multitask_stage

    def killed(*args, **kwargs):
        calls["n"] += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain, "_multitask_stage", killed)
    with pytest.raises(KeyboardInterrupt):
        pretrain.build_backbone(TINY, force=True, log=logs.append, progress=False)
    assert (built.parent / (built.name + ".pretrained") / "history.json").is_file()
    monkeypatch.setattr(pretrain, "_multitask_stage", real_stage)

    def no_pretraining(*args, **kwargs):
        raise AssertionError("pretrained again after a kill in the multi-task stage")

    monkeypatch.setattr(pretrain, "_pretrain", no_pretraining)
    again = pretrain.build_backbone(TINY, force=True, log=logs.append, progress=False)
    assert any("corpus phases already done" in line for line in logs)
    remade = json.loads((again / "pretraining.json").read_text())
    assert remade["params_sha256"] == made["params_sha256"]
    assert [r for r in remade["history"] if "seconds" not in r] == \
        [r for r in made["history"] if "seconds" not in r]
