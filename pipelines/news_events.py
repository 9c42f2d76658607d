"""The newsevents pipeline: wiring only; every step is a composite in `transforms/`.

    Read -> Split -> Normalize -> LoadPriorState -> DedupSnapshots -> ResolveEventTime
         -> WindowByDay -> DedupDaySpread (exact, near) -> UpdateIndex -> WriteDataset
    (a streaming window's pane: DedupDay, the day whole)
    every step's bad input -> rejects (flattened, written to the `rejects` table)

`preflight(options)` checks the arguments, probes the output, lists the inputs and decides
the run's policies (a `Plan`) before anything is wired; `build` only wires.

`build(p, options)` returns the named PCollections; `run(argv)` checks the arguments, builds
and runs. `python -m pipelines.news_events --input ... --output ...` is `newsevents run`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import difflib
import glob
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipelines.lock import OutputLock
from pipelines.stream import is_stream, run_stream  # the live stream; also registers its options
from transforms.common import REJECTS
from transforms.event_time import resolve_batch
from transforms.dedup import DEFAULT_SHARDS, DedupDay, DedupSnapshots, NearDetector
from transforms.dedup_spread import DedupDaySpread
from transforms.neardup import DEFAULT_SHINGLE, DEFAULT_THRESHOLD
from transforms.normalize import Normalize
from transforms.read import FORMATS, ReadUpdates
from transforms.sink import STAGING, Stager, WriteDataset, join
from transforms.spill import remove as remove_spill
from transforms.split import SplitEvents
from transforms.common import filesystem_options
from transforms.sink import migrate, recover
from transforms.state import OCCURRENCE_SCHEMA, LoadPriorState, PriorDays, UpdateIndex
from transforms.windowing import LATE, ResolveEventTime, WindowByDay, day_marker, days_of, parse_duration


class UsageError(Exception):
    """A user error: reported as one line on stderr, exit status 2, no traceback."""


class NewsEventsOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", action="append", nargs="+", default=None,
                            help="input file, directory or glob; repeatable")
        parser.add_argument("--output", default=None, help="output dataset root (folder or URL)")
        parser.add_argument("--format", default="auto", help=f"input format: {', '.join(FORMATS)} (default: auto)")
        parser.add_argument("--shards", type=int, default=None,
                            help=f"article shards for the snapshot dedup shuffle (default: one per "
                                 f"{SHARD_BYTES >> 20} MB of input, at least {DEFAULT_SHARDS})")
        parser.add_argument("--allowed-lateness", "--allowed_lateness", dest="allowed_lateness",
                            default="7d",
                            help="how long after its day ends an update is still accepted (e.g. 36h, 7d; "
                                 "default 7d); later ones become rejects (stage window, reason late)")
        parser.add_argument("--event-time", "--event_time", dest="event_time", default="text",
                            help="text: the day stated in the block, else publication time (default); "
                                 "published: always the publication time")
        parser.add_argument("--progress", action="store_true",
                            help="log progress even when stderr is not a terminal")
        parser.add_argument("--progress-every", "--progress_every", dest="progress_every", type=float,
                            default=10.0, help="seconds between progress lines (default 10)")
        parser.add_argument("--near", default="on", help="near-duplicate detection within a day: on (default) or off")
        parser.add_argument("--near-threshold", "--near_threshold", dest="near_threshold", type=float,
                            default=DEFAULT_THRESHOLD,
                            help=f"similarity (max of Jaccard and guarded containment of word shingles) at "
                                 f"which two events of a day are near duplicates (default {DEFAULT_THRESHOLD})")
        parser.add_argument("--shingle-size", "--shingle_size", dest="shingle_size", type=int,
                            default=DEFAULT_SHINGLE, help=f"words per shingle (default {DEFAULT_SHINGLE})")
        parser.add_argument("--date", default=None,
                            help="the run's day (YYYY-MM-DD): replaces {date} in every --input pattern, "
                                 "e.g. --input 'drops/{date}/**' --date 2024-03-05")
        parser.add_argument("--spill", default="auto",
                            help="carry the big tables across each shuffle as Arrow files, with only references "
                                 "through the runner: auto (default: on with the local runner, which holds "
                                 "shuffles in memory; off on other runners, whose shuffles spill to disk), on, off")
        parser.add_argument("--spill-dir", "--spill_dir", dest="spill_dir", default=None,
                            help="folder for the spill files (default: DIR/_staging/<run>/spill for a local "
                                 "output, else the system temp folder); every worker must see it")
        parser.add_argument("--run_token", default=None, help=argparse.SUPPRESS)


def _has_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def _visible(path: str, root: str) -> bool:
    rel = path[len(root):] if path.startswith(root) else path
    return not any(part.startswith((".", "_")) for part in rel.replace("\\", "/").split("/") if part)


def substitute_date(patterns: list[str], date: str | None) -> list[str]:
    """Replace `{date}` in each pattern by the run's `--date` (checked as YYYY-MM-DD)."""
    if date is not None:
        try:
            dt.date.fromisoformat(date)
        except ValueError:
            raise UsageError(f"--date must be YYYY-MM-DD, not {date!r}") from None
    out = []
    for p in patterns:
        if "{date}" in p:
            if date is None:
                raise UsageError(f"input {p} has {{date}} but no --date was given")
            p = p.replace("{date}", date)
        out.append(p)
    return out


