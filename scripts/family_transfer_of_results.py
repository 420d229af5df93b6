"""Do siblings transfer better than unrelated sources? From a results CSV
(`source,target,seed,score`, the demo's or a study's): per target, the relative error
reduction (RER, %) of each source's mean score over the from-scratch baseline's mean, then
the mean RER of the target's same-family sources against the mean of the other sources
(the mixture left out), and which source is best. Families are the offline suite's.

    .venv/bin/python scripts/family_transfer_of_results.py scripts/results/readme_demo_t300_s1_results.csv
"""

from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from spot.data.offline.suite import family_of

    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    with open(sys.argv[1], newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            scores[(row["source"], row["target"])].append(float(row["score"]))
    targets = sorted({t for _, t in scores})
    wins = 0
    for target in targets:
        base = statistics.mean(scores[("none", target)])
        rer = {s: 100 * (statistics.mean(v) - base) / (100 - base)
               for (s, t), v in scores.items() if t == target and s not in ("none", "mixture")}
        same = [r for s, r in rer.items() if family_of(s) == family_of(target)]
        other = [r for s, r in rer.items() if family_of(s) != family_of(target)]
        best = max(rer, key=rer.get)
        wins += statistics.mean(same) > statistics.mean(other)
        print(f"{target}: siblings {statistics.mean(same):+.1f} (n={len(same)}) vs others "
              f"{statistics.mean(other):+.1f} (n={len(other)}); best {best} {rer[best]:+.1f}; "
              f"seeds {len(scores[('none', target)])}")
    print(f"siblings better on {wins} of {len(targets)} targets")


if __name__ == "__main__":
    main()
