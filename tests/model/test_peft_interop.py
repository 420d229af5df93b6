"""PEFT interop: spot's exported adapters load in `peft` and give spot's logits; adapters
written by `peft` itself load in spot; other adapter types and wrong widths are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spot.errors import PromptError
from spot.model.prompt_files import check_prompt_width, load_prompt, save_prompt
from tests.model.test_checkpoints_hf import hf_t5
from tests.model.test_parity_hf import MAX_REL_ERR, max_rel_err, padded_batch

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

E = 12
BASE = dict(vocab=97, d_model=E, num_heads=3, d_kv=4, d_ff=19, num_layers=2, buckets=8,
            max_distance=20)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("peft") / "base"
    hf_t5(7, **BASE).save_pretrained(folder)
    return folder


def _base_model(folder):
    from transformers import T5ForConditionalGeneration

    return T5ForConditionalGeneration.from_pretrained(folder).eval()


def test_exported_adapter_loads_in_peft_and_matches_spot(tmp_path, base_dir):
    from safetensors.numpy import load_file

    import spot
    from spot.cli import main

    rng = np.random.default_rng(0)
    prompt = rng.normal(size=(5, E)).astype(np.float32)
    save_prompt(tmp_path / "p.npy", prompt)
    adapter = tmp_path / "adapter"
    main(["prompt", "export", str(tmp_path / "p.npy"), "--format", "peft", "--base-model",
          str(base_dir), "--out", str(adapter)])
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert {k: cfg[k] for k in ("peft_type", "task_type", "num_virtual_tokens", "token_dim",
                                "num_transformer_submodules", "num_layers",
                                "num_attention_heads", "base_model_name_or_path")} == {
        "peft_type": "PROMPT_TUNING", "task_type": "SEQ_2_SEQ_LM", "num_virtual_tokens": 5,
        "token_dim": E, "num_transformer_submodules": 1, "num_layers": 2,
        "num_attention_heads": 3, "base_model_name_or_path": str(base_dir)}
    stored = load_file(adapter / "adapter_model.safetensors")
    assert list(stored) == ["prompt_embeddings"]
    np.testing.assert_array_equal(stored["prompt_embeddings"], prompt)

    peft_model = peft.PeftModel.from_pretrained(_base_model(base_dir), adapter).eval()
    weight = peft_model.prompt_encoder["default"].embedding.weight.detach().numpy()
    np.testing.assert_array_equal(weight, prompt)

    enc = padded_batch(rng, BASE["vocab"], [13, 4, 9], 13)
    dec = padded_batch(rng, BASE["vocab"], [6, 2, 4], 6)
    dec[:, 0] = 0
    with torch.no_grad():
        ids = torch.as_tensor(enc, dtype=torch.long)
        ref = peft_model(input_ids=ids, attention_mask=(ids > 0).long(),
                         decoder_input_ids=torch.as_tensor(dec, dtype=torch.long)).logits.numpy()
    ours = spot.load_t5(base_dir).logits(enc, dec, prompt=load_prompt(adapter))
    err = max_rel_err(ours, ref)
    print(f"PEFT vs spot: max rel err {err:.2e}")
    assert ref.shape == ours.shape == (3, 6, BASE["vocab"])
    assert err <= MAX_REL_ERR

    back = load_prompt(adapter)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, prompt)


@pytest.mark.parametrize("submodules", [1, 2])
def test_adapters_written_by_peft_load_encoder_rows(tmp_path, base_dir, submodules):
    config = peft.PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=4,
                                     num_transformer_submodules=submodules)
    model = peft.get_peft_model(_base_model(base_dir), config)
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.normal_()
    model.save_pretrained(tmp_path / "adapter")
    weight = model.prompt_encoder["default"].embedding.weight.detach().numpy()
    assert weight.shape == (4 * submodules, E)
    got = load_prompt(tmp_path / "adapter")
    np.testing.assert_array_equal(got, weight[:4])
    # The weights file alone (with its config beside it) reads the same.
    np.testing.assert_array_equal(load_prompt(tmp_path / "adapter" / "adapter_model.safetensors"),
                                  weight[:4])


def test_lora_adapter_is_refused(tmp_path, base_dir):
    config = peft.LoraConfig(task_type="SEQ_2_SEQ_LM", target_modules=["q", "v"], r=2)
    peft.get_peft_model(_base_model(base_dir), config).save_pretrained(tmp_path / "lora")
    with pytest.raises(PromptError, match="a LORA PEFT adapter, not a prompt-tuning one"):
        load_prompt(tmp_path / "lora")


def test_widths_that_do_not_match_are_refused(tmp_path, base_dir, capsys):
    from spot.cli import main

    save_prompt(tmp_path / "narrow.npy", np.ones((3, E - 2), np.float32))
    with pytest.raises(SystemExit) as exit_info:
        main(["prompt", "export", str(tmp_path / "narrow.npy"), "--format", "peft",
              "--base-model", str(base_dir), "--out", str(tmp_path / "a")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"prompt width {E - 2} does not match the model's embedding size {E}" in err
    assert not (tmp_path / "a").exists()

    save_prompt(tmp_path / "ok.npy", np.ones((3, E), np.float32))
    main(["prompt", "export", str(tmp_path / "ok.npy"), "--format", "peft",
          "--base-model", str(base_dir), "--out", str(tmp_path / "a")])
    with pytest.raises(PromptError, match=f"width {E} does not match the model's embedding "
                                          "size 16"):
        check_prompt_width(load_prompt(tmp_path / "a"), 16, source=str(tmp_path / "a"))
    cfg_file = tmp_path / "a" / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**cfg, "token_dim": 16}))
    with pytest.raises(PromptError, match=r"shape \(3, 12\) but adapter_config.json says "
                                          "token_dim 16"):
        load_prompt(tmp_path / "a")


def test_export_without_base_model_or_to_a_foreign_folder(tmp_path, base_dir, capsys):
    from spot.cli import main

    save_prompt(tmp_path / "ok.npy", np.ones((3, E), np.float32))
    with pytest.raises(SystemExit):
        main(["prompt", "export", str(tmp_path / "ok.npy"), "--format", "peft",
              "--out", str(tmp_path / "a")])
    assert "needs --base-model" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with pytest.raises(SystemExit):
        main(["prompt", "export", str(tmp_path / "ok.npy"), "--format", "peft",
              "--base-model", str(base_dir), "--out", str(tmp_path / "busy")])
    assert "not a PEFT adapter folder" in capsys.readouterr().err
    assert (tmp_path / "busy" / "keep.txt").read_text() == "x"


def test_library_import_reads_a_peft_folder(tmp_path, base_dir):
    from spot.cli import main
    from spot.library.store import PromptLibrary

    prompt = np.random.default_rng(5).normal(size=(4, E)).astype(np.float32)
    save_prompt(tmp_path / "p.npy", prompt)
    main(["prompt", "export", str(tmp_path / "p.npy"), "--format", "peft", "--base-model",
          str(base_dir), "--out", str(tmp_path / "adapter")])
    main(["library", "import", str(tmp_path / "adapter"), "--task", "boolq", "--root",
          str(tmp_path / "lib")])
    with PromptLibrary(tmp_path / "lib", create=False) as lib:
        (entry,) = lib.entries(task="boolq")
        np.testing.assert_array_equal(lib.load_prompt(entry), prompt)
