"""Probe: the whole embedded demo (`spot demo`, its defaults) on a backbone folder of a probe.

`run_demo` normally builds (or reuses) the default recipe's backbone; this script hands it
another folder instead (one written by scripts/probe_surface_stage.py,
probe_multitask_stage.py or probe_copy_task.py --save), runs the demo unchanged, and copies
its `summary.json` to `--summary` so the figures stay beside the script.

    .venv/bin/python scripts/probe_demo_on_backbone.py --backbone /tmp/spot-probe-cache/mt-copy8/model \
        --out /tmp/p16/demo-mt-copy8 --summary scripts/results/demo_mt_copy8_summary.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--out", required=True, help="the demo's output folder")
    ap.add_argument("--summary", required=True, help="where to copy summary.json")
    ap.add_argument("--source-steps", type=int, default=0, help="0: the demo's default")
    ap.add_argument("--target-steps", type=int, default=0, help="0: the demo's default")
    args = ap.parse_args()

    from spot.train import pretrain
    from spot.workflows.demo import DemoConfig, run_demo

    folder = Path(args.backbone)
    if not (folder / "config.json").is_file() or not (folder / "vocab.model").is_file():
        raise SystemExit(f"{folder}: not a backbone folder (config.json and vocab.model)")

    def given_backbone(recipe=None, **kwargs):
        kwargs.get("log", print)(f"probe: using the backbone folder {folder}")
        return folder

    pretrain.build_backbone = given_backbone
    steps = {k: v for k, v in (("source_steps", args.source_steps),
                               ("target_steps", args.target_steps)) if v}
    demo = DemoConfig(out=args.out, **steps)
    report = run_demo(demo, log=lambda s: print(s, flush=True))
    shutil.copyfile(Path(args.out) / "summary.json", args.summary)
    print(json.dumps({"backbone": str(folder), "total_seconds": report["total_seconds"],
                      "summary": args.summary}))


if __name__ == "__main__":
    main()
