"""The live stream: update-feed records from a Kafka topic, committed one closed day at a time.

    kafka://127.0.0.1:9092/updates
      -> ReadFromKafka (Beam's cross-language KafkaIO; record timestamp = Kafka CreateTime,
         which the producer sets to the update's publication time)
      -> DayOf: (publication day, day start, record bytes)
      -> lateness gate (`_ClockGateFn`): a record whose day closed more than --allowed-lateness
         before the stream's clock -> `rejects` (stage window, reason late)
      -> one-day windows, fired when the watermark passes the day's end and again, within
         LATE_PANE_SECONDS, for the late records within the allowed lateness (discarding:
         a pane holds only new records)
      -> CommitDay: the pane's records, as one JSONL file under OUTPUT/_stream/, are run
         through the batch pipeline (`newsevents run`, local runner) into OUTPUT

Why a batch run per pane: the batch pipeline is incremental and redelivery-safe (an update is
identified by what it is, DESIGN.md), commits a run's files all at once by rename (readers see
whole days, never part of one) and recovers what a killed run left. A pane run therefore
commits its day's partitions of every table as a unit, and a late pane rewrites its day with
the new update merged into the existing rows. A record delivered again after a restart is
left out of the pane by the day's ledger (`_stream/TOPIC/day=.../committed.txt`, the records
already committed), so it is never counted twice. Snapshot dedup, near dedup and the incremental state are
the batch pipeline's own, so the stream and a batch run over the same records give the same
rows. What this does not do: the per-step work of the pipeline (split, normalize, dedup) does
not run on the stream engine's workers; it runs in the pane's batch run, on the worker that
holds the pane.

Example record (one Kafka message value):
    {"article_id": "a1", "published_at": "2024-03-04T06:10:00+01:00", "text": "Port shut."}
Guarantee: a day's rows appear in OUTPUT once the watermark has passed the day's end; before
that the day is absent or holds only what earlier panes committed.

Why ReadFromKafka runs as the legacy UnboundedSource (`--experiments=use_deprecated_read` given
to the expansion service, runners/kafka-flink.sh): on the Flink 1.19 portable runner of Beam
2.62.0, the SDF-based read (the default) consumed the topic (its consumer seeked to the end
offset) but emitted nothing downstream within a minute; the UnboundedSource read emits the
records at once.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import time
from typing import Tuple
from urllib.parse import urlparse

import apache_beam as beam
from apache_beam.transforms.trigger import AccumulationMode, AfterProcessingTime, AfterWatermark
from apache_beam.transforms.window import FixedWindows
from apache_beam.utils.timestamp import Duration

from apache_beam.coders import VarIntCoder
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from transforms.common import reject, stable_hash
from transforms.windowing import DAY_SECONDS, LATE, WINDOW_RETENTION_SECONDS

STREAM_DIR = "_stream"
EXIT_LOCKED = 75  # pipelines.cli: another run holds the output
LATE_PANE_SECONDS = 2


def parse_kafka_uri(uri: str) -> tuple[str, str]:
    """`kafka://HOST:PORT/TOPIC` -> (bootstrap servers, topic); ValueError when malformed."""
    u = urlparse(uri)
    topic = u.path.strip("/")
    if u.scheme != "kafka" or not u.netloc or not topic or "/" in topic:
        raise ValueError(f"a Kafka input is kafka://HOST:PORT/TOPIC, not {uri!r}")
    return u.netloc, topic


def day_of(value: bytes, ts) -> tuple[str, int, bytes]:
    """(UTC day ISO, day start in epoch seconds, record) of a record with Beam timestamp `ts`."""
    seconds = int(ts.micros // 1_000_000)
    start = seconds - seconds % DAY_SECONDS
    return dt.datetime.fromtimestamp(start, dt.timezone.utc).date().isoformat(), start, value


class _ClockGateFn(beam.DoFn):
    """Routes records that come after their day closed: day end + allowed lateness at or before
    the stream's clock, the latest record timestamp seen so far. That clock is the source's own
    watermark rule (KafkaIO's CreateTime policy: the latest timestamp of the partition), kept
    here in state, so the decision needs no timer. (With the hourly ticking gate of
    `transforms.windowing` instead, on Flink here the second sample day was not committed
    within 4 minutes; the likely cause, not confirmed, is its chain of event-time timers,
    each waiting for the watermark to move again.) With several partitions the clock is
    the latest of all of them, so a record is refused no later than Beam's watermark would.
    Example: allowed lateness 7d, clock 2024-03-20T10:00Z: a record of 2024-03-12 is late
    (that day closed 2024-03-20T00:00Z), one of 2024-03-13 passes and rewrites its day."""

    CLOCK = ReadModifyWriteStateSpec("clock", VarIntCoder())

    def __init__(self, allowed_lateness: int):
        self._lateness = allowed_lateness

    def process(self, keyed, ts=beam.DoFn.TimestampParam, clock=beam.DoFn.StateParam(CLOCK)):
        _, (day, start, value) = keyed
        seen = clock.read()
        if seen is not None and start + DAY_SECONDS + self._lateness <= seen:
            yield beam.pvalue.TaggedOutput(LATE, (day, value))
            return
        seconds = int(ts.micros // 1_000_000)
        if seen is None or seconds > seen:
            clock.write(seconds)
        yield day, value


class _DayOfFn(beam.DoFn):
    def process(self, kv, ts=beam.DoFn.TimestampParam):
        value = kv[1] if isinstance(kv, tuple) else kv
        yield "gate", day_of(bytes(value or b""), ts)


def pane_file(root: str, topic: str, day: str, records: list[bytes]) -> str:
    """The pane's JSONL file: named by its content, so a pane delivered again is the same file
    (and its rejects the same `rejects` rows)."""
    digest = stable_hash("\n".join(sorted(r.hex() for r in records)), 16)
    return os.path.join(root, STREAM_DIR, topic, f"day={day}", f"pane-{digest}.jsonl")


def write_atomically(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def record_lines(records: list[bytes]) -> bytes:
    """One record per line; a record's own line breaks would split it, so they are escaped as
    JSON allows (a record with a raw newline is not valid JSON anyway, and stays a reject)."""
    return b"".join(r.replace(b"\r", b"\\r").replace(b"\n", b"\\n") + b"\n" for r in records)


class _CommitDayFn(beam.DoFn):
    """Runs one pane through the batch pipeline into OUTPUT; waits while another run holds it."""

    def __init__(self, root: str, topic: str, run_args: list[str], lock_wait: float = 600.0):
        self._root, self._topic, self._args, self._wait = root, topic, list(run_args), lock_wait

    def process(self, keyed):
        day, records = keyed
        records = sorted(set(bytes(r) for r in records))
        # the day's ledger: the records already committed (after a restart they come again)
        ledger = os.path.join(self._root, STREAM_DIR, self._topic, f"day={day}", "committed.txt")
        done = set(open(ledger).read().split()) if os.path.exists(ledger) else set()
        keys = {stable_hash(r.hex(), 32): r for r in records}
        new = sorted(r for k, r in keys.items() if k not in done)
        log = logging.getLogger("newsevents.stream")
        if not new:
            log.warning("committed day %s: 0 new records (%d already committed)", day, len(records))
            yield day, 0
            return
        path = pane_file(self._root, self._topic, day, new)
        write_atomically(path, record_lines(new))
        cmd = [sys.executable, "-m", "pipelines.cli", "run", "--input", path, "--output", self._root,
               "--format", "jsonl", *self._args]
        deadline = time.monotonic() + self._wait
        while True:
            done_run = subprocess.run(cmd, capture_output=True, text=True)
            if done_run.returncode != EXIT_LOCKED or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if done_run.returncode != 0:
            raise RuntimeError(f"committing day {day} ({len(new)} records) failed: "
                               f"{(done_run.stderr or done_run.stdout).strip()[-2000:]}")
        # a stop between the run's commit and this line runs the same pane file again after a
        # restart: the same file read again gives the same rows (the batch run is idempotent)
        write_atomically(ledger, "".join(f"{k}\n" for k in sorted(done | set(keys))).encode())
        log.warning("committed day %s: %d records (%s)", day, len(new), os.path.basename(path))
        yield day, len(new)


class _LateRejectsFn(beam.DoFn):
    """Too-late records -> `rejects` rows (stage window, reason late), one file per record,
    committed by rename; the file name is the record's content, so a redelivered late record
    is the same row."""

    def __init__(self, root: str, source_uri: str):
        self._root, self._uri = root, source_uri

    def process(self, item):
        import pyarrow.parquet as pq

        from transforms.sink import rejects_table

        day, value = item
        value = bytes(value)
        row = reject(self._uri, None, "window", "late", value)
        path = os.path.join(self._root, "rejects", f"late-{stable_hash(value.hex() + day, 16)}.parquet")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(self._root, "rejects", f".late-{os.getpid()}.tmp")
        pq.write_table(rejects_table([row]), tmp)
        os.replace(tmp, path)
        logging.getLogger("newsevents.stream").warning("late record for %s -> rejects", day)
        yield day, 1


class StreamFromKafka(beam.PTransform):
    """Reads `kafka://HOST:PORT/TOPIC` and commits each closed day (see the module docstring).

    Output: `committed`, (day, records) per committed pane (day windows), and `late`, (day, 1)
    per too-late record (global window: the gate runs before the day windows)."""

    def __init__(self, uri: str, root: str, allowed_lateness: int, expansion_service: str | None,
                 run_args: list[str], group_id: str | None = None):
        super().__init__()
        self._servers, self._topic = parse_kafka_uri(uri)
        self._uri, self._root, self._lateness = uri, root.rstrip("/"), allowed_lateness
        self._expansion, self._args = expansion_service, list(run_args)
        self._group = group_id or f"newsevents-{stable_hash(self._root, 12)}"

    def expand(self, p):
        from apache_beam.io.kafka import ReadFromKafka

        read = ReadFromKafka(
            consumer_config={
                "bootstrap.servers": self._servers,
                "auto.offset.reset": "earliest",  # a new job (group) starts from the beginning
                "group.id": self._group,
                # no offsets committed: a restart reads again from the earliest (pipelines/stream.py)
                "enable.auto.commit": "false",
            },
            topics=[self._topic],
            key_deserializer="org.apache.kafka.common.serialization.ByteArrayDeserializer",
            value_deserializer="org.apache.kafka.common.serialization.ByteArrayDeserializer",
            timestamp_policy=ReadFromKafka.create_time_policy,
            expansion_service=self._expansion,
        )
        gated = (
            p
            | "ReadFromKafka" >> read
            | "DayOf" >> beam.ParDo(_DayOfFn())
            | "LateGate" >> beam.ParDo(_ClockGateFn(self._lateness))
            .with_output_types(Tuple[str, bytes]).with_outputs(LATE, main="on_time")
        )
        committed = (
            gated.on_time
            | "DayWindows" >> beam.WindowInto(
                FixedWindows(DAY_SECONDS),
                # late records that come together (a backlog) share one pane: one run per
                # LATE_PANE_SECONDS and day, not one per record
                trigger=AfterWatermark(late=AfterProcessingTime(LATE_PANE_SECONDS)),
                accumulation_mode=AccumulationMode.DISCARDING,
                # the gate decides what is late; the window must never drop what it let through
                allowed_lateness=Duration(seconds=WINDOW_RETENTION_SECONDS))
            | "GroupDay" >> beam.GroupByKey()
            | "CommitDay" >> beam.ParDo(_CommitDayFn(self._root, self._topic, self._args))
        )
        late = gated[LATE] | "LateRejects" >> beam.ParDo(_LateRejectsFn(self._root, self._uri))
        return {"committed": committed, "late": late}
