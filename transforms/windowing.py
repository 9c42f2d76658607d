"""Event time and day windows.

`ResolveEventTime` adds `event_time` and `time_source` to the rows from `DedupSnapshots`:
the event time of a kept row is resolved from its text relative to its publication time
(`transforms.event_time`, when that resolver is enabled) or is its publication time; a
repeated occurrence takes the event time of its kept row, so a re-scrape never moves an
event to a later day.

`WindowByDay` is the one place that sets Beam timestamps and windows, and the day shuffle:
each table's rows are keyed by the UTC day of `event_time` (ISO string) and cross the shuffle
through `transforms.spill.GroupTables` (as tables, or with a spill folder as
`transforms.spill.SpillRef`s to their rows); each day's part is stamped with its day's start
and put into a one-day `FixedWindows` before the grouping, which gives `(day, [tables])` per
day window (with `shards`, see `WindowByDay`: per day and fingerprint shard, or per day with
the shards' references).

Late data: see `WindowByDay` (batch: nothing is late; streaming: a lateness gate routes
too-late parts to rejects, and later panes replace a day's rows).

Example: a row with event_time 2022-02-20T23:59Z lands in window [2022-02-20, 2022-02-21).
"""
from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any, Callable, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.coders import VarIntCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.trigger import AccumulationMode, AfterCount, AfterWatermark
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import FixedWindows, GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.common import concat, fingerprint_shards, reject
from transforms.spill import GroupTables, tables_of

DAY_SECONDS = 86400
Resolver = Callable[[list[str], list[int]], list]


def resolve_event_times(table: pa.Table, resolver: Resolver | None = None) -> pa.Table:
    """Add `event_time` and `time_source`; repeats inherit from their kept row (same table)."""
    published = table.column("published_at")
    pub_us = pc.cast(published, pa.int64()).to_numpy(zero_copy_only=False)
    event_us = pub_us.copy()
    from_text = np.zeros(table.num_rows, dtype=bool)
    kept_mask = ~table.column("is_dup").to_numpy(zero_copy_only=False)
    if resolver is not None:
        kept_idx = np.flatnonzero(kept_mask)
        texts = table.column("text").take(pa.array(kept_idx))  # an Arrow column: see resolve_batch
        resolved = pa.array(resolver(texts, pub_us[kept_idx].tolist()), pa.int64())
        found = pc.is_valid(resolved).to_numpy(zero_copy_only=False)
        at = kept_idx[found]
        event_us[at] = resolved.filter(pa.array(found)).to_numpy()
        from_text[at] = True
    # every row takes its kept row's time: the kept row of its event_id (a hash lookup in Arrow;
    # DedupSnapshots gives each event_id one kept row)
    ids = table.column("event_id")
    kept_ids = ids.filter(pa.array(kept_mask))
    kept_ids = kept_ids.combine_chunks() if isinstance(kept_ids, pa.ChunkedArray) else kept_ids
    src = np.flatnonzero(kept_mask)[pc.index_in(ids, value_set=kept_ids).to_numpy(zero_copy_only=False)]
    event_us, from_text = event_us[src], from_text[src]
    table = table.append_column("event_time", pa.array(event_us, pa.timestamp("us", tz="UTC")))
    return table.append_column("time_source", pc.if_else(pa.array(from_text), "text", "published"))


class ResolveEventTime(beam.PTransform):
    def __init__(self, resolver: Resolver | None = None):
        super().__init__()
        self._resolver = resolver

    def expand(self, tables):
        return tables | "ResolveTimes" >> beam.Map(resolve_event_times, self._resolver)


def day_keys(table: pa.Table) -> np.ndarray:
    """Each row's UTC day of `event_time`, as an ISO date string (the day shuffle's key)."""
    days = pc.cast(pc.cast(table.column("event_time"), pa.timestamp("us")), pa.date32())
    return np.datetime_as_string(days.to_numpy(zero_copy_only=False), unit="D")


def days_of(table: pa.Table) -> list[str]:
    """The distinct UTC days of a table's `event_time` (ISO date strings)."""
    return np.unique(day_keys(table)).tolist() if table.num_rows else []


def day_shard_keys(table: pa.Table, shards: int) -> np.ndarray:
    """Each row's `day/shard` key: the UTC day of `event_time` and the shard of its
    fingerprint (`day_of` gives the day back). All rows of a fingerprint on a day share a key."""
    if not table.num_rows:  # numpy's zfill fails on an empty array
        return np.zeros(0, dtype=str)
    shard = np.char.zfill(fingerprint_shards(table.column("fingerprint"), shards).astype(str), 4)
    return np.char.add(np.char.add(day_keys(table).astype(str), "/"), shard)


def shards_by_day(pairs: list) -> list:
    """The `(day/shard key, rows)` pairs of the tables of a bundle -> `(day, [(shard, rows), ...])`,
    one element per day: with spill files, the day shuffle then moves an element per bundle and
    day, not one per table, day and fingerprint shard."""
    out: dict[str, list] = {}
    for key, rows in pairs:
        out.setdefault(day_of(key), []).append((int(key[11:]), rows))
    return list(out.items())


