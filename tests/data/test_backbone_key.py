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
