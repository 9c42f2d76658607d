"""Event times one block at a time: the oracle of `transforms.event_time.resolve_batch`.

`resolve_rows` applies `resolve_event_time` (datetimes, every row, no pre-filter) and gives
what `resolve_batch` gives: UTC epoch microseconds, or None where no day is stated.
"""
from __future__ import annotations

import datetime

from transforms.event_time import resolve_event_time

UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = datetime.timedelta(microseconds=1)


def resolve_rows(texts: list, published_us: list) -> list[int | None]:
    """Per row: the stated event time in epoch microseconds, or None (no day, or a null)."""
    if len(texts) != len(published_us):
        raise ValueError(f"resolve_rows: {len(texts)} texts but {len(published_us)} publication times")
    out: list[int | None] = []
    for text, pub_us in zip(texts, published_us):
        if text is None or pub_us is None:
            out.append(None)
            continue
        event_time, source = resolve_event_time(text, EPOCH + pub_us * MICROSECOND)
        out.append(None if source == "published" else (event_time - EPOCH) // MICROSECOND)
    return out
