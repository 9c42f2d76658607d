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


class _WriteStagedFn(beam.DoFn):
    def __init__(self, root: str, token: str):
        self._root, self._token = root, token

    def process(self, part: tuple[str, dt.date | None, str, pa.Table]) -> Iterable[tuple[str, str]]:
        name, day, file_name, table = part
        rel = f"{partition_dir(name, day)}/{file_name}"
        staged = join(self._root, STAGING, self._token, rel)
        write_file(staged, parquet_bytes(table.cast(TABLE_SCHEMAS[name])))
        yield rel, staged


class _CommitFn(beam.DoFn):
    def __init__(self, root: str, token: str):
        self._root, self._token = root, token

    def process(self, staged: list[tuple[str, str]]):
        root = self._root
        written_tables = set()
        for rel, path in sorted(staged):
            final = join(root, rel)
            ensure_dir(final.rsplit("/", 1)[0])
            FileSystems.rename([path], [final])
            written_tables.add(rel.split("/", 1)[0])
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
            FileSystems.delete([staging])
        parent = join(root, STAGING)
        if "://" not in parent and FileSystems.exists(parent) and not FileSystems.match([join(parent, "*")])[0].metadata_list:
            FileSystems.delete([parent])  # local only: object stores have no empty folders
        yield len(staged)


class WriteDataset(beam.PTransform):
    """Write `(table, day, Arrow table)` parts and reject rows; commit at the end.

    Input: a dict with `parts` (elements `(name, day, table)` from `DedupDay`, any windows)
    and `rejects` (reject row dicts). Output: one element, the number of files committed.
    """

    def __init__(self, root: str, token: str):
        super().__init__()
        if not root:
            raise ValueError("--output is required")
        self._root, self._token = root.rstrip("/"), token

    def expand(self, pcolls):
        parts = pcolls["parts"] | "Unwindow" >> beam.WindowInto(GlobalWindows())
        rejects = pcolls["rejects"] | "UnwindowRejects" >> beam.WindowInto(GlobalWindows())
        day_files = parts | "DayFileName" >> beam.MapTuple(lambda n, d, t: (n, d, "part-0.parquet", t))
        reject_files = (
            rejects
            | "ByInput" >> beam.Map(lambda r: (r["source_uri"], r))
            | "GroupRejects" >> beam.GroupByKey()
            | "RejectFile" >> beam.MapTuple(
                lambda uri, rows: ("rejects", None, f"part-{stable_hash(uri, 16)}.parquet", rejects_table(list(rows))))
        )
        undated_quality = (
            rejects
            | "CountRejects" >> beam.combiners.Count.Globally()
            | "UndatedQuality" >> beam.FlatMap(
                lambda n: [("quality", None, "part-0.parquet", pa.table(
                    {"blocks_read": [n], "rejected": [n], "exact_duplicates": [0], "near_duplicates": [0],
                     "late": [0], "events_written": [0]}, schema=QUALITY_SCHEMA))] if n else [])
        )
        return (
            (day_files, reject_files, undated_quality)
            | "AllFiles" >> beam.Flatten()
            | "WriteStaged" >> beam.ParDo(_WriteStagedFn(self._root, self._token))
            | "AllWritten" >> beam.combiners.ToList()
            | "Commit" >> beam.ParDo(_CommitFn(self._root, self._token))
        )