def day_of(key: str) -> str:
    """The ISO day of a day shuffle key (`day_keys` or `day_shard_keys`)."""
    return key[:10]


def day_start(day: str) -> int:
    """Epoch seconds of the start of the UTC day `day` (ISO date; a `day/shard` key too)."""
    return (dt.date.fromisoformat(day_of(day)) - dt.date(1970, 1, 1)).days * DAY_SECONDS


LATE = "late"


def parse_duration(text) -> int:
    """Seconds in `90s`, `45m`, `36h`, `7d` or a bare number of seconds."""
    if isinstance(text, int):
        return text
    s = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": DAY_SECONDS}
    try:
        if s and s[-1] in units:
            value = float(s[:-1]) * units[s[-1]]
        else:
            value = float(s)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 36h or 7d)") from None
    if value < 0:
        raise ValueError(f"duration must not be negative: {text!r}")
    return int(value)

DEFAULT_ALLOWED_LATENESS = 7 * DAY_SECONDS
TICK_SECONDS = 3600
# The day windows keep their state this long past the end of the day. The gate below decides
# what is late; the window must never drop what the gate let through (see WindowByDay).
WINDOW_RETENTION_SECONDS = 3650 * DAY_SECONDS


class _LateGateFn(beam.DoFn):
    """Routes updates that arrive after their day's window closed (end + allowed lateness).

    Beam's GroupByKey drops too-late data without a trace, so lateness is decided here, before
    the grouping: a looping event-time timer (one key, one tick per hour of event time) records
    a lower bound of the watermark; a day part whose day ended more than `allowed_lateness`
    before that bound is routed to the `late` output. Until the first tick has fired nothing is
    known of the watermark and nothing is refused. The pending tick holds this step's output
    watermark, so whatever passes reaches the day windows before they could be garbage-collected.
    """

    WATERMARK = ReadModifyWriteStateSpec("watermark_lower_bound", VarIntCoder())
    HORIZON = ReadModifyWriteStateSpec("horizon", VarIntCoder())
    ARMED = ReadModifyWriteStateSpec("armed", VarIntCoder())
    TICK = TimerSpec("tick", TimeDomain.WATERMARK)

    def __init__(self, allowed_lateness: int):
        self._lateness = allowed_lateness

    def process(self, keyed, wm=beam.DoFn.StateParam(WATERMARK), horizon=beam.DoFn.StateParam(HORIZON),
                armed=beam.DoFn.StateParam(ARMED), tick=beam.DoFn.TimerParam(TICK)):
        _, (day, table) = keyed
        start = day_start(day)
        lower = wm.read()
        closes = start + DAY_SECONDS + self._lateness
        if lower is not None and closes <= lower:
            yield beam.pvalue.TaggedOutput(LATE, (day, table))
            return
        yield TimestampedValue((day, table), start)
        horizon.write(max(horizon.read() or closes, closes))
        if armed.read() is None:
            first = (lower if lower is not None else start) + TICK_SECONDS
            armed.write(first)
            tick.set(Timestamp(first))

    @on_timer(TICK)
    def _tick(self, fired=beam.DoFn.TimestampParam, wm=beam.DoFn.StateParam(WATERMARK),
              horizon=beam.DoFn.StateParam(HORIZON), armed=beam.DoFn.StateParam(ARMED),
              tick=beam.DoFn.TimerParam(TICK)):
        now = int(fired.micros // 1_000_000)
        wm.write(now)
        # keep ticking while some open day could still close; stop (and re-arm on new data) after
        if now < (horizon.read() or 0) + DAY_SECONDS:
            armed.write(now + TICK_SECONDS)
            tick.set(Timestamp(now + TICK_SECONDS))
        else:
            armed.clear()
        return []


def late_rejects(day: str, part) -> list[dict]:
    """One `rejects` row (stage `window`, reason `late`) per block of a too-late day part
    (a table or a spill reference)."""
    cols = ["article_id", "update_id", "published_at", "event_time", "text"]
    out = []
    for r in concat(tables_of([part])).select(["source_uri", "line", *cols]).to_pylist():
        raw = json.dumps({c: (r[c].isoformat() if hasattr(r[c], "isoformat") else r[c]) for c in cols},
                         ensure_ascii=False)
        out.append({**reject(r["source_uri"], r["line"], "window", "late", raw), "event_date": day_of(day)})
    return out


def day_windows() -> beam.WindowInto:
    """The day windows: one-day FixedWindows, fired at the watermark and for each late arrival,
    accumulating (a later pane carries the whole day)."""
    return beam.WindowInto(
        FixedWindows(DAY_SECONDS),
        trigger=AfterWatermark(late=AfterCount(1)),
        accumulation_mode=AccumulationMode.ACCUMULATING,
        allowed_lateness=Duration(seconds=WINDOW_RETENTION_SECONDS),
    )


def at_end() -> beam.WindowInto:
    """One global window fired once, when all input is read (in batch, and at the end of a
    bounded stream): what follows sees every element of the run."""
    return beam.WindowInto(GlobalWindows(), trigger=AfterWatermark(),
                           accumulation_mode=AccumulationMode.DISCARDING)


def stamp_by_day(part: tuple) -> TimestampedValue:
    """A `(day, rows)` element stamped with the start of its day."""
    return TimestampedValue(part, day_start(part[0]))


def day_marker(day: str, schema: pa.Schema) -> tuple:
    """An empty part for `day`: makes the day's group exist, so the day is recomputed."""
    return day, schema.empty_table()


class _StampAndWindow(beam.PTransform):
    """`(day, rows)` -> the same, stamped with the day's start, in its day window; in a
    streaming run, through the lateness gate first (`_LateGateFn`). Returns {"main", LATE}."""

    def __init__(self, allowed_lateness: int, streaming: bool):
        super().__init__()
        self._lateness, self._streaming = allowed_lateness, streaming

    def expand(self, parts):
        if self._streaming:
            gated = (
                parts
                | "OneKey" >> beam.Map(lambda part: (None, part))
                | "LateGate" >> beam.ParDo(_LateGateFn(self._lateness))
                .with_output_types(Tuple[str, Any]).with_outputs(LATE, main="on_time")
            )
            on_time, late = gated.on_time, gated[LATE]
        else:
            on_time = parts | "StampByDay" >> beam.Map(stamp_by_day)
            late = parts.pipeline | "NoLateInBatch" >> beam.Create([])
        return {"main": on_time | "DayWindows" >> day_windows(), LATE: late}


class WindowByDay(beam.PTransform):
    """Tables with `event_time` -> `(day, [tables])`: each event day's rows, grouped in the
    day's one-day event-time window (output "days"), and the late rows' `rejects` (output LATE).

    The one place where Beam timestamps, windows, trigger and lateness are set, and the day
    shuffle: the rows cross it through `transforms.spill.GroupTables` (keyed by the UTC day of
    `event_time`, as tables or spill references), and between keying and grouping each day's
    part is stamped with its day's start and put in a one-day `FixedWindows`, fired when the
    watermark passes the end of the day and again for every late arrival (accumulating: a
    later pane carries the whole day, so it replaces the day's rows, never adds to them).

    `recompute`, when given, is a PCollection of `(day, empty table)` (`day_marker`): each such
    day gets a group even without new rows (an incremental run recomputes it).

    Late data: in a batch run the watermark moves only after all input is read, so no update is
    late. In a streaming run, a part whose day ended more than `allowed_lateness` before the
    watermark (observed with one-hour resolution) is not windowed: it leaves on the `late`
    output and becomes `rejects` rows (stage `window`, reason `late`), counted per day in
    `quality.late`. Parts within the lateness reach their day's window in a later pane.

    Example: allowed lateness 1 day, watermark at 2022-02-23T02:00Z: a part for 2022-02-22 is
    on its way into a late pane; a part for 2022-02-20 is refused as late.

    `shards` > 0 labels each row with its day's fingerprint shard too (`day_shard_keys`), and a
    recompute marker makes every shard of its day exist. Without spill the groups are then
    `("YYYY-MM-DD/NNNN", [tables])` (`day_of` gives the day): no group holds a whole day. With
    spill they are `("YYYY-MM-DD", [[(shard, reference or empty marker table), ...], ...])`,
    one list per bundle of input tables (`shards_by_day`) or recompute marker, so that the next step can regroup the shards of
    the day (a small day into fewer groups) before reading them (`DedupDaySpread`).
    """

    def __init__(self, allowed_lateness: int = DEFAULT_ALLOWED_LATENESS, streaming: bool = False,
                 spill: str | None = None, recompute=None, shards: int = 0):
        super().__init__()
        if allowed_lateness < 0:
            raise ValueError("--allowed-lateness must not be negative")
        if shards < 0:
            raise ValueError("shards must not be negative")
        self._lateness, self._streaming, self._spill = allowed_lateness, streaming, spill
        self._recompute, self._shards = recompute, shards

    def expand(self, tables):
        present = None
        shards = self._shards
        bundle = shards_by_day if shards and self._spill else None
        if self._recompute is not None:
            markers = self._recompute
            if bundle is not None:
                markers = markers | "EveryShard" >> beam.Map(lambda p: (p[0], [(s, p[1]) for s in range(shards)]))
            elif shards:
                markers = markers | "EveryShard" >> beam.FlatMap(
                    lambda p: [(f"{p[0]}/{s:04d}", p[1]) for s in range(shards)])
            present = (markers
                       | "StampRecompute" >> beam.Map(stamp_by_day)
                       | "RecomputeWindows" >> day_windows())
        keys = functools.partial(day_shard_keys, shards=shards) if shards else day_keys
        grouped = tables | "GroupByDay" >> GroupTables(
            keys, self._spill, between=_StampAndWindow(self._lateness, self._streaming), present=present,
            references=bool(shards), bundle=bundle, batch_of=day_of if bundle is not None else None)
        rejects = grouped[LATE] | "LateRejects" >> beam.FlatMapTuple(late_rejects)
        return {"days": grouped["groups"], LATE: rejects}
