"""Gathering a bucket group's survivors out of the node dictionaries, by layout (issue 13)

    .venv/bin/python benchmarks/node_gather.py 390000 2940000 [--workdir DIR] [--groups 8]

Each size is the exact survivors of a day (about 390k for the 250k-update one-day feed, 1.5M
for 1M, 2.94M for 2M: `oneday.py --bucket-stats`, day_survivors). The day is cut into
node dictionaries of 64,000 survivors (one per fingerprint group of ~100k rows, as
`transforms.dedup_spread` writes them), each an Arrow IPC file, and each bucket group takes
`--per-group` survivors (~32k, as measured) spread evenly over all of them: at 390k a group
takes ~5,300 rows of each of 6 dictionaries, at 2.94M ~700 of each of 46. The fields and
widths are the node's (`NODE_FIELDS`: number, count, the five priority columns, 96
signature bytes, the shingle set, 32 band hashes), the values synthetic.

Layouts, each read as `transforms.dedup_spread._Nodes` reads today (mapped file, takes by
sorted row numbers, the map released after):
- `columns`: today's: one column per field (13 places in memory per survivor, counting
  the offsets of the string and binary fields).
- `record`: the seven fixed-width fields as one fixed-size record, the two strings and the
  set as they are (7 places).
- `blob`: everything of a survivor as one binary value (2 places); `unpack` is the numpy
  work that splits the gathered values back into the fixed fields and the sets.

Printed per size and layout: nanoseconds per survivor gathered for the take, the unpack and
the release, over `--groups` groups, with the page cache warm (each file is read once
before, and one untimed round of every layout first). Figures in BENCHMARKS.md (seventh session's follow-up).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from transforms.normalize import _expand  # noqa: E402
from transforms.spill import _reader, _release_map  # noqa: E402

PER_DICT = 64_000
FIXED = [("uid", 8), ("count", 8), ("published_at", 8), ("position", 8), ("line", 8), ("sig", 96), ("bands", 256)]
HEAD = sum(w for _, w in FIXED)  # 392 bytes, a multiple of 8
STRINGS = ["article_id", "source_uri"]


def _fixed(rng, n: int, w: int) -> pa.Array:
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(w), n, [None, pa.py_buffer(rng.integers(0, 256, n * w, np.uint8))])


def _var(offs: np.ndarray, data: np.ndarray, large: bool) -> pa.Array:
    t = pa.large_binary() if large else pa.string()
    o = offs.astype(np.int64 if large else np.int32)
    return pa.Array.from_buffers(t, len(offs) - 1, [None, pa.py_buffer(o), pa.py_buffer(data)])


def _gather(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """data[starts[i]:starts[i]+lengths[i]] for all i, concatenated, and their offsets."""
    offs = np.zeros(len(starts) + 1, np.int64)
    np.cumsum(lengths, out=offs[1:])
    return data[_expand(starts, lengths)], offs


def make_dictionary(path: Path, seed: int) -> None:
    """One node dictionary in the three layouts (columns `c_*`, `r_*`, `blob`)."""
    rng = np.random.default_rng(seed)
    n = PER_DICT
    fixed = {name: np.frombuffer(rng.integers(0, 256, n * w, np.uint8).tobytes(), np.uint8).reshape(n, w)
             for name, w in FIXED}
    strings = {}
    for name, lo, hi in (("article_id", 16, 40), ("source_uri", 40, 120)):
        lens = rng.integers(lo, hi, n)
        offs = np.zeros(n + 1, np.int64)
        np.cumsum(lens, out=offs[1:])
        strings[name] = (offs, rng.integers(97, 123, offs[-1], np.uint8))
    shingles = rng.integers(10, 90, n)  # words per block
    set_offs = np.zeros(n + 1, np.int64)
    np.cumsum(shingles * 8, out=set_offs[1:])
    set_data = rng.integers(0, 1 << 40, set_offs[-1] // 8, np.uint64).view(np.uint8)
    cols = {f"c_{name}": pa.FixedSizeBinaryArray.from_buffers(pa.binary(w), n, [None, pa.py_buffer(fixed[name])])
            for name, w in FIXED}
    cols.update({f"c_{k}": _var(o, d, False) for k, (o, d) in strings.items()})
    cols["c_set"] = _var(set_offs, set_data, True)
    head = np.ascontiguousarray(np.concatenate([fixed[name] for name, _ in FIXED], axis=1))
    cols["r_head"] = pa.FixedSizeBinaryArray.from_buffers(pa.binary(HEAD), n, [None, pa.py_buffer(head)])
    cols.update({f"r_{k}": cols[f"c_{k}"] for k in STRINGS + ["set"]})
    # blob: head, the two string lengths (8 bytes), the strings, padding to 8, the set
    (ao, ad), (so, sd) = strings["article_id"], strings["source_uri"]
    al, sl, xl = np.diff(ao), np.diff(so), np.diff(set_offs)
    lens = np.stack([al, sl], axis=1).astype("<u4").view(np.uint8)
    pad = (-(al + sl)) % 8
    parts = [(head.reshape(-1), np.arange(n) * HEAD, np.full(n, HEAD)), (lens.reshape(-1), np.arange(n) * 8, np.full(n, 8)),
             (ad, ao[:-1], al), (sd, so[:-1], sl), (np.zeros(8, np.uint8), np.zeros(n, np.int64), pad),
             (set_data, set_offs[:-1], xl)]
    # interleave: per survivor, its pieces in order
    data = np.concatenate([p[0] for p in parts])
    base = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
    starts = np.stack([b + p[1] for b, p in zip(base, parts)], axis=1).reshape(-1)
    lengths = np.stack([p[2] for p in parts], axis=1).reshape(-1)
    blob, offs = _gather(data, starts, lengths)
    cols["blob"] = _var(offs[::len(parts)], blob, True)
    with pa.ipc.new_file(str(path), pa.schema([(k, v.type) for k, v in cols.items()])) as w:
        w.write_batch(pa.record_batch(list(cols.values()), names=list(cols)))


def unpack(b: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Gathered blobs -> the fixed fields (rows x HEAD bytes) and the sets (large_binary)."""
    n = len(b)
    offs = np.frombuffer(b.buffers()[1], np.int64, n + 1, b.offset)
    words = np.frombuffer(b.buffers()[2], np.uint64, offs[-1] // 8)
    w0 = offs[:-1] // 8
    head = words[w0[:, None] + np.arange(HEAD // 8 + 1)]
    lens = np.ascontiguousarray(head[:, -1]).view(np.uint32).reshape(n, 2).astype(np.int64)
    set_w = w0 + HEAD // 8 + 1 + (lens.sum(axis=1) + 7) // 8
    sets, so = _gather(words, set_w, offs[1:] // 8 - set_w)
    return np.ascontiguousarray(head[:, :-1]).view(np.uint8), pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(so * 8), pa.py_buffer(sets)])


def check(path: Path, k: int, rng) -> None:
    """The three layouts give the same fields for the same rows (else the run stops)."""
    reader, m = _reader(str(path))
    batch = reader.get_batch(0)
    idx = pa.array(np.sort(rng.choice(PER_DICT, k, replace=False)))
    head, sets = unpack(batch.column("blob").take(idx))
    record = batch.column("r_head").take(idx)
    if not np.array_equal(head, np.frombuffer(record.buffers()[1], np.uint8).reshape(k, HEAD)):
        raise AssertionError("blob and record layouts differ")
    at = 0
    for name, w in FIXED:
        col = batch.column(f"c_{name}").take(idx)
        if not np.array_equal(head[:, at:at + w], np.frombuffer(col.buffers()[1], np.uint8).reshape(k, w)):
            raise AssertionError(f"blob and columns differ in {name}")
        at += w
    if not sets.equals(batch.column("c_set").take(idx)):
        raise AssertionError("blob and columns differ in the sets")
    _release_map(m)


def run(survivors: int, per_group: int, groups: int, workdir: Path) -> dict:
    d = max(1, round(survivors / PER_DICT))
    paths = [workdir / f"nodes-{i}.arrow" for i in range(d)]
    for i, p in enumerate(paths):
        if not p.exists():
            make_dictionary(p, i)
        p.read_bytes()  # page cache warm
    k = max(1, per_group // d)
    rng = np.random.default_rng(survivors)
    layouts = {"columns": [f"c_{n}" for n, _ in FIXED] + [f"c_{s}" for s in STRINGS] + ["c_set"],
               "record": ["r_head"] + [f"r_{s}" for s in STRINGS] + ["r_set"], "blob": ["blob"]}
    t = {layout: {"take": 0.0, "unpack": 0.0, "release": 0.0} for layout in layouts}
    # the layouts take turns, so that the machine's drift falls on all; round 0 is a warm-up
    for round_ in range(groups + 1):
        for layout, names in layouts.items():
            for p in paths:
                reader, m = _reader(str(p))
                batch = reader.get_batch(0)
                idx = pa.array(np.sort(rng.choice(PER_DICT, k, replace=False)))
                a = time.perf_counter()
                taken = [batch.column(name).take(idx) for name in names]
                b = time.perf_counter()
                if layout == "blob":
                    unpack(taken[0])
                c = time.perf_counter()
                _release_map(m)
                del reader, m, batch
                if not round_:
                    continue
                t[layout]["take"] += b - a
                t[layout]["unpack"] += c - b
                t[layout]["release"] += time.perf_counter() - c
    check(paths[0], k, rng)  # what was timed gives the same values in every layout
    rows = groups * len(paths) * k
    out = {}
    for layout, times in t.items():
        out[layout] = {key: round(v / rows * 1e9) for key, v in times.items()}
        out[layout]["total"] = sum(out[layout].values())
    return {"survivors": survivors, "dictionaries": d, "rows_per_dictionary": k, "ns_per_survivor": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("survivors", type=int, nargs="+", help="exact survivors of the day (several: one line each)")
    ap.add_argument("--per-group", type=int, default=32_000, help="survivors a bucket group takes")
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--workdir", type=Path, default=None, help="where the dictionaries are written (kept)")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="node-gather-"))
    os.makedirs(workdir, exist_ok=True)
    for s in args.survivors:
        print(run(s, args.per_group, args.groups, workdir), flush=True)


if __name__ == "__main__":
    main()
