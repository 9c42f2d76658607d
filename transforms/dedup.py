"""Deduplicate: exact duplicates across snapshots, then per event-day window (exact, near).

Two steps, both grouping Arrow tables by key (no Beam `Deduplicate`: it needs timers and
drops copies without a trace; grouping keeps the lineage):

`DedupSnapshots` (global window, grouped by a hash shard of `article_id`): the same block seen
again in a later snapshot of the same article (same `article_id` and fingerprint) is one
event, first seen at its earliest publication. Every row gets `event_id` =
xxh3-128(article_id, fingerprint); later occurrences are marked `is_dup` and travel with
their kept row, so the event never moves to a later day. A repeat of the same occurrence
(same article, update and canonical text, wherever and whenever it was read) is marked
`redelivered` too: it is counted, not written.

`DedupDay` (per event-day window, grouped by day): among the kept rows of the day, the same
fingerprint from different articles is an exact duplicate; then near duplicates
(`transforms.neardup`) are merged. The kept row of each group is the earliest published,
then by article_id, position, source_uri, line (a stable tie-break). Every other occurrence
becomes a `duplicates` row pointing at the final kept row, with `method` (`exact` when its
text has the kept row's fingerprint, else `near`) and `similarity`.

Example: snapshots at 08:00 and 10:00 of article A both carry "No casualties were
reported." -> one event (published 08:00) with mention_count 2, and one duplicates row
(A, the 10:00 update, exact, 1.0). The 08:00 snapshot read again from another folder adds
nothing but `quality.redelivered` 1.

Guarantee: every block in is exactly one `events` row, one `duplicates` row or one redelivery
(counted in `quality.redelivered`, see `dedup_snapshots`);
`sum(mention_count)` = events + duplicates; same input, same rows (no order dependence).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from schemas.models import DUPLICATE_SCHEMA, EVENT_SCHEMA, QUALITY_SCHEMA
from transforms.common import concat, concat_as_first, shards_of, stable_hashes
from transforms.neardup import DEFAULT_SHINGLE, DEFAULT_THRESHOLD, near_duplicates
from transforms.parts import Part
from transforms.spill import GroupTables
from transforms.state import index_rows

DEFAULT_SHARDS = 16
PRIORITY = [("published_at", "ascending"), ("article_id", "ascending"), ("position", "ascending"),
            ("source_uri", "ascending"), ("line", "ascending")]


def _reading_keys(t: pa.Table) -> pa.Array:
    """Where a row was read (source_uri, line, position): only to recognise a rerun over the very
    same delivery, never to tell occurrences apart."""
    return pc.binary_join_element_wise(t.column("source_uri"), pc.cast(t.column("line"), pa.string()),
                                       pc.cast(t.column("position"), pa.string()), "\x1f")


OCCURRENCE_KEY = ("article_id", "update_id", "published_at", "fingerprint")


def mark_redelivered(t: pa.Table) -> np.ndarray:
    """For a table sorted by article_id, fingerprint and PRIORITY: True for every row whose
    occurrence came earlier in the table (the first reading stands).

    What an occurrence is: (article_id, update_id, published_at, fingerprint) per row
    (`OCCURRENCE_KEY`).

    The update is its `update_id` and its publication time together: a feed line without
    `update_id` and a headline record get `<article>@<published_at>` from the reader; a text
    article's update id names the section, and its publication time is the header date; a
    live-blog update is the post (`block_id`) at the post's time. An update sent again under
    the same id with another publication time counts as a later update (a `duplicates` row,
    never a silent loss). The block's position is not part of the key: positions depend on how
    a reader numbers blocks (they continue over a live-blog file and shift when a re-scrape adds
    a post or paragraph above), so with it a redelivery would look new; the price is that the
    same text repeated verbatim inside one update is one occurrence (its repeats count as
    redelivered).

    Computed by Arrow's hash grouping (the first row of each key), not a Python loop over
    rows: the loop was ~8% of the 28-day 1M run's worker time (py-spy, BENCHMARKS.md).
    """
    n = t.num_rows
    out = np.ones(n, dtype=bool)
    if not n:
        return out
    cols = {}
    for name in OCCURRENCE_KEY:
        col = t.column(name)
        if col.null_count:  # pyarrow 16.1's group_by split rows with a null key into several
            # groups (tests/test_occurrence_identity.py): nulls become a flag and a filler
            cols[name + "\x1fnull"] = pc.is_null(col)
            col = pc.fill_null(col, pa.scalar("" if pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                                             else 0).cast(col.type))
        cols[name] = col
    cols["row"] = pa.array(np.arange(n, dtype=np.int64))
    keys = pa.table(cols)
    first = keys.group_by([c for c in cols if c != "row"], use_threads=False).aggregate([("row", "min")])
    out[first.column("row_min").to_numpy()] = False
    return out


SNAPSHOT_ORDER = [("article_id", "ascending"), ("fingerprint", "ascending")] + PRIORITY


def dedup_snapshots(table: pa.Table) -> pa.Table:
    """Mark repeats of (article_id, fingerprint); add `event_id`, `is_dup` and `redelivered`.

    Rows come back sorted by article, fingerprint and priority; the first of each run is kept
    (`is_dup` False), later ones are repeats. A repeat of the same occurrence (same article,
    update, publication time and canonical text: `OCCURRENCE_KEY`) is a redelivery:
    `redelivered` (and `is_dup`) True; it becomes no row, only a count in `quality.redelivered`.
    A repeat from another update (a re-scrape published later) stays a duplicate.

    Example: one feed line read from `drops/a.jsonl` and from `archive/a.jsonl` -> the first
    reading (by source_uri) is the occurrence, the other one is redelivered.

    With a `from_state` column (incremental runs), a row read back from earlier output is
    dropped when the new input has a row read from the very same place (source_uri, line,
    position): the same delivery was read again, and the new reading replaces the old, so a
    rerun changes nothing, quality included. Read from anywhere else, it is a redelivery.
    """
    if "from_state" in table.column_names:
        old = table.column("from_state")
        if pc.any(old).as_py():
            keys = _reading_keys(table)
            new_keys = keys.filter(pc.invert(old))
            stale = pc.and_(old, pc.is_in(keys, value_set=new_keys.combine_chunks()
                                          if isinstance(new_keys, pa.ChunkedArray) else new_keys))
            table = table.filter(pc.invert(stale))
    t = table.take(pc.sort_indices(table, SNAPSHOT_ORDER))
    n = t.num_rows
    arts, fps = t.column("article_id").combine_chunks(), t.column("fingerprint").combine_chunks()
    first = np.ones(n, dtype=bool)  # the first row of each (article, fingerprint) run is kept
    if n > 1:
        first[1:] = pc.or_(pc.not_equal(arts[1:], arts[:-1]), pc.not_equal(fps[1:], fps[:-1])).to_numpy(
            zero_copy_only=False)
    is_dup = ~first
    starts = pa.array(np.flatnonzero(first))
    # stable_hash(article_id + "\x1f" + fingerprint, 32) of each run, over the column at once
    run_ids = stable_hashes(pc.binary_join_element_wise(arts.take(starts), fps.take(starts), "\x1f"), 32)
    t = t.append_column("event_id", run_ids.take(pa.array(np.cumsum(first) - 1)))
    t = t.append_column("is_dup", pa.array(is_dup))
    return t.append_column("redelivered", pa.array(mark_redelivered(t)))


def article_shards(t: pa.Table, shards: int) -> np.ndarray:
    """Each row's article shard (a stable hash of `article_id`)."""
    return shards_of(t.column("article_id"), shards)


