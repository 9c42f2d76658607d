"""DedupDaySpread: the day's exact and near-duplicate search spread by key (no group holds a day).

Input: `WindowByDay(..., shards=S)`'s groups, per day window: without spill
`("YYYY-MM-DD/NNNN", [tables])`, the rows of one fingerprint shard of one day (kept rows and
`is_dup` repeats, from `DedupSnapshots`); with spill `("YYYY-MM-DD", [[(shard, reference)]])`,
the day's references, regrouped here (`coalesce`). Output: what `transforms.dedup.DedupDay` gives (a `Part` or `Staged` record
per table of each day; index rows on `index` in incremental runs).

Rules (the same as `transforms.dedup.dedup_day`, the whole day in one call): among the kept
rows of the day, the same fingerprint from different articles is an exact duplicate of the
first in keep priority (`PRIORITY`); then exact survivors are near duplicates when their
score (`transforms.neardup`) reaches the threshold; clusters are the connected components of
those pairs, kept row = the component's first in priority; every other occurrence becomes a
`duplicates` row pointing at its final kept row, `method` `exact` or `near`, `similarity` =
its exact survivor's score against the cluster's kept row; repeats follow their kept row.

How a day is spread (the way MinHash dedup runs on Spark; every arrow is a shuffle):

    rows ──(day, fingerprint shard)──► Exact: survivors; each survivor's sketch (set size,
        low signature bytes, band hashes, shingle set) computed once
      band rows ──(day, bucket shard)──► Buckets: candidates (next neighbours in priority
        order), filtered by set sizes and signature agreement, verified (exact score) in
        rounds that skip pairs already connected: a star per local cluster (survivor
        numbers and counts) and the local roots' priority columns; no ids, texts or sets
      stars ──(day)──► Clusters: connected components, kept row per component
      set requests ──(day, kept row's shard)──► RepSets: the kept rows' ids and shingle sets
      assignments, kept rows' sets, rows ──(day, fingerprint shard)──► Build: each member
        scored against its kept row; events/duplicates pieces
      pieces ──(day)──► the day's files, written piece by piece; quality summed

A band row is 13 bytes (band, band hash, node index); the survivor it stands for (number,
priority, counts, signature bytes, shingle set) is a dictionary value written once per
fingerprint-shard group, so the bucket groups read only the survivors of buckets with two or
more members (through a runner's own shuffle, without spill files, each piece carries the
survivors it refers to). A survivor is a number from the bucket groups to Build (UID_BITS:
its fingerprint shard and its index there), its id (a string) travelling only with its set
when it is a kept row. The day-keyed groups hold references to pieces; the cluster group
reads the stars (20 bytes per clustered survivor and local cluster) piece by piece into a
label per survivor of the day (numbered densely by shard, from each Exact group's survivor
count) and the local roots' priority columns; bucket groups are
`bucket_shard_count(survivors, shards)` a day: one per 2,000 survivors of the day.
The steps reading scattered rows of memory-mapped spill files copy what they need and
release the maps (`transforms.spill.release`), and each group gives its freed memory back
(`give_back`): on this machine both counted in a worker's resident set (BENCHMARKS.md).

A day that is one group anyway (spilled runs coalesce a day of at most ROWS_PER_SHARD rows
into one, `coalesce`) is deduplicated there in one `dedup_day` call, which gives the same
rows with the same keyed rule, and skips the bucket, cluster and join shuffles: a run of many
small days is not slowed by them.

This is the day dedup of batch runs. A streaming window keeps `DedupDay` (the day whole): a
later pane must replace the day's rows, which a chain of shuffles cannot promise pane by
pane. (The live stream commits each pane with a batch run, so its days are spread too.)

Example: "No casualties were reported." from article A at 08:00 and from B at 09:00, and
"No casualties were reported, police said." from C at 10:00, on one day: one event (A,
mention_count 3), duplicates B (exact, 1.0) and C (near, its score against A's text),
whichever shards the three rows land in.

Guarantee: the rows of `dedup_day` over the whole day (tests/test_dedup_spread.py).
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterable, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.models import DUPLICATE_SCHEMA, EVENT_SCHEMA, QUALITY_SCHEMA
from transforms.common import concat, concat_as_first, fingerprint_shards
from transforms.dedup import PRIORITY, NearDetector, day_counters, dedup_day, prior_rows
from transforms.neardup import (MAX_BUCKET_NEIGHBOURS, BucketRuns, components, edges_in_rounds, in_runs,
                                round_candidates, set_scores, sets_of, sketch_texts, verify_pairs)
from transforms.parts import Part
from transforms.spill import (SpillRef, give_back, heap_copy, iter_tables, key_groups, release, tables_of, write_groups,
                              write_sorted)
from transforms.state import OCCURRENCES, index_rows
from transforms.windowing import day_of

_GOLD = np.uint64(0x9E3779B97F4A7C15)
# LSH bucket groups of a day: a survivor has a band row in up to 32 of them (one per band),
# so with B groups a group reads ~32/B of the day's survivors. B follows the day's survivors
# (one group per SURVIVORS_PER_BUCKET_GROUP, at most BUCKET_SHARDS_PER_SHARD per fingerprint
# shard): a small day is one group, not hundreds of near-empty ones (every group reads a
# piece of each fingerprint shard). Band rows are written sorted by FINE_BUCKETS fine shards,
# so the B groups of any day are row ranges of runs of fine shards (`coarse_shards`): the
# day's size is known after they are written, and no row is written twice.
SURVIVORS_PER_BUCKET_GROUP = 2000
BUCKET_SHARDS_PER_SHARD = 16
FINE_BUCKETS = 4096


def bucket_shard_count(survivors: int, shards: int) -> int:
    """The LSH bucket groups of a day with `survivors` exact survivors over `shards`
    fingerprint shards."""
    return max(1, min(-(-survivors // SURVIVORS_PER_BUCKET_GROUP), shards * BUCKET_SHARDS_PER_SHARD, FINE_BUCKETS))


def coarse_shards(fine: np.ndarray, groups: int) -> np.ndarray:
    """The bucket group (of `groups`) of each fine shard: runs of consecutive fine shards."""
    return np.asarray(fine, np.int64) * groups // FINE_BUCKETS


# A survivor's number within a day: its fingerprint shard in the high 32 bits, its index among
# the shard's survivors (`ExactGroups.survivors`, the same in Exact and Build: the same rows
# sorted the same way) in the low 32. The chain from the bucket groups to Build carries these
# numbers; survivor ids (strings) travel only with the kept rows' sets.
UID_BITS = 32
NODE_FIELDS = ["uid", "count"] + [c for c, _ in PRIORITY] + ["sig", "set", "bands"]
ASSIGN_SCHEMA = pa.schema([("uid", pa.int64()), ("rep_sid", pa.string()), ("similarity", pa.float64()),
                           ("extra", pa.int64())])
SETS_SCHEMA = pa.schema([("uid", pa.int64()), ("sid", pa.string()), ("set", pa.large_binary())])
# what the day's cluster group gets: per clustered survivor in a local cluster a star row
# (its number, rows it stands for, its local root's row), and per local root a root row (its
# number and priority columns); no ids, texts or shingle sets
STAR_SIDE = ["uid", "count"]


# ----------------------------------------------------------------------------- plain functions

@dataclass
class ExactGroups:
    """Exact duplicates among rows that hold every row of their fingerprints (a day, or a
    fingerprint shard of it), redeliveries left out: `kept` sorted by priority, `rep[i]` =
    index in `kept` of the first row with kept row i's fingerprint, `repeat_of[j]` = index in
    `kept` of repeat j's kept row; `read` rows in, `redelivered` of them."""

    kept: pa.Table
    repeats: pa.Table
    rep: np.ndarray
    repeat_of: np.ndarray
    read: int
    redelivered: int

    @property
    def survivors(self) -> np.ndarray:
        return np.flatnonzero(self.rep == np.arange(len(self.rep)))

    def counts(self) -> np.ndarray:
        """Rows (kept and repeats) merged into each kept row's survivor, per kept row (zero
        for rows that are not survivors)."""
        n = len(self.rep)
        c = np.bincount(self.rep, minlength=n).astype(np.int64)
        if len(self.repeat_of):
            c += np.bincount(self.rep[self.repeat_of], minlength=n)
        return c


