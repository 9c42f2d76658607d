"""Incremental runs: the dataset's hidden state, read back for the partitions a run touches.

Layout under the output root (outside every analyst table, so `DIR/<table>/**` never sees it):

    DIR/_state/occurrences/event_date=YYYY-MM-DD/part-0.parquet   every occurrence of the day,
        as it entered the day's dedup (block columns, fingerprint, event_id, is_dup, redelivered,
        event_time); redeliveries are kept here so that later runs count them again the same way
    DIR/_state/articles/shard=NNN/part-0.parquet                   (article_id, event_date) pairs:
        on which days an article has occurrences; 64 shards by article_id hash
    DIR/_state/rejects/part-NN.parquet                             every reading of a refused
        record (written by `transforms.sink`, which keeps one `rejects` row per record)

How a run uses it (`LoadPriorState` before the snapshot dedup, `UpdateIndex` after the day
dedup; `pipelines/news_events.py` wires them):
1. `TouchedArticles`: the new blocks, keyed by article shard, meet the index shards they touch
   (only those are read). For every article of the new input, its earlier days come out as
   (day, article_ids) *exclusions*; the index rows of the other articles of those shards are
   kept for the rewrite.
2. `ReadPriorOccurrences`: each excluded day's occurrences of the touched articles are read back
   and go through the snapshot dedup again together with the new blocks: an occurrence read
   again (same article, update and canonical text) is a redelivery, counted and not written;
   a reading of the very same place (same source_uri, line and position: a rerun) replaces
   its earlier copy, so reruns are idempotent, quality included.
3. `DedupDay` (given a `PriorDays` reader) reads every day it recomputes, drops the rows of the
   touched articles (they come recomputed) and dedups the day over old and new rows; days that
   lost all their rows are rewritten empty (their files removed).
4. `UpdateIndex`: the index shards touched are rewritten: the kept rows plus the new days'.
So a run over day 2 after day 1 gives the rows one run over both gives, reading only the days
and index shards the new input touches.
"""
from __future__ import annotations

import io
from typing import Any, Iterable, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas.models import BLOCK_SCHEMA
from transforms.common import concat, filesystem_options, shard_of, shards_of, use_filesystem_options
from transforms.parts import Part
from transforms.windowing import at_end, day_marker

STATE = "_state"
OCCURRENCES = f"{STATE}/occurrences"
ARTICLES = f"{STATE}/articles"
INDEX_SHARDS = 64
INDEX_SCHEMA = pa.schema([pa.field("article_id", pa.string(), False), pa.field("event_date", pa.string(), False)])
# what DedupSnapshots reads: the block columns, the fingerprint, and where a row came from
SNAPSHOT_SCHEMA = BLOCK_SCHEMA.append(pa.field("fingerprint", pa.string(), False)).append(
    pa.field("from_state", pa.bool_(), False))
OCCURRENCE_SCHEMA = (
    SNAPSHOT_SCHEMA.append(pa.field("event_id", pa.string(), False))
    .append(pa.field("is_dup", pa.bool_(), False))
    .append(pa.field("redelivered", pa.bool_(), False))
    .append(pa.field("event_time", pa.timestamp("us", tz="UTC"), False))
    .append(pa.field("time_source", pa.string(), False))
)


def index_shard(article_id: str) -> int:
    return shard_of(article_id, INDEX_SHARDS)


def occurrences_path(root: str, day: str) -> str:
    return f"{root}/{OCCURRENCES}/event_date={day}/part-0.parquet"


def index_path(root: str, shard: int) -> str:
    return f"{root}/{ARTICLES}/shard={shard:03d}/part-0.parquet"


def parquet_file(path: str) -> pq.ParquetFile | None:
    """A Parquet file opened through Beam's FileSystems (a seekable stream, as Beam's S3/GCS
    readers are: only the footer and the row groups read are fetched; else its bytes), or
    None when there is none."""
    if not FileSystems.exists(path):
        return None
    if "://" not in path:
        return pq.ParquetFile(path)
    f = FileSystems.open(path, compression_type="uncompressed")
    if f.seekable():
        return pq.ParquetFile(f)
    with f:
        return pq.ParquetFile(io.BytesIO(f.read()))


def read_table(path: str) -> pa.Table | None:
    """A Parquet file read through Beam's FileSystems, or None when there is none."""
    f = parquet_file(path)
    return None if f is None else f.read()


def for_snapshots(table: pa.Table, from_state: bool) -> pa.Table:
    """The columns DedupSnapshots reads, marked with where the rows came from."""
    cols = [table.column(n) for n in SNAPSHOT_SCHEMA.names[:-1]]
    cols.append(pa.array(np.full(table.num_rows, from_state), pa.bool_()))
    return pa.Table.from_arrays(cols, schema=SNAPSHOT_SCHEMA)


