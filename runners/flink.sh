#!/usr/bin/env bash
# newsevents on Apache Flink through Beam's FlinkRunner and its Flink job server. Read runners/flink.md.
#
#   FLINK_MASTER='[local]' runners/flink.sh INPUT OUTPUT [options...]      # embedded Flink, this machine
#   FLINK_MASTER='[local]' runners/flink.sh kafka://127.0.0.1:9092/updates OUTPUT --streaming   # live stream
#   FLINK_MASTER=jobmanager:8081 runners/flink.sh s3://in/** s3://out/news [options...]
#
# Settings (environment variables):
#   FLINK_MASTER        [local]: an embedded Flink cluster in the job server's JVM (parallelism
#                       PARALLELISM, default 2); host:8081: a Flink 1.19 cluster's JobManager (REST)
#   JOB_SERVER_JAR      the job server's jar; default: runners/jobserver.sh flink (Beam's Flink 1.19
#                       job server of the SDK's Beam version, fetched with Maven on first use)
#   JOB_ENDPOINT        host:8099 of a Beam Flink job server you run yourself: PortableRunner is used
#   ENVIRONMENT_TYPE    LOOPBACK (default with [local]), EXTERNAL (default otherwise), DOCKER, PROCESS
#   ENVIRONMENT_CONFIG  EXTERNAL: worker pool address as seen from a TaskManager (default with [local]:
#                       a pool this script starts; otherwise localhost:50000); DOCKER: the SDK image;
#                       PROCESS: {"command": "/opt/apache/beam/boot"}
#   WORKERS             EXTERNAL: SDK worker processes per TaskManager (--sdk_worker_parallelism)
#   PARALLELISM         --parallelism (default 2 with [local], else the cluster's default)
#   STAGE               none (default with [local]: workers use this interpreter), setup (default
#                       otherwise: stage an sdist of this project), or a wheel/sdist path to stage
#   PYTHON              interpreter (default: the project's .venv)
# Extra arguments go to `newsevents run` as they are (newsevents or Beam options).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: FLINK_MASTER='[local]'|host:8081 $0 INPUT OUTPUT [options...]" >&2
  exit 2
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
input=$1 output=$2
shift 2
# shellcheck source=lib/engine.sh
. "$repo/runners/lib/engine.sh"

args=(--input "$input" --output "$output")
LOCAL_MASTER=0
case "$input" in
  kafka://*)
    # A Kafka topic: ReadFromKafka runs in Flink's JVM, which needs Beam's Kafka IO on the job
    # server's classpath and an expansion service beside it: runners/kafka-flink.sh starts both
    # (on free ports) for this run and stops them after. Runs until SIGINT or SIGTERM.
    case "${FLINK_MASTER:-}" in
      "[local]"|"[auto]") ;;
      *) echo "$0: a kafka:// input runs on the embedded Flink only (FLINK_MASTER='[local]')" >&2; exit 2 ;;
    esac
    free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
    export JOB_PORT=${JOB_PORT:-$(free_port)} EXPANSION_PORT=${EXPANSION_PORT:-$(free_port)}
    export SERVICES_DIR=${SERVICES_DIR:-$(mktemp -d -t newsevents-flink-kafka.XXXXXX)}
    stop_services() { "$repo/runners/kafka-flink.sh" stop >/dev/null 2>&1 || true; }
    trap stop_services EXIT
    "$repo/runners/kafka-flink.sh" start >&2
    LOCAL_MASTER=1
    check_output_location
    export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
    "$py" -m pipelines.cli run "${args[@]}" --runner=PortableRunner "--job_endpoint=localhost:$JOB_PORT" \
      --environment_type=LOOPBACK "--kafka_expansion_service=localhost:$EXPANSION_PORT" \
      "--parallelism=${PARALLELISM:-2}" "$@"
    exit $?
    ;;
esac
if [ -n "${JOB_ENDPOINT:-}" ]; then
  args+=(--runner=PortableRunner "--job_endpoint=$JOB_ENDPOINT")
else
  : "${FLINK_MASTER:?set FLINK_MASTER='[local]' (embedded Flink) or host:8081 (a JobManager), or JOB_ENDPOINT}"
  case "$FLINK_MASTER" in
    "[local]"|"[auto]") LOCAL_MASTER=1 ;;
  esac
  jar=$(job_server_jar flink)
  args+=(--runner=FlinkRunner "--flink_master=$FLINK_MASTER" --flink_version=1.19 "--flink_job_server_jar=$jar")
fi
check_output_location
environment_args
staging_args
parallelism=${PARALLELISM:-}
if [ -z "$parallelism" ] && [ "$LOCAL_MASTER" = 1 ]; then parallelism=2; fi
if [ -n "$parallelism" ]; then args+=("--parallelism=$parallelism"); fi

export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
"$py" -m pipelines.cli run "${args[@]}" "$@"
