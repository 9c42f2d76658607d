#!/usr/bin/env bash
# newsevents on this machine with Beam's local engines: no job server, no download, no network.
#
#   runners/local.sh INPUT OUTPUT [more newsevents or Beam options...]
#   WORKERS=2 runners/local.sh INPUT OUTPUT      # multi-processing DirectRunner: 2 SDK worker processes
#
# Without WORKERS (or WORKERS=1) everything runs in this one process. With WORKERS=N it starts
# N SDK worker processes (--direct_running_mode=multi_processing); the output is the same, row
# for row (tests/test_portable.py checks it). No --runner is passed: `newsevents run` then
# runs on Beam's default DirectRunner (see runners/README.md on why it never reaches for Prism).
# PYTHON picks the interpreter (default: the project's .venv).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 INPUT OUTPUT [options...]" >&2
  exit 2
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
input=$1 output=$2
shift 2
mode=()
if [ "${WORKERS:-1}" -gt 1 ]; then
  mode=(--direct_running_mode=multi_processing "--direct_num_workers=$WORKERS")
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m pipelines.cli run --input "$input" --output "$output" ${mode[@]+"${mode[@]}"} "$@"
