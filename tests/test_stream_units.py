"""The live stream's steps without a broker: Beam's TestStream on the local runner feeds Kafka
records (Rows with partition, offset and value, stamped with their record timestamp) to
`transforms.stream.CommitRecords`, with a stand-in for the pane's batch run and for the
consumer group's offsets. The real batch run and Kafka: tests/test_stream.py."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from transforms.stream import (CommitRecords, DayLedger, _ClockGateFn, _CommitOffsetsFn, _DayOfFn, advance,
                               late_quality_row, offset_ranges, record_key)
from transforms.windowing import DAY_SECONDS, LATE


TestPipeline.__test__ = False
TOPIC = "updates"
URI = f"kafka://127.0.0.1:9/{TOPIC}"


def _ts(day: int, hour: int = 0) -> float:
    return dt.datetime(2024, 3, day, hour, tzinfo=dt.timezone.utc).timestamp()


def record(offset: int, article: str, day: int, hour: int, text: str | None = None) -> TimestampedValue:
    """A Kafka record as ReadFromKafka(with_metadata=True) gives it, published on 2024-03-`day`."""
    published = dt.datetime(2024, 3, day, hour, tzinfo=dt.timezone.utc).isoformat()
    value = json.dumps({"article_id": article, "published_at": published,
                        "text": text or f"Update {article} on day {day}."}).encode()
    row = beam.Row(topic=TOPIC, partition=0, offset=offset, timestamp=int(_ts(day, hour) * 1000), key=None, value=value)
    return TimestampedValue(row, _ts(day, hour))


def streaming_pipeline() -> TestPipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(options=options)


def fake_run(root: str, path: str, run_args: list[str], lock_wait: float) -> None:
    """Stands in for the pane's batch run: notes which records each run got."""
    with open(Path(root) / "runs.jsonl", "a") as f:
        f.write(json.dumps([json.loads(line)["article_id"] for line in Path(path).read_bytes().splitlines()]) + "\n")


class FakeOffsets:
    """Stands in for the consumer group: began at `start`, notes each commit in a file."""

    def __init__(self, root: str, start: int = 0, gaps: dict[int, int] | None = None):
        self._log, self._start, self._gaps = Path(root) / "offsets.log", start, dict(gaps or {})

    def start(self, partition: int) -> int:
        return self._start

    def first_at_or_after(self, partition: int, offset: int) -> int:
        return self._gaps.get(offset, offset)

    def commit(self, partition: int, offset: int) -> None:
        with open(self._log, "a") as f:
            f.write(f"{partition} {offset}\n")


