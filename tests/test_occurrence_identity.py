"""Occurrence identity (DESIGN.md): an occurrence is its article, update and canonical text, never
where or when it was read. A redelivery adds no row and is counted in `quality.redelivered`; a
re-scrape published later is a `duplicates` row; a refused record read again is the same rejects
row; a dataset written before all this is migrated."""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from schemas.models import BLOCK_SCHEMA
from transforms.dedup import dedup_snapshots
from transforms.normalize import normalize_batch
from transforms.sink import merge_rejects, migrate
from transforms.state import for_snapshots, upgrade_occurrences
from transforms.windowing import resolve_event_times

from .conftest import copy_of, query, run_pipeline, table_rows, write_jsonl
from .test_end_to_end import assert_accounting

FEED = [
    {"article_id": "a1", "update_id": "a1/u1", "source": "harbour.example", "headline": "Storm",
     "published_at": "2024-03-04T08:00:00+00:00", "text": "Storm closed the harbour.\nFerries were cancelled."},
    {"article_id": "a2", "source": "grid.example", "headline": "Power",
     "published_at": "2024-03-04T09:00:00+00:00", "text": "Power was cut to 8,000 homes."},
    # a re-scrape of a1 published later: a new update, so a duplicates row of the 08:00 event
    {"article_id": "a1", "source": "harbour.example", "headline": "Storm",
     "published_at": "2024-03-04T10:00:00+00:00", "text": "Storm closed the harbour."},
    '{"article_id": "a3", "text": "cut short',  # refused: invalid JSON
]
FEED_BLOCKS = 4
ARTICLE = "date 2024-03-04 Harbour Storm\nThe harbour closed at noon.\nShips Stay Out\nNo ship may enter.\n"
ARTICLE_BLOCKS = 4  # headline, paragraph, heading, paragraph

def rows(root: Path) -> dict:
    return table_rows(root, ("events", "duplicates", "rejects"))


def quality(root: Path) -> list[tuple]:
    return query(root, "SELECT event_date::VARCHAR, blocks_read, rejected, exact_duplicates, near_duplicates,"
                       " redelivered, events_written FROM quality ORDER BY ALL")


def drop(folder: Path, feed_name: str = "feed.jsonl") -> Path:
    """One delivery: the feed and a text article (whose source is its folder's name)."""
    write_jsonl(folder / feed_name, FEED)
    (folder / "harbourdaily").mkdir(parents=True, exist_ok=True)
    (folder / "harbourdaily" / "storm.txt").write_text(ARTICLE, encoding="utf-8")
    return folder


@pytest.fixture
def first(shared_runs) -> Path:
    """The first delivery, written once for the module's tests and their shared runs."""
    return shared_runs.inputs("delivery", drop)


def _blocks(specs) -> pa.Table:
    """(source_uri, article_id, update_id, hour, position, text) -> normalized block rows."""
    import datetime as dt

    recs = [{"source_uri": uri, "line": 1, "source": "s", "article_id": art, "update_id": upd, "headline": "h",
             "section": None, "kind": "paragraph", "position": pos, "text": text,
             "published_at": dt.datetime(2024, 3, 4, hour, tzinfo=dt.timezone.utc)}
            for uri, art, upd, hour, pos, text in specs]
    table, _ = normalize_batch(pa.RecordBatch.from_pylist(recs, schema=BLOCK_SCHEMA))
    return table


def _marks(t: pa.Table) -> list[tuple]:
    return sorted(zip(t.column("source_uri").to_pylist(), t.column("update_id").to_pylist(),
                      t.column("text").to_pylist(), t.column("is_dup").to_pylist(),
                      t.column("redelivered").to_pylist()))