def _dangling_links(query: str) -> list[str]:
    """Local symlinks matching `query` whose target is missing (Beam's match leaves them out)."""
    if "://" in query:
        return []
    return [p for p in glob.glob(query, recursive=True) if os.path.islink(p) and not os.path.exists(p)]


def expand_inputs(patterns: list[str]) -> list[tuple[str, int]]:
    """(uri, size) of every input file, sorted and without repeats; UsageError if one is missing.

    A directory means every file under it, except hidden ones (names starting with `.` or `_`).
    Dangling symlinks, FIFOs, sockets and devices are listed too (size 0) and never opened: the
    read step makes each a rejects row (`dangling_symlink`, `not_a_regular_file`).
    """
    found: dict[str, int] = {}
    for pattern in patterns:
        is_dir = not _has_glob(pattern) and "://" not in pattern and os.path.isdir(pattern)
        query = join(pattern, "**") if is_dir else pattern
        try:
            metas = [(m.path, m.size_in_bytes) for m in FileSystems.match([query])[0].metadata_list]
            metas += [(p, 0) for p in _dangling_links(query)]
        except Exception as e:  # BeamIOError for unreachable locations
            raise UsageError(f"cannot read input {pattern}: {e}") from None
        if is_dir:
            metas = [m for m in metas if _visible(m[0], pattern)]
        metas = [m for m in metas if not (m[0].startswith("/") and os.path.isdir(m[0]))]
        if not metas:
            raise UsageError(f"input not found: {pattern}")
        for path, size in metas:
            path = os.path.abspath(path) if "://" not in path else path
            found[path] = size
    return sorted(found.items())


def check_output(root: str) -> None:
    """Fail at start-up, with the reason, when the output location cannot be written."""
    if "://" not in root:
        if os.path.exists(root) and not os.path.isdir(root):
            raise UsageError(f"output location is not a directory: {root}")
    probe = join(root, f"_probe-{uuid.uuid4().hex}")
    try:
        with FileSystems.create(probe) as f:
            f.write(b"probe\n")  # not empty: S3 refuses a multipart upload without parts
    except Exception as e:
        reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
        try:
            _remove_probe(probe)  # created, then the write or close failed (a full disk)
        except UsageError as gone:
            reason = f"{reason} (and {gone})"
        raise UsageError(f"cannot write output location {root}: {reason}") from None
    _remove_probe(probe)


def _remove_probe(probe: str) -> None:
    try:
        if FileSystems.exists(probe):
            FileSystems.delete([probe])
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"cannot remove {probe} from the output location: "
                         f"{getattr(e, 'strerror', None) or str(e).splitlines()[0]}") from None


@dataclass(frozen=True)
class Plan:
    """What preflight decided before anything is wired: the steps only read it."""

    files: list  # (uri, size) of every input file
    input_bytes: int
    token: str  # this run's id: staging and spill folder names
    spill: str | None  # folder the big shuffles spill to, or None (the runner's own shuffle)
    lateness: int  # allowed lateness in seconds
    reader: ReadUpdates  # the configured steps
    snapshots: DedupSnapshots
    near: NearDetector | None
    day_shards: int  # a batch run's day dedup: fingerprint shards a day (DedupDaySpread)


