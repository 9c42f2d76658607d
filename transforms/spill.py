"""Spill: the big Arrow tables cross each shuffle as files; Beam moves small references.

Why: Beam's local engine (the FnApiRunner behind Beam's DirectRunner) keeps every
PCollection that crosses a fused-stage boundary in memory, encoded: the input of each
GroupByKey and of each Flatten. Arrow tables crossing such a boundary are pickled, held whole
in the runner process, sent to the worker and unpickled there; a run over a million updates
held several copies of every block (the before-and-after figures are in BENCHMARKS.md). The
runners built for large data (Dataflow, Flink, Spark) spill their shuffles themselves; this
one does not.

With spilling on, the step before a shuffle writes each table it would emit as one Arrow IPC
file (uncompressed: writing is a copy, reading is a memory map), one record batch run per
shuffle key, and emits `(key, SpillRef)` instead of `(key, table)`. After the GroupByKey the
consumer gets the references of its key and maps their batches (`tables_of`). The runner holds
and shuffles only references; a worker holds the group it works on, nothing more.

Files live under the run's spill folder (by default `DIR/_staging/<run token>/spill` for a
local output, outside every table, removed with the staging folder when the run commits, and
by the next run's recovery if this one dies). A retried bundle writes new files under new
names; the references of a failed attempt are discarded by the runner with its outputs, so
their files are only garbage, removed with the folder. The folder must be visible to every
worker: on one machine any local folder is; across machines it must be shared storage, and
the runners' own shuffles are the better choice there (spilling is off by default on them,
see `pipelines.news_events`).

`GroupTables` is the composite every step that groups tables uses (the snapshot shuffle by
article shard, the day shuffle by event day): it keys each table's rows, carries them across
the GroupByKey as tables or as spill references (the policy the launcher chose: a folder, or
None), and hands the consumer tables either way. A step says only "group these tables by this
key", and, where it needs one, what happens to the keyed rows before they meet (the day
shuffle stamps and windows them there).
"""
from __future__ import annotations

import itertools
import mmap
import os
import shutil
import threading
import uuid
import weakref
from typing import Callable, Iterable, Iterator, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.utils.windowed_value import WindowedValue


class SpillRef(NamedTuple):
    """Rows of one shuffle key in a spill file: record batches [first, first + count); with
    `offset` >= 0, rows [offset, offset + rows) of batch `first` (count 1) only."""

    path: str
    first: int
    count: int
    rows: int
    offset: int = -1


def write_sorted(folder: str, table: pa.Table, keys: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """Write `table`'s rows sorted by `keys` (stable) as one record batch of a new IPC file
    (`write_ranges`); returns (path, the distinct keys ascending, bounds: key i's rows are
    [bounds[i], bounds[i + 1])): the rows of any run of keys are then one `SpillRef(path, 0,
    1, rows, offset)`, chosen after writing. `table` must have rows."""
    refs = write_ranges(folder, table, keys)
    return (refs[0][1].path, np.array([k for k, _ in refs]),
            np.array([r.offset for _, r in refs] + [table.num_rows], np.int64))


def write_ranges(folder: str, table: pa.Table, keys: np.ndarray,
                 batch_of: Callable[[object], object] | None = None) -> list[tuple[object, SpillRef]]:
    """Like `write_groups`, but the rows (sorted by key) go in few record batches and each
    key's reference is a row range of one: a batch per run of keys with the same
    `batch_of(key)` (None: one batch for the file). For a shuffle whose consumer takes runs of
    keys together (`tables_of` reads adjacent ranges of a batch as one slice): measured on the
    28-day 1M feed, the day shuffle wrote about 40 record batches per table and day (one per
    fingerprint shard) and its readers got days of ~1,800 chunks (BENCHMARKS.md). A batch per
    day, not per file, keeps a day's columns close together: a memory-mapped read maps the
    page cache around it (on this machine's kernel whole large folios, up to ~1 MB per read),
    and with one batch per file the ranges of a day were spread over every column of it
    (~400 MB of file pages mapped for a 36 MB day)."""
    if table.num_rows == 0:
        return []
    order = np.argsort(keys, kind="stable")
    distinct, starts = np.unique(keys[order], return_index=True)
    bounds = np.append(starts, len(keys))
    ordered = table.take(pa.array(order)).combine_chunks()
    names = [k.item() if hasattr(k, "item") else k for k in distinct]
    labels = [batch_of(k) for k in names] if batch_of else [None] * len(names)
    path = f"{folder.rstrip('/')}/{uuid.uuid4().hex}.arrow"
    sink = _open_sink(path)
    out = []
    try:
        with pa.ipc.new_file(sink, ordered.schema) as writer:
            # a batch per run of keys with the same label
            for batch, (_, run) in enumerate(itertools.groupby(range(len(names)), key=labels.__getitem__)):
                run = list(run)
                first_row = int(bounds[run[0]])
                (rows,) = ordered.slice(first_row, int(bounds[run[-1] + 1]) - first_row).to_batches()  # one chunk
                writer.write_batch(rows)
                out += [(names[i], SpillRef(path, batch, 1, int(bounds[i + 1] - bounds[i]), int(bounds[i]) - first_row))
                        for i in run]
    finally:
        sink.close()
    return out


def _is_local(path: str) -> bool:
    return "://" not in path


def write_groups(folder: str, table: pa.Table, keys: np.ndarray) -> list[tuple[object, SpillRef]]:
    """Write `table` to one new IPC file, its rows grouped by `keys` (one label per row, in
    row order within a group); returns (key, reference) per distinct key, keys ascending."""
    if table.num_rows == 0:
        return []
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    bounds = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(keys)]))
    ordered = table.take(pa.array(order)) if not np.array_equal(order, np.arange(len(order))) else table
    path = f"{folder.rstrip('/')}/{uuid.uuid4().hex}.arrow"
    sink = _open_sink(path)
    out = []
    try:
        with pa.ipc.new_file(sink, ordered.schema) as writer:
            first = 0
            for s, e in zip(starts, ends):
                batches = ordered.slice(int(s), int(e - s)).to_batches()
                for b in batches:
                    writer.write_batch(b)
                key = sorted_keys[s]
                out.append((key.item() if hasattr(key, "item") else key, SpillRef(path, first, len(batches), int(e - s))))
                first += len(batches)
    finally:
        sink.close()
    return out