def exact_groups(table: pa.Table) -> ExactGroups:
    read = table.num_rows
    redelivered = 0
    if "redelivered" in table.column_names:  # a redelivery becomes no row, only a count
        again = table.column("redelivered")
        redelivered = pc.sum(again).as_py() or 0
        if redelivered:
            table = table.filter(pc.invert(again))
    is_dup = table.column("is_dup")
    kept = table.filter(pc.invert(is_dup))
    repeats = table.filter(is_dup)
    kept = kept.take(pc.sort_indices(kept, PRIORITY))
    n = kept.num_rows
    if n:
        codes = pc.dictionary_encode(kept.column("fingerprint").combine_chunks()).indices.to_numpy()
        _, first = np.unique(codes, return_index=True)  # first index of each code: priority first
        rep = first[codes].astype(np.int64)
    else:
        rep = np.zeros(0, np.int64)
    if repeats.num_rows:
        at = pc.index_in(repeats.column("event_id"), value_set=kept.column("event_id").combine_chunks())
        if at.null_count:
            raise ValueError("a repeated occurrence arrived without its kept row")
        repeat_of = at.to_numpy().astype(np.int64)
    else:
        repeat_of = np.zeros(0, np.int64)
    return ExactGroups(kept, repeats, rep, repeat_of, read, redelivered)


def band_rows(g: ExactGroups, shard: int, near: NearDetector) -> tuple[pa.Table, pa.Table]:
    """(bands, sets). `bands`: one row per band of each survivor with shingles: `band` (int8),
    `hash` (the band hash, uint64) and `node`, a dictionary-encoded struct of the survivor
    (NODE_FIELDS: its number (UID_BITS), the rows it stands for, its priority columns,
    low signature bytes, shingle set and band hashes) that the band rows share: a survivor is
    stored once, however many bands. `sets`: `uid`, `sid` and `set` of those survivors
    (SETS_SCHEMA), for scoring the members of a cluster against its kept row where their rows
    are (`member_scores`)."""
    s = g.survivors
    k = g.kept.take(pa.array(s))
    sk = sketch_texts(k.column("text"), shingle=near.shingle)
    ok = np.flatnonzero(sk.size > 0)
    n_bands = sk.bands.shape[1]
    sig = pa.FixedSizeBinaryArray.from_buffers(pa.binary(sk.sig8.shape[1]), len(s),
                                               [None, pa.py_buffer(np.ascontiguousarray(sk.sig8))])
    all_bands = pa.FixedSizeBinaryArray.from_buffers(pa.binary(8 * n_bands), len(s),
                                                     [None, pa.py_buffer(np.ascontiguousarray(sk.bands))])
    if len(s) >= 1 << UID_BITS or not 0 <= shard < 1 << (63 - UID_BITS):
        raise ValueError(f"too many survivors ({len(s)}) or shards ({shard}) for survivor numbers")
    uid = pa.array((np.int64(shard) << UID_BITS) + np.arange(len(s), dtype=np.int64))
    node = pa.StructArray.from_arrays(
        [uid, pa.array(g.counts()[s]), *[k.column(c).combine_chunks() for c, _ in PRIORITY], sig, sk.sets, all_bands],
        names=NODE_FIELDS)
    idx = pa.array(np.repeat(ok, n_bands).astype(np.int32))
    bands = pa.table({"band": pa.array(np.tile(np.arange(n_bands, dtype=np.int8), len(ok))),
                      "hash": pa.array(sk.bands[ok].reshape(-1)),
                      "node": pa.DictionaryArray.from_arrays(idx, node)})
    at = pa.array(ok)
    sets = pa.table([uid.take(at), k.column("event_id").combine_chunks().take(at), sk.sets.take(at)],
                    schema=SETS_SCHEMA)
    return bands, sets


def compact_nodes(piece: pa.Table) -> pa.Table:
    """Band rows whose node dictionary holds only the survivors they refer to (a slice of
    `band_rows` keeps the whole dictionary: pickled through a runner's shuffle, every piece
    would carry every survivor of its fingerprint shard)."""
    node = piece.column("node").combine_chunks()
    idx = node.indices.to_numpy()
    used, at = np.unique(idx, return_inverse=True)
    small = pa.DictionaryArray.from_arrays(pa.array(at.astype(np.int32)), node.dictionary.take(pa.array(used)))
    return piece.set_column(piece.schema.get_field_index("node"), "node", small)


def band_shards(t: pa.Table, shards: int) -> np.ndarray:
    """The bucket shard of each band row: all rows of a (band, band hash) bucket share it."""
    h = t.column("hash").to_numpy() ^ (t.column("band").to_numpy().astype(np.uint64) * _GOLD)
    return (h % np.uint64(shards)).astype(np.int64)


