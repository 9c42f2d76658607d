"""Each per-batch kernel against its per-row reference, on one JSONL feed (one process).

    .venv/bin/python benchmarks/kernels.py FEED.jsonl [--repeat 3]

Times, best of --repeat, and checks the outputs are equal (the references are the test oracles
in `tests/oracles/`):
- read: `read_jsonl` + `RecordBatch.from_pylist` (json + pydantic per line) vs
  `read_jsonl_batch` (pyarrow.json, per-line path only for rows it cannot vouch for), over the
  feed's 8 MB ranges as the pipeline plans them;
- split: `split_rows` (per update, per line in Python) vs `split_batch` (vectorised);
- normalize: the definition (Python NFKC, then regex passes, xxhash per value) vs `normalize_array`, `canonical_array`, `fingerprint_array`;
- event time: `resolve_event_time` on every row vs `resolve_batch` on the Arrow column (RE2 pre-filter).
The feed: `benchmarks/perf.py N --keep --workdir DIR --skip-pipeline --skip-duckdb` writes one.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402

from transforms import normalize as nz  # noqa: E402
from transforms.event_time import resolve_batch  # noqa: E402
from transforms.read import UPDATE_SCHEMA, read_jsonl_batch, split_into_ranges  # noqa: E402
from transforms.split import split_batch  # noqa: E402
from tests.oracles.read import read_jsonl  # noqa: E402
from tests.oracles.split import split_rows  # noqa: E402
from tests.oracles import normalize as ref_nz  # noqa: E402
from tests.oracles.event_time import resolve_rows  # noqa: E402


def best(fn, repeat: int):
    out, times = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, min(times)


def report(name: str, rows: int, ref: float, fast: float, same: bool) -> None:
    print(f"{name:10s} {rows:>9,} rows  reference {ref:7.3f} s  fast {fast:7.3f} s  "
          f"{ref / fast:5.1f}x  {'same output' if same else 'OUTPUT DIFFERS'}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("feed", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    data = args.feed.read_bytes()
    uri = str(args.feed)
    plans = split_into_ranges(uri, "jsonl", len(data), iter([data]))
    ranges = [(data[p.start:(p.end if p.end >= 0 else len(data))], p.first_line) for p in plans]

    def ref_read():
        return [pa.RecordBatch.from_pylist(read_jsonl(uri, b, n, []), schema=UPDATE_SCHEMA) for b, n in ranges]

    def fast_read():
        return [read_jsonl_batch(uri, b, n, []) for b, n in ranges]

    want, t_ref = best(ref_read, args.repeat)
    got, t_fast = best(fast_read, args.repeat)
    report("read", sum(b.num_rows for b in want), t_ref, t_fast, all(a.equals(b) for a, b in zip(want, got)))

    updates = pa.concat_batches(got) if hasattr(pa, "concat_batches") else pa.Table.from_batches(got).combine_chunks().to_batches()[0]
    want, t_ref = best(lambda: split_rows(updates), args.repeat)
    got, t_fast = best(lambda: split_batch(updates), args.repeat)
    report("split", got.num_rows, t_ref, t_fast, got.equals(want))

    texts = got.column("text")
    ref = lambda: ref_nz.fingerprint_array(ref_nz.canonical_array(ref_nz.normalize_array(texts)))  # noqa: E731
    fast = lambda: nz.fingerprint_array(nz.canonical_array(nz.normalize_array(texts)))  # noqa: E731
    want, t_ref = best(ref, args.repeat)
    have, t_fast = best(fast, args.repeat)
    report("normalize", len(texts), t_ref, t_fast, have.equals(want))

    pubs = [1646136000_000000] * len(texts)
    want, t_ref = best(lambda: resolve_rows(texts.to_pylist(), pubs), args.repeat)
    have, t_fast = best(lambda: resolve_batch(texts, pubs), args.repeat)
    report("event time", len(texts), t_ref, t_fast, have == want)
    return 0


if __name__ == "__main__":
    sys.exit(main())
