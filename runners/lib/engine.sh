# Sourced by runners/flink.sh and runners/spark.sh: what the two engine launchers share.
# Expects: repo, py, output, and LOCAL_MASTER=1 when the engine runs on this machine.
# Appends to the array `args`.

# A local OUTPUT is written on each worker's own disk: fine when every worker is on this
# machine (an embedded Flink, Spark local[N]), wrong on a cluster.
check_output_location() {
  case "$output" in
    *://*) return 0 ;;
  esac
  if [ "${LOCAL_MASTER:-0}" != 1 ] && [ "${ALLOW_LOCAL_OUTPUT:-0}" != 1 ]; then
    echo "$0: OUTPUT must be shared storage (s3://, gs://, hdfs://) with a remote master: workers on other machines write it" >&2
    exit 2
  fi
}

# The job server's launcher jar: JOB_SERVER_JAR, else fetched with Maven on first use.
job_server_jar() {
  local engine=$1
  if [ -n "${JOB_SERVER_JAR:-}" ]; then
    if [ ! -s "$JOB_SERVER_JAR" ]; then
      echo "$0: JOB_SERVER_JAR=$JOB_SERVER_JAR: no such jar" >&2
      exit 2
    fi
    echo "$JOB_SERVER_JAR"
    return
  fi
  "$repo/runners/jobserver.sh" "$engine" || exit 1
}

# How the Python SDK workers are provided. On this machine: LOOPBACK (default: in the launching
# process) or EXTERNAL with a worker pool this script starts (WORKERS=N SDK worker processes).
# On a cluster: EXTERNAL (a worker pool beside each TaskManager or executor), DOCKER or PROCESS.
environment_args() {
  local default=EXTERNAL
  if [ "${LOCAL_MASTER:-0}" = 1 ]; then default=LOOPBACK; fi
  local env_type=${ENVIRONMENT_TYPE:-$default} env_config=""
  case "$env_type" in
    LOOPBACK) ;;
    EXTERNAL)
      if [ -n "${ENVIRONMENT_CONFIG:-}" ]; then
        env_config=$ENVIRONMENT_CONFIG
      elif [ "${LOCAL_MASTER:-0}" = 1 ]; then
        # shellcheck source=worker_pool.sh
        . "$repo/runners/lib/worker_pool.sh"
        start_worker_pool "$py"
        env_config=$WORKER_POOL_ADDRESS
      else
        env_config=localhost:50000
      fi ;;
    DOCKER|PROCESS) env_config=${ENVIRONMENT_CONFIG:?"set ENVIRONMENT_CONFIG for $env_type (see runners/README.md)"} ;;
    *) echo "$0: ENVIRONMENT_TYPE must be LOOPBACK, EXTERNAL, DOCKER or PROCESS, not $env_type" >&2; exit 2 ;;
  esac
  args+=("--environment_type=$env_type")
  if [ -n "$env_config" ]; then args+=("--environment_config=$env_config"); fi
  if [ "$env_type" = EXTERNAL ] && [ -n "${WORKERS:-}" ]; then args+=("--sdk_worker_parallelism=$WORKERS"); fi
}

# What the SDK workers import: on this machine they share the launcher's interpreter (nothing
# to stage); on a cluster the project is staged as an sdist (STAGE=setup), or is in the
# workers' image already (STAGE=none), or a given wheel/sdist is staged.
staging_args() {
  local default=setup
  if [ "${LOCAL_MASTER:-0}" = 1 ]; then default=none; fi
  local stage=${STAGE:-$default}
  case "$stage" in
    setup)
      "$py" -c "import build" 2>/dev/null || { echo "$0: STAGE=setup needs 'build' here: $py -m pip install build" >&2; exit 2; }
      args+=("--setup_file=$repo/pyproject.toml") ;;
    none) ;;
    *) args+=("--extra_package=$stage") ;;
  esac
}
