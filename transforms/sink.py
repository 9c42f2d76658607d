"""Sink: write the dataset as Hive-partitioned Parquet, committed by rename.

Layout under the output root (`DIR`):

    DIR/events/event_date=YYYY-MM-DD/part-0.parquet
    DIR/duplicates/event_date=YYYY-MM-DD/part-0.parquet
    DIR/quality/event_date=YYYY-MM-DD/part-0.parquet      (event_date=__HIVE_DEFAULT_PARTITION__
                                                           holds rejects with no known day)
    DIR/rejects/part-NN.parquet                           (16 shards by the refused record's key)
    DIR/_state/rejects/part-NN.parquet                    (hidden: every reading of those records)

The partition column lives only in the folder name. File names are deterministic: a day's
file is rewritten whole, so rerunning the same input gives the same files, not more files.

Protocol: every file is first written under `DIR/_staging/<run token>/...` (outside every
table folder, so a reader globbing `DIR/<table>/**/*.parquet` never sees it); once all files
of the run are written (a global `ToList` that fires after the last write), one commit step
moves them into place with `FileSystems.rename` and removes the staging folder. A table
with no rows at all gets a zero-row file that carries its schema, so queries never fail on a
missing path. All I/O goes through Beam's `FileSystems`, so the output may be any filesystem
Beam knows (local, `s3://`, `gs://`, ...). On object stores, where a rename is a copy and a
delete, the same protocol holds: staged objects live under `DIR/_staging/`, outside every
table prefix, and each object appears whole (see docs/scaling.md). The commit is idempotent,
so a runner may retry it after a partial attempt.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import re
from typing import Iterable, NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from schemas.models import PARTITION, PARTITIONED_TABLES, QUALITY_SCHEMA, REJECT_SCHEMA, TABLE_SCHEMAS
from transforms.common import filesystem_options, stable_hash, use_filesystem_options  # noqa: F401 (re-exported)
from transforms.parts import Part, Staged
from transforms.windowing import at_end
from transforms.state import ARTICLES, INDEX_SCHEMA, OCCURRENCE_SCHEMA, OCCURRENCES, STATE, read_table

DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
STAGING = "_staging"
COMMIT_SUFFIX = ".commit.json"
EMPTY_NAME = "empty.parquet"


def join(*parts: str) -> str:
    return FileSystems.join(*parts) if "://" in parts[0] else "/".join(p.rstrip("/") for p in parts)


def partition_dir(table: str, key) -> str:
    """Folder of a table's partition: `event_date=...` (a day, or NULL), `shard=NNN`, or none."""
    if table == ARTICLES:
        return f"{table}/shard={int(key):03d}"
    if table not in PARTITIONED_TABLES and table != OCCURRENCES:
        return table
    return f"{table}/{PARTITION}={key.isoformat() if key else DEFAULT_PARTITION}"


# every reading of a refused record (the visible `rejects` table keeps one row per record)
REJECT_READINGS = f"{STATE}/rejects"
REJECT_SHARDS = 16
# what each written part is cast to: the analysts' tables and the hidden state
SCHEMAS = {**TABLE_SCHEMAS, OCCURRENCES: OCCURRENCE_SCHEMA, ARTICLES: INDEX_SCHEMA, REJECT_READINGS: REJECT_SCHEMA}


# Columns whose values are (nearly) all distinct, written without a dictionary: the writer
# would build one for each page and give it up: writing the events, duplicates and
# occurrence files of the 28-day 1M feed's output took 6-12 % more CPU with the dictionaries
# (11.2 -> 10.6 and 10.3 -> 9.1 CPU-seconds in two measurements), the files 2-4 % larger
# (benchmarks/parquet_write.py, BENCHMARKS.md). Every other column keeps Parquet's
# dictionary encoding.
PLAIN_COLUMNS = {
    "events": frozenset({"event_id", "text", "fingerprint", "cluster_id"}),
    "duplicates": frozenset({"text"}),
    OCCURRENCES: frozenset({"text", "fingerprint", "event_id"}),
}


