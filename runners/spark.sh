#!/usr/bin/env bash
# newsevents on an Apache Spark cluster with Beam's SparkRunner (portable: a Beam Spark job
# server submits the job; Python SDK workers run beside the Spark executors). Read runners/spark.md.
#
#   SPARK_MASTER=spark://master:7077 runners/spark.sh s3://bucket/in/** s3://bucket/news [options...]
#   JOB_ENDPOINT=jobserver:8099 runners/spark.sh INPUT OUTPUT     # a job server you run yourself
#
# Settings (environment variables):
#   SPARK_MASTER        spark://host:7077 (required unless JOB_ENDPOINT)
#   JOB_SERVER_JAR      a local beam-runners-spark-3-job-server-2.77.0.jar; without it Beam downloads
#                       the jar from Maven Central at run time (Java 11+ needed here)
#   JOB_ENDPOINT        host:8099 of a Beam Spark job server already running (its Docker image):
#                       then PortableRunner is used and nothing is downloaded here
#   ENVIRONMENT_TYPE    EXTERNAL (default), DOCKER or PROCESS: how the SDK workers are provided
#   ENVIRONMENT_CONFIG  EXTERNAL: worker pool address as seen from an executor (default localhost:50000)
#                       DOCKER:   the SDK worker image (runners/worker.Dockerfile)
#                       PROCESS:  {"command": "/opt/apache/beam/boot"} (boot installed on every worker node)
#   STAGE               setup (default): build an sdist of this project (pyproject.toml) and stage it;
#                       none: the workers' image already holds the project; or a wheel/sdist path to stage
#   PYTHON              interpreter (default: the project's .venv)
# Extra arguments go to `newsevents run` as they are (newsevents or Beam options).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: SPARK_MASTER=spark://host:7077 $0 INPUT OUTPUT [options...]" >&2
  exit 2
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
input=$1 output=$2
shift 2
case "$output" in
  *://*) ;;
  *) if [ "${ALLOW_LOCAL_OUTPUT:-0}" != 1 ]; then
       echo "$0: OUTPUT must be shared storage (s3://, gs://, hdfs://): workers on other machines write it" >&2
       exit 2
     fi ;;
esac

args=(--input "$input" --output "$output")
if [ -n "${JOB_ENDPOINT:-}" ]; then
  args+=(--runner=PortableRunner "--job_endpoint=$JOB_ENDPOINT")
else
  : "${SPARK_MASTER:?set SPARK_MASTER=spark://host:7077, or JOB_ENDPOINT}"
  args+=(--runner=SparkRunner "--spark_master_url=$SPARK_MASTER")
  if [ -n "${JOB_SERVER_JAR:-}" ]; then args+=("--spark_job_server_jar=$JOB_SERVER_JAR"); fi
fi

env_type=${ENVIRONMENT_TYPE:-EXTERNAL}
case "$env_type" in
  EXTERNAL) env_config=${ENVIRONMENT_CONFIG:-localhost:50000} ;;
  DOCKER|PROCESS) env_config=${ENVIRONMENT_CONFIG:?"set ENVIRONMENT_CONFIG for $env_type (see runners/spark.md)"} ;;
  *) echo "$0: ENVIRONMENT_TYPE must be EXTERNAL, DOCKER or PROCESS, not $env_type" >&2; exit 2 ;;
esac
args+=("--environment_type=$env_type" "--environment_config=$env_config")

stage=${STAGE:-setup}
case "$stage" in
  setup)
    "$py" -c "import build" 2>/dev/null || { echo "$0: STAGE=setup needs 'build' here: $py -m pip install build" >&2; exit 2; }
    args+=("--setup_file=$repo/pyproject.toml") ;;
  none) ;;
  *) args+=("--extra_package=$stage") ;;
esac

export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m pipelines.cli run "${args[@]}" "$@"
