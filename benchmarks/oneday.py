"""One-day feeds: the day dedup of this checkout, optionally beside an older checkout's (issue 13)

    .venv/bin/python benchmarks/oneday.py 250000 1000000 2000000 [--vs DIR] [--workdir DIR --keep]
                                          [--pipeline-args "..."] [--profile]

For each N: the update feed of `benchmarks/perf.py` (same generator, same real text, same
re-scrapes and edited copies), squeezed into one UTC day: articles start within 8 hours of
2022-03-01T00:00Z and their updates, re-scrapes and copies follow within minutes to hours
(all before the day ends). The pipeline runs as `newsevents run --event-time published`, so
every block lands on 2022-03-01: the whole run is one event day. With `--vs DIR` each N runs
first with the pipeline of the checkout in DIR (for example a worktree of the commit before
the spread day dedup, whose batch step held the whole day in one group), then with this
checkout, one after the other on the same feed, so that both see the same machine load; the
outputs are compared (same event ids, same duplicates count; the older step followed the
whole-day LSH rule of `near_duplicates`, this one the keyed rule, so borderline pairs may
differ). Printed per N and step: wall time, the largest process (peak RSS, sampled with VmHWM
as in perf.py; and the largest sampled anonymous memory of a process, RssAnon: the resident
set without file pages such as the memory-mapped spill files), CPU time of the process tree / wall (2.0 = both cores busy all the time), and
the invariant check of perf.py. A final line per step gives the ratios to the first N (goals:
largest process within 1.3x, time linear in N, CPU/wall >= 1.6). `--profile` runs each N in
one process under cProfile instead and prints the top functions. `--bucket-stats` has every
LSH bucket group of the runs write where its time went (`dedup_spread.STATS_ENV`) and prints
per N the sums over the groups: seconds and minor page faults per phase (open its pieces,
read the band rows, find the buckets, copy the survivors out of the node dictionaries,
rank them, the verification rounds, the stars), and the groups' counts (dictionaries read
per group, survivors decoded, verified edges).

`--constant-density M` is a control for the time goal: the generator recombines a fixed pool
of real paragraphs (about 25k titles and 14k sentences), so the bigger the feed, the more
often each paragraph comes back and the denser its near-duplicate clusters (verified edges
per survivor triple from 250k to 2M). With this option an N below M draws from N/M of the
pool's titles and sentences (a sample, seeded), so each paragraph comes back about as often
at every N up to M: the duplicates have the same structure at every N, and the time of a
pipeline that scales linearly grows linearly. These feeds live in `density-M/` under the
workdir; at N >= M the feed is the usual one.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # noqa: E402

STATS_ENV = "NEWSEVENTS_BUCKET_STATS"  # transforms.dedup_spread.STATS_ENV (not imported: as perf.py, the driver imports no Beam)

# one day: starts within 8 h, gaps and delays shrunk so that the last copy is out by ~20:00Z
perf.START_SPAN = 8 * 3600
perf.UPDATE_GAP_MEAN = 10 * 60      # capped at 4x: 12 updates within 8 h
perf.RESCRAPE_DELAY_MEAN = 30 * 60  # capped at 4x: 2 h
perf.COPY_DELAY_MEAN = 15 * 60      # capped at 6x: 1.5 h
perf.GENERATOR_VERSION = "oneday-1"
MB = 1 << 20


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def summary(out: Path) -> dict:
    """Event ids and duplicates count of a finished run (to compare the steps)."""
    import pyarrow.dataset as ds

    ev = ds.dataset(out / "events", format="parquet", partitioning="hive").to_table(columns=["event_id"])
    dups = ds.dataset(out / "duplicates", format="parquet", partitioning="hive").count_rows()
    return {"events": sorted(ev.column("event_id").to_pylist()), "duplicates": dups}


def profile(n: int, args, workdir: Path, pool_cache: dict) -> None:
    """The run in one process (`--direct_running_mode in_memory`) under cProfile: where the
    time of each step goes. Prints the functions of the project by own and cumulative time."""
    import cProfile  # noqa: F401 (run as a module below)
    import pstats
    import subprocess
    import time

    feed, meta, _ = feed_for(n, args, workdir, pool_cache)
    out = workdir / f"prof-out-n{n}"
    shutil.rmtree(out, ignore_errors=True)
    stats = workdir / f"n{n}.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(stats), "-m", "pipelines.cli", "run", "--input", str(feed),
           "--output", str(out), "--event-time", "published",
           "--direct_running_mode", "in_memory", *shlex.split(args.pipeline_args)]
    t0 = time.perf_counter()
    with open(workdir / f"prof-n{n}.log", "wb") as log:
        rc = subprocess.call(cmd, cwd=perf.ROOT, stdout=log, stderr=subprocess.STDOUT)
    print(f"== profile N = {n:,}: rc {rc}, {time.perf_counter() - t0:.1f} s (profiled, one process); "
          f"{stats}", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    if rc == 0:
        p = pstats.Stats(str(stats))
        p.sort_stats("tottime").print_stats(r"transforms|numpy|pyarrow|apache_beam", 25)
        p.sort_stats("cumulative").print_stats(r"transforms/(dedup|dedup_spread|neardup|spill|sink)\.py", 30)


def bucket_stats(log: Path) -> dict | None:
    """The sums over a run's `bucket-group` lines (transforms.dedup_spread._Clock)."""
    groups, torn = [], 0
    for line in log.read_text(errors="replace").splitlines():
        if "bucket-group {" in line:
            try:
                groups.append(json.loads(line.split("bucket-group ", 1)[1]))
            except ValueError:  # two workers' lines run together: counted, not summed
                torn += 1
    if not groups:
        return None
    keys = sorted({k for g in groups for k in g} - {"survivors_in_dictionaries"})
    out = {"groups": len(groups)}
    out.update({k: round(sum(g.get(k, 0) for g in groups), 1) for k in keys})
    # every group of a day reads every fingerprint shard's dictionary: the day's survivors
    out["day_survivors"] = max(g.get("survivors_in_dictionaries", 0) for g in groups)
    out["dictionaries_per_group"] = round(out.get("dictionaries", 0) / len(groups), 1)
    out["decoded_per_group"] = round(out.get("decoded", 0) / len(groups))
    out["edges_per_survivor"] = round(out.get("edges", 0) / max(out["day_survivors"], 1), 2)
    if torn:
        out["unreadable_lines"] = torn
    return out


