"""`newsevents` command line.

    newsevents run --input PATH... --output DIR [--format auto|text|jsonl|liveblog|headlines-csv|headlines-json] [...]
    newsevents sql DIR "SELECT ..."     # DuckDB over views events, duplicates, rejects, quality
    newsevents report DIR --html PATH   # one self-contained HTML page of charts

Each command has --help; `newsevents run --help` lists the pipeline's options. Beam's own
pipeline options (--runner, --job_endpoint, ...) pass through `run` to Beam as given.

Exit status: 0 when the run succeeded (rejects included); 2 with one line on stderr for
unusable arguments (unknown options included), a missing input or an output location that
cannot be written or listed; 75 when another run holds the output (try again later); 1 for a
failed run, with one line saying why: the machine failed it (a full disk, a read-only file
system), the job server did not start, an SDK worker could not be reached or died, or the
engine failed the job (after the engine's own log lines).
"""
from __future__ import annotations

import argparse
import collections
import errno
import logging
import os
import re
import sys
import tempfile
import threading

_default_excepthook = threading.excepthook
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the output; a scheduler may retry


def _error(msg: str, code: int = 2) -> int:
    print(f"newsevents: error: {msg}", file=sys.stderr)
    return code


# Failures of the machine, not of newsevents: reported as one line (exit 1), not a traceback.
ENVIRONMENT_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                      errno.EROFS: "read-only file system", errno.EIO: "input/output error",
                      errno.EACCES: "permission denied", errno.EMFILE: "too many open files"}
_ERRNO_RE = re.compile(r"\[Errno (\d+)\] [^:\n\]]*(?::\s*'([^'\n]*)')?")


