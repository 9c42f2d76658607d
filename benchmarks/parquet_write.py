"""CPU time and size of writing a dataset's events, duplicates and occurrence files, with
Parquet's dictionary on every column and with `transforms.sink.parquet_options` (no
dictionary for the columns of PLAIN_COLUMNS), side by side in one process.

    .venv/bin/python benchmarks/perf.py 1000000 --workdir /tmp/perf --keep --skip-duckdb
    .venv/bin/python benchmarks/parquet_write.py /tmp/perf/out-n1000000 [--rows 5000] [--reps 3]

Each table of the output is read whole and written to memory in pieces of `--rows` rows (as
the day steps write them), `--reps` times each way, alternating; the least CPU time of each
way is printed with the file size.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transforms.sink import PLAIN_COLUMNS, SCHEMAS, parquet_options  # noqa: E402
from transforms.state import OCCURRENCES  # noqa: E402


def write(pieces: list[pa.Table], schema: pa.Schema, options: dict) -> tuple[float, int]:
    buf = io.BytesIO()
    t0 = time.process_time()
    with pq.ParquetWriter(buf, schema, **options) as writer:
        for piece in pieces:
            writer.write_table(piece)
    return time.process_time() - t0, buf.tell()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", type=Path, help="a newsevents output folder (perf.py --keep leaves one)")
    ap.add_argument("--rows", type=int, default=5000, help="rows per written piece (default 5000)")
    ap.add_argument("--reps", type=int, default=3, help="writes each way (default 3)")
    args = ap.parse_args()
    total = {"dictionary": [0.0, 0], "parquet_options": [0.0, 0]}
    for name, rel in (("events", "events"), ("duplicates", "duplicates"), (OCCURRENCES, OCCURRENCES)):
        folder = args.output / rel
        if not folder.exists():
            print(f"{name}: not in {args.output}")
            continue
        t = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
        schema = SCHEMAS[name]
        t = t.select([c for c in schema.names if c in t.column_names])
        t = t.cast(pa.schema([schema.field(c) for c in t.column_names]))
        pieces = [pa.Table.from_batches([b]) for b in t.to_batches(max_chunksize=args.rows)]
        ways = {"dictionary": {"compression": "zstd"}, "parquet_options": parquet_options(name, t.schema)}
        best = {k: (float("inf"), 0) for k in ways}
        for _ in range(args.reps):
            for k, options in ways.items():
                cpu, size = write(pieces, t.schema, options)
                best[k] = (min(best[k][0], cpu), size)
        for k, (cpu, size) in best.items():
            total[k][0] += cpu
            total[k][1] += size
        print(f"{name}: {t.num_rows:,} rows; plain {sorted(PLAIN_COLUMNS.get(name, ()))}; "
              + "; ".join(f"{k} {cpu:.2f} CPU-s {size / 1e6:.1f} MB" for k, (cpu, size) in best.items()))
    print("all: " + "; ".join(f"{k} {cpu:.2f} CPU-s {size / 1e6:.1f} MB" for k, (cpu, size) in total.items()))


if __name__ == "__main__":
    main()