def preflight(options: PipelineOptions, argv: list[str] | None = None) -> Plan:
    """Check the arguments, probe the output, list the inputs and choose the run's policies,
    before any wiring: everything a run can refuse is refused here, in one place.

    The policies are the launcher's, decided here once: spill the big shuffles to files
    (`--spill auto` = on with Beam's DirectRunner, whose shuffles live in memory, off with every
    other runner, whose workers may not share a disk) and, on the DirectRunner, one worker
    process per core for big inputs (`choose_local_workers`). Options are set here, before the
    Pipeline takes its copy; nothing changes them after the pipeline is built.
    """
    opts = options.view_as(NewsEventsOptions)
    patterns = [x for group in (opts.input or []) for x in group]
    if not patterns:
        raise UsageError("--input is required")
    patterns = substitute_date(patterns, opts.date)
    if not opts.output:
        raise UsageError("--output is required")
    if opts.event_time not in ("text", "published"):
        raise UsageError(f"--event-time must be text or published, not {opts.event_time!r}")
    try:
        lateness = parse_duration(opts.allowed_lateness)
    except ValueError as e:
        raise UsageError(f"--allowed-lateness: {e}") from None
    if opts.near not in ("on", "off"):
        raise UsageError(f"--near must be on or off, not {opts.near!r}")
    if opts.spill not in ("auto", "on", "off"):
        raise UsageError(f"--spill must be auto, on or off, not {opts.spill!r}")
    files = expand_inputs(patterns)
    input_bytes = sum(size for _, size in files)
    every = max(opts.progress_every, 1e-6) if (opts.progress or sys.stderr.isatty()) else 0.0
    token = opts.run_token or uuid.uuid4().hex
    spill = spill_folder(options, token)
    try:  # the steps check their own configuration; here their message becomes a usage error
        reader = ReadUpdates(opts.format, len(files), input_bytes, every)
        snapshots = DedupSnapshots(opts.shards if opts.shards is not None else auto_shards(input_bytes), spill=spill)
        near = NearDetector(opts.near_threshold, opts.shingle_size) if opts.near == "on" else None
    except ValueError as e:
        raise UsageError(str(e)) from None
    check_output(opts.output)  # after every other check: a refused command leaves no folder behind
    choose_local_workers(options, list(argv or []), input_bytes)
    return Plan(files, input_bytes, token, spill, lateness, reader, snapshots, near, snapshots.shards)


def build(p: beam.Pipeline, options: PipelineOptions, plan: Plan | None = None) -> dict:
    """Wire the steps, as the flow in the module docstring (and README) draws them. Returns
    the named PCollections: `rejects` (every step's), `committed` (files committed, once).

    `plan` is what `preflight(options)` decided; without one, build runs preflight itself
    (then on the Pipeline's own copy of the options, which it must not change: pass a plan).
    """
    plan = plan or preflight(options)
    opts = options.view_as(NewsEventsOptions)

    root = opts.output.rstrip("/")
    fs_options = filesystem_options(options)
    streaming = bool(options.view_as(StandardOptions).streaming)

    read = p | "Files" >> beam.Create(plan.files) | "Read" >> plan.reader
    updates = read["updates"]
    blocks = updates | "Split" >> SplitEvents()
    normalized = blocks | "Normalize" >> Normalize()
    state = normalized["blocks"] | "LoadPriorState" >> LoadPriorState(root)
    marked = (state["new"], state["prior"]) | "DedupSnapshots" >> plan.snapshots
    timed = marked | "ResolveEventTime" >> ResolveEventTime(resolve_batch if opts.event_time == "text" else None)
    # a batch run spreads each day over (day, fingerprint shard) and (day, LSH bucket shard)
    # groups; a streaming window's pane is deduplicated whole, so that a later pane replaces it
    shards = 0 if streaming else plan.day_shards
    recompute = state["recompute"]
    if shards and not plan.spill:
        # without spill files each fingerprint shard of a day is a group of its own, and a
        # group exists only where rows land: every shard of a day with new rows must exist, to
        # read its share of the day's earlier rows (with spill files `coalesce` sees the day)
        new_days = (timed
                    | "DaysWithRows" >> beam.FlatMap(days_of)
                    | "DistinctDays" >> beam.Distinct()
                    | "NewDayMarkers" >> beam.Map(day_marker, OCCURRENCE_SCHEMA))
        recompute = (recompute, new_days) | "RecomputeOrNewDays" >> beam.Flatten()
    windowed = timed | "WindowByDay" >> WindowByDay(plan.lateness, streaming, plan.spill, recompute=recompute,
                                                    shards=shards)
    prior, stager = PriorDays(root, fs_options), Stager(root, plan.token, fs_options)
    if streaming:
        day_dedup = DedupDay(plan.near, prior, state["exclusions"], stager=stager)
    else:
        day_dedup = DedupDaySpread(plan.near, prior, state["exclusions"], stager=stager, shards=shards, spill=plan.spill)
    deduped = windowed["days"] | "DedupDay" >> day_dedup
    index = (state["index_keep"], deduped["index"]) | "UpdateIndex" >> UpdateIndex()
    rejects = (read[REJECTS], normalized[REJECTS], windowed[LATE]) | "AllRejects" >> beam.Flatten()
    committed = ({"parts": (deduped["parts"], index), "rejects": rejects}
                 | "Write" >> WriteDataset(opts.output, plan.token, [uri for uri, _ in plan.files]))
    return {"rejects": rejects, "committed": committed}


