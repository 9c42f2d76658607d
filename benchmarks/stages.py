"""Wall-clock start of every fused stage of one `newsevents run`, from Beam's runner log.

    .venv/bin/python benchmarks/stages.py --input FEED.jsonl --output OUT [run options...]

Prints "<seconds since start> <stage>" to stderr as each stage's bundle starts, then the
total; the gaps between lines are the stages' durations (the FnApiRunner runs stages one at a
time, each over all its workers). Used for the "where the time goes" figures in BENCHMARKS.md.
"""
from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _StageStarts(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.t0 = time.time()

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Running bundle for stage"):
            name = re.sub(r"ref_AppliedPTransform_|Running bundle for stage ", "", msg)
            print(f"{time.time() - self.t0:8.1f}s {name[:200]}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(_StageStarts())
    for noisy in ("apache_beam.runners.worker", "grpc", "apache_beam.runners.portability.fn_api_runner.worker_handlers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from pipelines.news_events import run

    t = time.time()
    run(argv)
    print(f"total {time.time() - t:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
