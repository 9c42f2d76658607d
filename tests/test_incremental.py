"""Scheduled runs: day by day equals all at once; reruns; crashes at any point converge."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from .conftest import REPO, copy_of, query, run_pipeline, table_rows, write_jsonl


def dataset(root: Path) -> dict:
    return table_rows(root, ("events", "duplicates", "quality"))


def post(blog, n, day, hour, text, scraped_day=None):
    return {"article_id": blog, "source": "liveblog.example", "update_id": f"{blog}/post-{n}",
            "headline": "Kessa storm live", "section": f"Post {n}",
            "published_at": f"2024-03-{day:02d}T{hour:02d}:00:00+00:00", "text": text}


def live_blog_drops(root: Path) -> list[Path]:
    """Three daily scrapes of two live blogs: each repeats earlier posts, adds new ones, and the
    day-2 scrape brings a post published late on day 1 (late for day 1)."""
    p = [
        post("live-a", 1, 4, 7, "The harbour of Kessa closed to all traffic.\nWaves broke over the outer breakwater."),
        post("live-a", 2, 4, 12, "Ferry operators cancelled 42 sailings."),
        post("live-b", 1, 4, 9, "Ferry operators cancelled 42 sailings."),  # cross-article copy, same day
        post("live-a", 3, 4, 23, "Power was cut to about 8,000 homes in the old town, the grid operator said."),
        post("live-a", 4, 5, 8, "Crews restored power to most of the old town overnight.\n"
                                "The harbour of Kessa closed to all traffic."),  # repeats a day-1 block
        post("live-b", 2, 5, 10, "Power was cut to about 8,000 homes in the old town, the grid operator "
                                 "said on Monday."),  # near copy of a day-1 post
        post("live-a", 5, 6, 9, "The port reopened to cargo ships on Wednesday morning.\n"
                                "Ferries remain suspended until the wind drops."),
        post("live-b", 3, 6, 11, "Ferries remain suspended until the wind drops."),
    ]
    scrapes = {
        "2024-03-04": [p[0], p[1], p[2]],
        "2024-03-05": [p[0], p[1], p[3], p[4], p[2], p[5]],   # p[3]: published on day 1, first seen now
        "2024-03-06": [p[4], p[5], p[6], p[7], p[3]],
    }
    return [write_jsonl(root / day / "scrape.jsonl", rows) for day, rows in scrapes.items()]


@pytest.fixture
def drops(shared_runs) -> list[Path]:
    """The three scrapes, written once for the module's tests and their shared runs."""
    return shared_runs.inputs("live-blog-drops", live_blog_drops)


def test_day_by_day_equals_all_at_once(tmp_path, drops, shared_runs):
    all_at_once, daily = shared_runs.run(drops), shared_runs.run_each([[d] for d in drops])
    backwards = tmp_path / "backwards"
    for d in reversed(drops):
        run_pipeline([d], backwards)
    expected = dataset(all_at_once)
    assert expected["events"] and expected["duplicates"]
    assert dataset(daily) == expected
    assert dataset(backwards) == expected
    # the late day-1 post reached day 1; its re-scrape on day 3 (the same post: same update id and
    # publication time) is a redelivery, not a mention; live-b's near copy is one
    late = query(daily, "SELECT event_date::VARCHAR, mention_count FROM events WHERE text LIKE 'Power was cut%'")
    assert late == [("2024-03-04", 2)]
    # re-scraped posts: day 2 repeats 4 blocks of day 1, day 3 repeats 4 blocks of day 2
    assert query(daily, "SELECT sum(redelivered) FROM quality") == [(8,)]


def test_rerun_of_a_day_changes_nothing(tmp_path, drops, shared_runs):
    out = copy_of(shared_runs.run_each([[d] for d in drops]), tmp_path / "out")
    before = dataset(out)
    files = sorted(p.relative_to(out) for p in out.rglob("*.parquet"))
    run_pipeline([drops[1]], out)
    assert dataset(out) == before
    assert sorted(p.relative_to(out) for p in out.rglob("*.parquet")) == files


