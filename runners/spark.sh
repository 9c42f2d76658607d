#!/usr/bin/env bash
# newsevents on Apache Spark through Beam's SparkRunner and its Spark job server. Read runners/spark.md.
#
#   SPARK_MASTER='local[2]' runners/spark.sh INPUT OUTPUT [options...]         # Spark on this machine
#   SPARK_MASTER=spark://master:7077 runners/spark.sh s3://in/** s3://out/news [options...]
#
# Settings (environment variables):
#   SPARK_MASTER        local[N]: Spark in the job server's JVM with N threads; spark://host:7077: a
#                       Spark 3 standalone cluster
#   JOB_SERVER_JAR      the job server's jar; default: runners/jobserver.sh spark (Beam's Spark 3 job
#                       server of the SDK's Beam version, fetched with Maven on first use)
#   JOB_ENDPOINT        host:8099 of a Beam Spark job server you run yourself: PortableRunner is used
#   ENVIRONMENT_TYPE    LOOPBACK (default with local[N]), EXTERNAL (default otherwise), DOCKER, PROCESS
#   ENVIRONMENT_CONFIG  EXTERNAL: worker pool address as seen from an executor (default with local[N]:
#                       a pool this script starts; otherwise localhost:50000); DOCKER: the SDK image;
#                       PROCESS: {"command": "/opt/apache/beam/boot"}
#   WORKERS             EXTERNAL: SDK worker processes per executor (--sdk_worker_parallelism)
#   STAGE               none (default with local[N]: workers use this interpreter), setup (default
#                       otherwise: stage an sdist of this project), or a wheel/sdist path to stage
#   PYTHON              interpreter (default: the project's .venv)
# Extra arguments go to `newsevents run` as they are (newsevents or Beam options).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: SPARK_MASTER='local[2]'|spark://host:7077 $0 INPUT OUTPUT [options...]" >&2
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
if [ -n "${JOB_ENDPOINT:-}" ]; then
  args+=(--runner=PortableRunner "--job_endpoint=$JOB_ENDPOINT")
else
  : "${SPARK_MASTER:?set SPARK_MASTER='local[2]' (this machine) or spark://host:7077, or JOB_ENDPOINT}"
  case "$SPARK_MASTER" in
    local|local\[*\]) LOCAL_MASTER=1 ;;
  esac
  jar=$(job_server_jar spark)
  args+=(--runner=SparkRunner "--spark_master_url=$SPARK_MASTER" "--spark_job_server_jar=$jar")
fi
check_output_location
environment_args
staging_args

export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
"$py" -m pipelines.cli run "${args[@]}" "$@"
