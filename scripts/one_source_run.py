"""One demo source run (vader_valence, the demo's source recipe, seed 0) with the code at
CODE_ROOT, copying its metrics.jsonl to OUT: two checkouts run on one machine and compared
with `cmp` tell a code change from a machine's floating-point difference.

    git worktree add /tmp/wt57 57777d2
    PYTHONPATH=/tmp/wt57 python scripts/one_source_run.py /tmp/wt57 /tmp/m57.jsonl
    python scripts/one_source_run.py . /tmp/mhead.jsonl
    cmp /tmp/m57.jsonl /tmp/mhead.jsonl
"""

import glob
import shutil
import sys

sys.path.insert(0, sys.argv[1])

from scripts._demo_session import demo_session  # noqa: E402

s, cfg, tmp = demo_session("spot-one-source-")
r = s.train("source-offline_vader_valence", {"data.task": "offline_vader_valence",
            "train.steps": cfg.source_steps, "prompt.init": "sampled_vocab"}, 0)
print("best", r.best_score, "untrained", r.initial_score)
shutil.copy(glob.glob(str(tmp) + "/**/metrics.jsonl", recursive=True)[0], sys.argv[2])
