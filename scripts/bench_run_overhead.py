"""Fixed cost of one short training run inside a process that has already run others.

A study (`spot demo`, `spot study`) runs dozens of short runs with one frozen model and the
same shapes. They share the jitted train step of earlier runs through one
`spot.train.step_cache.StepCache`; this script times runs of `--steps` steps with that cache
kept (`reused`) against runs that start with it emptied (`rebuilt`: trace the step again and,
with the persistent compilation cache on, read the executable back from disk), interleaved
in one process so both see the same machine load.

    python scripts/bench_run_overhead.py --runs 6 --steps 5

The model has the embedded backbone's shape (4.5M parameters, 8,192-id vocabulary) with
random weights; the task is the synthetic one of the loop tests (batch 16, input 16).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=6, help="runs per arm (interleaved)")
    ap.add_argument("--steps", type=int, default=5, help="train steps per run")
    ap.add_argument("--no-compilation-cache", action="store_true",
                    help="leave JAX's persistent compilation cache off (rebuilt runs then "
                         "compile instead of reading from disk)")
    args = ap.parse_args()

    import jax

    from spot.data.offline.backbone import BackboneRecipe, model_config
    from spot.model.api import random_t5
    from spot.model.prompt import init_uniform
    from spot.train import loop
    from spot.train.step_cache import StepCache
    from tests.train.synthetic import loop_config, synthetic_batches

    tmp = Path(tempfile.mkdtemp(prefix="spot-bench-overhead-"))
    if not args.no_compilation_cache:
        jax.config.update("jax_compilation_cache_dir", str(tmp / "xla"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    cfg = model_config(BackboneRecipe(), 8000)
    t5 = random_t5(cfg, seed=0)
    prompt = init_uniform(0, 20, cfg.emb_dim)
    cache = StepCache()

    def one(name: str) -> float:
        config = loop_config(tmp / name, **{
            "train.steps": args.steps, "train.eval_every": args.steps,
            "train.checkpoint_every": args.steps, "train.embedding_step": 1,
            "train.log_every": args.steps, "prompt.length": 20, "model.name": "embedded"})
        t0 = time.perf_counter()
        loop.run_loop(config, loop.RunPieces(
            out_dir=config.train.out_dir, module=t5.module, frozen=t5.params,
            initial_trainable=lambda: loop.trainable_from_prompt(
                prompt, reparameterize=False, hidden=8, seed=0),
            batches=synthetic_batches(batch=16, length=16, vocab=cfg.vocab_size),
            metadata={"task": "synthetic"}), log=lambda s: None, step_cache=cache)
        return time.perf_counter() - t0

    one("warmup")  # the first compilation (and the disk cache entry) for both arms
    times: dict[str, list[float]] = {"rebuilt": [], "reused": []}
    for i in range(args.runs):
        cache.clear()
        times["rebuilt"].append(one(f"rebuilt{i}"))
        times["reused"].append(one(f"reused{i}"))  # the step rebuilt just before is reused
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.runs} runs of {args.steps} steps per arm (interleaved), median seconds per run:")
    for k in ("rebuilt", "reused"):
        print(f"  {k:<8} {med[k]:.2f}  (min {min(times[k]):.2f}, max {max(times[k]):.2f})")
    print(f"reused / rebuilt: {med['reused'] / med['rebuilt']:.2f}x the time "
          f"({med['rebuilt'] - med['reused']:.2f} s saved per run)")


if __name__ == "__main__":
    main()
