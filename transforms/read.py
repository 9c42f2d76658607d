"""Read: input files -> Arrow batches of *updates*, plus rejects.

An update is what a publisher emitted at one time: a whole text article snapshot, one line of
the update feed, one live-blog post. Splitting updates into blocks is the next step
(`transforms.split`). Supported formats (`--format auto` picks by content, see `sniff`):

- `text`: `date YYYY-MM-DD <headline>` then one block per line (`../shared/data/seed/`).
- `jsonl`: one JSON object per line with `text`, `published_at`, `article_id` or `url`.
- `liveblog`: one JSON object with `documents` (posts with `time` [Y,M,D,h,m], `title`, `text`).
- `headlines-csv`: a headline CSV, optionally zipped (`../shared/data/ruwa/`): `title`, `Date`
  (MM/DD/YYYY), `src`, `Site`, optional `desc`; one update per row.
- `headlines-json`: a JSON array of headlines (`../shared/data/headlines/`): `title`, Unix
  `timestamp`, `link`, `domain`; one update per item.

Example: the JSONL line `{"url": "https://x.org/a", "text": "Shelling.\\nNo casualties.",
"published_at": 1645344000}` gives one update row with article_id `https://x.org/a`,
source `x.org`, published_at 2022-02-20T08:00Z and the two-line text.

Guarantee: every input line (or record, or unusable file) ends as an update row or as a
rejects row with `stage` and a specific `reason`; a bad line never stops the good lines of
the same file. Large JSONL files are read in byte ranges aligned to line starts, so the
work spreads over workers; line numbers stay exact (counted when the ranges are planned).
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import re
import time
import zipfile
from typing import Iterable, Iterator, NamedTuple
from urllib.parse import urlparse

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from pydantic import ValidationError

from schemas.models import UTC, UpdateIn
from transforms.common import REJECTS, filesystem_options, reject, stable_hash, use_filesystem_options

FORMATS = ("auto", "text", "jsonl", "liveblog", "headlines-csv", "headlines-json")
RANGE_BYTES = 8 << 20
SNIFF_BYTES = 64 << 10
HEADER_RE = re.compile(r"^\s*date\s+(\d{4}-\d{2}-\d{2})\s+(\S.*?)\s*$")

UPDATE_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), False),
        pa.field("line", pa.int64(), False),
        pa.field("fmt", pa.string(), False),
        pa.field("source", pa.string(), False),
        pa.field("article_id", pa.string(), False),
        pa.field("update_id", pa.string(), True),
        pa.field("headline", pa.string(), False),
        pa.field("section", pa.string(), True),
        pa.field("published_at", pa.timestamp("us", tz="UTC"), False),
        pa.field("position", pa.int32(), False),  # position of the update's first block
        pa.field("text", pa.string(), False),
    ]
)


class ReadPlan(NamedTuple):
    """One unit of reading work: a whole file, or a line-aligned byte range of a JSONL file."""

    uri: str
    fmt: str
    start: int
    end: int  # exclusive; -1 = to the end
    first_line: int  # 1-based number of the first line in the range


def sniff(head: bytes) -> str:
    """Format of a file from its first bytes: text, jsonl, liveblog, binary, empty or unknown.

    >>> sniff(b"date 2022-02-21 Headline\\nBody.")
    'text'
    """
    if not head.strip():
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        # a zip: the headline CSV of ../shared/data/ruwa comes zipped
        return "headlines-csv" if b".csv" in head[:SNIFF_BYTES].lower() else "binary"
    if b"\x00" in head[:SNIFF_BYTES]:
        return "binary"
    stripped = head.lstrip().lstrip(b"\xef\xbb\xbf")
    first = stripped.split(b"\n", 1)[0].strip()
    if stripped.startswith(b"["):
        return "headlines-json"
    header = [c.strip().strip('"').lower() for c in first.decode("utf-8", "replace").split(",")]
    if "title" in header and "date" in header:
        return "headlines-csv"
    if stripped.startswith(b"{"):
        try:
            obj = json.loads(first)
        except ValueError:
            return "liveblog"  # a pretty-printed object spans lines
        if isinstance(obj, dict) and "documents" in obj:
            return "liveblog"
        return "jsonl"
    if HEADER_RE.match(first.decode("utf-8", "replace")):
        return "text"
    return "unknown"


def plan_reads(uri: str, fmt: str, size: int, head: bytes, data_for_lines=None) -> list[ReadPlan]:
    """Split a file into read plans. JSONL files larger than RANGE_BYTES become line-aligned
    ranges; `data_for_lines` (an iterator of byte chunks) lets the planner count lines."""
    if fmt != "jsonl" or size <= RANGE_BYTES or data_for_lines is None:
        return [ReadPlan(uri, fmt, 0, -1, 1)]
    plans, start, line, offset = [], 0, 1, 0
    buf_lines = 0
    target = RANGE_BYTES
    for chunk in data_for_lines:
        pos = 0
        while offset + len(chunk) > target:
            # cut at the first newline at or after `target`
            cut = chunk.find(b"\n", max(target - offset, pos))
            if cut < 0:
                break
            buf_lines += chunk.count(b"\n", pos, cut + 1)
            end = offset + cut + 1
            plans.append(ReadPlan(uri, fmt, start, end, line))
            line += buf_lines
            buf_lines = 0
            start, pos = end, cut + 1
            target = end + RANGE_BYTES
        buf_lines += chunk.count(b"\n", pos)
        offset += len(chunk)
    plans.append(ReadPlan(uri, fmt, start, -1, line))
    return plans


def _source_of(url: str | None) -> str | None:
    if not url:
        return None
    host = urlparse(url).hostname or ""
    return host[4:] if host.startswith("www.") else (host or None)


def _parent_name(uri: str) -> str:
    parts = [p for p in re.split(r"[/\\]", uri) if p]
    return parts[-2] if len(parts) >= 2 else "unknown"


def _decode_lines(data: bytes, uri: str, first_line: int, rejects: list) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line; a line that is not UTF-8 becomes a reject."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for i, raw in enumerate(data.split(b"\n")):
        n = first_line + i
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            yield n, raw.decode("utf-8")
        except UnicodeDecodeError:
            rejects.append(reject(uri, n, "read", "invalid_utf8", raw))
    # a trailing newline yields one empty last line, which callers skip as blank


def read_text_article(uri: str, data: bytes, rejects: list) -> list[dict]:
    """One update row for a text article (the whole body; `transforms.split` makes blocks)."""
    lines = list(_decode_lines(data, uri, 1, rejects))
    nonblank = [(n, s) for n, s in lines if s.strip()]
    if not nonblank:
        if not rejects:
            rejects.append(reject(uri, None, "read", "empty_file", b""))
        return []
    header_no, header = nonblank[0]
    m = HEADER_RE.match(header)
    reason = "missing_header"
    if m:
        try:
            day = dt.date.fromisoformat(m.group(1))
            reason = ""
        except ValueError:
            reason = "invalid_header_date"
    if reason:
        for n, s in nonblank:
            rejects.append(reject(uri, n, "parse", reason, s))
        return []
    headline = m.group(2)
    source = _parent_name(uri)
    body_by_line = {n: s for n, s in lines if n > header_no}
    last = max(body_by_line, default=header_no)
    # rejected (non UTF-8) lines are blank here, so line numbers stay exact
    body = "\n".join(body_by_line.get(n, "") for n in range(header_no + 1, last + 1))
    return [
        {
            "source_uri": uri,
            "line": header_no,
            "fmt": "text",
            "source": source,
            "article_id": "txt-" + stable_hash(source + "\x1f" + " ".join(headline.lower().split()), 16),
            "update_id": None,
            "headline": headline,
            "section": None,
            "published_at": dt.datetime(day.year, day.month, day.day, tzinfo=UTC),
            "position": 0,
            "text": body,
        }
    ]


def _validation_reason(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first.get("loc", ())) or None
    if first["type"] == "missing":
        return f"missing_field:{loc}"
    if loc is None:  # model-level rule
        return "missing_field:article_id_or_url"
    return f"invalid_field:{loc}"


def read_jsonl(uri: str, data: bytes, first_line: int, rejects: list) -> list[dict]:
    """One update row per valid JSON line; blank lines are skipped (they carry no block)."""
    rows = []
    for n, s in _decode_lines(data, uri, first_line, rejects):
        if not s.strip():
            continue
        try:
            obj = json.loads(s)
        except ValueError:
            rejects.append(reject(uri, n, "parse", "invalid_json", s))
            continue
        if not isinstance(obj, dict):
            rejects.append(reject(uri, n, "parse", "not_an_object", s))
            continue
        try:
            u = UpdateIn.model_validate(obj)
        except ValidationError as e:
            rejects.append(reject(uri, n, "parse", _validation_reason(e), s))
            continue
        article_id = u.article_id or u.url
        rows.append(
            {
                "source_uri": uri,
                "line": n,
                "fmt": "jsonl",
                "source": u.source or _source_of(u.url) or "unknown",
                "article_id": article_id,
                "update_id": u.update_id,
                "headline": u.headline or "",
                "section": u.section,
                "published_at": u.published_at,
                "position": 0,
                "text": u.text,
            }
        )
    return rows


_UNREADABLE = object()


def _load_json_file(uri: str, data: bytes, rejects: list):
    """A whole-file JSON document, or _UNREADABLE with a reject row (invalid UTF-8 or JSON)."""
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        rejects.append(reject(uri, None, "read", "invalid_utf8", data))
    except ValueError:
        rejects.append(reject(uri, None, "parse", "invalid_json", data))
    return _UNREADABLE


def read_liveblog(uri: str, data: bytes, rejects: list) -> list[dict]:
    """One update row per live-blog post; `line` is the post's 1-based record number."""
    blog = _load_json_file(uri, data, rejects)
    if blog is _UNREADABLE:
        return []
    if not isinstance(blog, dict) or not isinstance(blog.get("documents"), list):
        rejects.append(reject(uri, None, "parse", "missing_field:documents", data))
        return []
    url = blog.get("url") if isinstance(blog.get("url"), str) else None
    article_id = str(blog.get("blog_id") or url or "lb-" + stable_hash(uri, 16))
    source = _source_of(url) or _parent_name(uri)
    headline = str(blog.get("title") or "")
    rows, position = [], 0
    for i, post in enumerate(blog["documents"]):
        n = i + 1
        raw = json.dumps(post, ensure_ascii=False)
        if not isinstance(post, dict):
            rejects.append(reject(uri, n, "parse", "not_an_object", raw))
            continue
        try:
            y, mo, d, h, mi = (int(x) for x in post.get("time"))
            published = dt.datetime(y, mo, d, h, mi, tzinfo=UTC)
        except (TypeError, ValueError):
            reason = "missing_field:time" if post.get("time") is None else "invalid_field:time"
            rejects.append(reject(uri, n, "parse", reason, raw))
            continue
        text = post.get("text")
        if isinstance(text, str):
            text = [text]
        if not isinstance(text, list) or not all(isinstance(t, str) for t in text):
            rejects.append(reject(uri, n, "parse", "invalid_field:text", raw))
            continue
        sentences = [t for t in text if t.strip()]
        if not sentences:
            rejects.append(reject(uri, n, "parse", "missing_field:text", raw))
            continue
        title = post.get("title")
        rows.append(
            {
                "source_uri": uri,
                "line": n,
                "fmt": "liveblog",
                "source": source,
                "article_id": article_id,
                "update_id": str(post.get("block_id") or f"{article_id}/post-{n}"),
                "headline": headline,
                "section": title.strip() if isinstance(title, str) and title.strip() else None,
                "published_at": published,
                "position": position,
                "text": "\n".join(sentences),
            }
        )
        position += len(sentences)
    return rows