def test_same_update_from_another_path_is_redelivered_a_later_update_is_a_duplicate():
    out = dedup_snapshots(_blocks([
        ("drops/f.jsonl", "A", "u1", 8, 0, "Storm closed the harbour."),
        ("archive/f.jsonl", "A", "u1", 8, 0, "Storm  closed the HARBOUR!"),  # same canonical text
        ("drops/g.jsonl", "A", "u2", 10, 0, "Storm closed the harbour."),  # re-scrape, later update
        ("drops/h.jsonl", "B", "u1", 8, 0, "Storm closed the harbour."),  # another article
    ]))
    assert _marks(out) == [
        ("archive/f.jsonl", "u1", "Storm closed the HARBOUR!", False, False),  # first reading by path
        ("drops/f.jsonl", "u1", "Storm closed the harbour.", True, True),
        ("drops/g.jsonl", "u2", "Storm closed the harbour.", True, False),
        ("drops/h.jsonl", "u1", "Storm closed the harbour.", False, False),
    ]
    assert len(set(out.column("event_id").to_pylist())) == 2


def test_same_text_twice_in_one_update_is_one_occurrence():
    """The documented choice: position is not part of the key, so a verbatim repeat inside one
    update counts as redelivered (a redelivery whose positions shifted stays a redelivery)."""
    out = dedup_snapshots(_blocks([
        ("f.jsonl", "A", "u1", 8, 0, "Stay tuned."), ("f.jsonl", "A", "u1", 8, 3, "Stay tuned."),
        ("g.jsonl", "A", "u1", 8, 5, "Stay tuned."),  # the same post re-scraped with one post above it
    ]))
    assert [m[3:] for m in _marks(out)] == [(False, False), (True, True), (True, True)]


def test_old_state_is_upgraded_on_read():
    t = resolve_event_times(dedup_snapshots(for_snapshots(_blocks([
        ("drops/f.jsonl", "A", "u1", 8, 0, "Storm closed the harbour."),
        ("archive/f.jsonl", "A", "u1", 8, 0, "Storm closed the harbour."),
        ("drops/g.jsonl", "A", "u2", 10, 0, "Storm closed the harbour.")]), False)))
    old = t.drop_columns(["redelivered"])  # as the code before occurrence identity wrote it
    up = upgrade_occurrences(old)
    assert up.column_names == t.column_names
    assert sorted(zip(up.column("source_uri").to_pylist(), up.column("redelivered").to_pylist())) == [
        ("archive/f.jsonl", False), ("drops/f.jsonl", True), ("drops/g.jsonl", False)]


def test_merge_rejects_one_row_per_record_every_reading_kept():
    bad = {"stage": "parse", "reason": "invalid_json", "raw": '{"text": '}
    a, b = {"source_uri": "/drops/a.jsonl", "line": 3, **bad}, {"source_uri": "/archive/a.jsonl", "line": 3, **bad}
    readings, rejects = merge_rejects([a], [b], set())
    assert readings.num_rows == 2 and rejects.to_pylist() == [b]  # the first by source_uri stands
    # the same readings again (a rerun, a migration repeated) change nothing
    again = merge_rejects(readings.to_pylist(), [b], {"/archive/a.jsonl"})
    assert again[0].equals(readings) and again[1].equals(rejects)
    # an input read again without the bad line loses its reading; the other path's stays
    readings, rejects = merge_rejects(readings.to_pylist(), [], {"/archive/a.jsonl"})
    assert rejects.to_pylist() == [a]


def test_whole_file_rejects_are_told_apart_by_file():
    empty = {"line": None, "stage": "read", "reason": "empty_file", "raw": ""}
    a, b = {"source_uri": "/drops/d1/feed.jsonl", **empty}, {"source_uri": "/drops/d2/feed.jsonl", **empty}
    readings, rejects = merge_rejects([], [a, b, a], set())
    assert readings.num_rows == 2 and rejects.num_rows == 2


