#!/usr/bin/env bash
# The Java services a Kafka stream on Flink needs, on this machine (embedded Flink, '[local]'):
#   - a Beam 2.62.0 Flink job server whose classpath holds Beam's Kafka IO, so that Flink runs
#     the Java part of ReadFromKafka in its own JVM (EMBEDDED environment);
#   - a Java expansion service on the same classpath that expands ReadFromKafka with EMBEDDED
#     environments and the legacy UnboundedSource read (see transforms/stream.py for why).
# The jars come from runners/java/kafka-io/pom.xml through `mvn dependency:copy-dependencies`,
# cached in ${NEWSEVENTS_CACHE:-~/.cache/newsevents}/flink-kafka-io-2.62.0.
#
#   runners/kafka-flink.sh start    # start both, wait until they answer
#   runners/kafka-flink.sh stop
#   then: newsevents run --input kafka://127.0.0.1:9092/updates --output OUT --streaming \
#           --runner=PortableRunner --job_endpoint=localhost:$JOB_PORT --environment_type=LOOPBACK \
#           --kafka_expansion_service=localhost:$EXPANSION_PORT
#
# Settings: JOB_PORT (default 8099; the artifact port is JOB_PORT-1), EXPANSION_PORT (8097),
# SERVICES_DIR (logs and pids, default ${TMPDIR:-/tmp}/newsevents-flink-kafka-$JOB_PORT),
# START_WAIT (seconds, default 90), JAVA.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pom="$repo/runners/java/kafka-io/pom.xml"
job_port=${JOB_PORT:-8099}
artifact_port=$((job_port - 1))
own_expansion_port=$((job_port - 3))  # the job server's own expansion service (not used here)
expansion_port=${EXPANSION_PORT:-8097}
dir=${SERVICES_DIR:-${TMPDIR:-/tmp}/newsevents-flink-kafka-$job_port}
cache=${NEWSEVENTS_CACHE:-$HOME/.cache/newsevents}/flink-kafka-io-2.62.0
java=${JAVA:-java}
wait_s=${START_WAIT:-90}

die() { echo "kafka-flink.sh: $*" >&2; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

fetch_jars() {
  [ -f "$cache/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn not found: it fetches Beam's Flink runner and Kafka IO jars"
  mkdir -p "$cache"
  local out
  if ! out=$(mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$cache" 2>&1); then
    die "cannot fetch the jars of runners/java/kafka-io/pom.xml with mvn: $(grep -oE '(Could not (find|resolve|transfer) artifact|Failure to find) [A-Za-z0-9_.:-]+' <<<"$out" | head -3)
$(tail -n 5 <<<"$out")"
  fi
  touch "$cache/.complete"
}

wait_for() {  # name port pidfile log
  local deadline=$((SECONDS + wait_s))
  while ((SECONDS < deadline)); do
    alive "$3" || die "$1 exited during start-up; last lines of $4:
$(tail -n 30 "$4")"
    port_open "$2" && return 0
    sleep 0.5
  done
  die "$1 did not answer on port $2 within ${wait_s}s; last lines of $4:
$(tail -n 30 "$4")"
}

start() {
  fetch_jars
  mkdir -p "$dir"
  local cp="$cache/*"
  if ! alive "$dir/jobserver.pid"; then
    port_open "$job_port" && die "port $job_port is in use by another process (set JOB_PORT)"
    nohup "$java" -cp "$cp" org.apache.beam.runners.flink.FlinkJobServerDriver --flink-master='[local]' \
      --job-port "$job_port" --artifact-port "$artifact_port" --expansion-port "$own_expansion_port" \
      >"$dir/jobserver.log" 2>&1 </dev/null &
    echo $! >"$dir/jobserver.pid"
  fi
  if ! alive "$dir/expansion.pid"; then
    port_open "$expansion_port" && die "port $expansion_port is in use by another process (set EXPANSION_PORT)"
    nohup "$java" -cp "$cp" org.apache.beam.sdk.expansion.service.ExpansionService "$expansion_port" \
      --defaultEnvironmentType=EMBEDDED --experiments=use_deprecated_read \
      >"$dir/expansion.log" 2>&1 </dev/null &
    echo $! >"$dir/expansion.pid"
  fi
  wait_for "the Flink job server" "$job_port" "$dir/jobserver.pid" "$dir/jobserver.log"
  wait_for "the Kafka expansion service" "$expansion_port" "$dir/expansion.pid" "$dir/expansion.log"
  echo "kafka-flink.sh: Flink job server on localhost:$job_port, Kafka expansion service on localhost:$expansion_port (logs in $dir)"
}

stop_one() {
  local pidfile=$1 pid
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop_one "$dir/expansion.pid"; stop_one "$dir/jobserver.pid"; echo "kafka-flink.sh: stopped" ;;
  *) echo "usage: $0 start|stop   (JOB_PORT, EXPANSION_PORT, NEWSEVENTS_CACHE: see the header)" >&2; exit 2 ;;
esac
