"""Planning: input files -> read tasks, the units of reading work spread over workers.

A read task is a whole file, or, for a JSONL file larger than RANGE_BYTES, a byte range that
starts at a line start; the planner counts the lines before each range, so line numbers in
rows and rejects stay exact wherever the range is read.

Example: a 20 MB JSONL file of 100-byte lines gives three tasks, (0, 8388700, line 1),
(8388700, 16777400, line 83888) and (16777400, -1, line 167775); a text article gives one
task (0, -1, line 1).
"""
from __future__ import annotations

import os
import stat
from typing import Iterable, NamedTuple

RANGE_BYTES = 8 << 20


class ReadTask(NamedTuple):
    """One unit of reading work: a whole file, or a line-aligned byte range of a JSONL file."""

    uri: str
    fmt: str
    start: int
    end: int  # exclusive; -1 = to the end
    first_line: int  # 1-based number of the first line in the range


def split_into_ranges(uri: str, fmt: str, size: int, chunks: Iterable[bytes] | None = None) -> list[ReadTask]:
    """The read tasks of one file: JSONL files larger than RANGE_BYTES become line-aligned
    ranges of about RANGE_BYTES, counting lines through `chunks` (the file's bytes, in
    pieces of any size); any other file is one task."""
    if fmt != "jsonl" or size <= RANGE_BYTES or chunks is None:
        return [ReadTask(uri, fmt, 0, -1, 1)]
    tasks, start, line, offset = [], 0, 1, 0
    buf_lines = 0
    target = RANGE_BYTES
    for chunk in chunks:
        pos = 0
        while offset + len(chunk) > target:
            # cut at the first newline at or after `target`
            cut = chunk.find(b"\n", max(target - offset, pos))
            if cut < 0:
                break
            buf_lines += chunk.count(b"\n", pos, cut + 1)
            end = offset + cut + 1
            tasks.append(ReadTask(uri, fmt, start, end, line))
            line += buf_lines
            buf_lines = 0
            start, pos = end, cut + 1
            target = end + RANGE_BYTES
        buf_lines += chunk.count(b"\n", pos)
        offset += len(chunk)
    tasks.append(ReadTask(uri, fmt, start, -1, line))
    return tasks


_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"))


def input_problem(uri: str) -> tuple[str, str] | None:
    """(reason, what) when a local input cannot be read as a file without opening it: a dangling
    symlink (`dangling_symlink`), or a FIFO, socket or device (`not_a_regular_file`: opening
    a FIFO would wait for a writer forever). None for a regular file or an object-store URI.

    >>> input_problem("s3://bucket/feed.jsonl") is None
    True
    """
    if "://" in uri:
        return None
    try:
        st = os.stat(uri)
    except FileNotFoundError:
        if os.path.islink(uri):
            return "dangling_symlink", f"{uri} -> {os.readlink(uri)} (missing)"
        return None  # gone since it was listed: reading it gives `unreadable`
    except OSError as e:  # a symlink loop, a permission on a folder on the way
        return "unreadable", f"{uri}: {e.strerror or e}"
    if stat.S_ISREG(st.st_mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "not a regular file")
    return "not_a_regular_file", f"{uri} is {kind}"