def scaled_pool(pool: dict, n: int, full_at: int, seed: int) -> dict:
    """`pool` with n/full_at of its titles and sentences (a seeded sample; all at n >= full_at)."""
    if n >= full_at:
        return pool
    rng = random.Random(seed)
    frac = n / full_at
    return {**pool, **{k: rng.sample(pool[k], max(1000, round(len(pool[k]) * frac))) for k in ("titles", "sentences")}}


def feed_for(n: int, args, workdir: Path, pool_cache: dict):
    """perf.prepare_feed, or with --constant-density the feed from a pool cut to N."""
    if not args.constant_density or n >= args.constant_density:
        return perf.prepare_feed(workdir, n, args.seed, pool_cache)
    folder = workdir / f"density-{args.constant_density}"
    folder.mkdir(parents=True, exist_ok=True)
    if "full" not in pool_cache:
        pool_cache["full"] = perf.load_pool()
    own = {"pool": scaled_pool(pool_cache["full"], n, args.constant_density, args.seed)}
    return perf.prepare_feed(folder, n, args.seed, own)


def one(n: int, step: str, code: Path | None, args, workdir: Path, pool_cache: dict) -> dict:
    """One run over the one-day feed of N: `step` names it ("this" or "before"); `code`: the
    checkout to run (None: this one)."""
    feed, meta, reused = feed_for(n, args, workdir, pool_cache)
    print(f"== N = {n:,}, step {step}: {feed} ({'reused' if reused else 'generated'}), {meta['bytes'] / MB:.1f} MB, "
          f"{meta['blocks']:,} blocks, published {meta['first_published'][:16]} .. {meta['last_published'][:16]}, "
          f"pool {meta.get('pool_titles', '?')} titles and {meta.get('pool_sentences', '?')} sentences",
          flush=True)
    out = workdir / f"out-n{n}-{step}"
    extra = ["--event-time", "published", *shlex.split(args.pipeline_args)]
    c0 = cpu_seconds()
    run = perf.run_pipeline(feed, out, extra, workdir / f"pipeline-n{n}-{step}.log", code)
    cpu = cpu_seconds() - c0
    r = {"n": n, "step": step, "blocks": meta["blocks"], "feed_mb": round(meta["bytes"] / MB, 1), "rc": run["rc"],
         "seconds": round(run["seconds"], 1), "largest_process_mb": round(run["peak_rss_max_process"] / MB),
         "largest_anon_mb": round(run["peak_anon_max_process"] / MB),
         "sum_of_processes_mb": round(run["peak_rss_total"] / MB), "processes": len(run["per_process"]),
         "cpu_seconds": round(cpu, 1), "cpu_per_wall": round(cpu / run["seconds"], 2)}
    if run["rc"] == 0:
        check = perf.check_output(out, meta["blocks"])
        r["redelivered"] = check.get("redelivered")
        r["invariant"] = "error" not in check and check["ok"]
        r["event_days"] = check.get("event_days")
    else:
        print((workdir / f"pipeline-n{n}-{step}.log").read_text()[-3000:], file=sys.stderr)
    if args.bucket_stats:
        r["bucket_groups"] = bucket_stats(workdir / f"pipeline-n{n}-{step}.log")
        print(f"   bucket groups: {json.dumps(r['bucket_groups'])}", flush=True)
    print(f"   {r['seconds']} s, largest process {r['largest_process_mb']} MB (anonymous memory "
          f"{r['largest_anon_mb']} MB, sampled), sum {r['sum_of_processes_mb']} MB ("
          f"{r['processes']} processes), CPU {r['cpu_seconds']} s = {r['cpu_per_wall']} x wall, "
          f"invariant {r.get('invariant')}, event days {r.get('event_days')}", flush=True)
    print(json.dumps(r, separators=(",", ":")), flush=True)
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, nargs="+", help="updates in the one-day feed (several: one run each)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep feeds and outputs (a kept feed is reused)")
    ap.add_argument("--pipeline-args", default="", help="extra arguments for newsevents run")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--vs", type=Path, default=None,
                    help="a checkout of older code (its folder): each N runs with it first, then with this code")
    ap.add_argument("--constant-density", type=int, default=None, metavar="M",
                    help="feeds of N < M draw from N/M of the text pool (same duplicate structure at every N)")
    ap.add_argument("--bucket-stats", action="store_true",
                    help="every bucket group logs its phases; their sums are printed per N")
    ap.add_argument("--profile", action="store_true",
                    help="instead of timing: each run in one process under cProfile, top functions printed")
    args = ap.parse_args(argv)
    steps = ([("before", args.vs.resolve())] if args.vs else []) + [("this", None)]
    if args.bucket_stats:  # inherited by the runs (a checkout without `_Clock` ignores it)
        os.environ[STATS_ENV] = "1"
    if args.profile:
        workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="newsevents-oneday-"))).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        for n in args.n:
            profile(n, args, workdir, {})
        return 0
    created = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="newsevents-oneday-")) if created else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    results, pool_cache = [], {}
    try:
        for n in args.n:
            got = {}
            for step, code in steps:
                r = one(n, step, code, args, workdir, pool_cache)
                results.append(r)
                if r["rc"] == 0:
                    got[step] = summary(workdir / f"out-n{n}-{step}")
            if len(got) > 1:
                first, *others = list(got.values())
                same = all(o == first for o in others)
                counts = ", ".join(f"{k}: {len(v['events']):,} events, {v['duplicates']:,} duplicates"
                                   for k, v in got.items())
                # the code before followed the whole-day LSH rule, this code the keyed one (see
                # near_duplicates): they may differ in borderline pairs
                print(f"   N = {n:,}: same events and duplicates count: {same} ({counts})", flush=True)
                for r in results[-len(steps):]:
                    r["same_as_other_steps"] = same
            if not args.keep:
                for step, _ in steps:
                    shutil.rmtree(workdir / f"out-n{n}-{step}", ignore_errors=True)
    finally:
        if not args.keep and created:
            shutil.rmtree(workdir, ignore_errors=True)
    for step, _ in steps:
        mine = [r for r in results if r["step"] == step]
        if len(mine) > 1:
            b = mine[0]
            print(json.dumps({"step": step, "ratios_to_first": {f"{r['n']}/{b['n']}": {
                "n": round(r["n"] / b["n"], 2), "time": round(r["seconds"] / b["seconds"], 2),
                "largest_process": round(r["largest_process_mb"] / max(b["largest_process_mb"], 1), 2),
                "largest_anon": round(r["largest_anon_mb"] / max(b["largest_anon_mb"], 1), 2),
            } for r in mine[1:]}}, separators=(",", ":")))
    return 0 if all(r["rc"] == 0 and r.get("invariant") is True for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
