#!/usr/bin/env bash
# The Beam job server of an engine, as one launcher jar on this machine, fetched on first use.
#
#   runners/jobserver.sh flink     # prints the path of the Flink job server's launcher jar
#   runners/jobserver.sh spark     # the same for Spark
#
# Beam publishes each job server as one shaded jar (beam-runners-flink-1.19-job-server,
# beam-runners-spark-3-job-server), which its Python SDK downloads at run time. Neither is
# served by the Maven Central reached here, and Beam's downloader uses an address that is not
# reachable. So the job server is assembled with Maven from the runner and its dependencies
# (runners/java/<engine>/pom.xml, `mvn dependency:copy-dependencies`) into
#
#   $NEWSEVENTS_CACHE/beam-<version>/<engine>-job-server/lib/*.jar
#   $NEWSEVENTS_CACHE/beam-<version>/<engine>-job-server/job-server.jar   (manifest: Main-Class,
#                                                                          Class-Path lib/...)
#
# NEWSEVENTS_CACHE defaults to ~/.cache/newsevents. The jar is what Beam's FlinkRunner and
# SparkRunner take as --flink_job_server_jar / --spark_job_server_jar: Beam starts it with
# `java -jar` for the run and stops it after. Its Beam version is the Python SDK's (pyproject.toml
# pins both). Needs Java 11+ and Maven (mvn) on PATH; MVN picks another Maven binary.
set -euo pipefail
engine=${1:-}
case "$engine" in
  flink|spark) ;;
  *) echo "usage: $0 flink|spark" >&2; exit 2 ;;
esac
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pom="$repo/runners/java/$engine/pom.xml"
version=$(sed -n 's:.*<beam.version>\(.*\)</beam.version>.*:\1:p' "$pom")
main=$(sed -n 's:.*<main.class>\(.*\)</main.class>.*:\1:p' "$pom")
cache="${NEWSEVENTS_CACHE:-$HOME/.cache/newsevents}/beam-$version/$engine-job-server"
jar="$cache/job-server.jar"
if [ -s "$jar" ]; then
  echo "$jar"
  exit 0
fi
mvn=${MVN:-mvn}
command -v "$mvn" >/dev/null || { echo "$0: Maven ($mvn) is not installed: it fetches the $engine job server (Beam $version)" >&2; exit 1; }
command -v jar >/dev/null || { echo "$0: the JDK's jar tool is not on PATH (Java 11+ JDK needed)" >&2; exit 1; }

mkdir -p "$(dirname "$cache")"
tmp=$(mktemp -d "$(dirname "$cache")/.$engine-job-server.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log="$tmp/mvn.log"
if ! "$mvn" -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$tmp/lib" >"$log" 2>&1; then
  # Maven names what it could not get: "Could not find artifact G:A:jar:V" or "Could not resolve ..."
  what=$(grep -o 'Could not \(find\|transfer\) artifact [^ ]*' "$log" | head -n 1 || true)
  [ -n "$what" ] || what=$(grep -m1 '\[ERROR\]' "$log" | sed 's/^\[ERROR\] *//' | cut -c1-300 || true)
  echo "$0: cannot fetch the $engine job server (Beam $version, $pom) from Maven: ${what:-see $log}" >&2
  cp "$log" "${TMPDIR:-/tmp}/newsevents-$engine-job-server-mvn.log" 2>/dev/null &&
    echo "$0: Maven's log: ${TMPDIR:-/tmp}/newsevents-$engine-job-server-mvn.log" >&2
  exit 1
fi
if [ "$engine" = spark ]; then
  # Spark brings its own slf4j binding (log4j 1.2); two bindings make slf4j pick one at random
  rm -f "$tmp"/lib/slf4j-simple-*.jar
fi

# The launcher jar: no classes, a manifest naming the main class and every jar beside it.
# Manifest lines are at most 72 bytes; longer ones continue on lines that start with a space.
{
  echo "Manifest-Version: 1.0"
  echo "Main-Class: $main"
  # Spark 3.2 and Flink 1.19 on Java 17 reach into the JDK's internals (as their own launch
  # scripts allow with --add-opens)
  echo "Add-Opens: java.base/java.lang java.base/java.lang.invoke java.base/java.lang.reflect java.base/java.io java.base/java.net java.base/java.nio java.base/java.util java.base/java.util.concurrent java.base/java.util.concurrent.atomic java.base/sun.nio.ch java.base/sun.nio.cs java.base/sun.security.action java.base/sun.util.calendar"
  printf 'Class-Path:'
  (cd "$tmp/lib" && ls -1 *.jar | LC_ALL=C sort | sed 's:^: lib/:' | tr -d '\n')
  echo
} | awk '{ line = $0; first = 1
          while (length(line) > 0) {
            n = first ? 72 : 71
            printf "%s%s\n", (first ? "" : " "), substr(line, 1, n)
            line = substr(line, n + 1); first = 0 } }' >"$tmp/MANIFEST.MF"
jar --create --file "$tmp/job-server.jar" --manifest "$tmp/MANIFEST.MF"
rm -f "$tmp/mvn.log" "$tmp/MANIFEST.MF"
rm -rf "$cache"
mv "$tmp" "$cache"
trap - EXIT
echo "$jar"