def environment_error(exc: BaseException) -> str | None:
    """'no space left on device (PATH)' when `exc` is, wraps or names one of ENVIRONMENT_ERRNOS,
    else None. Beam re-raises a step's error as a RuntimeError whose context (or, from worker
    processes, only whose message) holds the OSError; BeamIOError keeps it in exception_details."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:
            where = e.filename if isinstance(e.filename, str) else None
            return ENVIRONMENT_ERRNOS[e.errno] + (f" ({where})" if where else "")
        details = getattr(e, "exception_details", None)
        todo += [e.__cause__, e.__context__, *(details.values() if isinstance(details, dict) else ())]
    for m in _ERRNO_RE.finditer(str(exc)):
        code = int(m.group(1))
        if code in ENVIRONMENT_ERRNOS:
            return ENVIRONMENT_ERRNOS[code] + (f" ({m.group(2)})" if m.group(2) else "")
    return None


def _quiet_step_tracebacks(record: logging.LogRecord) -> bool:
    # Beam logs a failed step's traceback before it re-raises the error to the caller, who
    # reports it once: as one line for a machine failure, else with its traceback.
    return not (record.name.startswith("apache_beam") and record.levelno >= logging.ERROR
                and (record.exc_info or "Traceback" in record.getMessage() or "[while running" in record.getMessage()))


def _run(argv: list[str]) -> int:
    """`newsevents run`: `argv` is every argument after `run` (newsevents and Beam pipeline
    options, unparsed: `pipeline_options` refuses an unknown one, `preflight` the rest)."""
    from pipelines.lock import LockError
    from pipelines.news_events import NewsEventsOptions, UsageError, pipeline_options, run, summary
    from transforms.sink import OutputStateError

    job_server = _JobServerLog()
    try:
        result = run(argv)
        print(summary(result, pipeline_options(argv).view_as(NewsEventsOptions).output))
    except UsageError as e:
        return _error(str(e))
    except LockError as e:
        return _error(str(e), EXIT_LOCKED)
    except OutputStateError as e:
        return _error(str(e))
    except SystemExit as e:  # argparse inside Beam's options parser
        return int(e.code or 0) if e.code not in (None, 0) else 0
    except Exception as e:  # the run failed: one line that says why, the details in the log above
        logging.getLogger(__name__).debug("run failed", exc_info=True)
        reason = environment_error(e)
        if reason is not None:
            return _error(f"run failed: {reason}; the output is as before the run, or is finished by the "
                          f"next run if the failure came after the commit point: fix it and run again", 1)
        return _error(explain_failure(e, job_server), 1)
    finally:
        job_server.close()
    return 0


class _JobServerLog(logging.Handler):
    """The output of a job server Beam starts (Flink, Spark: `java -jar ...`), which Beam logs
    line by line at INFO: kept in a file and its last lines in memory, off the console."""

    LOGGER = "apache_beam.utils.subprocess_server"

    def __init__(self):
        super().__init__(logging.INFO)
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.path: str | None = None
        self._file = None
        self._logger = logging.getLogger(self.LOGGER)
        self._saved = (self._logger.level, self._logger.propagate)
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False
        self._logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.tail.append(line.splitlines()[0] if line else line)
        if self._file is None:
            fd, self.path = tempfile.mkstemp(prefix="newsevents-job-server-", suffix=".log")
            self._file = os.fdopen(fd, "w", encoding="utf-8", errors="replace")
        self._file.write(line + "\n")
        if record.exc_info:
            self._file.write(logging.Formatter().formatException(record.exc_info) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved[0])
        self._logger.propagate = self._saved[1]
        if self._file is not None:
            self._file.close()
        super().close()


# a line of a JVM's output that says what went wrong (not a stack frame, not Flink's INFO chatter)
_JAVA_ERROR = re.compile(r"(^Error|Exception|ERROR|Caused by|[Cc]ould not|[Ff]ailed|[Uu]nable)")


def explain_failure(exc: BaseException, job_server: _JobServerLog) -> str:
    """One line for a failed run: where it failed (job server, SDK worker, engine) and why."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    details = getattr(exc, "details", None)  # a gRPC error from a job service: its own words
    if callable(details) and details():
        msg = " ".join(details().split())
    log = f" (job server log: {job_server.path})" if job_server.path else ""
    started = re.match(r"Service failed to start up with error (-?\d+)", msg)
    if started:
        said = [ln for ln in job_server.tail if _JAVA_ERROR.search(ln) and not ln.lstrip().startswith("at ")
                and "Started job service with" not in ln and "Error bringing up service" not in ln]
        why = f": {said[-1].strip()}" if said else ""
        return f"the job server did not start (java exited with status {started.group(1)}){why}{log}"
    failed = re.match(r"Pipeline \S+ failed in state (\w+): (.*)", msg)
    if failed:
        state, why = failed.groups()
        if re.search(r"ConnectException|Connection refused|SDK harness|worker", why, re.I):
            return f"the job {state.lower()} on the engine: an SDK worker could not be reached or died: {why}{log}"
        return f"the job {state.lower()} on the engine: {why}{log}"
    jar = re.match(r'Unable to parse jar URL "([^"]+)"', msg)
    if jar:  # Beam's words for a --flink_job_server_jar / --spark_job_server_jar that does not exist
        return f"job server jar not found: {jar.group(1)}"
    return f"the run failed: {type(exc).__name__}: {msg}{log}"


def _sql(args: argparse.Namespace) -> int:
    from pipelines.sql import SqlError, print_query

    try:
        print_query(args.dir, args.query)
    except SqlError as e:
        return _error(str(e))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pipelines.report import report_command

    return report_command(args.dir, args.html)


# --------------------------------------------------------------------------- the parser