def article_ids_by_shard(table: pa.Table) -> Iterable[tuple[int, list[str]]]:
    """(index shard, distinct article ids of the table in that shard)."""
    ids = pc.unique(table.column("article_id")).cast(pa.string()).sort()
    keys = shards_of(ids, INDEX_SHARDS)
    names = np.array(ids.to_pylist(), dtype=object)
    for k in np.unique(keys):
        yield int(k), names[keys == k].tolist()


class _TouchedFn(beam.DoFn):
    """Per index shard: exclusions (day, article ids) and the index rows that stay as they are."""

    def __init__(self, root: str, fs_options: dict):
        self._root, self._fs_options = root, fs_options

    def setup(self):
        use_filesystem_options(self._fs_options)

    def process(self, element):
        shard, id_lists = element
        touched = pa.array(sorted({a for ids in id_lists for a in ids}), pa.string())
        index = read_table(index_path(self._root, shard))
        if index is None:
            index = INDEX_SCHEMA.empty_table()
        hit = pc.is_in(index.column("article_id"), value_set=touched)
        keep = index.filter(pc.invert(hit))
        yield beam.pvalue.TaggedOutput("index_keep", (shard, keep))
        prior = index.filter(hit)
        for day in sorted(set(prior.column("event_date").to_pylist())):
            on_day = prior.filter(pc.equal(prior.column("event_date"), day))
            yield day, sorted(on_day.column("article_id").to_pylist())


class TouchedArticles(beam.PTransform):
    """New block tables -> (day, article ids) exclusions; tag `index_keep`: (shard, kept index rows)."""

    def __init__(self, root: str):
        super().__init__()
        self._root = root

    def expand(self, new_tables):
        # only the article ids travel: the blocks themselves are not shuffled here
        return (
            new_tables
            | "ArticleIdsByShard" >> beam.FlatMap(article_ids_by_shard)
            | "GroupByIndexShard" >> beam.GroupByKey()
            | "Exclusions" >> beam.ParDo(_TouchedFn(self._root, filesystem_options(new_tables.pipeline.options)))
            .with_output_types(Tuple[str, Any]).with_outputs("index_keep", main="exclusions")
        )


class _ReadPriorFn(beam.DoFn):
    def __init__(self, root: str, fs_options: dict):
        self._root, self._fs_options = root, fs_options

    def setup(self):
        use_filesystem_options(self._fs_options)

    def process(self, element):
        day, article_lists = element
        articles = pa.array(sorted({a for lst in article_lists for a in lst}))
        prior = read_table(occurrences_path(self._root, day))
        if prior is None:
            return
        rows = prior.filter(pc.is_in(prior.column("article_id"), value_set=articles))
        if rows.num_rows:
            yield for_snapshots(rows, True)


class ReadPriorOccurrences(beam.PTransform):
    """(day, article ids) exclusions -> the prior occurrences of those articles on those days."""

    def __init__(self, root: str):
        super().__init__()
        self._root = root

    def expand(self, exclusions):
        fs_options = filesystem_options(exclusions.pipeline.options)
        return (exclusions | "GroupExclusions" >> beam.GroupByKey()
                | "ReadPrior" >> beam.ParDo(_ReadPriorFn(self._root, fs_options)))


class PriorDays:
    """Reads a day's prior occurrences for `DedupDay`, without the rows of re-processed articles."""

    def __init__(self, root: str, fs_options: dict | None = None):
        self.root, self.fs_options = root, fs_options or {}

    def rows(self, day: str) -> int:
        """How many earlier occurrences the day has (the Parquet footer's count; 0 without state)."""
        use_filesystem_options(self.fs_options)
        f = parquet_file(occurrences_path(self.root, day))
        return 0 if f is None else f.metadata.num_rows

    def untouched(self, day: str, exclude: pa.Array | None = None, keep=None) -> pa.Table | None:
        """The day's earlier occurrences without those of the articles in `exclude` (article
        ids; None: all of them), or None when the day has no earlier state. `keep(rows)`, when
        given, is a row mask (a group's share of the day): the file is then read and filtered
        batch by batch, so that a group holds its share, not the whole earlier day."""
        use_filesystem_options(self.fs_options)
        f = parquet_file(occurrences_path(self.root, day))
        if f is None:
            return None

        def mine(t: pa.Table) -> pa.Table:
            if exclude is not None and len(exclude):
                t = t.filter(pc.invert(pc.is_in(t.column("article_id"), value_set=exclude)))
            return t.filter(pa.array(keep(t))) if keep is not None and t.num_rows else t

        if keep is None or "redelivered" not in f.schema_arrow.names:  # whole (and legacy state, migrated whole)
            return mine(upgrade_occurrences(f.read()))
        parts = [mine(pa.Table.from_batches([b])) for b in f.iter_batches(batch_size=PRIOR_BATCH_ROWS)]
        return upgrade_occurrences(pa.concat_tables(parts) if parts else f.schema_arrow.empty_table())


