#!/usr/bin/env bash
# newsevents on Beam's portable path, on this machine: the embedded job service (in this
# process, nothing downloaded) hands the pipeline to SDK workers in a separate
# `worker_pool_main` process (environment EXTERNAL). Same protocol as Flink, Spark and
# Dataflow; tests/test_portable.py runs exactly this and compares the rows with the DirectRunner.
#
#   runners/portable.sh INPUT OUTPUT [more newsevents or Beam options...]
#   PORT=50000 runners/portable.sh ...             # worker pool port (default: a free one)
#   WORKER_POOL=host:50000 runners/portable.sh ... # use a running worker pool, start none
#
# The worker pool is started by runners/lib/worker_pool.sh (read it for what it exposes).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 INPUT OUTPUT [options...]" >&2
  exit 2
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
input=$1 output=$2
shift 2
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

# shellcheck source=lib/worker_pool.sh
. "$repo/runners/lib/worker_pool.sh"
if [ -n "${WORKER_POOL:-}" ]; then
  address=$WORKER_POOL
else
  start_worker_pool "$py"
  address=$WORKER_POOL_ADDRESS
fi

"$py" -m pipelines.cli run --input "$input" --output "$output" \
  --runner=PortableRunner --job_endpoint=embed \
  --environment_type=EXTERNAL --environment_config="$address" "$@"
