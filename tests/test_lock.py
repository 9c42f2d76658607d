"""The output lock (`pipelines/lock.py`): a lease with a heartbeat, stale locks taken over by one run."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from pipelines.lock import LocalStore, LockError, OutputLock


def lock_file(root) -> dict:
    return json.loads((root / "_lock").read_text())


def age(path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


def test_lock_holds_owner_host_pid_expiry_and_is_released(tmp_path):
    with OutputLock(str(tmp_path), lease=60) as lock:
        info = lock_file(tmp_path)
        assert info["owner"] == lock.owner and info["host"] == socket.gethostname() and info["pid"] == os.getpid()
        assert 50 < info["expires"] - time.time() <= 60
        with pytest.raises(LockError, match="in use by another run .*pid .* lease until"):
            OutputLock(str(tmp_path), lease=60).acquire()
    assert not (tmp_path / "_lock").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary or marker files left


@pytest.mark.parametrize("content", [b"", b'{"pid": 12', b"\x00\x00"], ids=["empty", "truncated", "garbage"])
def test_unreadable_lock_is_stale_only_after_its_lease(tmp_path, content):
    (tmp_path / "_lock").write_bytes(content)
    with pytest.raises(LockError, match="lock file being written"):
        OutputLock(str(tmp_path), lease=30).acquire()
    age(tmp_path / "_lock", 31)
    lock = OutputLock(str(tmp_path), lease=30).acquire()
    assert lock_file(tmp_path)["owner"] == lock.owner
    lock.release()


def test_dead_run_on_another_host_is_taken_over_after_expiry(tmp_path):
    info = {"owner": "x", "host": "some-other-host", "pid": 1, "started": "2024-01-01T00:00:00+00:00",
            "lease": 30, "expires": time.time() + 30}
    (tmp_path / "_lock").write_text(json.dumps(info))
    with pytest.raises(LockError, match="pid 1 on some-other-host"):
        OutputLock(str(tmp_path), lease=30).acquire()
    (tmp_path / "_lock").write_text(json.dumps({**info, "expires": time.time() - 1}))
    with OutputLock(str(tmp_path), lease=30) as lock:
        assert lock_file(tmp_path)["owner"] == lock.owner


def test_dead_run_on_this_host_is_taken_over_at_once(tmp_path):
    (tmp_path / "_lock").write_text(json.dumps({"owner": "x", "host": socket.gethostname(), "pid": dead_pid(),
                                                "expires": time.time() + 3600}))
    with OutputLock(str(tmp_path)) as lock:
        assert lock_file(tmp_path)["owner"] == lock.owner


def stale_lock(root) -> None:
    (root / "_lock").write_text(json.dumps({"owner": "dead", "host": "gone-host", "pid": 1, "expires": 0}))


def test_two_concurrent_takers_only_one_wins(tmp_path, monkeypatch):
    """Both runs read the same stale lock and judge it stale before either takes it over (a
    barrier holds them there); then both take it over at the same moment: exactly one wins."""
    original = LocalStore.takeover
    for attempt in range(10):
        root = tmp_path / str(attempt)
        root.mkdir()
        stale_lock(root)
        barrier = threading.Barrier(2)
        calls = []

        def takeover(self, version, data, original=original, barrier=barrier, calls=calls):
            calls.append(version)
            if len(calls) <= 2:
                barrier.wait(timeout=10)
            return original(self, version, data)

        monkeypatch.setattr(LocalStore, "takeover", takeover)
        locks = [OutputLock(str(root), lease=30) for _ in range(2)]
        results: list = [None, None]

        def take(i):
            try:
                results[i] = locks[i].acquire()
            except LockError as e:
                results[i] = e

        threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(calls) >= 2 and calls[0] == calls[1]  # both judged the same version stale
        winners = [r for r in results if isinstance(r, OutputLock)]
        losers = [r for r in results if isinstance(r, LockError)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert lock_file(root)["owner"] == winners[0].owner
        assert "in use by another run" in str(losers[0]) or "took it over first" in str(losers[0])
        winners[0].release()
        monkeypatch.setattr(LocalStore, "takeover", original)


def test_a_late_taker_does_not_take_over_the_new_lock(tmp_path):
    stale_lock(tmp_path)
    store = LocalStore(str(tmp_path / "_lock"), 30)
    stale = store.read()
    winner = OutputLock(str(tmp_path), lease=30).acquire()
    # a run that judged the old lock stale before the winner replaced it comes too late
    assert store.takeover(stale.version, b'{"owner": "late"}') is None
    assert lock_file(tmp_path)["owner"] == winner.owner
    winner.release()


def test_a_taker_that_died_holding_the_marker_does_not_block_forever(tmp_path):
    stale_lock(tmp_path)
    store = LocalStore(str(tmp_path / "_lock"), 30)
    marker = tmp_path / f"_lock.takeover-{store.read().version}-0"
    marker.touch()
    with pytest.raises(LockError):
        OutputLock(str(tmp_path), lease=30).acquire()  # someone is taking it over right now
    age(marker, 31)
    with OutputLock(str(tmp_path), lease=30) as lock:
        assert lock_file(tmp_path)["owner"] == lock.owner


def test_heartbeat_renews_the_lease(tmp_path):
    with OutputLock(str(tmp_path), lease=0.4) as lock:
        first = lock_file(tmp_path)["expires"]
        time.sleep(1.0)  # more than two leases: without renewals it would have expired
        info = lock_file(tmp_path)
        assert info["owner"] == lock.owner and info["expires"] > first and info["expires"] > time.time()
        with pytest.raises(LockError):
            OutputLock(str(tmp_path), lease=0.4).acquire()


def test_a_run_past_its_lease_loses_the_lock_and_leaves_the_new_one(tmp_path):
    old = OutputLock(str(tmp_path), lease=0.3).acquire()
    old._stop.set()  # a hung run: no more heartbeats
    old._thread.join()
    time.sleep(0.4)
    new = OutputLock(str(tmp_path), lease=30).acquire()
    assert old.renew() is False and old.lost
    old.release()
    assert lock_file(tmp_path)["owner"] == new.owner
    new.release()
    assert not (tmp_path / "_lock").exists()


TAKER = """
import sys, time
from pipelines.lock import LockError, OutputLock
root, start = sys.argv[1], float(sys.argv[2])
lock = OutputLock(root, lease=30)
time.sleep(max(0.0, start - time.time()))  # every process starts its takeover at the same moment
try:
    lock.acquire()
