"""The records that travel from the steps to the sink: what to write, and what is written.

`Part` is one file of the dataset for `transforms.sink.WriteDataset` to write: the rows of one
table's partition (a day of `events`, a shard of the hidden article index, ...). `Staged` is
a file a step already wrote under the run's staging folder (`transforms.sink.Stager`), so
that only its name travels on to the commit.

Example: `Part("events", date(2024, 3, 4), table, pane=0)` becomes
`DIR/events/event_date=2024-03-04/part-0.parquet`; a later pane of the same day (`pane=1`)
replaces it in the same run.
"""
from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa


class Part(NamedTuple):
    """Rows to write as one file.

    table: the table's folder ("events", "duplicates", "quality", "rejects", "_state/...").
    key: its partition: a `datetime.date` (or None for no day) for the day-partitioned
        tables, the shard number for the article index, None for the unpartitioned ones.
    rows: the Arrow table written (cast to the table's schema).
    pane: the window pane it comes from; of two parts of the same file, the later pane wins.
    file: the file's name in its partition folder.
    """

    table: str
    key: object
    rows: pa.Table
    pane: int = 0
    file: str = "part-0.parquet"


class Staged(NamedTuple):
    """A part already written under the staging folder.

    rel: its final path relative to the output root; pane: as in `Part`; path: where it is
    staged, or None when the part had no rows and its partition is to be removed.
    """

    rel: str
    pane: int
    path: str | None