def _headline_row(uri: str, line: int, fmt: str, article_id: str, source: str, headline: str,
                  published: dt.datetime, text: str) -> dict:
    return {"source_uri": uri, "line": line, "fmt": fmt, "source": source, "article_id": article_id,
            "update_id": f"{article_id}@{published.isoformat()}", "headline": headline, "section": None,
            "published_at": published, "position": 1, "text": text}


def _csv_members(uri: str, data: bytes, rejects: list) -> list[tuple[str, bytes]]:
    """(name, bytes) of the CSV files in a zip (`__MACOSX/` and hidden entries skipped), or the file."""
    if not data.startswith(b"PK\x03\x04"):
        return [(uri, data)]
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [n for n in z.namelist() if n.lower().endswith(".csv") and not n.startswith("__MACOSX/")
                     and not n.rsplit("/", 1)[-1].startswith(".")]
            return [(f"{uri}!{n}", z.read(n)) for n in sorted(names)]
    except zipfile.BadZipFile:
        rejects.append(reject(uri, None, "read", "binary_file", data[:200]))
        return []


def read_headlines_csv(uri: str, data: bytes, rejects: list) -> list[dict]:
    """Headline CSV (the RUWA layout, optionally zipped): one update per row with `title`
    (the headline block), `Date` (MM/DD/YYYY), `src` (URL, the article id), `Site`, and an
    optional `desc` sub-heading (a second block). `line` is the row's line in the CSV."""
    rows = []
    for name, raw in _csv_members(uri, data, rejects):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            rejects.append(reject(name, None, "read", "invalid_utf8", raw))
            continue
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = {f.strip().lower(): f for f in (reader.fieldnames or []) if f is not None}
        if "title" not in fields or "date" not in fields:
            rejects.append(reject(name, 1, "parse", "missing_field:title_or_date", text.split("\n", 1)[0]))
            continue
        get = lambda r, k: (r.get(fields[k]) or "").strip() if k in fields else ""  # noqa: E731
        for rec in reader:
            line = reader.line_num
            title, date = get(rec, "title"), get(rec, "date")
            raw_row = json.dumps(rec, ensure_ascii=False)
            if not title:
                rejects.append(reject(name, line, "parse", "missing_field:title", raw_row))
                continue
            try:
                published = dt.datetime.strptime(date, "%m/%d/%Y").replace(tzinfo=UTC)
            except ValueError:
                reason = "missing_field:date" if not date else "invalid_field:date"
                rejects.append(reject(name, line, "parse", reason, raw_row))
                continue
            url = get(rec, "src")
            article_id = url or "csv-" + stable_hash(f"{get(rec, 'site')}\x1f{title}", 16)
            source = get(rec, "site") or _source_of(url) or "unknown"
            rows.append(_headline_row(name, line, "headlines-csv", article_id, source, title, published,
                                      get(rec, "desc")))
    return rows


