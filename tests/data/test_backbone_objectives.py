"""The backbone's pretraining objectives on a synthetic token stream (no training)."""

from __future__ import annotations

import dataclasses

import numpy as np

from spot.data.offline.backbone import EOS_ID, OBJECTIVE_FIELDS, BackboneRecipe, make_batch, reference_objectives

STREAM = np.arange(3, 2003, dtype=np.int32)  # distinct ids: a window is its own fingerprint


def test_copy_targets_are_the_shuffled_window_it_was_given():
    recipe = BackboneRecipe(copy_steps=1, batch_size=4)
    b = make_batch(STREAM, "copy", recipe, 8192, np.random.default_rng(0))
    np.testing.assert_array_equal(b["encoder_input_tokens"], b["decoder_target_tokens"])
    for row in b["decoder_target_tokens"]:
        body = row[row > 0]
        assert body[-1] == EOS_ID and len(body) == recipe.input_length
        tokens = np.sort(body[:-1])
        # A contiguous window of the stream, in another order.
        np.testing.assert_array_equal(tokens, np.arange(tokens[0], tokens[0] + len(tokens)))
        assert not np.array_equal(body[:-1], tokens)
    np.testing.assert_array_equal(b["decoder_input_tokens"][:, 1:],
                                  b["decoder_target_tokens"][:, :-1])
    assert (b["decoder_input_tokens"][:, 0] == 0).all()


def test_reference_objectives_are_the_default_recipes():
    dense = BackboneRecipe(noise_density=0.3, mean_span=2.0, window=32, input_length=32,
                           num_decoder_layers=2, learning_rate=0.01)
    ref = reference_objectives(dense)
    default = BackboneRecipe()
    assert all(getattr(ref, f) == getattr(default, f) for f in OBJECTIVE_FIELDS)
    # Everything else (model shape, optimizer) is the recipe's own.
    assert dataclasses.replace(ref, **{f: getattr(dense, f) for f in OBJECTIVE_FIELDS}) == dense