class DedupSnapshots(beam.PTransform):
    """Normalized block tables (one PCollection, or a tuple of them) -> tables with `event_id`,
    `is_dup` (one table per shard)."""

    def __init__(self, shards: int = DEFAULT_SHARDS, spill: str | None = None):
        super().__init__()
        if shards < 1:
            raise ValueError("--shards must be at least 1")
        self._shards, self._spill = shards, spill

    @property
    def shards(self) -> int:
        return self._shards

    def expand(self, blocks):
        shards = self._shards
        return (
            blocks
            | "GroupArticles" >> GroupTables(lambda t: article_shards(t, shards), self._spill)
            | "MarkRepeats" >> beam.MapTuple(lambda _, tables: dedup_snapshots(concat_as_first(tables)))
        )


NearFn = Callable[[pa.ChunkedArray], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class NearDetector:
    """The near-duplicate step of `dedup_day`: texts in keep-priority order -> (rep, similarity).

    A picklable callable, so the same configuration reaches every worker."""

    threshold: float = DEFAULT_THRESHOLD
    shingle: int = DEFAULT_SHINGLE
    keyed: bool = True  # the rule a day spread by key follows (`near_duplicates(keyed=True)`)

    def __post_init__(self):
        if not 0 < self.threshold <= 1:
            raise ValueError(f"--near-threshold must be in (0, 1], not {self.threshold}")
        if self.shingle < 1:
            raise ValueError(f"--shingle-size must be at least 1, not {self.shingle}")

    def __call__(self, texts) -> tuple[np.ndarray, np.ndarray]:
        r = near_duplicates(texts, threshold=self.threshold, shingle=self.shingle, keyed=self.keyed)
        return r.rep, r.similarity


def dedup_day(day: dt.date, table: pa.Table, near: NearFn | None = None) -> dict[str, pa.Table]:
    """One day's rows (kept and repeated, from `dedup_snapshots`) -> events, duplicates, quality.

    Rows marked `redelivered` give no row; they are counted in `blocks_read` and `redelivered`.

    `near(texts)` takes texts in keep-priority order and returns (rep index, similarity to rep)
    per text; None disables near-duplicate detection.
    """
    read = table.num_rows
    redelivered = 0
    if "redelivered" in table.column_names:  # a redelivery becomes no row, only a count
        again = table.column("redelivered")
        redelivered = pc.sum(again).as_py() or 0
        table = table.filter(pc.invert(again))
    kept = table.filter(pc.invert(table.column("is_dup")))
    repeats = table.filter(table.column("is_dup"))
    kept = kept.take(pc.sort_indices(kept, PRIORITY))
    n = kept.num_rows
    # exact across articles: first in priority order wins (a fingerprint's code is the same
    # in every row; np.unique's first index of each code is its first row)
    codes = pc.dictionary_encode(kept.column("fingerprint").combine_chunks()).indices
    codes = codes.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    _, first_row = np.unique(codes, return_index=True)
    rep_exact = first_row[codes]
    survivors = np.flatnonzero(rep_exact == np.arange(n))
    final = rep_exact.copy()
    sim = np.ones(n, dtype=np.float64)
    method_near = np.zeros(n, dtype=bool)
    if near is not None and len(survivors) > 1:
        texts = kept.column("text").take(pa.array(survivors))
        rep_s, sim_s = near(texts)
        rep_s = np.asarray(rep_s, dtype=np.int64)
        near_rep = survivors[rep_s]  # survivor index -> kept index of its cluster's rep
        final_of_survivor = np.empty(n, dtype=np.int64)
        final_of_survivor[survivors] = near_rep
        sim_of_survivor = np.ones(n, dtype=np.float64)
        sim_of_survivor[survivors] = np.asarray(sim_s, dtype=np.float64)
        final = final_of_survivor[rep_exact]
        sim = sim_of_survivor[rep_exact]
        method_near = final != rep_exact
    is_event = final == np.arange(n)
    event_ids = kept.column("event_id").combine_chunks()
    # repeats from other snapshots follow their kept row
    rep_rows = pc.index_in(repeats.column("event_id"), value_set=event_ids)
    if rep_rows.null_count:
        raise ValueError(f"{day}: {rep_rows.null_count} repeated rows without their kept row")
    rep_rows = rep_rows.to_numpy().astype(np.int64)
    dup_kept = np.flatnonzero(~is_event)
    mention = np.ones(n, dtype=np.int64)
    np.add.at(mention, final[dup_kept], 1)
    np.add.at(mention, final[rep_rows], 1)

    def dup_table(src: pa.Table, targets: np.ndarray, methods_near: np.ndarray, sims: np.ndarray) -> pa.Table:
        return pa.table(
            {
                "event_id": event_ids.take(pa.array(final[targets], pa.int64())).cast(pa.string()),
                "source": src.column("source"),
                "article_id": src.column("article_id"),
                "update_id": src.column("update_id"),
                "text": src.column("text"),
                "method": pc.if_else(pa.array(methods_near, pa.bool_()), "near", "exact").cast(pa.string()),
                "similarity": pa.array(sims, pa.float64()),
            },
            schema=DUPLICATE_SCHEMA,
        )

    dups = pa.concat_tables(
        [
            dup_table(kept.take(pa.array(dup_kept)), dup_kept, method_near[dup_kept], sim[dup_kept]),
            dup_table(repeats, rep_rows, method_near[rep_rows], sim[rep_rows]),
        ]
    )
    ev = kept.filter(pa.array(is_event))
    event_cols = {
        name: ev.column(name) for name in EVENT_SCHEMA.names if name in ev.column_names
    }
    event_cols["cluster_id"] = ev.column("event_id")
    event_cols["mention_count"] = pa.array(mention[is_event], pa.int32())
    events = pa.table({name: event_cols[name] for name in EVENT_SCHEMA.names}).cast(EVENT_SCHEMA)
    methods = dups.column("method")
    exact_n = pc.sum(pc.equal(methods, "exact")).as_py() or 0
    quality = pa.table(
        {
            "blocks_read": [read],
            "rejected": [0],
            "exact_duplicates": [exact_n],
            "near_duplicates": [dups.num_rows - exact_n],
            "redelivered": [redelivered],
            "late": [0],
            "events_written": [events.num_rows],
        },
        schema=QUALITY_SCHEMA,
    )
    dup_order = pc.sort_indices(dups, [(c, "ascending") for c in ("event_id", "source", "article_id", "update_id",
                                                                   "text", "method", "similarity")])
    return {"events": events, "duplicates": dups.take(dup_order), "quality": quality}


def day_counters() -> dict:
    """The day steps' Beam counters (namespace `newsevents`), by name."""
    return {name: Metrics.counter("newsevents", name)
            for name in ("blocks", "events", "exact_duplicates", "near_duplicates", "redelivered")}


def prior_rows(prior, day: str, fresh: pa.Table | None, exclusions=None, keep=None) -> pa.Table | None:
    """The day's earlier rows to recompute it with (a `PriorDays`), without the rows of the
    articles this run re-processes: those in `fresh` and in the `exclusions` side input;
    `keep(rows)`: only the rows of this mask (a group's share, filtered while reading)."""
    drop = [pa.array([a for lst in (exclusions[day] if exclusions is not None else []) for a in lst], pa.string())]
    if fresh is not None:
        drop.append(pc.unique(fresh.column("article_id")).cast(pa.string()))
    return prior.untouched(day, pa.concat_arrays(drop), keep)


class _DedupDayFn(beam.DoFn):
    def __init__(self, near: NearFn | None, prior, stager=None):
        self._near, self._prior, self._stager = near, prior, stager

    def setup(self):
        if self._stager is not None:
            self._stager.setup()
        self._counters = day_counters()

    def process(self, element, pane=beam.DoFn.PaneInfoParam, exclusions=None):
        day_str, tables = element
        day = dt.date.fromisoformat(day_str)
        parts = [t for t in tables if t.num_rows]
        fresh = concat(parts) if parts else None
        table = fresh
        if self._prior is not None:
            old = prior_rows(self._prior, day_str, fresh, exclusions)
            pieces = [x for x in (fresh, old) if x is not None]
            table = concat_as_first(pieces) if pieces else None
        if table is None:
            table = tables[0] if tables else None
        out = dedup_day(day, table, self._near)
        if pane.index == 0:  # a later pane repeats the day: count it once
            (q,) = out["quality"].to_pylist()
            for name, value in (("blocks", q["blocks_read"]), ("events", q["events_written"]),
                                ("exact_duplicates", q["exact_duplicates"]),
                                ("near_duplicates", q["near_duplicates"]), ("redelivered", q["redelivered"])):
                self._counters[name].inc(value)
        for name, t in out.items():
            yield self._part(name, day, t, pane.index)
        if self._prior is not None:
            yield self._part("_state/occurrences", day, table, pane.index)
            if fresh is not None:
                for shard, rows in index_rows(day_str, fresh):
                    yield beam.pvalue.TaggedOutput("index", (shard, rows))


    def _part(self, name: str, day: dt.date, table: pa.Table, pane: int):
        """A day table as a `Part` for the sink; with a stager, big tables are written here
        and only their `Staged` record travels on (the quality row stays a part: the sink
        adds the day's rejects to it)."""
        part = Part(name, day, table, pane)
        if self._stager is None or name == "quality":
            return part
        return self._stager(part)


class DedupDay(beam.PTransform):
    """`(day, [tables])` per day window (`WindowByDay`'s groups) -> a `transforms.parts.Part`
    per table of the day (events, duplicates, quality; `_state/occurrences` with `prior`).

    One day's group on one worker: a day's rows fit one worker (a million blocks is a few
    hundred MB of Arrow data). With accumulating panes, a later pane carries the whole day
    again, and its pane index tells the sink to let it replace the earlier one.

    With `prior` (a `transforms.state.PriorDays`) and `exclusions` (a PCollection of (day,
    article ids)), each day is recomputed over its earlier rows too, without the rows of the
    articles re-processed in this run; the day's full occurrence table is emitted as part
    `_state/occurrences`, and the index rows of its new articles on the `index` output.

    With `stager` (a `transforms.sink.Stager`), the day's events, duplicates and occurrences
    are written to the run's staging folder here, and their `Staged` record travels on instead
    of the `Part`.
    """

    def __init__(self, near: NearFn | None = None, prior=None, exclusions=None, stager=None):
        super().__init__()
        self._near, self._prior, self._exclusions, self._stager = near, prior, exclusions, stager

    def expand(self, days):
        fn = _DedupDayFn(self._near, self._prior, self._stager)
        if self._exclusions is None:
            return days | "DedupInDay" >> beam.ParDo(fn)
        return days | "DedupInDay" >> beam.ParDo(
            fn, exclusions=beam.pvalue.AsMultiMap(self._exclusions)).with_outputs("index", main="parts")
