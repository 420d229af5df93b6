"""Where a run's frozen model and its vocabulary come from: size names, the released t5x
checkpoints, the embedded backbone, and the SentencePiece file shipped beside a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spot.config import RunConfig
from spot.model.t5 import T5_1_1_SIZES, canonical_preset

DEFAULT_CHECKPOINTS = {
    canonical_preset(s): f"gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_{s}/checkpoint_1100000"
    for s in T5_1_1_SIZES}
VOCAB_FILES = ("spiece.model", "sentencepiece.model", "vocab.model")
EMBEDDED_MODEL = "embedded"  # the tiny backbone the project pretrains itself (spot backbone)


def resolve_model_path(name: str, checkpoint: str = "") -> str:
    """An explicit checkpoint; else the embedded backbone's folder; else a size's released
    LM-adapted t5x checkpoint; else `name` itself (a folder or a hub id)."""
    if checkpoint:
        return checkpoint
    if name == EMBEDDED_MODEL:
        from spot.data.offline.backbone import backbone_path

        return str(backbone_path())
    preset = canonical_preset(name)
    if preset in DEFAULT_CHECKPOINTS:
        return DEFAULT_CHECKPOINTS[preset]
    return name


def resolve_vocab(config: RunConfig) -> Any:
    """data.vocab if set; else a SentencePiece file shipped beside the checkpoint; else T5's."""
    from spot.data.vocab import DEFAULT_VOCAB, load_vocabulary

    if config.data.vocab:
        return load_vocabulary(config.data.vocab)
    path = resolve_model_path(config.model.name, config.model.checkpoint)
    if "://" not in path and os.path.isdir(path):
        for name in VOCAB_FILES:
            if (Path(path) / name).is_file():
                return load_vocabulary(Path(path) / name)
    return load_vocabulary(DEFAULT_VOCAB)
