"""The pipeline, unchanged, beyond the in-process run (issue 7).

Two other ways of running, each compared row for row (all four tables, read back with DuckDB,
ordered) with the in-process run (no --runner) on the same mixed input (sample/input, plus the
real seed article and live blog from ../shared/data when present):

- Beam's portable path: `PortableRunner` with the embedded job service (`--job_endpoint=embed`,
  in this process) and SDK workers in a separate `worker_pool_main` process
  (`--environment_type=EXTERNAL`). This is the protocol Flink, Spark and Dataflow use: the
  pipeline is serialized, shipped and run by workers that share no memory with the launcher.
- The multi-process local engine (`--direct_running_mode=multi_processing`, 2 workers).

Nothing may be downloaded: Beam fetches Prism and the Flink/Spark job-server jars at run time
when a runner needs them (its DirectRunner tries Prism first, and hides the failure); here
every download entry point records the attempt and refuses it, and the tests check the record.

Also: every launch script in runners/ is valid bash (`bash -n`).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from .conftest import need_shared

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TABLES = ("events", "duplicates", "rejects", "quality")


def mixed_inputs() -> list[Path]:
    """sample/input (text, JSONL feed, live blog) plus the real seed and live-blog data if present."""
    inputs = [REPO / "sample" / "input"]
    inputs += [SHARED_DATA / d for d in ("seed", "liveblog") if (SHARED_DATA / d).is_dir()]
    return inputs


def dump(root: Path) -> dict[str, list[tuple]]:
    """Every row of the four tables, ordered, read back with DuckDB."""
    from pipelines.sql import connect

    con = connect(str(root))
    return {t: con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


def run_on(inputs: list[Path], out: Path, *extra: str) -> None:
    from pipelines.news_events import run

    argv = [a for i in inputs for a in ("--input", str(i))]
    run(argv + ["--output", str(out), *extra])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker pool exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"worker pool not listening on 127.0.0.1:{port} after {timeout:.0f}s:\n"
                       f"{log.read_text()[-3000:]}")


def worker_env() -> dict:
    """Environment for SDK workers: this interpreter first on PATH and the project importable.

    worker_pool_main starts each worker as a bare `python -c ...` (found on PATH), not with
    its own interpreter: without this the workers run another Python that lacks Beam."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture(scope="module")
def worker_pool(tmp_path_factory):
    """`python -m apache_beam.runners.worker.worker_pool_main` on a free port; yields the port.

    Started in its own process group, so the SDK workers it forks end with it."""
    port = free_port()
    log = tmp_path_factory.mktemp("worker_pool") / "worker_pool.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
            stdout=out, stderr=subprocess.STDOUT, env=worker_env(), cwd=str(REPO), start_new_session=True)
    try:
        wait_listening(port, proc, log)
        yield port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def no_downloads(monkeypatch):
    """Every entry point of Beam's download-on-demand (Prism binary, job-server jars), patched to
    record the attempt and fail. Yields the list of attempts: tests assert it stays empty, since
    Beam's DirectRunner catches the failure of its Prism attempt and falls back silently."""
    from apache_beam.runners.portability import job_server, prism_runner
    from apache_beam.utils import subprocess_server

    attempts: list[str] = []

    def refusing(name):
        def refuse(*args, **kwargs):
            attempts.append(name)
            raise AssertionError(f"Beam tried to download or start a job server: {name}")
        return refuse

    monkeypatch.setattr(subprocess_server, "urlopen", refusing("subprocess_server.urlopen"))
    monkeypatch.setattr(subprocess_server.JavaJarServer, "local_jar", classmethod(refusing("JavaJarServer.local_jar")))
    monkeypatch.setattr(prism_runner, "urlopen", refusing("prism_runner.urlopen"))
    monkeypatch.setattr(prism_runner.PrismJobServer, "local_bin", refusing("PrismJobServer.local_bin"))
    monkeypatch.setattr(job_server.SubprocessJobServer, "start", refusing("SubprocessJobServer.start"))
    yield attempts


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The rows of the in-process run (no --runner) on the mixed input."""
    out = tmp_path_factory.mktemp("direct") / "out"
    run_on(mixed_inputs(), out)
    rows = dump(out)
    assert rows["events"] and rows["duplicates"] and rows["rejects"] and rows["quality"]
    return rows


def assert_same_rows(rows: dict, reference: dict) -> None:
    for t in TABLES:
        assert len(rows[t]) == len(reference[t]), (t, len(rows[t]), len(reference[t]))
        assert rows[t] == reference[t], t


def test_mixed_input_includes_real_data():
    need_shared(SHARED_DATA / "seed")
    need_shared(SHARED_DATA / "liveblog")
    assert len(mixed_inputs()) == 3


def test_portable_runner_with_worker_pool(tmp_path, reference, worker_pool, no_downloads, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    out = tmp_path / "out"
    run_on(mixed_inputs(), out, "--runner=PortableRunner", "--job_endpoint=embed",
           "--environment_type=EXTERNAL", f"--environment_config=127.0.0.1:{worker_pool}")
    assert no_downloads == []
    assert_same_rows(dump(out), reference)
    assert not (out / "_staging").exists() and not (out / "_lock").exists()


def test_direct_runner_multi_processing(tmp_path, reference, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    out = tmp_path / "out"
    run_on(mixed_inputs(), out, "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert_same_rows(dump(out), reference)


@pytest.mark.parametrize("mode", [[], ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]],
                         ids=["in_process", "multi_processing"])
def test_local_runs_download_nothing(tmp_path, no_downloads, monkeypatch, mode):
    """No --runner: a local engine, and no attempt at Prism. (Beam's DirectRunner tries Prism
    first, downloading it, and falls back to its local engines only when that fails.)"""
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    run_on([REPO / "sample" / "input"], tmp_path / "out", *mode)
    assert no_downloads == []


SCRIPTS = sorted((REPO / "runners").glob("*.sh"))


def test_runner_scripts_present():
    names = {p.name for p in SCRIPTS}
    assert {"local.sh", "portable.sh", "flink.sh", "spark.sh", "dataflow.sh"} <= names, names


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_runner_script_is_valid_bash(script):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not installed")
    r = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