def _values(arr: pa.Array, dtype) -> np.ndarray:
    """The values of a primitive Arrow array without nulls, as numpy (zero-copy)."""
    return np.frombuffer(arr.buffers()[1], dtype, len(arr), arr.offset * np.dtype(dtype).itemsize)


def _sources(tables: list[pa.Table]):
    """Band rows of several pieces -> (band, hash, node number) and the distinct node
    dictionaries (a spill file's pieces share one: it is decoded once)."""
    dicts, base, seen = [], [], {}
    bands, hashes, nodes = [], [], []
    total = 0
    for t in tables:
        for b in t.to_batches():
            if not b.num_rows:
                continue
            col = b.column("node")
            d = col.dictionary
            key = (d.field("uid").buffers()[1].address, len(d))
            if key not in seen:
                seen[key] = len(dicts)
                dicts.append(d)
                base.append(total)
                total += len(d)
            # np.frombuffer, not Array.to_numpy: pyarrow 16's to_numpy tries `import pandas` on
            # every call, a search of sys.path when pandas is not installed (half the time of
            # a run of many small bucket groups, py-spy)
            bands.append(_values(b.column("band"), np.int8))
            hashes.append(_values(b.column("hash"), np.uint64))
            nodes.append(_values(col.indices, np.int32).astype(np.int64) + base[seen[key]])
    if not bands:
        return None
    return np.concatenate(bands), np.concatenate(hashes), np.concatenate(nodes), dicts, np.array(base + [total])


def _column(tables: list[pa.Table], name: str, dtype) -> np.ndarray:
    """Column `name` (no nulls) of several tables as one numpy array."""
    parts = [_values(c, dtype) for t in tables for c in t.column(name).chunks if len(c)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


class _Nodes:
    """Some nodes (numbers ascending) of several node dictionaries: their NODE_FIELDS copied
    out dictionary by dictionary, each dictionary's spill-file map released right after
    (`release`: a bucket group reads a few scattered survivors of every fingerprint group's
    dictionary, and mapped, each dictionary's touched pages counted nearly whole: 1.2 GB in
    one bucket group of a 1M-update day, BENCHMARKS.md). One array per field, rows in
    node-number order."""

    def __init__(self, dicts: list, base: np.ndarray, wanted: np.ndarray):
        n = len(wanted)
        # fixed-width fields without nulls are gathered straight into one array each (numpy),
        # the others taken per dictionary and joined: at 1M, joining the pieces was a third of
        # this step (BENCHMARKS.md, eighth session)
        fixed = {name: _width(dicts, name) for name in NODE_FIELDS}
        out = {name: np.empty(n, np.dtype((np.void, w))) for name, w in fixed.items() if w}
        parts: dict[str, list] = {name: [] for name in NODE_FIELDS if not fixed[name]}
        for i, d in enumerate(dicts):
            lo, hi = np.searchsorted(wanted, [base[i], base[i + 1]])
            if hi > lo:
                rows = wanted[lo:hi] - base[i]
                idx = pa.array(rows)
                for name in NODE_FIELDS:
                    col = d.field(name)
                    if fixed[name]:
                        np.take(_values(col, out[name].dtype), rows, out=out[name][lo:hi])
                    else:
                        parts[name].append(col.take(idx))
            release(d)
        self._n = n
        self._fields = {name: (arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)) if arrays else None
                        for name, arrays in parts.items()}
        for name, values in out.items():
            self._fields[name] = pa.Array.from_buffers(dicts[0].field(name).type, n, [None, pa.py_buffer(values)])

    def __len__(self) -> int:
        return self._n

    def field(self, name: str) -> pa.Array:
        return self._fields[name]

    def table(self, names: list[str], rows: np.ndarray) -> pa.Table:
        at = pa.array(rows)
        return pa.table({n: self.field(n).take(at) for n in names})


def _width(dicts: list, name: str) -> int:
    """Bytes per value of field `name` when it is fixed-width (not bits) without nulls in
    every dictionary, else 0."""
    t = dicts[0].field(name).type
    if pa.types.is_fixed_size_binary(t):
        w = t.byte_width
    elif pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_floating(t):
        w = t.bit_width // 8
    else:
        return 0
    return w if all(d.field(name).null_count == 0 and d.field(name).type == t for d in dicts) else 0


def _order_codes(arr: pa.Array) -> np.ndarray:
    """Per value, its rank among the distinct values in Arrow's sort order (nulls last)."""
    enc = pc.dictionary_encode(arr)
    rank = np.empty(len(enc.dictionary), np.int64)
    rank[pc.array_sort_indices(enc.dictionary).to_numpy()] = np.arange(len(enc.dictionary))
    idx = enc.indices
    codes = rank[pc.fill_null(idx, 0).to_numpy()]
    if idx.null_count:
        codes[np.asarray(idx.is_null())] = len(rank)
    return codes


