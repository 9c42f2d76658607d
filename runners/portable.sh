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
# The worker pool starts each SDK worker as a bare `python` from its PATH: this script puts
# the project's interpreter first on PATH, so the workers import Beam and this project.
# worker_pool_main listens on all interfaces and has no authentication: run it only where
# that port is not reachable from outside (a laptop, a pod).
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

pool_pid=""
stop_pool() {
  if [ -n "$pool_pid" ]; then
    kill -TERM -- "-$pool_pid" 2>/dev/null || kill -TERM "$pool_pid" 2>/dev/null || true
    wait "$pool_pid" 2>/dev/null || true
  fi
}

if [ -n "${WORKER_POOL:-}" ]; then
  address=$WORKER_POOL
else
  port=${PORT:-$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  log=${POOL_LOG:-$(mktemp -t newsevents-worker-pool.XXXXXX.log)}
  trap stop_pool EXIT
  # own process group (setsid), so stopping it also stops the workers it started
  group=()
  if command -v setsid >/dev/null; then group=(setsid); fi
  PATH="$(dirname "$py"):$PATH" ${group[@]+"${group[@]}"} "$py" -m apache_beam.runners.worker.worker_pool_main \
    --service_port="$port" >"$log" 2>&1 &
  pool_pid=$!
  "$py" - "$port" "$pool_pid" <<'PY' || { echo "worker pool did not start; log: $log" >&2; exit 1; }
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
PY
  address=127.0.0.1:$port
fi

"$py" -m pipelines.cli run --input "$input" --output "$output" \
  --runner=PortableRunner --job_endpoint=embed \
  --environment_type=EXTERNAL --environment_config="$address" "$@"
