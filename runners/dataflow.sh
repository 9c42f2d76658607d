#!/usr/bin/env bash
# newsevents on Google Cloud Dataflow (DataflowRunner, Runner v2: the same portable protocol the
# tests run locally). Read runners/dataflow.md.
#
#   PROJECT=my-project REGION=europe-west1 TEMP_LOCATION=gs://my-bucket/tmp \
#     runners/dataflow.sh 'gs://my-bucket/in/**' gs://my-bucket/news [options...]
#
# Settings (environment variables):
#   PROJECT, REGION     Google Cloud project and Dataflow region (required)
#   TEMP_LOCATION       gs:// folder for temporary and staged files (required)
#   SDK_IMAGE           worker image with the project installed (runners/worker.Dockerfile, pushed to
#                       Artifact Registry): --sdk_container_image, nothing installed at worker start.
#                       Without it: --setup_file (an sdist of this project, pip-installed by every worker)
#   MAX_WORKERS         --max_num_workers (default 10)
#   MACHINE_TYPE        --machine_type (default n2-highmem-4: a whole day's rows sit on one worker)
#   EXPERIMENTS         --experiments (default use_runner_v2, already the default for Python)
#   JOB_NAME            --job_name (default newsevents-<UTC date and time>)
#   PYTHON              interpreter (default: the project's .venv; needs apache-beam[gcp]==2.62.0)
# Extra arguments go to `newsevents run` as they are (newsevents or Beam options).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: PROJECT=... REGION=... TEMP_LOCATION=gs://... $0 INPUT OUTPUT [options...]" >&2
  exit 2
fi
: "${PROJECT:?set PROJECT (Google Cloud project)}"
: "${REGION:?set REGION (Dataflow region, e.g. europe-west1)}"
: "${TEMP_LOCATION:?set TEMP_LOCATION=gs://bucket/tmp}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
input=$1 output=$2
shift 2
case "$output" in
  gs://*|s3://*) ;;
  *) echo "$0: OUTPUT must be gs:// (or s3://): Dataflow workers cannot write this machine's disk" >&2; exit 2 ;;
esac

args=(--input "$input" --output "$output"
      --runner=DataflowRunner "--project=$PROJECT" "--region=$REGION" "--temp_location=$TEMP_LOCATION"
      "--job_name=${JOB_NAME:-newsevents-$(date -u +%Y%m%d-%H%M%S)}"
      "--max_num_workers=${MAX_WORKERS:-10}" "--machine_type=${MACHINE_TYPE:-n2-highmem-4}"
      "--experiments=${EXPERIMENTS:-use_runner_v2}")
if [ -n "${SDK_IMAGE:-}" ]; then
  args+=("--sdk_container_image=$SDK_IMAGE" --sdk_location=container)
else
  "$py" -c "import build" 2>/dev/null || { echo "$0: --setup_file needs 'build' here: $py -m pip install build" >&2; exit 2; }
  args+=("--setup_file=$repo/pyproject.toml")
fi

export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m pipelines.cli run "${args[@]}" "$@"
