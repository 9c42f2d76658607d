"""The same pipeline on Apache Flink and Apache Spark, for real: Beam's job servers (fetched
with Maven by runners/jobserver.sh), an embedded Flink (parallelism 2) and Spark local[2],
launched by runners/flink.sh and runners/spark.sh exactly as a user does. Every run's tables,
read back with DuckDB, must equal the DirectRunner's.

Marked `engines` (about 5 minutes, plus the jars' first fetch): `pytest -m "not engines"`
leaves them out locally; CI runs them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import LIVEBLOG, REPO, SEED, need_shared, query, run_pipeline
from .test_incremental import live_blog_drops

pytestmark = pytest.mark.engines

TABLES = {
    "events": "SELECT * FROM events ORDER BY ALL",
    "duplicates": "SELECT * FROM duplicates ORDER BY ALL",
    "rejects": "SELECT * FROM rejects ORDER BY ALL",
    "quality": "SELECT * FROM quality ORDER BY ALL",
}
ENGINES = {
    "flink": ("runners/flink.sh", {"FLINK_MASTER": "[local]"}),
    "spark": ("runners/spark.sh", {"SPARK_MASTER": "local[2]"}),
}


def tables(root: Path) -> dict:
    return {name: query(root, sql) for name, sql in TABLES.items()}


@pytest.fixture(scope="session")
def job_server_jars():
    """Both job servers' jars, fetched on first use (Maven) into the user's cache."""
    jars = {}
    for engine in ENGINES:
        done = subprocess.run(["bash", str(REPO / "runners/jobserver.sh"), engine], capture_output=True,
                              text=True, timeout=1200)
        assert done.returncode == 0, done.stderr
        jars[engine] = Path(done.stdout.strip())
        assert jars[engine].is_file()
    return jars


def on_engine(engine: str, inputs: list, output: Path, *extra: str, env: dict | None = None):
    script, settings = ENGINES[engine]
    args = ["bash", str(REPO / script), str(inputs[0]), str(output)]
    for more in inputs[1:]:
        args += ["--input", str(more)]
    environ = {**os.environ, **settings, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(args + list(extra), capture_output=True, text=True, timeout=900, env=environ)


def check_run(done: subprocess.CompletedProcess, output: Path) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert f"output: {output}" in done.stdout  # the run's summary, printed after the commit


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory):
    """The DirectRunner's tables for each input the engines run."""
    root = tmp_path_factory.mktemp("local")
    drops = live_blog_drops(root / "drops")
    inputs = {"sample": [REPO / "sample" / "input"], "drops": drops[:2]}
    if SEED.exists() and LIVEBLOG.exists():
        inputs["seed+liveblog"] = [SEED, LIVEBLOG]
    elif os.environ.get("CI"):
        need_shared(SEED)
    out = {}
    for name, paths in inputs.items():
        run_pipeline(paths, root / name)
        out[name] = (paths, tables(root / name))
    return out


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_engine_gives_the_local_rows(engine, job_server_jars, local_runs, tmp_path):
    """The bundled sample, and the seed article with the live blog, on the engine: same rows."""
    for name in ("sample", "seed+liveblog"):
        if name not in local_runs:
            need_shared(SEED)
        paths, expected = local_runs[name]
        out = tmp_path / name
        check_run(on_engine(engine, paths, out), out)
        got = tables(out)
        for table in TABLES:
            assert got[table] == expected[table], f"{engine}, {name}: {table} differs from the local run"
        assert expected["events"], name  # the comparison compared something
        leftovers = [p for p in out.rglob("*") if p.name.startswith(("_staging", "_probe"))]
        assert leftovers == []


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_engine_incremental_days_give_the_rows_of_one_run(engine, local_runs, job_server_jars, tmp_path):
    """Day 1's scrape, then day 2's, into the same output on the engine = the local run over both."""
    (day1, day2), expected = local_runs["drops"]
    out = tmp_path / "daily"
    day1_sql = "SELECT count(*) FROM duplicates WHERE event_date = DATE '2024-03-04'"
    check_run(on_engine(engine, [day1], out), out)
    after_day1 = tables(out)
    (day1_before,) = query(out, day1_sql)[0]
    check_run(on_engine(engine, [day2], out), out)
    got = tables(out)
    for table in TABLES:
        assert got[table] == expected[table], f"{engine}: {table} after two daily runs differs from one run"
    assert after_day1["events"] != got["events"]  # the second run did change the output
    (day1_after,) = query(out, day1_sql)[0]
    assert day1_after > day1_before  # day 2's scrape repeated day-1 blocks: the run rewrote day 1's partition


def test_missing_job_server_jar_is_one_line(tmp_path, job_server_jars):
    done = on_engine("flink", [REPO / "sample" / "input"], tmp_path / "out",
                     env={"JOB_SERVER_JAR": str(tmp_path / "nope.jar")})
    assert done.returncode == 2
    assert done.stderr.strip() == f"{REPO / 'runners/flink.sh'}: JOB_SERVER_JAR={tmp_path / 'nope.jar'}: no such jar"


def test_job_server_that_does_not_start_is_one_line(tmp_path, job_server_jars):
    """A corrupt jar: java exits at once; the error says the job server did not start, and why."""
    bad = tmp_path / "job-server.jar"
    bad.write_bytes(b"not a jar")
    done = on_engine("spark", [REPO / "sample" / "input"], tmp_path / "out", env={"JOB_SERVER_JAR": str(bad)})
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("newsevents: error: the job server did not start (java exited with status 1)"), done.stderr
    assert f"Invalid or corrupt jarfile {bad}" in last
    assert "Traceback" not in done.stderr


def test_unreachable_sdk_worker_is_one_line(tmp_path, job_server_jars):
    """Workers at an address where none listens: the job fails on the engine, and says so."""
    done = on_engine("flink", [REPO / "sample" / "input"], tmp_path / "out",
                     env={"ENVIRONMENT_TYPE": "EXTERNAL", "ENVIRONMENT_CONFIG": "127.0.0.1:9"})
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("newsevents: error: the job failed on the engine: an SDK worker could not be reached"), \
        done.stderr[-3000:]
    assert "Connection refused" in last
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "events").exists()  # nothing committed


def test_unfetchable_job_server_names_the_artifact(tmp_path):
    """Maven cannot serve the runner: the one line names the artifact and its version."""
    runners = tmp_path / "repo" / "runners"
    shutil.copytree(REPO / "runners" / "java", runners / "java")
    shutil.copy(REPO / "runners" / "jobserver.sh", runners / "jobserver.sh")
    pom = runners / "java" / "flink" / "pom.xml"
    pom.write_text(pom.read_text().replace("<beam.version>2.62.0</beam.version>",
                                           "<beam.version>0.0.1-missing</beam.version>"))
    done = subprocess.run(["bash", str(runners / "jobserver.sh"), "flink"], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "NEWSEVENTS_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 1
    first = done.stderr.strip().splitlines()[0]
    assert "cannot fetch the flink job server (Beam 0.0.1-missing" in first
    assert "org.apache.beam:beam-runners-flink-1.19:jar:0.0.1-missing" in first
    assert not (tmp_path / "cache" / "beam-0.0.1-missing" / "flink-job-server").exists()
