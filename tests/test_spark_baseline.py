"""benchmarks/spark_baseline.py writes the same rows as perf.py's DuckDB baseline.

Needs pyspark (the `bench` extra, not `test`) and java: skips without them, so CI, which
installs `test` only, skips it. One JVM start, about 20-30 s on 2 cores.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# (published_at, text): offsets across UTC midnight, a retyped copy (same canonical text), a
# repeat on another UTC day, blank and punctuation-only blocks, non-ASCII letters and digits
LINES = [
    ("2022-03-01T23:30:00-02:00", "Shelling near Donetsk.\n\n  \nKyiv: 3 killed"),     # 03-02 01:30 UTC
    ("2022-03-02T00:10:00+00:00", "shelling  NEAR donetsk\n--- ...\nZaporizhzhia — ‘calm’"),
    ("2022-03-02T02:00:00+03:00", "Kyiv - 3 killed\nŽitomir: 12 000 évacués"),          # 03-01 23:00 UTC
    ("2022-03-02T09:00:00Z", "Shelling near Donetsk!\nŽITOMIR 12 000 ÉVACUÉS"),
    ("2022-03-03T12:00:00+05:30", "Shelling near Donetsk\n"),
    ("2022-03-03T12:00:00+05:30", "Zaporizhzhia: \u201ccalm\u201d\n\n"),
]


@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark not installed (the bench extra)")
@pytest.mark.skipif(not (shutil.which("java") or os.environ.get("JAVA_HOME")), reason="no java runtime")
def test_pyspark_baseline_matches_duckdb(tmp_path):
    import duckdb

    perf = _load("newsevents_perf", "perf.py")
    spark = _load("newsevents_spark_baseline", "spark_baseline.py")
    feed = tmp_path / "feed.jsonl"
    with open(feed, "w", encoding="utf-8") as f:
        for i, (published, text) in enumerate(LINES):
            f.write(json.dumps({"article_id": f"a{i % 3}", "source": f"s{i % 2}", "headline": "h",
                                "update_id": f"a{i % 3}/u{i}", "published_at": published, "text": text},
                               ensure_ascii=False) + "\n")
    _, duck_rows = perf.duckdb_baseline(feed, tmp_path / "duckdb")
    seconds, spark_rows = spark.pyspark_baseline(feed, tmp_path / "pyspark")
    assert seconds > 0
    assert spark_rows == duck_rows == 8

    from pyspark import SparkContext

    assert SparkContext._gateway is None  # the JVM was shut down

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")

    def rows(name: str) -> list:
        return con.execute(f"""
            SELECT event_date::DATE, {perf.CANON.replace('block', 'kept.text')}, mention_count,
                   kept.published_at::TIMESTAMPTZ, kept.source, kept.article_id, kept.update_id, kept.text
            FROM read_parquet('{tmp_path / name}/**/*.parquet', hive_partitioning = true)
            ORDER BY ALL""").fetchall()

    assert rows("pyspark") == rows("duckdb")
    by_day = dict(con.execute(f"""SELECT event_date::VARCHAR, count(*) FROM read_parquet(
        '{tmp_path / 'pyspark'}/**/*.parquet', hive_partitioning = true) GROUP BY 1""").fetchall())
    assert by_day == {"2022-03-01": 2, "2022-03-02": 4, "2022-03-03": 2}
