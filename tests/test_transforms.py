"""Each composite transform in a TestPipeline, checked with assert_that on its output rows."""
from __future__ import annotations

import datetime as dt
import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline

TestPipeline.__test__ = False  # a Beam class, not a pytest test class
from apache_beam.testing.util import assert_that, equal_to

from schemas.models import BLOCK_SCHEMA, UTC
from transforms.dedup import DedupDay, DedupSnapshots
from transforms.normalize import Normalize
from transforms.read import UPDATE_SCHEMA, ReadUpdates
from transforms.sink import WriteDataset
from transforms.split import SplitEvents
from transforms.windowing import ResolveEventTime, WindowByDay


def rows_of(tables, cols):
    out = []
    for t in tables:
        t = pa.Table.from_batches([t]) if isinstance(t, pa.RecordBatch) else t
        out += [tuple(r[c] for c in cols) for r in t.to_pylist()]
    return sorted(out, key=repr)


def matches_rows(expected, cols):
    def check(actual):
        got = rows_of(actual, cols)
        assert got == sorted(expected, key=repr), got
    return check


def _block(art, text, hour, uri="u", line=1, day=20):
    return dict(source_uri=uri, line=line, source="s", article_id=art, update_id=f"{art}/u", headline="h",
                section=None, kind="paragraph", position=line, text=text,
                published_at=dt.datetime(2022, 2, day, hour, tzinfo=UTC))


def test_read_updates(tmp_path):
    (tmp_path / "a.txt").write_text("date 2022-02-21 Head Line\nBody text.\n")
    (tmp_path / "f.jsonl").write_text(
        json.dumps({"article_id": "X", "text": "One.", "published_at": 0}) + "\n{bad\n")
    (tmp_path / "e.txt").write_bytes(b"")
    files = [(str(tmp_path / n), 1) for n in ("a.txt", "f.jsonl", "e.txt")]
    with TestPipeline() as p:
        out = p | beam.Create(files) | ReadUpdates("auto")
        assert_that(out["updates"], matches_rows([("text", "Head Line", 1), ("jsonl", "", 1)],
                                                 ["fmt", "headline", "line"]), label="updates")
        assert_that(out["rejects"] | beam.Map(lambda r: (r["source_uri"].rsplit("/", 1)[-1], r["line"], r["reason"])),
                    equal_to([("f.jsonl", 2, "invalid_json"), ("e.txt", None, "empty_file")]), label="rejects")


def test_split_events():
    update = dict(source_uri="u", line=1, fmt="text", source="s", article_id="A", update_id=None, headline="H",
                  section=None, published_at=dt.datetime(2022, 2, 21, tzinfo=UTC), position=0,
                  text="Intro.\nThe Next Part\nA bullet line\n")
    with TestPipeline() as p:
        out = p | beam.Create([pa.RecordBatch.from_pylist([update], schema=UPDATE_SCHEMA)]) | SplitEvents()
        assert_that(out, matches_rows(
            [(0, "headline", None), (1, "paragraph", None), (2, "heading", "The Next Part"),
             (3, "bullet", "The Next Part")], ["position", "kind", "section"]))


def test_normalize():
    batch = pa.RecordBatch.from_pylist([_block("A", "“Quoted”  text", 8), _block("A", "\u200b", 8, line=2)],
                                       schema=BLOCK_SCHEMA)
    with TestPipeline() as p:
        out = p | beam.Create([batch]) | Normalize()
        assert_that(out["blocks"], matches_rows([('"Quoted" text',)], ["text"]), label="blocks")
        assert_that(out["rejects"] | beam.Map(lambda r: (r["line"], r["stage"], r["reason"])),
                    equal_to([(2, "normalize", "empty_text")]), label="rejects")


def _normalized(rows):
    from transforms.normalize import normalize_batch
    return normalize_batch(pa.RecordBatch.from_pylist(rows, schema=BLOCK_SCHEMA))[0]


