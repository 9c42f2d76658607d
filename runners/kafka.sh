#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft: broker and controller in one JVM, no ZooKeeper) on
# 127.0.0.1, for tests and demos of the streaming source (`--input kafka://127.0.0.1:9092/TOPIC`).
# Kafka comes from its Maven artifacts (runners/java/kafka/pom.xml), copied with
# `mvn dependency:copy-dependencies` on first use into a cache folder; no tarball, no Docker.
#
#   runners/kafka.sh start     # format the storage on first start, start, wait until it answers
#   runners/kafka.sh stop      # stop it (SIGTERM, then SIGKILL after KAFKA_STOP_WAIT seconds)
#   runners/kafka.sh status    # "running pid N on 127.0.0.1:PORT" or "stopped" (exit 1)
#
# Settings (environment variables):
#   KAFKA_PORT        the client listener port (default 9092); the controller uses KAFKA_PORT+1
#   KAFKA_DIR         state: server.properties, data, broker.log, broker.pid
#                     (default ${TMPDIR:-/tmp}/newsevents-kafka-$KAFKA_PORT)
#   NEWSEVENTS_CACHE  where the jars are cached (default ~/.cache/newsevents): kafka-<version>/
#   KAFKA_START_WAIT  seconds `start` waits for the broker (default 60)
#   KAFKA_HEAP        JVM heap options (default -Xms128m -Xmx512m)
#   JAVA              the java binary (default: java on PATH; Kafka 4 needs Java 17+)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pom="$repo/runners/java/kafka/pom.xml"
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
port=${KAFKA_PORT:-9092}
cport=$((port + 1))
dir=${KAFKA_DIR:-${TMPDIR:-/tmp}/newsevents-kafka-$port}
cache=${NEWSEVENTS_CACHE:-$HOME/.cache/newsevents}/kafka-$version
java=${JAVA:-java}
wait_s=${KAFKA_START_WAIT:-60}
pidfile=$dir/broker.pid
log=$dir/broker.log

die() { echo "kafka.sh: $*" >&2; exit 1; }

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid; pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

fetch_jars() {
  [ -f "$cache/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn not found: it fetches Kafka $version's jars from Maven Central"
  mkdir -p "$cache"
  local out
  if ! out=$(mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
               "-DoutputDirectory=$cache" 2>&1); then
    # name the artifact Maven could not resolve, e.g. org.apache.kafka:kafka_2.13:jar:4.1.0
    local missing
    missing=$(grep -oE '(Could not (find|resolve|transfer) artifact|Failure to find|artifact) [A-Za-z0-9_.:-]+' <<<"$out" | head -3)
    die "cannot fetch Kafka $version's jars with mvn (runners/java/kafka/pom.xml)${missing:+: $missing}
$(tail -n 5 <<<"$out")"
  fi
  touch "$cache/.complete"
}

write_config() {
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
CONF
}

answers() {  # the client port accepts connections and the broker logged that it started
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || return 1
  grep -q "Kafka Server started" "$log" 2>/dev/null
}

start() {
  if pid=$(running_pid); then
    echo "kafka.sh: already running (pid $pid) on 127.0.0.1:$port"; return 0
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use by another process (set KAFKA_PORT)"
  fi
  fetch_jars
  write_config
  local cp="$cache/*"
  if [ ! -f "$dir/data/meta.properties" ]; then
    local id
    id=$("$java" -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    "$java" -cp "$cp" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" \
      >"$dir/format.log" 2>&1 || die "formatting the KRaft storage failed:
$(tail -n 20 "$dir/format.log")"
  fi
  : >"$log"
  # shellcheck disable=SC2086
  nohup "$java" ${KAFKA_HEAP:--Xms128m -Xmx512m} -XX:+UseG1GC -Djava.awt.headless=true \
    -cp "$cp" kafka.Kafka "$dir/server.properties" >>"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local deadline=$((SECONDS + wait_s))
  while ((SECONDS < deadline)); do
    if ! running_pid >/dev/null; then
      die "the broker exited during start-up; last lines of $log:
$(tail -n 30 "$log")"
    fi
    if answers; then
      echo "kafka.sh: Kafka $version running (pid $(cat "$pidfile")) on 127.0.0.1:$port, state in $dir"
      return 0
    fi
    sleep 0.5
  done
  stop >/dev/null 2>&1 || true
  die "the broker did not answer on 127.0.0.1:$port within ${wait_s}s; last lines of $log:
$(tail -n 30 "$log")"
}

stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$pidfile"; echo "kafka.sh: not running (127.0.0.1:$port)"; return 0
  fi
  kill -TERM "$pid"
  local deadline=$((SECONDS + ${KAFKA_STOP_WAIT:-30}))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.3; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"; echo "kafka.sh: the broker did not stop in time, killed (pid $pid)" >&2
  fi
  rm -f "$pidfile"
  echo "kafka.sh: stopped (127.0.0.1:$port)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if pid=$(running_pid); then echo "running pid $pid on 127.0.0.1:$port"; else echo stopped; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status   (KAFKA_PORT, KAFKA_DIR, NEWSEVENTS_CACHE: see the header)" >&2; exit 2 ;;
esac
