"""`--output s3://bucket/prefix` (and `--input s3://...`) against a local S3: moto in server mode.

moto listens on 127.0.0.1 only, on a free port, in this process. The pipeline gets the
endpoint and keys through Beam's own options (`--s3_endpoint_url`, `--s3_access_key_id`,
`--s3_secret_access_key`, `--s3_region_name`); the dataset is read back with
`pyarrow.fs.S3FileSystem` + `pyarrow.dataset` (hive partitioning), since DuckDB's httpfs
extension is downloaded on demand and cannot be fetched offline, and compared with a local
run of the same input, read back the same way.

Needs boto3 (`apache-beam[aws]`) and `moto[server]`; skipped with the reason when absent.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3", reason="boto3 not installed: pip install 'apache-beam[aws]==2.62.0'")
moto_server = pytest.importorskip("moto.server", reason="moto not installed: pip install 'moto[server]'")

import pyarrow as pa  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402
import pyarrow.fs as pafs  # noqa: E402

from .test_portable import REPO, worker_env, worker_pool  # noqa: E402,F401  (worker_pool: a fixture)

SAMPLE = REPO / "sample" / "input"
TABLES = ("events", "duplicates", "rejects", "quality")
PARTITIONED = ("events", "duplicates", "quality")
KEY, SECRET, REGION = "testing", "testing", "us-east-1"


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 on 127.0.0.1:<free port>; yields its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket; the environment cleared of any real AWS settings."""
    for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    client = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          region_name=REGION)
    bucket = f"news-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return {"endpoint": s3_server, "client": client, "bucket": bucket}


def s3_options(s3: dict) -> list[str]:
    return [f"--s3_endpoint_url={s3['endpoint']}", f"--s3_access_key_id={KEY}",
            f"--s3_secret_access_key={SECRET}", f"--s3_region_name={REGION}"]


def run_on(inputs: list, output: str, *extra: str) -> None:
    from pipelines.news_events import run

    argv = [a for i in inputs for a in ("--input", str(i))]
    run(argv + ["--output", output, *extra])


def keys(s3: dict, prefix: str = "") -> list[str]:
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=s3["bucket"], Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def ordered(rows) -> list[tuple]:
    return sorted(rows, key=lambda r: [(v is None, str(v)) for v in r])


def read_tables(fs: pafs.FileSystem, root: str) -> dict[str, list[tuple]]:
    """Every row of the four tables, with event_date from the hive folders, in a stable order."""
    hive = ds.partitioning(pa.schema([("event_date", pa.date32())]), flavor="hive")
    out = {}
    for t in TABLES:
        d = ds.dataset(f"{root}/{t}", filesystem=fs, format="parquet",
                       partitioning=hive if t in PARTITIONED else None)
        out[t] = ordered(tuple(r.values()) for r in d.to_table().to_pylist())
    return out


def read_s3(s3: dict, prefix: str) -> dict[str, list[tuple]]:
    fs = pafs.S3FileSystem(access_key=KEY, secret_key=SECRET, region=REGION, scheme="http",
                           endpoint_override=s3["endpoint"].removeprefix("http://"))
    return read_tables(fs, f"{s3['bucket']}/{prefix}")


def read_local(root: Path) -> dict[str, list[tuple]]:
    return read_tables(pafs.LocalFileSystem(), str(root))


@pytest.fixture(scope="module")
def local_sample(shared_runs) -> dict[str, list[tuple]]:
    rows = read_local(shared_runs.run([SAMPLE]))
    assert all(rows[t] for t in TABLES)
    return rows


def assert_only_table_files(names: list[str], prefix: str) -> None:
    """Nothing but the tables' and the incremental state's Parquet files: no staging, lock,
    manifest or probe objects left behind."""
    assert names
    for name in names:
        rel = name[len(prefix) + 1:]
        assert rel.split("/", 1)[0] in (*TABLES, "_state") and rel.endswith(".parquet"), name


def test_s3_output_matches_local_run(s3, local_sample, capsys):
    prefix = "datasets/news"
    out = f"s3://{s3['bucket']}/{prefix}"
    run_on([SAMPLE], out, *s3_options(s3))
    assert read_s3(s3, prefix) == local_sample
    first = keys(s3)
    assert_only_table_files(first, prefix)
    # again through the command line: exit 0, and the rerun rewrites the same objects (copy over
    # copy), no more and no fewer
    from pipelines.cli import main

    assert main(["run", "--input", str(SAMPLE), "--output", out, *s3_options(s3)]) == 0
    assert f"output: {out}" in capsys.readouterr().out
    assert keys(s3) == first
    assert read_s3(s3, prefix) == local_sample


def test_s3_output_from_portable_workers(s3, local_sample, worker_pool, monkeypatch):
    """SDK workers in another process (worker_pool_main starts them without pipeline options)
    still write to the configured endpoint: the sink hands its DoFns the S3 options."""
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    prefix = "portable"
    run_on([SAMPLE], f"s3://{s3['bucket']}/{prefix}", *s3_options(s3), "--runner=PortableRunner",
           "--job_endpoint=embed", "--environment_type=EXTERNAL", f"--environment_config=127.0.0.1:{worker_pool}")
    assert read_s3(s3, prefix) == local_sample
    assert_only_table_files(keys(s3), prefix)