def test_only_touched_partitions_are_rewritten(tmp_path, drops, shared_runs):
    out = copy_of(shared_runs.run(drops), tmp_path / "out")
    other = write_jsonl(tmp_path / "other" / "x.jsonl", [
        {"article_id": "elsewhere", "text": "A quiet day in Arvo.", "published_at": "2024-03-20T10:00:00Z"}])
    stamps = {p: p.stat().st_mtime_ns for p in (out / "events").rglob("*.parquet")}
    time.sleep(0.05)
    run_pipeline([other], out)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # earlier days untouched
    assert query(out, "SELECT count(*) FROM events WHERE event_date = '2024-03-20'") == [(1,)]


# --- crashes -----------------------------------------------------------------------------

def _run_args(inputs, out, *faults: str) -> list[str]:
    """`newsevents run` in a new interpreter; with `faults` (options of tests/faults.py: the
    fault-injection hooks on the run's named points), through that wrapper."""
    args = [sys.executable, "-m", "tests.faults", *faults, "--"] if faults else [sys.executable, "-m", "pipelines.cli"]
    args += ["run", "--output", str(out)]
    for i in inputs:
        args += ["--input", str(i)]
    return args


def _run_cli(inputs, out, *faults: str, timeout=300):
    return subprocess.run(_run_args(inputs, out, *faults), cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _visible_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.parquet")
            if p.relative_to(out).parts[0] in ("events", "duplicates", "rejects", "quality")}


@pytest.mark.parametrize("point", ["before-manifest", "after-manifest", "after-first-move", "after-moves"])
def test_kill_at_commit_points_converges(tmp_path, point, drops, shared_runs):
    reference = shared_runs.run(drops[:2])
    out = copy_of(shared_runs.run(drops[:1]), tmp_path / "out")
    old = _visible_files(out)
    marks = tmp_path / "marks"
    marks.mkdir()
    r = _run_cli([drops[1]], out, "--crash-at", point, "--mark-dir", str(marks))
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert (marks / point).exists()  # killed by the hook at that point, in the CLI's own process
    new = _visible_files(reference)
    for rel, data in _visible_files(out).items():
        pq.read_table(out / rel)  # every visible file is complete
        assert data == old.get(rel) or data == new.get(rel), rel  # each partition old or new
    lock = out / "_lock"
    assert lock.exists()  # the dead run's lock is still there: the next run takes it over
    r = _run_cli([drops[1]], out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert dataset(out) == dataset(reference)
    assert not (out / "_staging").exists() and not lock.exists()


def test_kill_at_chosen_moments_converges(tmp_path, drops, shared_runs):
    """Killed while reading, with every file staged, and half way through the commit: each
    time the run is held at the point (tests/faults.py --pause-at) and killed only once it has
    said it got there (--mark-dir), so the kill lands there and not in a process still
    importing or already done. The next run converges to the one-run result."""
    expected = dataset(shared_runs.run(drops))
    out = copy_of(shared_runs.run(drops[:1]), tmp_path / "out")
    old = _visible_files(out)
    for point in ("after-read", "before-manifest", "after-first-move"):
        marks = tmp_path / f"marks-{point}"
        marks.mkdir()
        proc = subprocess.Popen(_run_args(drops[1:], out, "--pause-at", f"{point}:300", "--mark-dir", str(marks)),
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while not (marks / point).exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        reached, running = (marks / point).exists(), proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert reached, f"the run never reached {point} (exit {proc.returncode})"
        assert (marks / point).read_text().split()[0] == str(proc.pid)  # in the process the kill hit
        assert running and proc.returncode == -signal.SIGKILL, "the run had finished before the kill"
        assert (out / "_lock").exists()  # it died holding the output, before its end
        if point != "after-first-move":  # before the commit point: the old dataset, untouched
            assert _visible_files(out) == old
        for rel in _visible_files(out):
            pq.read_table(out / rel)  # every visible file is complete
    r = _run_cli(drops[1:], out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert dataset(out) == expected


def test_concurrent_runs_do_not_corrupt_the_output(tmp_path, drops, shared_runs):
    reference = shared_runs.run(drops[:2])
    out = tmp_path / "out"
    first = subprocess.Popen(_run_args(drops[:2], out, "--pause-at", "before-manifest:8"),
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "_staging").exists() and time.time() < deadline:  # the first run is writing
        time.sleep(0.2)
    second = _run_cli([drops[2]], out)
    assert second.returncode == 75, second.stderr
    assert "is in use by another run" in second.stderr
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert dataset(out) == dataset(reference)