def read_headlines_json(uri: str, data: bytes, rejects: list) -> list[dict]:
    """Headline JSON array (the layout of ../shared/data/headlines): items with `title`, Unix
    `timestamp`, `link` (the article id) and `domain`; `line` is the item's 1-based position."""
    items = _load_json_file(uri, data, rejects)
    if items is _UNREADABLE:
        return []
    if not isinstance(items, list):
        rejects.append(reject(uri, None, "parse", "not_an_array", data))
        return []
    rows = []
    for i, item in enumerate(items):
        n = i + 1
        raw = json.dumps(item, ensure_ascii=False)
        if not isinstance(item, dict):
            rejects.append(reject(uri, n, "parse", "not_an_object", raw))
            continue
        title = item.get("title")
        if not isinstance(title, str) or not title.strip():
            rejects.append(reject(uri, n, "parse", "missing_field:title", raw))
            continue
        ts = item.get("timestamp")
        try:
            if isinstance(ts, bool) or not 0 <= float(ts) < 32503680000:
                raise ValueError
            published = dt.datetime.fromtimestamp(float(ts), UTC)
        except (TypeError, ValueError):
            reason = "missing_field:timestamp" if ts is None else "invalid_field:timestamp"
            rejects.append(reject(uri, n, "parse", reason, raw))
            continue
        link = item.get("link") if isinstance(item.get("link"), str) else None
        source = item.get("domain") if isinstance(item.get("domain"), str) and item.get("domain") else None
        article_id = link or "json-" + stable_hash(f"{source}\x1f{title}", 16)
        rows.append(_headline_row(uri, n, "headlines-json", article_id, source or _source_of(link) or "unknown",
                                  title.strip(), published, ""))
    return rows