def parquet_options(table: str | None, schema: pa.Schema) -> dict:
    """Writer options of a part of `table` (a SCHEMAS name; None: defaults): zstd, and a
    dictionary for every column not in PLAIN_COLUMNS."""
    plain = PLAIN_COLUMNS.get(table, frozenset())
    return {"compression": "zstd", "use_dictionary": [n for n in schema.names if n not in plain] if plain else True}


def parquet_bytes(table: pa.Table, name: str | None = None) -> bytes:
    """`table` as a Parquet file's bytes, written with `parquet_options(name, ...)`."""
    buf = io.BytesIO()
    pq.write_table(table, buf, **parquet_options(name, table.schema))
    return buf.getvalue()


def write_file(path: str, data: bytes) -> None:
    with FileSystems.create(path) as f:
        f.write(data)


def move_all(pairs: list[tuple[str, str]]) -> None:
    """`FileSystems.rename` of (source, destination) pairs in one call, safe to repeat.

    One call, not one per file: Beam's S3 filesystem builds a new client for every call
    (~0.1 s). A retried commit finds some files already moved: a pair whose source is gone
    and whose destination exists counts as done; any other failure is raised.
    """
    if not pairs:
        return
    try:
        FileSystems.rename([s for s, _ in pairs], [d for _, d in pairs])
    except (BeamIOError, IOError, OSError) as e:
        details = getattr(e, "exception_details", None) or {}
        failed = [k for k in details if isinstance(k, tuple) and len(k) == 2] or pairs
        for src, dst in failed:
            if FileSystems.exists(src) or not FileSystems.exists(dst):
                raise


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
    rows = sorted(rows, key=lambda r: (r["source_uri"], r["line"] is not None, r["line"] or 0, r["stage"],
                                       r["reason"], r["raw"]))
    return pa.Table.from_pylist(rows, schema=REJECT_SCHEMA)


def reject_key(r: dict) -> str:
    """What a refused record is: its stage, reason and raw payload (as kept, truncated to
    REJECT_RAW_LIMIT characters), never where it was read. The same bad line from two paths,
    or twice in one file, is one record.

    A whole-file refusal (no `line`: an empty, binary or unreadable file, a live-blog file that
    is not JSON) keeps only the start of the file, or nothing, as its payload, which does not
    tell two files apart: its key adds the file's URI, so each such file is its own row.
    """
    where = r["source_uri"] if r["line"] is None else ""
    return stable_hash(f"{r['stage']}\x1f{r['reason']}\x1f{where}\x1f{r['raw']}", 32)


def reject_shard(r: dict) -> int:
    return int(reject_key(r)[:8], 16) % REJECT_SHARDS


def rejects_file_name(shard: int) -> str:
    return f"part-{shard:02d}.parquet"


def merge_rejects(readings: list[dict], new: list[dict], reread: set[str]) -> tuple[pa.Table, pa.Table]:
    """One reject shard: (every reading, one row per refused record).

    `readings` are the shard's earlier readings (hidden state), `new` this run's reject rows,
    `reread` the input files of this run: their earlier readings are replaced by this run's
    (a file read again without a bad line any more loses its reading). Each record keeps the
    reading first by (source_uri, line) as its row.

    Example: the line `{"text": ` refused in `drops/a.jsonl` line 3 and in `archive/a.jsonl`
    line 3 -> two readings, one `rejects` row (drops/a.jsonl, 3).
    """
    kept = [r for r in readings if r["source_uri"] not in reread] + list(new)
    distinct_readings = {tuple(r[k] for k in REJECT_SCHEMA.names): r for r in kept}
    all_readings = rejects_table(list(distinct_readings.values()))
    first: dict[str, dict] = {}
    for r in all_readings.to_pylist():  # sorted by source_uri, line: the first reading stands
        first.setdefault(reject_key(r), r)
    return all_readings, rejects_table(list(first.values()))


class _RejectShardFn(beam.DoFn):
    """(shard, this run's reject rows) -> the shard's readings and rejects files (see `merge_rejects`)."""

    def __init__(self, root: str, inputs: list[str], fs_options: dict):
        self._root, self._inputs, self._fs_options = root, inputs, fs_options

    def setup(self):
        use_filesystem_options(self._fs_options)

    def process(self, element):
        shard, rows = element
        name = rejects_file_name(shard)
        old = read_table(join(self._root, REJECT_READINGS, name))
        readings, rejects = merge_rejects(old.to_pylist() if old is not None else [],
                                          [r for r in rows if r is not None], set(self._inputs))
        yield Part(REJECT_READINGS, None, readings, file=name)
        yield Part("rejects", None, rejects, file=name)


