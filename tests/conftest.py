"""Shared fixtures: the real data beside the repository, a helper that runs the pipeline, and
`shared_runs`: pipeline runs made once per session and read by every test that needs them."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SEED = SHARED_DATA / "seed" / "000_0611be86d62b167b.txt"
LIVEBLOG = SHARED_DATA / "liveblog" / "ac9e92935efb2fbacfcc9efd22b1d8171b2aeaa3.json"
SAMPLE = REPO / "sample" / "input"


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


# Each table's rows in a stable order, as the tests compare two outputs (event_time as text).
TABLE_ROWS = {
    "events": "SELECT * EXCLUDE (event_time), event_time::VARCHAR FROM events ORDER BY event_id",
    "duplicates": "SELECT * FROM duplicates ORDER BY ALL",
    "quality": "SELECT * FROM quality ORDER BY ALL",
    "rejects": "SELECT stage, reason, raw, count(*) FROM rejects GROUP BY ALL ORDER BY ALL",
}


def table_rows(root: Path, names: tuple[str, ...]) -> dict:
    """{table: its rows (`TABLE_ROWS`)} for the named tables of the output at `root`."""
    return {name: query(root, TABLE_ROWS[name]) for name in names}


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(r if isinstance(r, str) else json.dumps(r))
            f.write("\n")
    return path


def copy_of(dataset: Path, to: Path) -> Path:
    """A copy of a dataset (file times kept) that a test may change: a shared run's output is
    read only."""
    shutil.copytree(dataset, to)
    return to


class SharedRuns:
    """Runs of the pipeline made once per session and shared, read only, by the tests that would
    otherwise repeat them: the same inputs (at the same paths) and options give the same output.

    `inputs(name, make)` calls `make(folder)` once per name to write test inputs that later
    runs can share, and returns what it returned. `run(inputs, *options)` is the output of one
    run into a fresh folder; `run_each(groups, *options)` of one run per group of inputs in
    turn into the same folder (a day-by-day schedule). A test that changes a dataset works
    on `copy_of(...)` it; the session ends with a check that no shared output changed."""

    def __init__(self, root: Path):
        self._root = root
        self._inputs: dict[str, object] = {}
        self._outputs: dict[tuple, Path] = {}
        self._fingerprints: dict[Path, dict] = {}

    def inputs(self, name: str, make):
        if name not in self._inputs:
            folder = self._root / "inputs" / name
            folder.mkdir(parents=True)
            self._inputs[name] = make(folder)
        return self._inputs[name]

    def run(self, inputs: list, *options: str) -> Path:
        return self.run_each([inputs], *options)

    def run_each(self, groups: list[list], *options: str) -> Path:
        key = (tuple(tuple(str(i) for i in group) for group in groups), options)
        if key not in self._outputs:
            out = self._root / f"run-{len(self._outputs)}"
            for group in groups:
                run_pipeline(group, out, *options)
            self._outputs[key] = out
            self._fingerprints[out] = _fingerprint(out)
        return self._outputs[key]

    def changed(self) -> list[Path]:
        return [out for out, seen in self._fingerprints.items() if _fingerprint(out) != seen]


def _fingerprint(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory):
    shared = SharedRuns(tmp_path_factory.mktemp("shared"))
    yield shared
    assert not shared.changed(), f"a test changed a shared run's output (copy_of it first): {shared.changed()}"