def read_plan(plan: ReadPlan, data: bytes) -> tuple[list[dict], list[dict]]:
    """Parse the bytes of one plan: (update rows, reject rows)."""
    rejects: list[dict] = []
    fmt = plan.fmt
    if fmt == "auto":
        fmt = sniff(data[:SNIFF_BYTES])
    if fmt == "empty":
        return [], [reject(plan.uri, None, "read", "empty_file", b"")]
    if fmt == "binary":
        return [], [reject(plan.uri, None, "read", "binary_file", data[:200])]
    if fmt == "unknown":
        # text lines without the header: the text format's most common defect
        fmt = "text"
    if fmt == "text":
        rows = read_text_article(plan.uri, data, rejects)
    elif fmt == "jsonl":
        rows = read_jsonl(plan.uri, data, plan.first_line, rejects)
    elif fmt == "liveblog":
        rows = read_liveblog(plan.uri, data, rejects)
    elif fmt == "headlines-csv":
        rows = read_headlines_csv(plan.uri, data, rejects)
    elif fmt == "headlines-json":
        rows = read_headlines_json(plan.uri, data, rejects)
    else:  # pragma: no cover - checked at start-up
        raise ValueError(f"unknown format {fmt!r}")
    return rows, rejects


def _read_bytes(uri: str, start: int = 0, end: int = -1) -> bytes:
    with FileSystems.open(uri, compression_type="uncompressed") as f:
        if start:
            f.seek(start)
        return f.read() if end < 0 else f.read(end - start)