def test_copies_in_one_run_give_the_rows_of_one_delivery(tmp_path, first, shared_runs):
    once, copies = shared_runs.run([first]), tmp_path / "copies"
    archive = tmp_path / "archive" / "2024"
    shutil.copytree(first, archive)
    renamed = drop(tmp_path / "retry", feed_name="feed-renamed.jsonl")
    run_pipeline([first, archive, renamed], copies)
    expected = rows(once)
    assert expected["events"] and expected["duplicates"]
    assert rows(copies) == expected
    assert query(copies, "SELECT count(*) FROM rejects") == [(1,)]
    blocks = FEED_BLOCKS + ARTICLE_BLOCKS
    assert_accounting(once, blocks + 1, redelivered=0)
    assert_accounting(copies, 3 * (blocks + 1), redelivered=2 * blocks + 2)
    # the day's figures: the read blocks grow, the rows do not; the undated row holds the reject
    assert quality(copies) == [
        ("2024-03-04", 3 * blocks, 0, 1, 0, 2 * blocks, blocks - 1),
        (None, 3, 1, 0, 0, 2, 0),
    ]
    # the re-scrape published later is still a duplicates row of the 08:00 event
    assert query(copies, "SELECT d.update_id, d.method, e.update_id FROM duplicates d JOIN events e USING (event_id)"
                         " WHERE d.article_id = 'a1'") == [("a1@2024-03-04T10:00:00+00:00", "exact", "a1/u1")]
    assert query(copies, "SELECT mention_count FROM events WHERE text = 'Storm closed the harbour.'") == [(2,)]


def test_a_copy_in_a_later_run_is_redelivered_and_a_rerun_changes_nothing(tmp_path, tmp_path_factory, first,
                                                                          shared_runs):
    once = shared_runs.run([first])
    out = copy_of(once, tmp_path / "out")
    archive = tmp_path_factory.mktemp("archive") / "archive"
    assert str(archive) < str(first)  # its path sorts before the delivery's
    shutil.copytree(first, archive)
    run_pipeline([archive], out)  # moved to the archive and read again by a backfill
    blocks = FEED_BLOCKS + ARTICLE_BLOCKS
    assert rows(out) == rows(once)
    assert_accounting(out, 2 * (blocks + 1), redelivered=blocks + 1)
    before = (rows(out), quality(out))
    run_pipeline([archive], out)  # the very same delivery again: replaces its earlier reading
    assert (rows(out), quality(out)) == before
    # one rejects row, showing the reading first by path (the archive's sorts before the delivery's)
    assert query(out, "SELECT source_uri FROM rejects") == [(str(archive / "feed.jsonl"),)]


def test_a_line_delivered_twice_in_one_file_is_redelivered(tmp_path):
    out = tmp_path / "out"
    feed = write_jsonl(tmp_path / "in" / "feed.jsonl", [FEED[0], FEED[1], FEED[0], FEED[3], FEED[3]])
    run_pipeline([feed], out)
    assert query(out, "SELECT text, mention_count FROM events ORDER BY text") == [
        ("Ferries were cancelled.", 1), ("Power was cut to 8,000 homes.", 1), ("Storm closed the harbour.", 1)]
    assert query(out, "SELECT count(*) FROM duplicates") == [(0,)]
    assert query(out, "SELECT line FROM rejects") == [(4,)]  # the same bad line twice: one rejects row
    assert_accounting(out, 3 + 2 + 2, redelivered=2 + 1)


def _make_old(root: Path) -> None:
    """Turn a current dataset into what the code before occurrence identity wrote: no
    `redelivered` in quality or state, rejects named by input file, no reject readings."""
    from transforms.common import stable_hash

    for path in list(root.glob("quality/**/*.parquet")) + list(root.glob("_state/occurrences/**/*.parquet")):
        t = pq.read_table(path, partitioning=None)
        pq.write_table(t.drop_columns(["redelivered"]), path)
    readings = pa.concat_tables([pq.read_table(p) for p in root.glob("_state/rejects/*.parquet")])
    for p in list(root.glob("rejects/*.parquet")):
        p.unlink()
    for uri in set(readings.column("source_uri").to_pylist()):
        mine = readings.filter(pa.compute.equal(readings.column("source_uri"), uri))
        pq.write_table(mine, root / "rejects" / f"part-{stable_hash(uri, 16)}.parquet")
    shutil.rmtree(root / "_state" / "rejects")


