"""Produce update-feed JSON lines to a Kafka topic, each with its publication time as the record
timestamp (what the live stream's event-time clock reads).

    python runners/kafka_produce.py kafka://127.0.0.1:9092/updates updates.jsonl   # or - for stdin

A line whose `published_at` cannot be read is produced as it is, stamped with the current time
(the stream then refuses it as a reject). Needs confluent-kafka (a dependency of the project).
"""
from __future__ import annotations

import datetime as dt
import json
import sys
import time


def timestamp_ms(line: bytes) -> int | None:
    """The record timestamp of one update-feed line: its published_at in epoch milliseconds."""
    try:
        value = json.loads(line)["published_at"]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value * 1000)
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
        return int(t.timestamp() * 1000)
    except Exception:
        return None


def produce(uri: str, lines, timeout: float = 30.0, default_ms: int | None = None) -> int:
    """Produce each non-blank line; `default_ms` stamps the lines without a readable time (else now)."""
    from confluent_kafka import Producer
    from urllib.parse import urlparse

    u = urlparse(uri)
    topic = u.path.strip("/")
    if u.scheme != "kafka" or not topic:
        raise SystemExit(f"usage: kafka://HOST:PORT/TOPIC, not {uri}")
    producer = Producer({"bootstrap.servers": u.netloc})
    n = 0
    for line in lines:
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        ts = timestamp_ms(line)
        producer.produce(topic, line, timestamp=ts if ts is not None else default_ms or int(time.time() * 1000))
        n += 1
    if producer.flush(timeout):
        raise SystemExit(f"kafka_produce: records not delivered within {timeout}s to {uri}")
    return n


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src = sys.stdin.buffer if sys.argv[2] == "-" else open(sys.argv[2], "rb")
    print(f"produced {produce(sys.argv[1], src)} records to {sys.argv[1]}")
