"""`newsevents sql DIR "SELECT ..."`: DuckDB over the dataset's four tables.

Views: `events`, `duplicates`, `quality` (with `event_date` from the Hive partition folders,
typed DATE) and `rejects`. Example:

    newsevents sql out "SELECT event_date, count(*) FROM events GROUP BY 1 ORDER BY 1"
"""
from __future__ import annotations

import os

import duckdb

from schemas.models import PARTITIONED_TABLES, TABLE_SCHEMAS


class SqlError(Exception):
    pass


def connect(root: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per table of the dataset at `root`."""
    if "://" not in root and not os.path.isdir(root):
        raise SqlError(f"dataset not found: {root}")
    con = duckdb.connect()
    for name in TABLE_SCHEMAS:
        glob = f"{root.rstrip('/')}/{name}/**/*.parquet"
        if name in PARTITIONED_TABLES:
            src = f"read_parquet('{glob}', hive_partitioning = true, hive_types = {{'event_date': DATE}})"
        else:
            src = f"read_parquet('{glob}')"
        try:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {src}")
        except duckdb.Error as e:
            raise SqlError(f"table {name} is unreadable under {root}: {str(e).splitlines()[0]}") from None
    return con


def print_query(root: str, sql: str, max_rows: int = 10_000) -> None:
    """Run `sql` over the dataset and print the result as a table (up to `max_rows` rows)."""
    con = connect(root)
    try:
        rel = con.sql(sql)
        if rel is None:
            print("OK")
            return
        rel.show(max_rows=max_rows, max_width=10_000)
    except duckdb.Error as e:
        raise SqlError(str(e).splitlines()[0]) from None