def query(root: Path, sql: str) -> list[tuple]:
    """DuckDB over the `rejects` and `quality` tables (the fake pane runs write no others)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"CREATE VIEW rejects AS SELECT * FROM read_parquet('{root}/rejects/*.parquet')")
    con.execute(f"CREATE VIEW quality AS SELECT * FROM read_parquet('{root}/quality/**/*.parquet', "
                "hive_partitioning = true, hive_types = {'event_date': DATE})")
    return con.sql(sql).fetchall()


def runs(root: Path) -> list[list[str]]:
    path = root / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def commits(root: Path) -> list[int]:
    path = root / "offsets.log"
    return [int(line.split()[1]) for line in path.read_text().splitlines()] if path.exists() else []


# ----------------------------------------------------------------------------- the lateness gate

def test_lateness_gate_on_time_late_within_lateness_and_too_late():
    """Allowed lateness 1 day. The gate's clock is the latest record timestamp read."""
    events = (
        TestStream()
        .advance_watermark_to(_ts(4))
        .add_elements([record(0, "on-time", 4, 10)])          # clock 03-04 10:00
        .add_elements([record(1, "clock", 6, 12)])            # clock 03-06 12:00
        .add_elements([record(2, "within", 5, 8)])            # 03-05 closes 03-07 00:00: passes
        .add_elements([record(3, "too-late", 4, 23)])         # 03-04 closed 03-06 00:00: late
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        gated = (p | events | beam.ParDo(_DayOfFn())
                 | beam.ParDo(_ClockGateFn(DAY_SECONDS)).with_outputs(LATE, main="on_time"))
        on_time = gated.on_time | "OnTime" >> beam.MapTuple(lambda day, rec: (day, rec[1]))
        late = gated[LATE] | "Late" >> beam.MapTuple(lambda day, rec: (day, rec[1], json.loads(rec[2])["article_id"]))
        assert_that(on_time, equal_to([("2024-03-04", 0), ("2024-03-06", 1), ("2024-03-05", 2)]), label="on_time")
        assert_that(late, equal_to([("2024-03-04", 3, "too-late")]), label="late")


def test_stream_steps_commit_days_reject_too_late_and_commit_offsets(tmp_path):
    """Through CommitRecords: days committed when the watermark passes, a too-late record a
    `rejects` row counted in quality.late of its day, and the offsets committed only below the
    first record not done (one waiting in an open day)."""
    events = (
        TestStream()
        .advance_watermark_to(_ts(4))
        .add_elements([record(0, "a", 4, 10), record(1, "b", 4, 11)])
        .add_elements([record(2, "c", 5, 9)])
        .advance_watermark_to(_ts(5, 1))                      # 03-04 closes on time
        .add_elements([record(3, "open", 6, 12)])             # clock 03-06 12:00; its day stays open
        .advance_watermark_to(_ts(6, 1))                      # 03-05 closes on time
        .add_elements([record(4, "too-late", 4, 23)])         # 03-04 closed 03-06 00:00: rejected
        .add_elements([record(5, "later", 6, 14)])            # waits in 03-06 too
        .advance_watermark_to_infinity()                      # the end: 03-06 closes too
    )
    # (a record within the lateness that comes after its day's pane fired makes a late pane,
    # fired AfterProcessingTime: on this local runner a TestStream with such a pane ends in
    # "pipeline stall", so that case is checked at the gate above and on Flink in test_stream.py)
    root = str(tmp_path)
    with streaming_pipeline() as p:
        out = p | events | CommitRecords(root, TOPIC, URI, DAY_SECONDS, [], run=fake_run,
                                         offsets=FakeOffsets(root))
        assert_that(out["late"], equal_to([(0, [4])]), label="late")
    assert runs(tmp_path) == [["a", "b"], ["c"], ["later", "open"]]
    rows = query(tmp_path, "SELECT stage, reason, source_uri, raw FROM rejects")
    assert [r[:3] for r in rows] == [("window", "late", URI)] and '"too-late"' in rows[0][3]
    assert query(tmp_path, "SELECT event_date::VARCHAR, late, rejected, blocks_read FROM quality") == [
        ("2024-03-04", 1, 1, 1)]
    # 03-04 done -> 2, 03-05 done -> 3; then 4 is done but 3 waits in the open day 03-06, so
    # nothing is committed until 03-06 closes at the end of the stream -> 6
    assert commits(tmp_path) == [2, 3, 6]


# ----------------------------------------------------------------------------- the day ledger

def test_day_ledger_leaves_out_a_record_redelivered_after_its_day_was_committed(tmp_path):
    """Offsets 0-1 committed day 03-04; after a restart that reads from offset 0 again (its
    offsets were not committed yet when it stopped) the same records come back with a new one:
    the pane run gets only the new record, and every offset is done."""
    root = str(tmp_path)
    first = TestStream().advance_watermark_to(_ts(4)).add_elements(
        [record(0, "a", 4, 10), record(1, "b", 4, 11)]).advance_watermark_to_infinity()
    with streaming_pipeline() as p:
        p | first | CommitRecords(root, TOPIC, URI, DAY_SECONDS, [], run=fake_run, offsets=FakeOffsets(root))
    assert runs(tmp_path) == [["a", "b"]]
    assert len(DayLedger(root, TOPIC, "2024-03-04").read()) == 2

    def again():
        return TestStream().advance_watermark_to(_ts(4)).add_elements(
            [record(0, "a", 4, 10), record(1, "b", 4, 11), record(2, "c", 4, 12)]).advance_watermark_to_infinity()

    with streaming_pipeline() as p:
        out = p | again() | CommitRecords(root, TOPIC, URI, DAY_SECONDS, [], run=fake_run, offsets=FakeOffsets(root))
        assert_that(out["committed"], equal_to([(0, [0, 1, 2])]), label="done")
    assert runs(tmp_path) == [["a", "b"], ["c"]]
    assert len(DayLedger(root, TOPIC, "2024-03-04").read()) == 3

    # all of a pane already committed: no run at all
    with streaming_pipeline() as p:
        p | again() | CommitRecords(root, TOPIC, URI, DAY_SECONDS, [], run=fake_run, offsets=FakeOffsets(root))
    assert runs(tmp_path) == [["a", "b"], ["c"]]


def test_a_redelivered_late_record_is_counted_once(tmp_path):
    root = str(tmp_path)
    for _ in range(2):
        events = (TestStream().advance_watermark_to(_ts(4))
                  .add_elements([record(0, "clock", 10, 12), record(1, "too-late", 4, 9)])
                  .advance_watermark_to_infinity())
        with streaming_pipeline() as p:
            p | events | CommitRecords(root, TOPIC, URI, DAY_SECONDS, [], run=fake_run, offsets=FakeOffsets(root))
    assert query(tmp_path, "SELECT count(*) FROM rejects") == [(1,)]
    assert query(tmp_path, "SELECT event_date::VARCHAR, late, rejected, blocks_read FROM quality") == [
        ("2024-03-04", 1, 1, 1)]


def test_offsets_pass_over_a_gap_and_hold_at_a_record_not_done(tmp_path):
    """Offsets 3-4 hold no record (a transaction's marker): the commit goes past them; offset 9
    exists and is not done: the commit stops there."""
    root = str(tmp_path)
    with TestPipeline() as p:
        (p | beam.Create([(0, [0, 1, 2]), (0, [5, 6, 7, 8]), (0, [10, 11])])
         | beam.ParDo(_CommitOffsetsFn("", TOPIC, "g", FakeOffsets(root, start=0, gaps={3: 5}))))
    assert max(commits(tmp_path)) == 9


def test_a_record_is_an_event_or_a_late_reject_whatever_a_later_job_decides(tmp_path):
    """Each job's gate starts its clock afresh, so a restarted job may judge a record read again
    otherwise than the job before it: the record stays what it became first."""
    root = str(tmp_path)
    refused, committed = record(1, "refused-before", 4, 9), record(3, "committed-before", 4, 10)
    DayLedger(root, TOPIC, "2024-03-04", "late.txt").write({record_key(refused.value.value)})
    DayLedger(root, TOPIC, "2024-03-04").write({record_key(committed.value.value)})
    events = (TestStream().advance_watermark_to(_ts(4))
              .add_elements([refused, record(2, "new", 4, 11)])       # on time for this job
              .advance_watermark_to(_ts(5, 1))
              .add_elements([record(4, "clock", 10, 12), committed])  # too late for this job
              .advance_watermark_to_infinity())
    with streaming_pipeline() as p:
        out = p | events | CommitRecords(root, TOPIC, URI, DAY_SECONDS, [], run=fake_run, offsets=FakeOffsets(root))
        assert_that(out["late"], equal_to([(0, [3])]), label="late")
    assert runs(tmp_path) == [["new"], ["clock"]]
    assert not (tmp_path / "rejects").exists()


# ----------------------------------------------------------------------------- plain functions

def test_advance_stops_at_the_first_offset_not_done():
    assert advance(5, {5, 6, 8}) == (7, {8})
    assert advance(7, {8, 7}) == (9, set())
    assert advance(5, {3, 4}) == (5, set())  # below the start: already committed


def test_late_quality_row_sets_the_count_without_counting_twice():
    row = {"blocks_read": 10, "rejected": 1, "exact_duplicates": 2, "near_duplicates": 0, "redelivered": 0,
           "late": 0, "events_written": 7}
    once = late_quality_row(row, 1)
    assert (once["blocks_read"], once["rejected"], once["late"]) == (11, 2, 1)
    assert late_quality_row(once, 1) == once
    twice = late_quality_row(once, 2)
    assert (twice["blocks_read"], twice["rejected"], twice["late"]) == (12, 3, 2)


def test_offset_ranges_and_record_key():
    recs = [(0, 5, b"x"), (0, 6, b"y"), (0, 9, b"z"), (1, 2, b"x")]
    assert offset_ranges(recs) == "p0:5-6,9 p1:2"
    assert record_key(b"x") == record_key(b"x") != record_key(b"y")


# ----------------------------------------------------------------------------- the consumer group

def test_consumer_group_default_and_option(tmp_path):
    import pytest

    from pipelines.news_events import UsageError, pipeline_options
    from pipelines.stream import KafkaOptions, build_stream
    from transforms.stream import default_group

    out = str(tmp_path / "live")
    assert default_group(out, "updates") == default_group(out + "/", "updates")  # a restart: same group
    assert default_group(out, "updates").startswith("newsevents-updates-")
    assert len({default_group(out, "updates"), default_group(out, "other"),
                default_group(str(tmp_path / "elsewhere"), "updates")}) == 3
    for flag in ("--kafka-group", "--kafka_group"):
        argv = ["--input", "kafka://127.0.0.1:9/updates", "--output", out, "--streaming", flag, "desk-1"]
        assert pipeline_options(argv).view_as(KafkaOptions).kafka_group == "desk-1"
    argv = ["--input", "kafka://127.0.0.1:9/updates", "--output", out, "--streaming", "--kafka-group", " "]
    with pytest.raises(UsageError, match="--kafka-group"):
        build_stream(beam.Pipeline(options=pipeline_options(argv)), pipeline_options(argv), argv)
