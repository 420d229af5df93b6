"""The sharded train step equals the single-device step (8 forced CPU devices)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, sys.argv[1])
    from tests.train.synthetic import synthetic_batch
    from spot.config import MeshConfig, OptimizerConfig
    from spot.model.api import random_t5
    from spot.model.prompt import init_uniform
    from spot.train import sharding as shard
    from spot.train.step import init_state, make_optimizer, make_train_step

    assert jax.device_count() == 8, jax.devices()
    opt = make_optimizer(OptimizerConfig())

    def run(mesh_cfg, scan_layers=False):
        t5 = random_t5("test_tiny", seed=0, scan_layers=scan_layers)
        step_fn = make_train_step(t5.module, opt, 1e-4)
        mesh = shard.make_mesh(mesh_cfg)
        state = init_state({"prompt": init_uniform(0, 4, 16)}, opt, seed=0)
        st_sh = shard.state_shardings(mesh, state, model_tuning=False)
        fr_sh = shard.frozen_shardings(mesh, t5.params)
        b_sh = shard.batch_sharding(mesh)
        f = jax.jit(step_fn, in_shardings=(st_sh, fr_sh, b_sh), out_shardings=(st_sh, None),
                    donate_argnums=(0,))
        state = jax.device_put(state, st_sh)
        frozen = jax.device_put(t5.params, fr_sh)
        losses = []
        for i in range(5):
            batch = shard.put_batch(synthetic_batch(i, batch=16), b_sh)
            state, m = f(state, frozen, batch)
            losses.append(float(m["loss"]))
        enc = fr_sh["encoder"]
        spec = (enc["layers"] if scan_layers else enc["layers_0"])["mlp"]["wi_0"]["kernel"].spec
        return np.asarray(state["trainable"]["prompt"]), losses, str(spec)

    single, l1, _ = run(MeshConfig(data=1, model=1))  # uses the first device only
    data8, l8, _ = run(MeshConfig(data=8, model=1))
    mixed, l42, spec = run(MeshConfig(data=4, model=2))
    # scan_layers: stacked weights sharded with a replicated leading layer axis.
    scan1, ls1, _ = run(MeshConfig(data=1, model=1), scan_layers=True)
    scan42, ls42, scan_spec = run(MeshConfig(data=4, model=2), scan_layers=True)
    print(json.dumps({
        "scan_max_diff": float(np.abs(scan1 - scan42).max()),
        "scan_loss_diff": max(abs(a - b) for a, b in zip(ls1, ls42)),
        "scan_prompt_moved": float(np.abs(scan1 - init_uniform(0, 4, 16)).max()),
        "scan_mlp_spec": scan_spec,
        "max_diff_data8": float(np.abs(single - data8).max()),
        "max_diff_data4_model2": float(np.abs(single - mixed).max()),
        "loss_diff": max(abs(a - b) for a, b in zip(l1, l8 + l42)),
        "prompt_moved": float(np.abs(single - init_uniform(0, 4, 16)).max()),
        "mlp_spec": spec}))
""")


@pytest.mark.slow
def test_sharded_step_equals_single_device(tmp_path):
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    script = tmp_path / "shard_check.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(root)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["prompt_moved"] > 1e-3  # the steps really trained
    assert res["max_diff_data8"] < 1e-5
    assert res["max_diff_data4_model2"] < 1e-5
    assert res["loss_diff"] < 1e-5
    assert "model" in res["mlp_spec"]  # frozen weights really were sharded on the model axis
    # The same with scan_layers: the stacked kernel [layers, embed, mlp] splits its mlp axis.
    assert res["scan_prompt_moved"] > 1e-3
    assert res["scan_max_diff"] < 1e-5
    assert res["scan_loss_diff"] < 1e-5
    assert res["scan_mlp_spec"].endswith("(None, None, 'model')"), res["scan_mlp_spec"]
