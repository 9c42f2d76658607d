# Sourced by the launch scripts: start_worker_pool PYTHON starts Beam's SDK worker pool
# (apache_beam.runners.worker.worker_pool_main) on a free local port, in its own process group,
# waits until it answers, and sets WORKER_POOL_ADDRESS=127.0.0.1:PORT. It is stopped when the
# calling script exits. The pool starts each SDK worker as a bare `python` from its PATH: the
# project's interpreter is put first on PATH, so the workers import Beam and this project.
# worker_pool_main listens on all interfaces and has no authentication: run it only where that
# port is not reachable from outside (a laptop, a pod, a CI machine).
_pool_pid=""
_stop_worker_pool() {
  if [ -n "$_pool_pid" ]; then
    kill -TERM -- "-$_pool_pid" 2>/dev/null || kill -TERM "$_pool_pid" 2>/dev/null || true
    wait "$_pool_pid" 2>/dev/null || true
  fi
}

start_worker_pool() {
  local py=$1 port log group=()
  port=${PORT:-$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  log=${POOL_LOG:-$(mktemp -t newsevents-worker-pool.XXXXXX.log)}
  trap _stop_worker_pool EXIT
  if command -v setsid >/dev/null; then group=(setsid); fi
  PATH="$(dirname "$py"):$PATH" ${group[@]+"${group[@]}"} "$py" -m apache_beam.runners.worker.worker_pool_main \
    --service_port="$port" >"$log" 2>&1 &
  _pool_pid=$!
  "$py" - "$port" "$_pool_pid" <<'PY' || { echo "$0: the SDK worker pool did not start; its log: $log" >&2; exit 1; }
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
  WORKER_POOL_ADDRESS=127.0.0.1:$port
}
