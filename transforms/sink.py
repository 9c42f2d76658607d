"""Sink: write the dataset as Hive-partitioned Parquet, committed by rename.

Layout under the output root (`DIR`):

    DIR/events/event_date=YYYY-MM-DD/part-0.parquet
    DIR/duplicates/event_date=YYYY-MM-DD/part-0.parquet
    DIR/quality/event_date=YYYY-MM-DD/part-0.parquet      (event_date=__HIVE_DEFAULT_PARTITION__
                                                           holds rejects with no known day)
    DIR/rejects/part-<hash of the input URI>.parquet

The partition column lives only in the folder name. File names are deterministic: a day's
file is rewritten whole, so rerunning the same input gives the same files, not more files.

Protocol: every file is first written under `DIR/_staging/<run token>/...` (outside every
table folder, so a reader globbing `DIR/<table>/**/*.parquet` never sees it); once all files
of the run are written (a global `ToList` that fires after the last write), one commit step
moves them into place with `FileSystems.rename` and removes the staging folder. A table
with no rows at all gets a zero-row file that carries its schema, so queries never fail on a
missing path. All I/O goes through Beam's `FileSystems`, so the output may be any filesystem
Beam knows.
"""
from __future__ import annotations

import datetime as dt
import io
from typing import Iterable

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.trigger import AccumulationMode, AfterWatermark
from apache_beam.transforms.window import GlobalWindows

from schemas.models import PARTITION, PARTITIONED_TABLES, QUALITY_SCHEMA, REJECT_SCHEMA, TABLE_SCHEMAS
from transforms.common import stable_hash

DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
STAGING = "_staging"
EMPTY_NAME = "empty.parquet"


def join(*parts: str) -> str:
    return FileSystems.join(*parts) if "://" in parts[0] else "/".join(p.rstrip("/") for p in parts)


def partition_dir(table: str, day: dt.date | None) -> str:
    if table not in PARTITIONED_TABLES:
        return table
    return f"{table}/{PARTITION}={day.isoformat() if day else DEFAULT_PARTITION}"


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_file(path: str, data: bytes) -> None:
    with FileSystems.create(path) as f:
        f.write(data)


def ensure_dir(path: str) -> None:
    if "://" in path:
        return  # object stores have no folders
    try:
        FileSystems.mkdirs(path)
    except (BeamIOError, IOError, OSError):
        if not FileSystems.exists(path):
            raise


def parquet_files(root: str, table: str) -> list[str]:
    pattern = join(root, table, "**")
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list if m.path.endswith(".parquet"))


def rejects_table(rows: list[dict]) -> pa.Table:
    rows = sorted(rows, key=lambda r: (r["line"] is not None, r["line"] or 0, r["stage"], r["reason"], r["raw"]))
    return pa.Table.from_pylist(rows, schema=REJECT_SCHEMA)


def merge_quality(day_key: str, items) -> tuple:
    """The quality row of one day: the latest pane's figures plus the rejects counted for the day.

    items: ("day", pane index, one-row table) from DedupDay, ("reject", is_late) per reject row.
    """
    latest, pane = None, -1
    rejected = late = 0
    for item in items:
        if item[0] == "day":
            if item[1] > pane:
                latest, pane = item[2], item[1]
        else:
            rejected += 1
            late += int(item[1])
    row = latest.to_pylist()[0] if latest is not None else dict.fromkeys(QUALITY_SCHEMA.names, 0)
    row.update(blocks_read=row["blocks_read"] + rejected, rejected=row["rejected"] + rejected,
               late=row["late"] + late)
    day = dt.date.fromisoformat(day_key) if day_key else None
    return "quality", day, "part-0.parquet", pa.Table.from_pylist([row], schema=QUALITY_SCHEMA), 0


def _day_key(day) -> str:
    """Shuffle key of a day: its ISO string, '' for no day (dates have no deterministic coder)."""
    return day.isoformat() if isinstance(day, dt.date) else (day or "")


def _count_reject(r: dict) -> tuple[str, dict]:
    Metrics.counter("newsevents", "rejects").inc()
    Metrics.counter("newsevents", f"rejects.{r['reason']}").inc()
    if r["stage"] == "window":
        Metrics.counter("newsevents", "late").inc()
    return r["source_uri"], r