class RejectOfDay(NamedTuple):
    """A reject row counted in its day's quality row (`merge_quality`)."""

    late: bool


def merge_quality(day_key: str, items) -> Part:
    """The quality row of one day: the latest pane's figures plus the rejects counted for the day.

    items: the day's quality `Part`s (one per pane, from DedupDay) and a `RejectOfDay` per
    reject row of the day.
    """
    latest, pane = None, -1
    rejected = late = 0
    for item in items:
        if isinstance(item, Part):
            if item.pane > pane:
                latest, pane = item.rows, item.pane
        else:
            rejected += 1
            late += int(item.late)
    row = latest.to_pylist()[0] if latest is not None else dict.fromkeys(QUALITY_SCHEMA.names, 0)
    row.update(blocks_read=row["blocks_read"] + rejected, rejected=row["rejected"] + rejected,
               late=row["late"] + late)
    day = dt.date.fromisoformat(day_key) if day_key else None
    table = pa.Table.from_pylist([row] if row["blocks_read"] else [], schema=QUALITY_SCHEMA)
    return Part("quality", day, table)


def _day_key(day) -> str:
    """Shuffle key of a day: its ISO string, '' for no day (dates have no deterministic coder)."""
    return day.isoformat() if isinstance(day, dt.date) else (day or "")


def _count_reject(r: dict) -> tuple[int, dict]:
    Metrics.counter("newsevents", "rejects").inc()
    Metrics.counter("newsevents", f"rejects.{r['reason']}").inc()
    if r["stage"] == "window":
        Metrics.counter("newsevents", "late").inc()
    return reject_shard(r), r


class Stager:
    """Writes one `Part` under the run's staging folder and returns its `Staged` record for the
    commit; a day partition left without rows is recorded for deletion instead (staged path
    None). Picklable: a step that makes big tables (DedupDay) writes them itself, so they never
    travel through the runner."""

    def __init__(self, root: str, token: str, fs_options: dict | None = None):
        self._root, self._token, self._fs_options = root.rstrip("/"), token, fs_options or {}

    def setup(self) -> None:
        use_filesystem_options(self._fs_options)

    def __call__(self, part: Part) -> Staged:
        rel = f"{partition_dir(part.table, part.key)}/{part.file}"
        if part.rows.num_rows == 0 and (part.key is not None or part.table in ("rejects", REJECT_READINGS)):
            return Staged(rel, part.pane, None)
        staged = join(self._root, STAGING, self._token, f"{rel}.pane-{part.pane}")
        write_file(staged, parquet_bytes(part.rows.cast(SCHEMAS[part.table]), part.table))
        return Staged(rel, part.pane, staged)

    def write_pieces(self, table: str, day, pieces: Iterable[pa.Table], pane: int = 0,
                     file: str = "part-0.parquet") -> Staged:
        """As `__call__` for a day's rows given in pieces (one file, written piece by piece, so
        the whole day is never in memory at once)."""
        rel = f"{partition_dir(table, day)}/{file}"
        staged = join(self._root, STAGING, self._token, f"{rel}.pane-{pane}")
        schema = SCHEMAS[table]
        writer = None
        sink = None
        try:
            for t in pieces:
                if not t.num_rows:
                    continue
                if writer is None:
                    sink = FileSystems.create(staged)
                    writer = pq.ParquetWriter(sink, schema, **parquet_options(table, schema))
                writer.write_table(t.cast(schema))
        finally:
            if writer is not None:
                writer.close()
                sink.close()
        return Staged(rel, pane, staged if writer is not None else None)


class _WriteStagedFn(beam.DoFn):
    """Writes one part under the run's staging folder (see `Stager`)."""

    def __init__(self, root: str, token: str, fs_options: dict | None = None):
        self._stager = Stager(root, token, fs_options)

    def setup(self):
        self._stager.setup()

    def process(self, part: Part) -> Iterable[Staged]:
        yield self._stager(part)


