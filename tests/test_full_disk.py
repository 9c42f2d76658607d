"""A full disk (ENOSPC), injected where it is meant to strike and proven to have struck there:
one line on stderr and no traceback, no `_probe-*` files left, and `recover()` never treats a
listing error as "nothing to recover"."""
from __future__ import annotations

import errno
import json

import pytest
from apache_beam.io.filesystems import FileSystems

import transforms.sink as sink
from pipelines.cli import environment_error, main
from transforms.sink import COMMIT_SUFFIX, STAGING, OutputStateError, recover

from .conftest import REPO, query

SAMPLE = REPO / "sample" / "input"


def enospc(path: str) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", path)


def test_full_disk_at_the_commit_step_is_one_line(tmp_path, monkeypatch, capfd):
    out = tmp_path / "out"
    real, hits = sink.write_file, []

    def write_file(path, data):
        if path.endswith(COMMIT_SUFFIX + ".tmp"):  # the commit manifest: the commit point
            hits.append(path)
            raise enospc(path)
        return real(path, data)

    monkeypatch.setattr(sink, "write_file", write_file)
    assert main(["run", "--input", str(SAMPLE), "--output", str(out)]) == 1
    assert len(hits) == 1 and hits[0].startswith(str(out / STAGING))  # struck where intended
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("newsevents: error: run failed: no space left on device (")
    assert not (out / "_lock").exists()
    assert not list(out.glob("events/**/*.parquet"))  # nothing committed
    # space freed: the next run discards the dead run's staging and commits
    monkeypatch.setattr(sink, "write_file", real)
    assert main(["run", "--input", str(SAMPLE), "--output", str(out)]) == 0
    assert query(out, "SELECT count(*) FROM events") == [(21,)]
    assert not (out / STAGING).exists()


def test_full_disk_at_start_leaves_no_probe(tmp_path, monkeypatch, capfd):
    out = tmp_path / "out"
    out.mkdir()
    real, hits = FileSystems.create, []

    class Full:
        def __init__(self, f, path):
            self.f, self.path = f, path

        def write(self, data):
            hits.append(self.path)
            raise enospc(self.path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def create(path, *args, **kwargs):
        f = real(path, *args, **kwargs)
        return Full(f, path) if "/_probe-" in path else f

    monkeypatch.setattr(FileSystems, "create", staticmethod(create))
    assert main(["run", "--input", str(SAMPLE), "--output", str(out)]) == 2
    assert len(hits) == 1 and "/_probe-" in hits[0]
    err = capfd.readouterr().err
    assert err == f"newsevents: error: cannot write output location {out}: No space left on device\n"
    assert list(out.iterdir()) == []  # the probe is gone


def interrupted_commit(out) -> str:
    """An output whose last run died after its commit point: a manifest is waiting."""
    (out / STAGING).mkdir(parents=True)
    manifest = out / STAGING / f"tok{COMMIT_SUFFIX}"
    manifest.write_text(json.dumps({"token": "tok", "moves": [], "deletes": []}))
    return str(manifest)


def test_recover_fails_on_a_listing_error(tmp_path, monkeypatch):
    out = tmp_path / "out"
    manifest = interrupted_commit(out)
    real, hits = FileSystems.match, []

    def match(patterns, *args, **kwargs):
        if patterns[0].endswith(f"{STAGING}/*"):
            hits.append(patterns[0])
            raise enospc(patterns[0])
        return real(patterns, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "match", staticmethod(match))
    with pytest.raises(OutputStateError, match="cannot list .*_staging to finish an interrupted commit"):
        recover(str(out))
    assert hits and (out / STAGING / manifest.rsplit("/", 1)[-1]).exists()  # not skipped, not lost


def test_run_stops_with_one_line_when_recover_cannot_list(tmp_path, monkeypatch, capfd):
    out = tmp_path / "out"
    interrupted_commit(out)
    real = FileSystems.match

    def match(patterns, *args, **kwargs):
        if patterns[0].endswith(f"{STAGING}/*"):
            raise OSError(errno.EIO, "Input/output error")
        return real(patterns, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "match", staticmethod(match))
    assert main(["run", "--input", str(SAMPLE), "--output", str(out)]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "cannot list" in err and "Input/output error" in err, err
    assert not (out / "_lock").exists() and not list(out.glob("events/**/*.parquet"))


def test_recover_fails_when_a_manifest_cannot_be_carried_out(tmp_path, monkeypatch):
    out = tmp_path / "out"
    manifest = interrupted_commit(out)
    monkeypatch.setattr(sink, "apply_commit", lambda root, m: (_ for _ in ()).throw(enospc(root)))
    with pytest.raises(OutputStateError, match="cannot finish the interrupted commit"):
        recover(str(out))
    assert (out / STAGING / manifest.rsplit("/", 1)[-1]).exists()


def test_environment_error_reads_wrapped_and_stringified_errors():
    try:
        try:
            raise enospc("/x/y")
        except OSError as e:
            raise RuntimeError(f"{e} [while running 'Write/Commit']") from None
    except RuntimeError as wrapped:
        assert environment_error(wrapped) == "no space left on device (/x/y)"  # from the message alone
    assert environment_error(RuntimeError("ValueError: bad")) is None
