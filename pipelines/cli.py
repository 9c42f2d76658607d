"""`newsevents` command line.

    newsevents run --input PATH... --output DIR [--format auto|text|jsonl|liveblog|headlines-csv|headlines-json] [...]
    newsevents sql DIR "SELECT ..."     # DuckDB over views events, duplicates, rejects, quality
    newsevents report DIR --html PATH   # one self-contained HTML page of charts

Exit status: 0 when the run succeeded (rejects included); 2 with one line on stderr for
unusable arguments (unknown options included), a missing input or an output location that
cannot be written or listed; 75 when another run holds the output (try again later); 1 for a
failed run, with one line saying why: the machine failed it (a full disk, a read-only file
system), the job server did not start, an SDK worker could not be reached or died, or the
engine failed the job (after the engine's own log lines).
"""
from __future__ import annotations

import collections
import errno
import logging
import os
import re
import sys
import tempfile
import threading

_default_excepthook = threading.excepthook
USAGE = __doc__.split("\n\n")[1]
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
    from pipelines.lock import LockError
    from pipelines.news_events import NewsEventsOptions, UsageError, pipeline_options, run, summary
    from transforms.sink import OutputStateError

    if not any(a == "--input" or a.startswith("--input=") for a in argv):
        return _error("--input is required")
    if not any(a == "--output" or a.startswith("--output=") for a in argv):
        return _error("--output is required")
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


def _sql(argv: list[str]) -> int:
    from pipelines.sql import SqlError, print_query

    if len(argv) != 2:
        return _error('usage: newsevents sql DIR "SELECT ..."')
    try:
        print_query(argv[0], argv[1])
    except SqlError as e:
        return _error(str(e))
    return 0


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
    argv = list(sys.argv[1:] if argv is None else argv)
    threading.excepthook = _quiet_closed_channels
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # handler filters see every logger's records
        handler.addFilter(_quiet_optional_clients)
        handler.addFilter(_quiet_step_tracebacks)
    logging.getLogger().addFilter(_quiet_optional_clients)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        return _run(rest)
    if command == "sql":
        return _sql(rest)
    if command == "report":
        from pipelines.report import main_report

        return main_report(rest)
    return _error(f"unknown command {command!r} (expected run, sql or report)")


if __name__ == "__main__":
    sys.exit(main())