def _iter_chunks(uri: str, size: int = 16 << 20) -> Iterator[bytes]:
    with FileSystems.open(uri, compression_type="uncompressed") as f:
        while chunk := f.read(size):
            yield chunk


class _PlanReadsFn(beam.DoFn):
    def __init__(self, fmt: str, fs_options: dict | None = None):
        self._fmt, self._fs_options = fmt, fs_options or {}

    def setup(self):
        use_filesystem_options(self._fs_options)

    def process(self, item: tuple[str, int]) -> Iterable:
        uri, size = item
        try:
            with FileSystems.open(uri, compression_type="uncompressed") as f:
                head = f.read(SNIFF_BYTES)
        except Exception as e:  # unreadable file: routed, the run goes on
            yield beam.pvalue.TaggedOutput(REJECTS, reject(uri, None, "read", "unreadable", str(e)))
            return
        fmt = self._fmt if self._fmt != "auto" else sniff(head)
        if fmt == "jsonl" and size > RANGE_BYTES:
            yield from plan_reads(uri, fmt, size, head, _iter_chunks(uri))
        else:
            yield ReadPlan(uri, fmt, 0, -1, 1)


class _ReadPlanFn(beam.DoFn):
    """Reads one plan. Counts files, bytes and updates as Beam metrics (namespace `newsevents`)
    and, when asked, logs progress at a steady interval (per worker: files and bytes it read)."""

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

    def _progress(self, data: bytes, plan: ReadPlan) -> None:
        self._bytes += len(data)
        self._bytes_read.inc(len(data))
        if plan.start == 0:
            self._files += 1
            self._files_read.inc()
        now = time.monotonic()
        if self._every and now - self._last >= self._every:
            self._last = now
            logging.getLogger("newsevents.progress").warning(
                "progress: %d of %d input files, %.1f of %.1f MB read", self._files, self._total_files,
                self._bytes / 1e6, self._total_bytes / 1e6)

    def process(self, plan: ReadPlan) -> Iterable:
        try:
            data = _read_bytes(plan.uri, plan.start, plan.end)
        except Exception as e:
            yield beam.pvalue.TaggedOutput(REJECTS, reject(plan.uri, None, "read", "unreadable", str(e)))
            return
        self._progress(data, plan)
        rows, rejects = read_plan(plan, data)
        self._updates.inc(len(rows))
        for r in rejects:
            yield beam.pvalue.TaggedOutput(REJECTS, r)
        if rows:
            yield pa.RecordBatch.from_pylist(rows, schema=UPDATE_SCHEMA)


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
        plans = files | "Plan" >> beam.ParDo(_PlanReadsFn(self._fmt, fs_options)).with_outputs(REJECTS, main="plans")
        read = (
            plans.plans
            | "Spread" >> beam.Reshuffle()
            | "Parse" >> beam.ParDo(_ReadPlanFn(*self._progress, fs_options)).with_outputs(REJECTS, main="updates")
        )
        rejects = (plans[REJECTS], read[REJECTS]) | "Rejects" >> beam.Flatten()
        return {"updates": read.updates, REJECTS: rejects}
