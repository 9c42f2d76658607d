"""`newsevents` command line.

    newsevents run --input PATH... --output DIR [--format auto|text|jsonl|liveblog|headlines-csv|headlines-json] [...]
    newsevents sql DIR "SELECT ..."     # DuckDB over views events, duplicates, rejects, quality
    newsevents report DIR --html PATH   # one self-contained HTML page of charts

Exit status: 0 when the run succeeded (rejects included); 2 with one line on stderr for
unusable arguments, a missing input or an unwritable output location; 75 when another run
holds the output (try again later); 1 for a failed run.
"""
from __future__ import annotations

import logging
import sys

USAGE = __doc__.split("\n\n")[1]
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the output; a scheduler may retry


def _error(msg: str, code: int = 2) -> int:
    print(f"newsevents: error: {msg}", file=sys.stderr)
    return code


def _run(argv: list[str]) -> int:
    from pipelines.lock import LockError
    from pipelines.news_events import NewsEventsOptions, UsageError, pipeline_options, run, summary

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
    except SystemExit as e:  # argparse inside Beam's options parser
        return int(e.code or 0) if e.code not in (None, 0) else 0
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
