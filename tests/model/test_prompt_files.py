"""Prompt files: the released prompts, spot's own format, the reference code's numpy
checkpoints, prompts inside t5x checkpoints, bad input, and `spot prompt info|export`."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from spot.errors import PromptError
from spot.model.prompt_files import check_prompt_width, load_prompt, load_prompt_metadata, save_prompt, sidecar_path


def test_released_prompts_load_as_float32_100x768(released_prompts_dir):
    for task in ("sst2", "mrpc", "rte"):
        prompt = load_prompt(released_prompts_dir / f"{task}.npy")
        assert prompt.shape == (100, 768) and prompt.dtype == np.float32
        np.testing.assert_array_equal(
            prompt, np.load(released_prompts_dir / f"{task}.npy", allow_pickle=False))
        assert 25 < prompt.std() < 60  # the release's prompts are large (std 30-50)


def test_released_prompt_in_a_model_of_another_width_fails_clearly(released_prompts_dir,
                                                                   t5x_tiny_checkpoint):
    import spot

    prompt = spot.load_prompt(released_prompts_dir / "rte.npy")
    with pytest.raises(PromptError, match="width 768 does not match the model's embedding "
                                          "size 4"):
        check_prompt_width(prompt, 4, source="rte.npy")
    model = spot.load_t5(t5x_tiny_checkpoint)
    with pytest.raises(PromptError, match="768.*4"):
        model.logits(np.array([[5, 1]]), np.array([[0]]), prompt=prompt)


@pytest.mark.parametrize("suffix", [".npy", ".safetensors"])
def test_save_and_load_roundtrip_with_sidecar(tmp_path, suffix):
    prompt = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float64)
    path = save_prompt(tmp_path / f"p{suffix}", prompt,
                       metadata={"task": "rte", "step": np.int64(10), "score": np.float32(0.5)})
    assert path == tmp_path / f"p{suffix}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"p{suffix}", f"p{suffix}.json"]
    got = load_prompt(path)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, prompt.astype(np.float32))
    meta = load_prompt_metadata(path)
    assert meta["shape"] == [7, 5] and meta["dtype"] == "float32"
    assert meta["metadata"] == {"task": "rte", "step": 10, "score": 0.5}
    assert json.loads(sidecar_path(path).read_text()) == meta


def test_save_prompt_suffix_rules(tmp_path):
    path = save_prompt(tmp_path / "noext", np.ones((2, 3)))
    assert path.name == "noext.npy" and path.is_file()
    with pytest.raises(PromptError, match="end in .npy or .safetensors"):
        save_prompt(tmp_path / "p.bin", np.ones((2, 3)))
    with pytest.raises(PromptError, match="NaN/Inf"):
        save_prompt(tmp_path / "bad.npy", np.array([[1.0, np.nan]]))
    assert not (tmp_path / "bad.npy").exists()
    with pytest.raises(PromptError, match="not JSON-serializable"):
        save_prompt(tmp_path / "m.npy", np.ones((2, 3)), metadata={"f": object()})


class _Payload:
    marker = ""

    def __reduce__(self):
        return (Path.write_text, (Path(_Payload.marker), "executed"))


def test_pickles_are_refused_never_loaded(tmp_path):
    _Payload.marker = str(tmp_path / "pwned")
    obj = np.array([_Payload(), 1], dtype=object)
    np.save(tmp_path / "obj.npy", obj, allow_pickle=True)
    with pytest.raises(PromptError, match="pickled Python objects"):
        load_prompt(tmp_path / "obj.npy")
    (tmp_path / "raw.npy").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(PromptError, match="pickled Python data"):
        load_prompt(tmp_path / "raw.npy")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(PromptError, match="neither .npy nor .npz"):
        load_prompt(tmp_path / "text.npy")


@pytest.mark.parametrize("array, message", [
    (np.array([[1.0, np.inf], [0.0, 1.0]], np.float32), r"non-finite value at token 0, dim 1 "
                                                         r"\(1 of 4 values are NaN/Inf\)"),
    (np.full((2, 2), np.nan, np.float32), "4 of 4 values are NaN/Inf"),
    (np.ones((3,), np.float32), r"expected a 2-D \[length, width\] array, got shape \(3,\)"),
    (np.ones((1, 3, 4), np.float32), r"got shape \(1, 3, 4\)"),
    (np.ones((3, 4), np.int32), "expected floating-point numbers, got dtype int32"),
    (np.ones((0, 4), np.float32), "empty shape"),
])
def test_bad_prompt_arrays(tmp_path, array, message):
    np.save(tmp_path / "p.npy", array)
    with pytest.raises(PromptError, match=message):
        load_prompt(tmp_path / "p.npy")


def test_safetensors_tensor_choice(tmp_path):
    from safetensors.numpy import save_file

    a, b = np.ones((2, 3), np.float32), np.zeros((4, 3), np.float32)
    save_file({"weights": a}, tmp_path / "single.safetensors")
    np.testing.assert_array_equal(load_prompt(tmp_path / "single.safetensors"), a)
    save_file({"other": a, "prompt_embeddings": b}, tmp_path / "peft.safetensors")
    np.testing.assert_array_equal(load_prompt(tmp_path / "peft.safetensors"), b)
    save_file({"prompt": a, "prompt_embeddings": b}, tmp_path / "both.safetensors")
    np.testing.assert_array_equal(load_prompt(tmp_path / "both.safetensors"), a)
    save_file({"x": a, "y": b}, tmp_path / "two.safetensors")
    with pytest.raises(PromptError, match="holds 2 tensors .x, y. and none is named"):
        load_prompt(tmp_path / "two.safetensors")
    data = (tmp_path / "single.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-5])
    with pytest.raises(PromptError, match="cut.safetensors: not a readable safetensors"):
        load_prompt(tmp_path / "cut.safetensors")


def test_bfloat16_safetensors_prompt_becomes_float32(tmp_path):
    import ml_dtypes
    from safetensors.numpy import save_file

    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_file({"prompt": a.astype(ml_dtypes.bfloat16)}, tmp_path / "bf.safetensors")
    got = load_prompt(tmp_path / "bf.safetensors")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, a)


def _numpy_checkpoint(root: Path, step: int, value: float) -> Path:
    """The reference code writes `np.save` bytes to a file without the .npy suffix."""
    folder = root / "numpy_checkpoints" / f"checkpoint_{step}"
    folder.mkdir(parents=True)
    with open(folder / "encoder.prompt.prompt.prompt", "wb") as f:
        np.save(f, np.full((4, 6), value, np.float32))
    return folder


def test_reference_numpy_checkpoint_layout(tmp_path):
    _numpy_checkpoint(tmp_path, 5, 5.0)
    _numpy_checkpoint(tmp_path, 1200, 1200.0)
    _numpy_checkpoint(tmp_path, 300, 300.0)
    file = tmp_path / "numpy_checkpoints" / "checkpoint_300" / "encoder.prompt.prompt.prompt"
    assert load_prompt(file)[0, 0] == 300.0
    assert load_prompt(file.parent)[0, 0] == 300.0
    assert load_prompt(tmp_path / "numpy_checkpoints")[0, 0] == 1200.0
    assert load_prompt(tmp_path)[0, 0] == 1200.0
    assert load_prompt(tmp_path).shape == (4, 6)


def test_prompt_inside_a_t5x_checkpoint(tmp_path):
    from spot.model.checkpoints import flatten_params
    from spot.model.t5 import T5Config
    from tests.model.test_checkpoints import random_params
    from tests.model.test_checkpoints_t5x import write_t5x_checkpoint

    flat = flatten_params(random_params(T5Config.preset("test_tiny")))
    prompt = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32)
    ckpt = write_t5x_checkpoint(tmp_path / "model" / "checkpoint_40",
                                {**flat, "encoder/prompt/prompt/prompt": prompt})
    np.testing.assert_array_equal(load_prompt(ckpt), prompt)
    np.testing.assert_array_equal(load_prompt(tmp_path / "model"), prompt)
    np.testing.assert_array_equal(load_prompt(ckpt / "checkpoint"), prompt)
    plain = write_t5x_checkpoint(tmp_path / "plain" / "checkpoint_1", flat)
    with pytest.raises(PromptError, match="holds no prompt .no target/encoder/prompt/prompt/"
                                          "prompt"):
        load_prompt(plain)


def test_missing_and_empty_locations(tmp_path):
    with pytest.raises(PromptError, match="no such prompt file or folder"):
        load_prompt(tmp_path / "nope.npy")
    with pytest.raises(PromptError, match="a folder with no prompt in it"):
        load_prompt(tmp_path)


def test_prompt_info_cli(tmp_path, capsys):
    from spot.cli import main

    prompt = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
    path = save_prompt(tmp_path / "p.npy", prompt, metadata={"task": "cb"})
    main(["prompt", "info", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    norms = np.sqrt((prompt.astype(np.float64) ** 2).sum(axis=1))
    assert report["shape"] == [6, 4] and report["dtype"] == "float32"
    assert report["token_norm_mean"] == pytest.approx(norms.mean(), rel=1e-12)
    assert report["token_norm_min"] == pytest.approx(norms.min(), rel=1e-12)
    assert report["token_norm_max"] == pytest.approx(norms.max(), rel=1e-12)
    assert report["mean"] == pytest.approx(prompt.astype(np.float64).mean(), rel=1e-9)
    assert report["std"] == pytest.approx(prompt.astype(np.float64).std(), rel=1e-9)
    assert report["metadata"]["metadata"] == {"task": "cb"}
    main(["prompt", "info", str(path)])
    text = capsys.readouterr().out
    assert "6 x 4 (float32)" in text and '"task": "cb"' in text


def test_prompt_export_cli_between_npy_and_safetensors(tmp_path, capsys):
    from spot.cli import main

    prompt = np.random.default_rng(4).normal(size=(3, 8)).astype(np.float32)
    src = save_prompt(tmp_path / "p.npy", prompt, metadata={"task": "wic"})
    main(["prompt", "export", str(src), "--format", "safetensors", "--out",
          str(tmp_path / "q")])
    out = tmp_path / "q.safetensors"
    np.testing.assert_array_equal(load_prompt(out), prompt)
    meta = load_prompt_metadata(out)["metadata"]
    assert meta == {"task": "wic", "exported_from": str(src)}
    main(["prompt", "export", str(out), "--format", "npy", "--out", str(tmp_path / "r.npy")])
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy", allow_pickle=False), prompt)
    with pytest.raises(SystemExit):
        main(["prompt", "export", str(src), "--format", "npy", "--out",
              str(tmp_path / "r.safetensors")])
    assert "ends in .safetensors but --format is npy" in capsys.readouterr().err
