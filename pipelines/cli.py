"""`newsevents` command line.

    newsevents run --input PATH... --output DIR [--format auto|text|jsonl|liveblog|headlines-csv|headlines-json] [...]
    newsevents sql DIR "SELECT ..."     # DuckDB over views events, duplicates, rejects, quality
    newsevents report DIR --html PATH   # one self-contained HTML page of charts

Exit status: 0 when the run succeeded (rejects included); 2 with one line on stderr for
unusable arguments (unknown options included), a missing input or an output location that
cannot be written or listed; 75 when another run holds the output (try again later); 1 for a
failed run (one line when the machine failed it: a full disk, a read-only file system).
"""
from __future__ import annotations

import errno
import logging
import re
import sys

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
    except Exception as e:  # noqa: BLE001 - a machine failure is one line; anything else is raised
        reason = environment_error(e)
        if reason is None:
            raise
        return _error(f"run failed: {reason}; the output is as before the run, or is finished by the "
                      f"next run if the failure came after the commit point: fix it and run again", 1)
    return 0


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
    # Beam warns at import that Google Cloud clients are absent; they are optional here.
    return "apitools not found" not in record.getMessage()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
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
