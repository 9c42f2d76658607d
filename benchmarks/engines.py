"""The same feed on the local runner, on Flink and on Spark, side by side in one run (issue 12).

    .venv/bin/python benchmarks/engines.py 1000000 [--engines local,flink,spark] [--one-day] [--run-args '--spill on']
        [--keep --workdir DIR]

For each N: the update feed of benchmarks/perf.py (same generator, same seed; with --one-day
the one-day feed of benchmarks/oneday.py, run with `--event-time published` so that the whole
run is one event day), then one run per engine, one after the other on this machine:

- local: `newsevents run` (Beam's DirectRunner, its defaults: spill on, one worker process per
  core from 32 MB of input);
- flink: `FLINK_MASTER='[local]' runners/flink.sh` (embedded Flink, parallelism 2, the Flink
  job server's JVM started by Beam; SDK workers as set by ENVIRONMENT_TYPE, default LOOPBACK);
- spark: `SPARK_MASTER='local[2]' runners/spark.sh` (Spark in the job server's JVM, 2 threads).

Each run is timed wall clock with the resident set of its whole process tree sampled (the
JVM is a child of the launcher, so it counts): perf.py's TreeSampler. Then every table of each
engine's output is compared with the local run's, row for row, in DuckDB (EXCEPT ALL both
ways). Prints a line per engine and one JSON line with all figures. Extra environment for the
engine scripts (ENVIRONMENT_TYPE=EXTERNAL WORKERS=2, ...) passes through.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import perf  # noqa: E402  (the feed generator and the process-tree sampler)

MB = 1 << 20
TABLES = ("events", "duplicates", "rejects", "quality")


def command(engine: str, feed: Path, out: Path, extra: list[str] = ()) -> tuple[list[str], dict]:
    """The command line of one engine's run; `extra`: options for `newsevents run`."""
    env = {**os.environ, "PYTHON": sys.executable}
    if engine == "local":
        return [sys.executable, "-m", "pipelines.cli", "run", "--input", str(feed), "--output", str(out), *extra], env
    if engine == "flink":
        return ["bash", str(ROOT / "runners/flink.sh"), str(feed), str(out), *extra], {**env, "FLINK_MASTER": "[local]"}
    if engine == "spark":
        return ["bash", str(ROOT / "runners/spark.sh"), str(feed), str(out), *extra], {**env, "SPARK_MASTER": "local[2]"}
    raise ValueError(engine)


def timed(cmd: list[str], env: dict, log: Path) -> dict:
    with open(log, "wb") as logf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, env=env)
        sampler = perf.TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
    peaks = sorted(((rss, label) for _pid, (rss, label) in sampler.peaks.items()), reverse=True)
    return {"rc": os.waitstatus_to_exitcode(status), "seconds": seconds,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "largest_mb": round(peaks[0][0] / MB, 1) if peaks else 0.0,
            "largest": peaks[0][1] if peaks else "",
            "tree_mb": round(sampler.peak_total / MB, 1)}


def differences(a: Path, b: Path) -> dict:
    """Rows of each table in one output and not the other (EXCEPT ALL, both ways)."""
    import duckdb

    con = duckdb.connect()
    out = {}
    for table in TABLES:
        def rel(root):
            return f"read_parquet('{root}/{table}/**/*.parquet', hive_partitioning = true, union_by_name = true)"
        n = con.sql(f"SELECT count(*) FROM {rel(a)}").fetchall()[0][0]
        missing = con.sql(f"SELECT count(*) FROM (SELECT * FROM {rel(a)} EXCEPT ALL SELECT * FROM {rel(b)})").fetchall()[0][0]
        extra = con.sql(f"SELECT count(*) FROM (SELECT * FROM {rel(b)} EXCEPT ALL SELECT * FROM {rel(a)})").fetchall()[0][0]
        out[table] = {"rows": n, "missing": missing, "extra": extra}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, nargs="+", help="updates in the feed (several: one round each)")
    ap.add_argument("--engines", default="local,flink,spark", help="comma-separated: local, flink, spark")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep feeds and outputs (a kept feed is reused)")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--one-day", action="store_true",
                    help="the one-day feed of oneday.py (--event-time published: one event day)")
    ap.add_argument("--run-args", default="",
                    help="more options for every engine's `newsevents run`, e.g. '--spill on' (spill files "
                         "on Flink and Spark too: their workers share this machine's disk)")
    args = ap.parse_args(argv)
    extra = []
    if args.one_day:
        import oneday  # noqa: F401  (sets perf's generator to one UTC day)

        extra = ["--event-time", "published"]
    extra += shlex.split(args.run_args)
    engines = [e for e in args.engines.split(",") if e]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="newsevents-engines-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for engine in engines:
        if engine != "local":  # fetch the jars before timing anything
            subprocess.run(["bash", str(ROOT / "runners/jobserver.sh"), engine], check=True, stdout=subprocess.DEVNULL)
    ok, results, pool = True, [], {}
    for n in args.n:
        feed, meta, _ = perf.prepare_feed(workdir, n, args.seed, pool)
        print(f"== N = {n:,}: {feed} ({meta['bytes'] / MB:.0f} MB, {meta['blocks']:,} blocks)", flush=True)
        outs = {}
        for engine in engines:
            out = workdir / f"out-{engine}-n{n}"
            shutil.rmtree(out, ignore_errors=True)
            cmd, env = command(engine, feed, out, extra)
            r = timed(cmd, env, workdir / f"{engine}-n{n}.log")
            r.update(engine=engine, n=n, cmd=" ".join(cmd))
            if r["rc"] != 0:
                tail = (workdir / f"{engine}-n{n}.log").read_text("utf-8", "replace").splitlines()[-15:]
                print(f"{engine}: FAILED (exit {r['rc']})\n" + "\n".join(tail))
                ok = False
            else:
                outs[engine] = out
                if "local" in outs and engine != "local":
                    r["diff"] = differences(outs["local"], out)
                    r["rows_equal"] = all(d["missing"] == d["extra"] == 0 for d in r["diff"].values())
                    ok &= r["rows_equal"]
                print(f"{engine:6s} {r['seconds']:7.1f} s  cpu/wall {r['cpu_seconds'] / r['seconds']:.2f}  "
                      f"largest process {r['largest_mb']:7.1f} MB ({r['largest'][:60]})  tree {r['tree_mb']:.0f} MB"
                      + (f"  rows equal to local: {r['rows_equal']}" if "rows_equal" in r else ""), flush=True)
            results.append(r)
        if not args.keep:
            for out in outs.values():
                shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(results))
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
