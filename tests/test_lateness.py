"""Event-time windows with TestStream: out-of-order updates, watermark advances, late data."""
from __future__ import annotations

import datetime as dt

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from schemas.models import BLOCK_SCHEMA, UTC
from transforms.dedup import DedupDay, dedup_snapshots
from transforms.normalize import normalize_batch
from transforms.sink import WriteDataset
from transforms.windowing import DAY_SECONDS, LATE, WindowByDay, parse_duration, resolve_event_times

from .conftest import SEED, need_shared, query, run_pipeline

TestPipeline.__test__ = False


def _ts(day, hour=0):
    return dt.datetime(2022, 2, day, hour, tzinfo=UTC).timestamp()


def update(art: str, text: str, day: int, hour: int, uri: str) -> TimestampedValue:
    """One update as it leaves ResolveEventTime, stamped with its arrival (publication) time."""
    row = dict(source_uri=uri, line=1, source="s", article_id=art, update_id=f"{art}/1", headline="h",
               section=None, kind="paragraph", position=0, text=text,
               published_at=dt.datetime(2022, 2, day, hour, tzinfo=UTC))
    table = normalize_batch(pa.RecordBatch.from_pylist([row], schema=BLOCK_SCHEMA))[0]
    return TimestampedValue(resolve_event_times(dedup_snapshots(table)), _ts(day, hour))


def stream():
    return (
        TestStream()
        .advance_watermark_to(_ts(20))
        .add_elements([update("A", "Shelling near Donetsk.", 20, 10, "a.jsonl")])
        .add_elements([update("C", "Talks in Geneva.", 21, 9, "c.jsonl")])
        .add_elements([update("B", "Convoy reached Kharkiv.", 20, 22, "b.jsonl")])  # out of order
        .advance_watermark_to(_ts(22, 1))  # both days close on time
        .add_elements([update("D", "Ceasefire talks resumed.", 21, 23, "d.jsonl")])  # late, within 1 day
        .advance_watermark_to(_ts(23, 6))
        .add_elements([update("E", "Power cut in Luhansk.", 20, 12, "e.jsonl")])  # beyond the lateness
        .advance_watermark_to_infinity()
    )


def streaming_pipeline():
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(options=options)


def test_panes_and_late_rejects():
    with streaming_pipeline() as p:
        windowed = p | stream() | WindowByDay(allowed_lateness=DAY_SECONDS, streaming=True)
        parts = windowed["days"] | DedupDay()
        events = parts | beam.Filter(lambda x: x.table == "events") | beam.Map(
            lambda x: (x.key.isoformat(), x.pane, tuple(sorted(x.rows.column("article_id").to_pylist()))))
        assert_that(events, equal_to([
            ("2022-02-20", 0, ("A", "B")),      # on time, out-of-order arrival included
            ("2022-02-21", 0, ("C",)),
            ("2022-02-21", 1, ("C", "D")),      # the late pane carries the whole day again
        ]), label="panes")
        late = windowed[LATE] | beam.Map(lambda r: (r["source_uri"], r["line"], r["stage"], r["reason"],
                                                     r["event_date"]))
        assert_that(late, equal_to([("e.jsonl", 1, "window", "late", "2022-02-20")]), label="late")


def test_late_panes_replace_rows_and_quality_counts_late(tmp_path):
    with streaming_pipeline() as p:
        windowed = p | stream() | WindowByDay(allowed_lateness=DAY_SECONDS, streaming=True)
        parts = windowed["days"] | DedupDay()
        _ = {"parts": parts, "rejects": windowed[LATE]} | WriteDataset(str(tmp_path), "t")
    rows = query(tmp_path, "SELECT event_date::VARCHAR, article_id FROM events ORDER BY ALL")
    assert rows == [("2022-02-20", "A"), ("2022-02-20", "B"), ("2022-02-21", "C"), ("2022-02-21", "D")]
    assert query(tmp_path, "SELECT stage, reason, line FROM rejects") == [("window", "late", 1)]
    quality = query(tmp_path, "SELECT event_date::VARCHAR, blocks_read, rejected, late, events_written"
                              " FROM quality ORDER BY 1")
    assert quality == [("2022-02-20", 3, 1, 1, 2), ("2022-02-21", 2, 0, 0, 2)]


def test_batch_has_no_late_data(tmp_path):
    # the same updates in a batch run: the watermark moves only at the end, nothing is late
    elements = [update(*args) for args in [("A", "x one.", 20, 10, "a"), ("E", "x two.", 20, 12, "e"),
                                            ("D", "x three.", 21, 23, "d")]]
    with TestPipeline() as p:
        windowed = (p | beam.Create([e.value for e in elements])
                    | WindowByDay(allowed_lateness=DAY_SECONDS, streaming=False))
        assert_that(windowed[LATE], equal_to([]), label="nolate")
        days = windowed["days"] | beam.MapTuple(lambda d, ts: (d, sorted(t.num_rows for t in ts)))
        assert_that(days, equal_to([("2022-02-20", [1, 1]), ("2022-02-21", [1])]), label="days")


def test_parse_duration():
    assert [parse_duration(x) for x in ("90", "90s", "45m", "36h", "7d", "1.5d")] == [
        90, 90, 2700, 129600, 604800, 129600]


def test_seed_blocks_land_on_the_days_they_describe(tmp_path):
    need_shared(SEED)
    run_pipeline([SEED], tmp_path)

    def day_of(fragment):
        rows = query(tmp_path, f"SELECT event_date::VARCHAR, time_source FROM events WHERE text LIKE '%{fragment}%'")
        assert len(rows) == 1, (fragment, rows)
        return rows[0]

    assert day_of("explosion on Saturday") == ("2022-02-19", "text")
    assert day_of("throughout Sunday, 20 February") == ("2022-02-20", "text")
    assert day_of("Macron engaged in some rapid fire diplomacy") == ("2022-02-20", "text")
    assert day_of("according to reports on Monday, 21 February") == ("2022-02-21", "text")
    assert day_of("mobilise more than 100,000 troops") == ("2022-02-21", "published")
    assert day_of("joined after 1997") == ("2022-02-21", "published")
    assert day_of("Images captured by Maxar") == ("2022-02-21", "published")
    per_day = dict(query(tmp_path, "SELECT event_date::VARCHAR, events_written FROM quality"))
    assert sum(per_day.values()) == 30 and set(per_day) == {"2022-02-19", "2022-02-20", "2022-02-21"}