except LockError as e:
    print("LOST", e)
else:
    print("WON", lock.owner)
    time.sleep(3)  # hold it while the others try
    lock.release()
"""


def test_concurrent_taker_processes_only_one_wins(tmp_path):
    stale_lock(tmp_path)
    start = time.time() + 8  # after every process has imported Beam
    procs = [subprocess.Popen([sys.executable, "-c", TAKER, str(tmp_path), str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert sorted(o.split()[0] for o in outs) == ["LOST", "LOST", "LOST", "WON"], outs
    assert not (tmp_path / "_lock").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no markers or temporary files left


def test_a_run_that_lost_its_lock_is_stopped(tmp_path):
    with pytest.raises(LockError, match="lost the lock"):
        with OutputLock(str(tmp_path), lease=0.4):
            # another run took the lock over (as if this one had hung past its lease)
            (tmp_path / "_lock").write_text(json.dumps({"owner": "other", "expires": time.time() + 60}))
            time.sleep(5)  # the next heartbeat interrupts this
            pytest.fail("the run went on after losing its lock")
    assert lock_file(tmp_path)["owner"] == "other"


def test_a_real_run_that_lost_its_lock_stops_before_its_commit(tmp_path):
    """A run held before its commit point past its (1 s) lease, its lock taken over meanwhile:
    it stops with exit 75 and one line, writes no manifest, and leaves the new owner's lock."""
    from .conftest import REPO

    out, marks = tmp_path / "out", tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "NEWSEVENTS_LOCK_LEASE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.faults", "--pause-at", "before-manifest:60", "--mark-dir",
                             str(marks), "--", "run", "--input", str(REPO / "sample" / "input"), "--output", str(out)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (marks / "before-manifest").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert (marks / "before-manifest").exists() and proc.poll() is None
    assert (marks / "before-manifest").read_text().split()[0] == str(proc.pid)  # held in the run's own process
    other = {"owner": "other", "host": "elsewhere", "pid": 1, "expires": time.time() + 600}
    (out / "_lock").write_text(json.dumps(other))
    _, err = proc.communicate(timeout=180)  # the pause is 60 s; a loaded machine needs more
    assert proc.returncode == 75, err
    assert err.strip().count("\n") == 0 and "lost the lock of output" in err, err
    assert lock_file(out) == other
    assert not list((out / "_staging").glob("*.commit.json")) and not list(out.glob("events/**/*.parquet"))
