"""The live stream, end to end: a real Kafka broker (runners/kafka.sh), ReadFromKafka on an
embedded Flink (runners/kafka-flink.sh), days committed while the job runs; and
`newsevents run --streaming` on the local runner over files.

The Kafka test needs java and mvn (the jars come from Maven Central on first use, then from
${NEWSEVENTS_CACHE:-~/.cache/newsevents}); it skips with the reason when they are absent.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, query, run_pipeline

SAMPLE = REPO / "sample" / "input"


def _rows(root: Path, table: str, skip_day: str | None = None) -> list[tuple]:
    where = f"WHERE event_date IS DISTINCT FROM DATE '{skip_day}'" if skip_day else ""
    return sorted(query(root, f"SELECT * EXCLUDE (event_date), event_date::VARCHAR FROM {table} {where}"),
                  key=repr)


def test_streaming_flag_over_files_gives_the_batch_rows(tmp_path):
    """`--streaming` on the local runner goes through build() (lateness gate, day windows fired
    by the watermark) and writes the rows of the batch run."""
    run_pipeline([SAMPLE], tmp_path / "batch")
    run_pipeline([SAMPLE], tmp_path / "stream", "--streaming")
    for table in ("events", "duplicates", "quality"):
        assert _rows(tmp_path / "stream", table) == _rows(tmp_path / "batch", table), table


# ----------------------------------------------------------------------------- Kafka on Flink

def _free_port(n: int = 1) -> int:
    """A port p with p..p+n-1 free (checked at call time)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65535:
            continue
        try:
            socks = []
            for k in range(n):
                t = socket.socket()
                t.bind(("127.0.0.1", base + k))
                socks.append(t)
            for t in socks:
                t.close()
            return base
        except OSError:
            for t in socks:
                t.close()
    raise RuntimeError("no free ports")


