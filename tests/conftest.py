"""Shared fixtures: the real data beside the repository, and a helper that runs the pipeline."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SEED = SHARED_DATA / "seed" / "000_0611be86d62b167b.txt"
LIVEBLOG = SHARED_DATA / "liveblog" / "ac9e92935efb2fbacfcc9efd22b1d8171b2aeaa3.json"


def need_shared(path: Path = SHARED_DATA) -> Path:
    """The real data beside the repository: a test skips without it, except under CI=true,
    where its absence is a broken checkout and fails the test."""
    if not path.exists():
        reason = f"real data not found at {path} (../shared/data beside the repository; CI has it)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def run_pipeline(inputs: list, output: Path, *extra: str) -> None:
    from pipelines.news_events import run

    argv = []
    for i in inputs:
        argv += ["--input", str(i)]
    run(argv + ["--output", str(output), *extra])


def query(root: Path, sql: str) -> list[tuple]:
    from pipelines.sql import connect

    return connect(str(root)).sql(sql).fetchall()


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(r if isinstance(r, str) else json.dumps(r))
            f.write("\n")
    return path
