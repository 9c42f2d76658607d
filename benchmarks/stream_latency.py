"""Latency of the live stream: from a record's arrival in Kafka to its day committed in OUTPUT.

Needs a running broker and Flink services (runners/kafka.sh start; runners/kafka-flink.sh start)
and starts the streaming job itself:

    .venv/bin/python benchmarks/stream_latency.py --bootstrap 127.0.0.1:9092 --job-port 8099 \\
        --expansion-port 8097 [--days 3 --per-day 200 --rounds 3]

Measures, on a fresh topic and output (the days lie in the past, so the watermark, which a
quiet topic moves up to the current time, has passed them):
- start: the job is started over --days days of records -> the first day committed (includes
  the job's start-up on Flink);
- late: a late update (within the allowed lateness) is produced -> its day is committed again,
  i.e. a record's arrival -> its day's partitions rewritten in OUTPUT.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "runners"))
sys.path.insert(0, str(REPO))


def committed(log: Path, day: str) -> int:
    return log.read_text(errors="replace").count(f"committed day {day}:")


def wait(pred, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    from kafka_produce import produce

    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--job-port", default="8099")
    ap.add_argument("--expansion-port", default="8097")
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--per-day", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    topic = f"latency-{int(time.time())}"
    uri = f"kafka://{a.bootstrap}/{topic}"
    work = Path(tempfile.mkdtemp(prefix="newsevents-latency-"))
    out, log = work / "out", work / "job.log"
    today = dt.datetime.now(dt.timezone.utc).date()
    first = today - dt.timedelta(days=a.days + a.rounds + 1)

    def day_records(day: dt.date, tag: str) -> list[bytes]:
        return [json.dumps({"article_id": f"{tag}-{day}-{i % 20}", "update_id": f"u{i}", "source": "bench.example",
                            "published_at": f"{day}T{(i * 7) % 24:02d}:{i % 60:02d}:00+00:00",
                            "text": f"Report {i} of {day}: the harbour authority counted {i * 13} vessels."}).encode()
                for i in range(a.per_day)]

    # the first days, and the job started on them; then one round per new day
    days = [first + dt.timedelta(days=k) for k in range(a.days)]
    produce(uri, [r for d in days for r in sorted(day_records(d, "b"))])
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "--input", uri, "--output", str(out), "--streaming",
           "--allowed-lateness", "30d", "--runner=PortableRunner", f"--job_endpoint=localhost:{a.job_port}",
           "--environment_type=LOOPBACK", f"--kafka_expansion_service=localhost:{a.expansion_port}", "--parallelism=1"]
    with open(log, "wb") as f:
        job = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    t_start = time.monotonic()
    lates = []
    try:
        wait(lambda: all(committed(log, d.isoformat()) for d in days), 900, "the first days")
        t_first = time.monotonic() - t_start
        for k in range(a.rounds):
            late_day = days[k % len(days)].isoformat()
            before = committed(log, late_day)
            produce(uri, [json.dumps({"article_id": f"late-{k}", "source": "bench.example",
                                      "published_at": f"{late_day}T12:00:00+00:00",
                                      "text": f"A late correction number {k} about the harbour."}).encode()])
            lates.append(wait(lambda: committed(log, late_day) > before, 600, f"late rewrite of {late_day}"))
    finally:
        os.kill(job.pid, signal.SIGTERM)
        job.wait(timeout=120)
    print(f"{a.days} days x {a.per_day} records: start -> all {a.days} days committed {t_first:.1f} s; "
          f"late record -> day rewritten: " + ", ".join(f"{x:.1f}" for x in lates)
          + f" s (median {statistics.median(lates):.1f} s)")


if __name__ == "__main__":
    main()