def key_groups(table: pa.Table, keys: np.ndarray, folder: str | None,
               batch_of: Callable[[object], object] | None = None) -> Iterable[tuple[object, object]]:
    """(key, rows of that key) per distinct key, keys ascending: the rows as a spill reference
    when there is a spill `folder` (with `batch_of`, a row range of the batch of its run of
    keys with the same `batch_of(key)`: `write_ranges`), else as a table (what goes into a
    shuffle either way)."""
    if folder:
        if batch_of is not None:
            yield from write_ranges(folder, table, keys, batch_of)
        else:
            yield from write_groups(folder, table, keys)
        return
    for k in np.unique(keys):
        yield k.item(), table.filter(pa.array(keys == k))


def _open_sink(path: str):
    if _is_local(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return pa.OSFile(path, "wb")
    return pa.PythonFile(FileSystems.create(path), mode="w")


# The memory maps of the local spill files this process reads: map -> (first, last address).
# Touched pages of a map count in the process's resident set until it is unmapped, and this
# machine's kernel (6.18) maps the page cache by whole large folios: touching a few scattered
# rows of a big file counts most of the file (measured, BENCHMARKS.md). `release` drops the
# pages of the maps holding some arrays once they are copied out; a later read faults them in
# again from the page cache (the maps are read-only), so releasing is never wrong, only slower.
_MAPS: "weakref.WeakKeyDictionary[mmap.mmap, tuple[int, int]]" = weakref.WeakKeyDictionary()
_MAPS_LOCK = threading.Lock()  # an SDK worker runs bundles in several threads
_CAN_RELEASE = hasattr(mmap.mmap, "madvise") and hasattr(mmap, "MADV_DONTNEED")


def _reader(path: str) -> tuple[pa.ipc.RecordBatchFileReader, mmap.mmap | None]:
    """The file's reader, and its map for a local file (None: read into memory)."""
    if _is_local(path):
        with open(path, "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        buf = pa.py_buffer(m)  # zero-copy, as pa.memory_map; the map is freed with its last buffer
        with _MAPS_LOCK:
            _MAPS[m] = (buf.address, buf.address + buf.size)
        return pa.ipc.open_file(pa.BufferReader(buf)), m
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return pa.ipc.open_file(pa.py_buffer(f.read())), None


def _addresses(obj, out: list) -> list:
    if isinstance(obj, (pa.Table, pa.RecordBatch)):
        for col in obj.columns:
            _addresses(col, out)
    elif isinstance(obj, pa.ChunkedArray):
        for chunk in obj.chunks:
            _addresses(chunk, out)
    elif isinstance(obj, pa.DictionaryArray):
        _addresses(obj.indices, out)
        _addresses(obj.dictionary, out)
    elif isinstance(obj, pa.Array):
        out.extend(b.address for b in obj.buffers() if b is not None and b.size)
    return out


def _release_map(m: mmap.mmap) -> int:
    try:
        m.madvise(mmap.MADV_DONTNEED)
        return 1
    except (ValueError, OSError):  # closed meanwhile
        return 0


def release(*objs) -> int:
    """Drop the resident pages of the spill-file maps that hold any buffer of `objs` (tables,
    record batches, arrays) from this process (`madvise(MADV_DONTNEED)`; the data stays
    readable). For a step that has copied what it needs out of mapped rows it touched here and
    there. Returns the number of maps released (0 where the platform cannot)."""
    if not _CAN_RELEASE or not _MAPS:
        return 0
    addresses = [a for o in objs for a in _addresses(o, [])]
    done = 0
    with _MAPS_LOCK:
        maps = list(_MAPS.items())
    for m, (lo, hi) in maps:
        if any(lo <= a < hi for a in addresses):
            done += _release_map(m)
    return done


def _libc_trim():
    try:
        import ctypes
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _libc_trim()


def give_back() -> None:
    """Return the memory this process freed to the system: Arrow's pool (jemalloc keeps freed
    pages for reuse) and glibc's heap (numpy's big arrays come from it once its mmap threshold
    has grown). For the end of a step that allocated a lot: measured on a one-day 1M-update
    feed, a worker's resident set between steps crept up by ~300 MB of freed memory, which
    the next step's peak came on top of (BENCHMARKS.md)."""
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def heap_copy(table: pa.Table) -> pa.Table:
    """`table` with every column copied into one chunk of this process's memory (no buffer
    left in a spill-file map)."""
    cols = [pa.concat_arrays(c.chunks) if c.num_chunks else pa.array([], c.type) for c in table.columns]
    return pa.Table.from_arrays(cols, schema=table.schema)


def tables_of(items: Iterable, copy: bool = False) -> list[pa.Table]:
    """Tables from a grouped iterable holding tables, record batches and/or spill references
    (one table per spill file, so files of different schemas stay apart). `copy`: each spill
    file's rows copied into one chunk per column of this process's memory and the file's map
    released at once (`release`): for a group reading row ranges of many files, whose mapped
    pages would otherwise count many times the rows read."""
    return list(iter_tables(items, copy))


def iter_tables(items: Iterable, copy: bool = False) -> Iterator[pa.Table]:
    """`tables_of`, one table at a time: a spill file is opened when its table is next and
    unmapped (its descriptor closed) once the consumer lets go of the table, so a group of
    thousands of pieces holds one file open at a time."""
    refs = []
    for x in items:
        if isinstance(x, SpillRef):
            refs.append(x)
        elif isinstance(x, pa.RecordBatch):
            yield pa.Table.from_batches([x])
        else:
            yield x
    by_file: dict[str, list[SpillRef]] = {}
    for r in refs:
        by_file.setdefault(r.path, []).append(r)
    for path, rs in by_file.items():
        reader, m = _reader(path)
        batches = [reader.get_batch(r.first).slice(r.offset, r.rows) if r.offset >= 0 else reader.get_batch(i)
                   for r in _adjacent_joined(rs) for i in range(r.first, r.first + r.count)]
        table = pa.Table.from_batches(batches, schema=reader.schema)
        del reader, batches
        if copy:
            mapped, table = table, heap_copy(table)
            if m is not None and _CAN_RELEASE:  # its own map: no search by address (`release`)
                _release_map(m)
            del mapped
        del m
        yield table
        del table


def _adjacent_joined(refs: list[SpillRef]) -> list[SpillRef]:
    """Row-range references one after another in the same batch -> one range (same rows,
    same order, fewer chunks)."""
    out: list[SpillRef] = []
    for r in refs:
        last = out[-1] if out else None
        if (last is not None and r.offset >= 0 and last.offset >= 0 and r.first == last.first
                and r.offset == last.offset + last.rows):
            out[-1] = last._replace(rows=last.rows + r.rows)
        else:
            out.append(r)
    return out


def _keyed(batch, keys: Callable[[pa.Table], np.ndarray], folder: str | None, batch_of=None):
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    return key_groups(table, keys(table), folder, batch_of)


class _BundledKeyFn(beam.DoFn):
    """`_keyed` with `bundle`, over all the tables of a Beam bundle at once: each table's rows
    are written (or split) as they come, and its `(key, rows)` pairs (references: small) wait
    for the end of the bundle, where `bundle` makes the elements of all of them together (for
    the day shuffle: one element per day and bundle instead of per day and table, each of
    which the local runner's grouping takes through Beam's trigger machinery in Python).
    Pairs are kept apart per window and leave in it, with the latest timestamp of their
    tables."""

    def __init__(self, keys, folder, bundle, batch_of):
        self._keys, self._folder, self._bundle, self._batch_of = keys, folder, bundle, batch_of

    def start_bundle(self):
        self._pending: dict = {}

    def process(self, batch, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        entry = self._pending.setdefault(window, [timestamp, []])
        entry[0] = max(entry[0], timestamp)
        entry[1].extend(_keyed(batch, self._keys, self._folder, self._batch_of))
        return []

    def finish_bundle(self):
        pending, self._pending = self._pending, {}
        for window, (timestamp, pairs) in pending.items():
            for value in self._bundle(pairs):
                yield WindowedValue(value, timestamp, [window])


class GroupTables(beam.PTransform):
    """Arrow tables (one PCollection, or a tuple of them) -> `(key, [tables])`, one element per
    key and window: every row of every input with that key.

    `keys(table)` labels each row of a table (a numpy array, one key per row). With a `spill`
    folder the rows cross the GroupByKey as Arrow IPC files under it and only references go
    through the runner; with None, the tables themselves do (the runner's own shuffle, the
    choice for Flink, Spark and Dataflow). Several inputs are keyed each on its own before they
    meet, so no Flatten holds whole tables. The list holds one table per input table or spill
    file; rows of one key keep their order within each. Windows are the input's: grouping is
    per key and window, as GroupByKey's.

    `bundle`, when given, turns the list of `(key, rows)` pairs of all the input tables of a
    Beam bundle (`_BundledKeyFn`) into the elements that are grouped instead (for example one
    element per day holding the day's shards: fewer elements through the runner's shuffle);
    the groups are then `(key, [values])` of those elements, and `present` elements must have
    their shape.

    `between`, when given, is a PTransform applied to the keyed `(key, rows)` elements before
    they are grouped (rows: a table or a spill reference; `tables_of` reads either). It returns
    a PCollection, or a dict whose "main" PCollection goes on to the grouping and whose other
    PCollections are returned beside the groups: then the result is `{"groups": ..., **others}`.
    `present`, when given, is a PCollection of `(key, table)` elements, already in their
    windows, that join the grouping as they are (an empty table makes a key's group exist).
    `references=True` gives each key's items as grouped (spill references and/or tables, for
    `tables_of` later) instead of tables: for a step that regroups them before reading.
    `batch_of`, when given, writes each input table's spill file as one batch per run of keys
    with the same `batch_of(key)`, a key's rows being a row range of its batch
    (`write_ranges`): for a step that reads runs of adjacent keys together (their ranges
    become one slice).

    Example: `(blocks, prior) | GroupTables(lambda t: shard(t["article_id"]), spill)` gives
    `(shard, [tables])`, each shard's rows of both inputs together.
    """

    def __init__(self, keys: Callable[[pa.Table], np.ndarray], spill: str | None = None,
                 between: beam.PTransform | None = None, present=None, references: bool = False,
                 bundle: Callable[[list], Iterable] | None = None,
                 batch_of: Callable[[object], object] | None = None):
        super().__init__()
        self._keys, self._spill, self._between, self._present = keys, spill, between, present
        self._references, self._bundle, self._batch_of = references, bundle, batch_of

    def _key_step(self) -> beam.PTransform:
        """Tables -> their `(key, rows)` pairs, or with `bundle` the bundled elements."""
        if self._bundle is not None:
            return beam.ParDo(_BundledKeyFn(self._keys, self._spill, self._bundle, self._batch_of))
        return beam.FlatMap(_keyed, self._keys, self._spill, self._batch_of)

    def expand(self, inputs):
        inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
        keyed = [pcoll | f"Key{i or ''}" >> self._key_step() for i, pcoll in enumerate(inputs)]
        rows = keyed | "Meet" >> beam.Flatten() if len(keyed) > 1 else keyed[0]
        beside = None
        if self._between is not None:
            out = rows | "Between" >> self._between
            if isinstance(out, dict):
                beside = {k: v for k, v in out.items() if k != "main"}
                out = out["main"]
            rows = out
        if self._present is not None:
            rows = (rows, self._present) | "WithPresent" >> beam.Flatten()
        groups = rows | "Group" >> beam.GroupByKey()
        if not self._references:
            groups = groups | "Tables" >> beam.MapTuple(lambda key, items: (key, tables_of(items)))
        return groups if beside is None else {"groups": groups, **beside}


def remove(folder: str) -> None:
    """Delete a spill folder and everything in it (no error when it is gone)."""
    if not folder:
        return
    if _is_local(folder):
        shutil.rmtree(folder, ignore_errors=True)
        return
    try:
        found = FileSystems.match([folder.rstrip("/") + "/**"])[0].metadata_list
        if found:
            FileSystems.delete([m.path for m in found])
    except Exception:  # pragma: no cover - best effort on object stores
        pass
