# Python SDK worker image with newsevents and its pinned dependencies installed, for
#   Flink/Spark:  --environment_type=DOCKER --environment_config=IMAGE, or as the worker pool
#                 beside each TaskManager/executor: `docker run -p 50000:50000 IMAGE --worker_pool`
#                 with --environment_type=EXTERNAL --environment_config=localhost:50000
#   Dataflow:     --sdk_container_image=IMAGE
# Build from the repository root (not built or tested here: no registry access):
#   docker build -f runners/worker.Dockerfile -t REGISTRY/newsevents-worker:0.1.0 .
# The base image's Beam and Python must match the launcher's (2.62.0, Python 3.11).
FROM apache/beam_python3.11_sdk:2.62.0
COPY pyproject.toml constraints.txt README.md /opt/newsevents/
COPY pipelines /opt/newsevents/pipelines
COPY transforms /opt/newsevents/transforms
COPY schemas /opt/newsevents/schemas
COPY runners /opt/newsevents/runners
# [s3]: boto3 for s3:// (the project's extra); gs:// support is in the base image
RUN pip install --no-cache-dir -c /opt/newsevents/constraints.txt "/opt/newsevents[s3]"
# ENTRYPOINT stays the SDK's /opt/apache/beam/boot
