"""The live stream: update-feed records from a Kafka topic, committed one closed day at a time.

    kafka://127.0.0.1:9092/updates
      -> ReadFromKafka (Beam's cross-language KafkaIO, with metadata: partition, offset, value;
         record timestamp = Kafka CreateTime, which the producer sets to the publication time;
         consumer group --kafka-group: a new group starts at the earliest offset, a known one
         at the offsets it committed)
      -> DayOf: (publication day, day start, (partition, offset, record bytes))
      -> lateness gate (`_ClockGateFn`): a record whose day closed more than --allowed-lateness
         before the stream's clock -> `LateRejects`: a `rejects` row (stage window, reason
         late), counted in `quality.late` of its day
      -> one-day windows, fired when the watermark passes the day's end and again, within
         LATE_PANE_SECONDS, for the late records within the allowed lateness (discarding:
         a pane holds only new records)
      -> CommitDay: the pane's records, as one JSONL file under OUTPUT/_stream/, are run
         through the batch pipeline (`newsevents run`, local runner) into OUTPUT
      -> CommitOffsets: per partition, the offset below which every record is committed to
         its day or rejected, committed to Kafka for the consumer group

Why a batch run per pane: the batch pipeline is incremental and redelivery-safe (an update is
identified by what it is, DESIGN.md), commits a run's files all at once by rename (readers see
whole days, never part of one) and recovers what a killed run left. A pane run therefore
commits its day's partitions of every table as a unit, and a late pane rewrites its day with
the new update merged into the existing rows. Snapshot dedup, near dedup and the incremental
state are the batch pipeline's own, so the stream and a batch run over the same records give
the same rows. What this does not do: the per-step work of the pipeline (split, normalize,
dedup) does not run on the stream engine's workers; it runs in the pane's batch run, on the
worker that holds the pane.

Restart: the job commits Kafka offsets itself, and only for records that are done (see
`_CommitOffsetsFn`), so a restarted job reads from the first record that was not yet
committed to its day or rejected: records already committed are not read again, a record that
was still waiting in an open day's window is. What is read again (records at or above the committed
offset that were done out of order, or done between the last offset commit and the stop) is
left out by the day's ledgers (`_stream/TOPIC/day=.../committed.txt` for committed records,
`late.txt` for late rejects), so no record is counted twice; a record read again stays what it
became the first time (event or late reject), even if the new job's gate, whose clock starts
afresh, would judge it otherwise.

Example record (one Kafka message value):
    {"article_id": "a1", "published_at": "2024-03-04T06:10:00+01:00", "text": "Port shut."}
Guarantee: a day's rows appear in OUTPUT once the watermark has passed the day's end; before
that the day is absent or holds only what earlier panes committed. The group's committed
offset never passes a record that is neither in OUTPUT nor rejected.

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
from typing import Any, Tuple
from urllib.parse import urlparse

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.transforms.trigger import AccumulationMode, AfterProcessingTime, AfterWatermark
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import FixedWindows, GlobalWindows
from apache_beam.utils.timestamp import Duration

from transforms.common import reject, stable_hash
from transforms.windowing import DAY_SECONDS, LATE, WINDOW_RETENTION_SECONDS

STREAM_DIR = "_stream"
EXIT_LOCKED = 75  # pipelines.cli: another run holds the output
LATE_PANE_SECONDS = 2
log = logging.getLogger("newsevents.stream")


def parse_kafka_uri(uri: str) -> tuple[str, str]:
    """`kafka://HOST:PORT/TOPIC` -> (bootstrap servers, topic); ValueError when malformed."""
    u = urlparse(uri)
    topic = u.path.strip("/")
    if u.scheme != "kafka" or not u.netloc or not topic or "/" in topic:
        raise ValueError(f"a Kafka input is kafka://HOST:PORT/TOPIC, not {uri!r}")
    return u.netloc, topic


def default_group(root: str, topic: str) -> str:
    """The consumer group of a stream into `root` from `topic`: the same output and topic give
    the same group (a restart goes on where the last job stopped), another output or topic a new
    one (which starts at the earliest offset)."""
    return f"newsevents-{topic}-{stable_hash(root.rstrip('/') + chr(31) + topic, 12)}"


def day_of(value: bytes, ts) -> tuple[str, int, bytes]:
    """(UTC day ISO, day start in epoch seconds, record) of a record with Beam timestamp `ts`."""
    seconds = int(ts.micros // 1_000_000)
    start = seconds - seconds % DAY_SECONDS
    return dt.datetime.fromtimestamp(start, dt.timezone.utc).date().isoformat(), start, value


def record_of(kafka_record) -> tuple[int, int, bytes]:
    """(partition, offset, value) of a ReadFromKafka record with metadata (a Row)."""
    return int(kafka_record.partition), int(kafka_record.offset), bytes(kafka_record.value or b"")


class _ClockGateFn(beam.DoFn):
    """Routes records that come after their day closed: day end + allowed lateness at or before
    the stream's clock, the latest record timestamp seen so far. That clock is the source's own
    watermark rule (KafkaIO's CreateTime policy: the latest timestamp of the partition), kept
    here in state, so the decision needs no timer. (With the hourly ticking gate of
    `transforms.windowing` instead, on Flink here the second sample day was not committed
    within 4 minutes; the likely cause, not confirmed, is its chain of event-time timers,
    each waiting for the watermark to move again.) With several partitions the clock is
    the latest of all of them, so a record is refused no later than Beam's watermark would.
    The clock starts again with each job: after a restart it is the latest timestamp the new
    job has read.
    Example: allowed lateness 7d, clock 2024-03-20T10:00Z: a record of 2024-03-12 is late
    (that day closed 2024-03-20T00:00Z), one of 2024-03-13 passes and rewrites its day.
    Input: (any key, (day, day start, record)); output (day, record), late ones tagged LATE."""

    CLOCK = ReadModifyWriteStateSpec("clock", VarIntCoder())

    def __init__(self, allowed_lateness: int):
        self._lateness = allowed_lateness

    def process(self, keyed, ts=beam.DoFn.TimestampParam, clock=beam.DoFn.StateParam(CLOCK)):
        _, (day, start, record) = keyed
        seen = clock.read()
        if seen is not None and start + DAY_SECONDS + self._lateness <= seen:
            yield beam.pvalue.TaggedOutput(LATE, (day, record))
            return
        seconds = int(ts.micros // 1_000_000)
        if seen is None or seconds > seen:
            clock.write(seconds)
        yield day, record


class _DayOfFn(beam.DoFn):
    def process(self, kafka_record, ts=beam.DoFn.TimestampParam):
        partition, offset, value = record_of(kafka_record)
        day, start, _ = day_of(value, ts)
        yield "gate", (day, start, (partition, offset, value))


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


def record_key(value: bytes) -> str:
    """What a record is in the day ledgers: its bytes (never its offset: a producer's retry
    writes the same update at another offset, and it is the same update)."""
    return stable_hash(value.hex(), 32)


class DayLedger:
    """A day's ledger of the records already done, one key a line: `committed.txt` (committed
    to the day by a pane run) or `late.txt` (refused as late). Written whole, by rename."""

    def __init__(self, root: str, topic: str, day: str, name: str = "committed.txt"):
        self.path = os.path.join(root, STREAM_DIR, topic, f"day={day}", name)

    def read(self) -> set[str]:
        if not os.path.exists(self.path):
            return set()
        with open(self.path) as f:
            return set(f.read().split())

    def write(self, keys: set[str]) -> None:
        write_atomically(self.path, "".join(f"{k}\n" for k in sorted(keys)).encode())


def offset_ranges(records) -> str:
    """`p0:120-122,130` for the (partition, offset, value) records: what a log line shows."""
    by_part: dict[int, list[int]] = {}
    for p, o, _ in records:
        by_part.setdefault(p, []).append(o)
    parts = []
    for p, offsets in sorted(by_part.items()):
        runs, offsets = [], sorted(set(offsets))
        lo = prev = offsets[0]
        for o in offsets[1:] + [None]:
            if o is not None and o == prev + 1:
                prev = o
                continue
            runs.append(f"{lo}" if lo == prev else f"{lo}-{prev}")
            if o is not None:
                lo = prev = o
        parts.append(f"p{p}:" + ",".join(runs))
    return " ".join(parts)


def done_offsets(records) -> list[tuple[int, list[int]]]:
    """(partition, sorted offsets) of the (partition, offset, value) records."""
    by_part: dict[int, set[int]] = {}
    for p, o, _ in records:
        by_part.setdefault(p, set()).add(o)
    return [(p, sorted(offsets)) for p, offsets in sorted(by_part.items())]


def run_pane(root: str, path: str, run_args: list[str], lock_wait: float = 600.0) -> None:
    """`newsevents run` over one pane file into `root`; waits while another run holds it."""
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "--input", path, "--output", root,
           "--format", "jsonl", *run_args]
    deadline = time.monotonic() + lock_wait
    while True:
        done_run = subprocess.run(cmd, capture_output=True, text=True)
        if done_run.returncode != EXIT_LOCKED or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if done_run.returncode != 0:
        raise RuntimeError(f"{(done_run.stderr or done_run.stdout).strip()[-2000:]}")


class _CommitDayFn(beam.DoFn):
    """Runs one pane through the batch pipeline into OUTPUT, leaving out the records the day's
    ledgers hold (committed before: after a restart, or a pane delivered again; or refused as
    late by an earlier job); outputs (partition, offsets) of every record of the pane, done once
    this returns.

    Example: a pane of day 2024-03-04 with records r1 (offset 7) and r2 (offset 9), r1 in the
    ledger -> one run over r2, the ledger gets r2, output (0, [7, 9])."""

    def __init__(self, root: str, topic: str, run_args: list[str], lock_wait: float = 600.0,
                 run=run_pane):
        self._root, self._topic, self._args, self._wait = root, topic, list(run_args), lock_wait
        self._run = run

    def process(self, keyed):
        day, records = keyed
        records = [(int(p), int(o), bytes(v)) for p, o, v in records]
        ledger = DayLedger(self._root, self._topic, day)
        done = ledger.read()
        # a record refused as late before (by an earlier job, whose clock was further on) stays
        # a reject: one record is one row
        refused = DayLedger(self._root, self._topic, day, "late.txt").read()
        keys = {record_key(v): v for _, _, v in records}
        new = sorted(v for k, v in keys.items() if k not in done and k not in refused)
        where = offset_ranges(records)
        if new:
            path = pane_file(self._root, self._topic, day, new)
            write_atomically(path, record_lines(new))
            try:
                self._run(self._root, path, self._args, self._wait)
            except RuntimeError as e:
                raise RuntimeError(f"committing day {day} ({len(new)} records) failed: {e}") from None
            # the pane run rewrote the day's quality row without the stream's late rejects
            apply_late_count(self._root, self._topic, day)
            # a stop before this line runs the same pane file again after a restart: the same
            # file read again gives the same rows (the batch run is idempotent)
            ledger.write(done | set(keys))
        log.warning("committed day %s: %d records (%d read, %d already committed; offsets %s)%s",
                    day, len(new), len(records), len(keys) - len(new), where,
                    f" ({os.path.basename(path)})" if new else "")
        yield from done_offsets(records)


# ----------------------------------------------------------------------------- late records

def late_quality_row(row: dict | None, late: int) -> dict:
    """A day's quality row with `late` too-late stream records counted in it, as the batch
    pipeline counts its late rejects (blocks_read, rejected and late); `row` as last written
    (its own `late` is the stream's earlier count: pane runs are batch runs and write 0).

    Example: {"blocks_read": 10, "rejected": 1, "late": 1, ...}, late 2 ->
             {"blocks_read": 11, "rejected": 2, "late": 2, ...}"""
    from schemas.models import QUALITY_SCHEMA

    row = dict(row) if row else dict.fromkeys(QUALITY_SCHEMA.names, 0)
    before = row.get("late") or 0
    row.update(blocks_read=row["blocks_read"] + late - before, rejected=row["rejected"] + late - before,
               late=late)
    return row


def with_output_lock(root: str, fn, lock_wait: float = 600.0):
    """fn() holding the output's lock (`pipelines.lock`: pane runs hold it too); waits while
    another run holds it."""
    from pipelines.lock import LockError, OutputLock

    deadline = time.monotonic() + lock_wait
    while True:
        try:
            with OutputLock(root):
                return fn()
        except LockError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _set_late_count(root: str, day: str, late: int) -> None:
    """Sets `quality.late` of `day` to `late` (see `late_quality_row`), written by rename; the
    count is set, not added, so doing it again changes nothing. Call with the output locked."""
    import pyarrow as pa

    from schemas.models import QUALITY_SCHEMA
    from transforms.sink import parquet_bytes, partition_dir
    from transforms.state import read_table

    path = os.path.join(root, partition_dir("quality", dt.date.fromisoformat(day)), "part-0.parquet")
    old = read_table(path) if os.path.exists(path) else None
    rows = old.to_pylist() if old is not None else []
    row = late_quality_row(rows[0] if rows else None, late)
    row.pop("event_date", None)
    write_atomically(path, parquet_bytes(pa.Table.from_pylist([row], schema=QUALITY_SCHEMA)))


def apply_late_count(root: str, topic: str, day: str) -> None:
    """After a pane run rewrote `day`: its quality row counts the day's late ledger again."""
    def apply():
        late = len(DayLedger(root, topic, day, "late.txt").read())
        if late:
            _set_late_count(root, day, late)

    if os.path.exists(DayLedger(root, topic, day, "late.txt").path):
        with_output_lock(root, apply)


def count_late(root: str, topic: str, day: str, key: str) -> bool:
    """Adds a late record to `day`'s late ledger and sets the day's `quality.late` to the
    ledger's size, both with the output locked (late records of one day may be refused on
    several workers at once); False when the record was counted before (redelivered)."""
    ledger = DayLedger(root, topic, day, "late.txt")

    def count():
        keys = ledger.read()
        if key in keys:
            return False
        _set_late_count(root, day, len(keys) + 1)
        # a stop before this line: the record comes again (its offset is not committed), is
        # not in the ledger yet, and sets the same count
        ledger.write(keys | {key})
        return True

    return with_output_lock(root, count)


class _LateRejectsFn(beam.DoFn):
    """Too-late records -> `rejects` rows (stage window, reason late), one file per record,
    committed by rename, counted in `quality.late` of the record's day (`count_late`); the
    file name is the record's content and the day's late ledger holds it, so a redelivered late
    record is the same row and is counted once. A record its day has committed already (an
    earlier job, whose clock was behind this one's, let it through) stays an event: one record
    is one row. Outputs (partition, [offset]) once done."""

    def __init__(self, root: str, topic: str, source_uri: str):
        self._root, self._topic, self._uri = root, topic, source_uri

    def process(self, item):
        from transforms.sink import parquet_bytes, rejects_table

        day, (partition, offset, value) = item
        value = bytes(value)
        key = record_key(value)
        if key in DayLedger(self._root, self._topic, day).read():
            log.warning("late record for %s (offset p%d:%d): its day committed it before", day, partition, offset)
            yield int(partition), [int(offset)]
            return
        name = f"late-{stable_hash(value.hex() + day, 16)}"
        path = os.path.join(self._root, "rejects", f"{name}.parquet")
        if not os.path.exists(path):
            write_atomically(path, parquet_bytes(rejects_table([reject(self._uri, None, "window", "late", value)])))
        counted = count_late(self._root, self._topic, day, key)
        log.warning("late record for %s (offset p%d:%d) -> rejects%s", day, partition, offset,
                    "" if counted else " (counted before)")
        yield int(partition), [int(offset)]


# ----------------------------------------------------------------------------- offsets

def advance(start: int, done: set[int]) -> tuple[int, set[int]]:
    """The next offset not done at or after `start`, and the done offsets above it.

    Example: advance(5, {5, 6, 8}) -> (7, {8}): 7 is still waiting, 8 must wait for it."""
    done = {o for o in done if o >= start}
    while start in done:
        done.discard(start)
        start += 1
    return start, done


class KafkaOffsets:
    """The consumer group's offsets of one topic, through confluent-kafka (a plain consumer
    that commits offsets for the group; it never subscribes, so it never joins the group or
    takes partitions from anyone)."""

    def __init__(self, servers: str, topic: str, group: str):
        self._servers, self._topic, self._group = servers, topic, group
        self._consumer = None

    def _client(self):
        from confluent_kafka import Consumer

        if self._consumer is None:
            self._consumer = Consumer({"bootstrap.servers": self._servers, "group.id": self._group,
                                       "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                       # KafkaIO's consumer reads uncommitted records too
                                       "isolation.level": "read_uncommitted"})
        return self._consumer

    def start(self, partition: int) -> int:
        """Where this job's read of `partition` began: the group's committed offset, else (a
        new group: auto.offset.reset=earliest) the partition's first offset."""
        from confluent_kafka import TopicPartition

        c = self._client()
        committed = c.committed([TopicPartition(self._topic, partition)], timeout=30)[0].offset
        if committed >= 0:
            return committed
        return c.get_watermark_offsets(TopicPartition(self._topic, partition), timeout=30)[0]

    def first_at_or_after(self, partition: int, offset: int) -> int | None:
        """The offset of the first record at or after `offset` (None when unknown): more than
        `offset` when there is a gap (transaction markers, compaction)."""
        from confluent_kafka import TopicPartition

        c = self._client()
        c.assign([TopicPartition(self._topic, partition, offset)])
        try:
            msg = c.consume(1, timeout=10)
            return msg[0].offset() if msg and msg[0].error() is None else None
        finally:
            c.unassign()

    def commit(self, partition: int, offset: int) -> None:
        from confluent_kafka import TopicPartition

        self._client().commit(offsets=[TopicPartition(self._topic, partition, offset)], asynchronous=False)


class _CommitOffsetsFn(beam.DoFn):
    """Commits, per partition, the offset below which every record read is done: committed to
    its day by a pane run, or refused as late (a `rejects` row).

    Why not KafkaIO's own commits (`commit_offset_in_finalize`, or Flink's commit on
    checkpoint): they commit what the source has *read*, once a checkpoint holds it. A record
    that was read but still waits in an open day's window (its day is not over) is held only in
    the job's window state; after a stop without a savepoint that state is gone, and a restart
    from the read position would skip the record for good. This step commits only what is done:
    a record waiting in an open window holds the partition's committed offset at its own, so a
    restart reads it (and what follows, which the ledgers leave out) again.

    Input: (partition, [offsets done]); state: the next offset not done and the done offsets
    above it. The first offset of a partition is where the job began to read (the group's
    committed offset, or the partition's first). When the next offset stays missing while later
    ones are done, Kafka is asked once whether a record is there: offsets without a record
    (transaction markers, compacted records) are passed over.
    Example: began at 5, done 5, 6 and 8 -> commits 7; 7 done later -> commits 9."""

    NEXT = ReadModifyWriteStateSpec("next", VarIntCoder())
    DONE = ReadModifyWriteStateSpec("done", PickleCoder())

    def __init__(self, servers: str, topic: str, group: str, offsets=None):
        self._servers, self._topic, self._group, self._offsets = servers, topic, group, offsets

    def setup(self):
        if self._offsets is None:
            self._offsets = KafkaOffsets(self._servers, self._topic, self._group)
        self._probed: dict[int, int] = {}  # the offset last asked about, per partition
        self._committed: dict[int, int] = {}  # the offset last committed, per partition

    def process(self, item, next_=beam.DoFn.StateParam(NEXT), done_=beam.DoFn.StateParam(DONE)):
        partition, offsets = item
        start = next_.read()
        if start is None:
            start = self._offsets.start(partition)
        done = set(done_.read() or ()) | set(offsets)
        nxt, done = advance(start, done)
        if done and self._probed.get(partition) != nxt:
            self._probed[partition] = nxt
            first = self._offsets.first_at_or_after(partition, nxt)
            if first is not None and first > nxt:
                log.warning("no records at offsets p%d:%d-%d (a gap): passed over", partition, nxt, first - 1)
                nxt, done = advance(first, done)
        next_.write(nxt)
        done_.write(done)
        if nxt > self._committed.get(partition, start):
            try:
                self._offsets.commit(partition, nxt)
                self._committed[partition] = nxt
                log.warning("offsets committed: p%d:%d (group %s)", partition, nxt, self._group)
            except Exception as e:  # noqa: BLE001 - the broker is away: the next element commits
                # (a restart meanwhile reads from the older offset; the ledgers keep it exact)
                log.warning("could not commit offset p%d:%d (group %s): %s", partition, nxt, self._group,
                            str(e).splitlines()[0] if str(e) else type(e).__name__)
        yield partition, nxt


class CommitRecords(beam.PTransform):
    """Kafka records with metadata (Rows with `partition`, `offset`, `value`, stamped with their
    record timestamp) -> days committed, late records rejected, offsets committed: everything
    after the read (the module docstring). `run` runs one pane file into the output
    (`run_pane`) and `offsets` is the group's offsets (`KafkaOffsets`); tests pass others.

    Output: `committed`, (partition, offsets) per committed pane; `late`, (partition, [offset])
    per too-late record; `offsets`, (partition, next offset not done) after each of those."""

    def __init__(self, root: str, topic: str, source_uri: str, allowed_lateness: int, run_args: list[str],
                 servers: str = "", group: str = "", run=run_pane, offsets=None):
        super().__init__()
        if allowed_lateness < 0:
            raise ValueError("--allowed-lateness must not be negative")
        self._root, self._topic, self._uri, self._lateness = root.rstrip("/"), topic, source_uri, allowed_lateness
        self._args, self._servers, self._group = list(run_args), servers, group
        self._run, self._offsets = run, offsets

    def expand(self, records):
        gated = (
            records
            | "DayOf" >> beam.ParDo(_DayOfFn())
            | "LateGate" >> beam.ParDo(_ClockGateFn(self._lateness))
            .with_output_types(Tuple[str, Tuple[int, int, bytes]]).with_outputs(LATE, main="on_time")
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
            | "CommitDay" >> beam.ParDo(_CommitDayFn(self._root, self._topic, self._args, run=self._run))
            .with_output_types(Tuple[int, Any])
        )
        late = (gated[LATE]
                | "LateRejects" >> beam.ParDo(_LateRejectsFn(self._root, self._topic, self._uri))
                .with_output_types(Tuple[int, Any]))
        offsets = (
            (committed | "CommittedGlobal" >> beam.WindowInto(GlobalWindows()),
             late | "LateGlobal" >> beam.WindowInto(GlobalWindows()))
            | "Done" >> beam.Flatten()
            | "CommitOffsets" >> beam.ParDo(_CommitOffsetsFn(self._servers, self._topic, self._group,
                                                              self._offsets))
        )
        return {"committed": committed, "late": late, "offsets": offsets}


class StreamFromKafka(beam.PTransform):
    """Reads `kafka://HOST:PORT/TOPIC` and commits each closed day (see the module docstring).

    Output: that of `CommitRecords`. `group_id`: the Kafka consumer group whose committed
    offsets the read starts from and `CommitOffsets` commits to (default
    `default_group(root, topic)`)."""

    def __init__(self, uri: str, root: str, allowed_lateness: int, expansion_service: str | None,
                 run_args: list[str], group_id: str | None = None):
        super().__init__()
        self._servers, self._topic = parse_kafka_uri(uri)
        self._uri, self._root, self._lateness = uri, root.rstrip("/"), allowed_lateness
        self._expansion, self._args = expansion_service, list(run_args)
        self._group = group_id or default_group(self._root, self._topic)

    def expand(self, p):
        from apache_beam.io.kafka import ReadFromKafka

        read = ReadFromKafka(
            consumer_config={
                "bootstrap.servers": self._servers,
                # a new group starts at the beginning; a known one at its committed offsets
                "auto.offset.reset": "earliest",
                "group.id": self._group,
                # offsets are committed by CommitOffsets once records are done, not when read
                # (and not by KafkaIO on checkpoints: _CommitOffsetsFn says why)
                "enable.auto.commit": "false",
            },
            topics=[self._topic],
            key_deserializer="org.apache.kafka.common.serialization.ByteArrayDeserializer",
            value_deserializer="org.apache.kafka.common.serialization.ByteArrayDeserializer",
            timestamp_policy=ReadFromKafka.create_time_policy,
            with_metadata=True,  # partition and offset: what CommitOffsets commits
            expansion_service=self._expansion,
        )
        return (p
                | "ReadFromKafka" >> read
                | "Commit" >> CommitRecords(self._root, self._topic, self._uri, self._lateness, self._args,
                                            self._servers, self._group))