def test_dedup_snapshots_across_batches_and_shards():
    # the repeat arrives in another batch: grouping by article shard brings them together
    b1 = _normalized([_block("A", "Same.", 10, uri="s2"), _block("B", "Same.", 9, uri="s3")])
    b2 = _normalized([_block("A", "Same.", 8, uri="s1")])
    with TestPipeline() as p:
        out = p | beam.Create([b1, b2]) | DedupSnapshots(shards=4)
        assert_that(out, matches_rows([("A", "s1", False), ("A", "s2", True), ("B", "s3", False)],
                                      ["article_id", "source_uri", "is_dup"]))


def test_resolve_and_window_by_day():
    t = _normalized([_block("A", "Early.", 1, day=20), _block("A", "Late.", 23, day=21),
                     _block("A", "Early.", 5, day=22, uri="re-scrape")])

    def day_and_window(kv, w=beam.DoFn.WindowParam):
        day, parts = kv
        return day, sum(t.num_rows for t in parts), w.start.to_utc_datetime().date().isoformat()

    with TestPipeline() as p:
        windowed = p | beam.Create([t]) | DedupSnapshots(shards=2) | ResolveEventTime() | WindowByDay()
        out = windowed["days"] | beam.Map(day_and_window)
        # the re-scrape on the 22nd stays with its event on the 20th
        assert_that(out, equal_to([("2022-02-20", 2, "2022-02-20"), ("2022-02-21", 1, "2022-02-21")]))


def test_dedup_day_groups_by_window():
    t = _normalized([_block("A", "Same.", 8, uri="s1"), _block("B", "Same.", 9, uri="s2"),
                     _block("C", "Next day.", 9, day=21, uri="s3")])
    with TestPipeline() as p:
        windowed = p | beam.Create([t]) | DedupSnapshots(shards=3) | ResolveEventTime() | WindowByDay()
        parts = windowed["days"] | DedupDay()
        events = parts | beam.Filter(lambda x: x.table == "events") | beam.Map(lambda x: x.rows)
        assert_that(events, matches_rows([("A", 2), ("C", 1)], ["article_id", "mention_count"]), label="ev")
        quality = parts | beam.Filter(lambda x: x.table == "quality") | beam.Map(
            lambda x: (x.key.isoformat(), x.rows.column("blocks_read")[0].as_py()))
        assert_that(quality, equal_to([("2022-02-20", 2), ("2022-02-21", 1)]), label="quality")


def test_write_dataset_reads_back(tmp_path):
    t = _normalized([_block("A", "Same.", 8, uri="s1"), _block("B", "Same.", 9, uri="s2")])
    rejects = [{"source_uri": "bad.jsonl", "line": 3, "stage": "parse", "reason": "invalid_json", "raw": "{"}]
    with TestPipeline() as p:
        windowed = p | beam.Create([t]) | DedupSnapshots(shards=1) | ResolveEventTime() | WindowByDay()
        parts = windowed["days"] | DedupDay()
        committed = {"parts": parts, "rejects": p | "R" >> beam.Create(rejects)} | WriteDataset(str(tmp_path), "tok")
        # 5 files moved into place (the reject's shard and its reading in the hidden state);
        # the undated quality row is derived from the rejects at commit
        assert_that(committed, equal_to([5]))
    files = sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*") if f.is_file())
    from transforms.sink import reject_shard, rejects_file_name
    shard = rejects_file_name(reject_shard(rejects[0]))
    assert files == [
        f"_state/rejects/{shard}",
        "duplicates/event_date=2022-02-20/part-0.parquet",
        "events/event_date=2022-02-20/part-0.parquet",
        "quality/event_date=2022-02-20/part-0.parquet",
        "quality/event_date=__HIVE_DEFAULT_PARTITION__/part-0.parquet",
        f"rejects/{shard}",
    ]
    ev = pq.read_table(tmp_path / "events/event_date=2022-02-20/part-0.parquet")
    assert ev.column("article_id").to_pylist() == ["A"] and "event_date" not in ev.column_names
    assert not (tmp_path / "_staging").exists()