def _manifest_path(root: str, token: str) -> str:
    return join(root, STAGING, f"{token}{COMMIT_SUFFIX}")


# Functions called with the name of every named point a run reaches (`crash_point`), in the
# process that reaches it. None here: the crash and concurrency tests install theirs
# (tests/faults.py) to stop or kill a run at a chosen point.
POINT_HOOKS: list = []


def crash_point(name: str) -> None:
    """A named point of the run where a crash must leave a recoverable output: `after-read`,
    `before-manifest`, `after-manifest`, `after-first-move`, `after-moves`. Calls each of
    POINT_HOOKS with `name`; does nothing else."""
    for hook in POINT_HOOKS:
        hook(name)


def apply_commit(root: str, manifest: dict) -> int:
    """Carry out a commit manifest; safe to repeat after a crash at any point (roll forward).

    Moves staged files into place (a move already done is skipped), deletes the partitions and
    reject shards the run emptied, recomputes the undated quality row from the reject
    readings, writes zero-row files for empty tables, and
    finally removes the manifest and the run's staging folder.
    """
    moves = [tuple(m) for m in manifest["moves"]]
    for folder in sorted({final.rsplit("/", 1)[0] for _, final in moves}):
        ensure_dir(folder)
    todo = [(src, dst) for src, dst in moves if FileSystems.exists(src) or not FileSystems.exists(dst)]
    if todo:
        move_all(todo[:1])
        crash_point("after-first-move")
        move_all(todo[1:])
    crash_point("after-moves")
    gone = [path for path in manifest["deletes"] if FileSystems.exists(path)]
    if gone:
        FileSystems.delete(gone)
    _write_undated_quality(root)
    for name, schema in TABLE_SCHEMAS.items():
        placeholder = join(root, partition_dir(name, None), EMPTY_NAME)
        files = parquet_files(root, name)
        real = [f for f in files if not f.endswith(EMPTY_NAME)]
        if not files:
            write_file(placeholder, parquet_bytes(schema.empty_table()))
        elif real and len(real) < len(files):
            FileSystems.delete([placeholder])
    staging = join(root, STAGING, manifest["token"])
    left = [m.path for m in FileSystems.match([join(staging, "**")])[0].metadata_list] if "://" in root else []
    if left:
        FileSystems.delete(left)  # object stores: superseded panes under the prefix
    elif "://" not in root and FileSystems.exists(staging):
        FileSystems.delete([staging])  # superseded panes go with it
    FileSystems.delete([_manifest_path(root, manifest["token"])])
    parent = join(root, STAGING)
    if "://" not in parent and FileSystems.exists(parent) and not FileSystems.match([join(parent, "*")])[0].metadata_list:
        FileSystems.delete([parent])  # local only: object stores have no empty folders
    return len(moves)


def _undated(root: str, table: str) -> int:
    n = 0
    for path in parquet_files(root, table):
        t = read_table(path)
        if t is not None and t.num_rows:
            n += t.num_rows - (pc.sum(pc.equal(t.column("stage"), "window")).as_py() or 0)
    return n


def _write_undated_quality(root: str) -> None:
    """quality for event_date NULL: every reject that has no day (all but late ones); a record
    refused again (same stage, reason and raw payload, read elsewhere) is `redelivered`."""
    n = _undated(root, "rejects")
    read = max(_undated(root, REJECT_READINGS), n)
    path = join(root, partition_dir("quality", None), "part-0.parquet")
    if n:
        row = {"blocks_read": read, "rejected": n, "exact_duplicates": 0, "near_duplicates": 0,
               "redelivered": read - n, "late": 0, "events_written": 0}
        staged = path + ".new"
        write_file(staged, parquet_bytes(pa.Table.from_pylist([row], schema=QUALITY_SCHEMA)))
        move_all([(staged, path)])
    elif FileSystems.exists(path):
        FileSystems.delete([path])


_OLD_REJECTS_FILE = re.compile(r"/rejects/part-[0-9a-f]{16}\.parquet$")