def _script(name: str, action: str, env: dict, timeout: float) -> None:
    done = subprocess.run(["bash", str(REPO / "runners" / name), action], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{name} {action}: {done.stderr or done.stdout}"


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """A Kafka broker, a Flink job server with Kafka IO and the Kafka expansion service."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found: the Kafka stream test needs a JVM and Maven")
    state = tmp_path_factory.mktemp("services")
    kafka_port, job_port = _free_port(2), _free_port(4) + 3
    env = {**os.environ, "KAFKA_PORT": str(kafka_port), "KAFKA_DIR": str(state / "kafka"),
           "JOB_PORT": str(job_port), "EXPANSION_PORT": str(_free_port()),
           "SERVICES_DIR": str(state / "flink")}
    try:
        _script("kafka.sh", "start", env, 600)  # first use: mvn fetches the jars
        _script("kafka-flink.sh", "start", env, 900)
        yield env
    finally:
        subprocess.run(["bash", str(REPO / "runners" / "kafka-flink.sh"), "stop"], env=env, timeout=60)
        subprocess.run(["bash", str(REPO / "runners" / "kafka.sh"), "stop"], env=env, timeout=60)


def _feed(today: dt.date) -> list[dict]:
    """The bundled sample's updates as update-feed records, moved so that its last day is two
    days before today (the stream's clock is the records' publication time)."""
    from transforms.read import ReadTask

    from .oracles.read import read_task_rows

    rows = []
    for path in sorted(p for p in SAMPLE.rglob("*") if p.is_file()):
        rows += read_task_rows(ReadTask(str(path), "auto", 0, -1, 1), path.read_bytes())[0]
    shift = (today - dt.timedelta(days=2)) - max(r["published_at"].date() for r in rows)
    out = []
    for r in rows:
        rec = {k: r[k] for k in ("article_id", "update_id", "source", "headline", "section", "text") if r[k] is not None}
        rec["published_at"] = (r["published_at"] + shift).isoformat()
        out.append(rec)
    # in publication order, as a live feed arrives: each day then commits in one pane (an
    # update that comes after its day closed is a late one, tested on its own below)
    return sorted(out, key=lambda rec: dt.datetime.fromisoformat(rec["published_at"]))


def _produce(bootstrap: str, topic: str, records: list, default_ms: int | None = None) -> None:
    sys.path.insert(0, str(REPO / "runners"))
    from kafka_produce import produce

    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    assert produce(f"kafka://{bootstrap}/{topic}", lines, default_ms=default_ms) == len(lines)


def _wait_for(predicate, what: str, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; job log tail:\n"
                         + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))


def _stop(job: subprocess.Popen, sig: int):
    """Send `sig` to a job still running and wait for it: its exit status, or a note that it
    had to be killed after 90 s (the assertion on the status then shows the log)."""
    if job.poll() is None:
        os.kill(job.pid, sig)
    try:
        return job.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        return "killed after 90 s"


def _committed(log: Path, day: str) -> int:
    return log.read_text(errors="replace").count(f"committed day {day}:")


@pytest.mark.kafka
@pytest.mark.engines
def test_kafka_stream_on_flink_commits_days_while_running(services, tmp_path):
    bootstrap = f"127.0.0.1:{services['KAFKA_PORT']}"
    topic = "updates"
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    today = now.date()
    d2, d3 = (today - dt.timedelta(days=2)).isoformat(), (today - dt.timedelta(days=3)).isoformat()
    feed = _feed(today)
    # a record of the current hour moves the stream's clock (watermark) past the sample's days
    clock = {"article_id": "clock", "source": "wire.example", "published_at": (now - dt.timedelta(minutes=1)).isoformat(),
             "text": "Markets opened flat on the harbour city exchange this morning."}
    bad = [b"not json at all", b'{"article_id": "x", "text": "no time"}', b'{"text": "\xff\xfe bad utf-8"}']
    _produce(bootstrap, topic, feed)
    # records without a readable time carry the producer's timestamp: here noon of the last sample day
    _produce(bootstrap, topic, bad, default_ms=int(dt.datetime.fromisoformat(f"{d2}T12:00:00+00:00").timestamp() * 1000))
    _produce(bootstrap, topic, [clock])

    out, log = tmp_path / "out", tmp_path / "job.log"
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "--input", f"kafka://{bootstrap}/{topic}",
           "--output", str(out), "--streaming", "--allowed-lateness", "7d",
           "--runner=PortableRunner", f"--job_endpoint=localhost:{services['JOB_PORT']}",
           "--environment_type=LOOPBACK", f"--kafka_expansion_service=localhost:{services['EXPANSION_PORT']}",
           "--parallelism=1"]
    with open(log, "wb") as logf:
        job = subprocess.Popen(cmd, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: _committed(log, d3) and _committed(log, d2) or job.poll() is not None,
                  f"days {d3} and {d2} to be committed", log)
        assert job.poll() is None, "the streaming job ended on its own"

        # while the job runs: the committed days hold the rows of a batch run of the same records
        batch_in = tmp_path / "batch.jsonl"
        batch_in.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in [*feed, clock]))
        run_pipeline([batch_in], tmp_path / "batch", "--format", "jsonl")
        for table in ("events", "duplicates"):
            assert _rows(out, table, today.isoformat()) == _rows(tmp_path / "batch", table, today.isoformat()), table
        # bad records became rejects and the job kept running
        reasons = {r[0] for r in query(out, "SELECT reason FROM rejects")}
        assert "invalid_json" in reasons and any(x.startswith("missing_field") for x in reasons), reasons

        # a late update within the allowed lateness rewrites its (committed) day
        late = {"article_id": "late-1", "source": "wire.example",
                "published_at": f"{d3}T15:00:00+00:00", "text": "Harbour pilots returned to work after the storm."}
        before = query(out, f"SELECT count(*) FROM events WHERE event_date = DATE '{d3}'")[0][0]
        panes = _committed(log, d3)
        _produce(bootstrap, topic, [late])
        _wait_for(lambda: _committed(log, d3) > panes, f"the late update to rewrite {d3}", log)
        after = query(out, f"SELECT count(*) FROM events WHERE event_date = DATE '{d3}'")[0][0]
        assert after == before + 1
        assert query(out, "SELECT count(*) FROM events WHERE article_id = 'late-1'") == [(1,)]

        # one past the allowed lateness becomes a rejects row (stage window, reason late),
        # counted in quality.late of its day, as in the batch pipeline
        old = (today - dt.timedelta(days=12)).isoformat()
        too_late = {"article_id": "late-2", "source": "wire.example",
                    "published_at": f"{old}T09:00:00+00:00", "text": "A report from twelve days ago."}
        _produce(bootstrap, topic, [too_late])
        _wait_for(lambda: "late record for" in log.read_text(errors="replace"), "the too-late update", log)
        rows = query(out, "SELECT stage, reason, raw FROM rejects WHERE reason = 'late'")
        assert [(s, r) for s, r, _ in rows] == [("window", "late")] and "twelve days ago" in rows[0][2]
        assert query(out, "SELECT count(*) FROM events WHERE article_id = 'late-2'") == [(0,)]
        assert _late_quality(out, old) == [(1, 1, 1)]

        # offsets: every record up to the clock record is done, the clock record (today: its
        # window is open) is not, so the group's committed offset stops at it although the
        # late records after it are done
        clock_offset = len(feed) + len(bad)
        _wait_for(lambda: _group_offset(bootstrap, topic, out) == clock_offset,
                  f"the group's committed offset to reach {clock_offset}", log, timeout=60)
    finally:
        code = _stop(job, signal.SIGTERM)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    # nothing half-written where readers look, and the committed days read back whole
    visible = [p for p in out.rglob("*") if p.is_file() and not any(
        part.startswith(("_", ".")) for part in p.relative_to(out).parts)]
    assert visible and all(p.suffix == ".parquet" for p in visible), visible
    assert query(out, f"SELECT count(*) FROM events WHERE event_date = DATE '{d3}'")[0][0] == after
    assert _group_offset(bootstrap, topic, out) == clock_offset
    assert set(_offsets_read(log)) == set(range(clock_offset)) | {clock_offset + 1, clock_offset + 2}

    # a restart goes on from the committed offsets: it reads the clock record (still waiting
    # when the first job stopped) and what came after it, not the records already committed;
    # the two late records it reads again are left out by their days' ledgers
    d1 = (today - dt.timedelta(days=1)).isoformat()
    fresh = [{"article_id": "after-restart", "source": "wire.example", "published_at": f"{d2}T20:00:00+00:00",
              "text": "Ferries to the islands run again from tonight."},
             {"article_id": "after-restart", "source": "wire.example", "published_at": f"{d1}T08:00:00+00:00",
              "text": "The harbour master lifted the storm warning."}]
    _produce(bootstrap, topic, fresh)
    log2 = tmp_path / "job2.log"
    with open(log2, "wb") as logf:
        job = subprocess.Popen(cmd, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: (_committed(log2, d1) and _committed(log2, d2) and _committed(log2, d3)
                           and "late record for" in log2.read_text(errors="replace")) or job.poll() is not None,
                  "the restarted job to commit the new records", log2)
        assert job.poll() is None, "the restarted job ended on its own"
        # it read only what was not committed: the late records done above the waiting clock
        # record, and the new ones (the clock record itself waits in today's window again)
        read = _offsets_read(log2)
        assert sorted(read) == [clock_offset + 1, clock_offset + 2, clock_offset + 3, clock_offset + 4], read
        assert "(1 read, 1 already committed" in log2.read_text(errors="replace")  # the late d3 record
        batch_in.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in [*feed, clock, late, *fresh]))
        run_pipeline([batch_in], tmp_path / "batch2", "--format", "jsonl")
        for table in ("events", "duplicates"):
            assert _rows(out, table, today.isoformat()) == _rows(tmp_path / "batch2", table, today.isoformat()), table
        assert query(out, "SELECT count(*) FROM rejects WHERE reason = 'late'") == [(1,)]
        assert _late_quality(out, old) == [(1, 1, 1)]
        assert _group_offset(bootstrap, topic, out) == clock_offset
    finally:
        code = _stop(job, signal.SIGINT)
    assert code == 0, log2.read_text(errors="replace")[-3000:]


def _late_quality(root: Path, day: str) -> list[tuple]:
    return query(root, f"SELECT late, rejected, blocks_read FROM quality WHERE event_date = DATE '{day}'")


def _group_offset(bootstrap: str, topic: str, out: Path) -> int:
    """The committed offset of partition 0 for the stream's default consumer group (-1001: none)."""
    from confluent_kafka import Consumer, TopicPartition

    from transforms.stream import default_group

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": default_group(os.path.abspath(out), topic)})
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
    finally:
        c.close()


def _offsets_read(log: Path) -> list[int]:
    """The offsets of partition 0 that the job's day commits and late rejects logged."""
    text = log.read_text(errors="replace")
    out = []
    for m in re.finditer(r"offsets p0:([0-9,-]+)\)", text):
        for run in m.group(1).split(","):
            lo, _, hi = run.partition("-")
            out += range(int(lo), int(hi or lo) + 1)
    out += [int(x) for x in re.findall(r"\(offset p0:([0-9]+)\)", text)]
    return out
