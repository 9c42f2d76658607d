"""Formats: what a file is (`sniff`, `detect`) and how each format becomes update rows.

An update row is a dict with the columns of `UPDATE_SCHEMA`; a line, record or file that
cannot become one is appended to `rejects` (a list of reject rows) with a specific reason.

- `text`: `date YYYY-MM-DD <headline>` then one block per line (`read_text_article`);
- `jsonl`: one JSON object per line (`jsonl_line_row` reads one line; whole ranges are read
  by `transforms.read.jsonl.read_jsonl_batch`);
- `liveblog`: one JSON object with `documents` (`read_liveblog`);
- `headlines-csv`: a headline CSV, optionally zipped (`read_headlines_csv`);
- `headlines-json`: a JSON array of headlines (`read_headlines_json`).

Example: `read_text_article("in/site/a.txt", b"date 2022-02-21 Shelling\\nBody.", rejects)`
gives one row with source `site`, headline `Shelling`, published_at 2022-02-21T00:00Z and
text `Body.`.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from typing import Iterator
from urllib.parse import urlparse

import pyarrow as pa
from pydantic import ValidationError

from schemas.models import EPOCH_SECONDS_END, UTC, UpdateIn
from transforms.common import reject, stable_hash

FORMATS = ("auto", "text", "jsonl", "liveblog", "headlines-csv", "headlines-json")
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

# ----------------------------------------------------------------------------- sniffing

# magic numbers of files that are not text whatever else they hold
BINARY_MAGIC = (b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"%PDF", b"\x1f\x8b", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd",
                b"PAR1", b"\x7fELF")


def _looks_binary(head: bytes) -> bool:
    """A known binary magic number, more than 8 NUL bytes that are over 1 % of the first bytes,
    or over 5 % of them not UTF-8. One stray NUL or bad byte in a text or JSONL file is not
    binary: that line alone becomes a reject (`nul_byte`, `invalid_utf8`)."""
    nuls = head.count(b"\x00")
    if head.startswith(BINARY_MAGIC) or (nuls > 8 and nuls * 100 > len(head)):
        return True
    bad = head.decode("utf-8", "replace").count("\ufffd") - head.count("\ufffd".encode())
    return bad * 20 > len(head)


def _json_value(line: bytes):
    """The JSON value of one line, or None when it is not one whole JSON value."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def sniff(head: bytes) -> str:
    """Format of a file from its first bytes: text, jsonl, liveblog, binary, empty or unknown.

    >>> sniff(b"date 2022-02-21 Headline\\nBody.")
    'text'

    A file whose lines are mostly `{...}` is JSONL even when its first line is something else
    (an array, garbage): JSONL is read line by line, so that line alone becomes a reject.
    """
    head = head[:SNIFF_BYTES]
    if not head.strip():
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        # a zip: the headline CSV of ../shared/data/ruwa comes zipped
        return "headlines-csv" if b".csv" in head.lower() else "binary"
    if _looks_binary(head):
        return "binary"
    stripped = head.lstrip().lstrip(b"\xef\xbb\xbf")
    lines = [x.strip() for x in stripped.split(b"\n")[:200] if x.strip()]
    first = lines[0]
    objects = sum(1 for x in lines if x.startswith(b"{") and x.endswith(b"}"))
    if len(lines) > 1 and objects * 2 >= len(lines) and (first.endswith((b"}", b"]")) or not first.startswith((b"{", b"["))):
        return "jsonl"  # JSON object lines, the first line whole (not a document spread over lines)
    if stripped.startswith(b"["):
        return "headlines-json"
    header = [c.strip().strip('"').lower() for c in first.decode("utf-8", "replace").split(",")]
    if "title" in header and "date" in header:
        return "headlines-csv"
    if stripped.startswith(b"{"):
        obj = _json_value(first)
        if obj is None:
            return "liveblog"  # a pretty-printed object spans lines
        if isinstance(obj, dict) and "documents" in obj:
            return "liveblog"
        return "jsonl"
    if HEADER_RE.match(first.decode("utf-8", "replace")):
        return "text"
    return "unknown"


