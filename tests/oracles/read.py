"""Reading, line by line: the oracle of the Arrow JSONL engine (`transforms.read.jsonl`).

`read_jsonl` decodes each line and parses it with `jsonl_line_row` (json + pydantic);
`read_task_rows` is `transforms.read.parse_task` with rows instead of a batch and JSONL read
by `read_jsonl`.
"""
from __future__ import annotations

from transforms.read import ReadTask, decode_lines, detect, jsonl_line_row, read_whole_file


def read_jsonl(uri: str, data: bytes, first_line: int, rejects: list) -> list[dict]:
    """One update row per valid JSON line; blank lines are skipped (they carry no block)."""
    rows = []
    for n, s in decode_lines(data, uri, first_line, rejects):
        row = jsonl_line_row(uri, n, s, rejects)
        if row is not None:
            rows.append(row)
    return rows


def read_task_rows(task: ReadTask, data: bytes) -> tuple[list[dict], list[dict]]:
    """(update rows, reject rows) of the bytes of one read task."""
    rejects: list[dict] = []
    fmt = task.fmt if task.fmt != "auto" else detect(data)
    if fmt == "jsonl":
        return read_jsonl(task.uri, data, task.first_line, rejects), rejects
    return read_whole_file(task.uri, fmt, data, rejects), rejects
