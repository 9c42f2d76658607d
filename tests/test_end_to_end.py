"""Whole runs on the DirectRunner, read back with DuckDB from tmp_path."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import LIVEBLOG, REPO, SAMPLE, SEED, copy_of, need_shared, query, run_pipeline, write_jsonl


def table_counts(root: Path) -> dict:
    return {t: query(root, f"SELECT count(*) FROM {t}")[0][0] for t in ("events", "duplicates", "rejects")}


def assert_accounting(root: Path, blocks_read: int, redelivered: int | None = None) -> int:
    """Every block read is exactly one events, duplicates or rejects row, or a redelivery
    (counted in quality.redelivered), overall and per day. Returns the redeliveries."""
    c = table_counts(root)
    (redel,) = query(root, "SELECT coalesce(sum(redelivered), 0) FROM quality")[0]
    assert c["events"] + c["duplicates"] + c["rejects"] + redel == blocks_read, (c, redel)
    if redelivered is not None:
        assert redel == redelivered
    (mentions,) = query(root, "SELECT coalesce(sum(mention_count), 0) FROM events")[0]
    assert mentions == c["events"] + c["duplicates"]
    q = query(root, "SELECT sum(blocks_read), sum(rejected), sum(exact_duplicates) + sum(near_duplicates),"
                    " sum(events_written) FROM quality")[0]
    assert q == (blocks_read, c["rejects"], c["duplicates"], c["events"])
    per_day = query(root, "SELECT event_date, blocks_read, events_written + exact_duplicates + near_duplicates"
                          " + rejected + redelivered FROM quality WHERE blocks_read <> events_written"
                          " + exact_duplicates + near_duplicates + rejected + redelivered")
    assert per_day == []
    return redel


def test_seed_article_end_to_end(tmp_path):
    need_shared(SEED)
    out = tmp_path / "out"
    run_pipeline([SEED], out)
    kinds = dict(query(out, "SELECT kind, count(*) FROM events GROUP BY kind"))
    assert kinds == {"headline": 1, "heading": 4, "bullet": 6, "paragraph": 19}
    sections = query(out, "SELECT coalesce(section, '-'), count(*) FROM events GROUP BY 1 ORDER BY min(position)")
    assert sections == [
        ("-", 9),
        ("Ukraine Accuses Separatists of violating Ceasefire", 6),
        ("US Says Russia of Compiling 'Kill List'", 4),
        ("Satellite Images Show Russian Troops 15 Km Away From Border", 4),
        ("Background", 7),
    ]
    row = query(out, "SELECT headline, source, published_at::VARCHAR, time_source, mention_count, cluster_id = event_id,"
                     " update_id LIKE article_id || '/%' FROM events WHERE kind = 'headline'")[0]
    assert row == ("Ukraine Crisis: US Says Russia Has Compiled 'Kill-List' for Invasion Aftermath", "seed",
                   "2022-02-21 00:00:00+00", "published", 1, True, True)
    assert query(out, "SELECT count(DISTINCT event_id), count(DISTINCT update_id), min(position), max(position)"
                      " FROM events") == [(30, 5, 0, 29)]
    bullets = [r[0] for r in query(out, "SELECT text FROM events WHERE kind = 'bullet' ORDER BY position")]
    assert bullets[-2:] == ["The removal of NATO troops from Eastern European countries that joined after 1997",
                            "An assurance that NATO countries will not install missile systems on Russia's borders"]
    assert table_counts(out)["duplicates"] == 0
    assert_accounting(out, 30)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert all(f.endswith(".parquet") for f in files) and not any("_staging" in f for f in files)
    assert "rejects/empty.parquet" in files  # every table exists, even with no rows


SNAPSHOTS = [
    ("2022-03-01", ["Shelling hit the city overnight.", "Officials reported no casualties.",
                    "Evacuation Routes", "Buses left from the central station."]),
    ("2022-03-02", ["Shelling hit the city overnight.", "Officials reported no casualties.",
                    "Evacuation Routes", "Buses left from the central station.",
                    "A second convoy is planned for “Thursday”."]),
    ("2022-03-03", ["Officials reported  no casualties.", "Evacuation Routes",
                    "Buses left from the central station.", "A second convoy is planned for \"Thursday\".",
                    "The mayor thanked volunteers."]),
]


def test_three_overlapping_snapshots(tmp_path):
    src = tmp_path / "in" / "citynews"
    src.mkdir(parents=True)
    for day, body in SNAPSHOTS:
        (src / f"snap-{day}.txt").write_text(f"date {day} City Under Fire as Talks Stall\n" + "\n".join(body) + "\n")
    out = tmp_path / "out"
    run_pipeline([src], out)
    events = query(out, "SELECT event_date::VARCHAR, kind, text, mention_count FROM events"
                        " ORDER BY event_date, published_at, position")
    assert events == [
        ("2022-03-01", "headline", "City Under Fire as Talks Stall", 3),
        ("2022-03-01", "paragraph", "Shelling hit the city overnight.", 2),
        ("2022-03-01", "paragraph", "Officials reported no casualties.", 3),
        ("2022-03-01", "heading", "Evacuation Routes", 3),
        ("2022-03-01", "paragraph", "Buses left from the central station.", 3),
        # published on Wednesday 2 March, planned for Thursday: the event's day is 3 March
        ("2022-03-03", "paragraph", 'A second convoy is planned for "Thursday".', 2),
        ("2022-03-03", "paragraph", "The mayor thanked volunteers.", 1),
    ]
    dups = query(out, "SELECT e.event_date::VARCHAR, d.method, d.similarity, count(*) FROM duplicates d"
                      " JOIN events e USING (event_id) GROUP BY ALL ORDER BY 1")
    # each repeat points at the first sighting and stays on that day's partition
    assert dups == [("2022-03-01", "exact", 1.0, 9), ("2022-03-03", "exact", 1.0, 1)]
    assert query(out, "SELECT count(*) FROM duplicates d JOIN events e USING (event_id, event_date)") == [(10,)]
    assert_accounting(out, 5 + 6 + 6)


def test_bad_input_accounting(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.txt").write_text("date 2022-02-21 Good Article Here\nA paragraph.\nA bullet line\n")
    (d / "noheader.txt").write_text("This file has no header.\nSecond line.\n\nThird.\n")
    (d / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (d / "empty.txt").write_bytes(b"")
    (d / "mixed.txt").write_bytes(b"date 2022-02-22 Mixed Bytes\nGood.\nBad \xff line.\n")
    write_jsonl(d / "feed.jsonl", [
        {"article_id": "A", "text": "First.\nSecond.", "published_at": "2022-02-21T10:00:00+00:00"},
        "{broken json",
        {"article_id": "A", "published_at": "2022-02-21T10:00:00+00:00"},
        {"article_id": "B", "text": "No time."},
        {"article_id": "C", "text": "Naive time.", "published_at": "2022-02-21T10:00:00"},
        {"text": "No id.", "published_at": 1645437600},
        {"article_id": "D", "text": "\u200b", "published_at": 1645437600},
        {"article_id": "E", "text": "First.", "published_at": 1645441200},
    ])
    with open(d / "feed.jsonl", "ab") as f:
        f.write(b'{"article_id": "F", "text": "caf\xe9", "published_at": 1}\n')
    lb = {"blog_id": "L", "url": "https://example.org/live", "title": "Live",
          "documents": [{"block_id": "p1", "time": [2022, 2, 21, 9, 0], "text": ["One post ."]},
                        {"block_id": "p2", "time": None, "text": ["Lost time ."]}]}
    (d / "blog.json").write_text(json.dumps(lb))
    out = tmp_path / "out"
    run_pipeline([d], out)
    rejects = query(out, "SELECT regexp_extract(source_uri, '[^/]+$'), line, stage, reason FROM rejects ORDER BY ALL")
    assert rejects == [
        ("blog.json", 2, "parse", "missing_field:time"),
        ("empty.txt", None, "read", "empty_file"),
        ("feed.jsonl", 2, "parse", "invalid_json"),
        ("feed.jsonl", 3, "parse", "missing_field:text"),
        ("feed.jsonl", 4, "parse", "missing_field:published_at"),
        ("feed.jsonl", 5, "parse", "invalid_field:published_at"),
        ("feed.jsonl", 6, "parse", "missing_field:article_id_or_url"),
        ("feed.jsonl", 7, "normalize", "empty_text"),
        ("feed.jsonl", 9, "read", "invalid_utf8"),
        ("image.png", None, "read", "binary_file"),
        ("mixed.txt", 3, "read", "invalid_utf8"),
        ("noheader.txt", 1, "parse", "missing_header"),
        ("noheader.txt", 2, "parse", "missing_header"),
        ("noheader.txt", 4, "parse", "missing_header"),
    ]
    # good records in the same files went through
    texts = {r[0] for r in query(out, "SELECT text FROM events")}
    assert {"A paragraph.", "A bullet line", "Good.", "First.", "Second.", "One post ."} <= texts
    assert query(out, "SELECT article_id, method FROM duplicates") == [("E", "exact")]
    # blocks read: good.txt 3, noheader 3, png 1, empty 1, mixed 3, feed 2+6 rejects+1 dup ... counted by hand:
    blocks = 3 + 3 + 1 + 1 + 3 + (2 + 5 + 1 + 1 + 1) + (1 + 1)
    assert_accounting(out, blocks)


def test_rerun_is_idempotent(tmp_path, shared_runs):
    out = copy_of(shared_runs.run([SAMPLE]), tmp_path / "out")
    first = {t: query(out, f"SELECT * FROM {t} ORDER BY ALL") for t in ("events", "duplicates", "rejects", "quality")}
    files = sorted(p.relative_to(out) for p in out.rglob("*.parquet"))
    run_pipeline([SAMPLE], out)
    again = {t: query(out, f"SELECT * FROM {t} ORDER BY ALL") for t in ("events", "duplicates", "rejects", "quality")}
    assert again == first
    assert sorted(p.relative_to(out) for p in out.rglob("*.parquet")) == files


def test_sample_quick_start(shared_runs):
    out = shared_runs.run([SAMPLE])
    # 12 + 14 blocks (headline included) in the two article snapshots, 2 + 3 + 1 + 1 feed blocks + 1 refused line, 5 live-blog sentences
    assert_accounting(out, 12 + 14 + 7 + 1 + 5)
    (ferry,) = query(out, "SELECT mention_count, source FROM events WHERE text = 'Ferry operators cancelled 42 sailings.'")
    assert ferry == (4, "kessacourier.example")
    assert query(out, "SELECT reason FROM rejects") == [("missing_field:published_at",)]


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--input", "does/not/exist.txt", "--output", "{tmp}/o"], "input not found: does/not/exist.txt"),
        (["run", "--input", "sample/input", "--output", "{tmp}/file.txt/o"], "cannot write output location"),
        (["run", "--input", "sample/input", "--output", "{tmp}/file.txt"], "output location is not a directory"),
        (["run", "--input", "sample/input", "--output", "{tmp}/o", "--format", "xml"], "--format must be one of"),
        (["run", "--output", "{tmp}/o"], "--input is required"),
        (["sql", "{tmp}/missing", "SELECT 1"], "dataset not found"),
    ],
)
def test_cli_user_errors_are_one_line(tmp_path, args, message):
    (tmp_path / "file.txt").write_text("x")
    r = _cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("newsevents: error: ") and message in lines[0], r.stderr


def test_cli_run_and_sql(tmp_path):
    out = tmp_path / "out"
    r = _cli("run", "--input", "sample/input", "--output", str(out), "--progress", "--progress-every", "0")
    assert r.returncode == 0, r.stderr
    # the end-of-run summary (from the run's Beam counters and the quality table)
    assert "read 4 files" in r.stdout
    assert "39 blocks: 21 events, 16 exact and 1 near duplicates, 0 redelivered, 1 rejects (0 late)" in r.stdout
    assert "rejects by reason: missing_field:published_at 1" in r.stdout
    assert "2024-03-04      33      17     15     1" in r.stdout and f"output: {out}" in r.stdout
    assert "progress: " in r.stderr and " input files, " in r.stderr
    r = _cli("sql", str(out), "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind")
    assert r.returncode == 0, r.stderr
    assert "heading" in r.stdout and "paragraph" in r.stdout and "│" in r.stdout
    r = _cli("sql", str(out), "SELECT nonsense FROM events")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nonsense" in r.stderr


def test_liveblog_end_to_end(tmp_path):
    need_shared(LIVEBLOG)
    out = tmp_path / "out"
    run_pipeline([LIVEBLOG], out)
    blog = json.loads(LIVEBLOG.read_text())
    sentences = sum(len([s for s in d["text"] if s.strip()]) for d in blog["documents"])
    assert_accounting(out, sentences)
    assert query(out, "SELECT DISTINCT article_id, source FROM events") == [(str(blog["blog_id"]), "theguardian.com")]
    assert query(out, "SELECT count(DISTINCT update_id) FROM events")[0][0] == len(blog["documents"])


def test_second_run_on_a_locked_output_refuses(tmp_path):
    import os
    import socket

    out = tmp_path / "out"
    out.mkdir()
    lock = out / "_lock"
    # a live run holds the output (this test's own process stands for it)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": "x",
                                "started": "2026-01-01T00:00:00+00:00"}))
    r = _cli("run", "--input", "sample/input", "--output", str(out))
    assert r.returncode == 75
    assert r.stderr.strip().count("\n") == 0 and "is in use by another run" in r.stderr and str(lock) in r.stderr
    assert not (out / "events").exists()  # nothing written
    # a lock left by a dead run is taken over, and released at the end
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "token": "y"}))
    r = _cli("run", "--input", "sample/input", "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert not lock.exists() and query(out, "SELECT count(*) FROM events") == [(21,)]


def test_module_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pipelines.news_events", "--input", "sample/input",
                        "--output", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "21 events" in r.stdout and query(tmp_path / "out", "SELECT count(*) FROM events") == [(21,)]


def test_date_option_fills_input_patterns(tmp_path):
    drops = tmp_path / "drops" / "2024-03-04"
    drops.mkdir(parents=True)
    (drops / "a.jsonl").write_text(json.dumps({"article_id": "A", "text": "Port closed.",
                                               "published_at": "2024-03-04T08:00:00Z"}) + "\n")
    out = tmp_path / "out"
    run_pipeline([f"{tmp_path}/drops/{{date}}/**"], out, "--date", "2024-03-04")
    assert query(out, "SELECT event_date::VARCHAR, text FROM events") == [("2024-03-04", "Port closed.")]
    r = _cli("run", "--input", f"{tmp_path}/drops/{{date}}/**", "--output", str(out), "--date", "2024-03-05")
    assert r.returncode == 2 and "input not found" in r.stderr and "2024-03-05" in r.stderr
    r = _cli("run", "--input", f"{tmp_path}/drops/{{date}}/**", "--output", str(out), "--date", "March")
    assert r.returncode == 2 and "--date must be YYYY-MM-DD" in r.stderr


def test_real_headline_datasets_are_accounted_for(tmp_path):
    import csv
    import io
    import zipfile

    from .conftest import SHARED_DATA

    ruwa = need_shared(SHARED_DATA / "ruwa" / "RUWA_01.08.23.csv.zip")
    headlines = need_shared(SHARED_DATA / "headlines" / "headlines.json")
    with zipfile.ZipFile(ruwa) as z:
        name = next(n for n in z.namelist() if n.endswith(".csv") and not n.startswith("__MACOSX"))
        records = list(csv.DictReader(io.StringIO(z.read(name).decode("utf-8-sig"), newline="")))
    no_title = sum(1 for r in records if not r["title"].strip())
    # the headline, plus one block per non-blank line of the sub-heading
    ruwa_blocks = sum(1 + sum(1 for x in r["desc"].split("\n") if x.strip())
                      for r in records if r["title"].strip()) + no_title
    items = json.loads(headlines.read_text())
    out = tmp_path / "out"
    run_pipeline([ruwa, headlines], out)
    assert_accounting(out, ruwa_blocks + len(items))
    assert query(out, "SELECT count(*) FROM rejects WHERE reason = 'missing_field:title'") == [(no_title,)]
    assert query(out, "SELECT count(*) FROM events WHERE kind = 'headline' AND source = 'reuters.com'")[0][0] > 0
