#!/usr/bin/env bash
# Times the README's first command exactly as a new user runs it: a fresh clone of REPO, a new
# virtual environment, `pip install -e .`, then `spot demo --out demo_out`, with spot's user
# cache in an empty folder (no backbone, vocabulary, token stores or compiled XLA programs).
# pip's own download cache is whatever the machine has.
#
#   bash scripts/time_readme_demo.sh /work/main /tmp/readme_run [extra demo flags]
#
# Writes WORK/timing.txt (install, demo and total seconds) and leaves WORK/clone/demo_out.
set -euo pipefail
REPO=${1:?usage: time_readme_demo.sh REPO WORK [demo flags]}
WORK=${2:?usage: time_readme_demo.sh REPO WORK [demo flags]}
shift 2
rm -rf "$WORK"
mkdir -p "$WORK/cache"
git clone -q "$REPO" "$WORK/clone"
cd "$WORK/clone"
export SPOT_CACHE="$WORK/cache"
t0=$(date +%s)
python3 -m venv .venv && .venv/bin/pip install -q -e .
t1=$(date +%s)
.venv/bin/spot demo --out demo_out "$@" > "$WORK/demo_stdout.txt" 2> "$WORK/demo_stderr.txt"
t2=$(date +%s)
{
  echo "commit $(git rev-parse --short HEAD)"
  echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "install_seconds $((t1 - t0))"
  echo "demo_seconds $((t2 - t1))"
  echo "total_seconds $((t2 - t0))"
} | tee "$WORK/timing.txt"