class _WriteStagedFn(beam.DoFn):
    def __init__(self, root: str, token: str):
        self._root, self._token = root, token

    def process(self, part: tuple) -> Iterable[tuple[str, int, str]]:
        name, day, file_name, table, pane = part
        rel = f"{partition_dir(name, day)}/{file_name}"
        staged = join(self._root, STAGING, self._token, f"{rel}.pane-{pane}")
        write_file(staged, parquet_bytes(table.cast(TABLE_SCHEMAS[name])))
        yield rel, pane, staged


class _CommitFn(beam.DoFn):
    def __init__(self, root: str, token: str):
        self._root, self._token = root, token

    def process(self, staged: list[tuple[str, int, str]]):
        root = self._root
        latest: dict[str, tuple[int, str]] = {}
        for rel, pane, path in staged:
            if rel not in latest or pane > latest[rel][0]:
                latest[rel] = (pane, path)
        for rel in sorted(latest):
            final = join(root, rel)
            ensure_dir(final.rsplit("/", 1)[0])
            FileSystems.rename([latest[rel][1]], [final])
        for name, schema in TABLE_SCHEMAS.items():
            placeholder = join(root, partition_dir(name, None), EMPTY_NAME)
            files = parquet_files(root, name)
            real = [f for f in files if not f.endswith(EMPTY_NAME)]
            if not real and not files:
                write_file(placeholder, parquet_bytes(schema.empty_table()))
            elif real and len(real) < len(files):
                FileSystems.delete([placeholder])
        staging = join(root, STAGING, self._token)
        if FileSystems.exists(staging):
            FileSystems.delete([staging])  # superseded panes go with it
        parent = join(root, STAGING)
        if "://" not in parent and FileSystems.exists(parent) and not FileSystems.match([join(parent, "*")])[0].metadata_list:
            FileSystems.delete([parent])  # local only: object stores have no empty folders
        yield len(latest)


class WriteDataset(beam.PTransform):
    """Write `(table, day, Arrow table, pane)` parts and reject rows; commit at the end.

    Input: a dict with `parts` (from `DedupDay`, any windows) and `rejects` (reject row dicts;
    late ones carry their `event_date`). Output: one element, the number of files committed.
    A day's quality row is the latest pane's figures plus the rejects counted for that day.
    """

    def __init__(self, root: str, token: str):
        super().__init__()
        if not root:
            raise ValueError("--output is required")
        self._root, self._token = root.rstrip("/"), token

    def expand(self, pcolls):
        # One global window fired once, when all input is read (in batch, and at the end of a
        # bounded stream): the commit sees every file of the run.
        def at_end():
            return beam.WindowInto(GlobalWindows(), trigger=AfterWatermark(),
                                   accumulation_mode=AccumulationMode.DISCARDING)

        parts = pcolls["parts"] | "Unwindow" >> at_end()
        rejects = pcolls["rejects"] | "UnwindowRejects" >> at_end()
        day_files = (
            parts
            | "DataParts" >> beam.Filter(lambda p: p[0] != "quality")
            | "DayFileName" >> beam.MapTuple(lambda n, d, t, pane: (n, d, "part-0.parquet", t, pane))
        )
        quality = (
            (
                parts
                | "QualityParts" >> beam.Filter(lambda p: p[0] == "quality")
                | "QualityByDay" >> beam.MapTuple(lambda n, d, t, pane: (_day_key(d), ("day", pane, t))),
                rejects | "RejectByDay" >> beam.Map(lambda r: (_day_key(r.get(PARTITION)), ("reject", r["stage"] == "window"))),
            )
            | "QualityInputs" >> beam.Flatten()
            | "GroupQuality" >> beam.GroupByKey()
            | "MergeQuality" >> beam.MapTuple(merge_quality)
        )
        reject_files = (
            rejects
            | "ByInput" >> beam.Map(_count_reject)
            | "GroupRejects" >> beam.GroupByKey()
            | "RejectFile" >> beam.MapTuple(
                lambda uri, rows: ("rejects", None, f"part-{stable_hash(uri, 16)}.parquet", rejects_table(list(rows)), 0))
        )
        return (
            (day_files, reject_files, quality)
            | "AllFiles" >> beam.Flatten()
            | "WriteStaged" >> beam.ParDo(_WriteStagedFn(self._root, self._token))
            | "AllWritten" >> beam.combiners.ToList()
            | "Commit" >> beam.ParDo(_CommitFn(self._root, self._token))
        )
