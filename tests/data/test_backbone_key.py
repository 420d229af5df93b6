"""The backbone's cache folder is keyed by the recipe *and* the data: the vocabulary model's
bytes and the corpus files. A build on another corpus or vocabulary must neither reuse nor
overwrite the cached one."""

from __future__ import annotations

import dataclasses
import shutil
import time

import pytest

from spot.data.offline import backbone
from spot.errors import CheckpointError
from spot.train import pretrain

TINY = backbone.BackboneRecipe(reconstruct_steps=1, span_steps=1, prefix_lm_steps=1,
                               batch_size=2, emb_dim=16, mlp_dim=32, num_layers=1, num_heads=2,
                               head_dim=8, window=16, input_length=16, span_target_length=8,
                               prefix_target_length=8)


def test_default_vocabulary_is_the_suite_vocabulary(private_cache):
    from spot.data.offline.vocab import default_vocabulary_path

    assert backbone.vocabulary_path(backbone.BackboneRecipe(), build=False) == \
        default_vocabulary_path()


def test_key_is_cheap(private_cache):
    backbone.backbone_key(TINY)  # first call hashes the files
    t0 = time.perf_counter()
    for _ in range(10):
        backbone.backbone_key(TINY)
    assert (time.perf_counter() - t0) / 10 < 0.05


def _other_sentencepiece_model(path, tmp_path):
    """A different valid vocabulary: 300 pieces trained on a few corpus sentences."""
    import sentencepiece as spm

    from spot.data.offline.corpus import load_corpus

    text = tmp_path / "text.txt"
    text.write_text("\n".join(load_corpus("train")[:300]), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "small"),
                                   vocab_size=300, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   num_threads=1, minloglevel=2)
    shutil.copyfile(tmp_path / "small.model", path)


@pytest.mark.slow
def test_other_corpus_or_vocabulary_is_another_cache_entry(private_cache, tmp_path,
                                                           monkeypatch):
    from spot.data.offline import sources

    built = pretrain.build_backbone(TINY, log=lambda s: None, progress=False)
    assert backbone.backbone_path(TINY) == built
    made = (built / "pretraining.json").read_bytes()

    # Another corpus (one news story more): the cached build is not this recipe's any more.
    lee = sources.gensim_test_file("lee.cor")
    edited = tmp_path / "lee.cor"
    edited.write_bytes(lee.read_bytes() + b"One more story about the weather in Sydney.\n")
    real = sources.gensim_test_file
    monkeypatch.setattr(sources, "gensim_test_file",
                        lambda name: edited if name == "lee.cor" else real(name))
    with pytest.raises(CheckpointError, match="not built yet"):
        backbone.backbone_path(TINY)
    monkeypatch.setattr(sources, "gensim_test_file", real)
    assert backbone.backbone_path(TINY) == built

    # Another vocabulary (the recipe's vocabulary file has other bytes): a fresh build in its
    # own folder, and the first build is left as it was. (A file replaced in place within one
    # process is not re-read by the vocabulary loaders, so the test points the recipe at
    # another file.)
    other = tmp_path / "other" / backbone.vocabulary_path(TINY, build=False).name
    other.parent.mkdir()
    _other_sentencepiece_model(other, tmp_path)
    monkeypatch.setattr(backbone, "vocabulary_path", lambda recipe, build=True: other)
    with pytest.raises(CheckpointError, match="not built yet"):
        backbone.backbone_path(TINY)
    rebuilt = pretrain.build_backbone(TINY, log=lambda s: None, progress=False)
    assert rebuilt != built and backbone.backbone_path(TINY) == rebuilt
    assert (built / "pretraining.json").read_bytes() == made
    from spot.model.checkpoints import load_native

    assert load_native(rebuilt)[0].vocab_size == 512  # 300 pieces + 100 sentinels, padded


def test_recipe_changes_change_the_key(private_cache):
    other = dataclasses.replace(TINY, num_decoder_layers=2)
    assert backbone.backbone_key(other) != backbone.backbone_key(TINY)
    assert backbone.model_config(other, 300).num_decoder_layers == 2
    assert backbone.model_config(TINY, 300).num_decoder_layers == 1


def test_the_stage_mixture_and_its_examples_are_part_of_the_key(private_cache, monkeypatch):
    """A recipe with a multi-task stage is keyed by what the stage trains on: another mixture,
    or the same mixture with other training examples, is another cache entry, and the shipped
    backbone is not taken for a recipe whose stage data differ from those it was tuned on."""
    from spot.data import registry
    from spot.data.offline import suite

    monkeypatch.setattr(backbone, "_STAGE_DIGESTS", {})
    staged = dataclasses.replace(TINY, multitask_steps=1)
    two = registry.make_mixture(["offline_vader_valence", "offline_pos_word"])
    three = registry.make_mixture(["offline_vader_valence", "offline_pos_word",
                                   "offline_text_source"])
    keys = {m: backbone.backbone_key(dataclasses.replace(staged, multitask_mixture=m))
            for m in (two, three)}
    assert len(set(keys.values())) == 2
    assert backbone.backbone_key(TINY) not in keys.values()  # no stage: no stage digest
    assert "stage" not in backbone.data_digest(backbone.vocabulary_path(TINY, build=False), TINY)

    # The digest is of the examples: recomputed from edited training data, it changes.
    recipe = dataclasses.replace(staged, multitask_mixture=two)
    first = backbone.stage_digest(recipe)
    real = suite.build_task

    def edited(task, seed=0):
        t = real(task, seed)
        if task != "offline_pos_word":
            return t
        train = [dict(ex) for ex in t.splits["train"]]
        train[0]["targets"] = "verb" if train[0]["targets"] != "verb" else "noun"
        return dataclasses.replace(t, splits={**t.splits, "train": train})

    monkeypatch.setattr(suite, "build_task", edited)
    monkeypatch.setattr(backbone, "_STAGE_DIGESTS", {})
    # ... but a later process reads the digest kept in the cache (the modules did not change)
    assert backbone.stage_digest(recipe) == first
    shutil.rmtree(private_cache / "stage-digests")
    monkeypatch.setattr(backbone, "_STAGE_DIGESTS", {})
    assert backbone.stage_digest(recipe) != first

    # The shipped backbone records the digest of the package's source tasks.
    monkeypatch.setattr(backbone, "stage_digest", lambda r: "0" * 64)
    assert backbone.shipped_backbone(backbone.EMBEDDED_RECIPE) is None


def test_the_stage_digest_is_read_from_the_cache_in_a_later_process(private_cache,
                                                                    monkeypatch):
    from spot.data import registry
    from spot.data.offline import suite

    monkeypatch.setattr(backbone, "_STAGE_DIGESTS", {})
    recipe = dataclasses.replace(TINY, multitask_steps=1, multitask_mixture=registry.make_mixture(
        ["offline_vader_valence", "offline_rel_plural"]))
    digest = backbone.stage_digest(recipe)
    assert [p.read_text().strip() for p in (private_cache / "stage-digests").iterdir()] == [digest]

    def no_build(*a, **k):
        raise AssertionError("built the tasks again")

    monkeypatch.setattr(suite, "build_task", no_build)
    monkeypatch.setattr(backbone, "_STAGE_DIGESTS", {})
    t0 = time.perf_counter()
    assert backbone.stage_digest(recipe) == digest
    assert time.perf_counter() - t0 < 0.5