# Rows per batch when a group reads its share of a day's earlier occurrences.
PRIOR_BATCH_ROWS = 65_536


def upgrade_occurrences(table: pa.Table) -> pa.Table:
    """A day's state as OCCURRENCE_SCHEMA; state written before occurrence identity (no
    `redelivered` column: every reading was its own occurrence) is migrated on read.

    Migration: the rows are put in snapshot order and every repeat of an occurrence already
    seen is marked `redelivered` (and `is_dup`), as `dedup_snapshots` marks them now; the
    first reading of each (article, fingerprint) was the kept row then and stays it. The day's
    files are rewritten under the new rules by the run that reads it.
    """
    if "redelivered" not in table.column_names:
        from transforms.dedup import SNAPSHOT_ORDER, mark_redelivered  # dedup imports this module

        table = table.take(pc.sort_indices(table, SNAPSHOT_ORDER))
        again = mark_redelivered(table)
        is_dup = np.logical_or(table.column("is_dup").to_numpy(zero_copy_only=False), again)
        table = table.set_column(table.schema.get_field_index("is_dup"), "is_dup", pa.array(is_dup))
        table = table.append_column("redelivered", pa.array(again))
        table = table.select(OCCURRENCE_SCHEMA.names)
    return table.cast(OCCURRENCE_SCHEMA)


def index_rows(day: str, table: pa.Table) -> Iterable[tuple[int, tuple[str, list[str]]]]:
    """(shard, (day, article ids)) for the articles of a recomputed day's new rows.

    Plain lists, not Arrow tables: every group of every day gives one element per index
    shard it touches (~24k on the 28-day 1M feed, a few dozen ids each), and each crosses two
    shuffles; Beam's coder carries a list of strings directly, where a small table is pickled
    and unpickled at each crossing."""
    for shard, ids in article_ids_by_shard(table):
        yield shard, (day, ids)


def merge_index(shard: int, grouped) -> tuple[int, pa.Table]:
    """An index shard's rows: those that stay (`keep`, tables) and the new days' (`new`,
    `index_rows` elements), each (article_id, event_date) once, sorted."""
    parts = list(grouped.get("keep", []))
    new = list(grouped.get("new", []))
    if new:
        ids = [a for _, lst in new for a in lst]
        days = [day for day, lst in new for _ in lst]
        parts.append(pa.table({"article_id": pa.array(ids, pa.string()), "event_date": pa.array(days, pa.string())},
                              schema=INDEX_SCHEMA))
    t = concat(parts) if parts else INDEX_SCHEMA.empty_table()
    t = t.group_by(["article_id", "event_date"]).aggregate([]).sort_by([("article_id", "ascending"),
                                                                        ("event_date", "ascending")])
    return shard, t.cast(INDEX_SCHEMA)


class LoadPriorState(beam.PTransform):
    """New block tables -> what this run needs of the dataset's earlier state (steps 1 and 2
    of the module docstring), as a dict of PCollections:

    new: the new blocks, as `DedupSnapshots` reads them;
    prior: the earlier occurrences of the articles the new blocks touch (to dedup again);
    exclusions: (day, article ids) per earlier day of those articles (`DedupDay` leaves their
        old rows out of the day and takes them recomputed);
    recompute: (day, empty table) per such day, so that `WindowByDay` gives the day a group
        even when no new row lands on it;
    index_keep: (index shard, the index rows that stay) for `UpdateIndex`.
    """

    def __init__(self, root: str):
        super().__init__()
        self._root = root

    def expand(self, blocks):
        new = blocks | "MarkNew" >> beam.Map(for_snapshots, False)
        touched = new | "TouchedArticles" >> TouchedArticles(self._root)
        return {
            "new": new,
            "prior": touched.exclusions | "ReadPrior" >> ReadPriorOccurrences(self._root),
            "exclusions": touched.exclusions,
            "recompute": touched.exclusions | "DaysToRecompute" >> beam.MapTuple(
                lambda day, _: day_marker(day, OCCURRENCE_SCHEMA)),
            "index_keep": touched.index_keep,
        }


class UpdateIndex(beam.PTransform):
    """(index rows that stay, index rows of the days recomputed), both (shard, table) -> one
    `Part` per touched index shard, when the run's input is all read (step 4)."""

    def expand(self, pcolls):
        keep, new = pcolls
        return (
            {"keep": keep | "KeepAtEnd" >> at_end(), "new": new | "NewAtEnd" >> at_end()}
            | "GroupIndex" >> beam.CoGroupByKey()
            | "MergeIndex" >> beam.MapTuple(merge_index)
            | "IndexParts" >> beam.MapTuple(lambda shard, t: Part(ARTICLES, shard, t))
        )
