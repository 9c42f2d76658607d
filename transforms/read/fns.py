"""The Beam side of reading: `ReadUpdates` and its two DoFns.

    (uri, size) --_PlanFileFn--> ReadTask --Reshuffle--> _ParseTaskFn --> update RecordBatch
                       \\ rejects (unreadable, FIFO, ...)      \\ rejects (bad lines, bad files)

`_PlanFileFn` sniffs each file and splits large JSONL files into line-aligned ranges
(`planning`); `_ParseTaskFn` reads the bytes of one task, parses them (`batches.parse_task`)
and counts files, bytes and updates as Beam metrics, logging progress when asked.
"""
from __future__ import annotations

import logging
import time
from typing import Iterable, Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.common import REJECTS, filesystem_options, reject, use_filesystem_options
from transforms.read import planning
from transforms.read.batches import parse_task
from transforms.read.formats import FORMATS, SNIFF_BYTES, sniff
from transforms.read.planning import ReadTask, input_problem, split_into_ranges
from transforms.sink import crash_point


def _read_bytes(uri: str, start: int = 0, end: int = -1) -> bytes:
    with FileSystems.open(uri, compression_type="uncompressed") as f:
        if start:
            f.seek(start)
        return f.read() if end < 0 else f.read(end - start)


def _iter_chunks(uri: str, size: int = 16 << 20) -> Iterator[bytes]:
    with FileSystems.open(uri, compression_type="uncompressed") as f:
        while chunk := f.read(size):
            yield chunk


class _PlanFileFn(beam.DoFn):
    """(uri, size) -> its read tasks; a file that cannot be opened becomes a reject."""

    def __init__(self, fmt: str, fs_options: dict | None = None):
        self._fmt, self._fs_options = fmt, fs_options or {}

    def setup(self):
        use_filesystem_options(self._fs_options)

    def process(self, item: tuple[str, int]) -> Iterable:
        uri, size = item
        problem = input_problem(uri)
        if problem is not None:  # never opened: a FIFO would block the run
            yield beam.pvalue.TaggedOutput(REJECTS, reject(uri, None, "read", *problem))
            return
        try:
            with FileSystems.open(uri, compression_type="uncompressed") as f:
                head = f.read(SNIFF_BYTES)
        except Exception as e:  # unreadable file: routed, the run goes on
            yield beam.pvalue.TaggedOutput(REJECTS, reject(uri, None, "read", "unreadable", str(e)))
            return
        fmt = self._fmt if self._fmt != "auto" else sniff(head)
        if fmt == "jsonl" and size > planning.RANGE_BYTES:
            yield from split_into_ranges(uri, fmt, size, _iter_chunks(uri))
        else:  # "auto" stays: the parser checks the whole file (`formats.detect`)
            yield ReadTask(uri, self._fmt, 0, -1, 1)


class _ParseTaskFn(beam.DoFn):
    """Reads and parses one task. Counts files, bytes and updates as Beam metrics (namespace
    `newsevents`) and, when asked, logs progress at a steady interval (per worker: files and
    bytes it read)."""

    def __init__(self, total_files: int = 0, total_bytes: int = 0, progress_every: float = 0.0,
                 fs_options: dict | None = None):
        self._total_files, self._total_bytes, self._every = total_files, total_bytes, progress_every
        self._fs_options = fs_options or {}

    def setup(self):
        use_filesystem_options(self._fs_options)
        self._files = self._bytes = 0
        self._last = time.monotonic()
        self._files_read = Metrics.counter("newsevents", "files_read")
        self._bytes_read = Metrics.counter("newsevents", "bytes_read")
        self._updates = Metrics.counter("newsevents", "updates_read")

    def _progress(self, data: bytes, task: ReadTask) -> None:
        self._bytes += len(data)
        self._bytes_read.inc(len(data))
        if task.start == 0:
            self._files += 1
            self._files_read.inc()
        now = time.monotonic()
        if self._every and now - self._last >= self._every:
            self._last = now
            logging.getLogger("newsevents.progress").warning(
                "progress: %d of %d input files, %.1f of %.1f MB read", self._files, self._total_files,
                self._bytes / 1e6, self._total_bytes / 1e6)

    def process(self, task: ReadTask) -> Iterable:
        try:
            data = _read_bytes(task.uri, task.start, task.end)
        except Exception as e:
            yield beam.pvalue.TaggedOutput(REJECTS, reject(task.uri, None, "read", "unreadable", str(e)))
            return
        self._progress(data, task)
        crash_point("after-read")
        batch, rejects = parse_task(task, data)
        self._updates.inc(batch.num_rows)
        for r in rejects:
            yield beam.pvalue.TaggedOutput(REJECTS, r)
        if batch.num_rows:
            yield batch


class ReadUpdates(beam.PTransform):
    """(uri, size) pairs -> PCollection of update RecordBatches; rejects on tag `rejects`.

    The file list is expanded and checked at start-up (`pipelines.news_events.expand_inputs`),
    so a missing path never reaches the workers.
    """

    def __init__(self, fmt: str = "auto", total_files: int = 0, total_bytes: int = 0, progress_every: float = 0.0):
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self._fmt = fmt
        self._progress = (total_files, total_bytes, progress_every)

    def expand(self, files):
        fs_options = filesystem_options(files.pipeline.options)
        tasks = files | "Plan" >> beam.ParDo(_PlanFileFn(self._fmt, fs_options)).with_outputs(REJECTS, main="tasks")
        read = (
            tasks.tasks
            | "Spread" >> beam.Reshuffle()
            | "Parse" >> beam.ParDo(_ParseTaskFn(*self._progress, fs_options)).with_outputs(REJECTS, main="updates")
        )
        rejects = (tasks[REJECTS], read[REJECTS]) | "Rejects" >> beam.Flatten()
        return {"updates": read.updates, REJECTS: rejects}