def migrate(root: str) -> list[str]:
    """At start-up, with the output locked: bring a dataset written before occurrence identity
    up to date. Returns what was migrated (empty for a current or new dataset).

    - a `quality` file without `redelivered` gets the column, 0: the old code wrote a row for
      every reading, so its figures balance with no redeliveries;
    - `rejects` files named by input file (`part-<hash of the URI>`) become the reject shards:
      their rows are the first readings (`_state/rejects`), one row per refused record is kept;
    - the hidden occurrences are upgraded when a run reads them (`state.upgrade_occurrences`).
    Each file is written aside and renamed; the old rejects files go last, and merging readings
    is idempotent, so a migration killed half way is finished by the next run.
    """
    root = root.rstrip("/")
    done = []
    for path in parquet_files(root, "quality"):
        t = read_table(path)
        if t is not None and "redelivered" not in t.column_names:
            t = t.append_column("redelivered", pa.array([0] * t.num_rows, pa.int64()))
            write_file(path + ".new", parquet_bytes(t.select(QUALITY_SCHEMA.names).cast(QUALITY_SCHEMA)))
            move_all([(path + ".new", path)])
            done.append(path)
    old = [f for f in parquet_files(root, "rejects") if _OLD_REJECTS_FILE.search(f)]
    if old:
        by_shard: dict[int, list[dict]] = {}
        for path in old:
            t = read_table(path)
            for r in (t.to_pylist() if t is not None else []):
                by_shard.setdefault(reject_shard(r), []).append(r)
        for shard, rows in sorted(by_shard.items()):
            name = rejects_file_name(shard)
            prior = read_table(join(root, REJECT_READINGS, name))
            readings, rejects = merge_rejects(prior.to_pylist() if prior is not None else [], rows, set())
            for table, t in ((REJECT_READINGS, readings), ("rejects", rejects)):
                path = join(root, table, name)
                ensure_dir(join(root, table))
                write_file(path + ".new", parquet_bytes(t))
                move_all([(path + ".new", path)])
        placeholder = join(root, "rejects", EMPTY_NAME)
        if by_shard and FileSystems.exists(placeholder):
            old.append(placeholder)
        FileSystems.delete(old)
        done += old
    return done


class OutputStateError(Exception):
    """The output's staging area cannot be listed or a commit manifest cannot be read or carried
    out: the run stops before it writes (reported as one line), rather than skip an unfinished
    commit that a later run would then replay over newer files."""


def _first_line(e: Exception) -> str:
    return (getattr(e, "strerror", None) or str(e) or type(e).__name__).splitlines()[0]


def recover(root: str) -> int:
    """At start-up, with the output locked: finish every commit a killed run left half done and
    drop the staging folders of runs killed before their commit point. Returns commits finished.
    OutputStateError when the staging folder cannot be listed or a manifest not carried out."""
    root = root.rstrip("/")
    staging = join(root, STAGING)
    try:
        metas = FileSystems.match([join(staging, "*")])[0].metadata_list
    except Exception as e:  # noqa: BLE001 - any listing failure: never "nothing to recover"
        raise OutputStateError(f"cannot list {staging} to finish an interrupted commit: {_first_line(e)}") from None
    finished = 0
    for m in sorted(metas, key=lambda m: m.path):
        if m.path.endswith(COMMIT_SUFFIX):
            try:
                with FileSystems.open(m.path, compression_type="uncompressed") as f:
                    manifest = json.loads(f.read().decode("utf-8"))
                apply_commit(root, manifest)
            except Exception as e:  # noqa: BLE001
                raise OutputStateError(f"cannot finish the interrupted commit {m.path}: {_first_line(e)}") from None
            finished += 1
    # what is left under _staging belongs to runs that died before committing: discard it
    left = FileSystems.match([join(staging, "**")])[0].metadata_list if FileSystems.exists(staging) or "://" in root else []
    if "://" in root:
        if left:
            FileSystems.delete([x.path for x in left])
    elif FileSystems.exists(staging):
        FileSystems.delete([staging])
    return finished