def priority_order(field) -> np.ndarray:
    """Row order by PRIORITY (as `pc.sort_indices(t, PRIORITY)`) of the columns `field(name)`,
    with numpy: strings become their ranks among their distinct values."""
    keys = []
    for name, _ in PRIORITY:
        col = field(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            keys.append(_order_codes(col))
        else:
            v = pc.cast(col, pa.int64()) if pa.types.is_timestamp(col.type) else col
            codes = pc.fill_null(v, 0).to_numpy().astype(np.int64)
            if col.null_count:  # nulls last
                big = np.iinfo(np.int64).max
                codes = np.where(np.asarray(col.is_null()), big, codes)
            keys.append(codes)
    return np.lexsort(keys[::-1])


def _fixed(col, dtype) -> np.ndarray:
    """A fixed_size_binary column as a (rows, width) numpy array of `dtype`."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    width = arr.type.byte_width
    raw = np.frombuffer(arr.buffers()[1], np.uint8, len(arr) * width, arr.offset * width)
    return raw.view(dtype).reshape(len(arr), -1)


# Set (any value) in a run's environment, each bucket group writes one `bucket-group {json}`
# line to stderr: where its time went (`benchmarks/oneday.py --bucket-stats` sums them).
STATS_ENV = "NEWSEVENTS_BUCKET_STATS"


class _Clock:
    """Seconds and minor page faults (this thread's) per phase of one bucket group, and its
    counts, written as one line when STATS_ENV is set; otherwise it does nothing."""

    def __init__(self):
        self.on = bool(os.environ.get(STATS_ENV))
        self.fields: dict[str, float] = {}
        if self.on:
            self.t, self.f = time.perf_counter(), self._faults()

    @staticmethod
    def _faults() -> int:
        return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt

    def mark(self, phase: str, **counts) -> None:
        if self.on:
            t, f = time.perf_counter(), self._faults()
            self.fields.update({f"{phase}_s": round(t - self.t, 5), f"{phase}_faults": f - self.f}, **counts)
            self.t, self.f = t, f

    def done(self) -> None:
        if self.on:
            sys.stderr.write(f"bucket-group {json.dumps(self.fields)}\n")


def bucket_edges(tables: list[pa.Table], near: NearDetector,
                 neighbours: int = MAX_BUCKET_NEIGHBOURS, clock: _Clock | None = None) -> tuple[pa.Table, pa.Table] | None:
    """Band rows of some buckets (whole buckets) -> the survivors joined by verified pairs
    among them: each member paired with its next `neighbours` in priority order in the bucket
    of the pair's first shared band, filtered and scored as `near_duplicates` does (in
    `DISTANCE_ROUNDS`, skipping pairs already connected). Returns (stars, roots): one star row
    per survivor in a local cluster (STAR_SIDE columns) with `root`, the row of its local
    cluster's first survivor (a star per cluster keeps the clusters' connectivity with fewer
    pairs than the edges), and one root row per local root (`uid` and the PRIORITY columns:
    the day's kept row is the first of its cluster's local roots, `cluster_assignments`).
    Only survivors of buckets with two or more members are decoded. `clock`: phase timings
    (`_Clock`)."""
    clock = clock or _Clock()
    src = _sources(tables)
    if src is None:
        return None
    band, hsh, node, dicts, base = src
    clock.mark("bands", band_rows=len(band), dictionaries=len(dicts), survivors_in_dictionaries=int(base[-1]))
    order = np.lexsort((hsh, band))
    sb, sh = band[order], hsh[order]
    same = (sb[1:] == sb[:-1]) & (sh[1:] == sh[:-1])
    if not same.any():
        return None
    sel = order[in_runs(same)]
    band, hsh, node = band[sel], hsh[sel], node[sel]
    wanted, node_at = np.unique(node, return_inverse=True)
    clock.mark("buckets", decoded=len(wanted))
    nodes = _Nodes(dicts, base, wanted)
    clock.mark("nodes")
    m = len(wanted)
    rank = np.empty(m, np.int64)
    rank[priority_order(nodes.field)] = np.arange(m)
    r = rank[node_at]
    order = np.lexsort((r, hsh, band))
    b2, h2 = band[order], hsh[order]
    label = np.zeros(len(order), np.int64)
    label[1:] = np.cumsum((b2[1:] != b2[:-1]) | (h2[1:] != h2[:-1]))
    runs = BucketRuns.of(label, node_at[order], b2)  # node rows; in a bucket, in priority order
    clock.mark("rank")
    if runs is None:
        return None
    bt = _fixed(nodes.field("bands"), np.uint64)
    sig8 = _fixed(nodes.field("sig"), np.uint8)
    decoded = {}  # the shingle sets, decoded at the first verification

    def verify(a, b):
        if "sets" not in decoded:
            decoded["sets"] = sets_of(nodes.field("set"))
        return verify_pairs(decoded["sets"], sig8, a, b, a, b, near.threshold, sig8.shape[1])[0]

    a, b = edges_in_rounds(m, neighbours, lambda rnd, comp: round_candidates([runs], bt, rnd, comp), verify)
    clock.mark("rounds", edges=len(a))
    if not len(a):
        return None
    by_rank = np.argsort(rank)
    root = by_rank[components(m, rank[a], rank[b])[rank]]  # node row of its local first
    involved = np.flatnonzero(root != np.arange(m))
    involved = np.union1d(involved, root[involved])
    local_root = np.searchsorted(involved, root[involved])
    stars = nodes.table(STAR_SIDE, involved).append_column("root", pa.array(local_root.astype(np.int32)))
    roots = nodes.table(["uid"] + [c for c, _ in PRIORITY], np.unique(root[involved]))
    clock.mark("stars", stars=len(involved))
    return stars, roots


# Edges the cluster group gathers before folding them into its labels (`cluster_assignments`):
# its memory is the day's survivors (a few numpy arrays) plus this many edges, not the stars.
FOLD_EDGES = 4_000_000


def _fold(label: np.ndarray, a: list, b: list) -> np.ndarray:
    """Labels (each node's component: its smallest node) joined by the edges a[k]-b[k]."""
    if not a:
        return label
    i, j = label[np.concatenate(a)], label[np.concatenate(b)]
    keep = i != j
    if not keep.any():
        return label
    return components(len(label), i[keep], j[keep])[label]


def cluster_assignments(pieces: Iterable[pa.Table], survivors: dict[int, int]) -> pa.Table:
    """The local clusters of one day (`bucket_edges`' star and root tables, in any order:
    survivor numbers, counts, local roots' priority columns; no ids, texts or sets) and the
    day's survivors per fingerprint shard -> one assignment per survivor in a cluster: a
    member gets its kept row (`rep`, the number of the day's cluster's first in priority;
    `rep_shard` its fingerprint shard); a kept row gets `extra`, the rows its members stand
    for (`rep` -1). Column `shard`: the survivor's fingerprint shard. Similarities are scored
    later where the rows are (`rep_requests`, `rep_sets`, `member_scores`). The day's
    cluster's first is a local root in every local cluster it is in (it comes first in any
    part of its cluster), so only local roots need priorities.

    Memory: survivors are dense indices (shard offset + index), the stars are read piece by
    piece (each piece's spill-file map released once read) and folded into a label per
    survivor every FOLD_EDGES edges: a few arrays over the day's survivors, not its star
    rows (at 1M updates on one day: 7.4M star rows for 1.5M clustered survivors). `pieces`
    is read once, one table at a time (`iter_tables`: one spill file open at a time)."""
    top = max(survivors, default=-1) + 1
    size = np.zeros(top, np.int64)
    for shard, count in survivors.items():
        size[shard] = count
    base = np.zeros(top + 1, np.int64)
    np.cumsum(size, out=base[1:])
    n = int(base[-1])

    def dense(uid: np.ndarray) -> np.ndarray:
        shard, idx = uid >> UID_BITS, uid & np.int64((1 << UID_BITS) - 1)
        if len(uid) and (shard.max() >= top or (idx >= size[shard]).any()):
            raise ValueError("a star names a survivor its shard did not count")
        return base[shard] + idx

    label = np.arange(n, dtype=np.int64)
    count = np.zeros(n, np.int64)
    seen = np.zeros(n, bool)
    pending_a: list = []
    pending_b: list = []
    pending = 0
    roots = []
    for t in pieces:
        if not t.num_rows:
            continue
        if "root" not in t.column_names:  # a local roots' table: small, kept
            roots.append(heap_copy(t))
            release(t)
            continue
        u = dense(_column([t], "uid", np.int64))
        r = u[_column([t], "root", np.int32)]
        count[u] = _column([t], "count", np.int64)  # the same in every star of a survivor
        seen[u] = True
        edge = u != r  # a local root's own row is no edge
        pending_a.append(u[edge])
        pending_b.append(r[edge])
        pending += int(edge.sum())
        release(t)
        if pending >= FOLD_EDGES:
            label = _fold(label, pending_a, pending_b)
            pending_a, pending_b, pending = [], [], 0
    label = _fold(label, pending_a, pending_b)
    del pending_a, pending_b
    if not roots:
        return pa.table({name: pa.array([], pa.int64()) for name in ("uid", "rep", "extra", "shard", "rep_shard")})
    rt = concat_as_first(roots).combine_chunks()
    rt_at, rt_first = np.unique(dense(_column([rt], "uid", np.int64)), return_index=True)
    rt = rt.take(pa.array(rt_first))  # one row per local root
    by_priority = rt_at[priority_order(lambda c: rt.column(c).chunk(0))]  # first first
    rank = np.full(n, len(by_priority), np.int64)  # never a local root: never kept
    rank[by_priority] = np.arange(len(by_priority))
    best = np.full(n, len(by_priority), np.int64)
    np.minimum.at(best, label, rank)
    seen_at = np.flatnonzero(seen)
    first = best[label[seen_at]]
    if len(first) and first.max() >= len(by_priority):
        raise ValueError("a cluster without a local root")
    kept_of = by_priority[first]  # per clustered survivor, its day's cluster's first
    is_member = kept_of != seen_at
    members, reps = seen_at[is_member], kept_of[is_member]
    extra = np.zeros(n, np.int64)
    np.add.at(extra, reps, count[members])
    kept = np.unique(reps)
    shard_of = np.searchsorted(base, np.arange(n), side="right") - 1
    uid = (shard_of << UID_BITS) + (np.arange(n) - base[shard_of])
    return pa.table({
        "uid": pa.array(np.concatenate([uid[members], uid[kept]])),
        "rep": pa.array(np.concatenate([uid[reps], np.full(len(kept), -1, np.int64)])),
        "extra": pa.array(np.concatenate([np.zeros(len(members), np.int64), extra[kept]])),
        "shard": pa.array(np.concatenate([shard_of[members], shard_of[kept]])),
        "rep_shard": pa.array(np.concatenate([shard_of[reps], shard_of[kept]])),
    })


def rep_requests(assign: pa.Table) -> pa.Table:
    """Cluster assignments -> what each kept row's shard must send: (`rep`, `rep_shard`,
    `to_shard`) once per kept row and shard of its members."""
    rep = assign.column("rep").to_numpy()
    member = rep >= 0
    t = pa.table({"rep": rep[member], "rep_shard": assign.column("rep_shard").to_numpy()[member],
                  "to_shard": assign.column("shard").to_numpy()[member]})
    return t.group_by(["rep", "rep_shard", "to_shard"], use_threads=False).aggregate([])


def rep_sets(sets: list[pa.Table], wanted: list[pa.Table]) -> pa.Table | None:
    """The ids and shingle sets of one fingerprint shard's survivors (`band_rows`' sets) and
    the requests for its kept rows (`rep_requests` rows) -> (`rep`, `rep_sid`, `set`,
    `to_shard`) per request."""
    wanted = [t for t in wanted if t.num_rows]
    sets = [t for t in sets if t.num_rows]
    if not wanted:
        return None
    if not sets:
        raise ValueError("kept rows were requested from a shard without shingle sets")
    have = concat_as_first(sets)
    want = concat_as_first(wanted)
    at = pc.index_in(want.column("rep"), value_set=have.column("uid").combine_chunks())
    if at.null_count:
        raise ValueError("a kept row's shingle set is missing from its shard")
    return pa.table({"rep": want.column("rep"), "rep_sid": have.column("sid").take(at),
                     "set": have.column("set").take(at), "to_shard": want.column("to_shard")})


def member_scores(assign: pa.Table | None, sets: pa.Table | None, reps: pa.Table | None) -> pa.Table | None:
    """One shard's cluster assignments, its survivors' shingle sets and its members' kept rows'
    ids and sets (`rep_sets`) -> the assignments with `rep_sid` and `similarity`
    (ASSIGN_SCHEMA): each member's exact score against its kept row; kept rows: null, 1.0."""
    if assign is None or not assign.num_rows:
        return None
    assign = assign.combine_chunks()
    is_member = assign.column("rep").to_numpy() >= 0
    sim = np.ones(assign.num_rows, np.float64)
    rep_sid = pa.nulls(assign.num_rows, pa.string())
    if is_member.any():
        members = assign.filter(pa.array(is_member)).combine_chunks()
        mine = pc.index_in(members.column("uid").chunk(0), value_set=sets.column("uid").combine_chunks())
        theirs = pc.index_in(members.column("rep").chunk(0), value_set=reps.column("rep").combine_chunks())
        if mine.null_count or theirs.null_count:
            raise ValueError("a clustered survivor or its kept row has no shingle set")
        both = pa.concat_arrays([sets.column("set").combine_chunks().take(mine),
                                 reps.column("set").combine_chunks().take(theirs)])
        n = len(members)
        sim[is_member] = set_scores(sets_of(both), np.arange(n, 2 * n), np.arange(n))
        where = np.full(assign.num_rows, -1, np.int64)
        where[is_member] = theirs.to_numpy()
        rep_sid = reps.column("rep_sid").combine_chunks().take(pa.array(where, mask=~is_member))
    return pa.table({"uid": assign.column("uid"), "rep_sid": rep_sid, "similarity": pa.array(sim),
                     "extra": assign.column("extra")}, schema=ASSIGN_SCHEMA)


def build_rows(g: ExactGroups, assign: pa.Table | None) -> dict[str, pa.Table]:
    """The exact groups of some fingerprints of a day, and the cluster assignments of their
    survivors (ASSIGN_SCHEMA) -> events, duplicates, quality of these rows (as `dedup_day`)."""
    kept = g.kept
    n = kept.num_rows
    event_ids = kept.column("event_id").combine_chunks()
    ids = np.array(event_ids.to_pylist(), dtype=object) if n else np.zeros(0, object)
    s_target = ids.copy()
    s_near = np.zeros(n, bool)
    s_sim = np.ones(n, np.float64)
    extra = np.zeros(n, np.int64)
    if assign is not None and assign.num_rows:
        surv = g.survivors
        at = assign.column("uid").to_numpy() & np.int64((1 << UID_BITS) - 1)
        if len(at) and at.max() >= len(surv):
            raise ValueError("a cluster assignment names a survivor this shard does not have")
        rows = surv[at]
        rep = np.array(assign.column("rep_sid").to_pylist(), dtype=object)
        member = pc.is_valid(assign.column("rep_sid")).to_numpy(zero_copy_only=False)
        s_target[rows[member]] = rep[member]
        s_near[rows[member]] = True
        s_sim[rows[member]] = assign.column("similarity").to_numpy()[member]
        extra[rows[~member]] = assign.column("extra").to_numpy()[~member]
    target, near, sim = s_target[g.rep], s_near[g.rep], s_sim[g.rep]
    is_event = (g.rep == np.arange(n)) & ~near
    mention = g.counts() + extra
    dup_kept = np.flatnonzero(~is_event)
    rep_rows = g.repeat_of

    def dup_table(src: pa.Table, idx: np.ndarray) -> pa.Table:
        return pa.table({
            "event_id": pa.array(target[idx].tolist() if len(idx) else [], pa.string()),
            "source": src.column("source"), "article_id": src.column("article_id"),
            "update_id": src.column("update_id"), "text": src.column("text"),
            "method": pa.array(np.where(near[idx], "near", "exact").tolist(), pa.string()),
            "similarity": pa.array(sim[idx], pa.float64()),
        }, schema=DUPLICATE_SCHEMA)

    dups = pa.concat_tables([dup_table(kept.take(pa.array(dup_kept)), dup_kept), dup_table(g.repeats, rep_rows)])
    ev = kept.filter(pa.array(is_event))
    cols = {name: ev.column(name) for name in EVENT_SCHEMA.names if name in ev.column_names}
    cols["cluster_id"] = ev.column("event_id")
    cols["mention_count"] = pa.array(mention[is_event], pa.int32())
    events = pa.table({name: cols[name] for name in EVENT_SCHEMA.names}).cast(EVENT_SCHEMA)
    exact_n = int(np.count_nonzero(~near[dup_kept]) + np.count_nonzero(~near[rep_rows]))
    quality = pa.table({"blocks_read": [g.read], "rejected": [0], "exact_duplicates": [exact_n],
                        "near_duplicates": [dups.num_rows - exact_n], "redelivered": [g.redelivered],
                        "late": [0], "events_written": [events.num_rows]}, schema=QUALITY_SCHEMA)
    order = pc.sort_indices(dups, [(c, "ascending") for c in DUPLICATE_SCHEMA.names])
    return {"events": events, "duplicates": dups.take(order), "quality": quality}


def sum_quality(tables: list[pa.Table]) -> pa.Table:
    """The day's quality row: the sum of its shards' rows."""
    sums = {c: sum(t.column(c)[0].as_py() for t in tables) for c in QUALITY_SCHEMA.names}
    return pa.Table.from_pylist([sums], schema=QUALITY_SCHEMA)


# ------------------------------------------------------------------------------ Beam adapters

def _one(folder: str | None, table: pa.Table):
    """A piece as it crosses a shuffle: a spill reference with a folder, else the table."""
    if folder and table.num_rows:
        return write_groups(folder, table, np.zeros(table.num_rows, np.int64))[0][1]
    return table


def _table(items) -> pa.Table | None:
    parts = [t for t in tables_of(items) if t.num_rows]
    return concat_as_first(parts) if parts else None


# Rows a fingerprint shard of a day aims at: a day of fewer rows than `shards` times this is
# spread over fewer shards (`coalesce`), so a run of many small days is not days x shards
# near-empty groups, and a day of at most this many rows is one group and one `dedup_day`
# call. Measured on the 28-day 1M feed (days of up to 74k rows, BENCHMARKS.md): 50,000 spread
# its 29 big days over 2 groups each, 99.2 s; 100,000 computes each in one call, 75.1-77.2 s,
# with the largest process at 0.78 GB (spreading a day costs about twice the CPU of one call).
ROWS_PER_SHARD = 100_000


def day_shard_count(rows: int, shards: int) -> int:
    """The fingerprint shards a day of `rows` rows is spread over (at most `shards`)."""
    return max(1, min(shards, -(-rows // ROWS_PER_SHARD)))


def _rows(item) -> int:
    return item.rows if isinstance(item, SpillRef) else item.num_rows


def coalesce(element, shards: int, prior=None):
    """(day, [[(fingerprint shard of `shards`, item)]]) (WindowByDay's group of a day, with
    spill: a list per bundle of input tables or marker) -> (day/j, (n, items)) for the n shards the
    day's rows need, its earlier rows counted too (`prior`, a `PriorDays`: a few new rows on a
    big day spread it like the whole day), every j made (each loads its share of the day's
    earlier rows): shard s goes to j = s * n // shards, so a fingerprint is in one j."""
    day, lists = element
    pairs = [pair for lst in lists for pair in lst]
    # every earlier row counts, also those of articles this run re-processes (replaced by their
    # new rows): a rerun over a day of 60-100k rows spreads it over 2 groups, at about twice
    # the CPU of one call, with the same rows
    earlier = prior.rows(day) if prior is not None else 0
    n = day_shard_count(sum(_rows(item) for _, item in pairs) + earlier, shards)
    merged: dict[int, list] = {j: [] for j in range(n)}
    for s, item in pairs:
        merged[s * n // shards].append(item)
    for j in range(n):
        yield f"{day}/{j:04d}", (n, merged[j])


def _share(rows: pa.Table, shards: int, n: int, shard: int) -> np.ndarray:
    """Mask of the rows whose fingerprint shard (of `shards`) falls in group `shard` of `n`."""
    return fingerprint_shards(rows.column("fingerprint"), shards) * n // shards == shard


class _ExactFn(beam.DoFn):
    """(day/j, (n, items)) -> the group's rows (for Build) under the same key, its
    survivors' shingle sets on `sets` (same key), band rows keyed by day on `bands`, its
    survivor count on `survivors`, index rows on `index`. A day that is one group (n == 1) is
    deduplicated and written here instead: its `Part`s or `Staged` records go on `parts`."""

    def __init__(self, near: NearDetector | None, shards: int, spill: str | None, prior, stager=None):
        self._near, self._shards, self._spill, self._prior = near, shards, spill, prior
        self._stager = stager

    def setup(self):
        if self._stager is not None:
            self._stager.setup()
        self._counters = day_counters()

    def process(self, element, exclusions=None):
        key, (n, items) = element
        day = day_of(key)
        shard = int(key[11:])
        # copied out file by file, each map released: the group's rows are a row range of each
        # of many files, whose mapped pages counted many times those rows (BENCHMARKS.md)
        tables = tables_of(items, copy=True)
        parts = [t for t in tables if t.num_rows]
        fresh = concat_as_first(parts) if parts else None
        table = fresh
        if self._prior is not None:
            # with n > 1, this group's share of them, filtered while they are read
            keep = functools.partial(_share, shards=self._shards, n=n, shard=shard) if n > 1 else None
            old = prior_rows(self._prior, day, fresh, exclusions, keep)
            pieces = [x for x in (fresh, old) if x is not None and x.num_rows]
            table = concat_as_first(pieces) if pieces else None
            if fresh is not None:
                for s, rows in index_rows(day, fresh):
                    yield beam.pvalue.TaggedOutput("index", (s, rows))
        if table is None:
            table = tables[0] if tables else None
        if table is None:
            return
        # one chunk per column: the group arrives as a chunk per file and shard range, and
        # filters, sorts and takes over ~1,800 chunks made dedup_day 1.5x slower (a 71k-row
        # day of the 28-day 1M feed: 2.07 s chunked, 1.39 s combining included)
        table = table.combine_chunks()
        # the per-file copies (and their concatenations) are in `table` now: not held twice
        tables = parts = fresh = old = pieces = None
        if n == 1:  # the whole day is this group (a day of at most ROWS_PER_SHARD rows): one call
            for part in self._whole_day(day, shard, table):
                yield beam.pvalue.TaggedOutput("parts", part)
            return
        yield key, _one(self._spill, table)
        if self._near is None or not table.num_rows:
            return
        g = exact_groups(table)
        if not len(g.survivors):
            return
        bands, sets = band_rows(g, shard, self._near)
        if sets.num_rows:
            yield beam.pvalue.TaggedOutput("sets", (key, _one(self._spill, sets)))
        yield beam.pvalue.TaggedOutput("survivors", (day, (shard, len(g.survivors))))
        if bands.num_rows:  # spilled: one file sorted by fine shard (path, fine shards, starts); else the table
            fine = band_shards(bands, FINE_BUCKETS)
            yield beam.pvalue.TaggedOutput(
                "bands", (day, write_sorted(self._spill, bands, fine) if self._spill else bands))
        del table, g, bands, sets
        give_back()


    def _whole_day(self, day: str, shard: int, table: pa.Table):
        """A day that is one group: `dedup_day` with the same keyed rule gives the rows the
        spread chain would (tests/test_dedup_spread.py), without its shuffles and spill files,
        and the day's files are written here. Measured on the 28-day 1M feed, whose 461 event
        days are mostly small (BENCHMARKS.md)."""
        out = dedup_day(dt.date.fromisoformat(day), table, self._near)
        items = [("quality", shard, out["quality"]), ("events", shard, out["events"]),
                 ("duplicates", shard, out["duplicates"])]
        if self._prior is not None:
            items.append((OCCURRENCES, shard, table))
        # bounded input (DedupDaySpread): one pane
        yield from _day_parts(self._stager, self._counters, self._prior is not None, day, items, 0)


def _key_bands(element, survivors: dict, shards: int):
    """(day, band rows of a fingerprint shard: `write_sorted`'s (path, fine shards, bounds), or a table) ->
    (day/b<group>, rows) per bucket group of the day, its number from the day's survivors."""
    day, bands = element
    groups = bucket_shard_count(sum(n for _, n in survivors[day]), shards)
    if isinstance(bands, tuple):  # a spill file sorted by fine shard: a row range per bucket group
        path, fine, bounds = bands
        k = coarse_shards(fine, groups)
        first = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])  # each group's first fine shard
        for f, stop in zip(first, np.r_[first[1:], len(k)]):
            start, end = int(bounds[f]), int(bounds[stop])
            yield f"{day}/b{int(k[f]):04d}", SpillRef(path, 0, 1, end - start, start)
        return
    for k, piece in key_groups(bands, coarse_shards(band_shards(bands, FINE_BUCKETS), groups), None):
        yield f"{day}/b{k:04d}", compact_nodes(piece)  # through the runner's shuffle: its own survivors only


def _edges(element, near: NearDetector, spill: str | None):
    key, items = element
    clock = _Clock()
    tables = tables_of(items)
    clock.mark("open", pieces=len(tables))
    edges = bucket_edges(tables, near, clock=clock)
    del tables
    if edges is not None:
        for table in edges:  # the stars and the roots
            yield day_of(key), _one(spill, table)
    clock.mark("write")
    clock.done()


def _assignments(element, spill: str | None, survivors: dict):
    """(day, [stars]) -> assignments keyed by the survivor's day/shard, and on `want` the
    kept rows' set requests keyed by the kept row's day/shard."""
    day, items = element
    a = cluster_assignments(iter_tables(items), dict(survivors[day]))
    give_back()
    if not a.num_rows:
        return
    for k, piece in key_groups(a.select(["uid", "rep", "extra"]), a.column("shard").to_numpy(), spill):
        yield f"{day}/{k:04d}", piece
    want = rep_requests(a)
    for k, piece in key_groups(want.select(["rep", "to_shard"]), want.column("rep_shard").to_numpy(), spill):
        yield beam.pvalue.TaggedOutput("want", (f"{day}/{k:04d}", piece))
    del a, want
    give_back()


def _rep_sets(element, spill: str | None):
    """(day/shard, {sets, want}) -> the requested kept rows' sets, keyed by the day/shard of
    the members that asked."""
    key, grouped = element
    got = rep_sets(tables_of(grouped.get("sets", [])), tables_of(grouped.get("want", [])))
    if got is None:
        return
    day = day_of(key)
    for k, piece in key_groups(got.select(["rep", "rep_sid", "set"]), got.column("to_shard").to_numpy(), spill):
        yield f"{day}/{k:04d}", piece


class _BuildFn(beam.DoFn):
    """(day/shard, {rows, assign, sets, reps}) -> (day, (table name, shard, piece)) per
    output table; members scored against their kept rows here (`member_scores`)."""

    def __init__(self, spill: str | None, occurrences: bool):
        self._spill, self._occurrences = spill, occurrences

    def process(self, element):
        key, grouped = element
        day, shard = day_of(key), int(key[11:])
        tables = tables_of(grouped["rows"])
        if not tables:
            return
        table = concat_as_first(tables)
        assign = member_scores(_table(grouped.get("assign", [])), _table(grouped.get("sets", [])),
                               _table(grouped.get("reps", [])))
        out = build_rows(exact_groups(table), assign)
        yield day, ("quality", shard, out["quality"])
        for name in ("events", "duplicates"):
            yield day, (name, shard, _one(self._spill, out[name]))
        if self._occurrences:
            yield day, (OCCURRENCES, shard, _one(self._spill, table))
        del table, assign, out
        give_back()


def _day_parts(stager, counters: dict, occurrences: bool, day_str: str, items, pane_index: int):
    """[(table name, shard, piece)] of one day -> the day's `Part`s (or `Staged` records): one
    table per name, pieces in shard order, written piece by piece with a stager; counters
    incremented once per day (first pane)."""
    day = dt.date.fromisoformat(day_str)
    by_name: dict[str, list] = {}
    for name, shard, piece in items:
        by_name.setdefault(name, []).append((shard, piece))
    q = sum_quality([t for _, t in by_name.pop("quality", [])])
    if pane_index == 0:
        (row,) = q.to_pylist()
        for name, col in (("blocks", "blocks_read"), ("events", "events_written"),
                          ("exact_duplicates", "exact_duplicates"), ("near_duplicates", "near_duplicates"),
                          ("redelivered", "redelivered")):
            counters[name].inc(row[col])
    yield Part("quality", day, q, pane_index)
    names = ["events", "duplicates"] + ([OCCURRENCES] if occurrences else [])
    for name in names:
        pieces = [p for _, p in sorted(by_name.get(name, []), key=lambda x: x[0])]
        if stager is not None:
            yield stager.write_pieces(name, day, (t for p in pieces for t in tables_of([p])), pane_index)
        else:
            t = _table(pieces)
            yield Part(name, day, t if t is not None else _empty(name, pieces), pane_index)


class _DayFn(beam.DoFn):
    """(day, [(table name, shard, piece)]) -> the day's `Part`s (or `Staged` records), `_day_parts`."""

    def __init__(self, stager, occurrences: bool):
        self._stager, self._occurrences = stager, occurrences

    def setup(self):
        if self._stager is not None:
            self._stager.setup()
        self._counters = day_counters()

    def process(self, element, pane=beam.DoFn.PaneInfoParam):
        day_str, items = element
        yield from _day_parts(self._stager, self._counters, self._occurrences, day_str, items, pane.index)


def _empty(name: str, pieces) -> pa.Table:
    tables = tables_of(pieces)
    if tables:
        return tables[0]
    from transforms.sink import SCHEMAS  # the sink's table schemas
    return SCHEMAS[name].empty_table()


class DedupDaySpread(beam.PTransform):
    """`WindowByDay(..., shards=shards)`'s groups -> the parts `DedupDay` gives, computed
    without any group holding a day's rows (module docstring). Bounded input only (a streaming
    run keeps `DedupDay`). `shards`: the fingerprint shards WindowByDay keyed by (bucket
    groups per day: `bucket_shard_count`); `spill`: the launcher's spill folder or None."""

    def __init__(self, near: NearDetector | None = None, prior=None, exclusions=None, stager=None,
                 shards: int = 16, spill: str | None = None):
        super().__init__()
        if shards < 1:
            raise ValueError("shards must be at least 1")
        self._near, self._prior, self._exclusions, self._stager = near, prior, exclusions, stager
        self._shards, self._spill = shards, spill

    def expand(self, groups):
        near, spill = self._near, self._spill
        incremental = self._prior is not None
        side = {} if self._exclusions is None else {"exclusions": beam.pvalue.AsMultiMap(self._exclusions)}
        if spill:  # (day, [[(shard, reference)]]): the shards of a small day become fewer groups
            groups = (groups
                      | "Coalesce" >> beam.FlatMap(coalesce, self._shards, self._prior)
                      | "Spread" >> beam.Reshuffle())
        else:  # tables: regrouping would bring a day together; every shard stays a group
            shards = self._shards
            groups = groups | "Shards" >> beam.MapTuple(lambda key, items: (key, (shards, items)))
        exact = groups | "Exact" >> beam.ParDo(_ExactFn(near, self._shards, spill, self._prior, self._stager), **side) \
            .with_output_types(Tuple[str, Any]).with_outputs("bands", "sets", "survivors", "index", "parts", main="rows")
        joined = {"rows": exact.rows}
        if near is not None:
            # per day, (fingerprint shard, survivors) of each shard: the bucket groups' number and the
            # cluster group's survivor numbering
            survivors = exact.survivors | "DaySurvivors" >> beam.CombinePerKey(beam.combiners.ToListCombineFn())
            clusters = (exact.bands
                        | "KeyBands" >> beam.FlatMap(_key_bands, beam.pvalue.AsDict(survivors), self._shards)
                        | "GroupBuckets" >> beam.GroupByKey()
                        | "Verify" >> beam.FlatMap(_edges, near, spill)
                        | "GroupEdges" >> beam.GroupByKey()
                        | "Clusters" >> beam.FlatMap(_assignments, spill, beam.pvalue.AsDict(survivors))
                        .with_outputs("want", main="assign"))
            reps = ({"sets": exact.sets, "want": clusters.want}
                    | "JoinRequests" >> beam.CoGroupByKey()
                    | "RepSets" >> beam.FlatMap(_rep_sets, spill))
            joined.update(assign=clusters.assign, sets=exact.sets, reps=reps)
        spread = (joined
                  | "JoinAssignments" >> beam.CoGroupByKey()
                  | "Build" >> beam.ParDo(_BuildFn(spill, incremental))
                  | "GroupDayPieces" >> beam.GroupByKey()
                  | "WriteDays" >> beam.ParDo(_DayFn(self._stager, incremental)))
        parts = (spread, exact.parts) | "DayParts" >> beam.Flatten()
        if self._exclusions is None:
            return parts
        return {"parts": parts, "index": exact.index}