# Input bytes per snapshot shard by default: a shard group then holds ~50k blocks, so a
# worker's memory for the snapshot dedup does not grow with the run.
SHARD_BYTES = 16 << 20


def auto_shards(input_bytes: int) -> int:
    return min(4096, max(DEFAULT_SHARDS, -(-input_bytes // SHARD_BYTES)))


# Beam's DirectRunner, under the names a user may give it: the local engine, whose shuffles
# live in this process's memory. Only the launcher (this module) looks at the runner.
DIRECT_RUNNER_NAMES = ("directrunner", "direct", "switchingdirectrunner", "bundlebaseddirectrunner")


def is_direct_runner(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__ if runner else "DirectRunner"
    return name.rsplit(".", 1)[-1].lower() in DIRECT_RUNNER_NAMES


def spill_folder(options: PipelineOptions, token: str) -> str | None:
    """Where this run spills its shuffles (`transforms.spill`), or None when it does not.

    `--spill auto` is on with the DirectRunner only: its shuffles are held in memory, and its
    workers share this machine's disk. Flink, Spark and Dataflow shuffle (and spill) themselves,
    and their workers need not see one disk."""
    opts = options.view_as(NewsEventsOptions)
    if opts.spill == "off" or (opts.spill == "auto" and not is_direct_runner(options)):
        return None
    if opts.spill_dir:
        return join(opts.spill_dir.rstrip("/"), token)
    root = opts.output.rstrip("/")
    if "://" in root:
        return os.path.join(tempfile.gettempdir(), f"newsevents-spill-{token}")
    return join(root, STAGING, token, "spill")


def check_arguments(argv: list[str]) -> None:
    """UsageError, one line, for an option no options class knows (a misspelling such as
    `--near-treshold 0.9`, which Beam would drop with a warning and run with the default) or a
    value argparse refuses. Parsed as Beam parses: with every registered options class, so
    Beam's own options (`--runner`, `--job_endpoint`, `--flink_master`, ...) pass."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    class Parser(_BeamArgumentParser):
        def error(self, message):
            raise UsageError(message)

    parser = Parser()
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # as PipelineOptions.get_all_options does
    _, unknown = parser.parse_known_args(argv)
    if not unknown:
        return
    first = next((a for a in unknown if a.startswith("-")), unknown[0])
    if not first.startswith("-"):
        raise UsageError(f"unexpected argument {first!r} (options start with --)")
    name = first.split("=", 1)[0]
    close = difflib.get_close_matches(name, [o for o in parser._option_string_actions if o.startswith("--")], n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UsageError(f"unknown option {name}{hint}")


def pipeline_options(argv: list[str]) -> PipelineOptions:
    check_arguments(argv)
    given = {a.split("=", 1)[0] for a in argv}
    # Beam parses each options view with only that view's flags and argparse's prefix matching, so
    # `--output DIR` would also set PortableOptions' `--output_executable_path` (the Flink and
    # Spark job servers then write a jar to DIR). A value preset here is one no view overwrites.
    preset = {} if "--output_executable_path" in given else {"output_executable_path": None}
    return PipelineOptions(argv, **preset)


# Below this much input, starting worker processes costs more than they save (BENCHMARKS.md).
AUTO_WORKERS_BYTES = 32 << 20
# glibc malloc arenas of each worker process started here (MALLOC_ARENA_MAX, read when a
# process starts; Hadoop sets the same for YARN containers). An SDK worker runs bundles in
# many threads, each of which gets an arena of its own by default (up to 8 per core), and
# freed memory kept in them grew a worker's resident set from call to call: on the one-day
# 1M feed the largest process was 802-864 MB with the default, 734 MB with 4 arenas and
# 746 MB with 2, in the same time (BENCHMARKS.md). A value in the environment is kept.
WORKER_MALLOC_ARENAS = 4


def choose_local_workers(options: PipelineOptions, argv: list[str], input_bytes: int) -> int:
    """`--direct_num_workers` where it pays: with the DirectRunner and neither
    `--direct_num_workers` nor `--direct_running_mode` given, an input of AUTO_WORKERS_BYTES
    or more runs on one worker process per core (`multi_processing`: Python computes on one
    core per process), started with WORKER_MALLOC_ARENAS glibc arenas unless the environment
    sets MALLOC_ARENA_MAX. Returns the number of workers the run gets."""
    direct = options.view_as(DirectOptions)
    given = any(a.split("=", 1)[0] in ("--direct_num_workers", "--direct_running_mode") for a in argv)
    cores = os.cpu_count() or 1
    if given or not is_direct_runner(options) or input_bytes < AUTO_WORKERS_BYTES or cores < 2:
        return direct.direct_num_workers or 1
    direct.direct_num_workers = cores
    direct.direct_running_mode = "multi_processing"
    os.environ.setdefault("MALLOC_ARENA_MAX", str(WORKER_MALLOC_ARENAS))  # the workers inherit it
    return cores


def run(argv: list[str] | None = None):
    """Check, build and run; returns the Beam PipelineResult (its metrics hold the counters)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    options = pipeline_options(argv)
    # check_output and expand_inputs run before beam.Pipeline() hands the options to FileSystems:
    # without this they use none (S3: "Must provide one of client or options") or a previous run's
    FileSystems.set_options(options)
    opts = options.view_as(NewsEventsOptions)
    if is_stream([x for group in (opts.input or []) for x in group]):
        return run_stream(argv, options)
    plan = preflight(options, argv)
    p = beam.Pipeline(options=options)
    build(p, options, plan)
    with OutputLock(opts.output):
        recover(opts.output)  # finish or discard what a killed run left
        migrate(opts.output)  # a dataset written before occurrence identity
        try:
            result = p.run()
            result.wait_until_finish()
        finally:
            remove_spill(plan.spill)  # a local output's commit already removed it with the staging folder
    return result


def counters(result) -> dict[str, int]:
    """The run's `newsevents` counters (committed values where the runner has them)."""
    out: dict[str, int] = {}
    for c in result.metrics().query()["counters"]:
        if c.key.metric.namespace == "newsevents":
            value = c.committed if c.committed is not None else c.attempted
            out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return out


def summary(result, output: str, max_days: int = 31) -> str:
    """The end-of-run table: this run's totals, rejects by reason, the output's days."""
    from pipelines.sql import connect

    c = counters(result)
    lines = [
        f"read {c.get('files_read', 0)} files ({c.get('bytes_read', 0) / 1e6:.1f} MB), "
        f"{c.get('blocks', 0) + c.get('rejects', 0)} blocks: {c.get('events', 0)} events, "
        f"{c.get('exact_duplicates', 0)} exact and {c.get('near_duplicates', 0)} near duplicates, "
        f"{c.get('redelivered', 0)} redelivered, "
        f"{c.get('rejects', 0)} rejects ({c.get('late', 0)} late)",
    ]
    reasons = sorted((k.split(".", 1)[1], v) for k, v in c.items() if k.startswith("rejects."))
    if reasons:
        lines.append("rejects by reason: " + ", ".join(f"{r} {n}" for r, n in reasons))
    if "://" in output:  # DuckDB reads s3:// or gs:// only with its httpfs extension, not bundled
        lines.append(f"output: {output}")
        return "\n".join(lines)
    rows = connect(output).sql(
        "SELECT coalesce(event_date::VARCHAR, '(no day)'), blocks_read, events_written, exact_duplicates,"
        " near_duplicates, redelivered, late, rejected FROM quality ORDER BY event_date DESC NULLS LAST").fetchall()
    head = ("day", "blocks", "events", "exact", "near", "redelivered", "late", "rejects")
    shown = rows[:max_days]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *shown)] if shown else [len(h) for h in head]
    lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    shown.sort(key=lambda r: (r[0].startswith("("), r[0]))
    lines += ["  ".join(str(x).rjust(w) for x, w in zip(r, widths)) for r in shown]
    if len(rows) > max_days:
        lines.append(f"... and {len(rows) - max_days} earlier days (newsevents sql {output} \"SELECT * FROM quality\")")
    lines.append(f"output: {output}")
    return "\n".join(lines)


if __name__ == "__main__":
    # Run as a script this module is `__main__`; register it under its own name so that
    # pipelines.cli imports this very module (a second copy would declare the options twice).
    sys.modules.setdefault("pipelines.news_events", sys.modules[__name__])
    from pipelines.cli import main

    sys.exit(main(["run", *sys.argv[1:]]))
