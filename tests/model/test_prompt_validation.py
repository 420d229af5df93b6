"""One prompt check, one error per problem: `spot.model.prompt_check.validate_prompt` is behind
every reader of prompt arrays, so the same bad array gives the same `PromptError` and message
whichever path found it; the run config and the model accept the same option names (see also
test_init_prompt_errors.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from spot.config import RunConfig, apply_overrides
from spot.errors import ConfigError, PromptError
from spot.model.prompt import INITIALIZERS, validate_prompt
from spot.model.prompt_files import check_prompt_width, load_prompt, save_prompt
from spot.model.t5_config import ATTENTION_IMPLS, DTYPE_CHOICES, REMAT_POLICIES
from spot.retrieval.similarity import as_embedding


def _raised(fn) -> Exception:
    """Whatever `fn` raises (the tests then check its exact type)."""
    with pytest.raises(Exception) as info:
        fn()
    return info.value


BAD_ARRAYS = {
    "1-D": (np.ones(3, np.float32), "expected a 2-D [length, width] array, got shape (3,)"),
    "integers": (np.ones((2, 3), np.int32), "expected floating-point numbers, got dtype int32"),
    "strings": (np.array([["a", "b"]]), "expected floating-point numbers, got dtype <U1"),
    "empty": (np.ones((0, 3), np.float32), "has an empty shape (0, 3)"),
    "nan": (np.array([[0.0, 1.0, 2.0], [3.0, np.nan, 4.0]], np.float32),
            "has a non-finite value at token 1, dim 1 (1 of 6 values are NaN/Inf)"),
}


@pytest.mark.parametrize("name", sorted(BAD_ARRAYS))
def test_every_reader_reports_a_bad_array_the_same_way(tmp_path, name):
    array, message = BAD_ARRAYS[name]
    readers = {
        "validate_prompt": lambda: validate_prompt(array, source="p"),
        "as_embedding": lambda: as_embedding(array, "p"),
        "check_prompt_width": lambda: check_prompt_width(array, 3, source="p"),
        "save_prompt": lambda: save_prompt(tmp_path / "p.npy", array),
    }
    if array.dtype.kind != "U":
        np.save(tmp_path / "bad.npy", array)
        readers["load_prompt"] = lambda: load_prompt(tmp_path / "bad.npy")
    for reader, fn in readers.items():
        error = _raised(fn)
        assert type(error) is PromptError, reader
        assert str(error).split(": ", 1)[1] == message, reader


def test_width_is_checked_once_with_one_message():
    good = np.ones((2, 3), np.float32)
    for fn in (lambda: validate_prompt(good, 4, source="p"),
               lambda: check_prompt_width(good, 4, source="p")):
        assert str(_raised(fn)) == "p: prompt width 3 does not match the model's embedding size 4"


def test_float_widths_and_bfloat16_are_prompts():
    import ml_dtypes

    for dtype in (np.float16, np.float32, np.float64, ml_dtypes.bfloat16):
        arr = np.ones((2, 3), dtype)
        assert validate_prompt(arr).dtype == np.float32
        assert as_embedding(arr).dtype == np.float64 and as_embedding(arr).flags.c_contiguous


def test_config_and_model_accept_the_same_dtypes():
    from spot.model.api import resolve_dtype

    for name in DTYPE_CHOICES:
        for key in ("model.dtype", "model.param_dtype"):
            apply_overrides(RunConfig(), {key: name})
        resolve_dtype(name)
    for name in ("float16", "fp16", "float64", "int8"):
        with pytest.raises(ConfigError):
            apply_overrides(RunConfig(), {"model.dtype": name})
        with pytest.raises(ConfigError):
            resolve_dtype(name)
    with pytest.raises(ConfigError):
        resolve_dtype(np.float16)


def test_config_choices_come_from_the_model():
    from spot.config import REMAT_POLICIES as CONFIG_REMAT
    from spot.model.api import T5
    from spot.model.t5 import T5Config, init_params

    cfg = T5Config.preset("test_tiny")
    params = init_params(cfg)
    for impl in ATTENTION_IMPLS:
        apply_overrides(RunConfig(), {"model.attention_impl": impl})
        T5(cfg, params, attention_impl=impl)
    with pytest.raises(ConfigError):
        apply_overrides(RunConfig(), {"model.attention_impl": "flash"})
    with pytest.raises(ConfigError):
        T5(cfg, params, attention_impl="flash")
    for init in INITIALIZERS:
        apply_overrides(RunConfig(), {"prompt.init": init})
    with pytest.raises(ConfigError):
        apply_overrides(RunConfig(), {"prompt.init": "zeros"})
    assert set(CONFIG_REMAT) == {"none", *REMAT_POLICIES}


def test_token_ids_are_defined_once():
    """PAD_ID and EOS_ID are assigned in spot.model.t5_config and only imported elsewhere."""
    root = Path(__file__).resolve().parents[2] / "spot"
    owners = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
            names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            if names & {"PAD_ID", "EOS_ID"}:
                owners.add(path.relative_to(root.parent).as_posix())
    assert owners == {"spot/model/t5_config.py"}
