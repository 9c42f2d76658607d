"""Batches: the bytes of one read task -> (one UPDATE_SCHEMA RecordBatch, reject rows).

JSONL goes through the Arrow engine (`jsonl.read_jsonl_batch`); the whole-file formats give
rows (`formats.read_whole_file`) that `rows_to_batch` turns into a batch.

Example: `parse_task(ReadTask("a.txt", "auto", 0, -1, 1), b"date 2022-02-21 Shelling\\nBody.")`
gives a one-row batch (fmt `text`, headline `Shelling`) and no rejects; the same call on
`b""` gives an empty batch and one reject (`empty_file`).
"""
from __future__ import annotations

import json

import pyarrow as pa

from transforms.common import reject
from transforms.read.formats import UPDATE_SCHEMA, detect, read_whole_file
from transforms.read.jsonl import read_jsonl_batch
from transforms.read.planning import ReadTask


def parse_task(task: ReadTask, data: bytes) -> tuple[pa.RecordBatch, list[dict]]:
    """The update batch and the reject rows of one task's bytes (`fmt` "auto": by content)."""
    rejects: list[dict] = []
    fmt = task.fmt if task.fmt != "auto" else detect(data)
    if fmt == "jsonl":
        return read_jsonl_batch(task.uri, data, task.first_line, rejects), rejects
    rows = read_whole_file(task.uri, fmt, data, rejects)
    return rows_to_batch(rows, rejects), rejects


def rows_to_batch(rows: list[dict], rejects: list) -> pa.RecordBatch:
    """The rows as one UPDATE_SCHEMA batch; a row Arrow cannot hold (a string with a lone
    surrogate, from a JSON escape such as "\\ud800") becomes a reject, not a failed run."""
    try:
        return pa.RecordBatch.from_pylist(rows, schema=UPDATE_SCHEMA)
    except (UnicodeEncodeError, pa.ArrowException):
        good = []
        for r in rows:
            try:
                pa.RecordBatch.from_pylist([r], schema=UPDATE_SCHEMA)
                good.append(r)
            except (UnicodeEncodeError, pa.ArrowException):
                raw = json.dumps({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()})
                rejects.append(reject(r["source_uri"], r["line"], "parse", "invalid_unicode", raw))
        return pa.RecordBatch.from_pylist(good, schema=UPDATE_SCHEMA)