def upload_sample(s3: dict) -> str:
    for path in sorted(SAMPLE.rglob("*")):
        if path.is_file():
            s3["client"].upload_file(str(path), s3["bucket"], f"in/{path.relative_to(SAMPLE).as_posix()}")
    return f"s3://{s3['bucket']}/in/**"


def assert_same_as_local(rows: dict, local: dict, s3: dict) -> None:
    for t in ("events", "duplicates", "quality"):
        assert rows[t] == local[t], t
    # rejects name their input: the same rows, with the S3 URI
    assert ordered(r[1:] for r in rows["rejects"]) == ordered(r[1:] for r in local["rejects"])
    assert all(r[0].startswith(f"s3://{s3['bucket']}/in/") for r in rows["rejects"])


def test_s3_input(s3, local_sample, tmp_path):
    out = tmp_path / "out"
    run_on([upload_sample(s3)], str(out), *s3_options(s3))
    assert_same_as_local(read_local(out), local_sample, s3)


def test_s3_input_on_portable_workers(s3, local_sample, tmp_path, worker_pool, monkeypatch):
    """The readers run on workers started without pipeline options, too: they must still reach
    the configured endpoint (else every input file becomes an `unreadable` reject)."""
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    out = tmp_path / "out"
    run_on([upload_sample(s3)], str(out), *s3_options(s3), "--runner=PortableRunner", "--job_endpoint=embed",
           "--environment_type=EXTERNAL", f"--environment_config=127.0.0.1:{worker_pool}")
    assert_same_as_local(read_local(out), local_sample, s3)


def test_commit_retried_after_a_partial_attempt(s3, monkeypatch):
    """On S3 a rename is a copy and a delete; a commit that died half way is run again by the
    runner, finds some files already in place, and finishes the job."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions
    from transforms.sink import STAGING, _CommitFn, join, parquet_bytes, write_file
    from schemas.models import TABLE_SCHEMAS

    monkeypatch.setattr(FileSystems, "_pipeline_options", PipelineOptions(s3_options(s3)))
    root, token = f"s3://{s3['bucket']}/ds", "tok"
    rels = ["events/event_date=2024-03-04/part-0.parquet", "duplicates/event_date=2024-03-04/part-0.parquet"]
    staged = []
    for rel in rels:
        path = join(root, STAGING, token, f"{rel}.pane-0")
        write_file(path, parquet_bytes(TABLE_SCHEMAS[rel.split("/")[0]].empty_table()))
        staged.append((rel, 0, path))
    FileSystems.rename([staged[0][2]], [join(root, rels[0])])  # the first attempt moved one file, then died
    fn = _CommitFn(root, token, {})
    fn.setup()
    assert list(fn.process(staged)) == [2]
    names = keys(s3, "ds/")
    assert "ds/events/event_date=2024-03-04/part-0.parquet" in names
    assert "ds/duplicates/event_date=2024-03-04/part-0.parquet" in names
    assert not any(f"/{STAGING}/" in n for n in names)


def test_s3_lock_uses_conditional_writes(s3):
    """The lock on S3: created with `If-None-Match: *`, taken over and renewed with
    `If-Match: <etag>`, so of two runs only one wins, by the store's own word."""
    import json as _json
    import threading
    import time

    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.lock import LockError, OutputLock, S3Store

    options = PipelineOptions(s3_options(s3))
    root = f"s3://{s3['bucket']}/ds"
    first = OutputLock(root, lease=30, options=options).acquire()
    with pytest.raises(LockError, match="in use by another run"):
        OutputLock(root, lease=30, options=options).acquire()
    # the store itself refuses a second create, and a takeover or renewal from an old version
    store = S3Store(f"{root}/_lock", 30, options)
    assert store.create(b'{"owner": "other"}') is None
    assert store.takeover('"not-the-etag"', b'{"owner": "other"}') is None
    assert first.renew() and _json.loads(store.read().data)["owner"] == first.owner
    first.release()
    assert store.read() is None

    # a stale lock (its lease expired): two takers with the same etag, at the same moment
    s3["client"].put_object(Bucket=s3["bucket"], Key="ds/_lock",
                            Body=_json.dumps({"owner": "dead", "host": "gone", "pid": 1, "expires": time.time() - 1}))
    etag = store.read().version
    barrier, won = threading.Barrier(2), []

    def take(name):
        barrier.wait(timeout=10)
        won.append(store.takeover(etag, _json.dumps({"owner": name}).encode()))

    threads = [threading.Thread(target=take, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(w is not None for w in won) == [False, True]
    # and through OutputLock: the expired lock is taken over
    s3["client"].put_object(Bucket=s3["bucket"], Key="ds/_lock",
                            Body=_json.dumps({"owner": "dead", "host": "gone", "pid": 1, "expires": time.time() - 1}))
    with OutputLock(root, lease=30, options=options) as lock:
        assert _json.loads(store.read().data)["owner"] == lock.owner
