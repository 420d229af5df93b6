"""Backbone probe: build one recipe in a private cache and write its learning curve.

Every `--diagnose-every` steps the build measures, on held-out text, the perplexity of both
objectives with each example's own encoder input and with its neighbour's, and the nats per
target token the real input brings (`backbone.encoder_reliance`); those records and the
training loss every 50 steps go to `--out` as JSON lines as they are made (step, objective,
loss or perplexities and nats_from_encoder, seconds since the build started), so a run
stopped early keeps its curve. The user's cache is untouched: the build goes to `--cache`
(default /tmp/spot-probe-cache; the default vocabulary is copied in from the user cache when
it is there, other sizes are trained into the private cache).

    .venv/bin/python scripts/probe_backbone_curve.py --name default \
        --out scripts/results/curve_default.jsonl
    .venv/bin/python scripts/probe_backbone_curve.py --name span_dense --set reconstruct_steps=0 \
        --set span_steps=2000 --set prefix_lm_steps=0 --set noise_density=0.3 --set mean_span=2 \
        --out scripts/results/curve_span_dense.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True, help="label written into every record")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--diagnose-every", type=int, default=250)
    ap.add_argument("--batches", type=int, default=4, help="held-out batches per diagnosis")
    ap.add_argument("--cache", default="/tmp/spot-probe-cache")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    user_cache = None
    if "SPOT_CACHE" not in os.environ:
        from spot.data.offline.vocab import cache_root

        user_cache = cache_root()
    os.environ["SPOT_CACHE"] = args.cache
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    if user_cache is not None:
        for folder in user_cache.glob("offline-vocab-*"):
            if not (Path(args.cache) / folder.name).exists():
                shutil.copytree(folder, Path(args.cache) / folder.name)

    from spot.commands.backbone import _recipe
    from spot.train.pretrain import build_backbone

    recipe = _recipe(0, tuple(args.sets))
    out = open(args.out, "a", encoding="utf-8")  # noqa: SIM115

    def on_record(entry: dict) -> None:
        out.write(json.dumps({"name": args.name, **entry}) + "\n")
        out.flush()
        if entry["objective"] == "diagnosis":
            print(f"[{args.name}] step {entry['step']} {entry['seconds']:.0f}s: span ppl "
                  f"{entry['span_perplexity']:.1f} nats {entry['span_nats_from_encoder']:.3f}; "
                  f"prefix ppl {entry['prefix_lm_perplexity']:.1f} nats "
                  f"{entry['prefix_lm_nats_from_encoder']:.3f}", flush=True)

    t0 = time.time()
    path = build_backbone(recipe, force=True, progress=False, diagnose_every=args.diagnose_every,
                          diagnose_batches=args.batches, on_record=on_record)
    report = json.loads((path / "pretraining.json").read_text())
    final = {"name": args.name, "objective": "final", "path": str(path),
             "sets": args.sets, "seconds": round(time.time() - t0, 1),
             "heldout_perplexity": report["heldout_perplexity"],
             "unigram_perplexity": report["unigram_perplexity"]}
    out.write(json.dumps(final) + "\n")
    out.close()
    print(json.dumps(final))


if __name__ == "__main__":
    main()