def detect(data: bytes) -> str:
    """`sniff`, then a check for the whole-file JSON formats: a file that does not parse as one
    JSON document but has several lines is read as JSONL, line by line, so that its good lines
    are kept and each bad one is its own reject."""
    fmt = sniff(data[:SNIFF_BYTES])
    if fmt in ("liveblog", "headlines-json") and _load_json_file("", data, []) is _UNREADABLE:
        if sum(1 for line in data.split(b"\n", 2)[:2] if line.strip()) > 1:
            return "jsonl"
    return fmt


# ----------------------------------------------------------------------------- shared pieces

def source_of(url: str | None) -> str | None:
    """The host of a URL without `www.`, the source of an update that names none."""
    if not url:
        return None
    try:
        host = urlparse(url).hostname or ""
    except ValueError:  # e.g. "http://[::1": no host to name the source by
        return None
    return host[4:] if host.startswith("www.") else (host or None)


def _parent_name(uri: str) -> str:
    parts = [p for p in re.split(r"[/\\]", uri) if p]
    return parts[-2] if len(parts) >= 2 else "unknown"


def decode_line(raw: bytes, uri: str, n: int, rejects: list) -> str | None:
    """The text of one line (a trailing CR dropped), or None and a reject when it is not UTF-8."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        rejects.append(reject(uri, n, "read", "invalid_utf8", raw))
        return None
    if "\x00" in s:  # never text; JSON allows it only escaped (\\u0000)
        rejects.append(reject(uri, n, "read", "nul_byte", s.replace("\x00", "\\x00")))
        return None
    return s


def decode_lines(data: bytes, uri: str, first_line: int, rejects: list) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line; a line that is not UTF-8 becomes a reject."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for i, raw in enumerate(data.split(b"\n")):
        n = first_line + i
        s = decode_line(raw, uri, n, rejects)
        if s is not None:
            yield n, s
    # a trailing newline yields one empty last line, which callers skip as blank


_UNREADABLE = object()


def _load_json_file(uri: str, data: bytes, rejects: list):
    """A whole-file JSON document, or _UNREADABLE with a reject row (invalid UTF-8 or JSON)."""
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        rejects.append(reject(uri, None, "read", "invalid_utf8", data))
    except ValueError:
        rejects.append(reject(uri, None, "parse", "invalid_json", data))
    except RecursionError:  # nested deeper than Python's limit
        rejects.append(reject(uri, None, "parse", "too_deeply_nested", data))
    return _UNREADABLE


def _raw_json(obj) -> str:
    """The JSON text of a record for its reject row (any object json.loads made)."""
    try:
        return json.dumps(obj, ensure_ascii=False)
    except (ValueError, RecursionError):
        return repr(obj)[:2000]


# ----------------------------------------------------------------------------- text articles

def read_text_article(uri: str, data: bytes, rejects: list) -> list[dict]:
    """One update row for a text article (the whole body; `transforms.split` makes blocks)."""
    lines = list(decode_lines(data, uri, 1, rejects))
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


# ----------------------------------------------------------------------------- one JSONL line

def _validation_reason(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first.get("loc", ())) or None
    if first["type"] == "missing":
        return f"missing_field:{loc}"
    if loc is None:  # model-level rule
        return "missing_field:article_id_or_url"
    return f"invalid_field:{loc}"


def jsonl_line_row(uri: str, n: int, s: str, rejects: list) -> dict | None:
    """The update row of one decoded JSONL line (json + pydantic `UpdateIn`), or None: a blank
    line, or a reject appended. The definition of a feed line; `read_jsonl_batch` reads whole
    ranges with pyarrow.json and sends here the lines it cannot vouch for."""
    if not s.strip():
        return None
    try:
        obj = json.loads(s)
    except ValueError:
        rejects.append(reject(uri, n, "parse", "invalid_json", s))
        return None
    except RecursionError:  # nested deeper than Python's limit
        rejects.append(reject(uri, n, "parse", "too_deeply_nested", s))
        return None
    if not isinstance(obj, dict):
        rejects.append(reject(uri, n, "parse", "not_an_object", s))
        return None
    try:
        u = UpdateIn.model_validate(obj)
    except ValidationError as e:
        rejects.append(reject(uri, n, "parse", _validation_reason(e), s))
        return None
    return {
        "source_uri": uri,
        "line": n,
        "fmt": "jsonl",
        "source": u.source or source_of(u.url) or "unknown",
        "article_id": u.article_id or u.url,
        "update_id": u.update_id,
        "headline": u.headline or "",
        "section": u.section,
        "published_at": u.published_at,
        "position": 0,
        "text": u.text,
    }


# ----------------------------------------------------------------------------- live blogs

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
    source = source_of(url) or _parent_name(uri)
    headline = str(blog.get("title") or "")
    rows, position = [], 0
    for i, post in enumerate(blog["documents"]):
        n = i + 1
        raw = _raw_json(post)
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


# ----------------------------------------------------------------------------- headline datasets

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


def _csv_records(reader: csv.DictReader, name: str, rejects: list) -> Iterator[tuple[int, dict]]:
    """(line, record) of each CSV row; a row the csv module refuses (a field over its size
    limit, a NUL) ends the member with one reject (`invalid_csv`) after the rows before it."""
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            # line_num counts the lines of the rows before: the refused one is the next
            rejects.append(reject(name, reader.line_num + 1, "parse", "invalid_csv", str(e)))
            return
        yield reader.line_num, rec


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
        try:
            fields = {f.strip().lower(): f for f in (reader.fieldnames or []) if f is not None}
        except csv.Error as e:
            rejects.append(reject(name, 1, "parse", "invalid_csv", str(e)))
            continue
        if "title" not in fields or "date" not in fields:
            rejects.append(reject(name, 1, "parse", "missing_field:title_or_date", text.split("\n", 1)[0]))
            continue
        get = lambda r, k: (r.get(fields[k]) or "").strip() if k in fields else ""  # noqa: E731
        for line, rec in _csv_records(reader, name, rejects):
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
            source = get(rec, "site") or source_of(url) or "unknown"
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
        raw = _raw_json(item)
        if not isinstance(item, dict):
            rejects.append(reject(uri, n, "parse", "not_an_object", raw))
            continue
        title = item.get("title")
        if not isinstance(title, str) or not title.strip():
            rejects.append(reject(uri, n, "parse", "missing_field:title", raw))
            continue
        ts = item.get("timestamp")
        try:
            if isinstance(ts, bool) or not 0 <= float(ts) < EPOCH_SECONDS_END:
                raise ValueError
            published = dt.datetime.fromtimestamp(float(ts), UTC)
        except (TypeError, ValueError):
            reason = "missing_field:timestamp" if ts is None else "invalid_field:timestamp"
            rejects.append(reject(uri, n, "parse", reason, raw))
            continue
        link = item.get("link") if isinstance(item.get("link"), str) else None
        source = item.get("domain") if isinstance(item.get("domain"), str) and item.get("domain") else None
        article_id = link or "json-" + stable_hash(f"{source}\x1f{title}", 16)
        rows.append(_headline_row(uri, n, "headlines-json", article_id, source or source_of(link) or "unknown",
                                  title.strip(), published, ""))
    return rows


# ----------------------------------------------------------------------------- whole files

_WHOLE_FILE_READERS = {
    "text": read_text_article,
    "liveblog": read_liveblog,
    "headlines-csv": read_headlines_csv,
    "headlines-json": read_headlines_json,
}


def read_whole_file(uri: str, fmt: str, data: bytes, rejects: list) -> list[dict]:
    """The update rows of a file in a whole-file format (`fmt` as `detect` gives it, never
    `jsonl`): an empty or binary file is one reject; an `unknown` one is read as text, whose
    most common defect is a missing header."""
    if fmt == "empty":
        rejects.append(reject(uri, None, "read", "empty_file", b""))
        return []
    if fmt == "binary":
        rejects.append(reject(uri, None, "read", "binary_file", data[:200]))
        return []
    reader = _WHOLE_FILE_READERS.get("text" if fmt == "unknown" else fmt)
    if reader is None:  # pragma: no cover - formats are checked at start-up
        raise ValueError(f"not a whole-file format: {fmt!r}")
    return reader(uri, data, rejects)
