"""Event time and day windows.

`ResolveEventTime` adds `event_time` and `time_source` to the rows from `DedupSnapshots`:
the event time of a kept row is resolved from its text relative to its publication time
(`transforms.event_time`, when that resolver is enabled) or is its publication time; a
repeated occurrence takes the event time of its kept row, so a re-scrape never moves an
event to a later day.

`WindowByDay` is the one place that sets Beam timestamps and windows: each table is split by
the UTC day of `event_time`; each part is emitted with the timestamp of its day's start and
put into a one-day `FixedWindows`. The element is keyed by the day (ISO string).

Late data: in a batch run the watermark only advances when all input is read, so nothing is
late. (Streaming lateness is handled by the lateness-aware windowing of issue 3.)

Example: a row with event_time 2022-02-20T23:59Z lands in window [2022-02-20, 2022-02-21).
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.transforms.window import FixedWindows, TimestampedValue

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
        texts = table.column("text").take(pa.array(kept_idx)).to_pylist()
        resolved = resolver(texts, pub_us[kept_idx].tolist())
        for i, r in zip(kept_idx, resolved):
            if r is not None:
                event_us[i] = r
                from_text[i] = True
    ids = table.column("event_id").to_pylist()
    kept_of = {ids[i]: i for i in np.flatnonzero(kept_mask)}
    src = np.fromiter((kept_of[e] for e in ids), np.int64, len(ids))
    event_us, from_text = event_us[src], from_text[src]
    table = table.append_column("event_time", pa.array(event_us, pa.timestamp("us", tz="UTC")))
    return table.append_column("time_source", pa.array(np.where(from_text, "text", "published").tolist(), pa.string()))


class ResolveEventTime(beam.PTransform):
    def __init__(self, resolver: Resolver | None = None):
        super().__init__()
        self._resolver = resolver

    def expand(self, tables):
        return tables | "ResolveTimes" >> beam.Map(resolve_event_times, self._resolver)


def split_by_day(table: pa.Table):
    """(day ISO string, day start epoch seconds, part of the table) for each UTC day present."""
    days = pc.cast(pc.cast(table.column("event_time"), pa.timestamp("us")), pa.date32())
    day_num = pc.cast(days, pa.int32()).to_numpy(zero_copy_only=False)
    for d in np.unique(day_num):
        day = dt.date(1970, 1, 1) + dt.timedelta(days=int(d))
        yield day.isoformat(), int(d) * DAY_SECONDS, table.filter(pa.array(day_num == d))


class WindowByDay(beam.PTransform):
    """Tables with `event_time` -> (day, table part) elements in one-day event-time windows."""

    def expand(self, tables):
        return (
            tables
            | "StampByDay" >> beam.FlatMap(
                lambda t: (TimestampedValue((day, part), start) for day, start, part in split_by_day(t)))
            | "DayWindows" >> beam.WindowInto(FixedWindows(DAY_SECONDS))
        )
