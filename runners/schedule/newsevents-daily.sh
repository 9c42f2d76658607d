#!/usr/bin/env bash
# One day of newsevents, for cron: DROPS/DATE/ into OUTPUT. Read docs/scheduling.md.
#
#   runners/schedule/newsevents-daily.sh DROPS OUTPUT [DATE] [more newsevents or Beam options...]
#
# DATE is YYYY-MM-DD, by default yesterday in UTC. The run is
#
#   $NEWSEVENTS run --input 'DROPS/{date}' --date DATE --output OUTPUT [options...]
#
# (newsevents replaces {date}; the drop is given as a folder so that files whose name starts
# with '.' or '_', i.e. still being written, are skipped). Its output and exit status pass
# through: 0 done (rejects included), 2 user error or no drop for DATE ("input not found"),
# 1 failed run. Status 75 means another run holds OUTPUT: the run is retried after a pause,
# and 75 is returned if it is still locked after the last try.
#
# Settings (environment variables):
#   NEWSEVENTS               the newsevents executable (default: `newsevents` on PATH)
#   NEWSEVENTS_RETRIES       retries while OUTPUT is locked (default 3)
#   NEWSEVENTS_RETRY_SLEEP   seconds between them (default 300)
set -euo pipefail

log() { echo "newsevents-daily: $(date -u +%FT%TZ) $*" >&2; }

if [ $# -lt 2 ] || [ -z "$1" ] || [ -z "$2" ]; then
  echo "usage: $0 DROPS OUTPUT [DATE] [newsevents options...]" >&2
  exit 2
fi
drops=${1%/} output=$2
shift 2
if [ $# -gt 0 ] && [[ $1 != -* ]]; then
  day=$1
  shift
else
  day=$(date -u -d yesterday +%F 2>/dev/null || date -u -v-1d +%F)  # GNU date, else BSD date
fi
if ! [[ $day =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]]; then
  echo "$0: DATE must be YYYY-MM-DD, not '$day'" >&2
  exit 2
fi
exe=${NEWSEVENTS:-newsevents}
retries=${NEWSEVENTS_RETRIES:-3}
pause=${NEWSEVENTS_RETRY_SLEEP:-300}
if ! [[ $retries =~ ^[0-9]+$ && $pause =~ ^[0-9]+$ ]]; then
  echo "$0: NEWSEVENTS_RETRIES and NEWSEVENTS_RETRY_SLEEP must be whole numbers" >&2
  exit 2
fi

attempt=0
while :; do
  attempt=$((attempt + 1))
  log "run $day (attempt $attempt): $exe run --input $drops/{date} --date $day --output $output${*:+ $*}"
  status=0
  "$exe" run --input "$drops/{date}" --date "$day" --output "$output" "$@" || status=$?
  if [ "$status" -ne 75 ] || [ "$attempt" -gt "$retries" ]; then
    break
  fi
  log "output $output is locked by another run (exit 75); retrying in ${pause}s"
  sleep "$pause"
done
log "day $day finished with exit status $status"
exit "$status"