class _CommitFn(beam.DoFn):
    """The commit point: one manifest written after every staged file, then carried out."""

    def __init__(self, root: str, token: str, inputs: list[str], fs_options: dict | None = None):
        self._root, self._token, self._inputs = root, token, inputs
        self._fs_options = fs_options or {}

    def setup(self):
        use_filesystem_options(self._fs_options)

    def process(self, staged: list[Staged]):
        root = self._root
        latest: dict[str, tuple[int, str | None]] = {}
        for rel, pane, path in staged:
            if rel not in latest or pane > latest[rel][0]:
                latest[rel] = (pane, path)
        moves = [(path, join(root, rel)) for rel, (_, path) in sorted(latest.items()) if path is not None]
        deletes = [join(root, rel) for rel, (_, path) in sorted(latest.items()) if path is None]
        manifest = {"token": self._token, "moves": moves, "deletes": deletes}
        crash_point("before-manifest")
        # the commit point: the manifest appears whole (written aside, then renamed)
        path = _manifest_path(root, self._token)
        write_file(path + ".tmp", json.dumps(manifest).encode("utf-8"))
        move_all([(path + ".tmp", path)])
        crash_point("after-manifest")
        yield apply_commit(root, manifest)


class WriteDataset(beam.PTransform):
    """Write `Part`s and reject rows; commit at the end.

    Input: a dict with `parts` (a PCollection or a tuple of them, in any windows: from
    `DedupDay` and the index update; `Part`s to write, or `Staged` records of files a step already staged with a `Stager`) and `rejects`
    (reject row dicts; late ones carry their `event_date`). Output: one element, the number of files committed.
    A day's quality row is the latest pane's figures plus the rejects counted for that day.
    Rejects are written by shard of their record key (`reject_key`), every shard every run
    (`merge_rejects`): one row per refused record, however often and wherever it was read.
    """

    def __init__(self, root: str, token: str, inputs: list[str] | None = None):
        super().__init__()
        if not root:
            raise ValueError("--output is required")
        self._root, self._token, self._inputs = root.rstrip("/"), token, list(inputs or [])

    def expand(self, pcolls):
        fs_options = filesystem_options(pcolls["rejects"].pipeline.options)
        given = pcolls["parts"] if isinstance(pcolls["parts"], (tuple, list)) else (pcolls["parts"],)
        parts = ([pc | f"Unwindow{i or ''}" >> at_end() for i, pc in enumerate(given)]
                 | "AllParts" >> beam.Flatten())
        rejects = pcolls["rejects"] | "UnwindowRejects" >> at_end()
        staged = parts | "StagedParts" >> beam.Filter(lambda p: isinstance(p, Staged))
        day_files = parts | "DataParts" >> beam.Filter(lambda p: isinstance(p, Part) and p.table != "quality")
        quality = (
            (
                parts
                | "QualityParts" >> beam.Filter(lambda p: isinstance(p, Part) and p.table == "quality")
                | "QualityByDay" >> beam.Map(lambda p: (_day_key(p.key), p)),
                rejects
                | "DatedRejects" >> beam.Filter(lambda r: r.get(PARTITION) is not None)
                | "RejectByDay" >> beam.Map(lambda r: (_day_key(r.get(PARTITION)), RejectOfDay(r["stage"] == "window"))),
            )
            | "QualityInputs" >> beam.Flatten()
            | "GroupQuality" >> beam.GroupByKey()
            | "MergeQuality" >> beam.MapTuple(merge_quality)
        )
        # every shard every run: a re-read input's old readings go even where nothing new lands
        reject_files = (
            (
                rejects | "ByShard" >> beam.Map(_count_reject),
                parts.pipeline | "RejectShards" >> beam.Create([(k, None) for k in range(REJECT_SHARDS)])
                | "ShardsAtEnd" >> at_end(),
            )
            | "RejectsAndShards" >> beam.Flatten()
            | "GroupRejects" >> beam.GroupByKey()
            | "RejectFiles" >> beam.ParDo(_RejectShardFn(self._root, self._inputs, fs_options))
        )
        written = (
            (day_files, reject_files, quality)
            | "AllFiles" >> beam.Flatten()
            | "WriteStaged" >> beam.ParDo(_WriteStagedFn(self._root, self._token, fs_options))
        )
        return (
            (written, staged)
            | "StagedAndWritten" >> beam.Flatten()
            | "AllWritten" >> beam.combiners.ToList()
            | "Commit" >> beam.ParDo(_CommitFn(self._root, self._token, self._inputs, fs_options))
        )
