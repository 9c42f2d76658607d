"""Fault injection for the crash and concurrency tests (test code, not part of the product).

    python -m tests.faults [--mark-dir DIR] [--crash-at POINT] [--pause-at POINT:SECONDS] -- ARGS...

runs the `newsevents` command line (`pipelines.cli.main(ARGS)`) in this process, with a hook
on the run's named points (`transforms.sink.POINT_HOOKS`, called by `crash_point`). At each
point the hook first creates DIR/POINT holding this process's id (so a test knows the run got
there, and in which process), then SIGKILLs this process at --crash-at, or sleeps at
--pause-at for SECONDS.

The hook exists only in this process. The DirectRunner runs the steps in it for the small
inputs of the tests (worker processes, `multi_processing`, are chosen from 32 MB of input
on): a point reached in another process would fire nothing, and the test fails on a point
never reached rather than passing with the fault somewhere else.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time


def install(mark_dir: str | None = None, crash_at: str | None = None, pause_at: str | None = None) -> None:
    from transforms.sink import POINT_HOOKS

    pause_name, _, seconds = (pause_at or "").partition(":")

    def hook(name: str) -> None:
        if mark_dir:
            with open(os.path.join(mark_dir, name), "a") as f:
                f.write(f"{os.getpid()}\n")
        if name == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if pause_at and name == pause_name:
            time.sleep(float(seconds))

    POINT_HOOKS.append(hook)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults")
    parser.add_argument("--mark-dir")
    parser.add_argument("--crash-at", metavar="POINT")
    parser.add_argument("--pause-at", metavar="POINT:SECONDS")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the newsevents command line, after --")
    opts = parser.parse_args(argv)
    args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    install(opts.mark_dir, opts.crash_at, opts.pause_at)
    from pipelines.cli import main as newsevents

    return newsevents(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
