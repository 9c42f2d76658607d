"""Hostile input: deep nesting, a stray array or NUL byte, FIFOs and dangling symlinks. Each
bad case is a rejects row with its own reason; the good lines of the same file are kept and the
run never stops or hangs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from transforms.read import ReadTask, input_problem, parse_task, sniff

from .oracles.read import read_task_rows

from .conftest import query

GOOD = [{"url": f"https://x.org/{i}", "text": f"Good line number {i} of the feed.", "published_at": 1709596800 + i}
        for i in range(3)]
DEEP = "[" * 100_000 + "]" * 100_000


def lines(*items) -> bytes:
    return ("\n".join(x if isinstance(x, str) else json.dumps(x) for x in items) + "\n").encode()


def read_both(data: bytes, fmt: str = "auto"):
    """read_task_rows (the oracle, row by row) and parse_task (the production path) must agree."""
    rows, rejects = read_task_rows(ReadTask("f", fmt, 0, -1, 1), data)
    batch, batch_rejects = parse_task(ReadTask("f", fmt, 0, -1, 1), data)
    assert batch.column("line").to_pylist() == [r["line"] for r in rows]
    assert sorted((r["line"], r["reason"]) for r in batch_rejects) == sorted((r["line"], r["reason"]) for r in rejects)
    return [r["line"] for r in rows], sorted((r["line"], r["stage"], r["reason"]) for r in rejects)


@pytest.mark.parametrize("fmt", ["auto", "jsonl"])
def test_deeply_nested_jsonl_line_is_one_reject(fmt):
    data = lines(GOOD[0], '{"url": "u", "published_at": 1, "text": "t", "x": ' + DEEP + "}", GOOD[1])
    assert read_both(data, fmt) == ([1, 3], [(2, "parse", "too_deeply_nested")])


@pytest.mark.parametrize("first", ["[1, 2]", DEEP, "not json at all", '"a string"'])
@pytest.mark.parametrize("fmt", ["auto", "jsonl"])
def test_a_bad_first_line_does_not_take_the_file_with_it(first, fmt):
    data = lines(first, *GOOD)
    kept, rejects = read_both(data, fmt)
    assert kept == [2, 3, 4] and len(rejects) == 1 and rejects[0][0] == 1
    assert rejects[0][2] in ("not_an_object", "invalid_json", "too_deeply_nested")
    if first == DEEP:
        assert rejects[0][2] == "too_deeply_nested"


@pytest.mark.parametrize("fmt", ["auto", "jsonl"])
def test_one_nul_byte_is_one_reject(fmt):
    bad = json.dumps({**GOOD[0], "url": "https://x.org/nul"}).replace("nul", "n\x00l")
    data = lines(GOOD[0], bad, GOOD[1]) + b'{"url": "u", "published_at": 1, "text": "t"}\x00\n'
    assert sniff(data) == "jsonl"
    assert read_both(data, fmt) == ([1, 3], [(2, "read", "nul_byte"), (4, "read", "nul_byte")])


def test_nul_byte_in_a_text_article_line():
    data = b"date 2024-03-05 Storm hits the harbour\nFirst paragraph.\nbad \x00 line\nLast paragraph.\n"
    rows, rejects = read_task_rows(ReadTask("a.txt", "auto", 0, -1, 1), data)
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "nul_byte")]
    assert rows[0]["text"].split("\n")[:3] == ["First paragraph.", "", "Last paragraph."]


def test_binary_files_are_still_binary():
    for head in (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), b"\x1f\x8b\x08\x00" + b"x" * 100, b"a\x00" * 100):
        assert sniff(head) == "binary"


@pytest.mark.parametrize("fmt", ["auto", "liveblog"])
def test_deeply_nested_liveblog_is_one_reject(fmt):
    data = ('{"blog_id": "b", "title": "T", "documents": [' + DEEP + "]}").encode()
    assert read_both(data, fmt) == ([], [(None, "parse", "too_deeply_nested")])
    post = '{"block_id": "p", "time": [2024, 3, 5, 9, 0], "text": ' + "[" * 900 + "]" * 900 + "}"
    data = ('{"blog_id": "b", "title": "T", "documents": [' + post + "]}").encode()
    kept, rejects = read_both(data, fmt)  # nested within Python's limit: its reject row holds it
    assert kept == [] and rejects == [(1, "parse", "invalid_field:text")]


def test_array_first_line_then_feed_lines_under_auto():
    # used to be sniffed as a headline JSON array: the whole file one invalid_json reject
    data = lines([{"title": "x", "timestamp": 1}], *GOOD)
    assert read_both(data) == ([2, 3, 4], [(1, "parse", "not_an_object")])
    # a real headline array is still one
    assert sniff(b'[\n  {"title": "x", "timestamp": 1},\n  {"title": "y", "timestamp": 2}\n]\n') == "headlines-json"


def test_csv_field_over_the_size_limit_is_a_reject():
    data = b"title,Date,src,Site\nGood,03/05/2024,https://a.org/1,a.org\nHuge," + b"x" * 200_000 + b",u,s\n"
    rows, rejects = read_task_rows(ReadTask("h.csv", "auto", 0, -1, 1), data)
    assert [r["headline"] for r in rows] == ["Good"]
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "invalid_csv")]


def test_input_problem(tmp_path):
    (tmp_path / "ok.jsonl").write_text("{}\n")
    os.mkfifo(tmp_path / "pipe")
    os.symlink(tmp_path / "missing", tmp_path / "dangling")
    assert input_problem(str(tmp_path / "ok.jsonl")) is None
    assert input_problem(str(tmp_path / "pipe")) == ("not_a_regular_file", f"{tmp_path / 'pipe'} is a FIFO (named pipe)")
    assert input_problem(str(tmp_path / "dangling"))[0] == "dangling_symlink"


def test_run_over_a_hostile_drop_keeps_the_good_lines(tmp_path):
    """One run over a folder with a FIFO (nobody writes to it: opening it would block forever), a
    dangling symlink, and feeds with a deep, an array and a NUL line: exit 0, good lines kept."""
    drop, out = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    (drop / "deep.jsonl").write_bytes(lines(GOOD[0], '{"x": ' + DEEP + "}"))
    (drop / "array.jsonl").write_bytes(lines("[1, 2]", GOOD[1]))
    (drop / "nul.jsonl").write_bytes(lines(GOOD[2]) + b'{"url": "u", "text": "\x00"}\n')
    (drop / "blog.json").write_bytes(('{"blog_id": "b", "documents": [' + DEEP + "]}").encode())
    os.mkfifo(drop / "pipe")
    os.symlink(drop / "gone.jsonl", drop / "dangling.jsonl")
    r = subprocess.run([sys.executable, "-m", "pipelines.news_events", "--input", str(drop), "--output", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert query(out, "SELECT count(*) FROM events") == [(3,)]
    got = query(out, "SELECT regexp_extract(source_uri, '[^/]+$'), line, reason FROM rejects ORDER BY ALL")
    assert got == [("array.jsonl", 1, "not_an_object"), ("blog.json", None, "too_deeply_nested"),
                   ("dangling.jsonl", None, "dangling_symlink"), ("deep.jsonl", 2, "too_deeply_nested"),
                   ("nul.jsonl", 2, "nul_byte"), ("pipe", None, "not_a_regular_file")]
