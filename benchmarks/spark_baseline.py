"""perf.py's DuckDB baseline as a PySpark job on `local[2]` (the `--pyspark` step of perf.py).

The same exact-only job as `perf.duckdb_baseline`, in the DataFrame API: read the JSONL feed,
split `text` into blocks on "\\n", drop blank blocks, canonical form (lower-case, runs of
characters that are not Unicode letters or digits, `[^\\p{L}\\p{N}]+`, to one space, trim),
drop blocks whose canonical form is empty, hash it (`xxhash64`; DuckDB's `hash` is another
64-bit hash, so the fingerprint values differ but not the groups), UTC day of `published_at`,
group by (day, hash) keeping the earliest occurrence (`min_by`, DuckDB's `arg_min`) and a
count, write Parquet (zstd) partitioned by `event_date`. The columns are DuckDB's:
`event_date` (the partition folder), `fingerprint`, `kept` (struct of published_at, source,
article_id, update_id, text), `mention_count` (int).

`published_at`: perf.py writes ISO 8601 with the source's UTC offset, which DuckDB reads as
TIMESTAMPTZ and Spark's JSON reader as TIMESTAMP (both to the same instant; the session time
zone is UTC, like DuckDB's `SET TimeZone = 'UTC'`, so the day is the UTC day). Epoch seconds
(the pipeline accepts them) are not in perf.py's feeds: Spark reads an integer as epoch seconds
where DuckDB's query stops with a cast error; a fractional one stops both. A value that does
not parse stops the job (FAILFAST), as in DuckDB, rather than becoming NULL.

Known differences that do not arise on perf.py's feeds: `lower` is Java's here and utf8proc's
in DuckDB (Java lower-cases a word-final capital sigma to "ς" and "İ" to "i" plus a combining
dot, which the regex then turns into a space); DuckDB's `trim` also removes non-ASCII spaces,
Spark's only " " (no effect on the output: a block of spaces has an empty canonical form and is
dropped by the second filter either way).

Timed end to end like the DuckDB baseline (which counts connect to close): SparkSession start
(the JVM), the job, `stop()`. The JVM is then shut down, untimed, so that each call (one per N)
starts its own and none lingers while perf.py runs the next pipeline. The rows written are
counted afterwards, untimed, from the Parquet footers (DuckDB's COPY returns its count).
Needs `pyspark` (the `bench` extra) and a Java 17+ runtime (`java` on PATH or JAVA_HOME).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

DRIVER_MEMORY = "4g"  # local mode: the driver JVM is the executor too; what does not fit spills to disk
SHUFFLE_PARTITIONS = 8


def pyspark_baseline(feed: Path, out: Path) -> tuple[float, int]:
    """The DuckDB baseline's job in PySpark on local[2]: (seconds end to end, rows written)."""
    import pyarrow.parquet as pq
    from pyspark import SparkContext
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType, TimestampType

    shutil.rmtree(out, ignore_errors=True)
    schema = StructType([
        StructField("article_id", StringType()),
        StructField("source", StringType()),
        StructField("headline", StringType()),
        StructField("update_id", StringType()),
        StructField("published_at", TimestampType()),
        StructField("text", StringType()),
    ])
    t0 = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("newsevents-perf-baseline")
        # the JVM is started by this builder, so the driver's heap is set here
        .config("spark.driver.memory", DRIVER_MEMORY)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # Spark's default of 200 shuffle partitions is sized for a cluster. On 2 cores it
        # means 200 tasks of a few milliseconds each for the group-by, and since each task of
        # the writing stage writes one file per event_date it holds, up to 200 files per day.
        # 8 is 4 tasks per core: enough to even out uneven partitions, at most 8 files a day
        # (adaptive execution, on by default, may merge small partitions further).
        .config("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.compression.codec", "zstd")
        # Parquet's standard timestamp, not Spark's default INT96
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .getOrCreate()
    )
    try:
        spark.sparkContext.setLogLevel("ERROR")
        feed_df = spark.read.schema(schema).option("mode", "FAILFAST").json(str(feed))
        blocks = (
            feed_df.select("published_at", "source", "article_id", "update_id",
                           F.explode(F.split("text", "\n")).alias("block"))
            .where(F.trim("block") != "")
            .withColumn("canon", F.trim(F.regexp_replace(F.lower("block"), r"[^\p{L}\p{N}]+", " ")))
            .where(F.col("canon") != "")
        )
        keyed = blocks.select(
            F.to_date("published_at").alias("event_date"), "published_at", "source", "article_id",
            "update_id", "block", F.xxhash64("canon").alias("fingerprint"))
        kept = F.struct(F.col("published_at"), F.col("source"), F.col("article_id"), F.col("update_id"),
                        F.col("block").alias("text"))
        result = keyed.groupBy("event_date", "fingerprint").agg(
            F.min_by(kept, "published_at").alias("kept"),
            F.count(F.lit(1)).cast("int").alias("mention_count"))
        result.write.mode("overwrite").partitionBy("event_date").parquet(str(out))
    finally:
        spark.stop()
        seconds = time.perf_counter() - t0
        _shutdown_jvm(SparkContext)
    rows = sum(pq.read_metadata(f).num_rows for f in out.rglob("*.parquet"))
    return seconds, rows


def _shutdown_jvm(SparkContext) -> None:
    """End the JVM that pyspark started (stop() leaves it running): it exits when its stdin closes."""
    gateway = SparkContext._gateway
    if gateway is None:
        return
    try:
        gateway.shutdown()
    except Exception:  # noqa: BLE001 - best effort, the process is ended below all the same
        pass
    proc = getattr(gateway, "proc", None)
    if proc is not None:
        try:
            proc.stdin.close()
            proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            proc.kill()
            proc.wait()
    SparkContext._gateway = None
    SparkContext._jvm = None
