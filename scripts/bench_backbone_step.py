"""Time the embedded backbone's pretraining step (weights trained, as in model tuning) for
each objective, for two code versions side by side, alternating in fresh processes.

    python scripts/bench_backbone_step.py --a-ref HEAD~1 --b-ref WORKTREE --rounds 2

Prints every run, then a JSON summary: median ms per step per objective and the A/B ratio,
and the predicted pretraining time of the default recipe from B's medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ab import ROOT, WORKTREE, _export  # noqa: E402

CHILD = r"""
import json, statistics, sys, time
import jax, numpy as np
import spot
assert spot.__file__.startswith(sys.argv[1]), spot.__file__
from spot.data.offline import backbone as bb
from spot.train import pretrain as pt
from spot.model.t5 import Transformer, init_params
recipe = bb.BackboneRecipe()
cfg = bb.model_config(recipe, 8000)
module = Transformer(cfg.replace(dropout_rate=recipe.dropout_rate))
rng = np.random.default_rng(0)
stream = rng.integers(3, 8000, 200_000).astype(np.int32)  # timing only: random tokens
out = {}
for objective in ("reconstruct", "span", "prefix_lm"):
    params = jax.tree_util.tree_map(jax.numpy.asarray, init_params(cfg, 0))
    optimizer = pt._optimizer(recipe, 1600)
    state = optimizer.init(params)
    step, _ = pt._step_fns(module, optimizer)
    batches = [bb.make_batch(stream, objective, recipe, cfg.vocab_size, rng) for _ in range(4)]
    params, state, loss = step(params, state, batches[0], jax.random.PRNGKey(0))
    loss.block_until_ready()
    times = []
    for i in range(int(sys.argv[2])):
        t0 = time.perf_counter()
        params, state, loss = step(params, state, batches[i % 4], jax.random.PRNGKey(i))
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
    out[objective] = 1e3 * statistics.median(times)
print(json.dumps(out))
"""


def _run(src: Path | None, steps: int) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    proc = subprocess.run([sys.executable, "-c", CHILD,
                           str(src or ROOT), str(steps)], env=env, capture_output=True,
                          text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a-ref", default="HEAD")
    p.add_argument("--b-ref", default=WORKTREE)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=10, help="timed steps per objective")
    args = p.parse_args()
    from spot.data.offline.backbone import BackboneRecipe

    with tempfile.TemporaryDirectory(prefix="spot-bb-") as tmp:
        srcs = {n: None if r == WORKTREE else _export(r, Path(tmp))
                for n, r in (("A", args.a_ref), ("B", args.b_ref))}
        runs: dict[str, list[dict]] = {"A": [], "B": []}
        for r in range(args.rounds):
            for name in (("A", "B") if r % 2 == 0 else ("B", "A")):
                runs[name].append(_run(srcs[name], args.steps))
                print(f"round {r + 1} {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    med = {n: {o: statistics.median(x[o] for x in v) for o in v[0]} for n, v in runs.items()}
    recipe = BackboneRecipe()
    counts = {"reconstruct": recipe.reconstruct_steps, "span": recipe.span_steps,
              "prefix_lm": recipe.prefix_lm_steps}
    summary = {"A": {"ref": args.a_ref, "ms_per_step": med["A"]},
               "B": {"ref": args.b_ref, "ms_per_step": med["B"]},
               "speedup_b_over_a": {o: med["A"][o] / med["B"][o] for o in counts},
               "predicted_train_minutes": {
                   n: sum(med[n][o] * c for o, c in counts.items()) / 6e4 for n in med},
               "recipe_steps": counts, "cpu_count": os.cpu_count()}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