def test_an_old_dataset_is_migrated(tmp_path, first, shared_runs):
    once = shared_runs.run([first])
    out = copy_of(once, tmp_path / "out")
    _make_old(out)
    archive = tmp_path / "archive"
    shutil.copytree(first, archive)
    run_pipeline([archive], out)
    assert rows(out) == rows(once)
    assert sorted(p.name for p in (out / "rejects").glob("*.parquet")) == sorted(
        p.name for p in (once / "rejects").glob("*.parquet"))
    blocks = FEED_BLOCKS + ARTICLE_BLOCKS
    assert_accounting(out, 2 * (blocks + 1), redelivered=blocks + 1)
    assert migrate(str(out)) == []  # nothing left to migrate


def test_an_old_dataset_stays_readable_after_migration_alone(tmp_path, first, shared_runs):
    out = copy_of(shared_runs.run([first]), tmp_path / "out")
    _make_old(out)
    done = migrate(str(out))
    assert any("/quality/" in p for p in done) and any("/rejects/part-" in p for p in done)
    assert query(out, "SELECT sum(redelivered), count(*) FROM quality") == [(0, 2)]
    assert query(out, "SELECT count(*) FROM rejects") == [(1,)]


def test_redelivery_marks_and_event_ids_match_a_row_by_row_reading():
    """`mark_redelivered` (Arrow hash grouping) and `dedup_snapshots`' run ids agree with the
    plain definition, read row by row, on a table with repeated and null keys."""
    import datetime as dt
    import random

    from transforms.common import stable_hash
    from transforms.dedup import SNAPSHOT_ORDER, mark_redelivered

    rnd = random.Random(5)
    n = 400
    t = pa.table({
        "article_id": [f"a{rnd.randrange(6)}" for _ in range(n)],
        "update_id": [rnd.choice([None, "u1", "u2", "u3"]) for _ in range(n)],
        "published_at": pa.array([dt.datetime(2024, 3, 4, rnd.randrange(3), tzinfo=dt.timezone.utc) for _ in range(n)],
                                 pa.timestamp("us", tz="UTC")),
        "fingerprint": [f"f{rnd.randrange(5)}" for _ in range(n)],
        "source_uri": [f"s{rnd.randrange(2)}" for _ in range(n)],
    })
    t = t.take(pc.sort_indices(t, [("article_id", "ascending"), ("fingerprint", "ascending"),
                                  ("published_at", "ascending"), ("source_uri", "ascending")]))
    seen, expect = set(), []
    for r in t.to_pylist():
        key = (r["article_id"], r["update_id"], r["published_at"], r["fingerprint"])
        expect.append(key in seen)
        seen.add(key)
    got = mark_redelivered(t)
    assert got.tolist() == expect and 0 < sum(expect) < n

    blocks = t.append_column("position", pa.array([rnd.randrange(3) for _ in range(n)], pa.int32())).append_column(
        "line", pa.array([rnd.randrange(50) for _ in range(n)], pa.int64()))
    out = dedup_snapshots(blocks.slice(7))  # a slice of the table
    assert out.num_rows == n - 7
    prev, ids, dup = None, [], []
    for r in out.to_pylist():
        key = (r["article_id"], r["fingerprint"])
        dup.append(key == prev)
        ids.append(stable_hash(key[0] + "\x1f" + key[1], 32))
        prev = key
    assert out.column("event_id").to_pylist() == ids
    assert out.column("is_dup").to_pylist() == dup and any(dup) and not all(dup)
    assert SNAPSHOT_ORDER[0][0] == "article_id"
