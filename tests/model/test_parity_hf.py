"""Golden numerics: spot's logits against PyTorch `transformers` T5 on the same weights.

Each case builds a `T5ForConditionalGeneration` with odd sizes and non-default relative
position buckets, saves it with `save_pretrained`, loads the folder with `spot.load_t5` and
compares float32 logits on right-padded batches of different lengths, without and with a
prompt (PyTorch side: the prompt prepended to the embedded inputs via `inputs_embeds`, the
attention mask extended with ones).

Error measure: max relative error = max|spot - torch| / max|torch| over the whole
[B, T, V] logits tensor; the bound is 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.model.test_checkpoints_hf import hf_t5

torch = pytest.importorskip("torch")

MAX_REL_ERR = 1e-4

CASES = {
    # name: hf_t5 keyword arguments
    "t5_1_1_e20_h3_d7": dict(vocab=137, d_model=20, num_heads=3, d_kv=7, d_ff=37,
                             num_layers=2, num_decoder_layers=3, buckets=5, max_distance=9),
    "t5_1_1_e18_h2_d5": dict(vocab=211, d_model=18, num_heads=2, d_kv=5, d_ff=29,
                             num_layers=3, num_decoder_layers=2, buckets=16, max_distance=40),
    "t5_1_1_e13_h5_d3": dict(vocab=101, d_model=13, num_heads=5, d_kv=3, d_ff=23,
                             num_layers=2, num_decoder_layers=2, buckets=11, max_distance=17),
    "t5_1_0_tied_relu": dict(vocab=293, d_model=20, num_heads=3, d_kv=7, d_ff=37,
                             num_layers=2, num_decoder_layers=2, buckets=9, max_distance=25,
                             feed_forward_proj="relu", tie_word_embeddings=True),
}


def max_rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def padded_batch(rng: np.random.Generator, vocab: int, lengths: list[int],
                 width: int) -> np.ndarray:
    out = np.zeros((len(lengths), width), np.int32)
    for i, n in enumerate(lengths):
        out[i, :n] = rng.integers(2, vocab, size=n)
    return out


def torch_logits(model, enc: np.ndarray, dec: np.ndarray, prompt: np.ndarray | None):
    ids = torch.as_tensor(enc, dtype=torch.long)
    mask = (ids > 0).long()
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
        if prompt is not None:
            p = torch.as_tensor(prompt)[None].expand(ids.shape[0], -1, -1)
            embeds = torch.cat([p, embeds], dim=1)
            mask = torch.cat([torch.ones(ids.shape[0], prompt.shape[0], dtype=torch.long),
                              mask], dim=1)
        out = model(inputs_embeds=embeds, attention_mask=mask,
                    decoder_input_ids=torch.as_tensor(dec, dtype=torch.long))
    return out.logits.numpy()


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    models = {}
    for i, (name, kwargs) in enumerate(CASES.items()):
        folder = tmp_path_factory.mktemp("parity") / name
        model = hf_t5(100 + i, **kwargs)
        model.save_pretrained(folder)
        models[name] = (model, folder, kwargs)
    return models


@pytest.mark.parametrize("name", list(CASES))
def test_logits_match_transformers(name, saved_models):
    import spot

    model, folder, kwargs = saved_models[name]
    ours = spot.load_t5(folder, dtype="float32")
    cfg = ours.config
    assert (cfg.emb_dim, cfg.num_heads, cfg.head_dim, cfg.mlp_dim) == (
        kwargs["d_model"], kwargs["num_heads"], kwargs["d_kv"], kwargs["d_ff"])
    assert cfg.relative_attention_num_buckets == kwargs["buckets"]
    assert cfg.relative_attention_max_distance == kwargs["max_distance"]
    assert cfg.logits_via_embedding == kwargs.get("tie_word_embeddings", False)
    rng = np.random.default_rng(len(name))
    vocab = kwargs["vocab"]
    enc = padded_batch(rng, vocab, [23, 9, 1, 17], 23)  # spans the max distance
    dec = padded_batch(rng, vocab, [11, 4, 7, 1], 11)
    dec[:, 0] = 0  # decoder inputs start with 0 (t5x / HF decoder_start_token_id)
    prompt = rng.normal(scale=1.0, size=(6, kwargs["d_model"])).astype(np.float32)
    errors = {}
    for label, p in (("no prompt", None), ("prompt", prompt)):
        ref = torch_logits(model, enc, dec, p)
        got = ours.logits(enc, dec, prompt=p)
        assert got.shape == ref.shape == (4, 11, vocab)
        errors[label] = max_rel_err(got, ref)
        print(f"{name} [{label}]: max rel err {errors[label]:.2e}, max abs err "
              f"{np.max(np.abs(got - ref)):.2e}, max |logit| {np.max(np.abs(ref)):.2f}")
    assert errors["no prompt"] <= MAX_REL_ERR, errors
    assert errors["prompt"] <= MAX_REL_ERR, errors
    # The prompt must matter, or the second comparison proves nothing.
    assert max_rel_err(torch_logits(model, enc, dec, prompt),
                       torch_logits(model, enc, dec, None)) > 1e-2