class _ArgError(Exception):
    """A command line argparse refuses: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a refused command line reported as one line (`newsevents: error: ...`,
    exit 2) instead of argparse's usage block: `hint` words that line for its command, and
    `page` (when given) writes the command's --help."""

    def __init__(self, *args, hint=None, page=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.hint, self.page = hint, page

    def error(self, message: str):
        raise _ArgError(self.hint(message) if self.hint else message)

    def format_help(self) -> str:
        return self.page(self) if self.page else super().format_help()

    def _check_value(self, action, value):
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            raise argparse.ArgumentError(None, f"unknown command {value!r} (expected {COMMANDS})")
        super()._check_value(action, value)


def _top_page(parser: argparse.ArgumentParser) -> str:
    return __doc__.strip() + "\n"  # the usage of every command and the exit statuses


def _run_page(parser: argparse.ArgumentParser) -> str:
    """`newsevents run --help`: the pipeline's options (newsevents' own; Beam loaded only now)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    import pipelines.news_events  # noqa: F401  (declares the newsevents options classes)

    shown = argparse.ArgumentParser(prog=parser.prog, usage=parser.usage, description=parser.description,
                                    epilog=parser.epilog, add_help=False)
    shown.add_argument("-h", "--help", action="help", help="show this help message and exit")
    ours = [c for c in PipelineOptions.__subclasses__() if c.__module__.startswith("pipelines.")]
    for cls in sorted(ours, key=lambda c: c.__module__ != "pipelines.news_events"):  # the pipeline's first
        cls._add_argparse_args(shown.add_argument_group(f"options ({cls.__module__})"))
    return shown.format_help()


COMMANDS = "run, sql or report"


def parser() -> argparse.ArgumentParser:
    """The `newsevents` command line: one subcommand per job, each with --help. A command's
    `handler(args, rest)` runs it; `rest` is what argparse left (only `run` takes any)."""
    top = _Parser(prog="newsevents", page=_top_page)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = commands.add_parser(
        "run", page=_run_page, allow_abbrev=False,
        usage="newsevents run --input PATH... --output DIR [--format FORMAT] [options] [Beam pipeline options]",
        help="run the pipeline: inputs in, the dataset at DIR written or updated",
        description="Run the pipeline: read the inputs, write or update the dataset at DIR.",
        epilog="Beam's pipeline options (--runner, --job_endpoint, --flink_master, --direct_num_workers, ...) "
               "pass through to Beam as given. An option that neither newsevents nor Beam knows is an error.")
    run.set_defaults(handler=lambda args, rest: _run(rest), takes_rest=True)
    sql = commands.add_parser("sql", hint=lambda message: 'usage: newsevents sql DIR "SELECT ..."',
                              help="query the dataset with DuckDB",
                              description="Run one SQL query with DuckDB over the dataset at DIR (views "
                                          "events, duplicates, quality and rejects) and print the result.")
    sql.add_argument("dir", metavar="DIR", help="dataset root written by `newsevents run --output DIR`")
    sql.add_argument("query", metavar="SQL", help='the query, e.g. "SELECT count(*) FROM events"')
    sql.set_defaults(handler=lambda args, rest: _sql(args))
    report = commands.add_parser("report", hint=lambda message: f"{message} (usage: newsevents report DIR --html PATH)",
                                 help="write a self-contained HTML report of the dataset",
                                 description="Write a self-contained HTML report (charts) of the dataset at DIR.")
    report.add_argument("dir", metavar="DIR", help="dataset root written by `newsevents run --output DIR`")
    report.add_argument("--html", metavar="PATH", required=True, help="HTML file to write")
    report.set_defaults(handler=lambda args, rest: _report(args))
    help_ = commands.add_parser("help", help="this text")
    help_.set_defaults(handler=lambda args, rest: top.print_help() or 0, takes_rest=True)
    for sub in commands.choices.values():
        sub.set_defaults(parser=sub)
    return top


def command(argv: list[str]) -> int:
    """Parse `argv`, run its command and return the exit status (no logging set up: `main`)."""
    if not argv:
        print(__doc__.strip())
        return 2
    if argv[0].startswith("-") and argv[0] not in ("-h", "--help"):  # the command comes first
        return _error(f"unknown command {argv[0]!r} (expected {COMMANDS})")
    try:
        args, rest = parser().parse_known_args(argv)
        if rest and not getattr(args, "takes_rest", False):
            args.parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except _ArgError as e:
        return _error(str(e))
    except SystemExit as e:  # --help
        return int(e.code or 0)
    return args.handler(args, rest)


def _quiet_optional_clients(record: logging.LogRecord) -> bool:
    # Beam warns at import that Google Cloud clients are absent; they are optional here. And it
    # warns while a job server it started is still booting (a JVM takes seconds): not a problem.
    message = record.getMessage()
    return "apitools not found" not in message and not message.startswith("Waiting for grpc channel")


def _quiet_closed_channels(args) -> None:
    # Beam's job-server client leaves a gRPC thread that reports, as a traceback, the channel that
    # Beam itself closed when the job server failed to start; the one-line error says what happened.
    if isinstance(args.exc_value, ValueError) and "Channel closed" in str(args.exc_value):
        return
    _default_excepthook(args)


def main(argv: list[str] | None = None) -> int:
    """The `newsevents` console script (and `python -m pipelines.cli`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    threading.excepthook = _quiet_closed_channels
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # handler filters see every logger's records
        handler.addFilter(_quiet_optional_clients)
        handler.addFilter(_quiet_step_tracebacks)
    logging.getLogger().addFilter(_quiet_optional_clients)
    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
