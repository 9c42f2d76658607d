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
A JSONL range is parsed with pyarrow.json (`read_jsonl_batch`); `read_jsonl`, line by line
with pydantic, is the reference it matches and the path for the lines it cannot vouch for.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import os
import re
import stat
import time
import zipfile
from typing import Iterable, Iterator, NamedTuple
from urllib.parse import urlparse

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from pydantic import ValidationError

from schemas.models import UTC, UpdateIn
from transforms.common import REJECTS, filesystem_options, reject, stable_hash, use_filesystem_options
from transforms.sink import crash_point

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
    try:
        host = urlparse(url).hostname or ""
    except ValueError:  # e.g. "http://[::1": no host to name the source by
        return None
    return host[4:] if host.startswith("www.") else (host or None)


def _parent_name(uri: str) -> str:
    parts = [p for p in re.split(r"[/\\]", uri) if p]
    return parts[-2] if len(parts) >= 2 else "unknown"


def _decode_line(raw: bytes, uri: str, n: int, rejects: list) -> str | None:
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


def _decode_lines(data: bytes, uri: str, first_line: int, rejects: list) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line; a line that is not UTF-8 becomes a reject."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for i, raw in enumerate(data.split(b"\n")):
        n = first_line + i
        s = _decode_line(raw, uri, n, rejects)
        if s is not None:
            yield n, s
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


def _jsonl_row(uri: str, n: int, s: str, rejects: list) -> dict | None:
    """The update row of one decoded JSONL line, or None (a blank line, or a reject appended)."""
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
        "source": u.source or _source_of(u.url) or "unknown",
        "article_id": u.article_id or u.url,
        "update_id": u.update_id,
        "headline": u.headline or "",
        "section": u.section,
        "published_at": u.published_at,
        "position": 0,
        "text": u.text,
    }


def read_jsonl(uri: str, data: bytes, first_line: int, rejects: list) -> list[dict]:
    """One update row per valid JSON line; blank lines are skipped (they carry no block).

    The reference reader, line by line with pydantic; `read_jsonl_batch` gives the same rows
    as one Arrow batch, much faster."""
    rows = []
    for n, s in _decode_lines(data, uri, first_line, rejects):
        row = _jsonl_row(uri, n, s, rejects)
        if row is not None:
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- JSONL, vectorized
#
# `read_jsonl_batch` reads a range with pyarrow.json and vouches, column by column, for the rows
# whose values are exactly what `_jsonl_row` (json + pydantic `UpdateIn`) gives. Every other line
# goes through `_jsonl_row` itself ("per-line"), so rows, rejects and line numbers stay those of
# `read_jsonl`. Where pyarrow.json and Python's json could disagree, the line goes per-line:
# - invalid UTF-8 anywhere in a line (pyarrow.json does not check it; Arrow's UTF-8 validation,
#   as strict as Python's, finds it);
# - a line that is not exactly `{...}` (white space around it, an array, a BOM, ...): blanked out
#   of the pyarrow input, so that pyarrow gives one row per remaining line (the count is checked;
#   a `{...}` line cannot share an object with the next one without a parse error);
# - a line pyarrow refuses (a key given twice, a field of another JSON type, invalid JSON): the
#   error names its row; the rows before it are parsed again, and the line goes per-line (a
#   refusal without a row number: the part is parsed again in smaller parts);
# - fields outside the model: the first parse refuses them (pyarrow's "error" mode), which proves
#   that every value of a parsed line is a flat string, number or null. Only a range that has
#   such fields is parsed again ignoring them, after sending per-line the lines that may hold a
#   token that rapidjson accepts and Python does not (-NaN, Inf, -Inf) or enough brackets to
#   exceed Python's json recursion limit.
# Each refusal costs a parse call. published_at is read as one JSON kind (string or number) per
# part, so a line of the other kind is a refusal too: it goes per-line, and when the next line
# is of the other kind as well, the range goes on with that kind. After 8
# refusals, once more than one line in _MAX_REFUSED has been refused, the rest of the range goes
# per-line: as fast as pyarrow for such a feed (say, one where string and number timestamps alternate).

_FEED_FIELDS = ("text", "published_at", "article_id", "url", "update_id", "source", "headline", "section")
_FEED_SCHEMAS = {  # published_at as a JSON string, or as a JSON number
    kind: pa.schema([(f, typ if f == "published_at" else pa.string()) for f in _FEED_FIELDS])
    for kind, typ in (("string", pa.string()), ("number", pa.float64()))
}
# The characters for which str.isspace() is true, i.e. what str.strip() removes (a test checks it).
PY_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                 "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_NOT_BLANK_RE = "[^" + "".join(f"\\x{{{ord(c):x}}}" for c in PY_WHITESPACE) + "]"
# The ISO 8601 forms vouched for; `_iso_micros` reads them as `UpdateIn._published` does.
_ISO_RE = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
           r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
_EPOCH_END = 32503680000  # UpdateIn._published: epoch seconds in [0, this)
_MAX_BRACKETS = 200  # '[' and '{' per line; Python's json stops at about 1000 levels of nesting
_SPLIT_WAYS = 8  # a part refused without a row number is parsed again in this many parts ...
_LEAF_LINES = 8  # ... down to this many lines, which go per-line
_WINDOW_LINES = 256  # lines per parse once pyarrow has refused a line in the range
_MAX_REFUSED = 40  # more than one refused line in this many: the rest of the range goes per-line
_MAX_BLOCK = 1 << 30  # pyarrow.json block: a whole part, so that "in row N" counts from its start
_ERROR_ROW = re.compile(r" in row (\d+)$")
_KIND_CHANGE = re.compile(r"^JSON parse error: Column\(/published_at\) changed from (?:string|number) to "
                          r"(string|number) in row \d+$")
_SCAN_BYTES = 1 << 18  # numpy scans in cache-sized pieces


class _UnknownField(Exception):
    """A field outside the model: the range is read again with pyarrow ignoring such fields."""


def _positions(buf: np.ndarray, test) -> np.ndarray:
    """Positions (int64) where test(bytes) holds, scanning `buf` piece by piece."""
    found = [np.flatnonzero(test(buf[s:s + _SCAN_BYTES])) + s for s in range(0, len(buf), _SCAN_BYTES)]
    return np.concatenate(found).astype(np.int64) if found else np.zeros(0, np.int64)


def _suspect_lines(buf: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Lines that may hold -NaN, Inf or -Inf outside a string, or more than _MAX_BRACKETS brackets."""
    n = len(buf)
    pairs, brackets = [], []
    for s in range(0, n, _SCAN_BYTES):
        blk = buf[s:s + _SCAN_BYTES + 1]  # one byte more: a pair may cross the piece's end
        head, nxt = blk[:-1], blk[1:]
        pairs.append(np.flatnonzero(((head == 0x49) & (nxt == 0x6E)) | ((head == 0x4E) & (nxt == 0x61))) + s)
        brackets.append(np.flatnonzero((blk[:_SCAN_BYTES] | np.uint8(0x20)) == 0x7B) + s)  # '[' or '{'
    if not pairs:
        return np.zeros(0, np.int64)
    marks = np.concatenate(pairs).astype(np.int64)  # "In" and "Na"

    def at(k: int) -> np.ndarray:  # the byte k after each mark, -1 outside the buffer
        pos = marks + k
        return np.where((pos >= 0) & (pos < n), buf[np.clip(pos, 0, n - 1)].astype(np.int16), -1)

    byte, after = at(0), at(3)
    # "Inf" not followed by a lower-case letter (Infinity is valid for Python too), and "-NaN"
    inf = (byte == 0x49) & (at(2) == 0x66) & ~((after >= 0x61) & (after <= 0x7A))
    nan = (byte == 0x4E) & (at(-1) == 0x2D) & (at(2) == 0x4E)
    line_of = lambda pos: np.searchsorted(starts, pos, side="right") - 1  # noqa: E731
    per_line_brackets = np.bincount(line_of(np.concatenate(brackets)), minlength=len(starts))
    return np.union1d(line_of(marks[inf | nan]), np.flatnonzero(per_line_brackets > _MAX_BRACKETS))


def _is_utf8(data: bytes) -> bool:
    whole = pa.Array.from_buffers(pa.large_binary(), 1, [None, pa.py_buffer(np.array([0, len(data)], np.int64)),
                                                          pa.py_buffer(data)])
    try:
        whole.cast(pa.large_string())
        return True
    except pa.ArrowInvalid:
        return False


def _bad_utf8_lines(data: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Indices of the lines that are not UTF-8."""
    offsets = np.append(starts, ends[-1]).astype(np.int64)
    lines = pa.Array.from_buffers(pa.large_binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(data)])

    def bad(lo: int, hi: int) -> list[int]:
        try:
            lines.slice(lo, hi - lo).cast(pa.large_string())
            return []
        except pa.ArrowInvalid:
            if hi - lo == 1:
                return [lo]
            step = -(-(hi - lo) // 64)
            return [i for a in range(lo, hi, step) for i in bad(a, min(a + step, hi))]

    return np.array(bad(0, len(starts)), np.int64)


def _kind_hint(line: bytes) -> str:
    """Whether published_at looks like a JSON string or a number in this line (a guess: the
    parse starts with that kind, which saves a refusal on a feed of epoch numbers)."""
    at = line.find(b'"published_at"')
    first = line[at + 14:at + 40].lstrip(b" \t\r:")[:1] if at >= 0 else b""
    return "number" if first and first in b"-0123456789" else "string"


def _parse_feed(buf: pa.Buffer, state: dict) -> tuple[pa.Table | None, str]:
    """pyarrow.json on one part: (table, "") or (None, pyarrow's error message). published_at is
    read as state["kind"] (string or number); state["strict"] refuses fields outside the model."""
    opts = pa_json.ReadOptions(use_threads=False, block_size=max(1 << 16, min(buf.size + 1, _MAX_BLOCK)))
    parse = pa_json.ParseOptions(explicit_schema=_FEED_SCHEMAS[state["kind"]],
                                 unexpected_field_behavior="error" if state["strict"] else "ignore")
    try:
        return pa_json.read_json(pa.BufferReader(buf), read_options=opts, parse_options=parse), ""
    except pa.ArrowException as e:
        return None, str(e)


def _iso_micros(arr: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """(valid date, UTC microseconds) of strings that match _ISO_RE, computed as
    `datetime.fromisoformat(v.replace("Z", "+00:00")).astimezone(UTC)` does."""
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset:arr.offset + len(arr) + 1].astype(np.int64)
    chars = np.frombuffer(arr.buffers()[2], np.uint8)
    ln = np.diff(offsets)
    width = int(ln.max())  # 20 to 32
    if (ln == width).all():  # the usual case, one layout: the characters as an (n, width) matrix
        m = chars[offsets[0]:offsets[-1]].reshape(-1, width)
    else:
        m = chars[np.minimum(offsets[:-1, None] + np.arange(width), len(chars) - 1)]
    d = m.astype(np.int64) - 48
    rows = np.arange(len(ln))
    tail = lambda k: d[rows, ln - k]  # noqa: E731 - the k-th character from the end
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 5] * 10 + d[:, 6], d[:, 8] * 10 + d[:, 9]
    seconds = (d[:, 11] * 10 + d[:, 12]) * 3600 + (d[:, 14] * 10 + d[:, 15]) * 60 + d[:, 17] * 10 + d[:, 18]
    zulu = tail(1) == ord("Z") - 48
    sign = np.where(tail(6) == ord("-") - 48, -1, 1)
    offset = np.where(zulu, 0, sign * ((tail(5) * 10 + tail(4)) * 3600 + (tail(2) * 10 + tail(1)) * 60))
    digits = ln - 20 - np.where(zulu, 1, 6)  # fraction digits after the '.' (none when negative)
    micros = np.zeros(len(ln), np.int64)
    for k in range(min(6, width - 20)):
        micros += np.where(digits > k, d[:, 20 + k], 0) * 10 ** (5 - k)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month - 1, 0, 11)]
    month_days = month_days + (leap & (month == 2))
    # years 1 and 9999 may leave datetime's range when converted to UTC: those go per-line
    ok = (year >= 2) & (year <= 9998) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    y = year - (month <= 2)  # days since 1970-01-01: H. Hinnant's days_from_civil
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return ok, (days * 86400 + seconds - offset) * 1_000_000 + micros


def _epoch_micros(values: np.ndarray) -> np.ndarray:
    """`datetime.fromtimestamp(v, UTC)` in microseconds, for 0 <= v < _EPOCH_END: CPython splits v
    with modf and rounds the fraction's microseconds half to even."""
    frac, whole = np.modf(values)
    us = np.rint(frac * 1e6)
    carry = us >= 1e6
    return (whole.astype(np.int64) + carry) * 1_000_000 + np.where(carry, us - 1e6, us).astype(np.int64)


def _vouch(table: pa.Table) -> tuple[np.ndarray, dict]:
    """(rows `_jsonl_row` would accept, the output columns) of one pyarrow-parsed part."""
    col = {f: (c.chunk(0) if c.num_chunks == 1 else c.combine_chunks()) for f in _FEED_FIELDS
           for c in [table.column(f)]}
    n = table.num_rows
    ok = np.asarray(pc.fill_null(pc.match_substring_regex(col["text"], _NOT_BLANK_RE), False))
    has = {f: np.asarray(pc.fill_null(pc.greater(pc.binary_length(col[f]), 0), False))
           for f in ("article_id", "url", "source")}
    ok &= has["article_id"] | has["url"]
    pub = col["published_at"]
    micros, pub_ok = np.zeros(n, np.int64), np.zeros(n, bool)
    if pa.types.is_floating(pub.type):
        v = pub.to_numpy(zero_copy_only=False)  # null -> NaN, outside the range
        inside = (v >= 0) & (v < _EPOCH_END)
        pub_ok[inside] = True
        micros[inside] = _epoch_micros(v[inside])
    else:
        idx = np.flatnonzero(np.asarray(pc.fill_null(pc.match_substring_regex(pub, _ISO_RE), False)))
        if len(idx):
            pub_ok[idx], micros[idx] = _iso_micros(pub.take(pa.array(idx)))
    ok &= pub_ok
    source = col["source"]
    need = ok & ~has["source"]
    if need.any():  # `_source_of(url) or "unknown"`, once per distinct url
        idx = np.flatnonzero(need)
        urls = col["url"].take(pa.array(idx)).to_pylist()
        memo: dict = {}
        for url in set(urls):
            try:
                memo[url] = _source_of(url) or "unknown"
            except Exception:  # noqa: BLE001 - per-line, `_jsonl_row` raises it as read_jsonl does
                memo[url] = None
        derived = [memo[u] for u in urls]
        ok[idx[[d is None for d in derived]]] = False
        source = pc.replace_with_mask(source, pa.array(need), pa.array(derived, pa.string()))
    out = {
        "source": source,
        "article_id": pc.if_else(pa.array(has["article_id"]), col["article_id"], col["url"]),
        "update_id": col["update_id"],
        "headline": pc.coalesce(col["headline"], ""),
        "section": col["section"],
        "published_at": pa.Array.from_buffers(pa.timestamp("us", tz="UTC"), n, [None, pa.py_buffer(micros)]),
        "text": col["text"],
    }
    return ok, out


def _constant(value: str, n: int) -> pa.Array:
    raw = value.encode("utf-8")
    if n * len(raw) >= 1 << 31:
        return pa.array([value] * n, pa.string())
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(raw))
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)])


def read_jsonl_batch(uri: str, data: bytes, first_line: int, rejects: list) -> pa.RecordBatch:
    """`read_jsonl` as one UPDATE_SCHEMA batch, vectorized: the same rows in the same order, and
    the same rejects appended to `rejects` in the same order, several times faster.

    Example: the lines `{"url": "https://x.org/a", "text": "T.", "published_at": 1645344000}`,
    an empty line and `[1]` give one row (line `first_line`) and one reject (`not_an_object`,
    line `first_line + 2`). pyarrow.json reads the range; the lines it cannot vouch for go
    through read_jsonl's own per-line code (see the comment above)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    buf = np.frombuffer(data, np.uint8)
    newlines = _positions(buf, lambda b: b == 10)
    starts = np.append(0, newlines + 1)  # line i is data[starts[i]:ends[i]]
    ends = np.append(newlines, len(data))
    if len(data):  # a trailing CR is dropped, as in _decode_line; pyarrow reads the `{...}` lines
        core_end = ends - ((ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13))
        candidate = (core_end - starts >= 2) & (buf[np.minimum(starts, len(data) - 1)] == ord("{"))
        candidate &= buf[np.maximum(core_end - 1, 0)] == ord("}")
    else:
        core_end, candidate = ends, np.zeros(1, bool)
    blank = core_end == starts
    per_line = ~blank & ~candidate
    if len(data) and not _is_utf8(data):
        per_line[_bad_utf8_lines(data, starts, ends)] = True
    state = {"kind": "string", "strict": True, "failures": 0, "other_kind_at": -1, "window": len(starts)}
    parts: list[tuple[np.ndarray, pa.Table]] = []

    def prepare() -> tuple[np.ndarray, pa.Buffer]:
        """Candidate line indices, and the bytes pyarrow reads: per-line lines blanked out."""
        cand = np.flatnonzero(candidate & ~per_line)
        if not per_line.any():
            return cand, pa.py_buffer(data)
        work = np.frombuffer(bytearray(data), np.uint8)
        for i in np.flatnonzero(per_line).tolist():
            work[starts[i]:ends[i]] = 32  # spaces: pyarrow skips them, offsets stay
        return cand, pa.py_buffer(work)

    def parse(cand: np.ndarray, src: pa.Buffer, lo: int, hi: int) -> None:
        """Parse candidates lo..hi-1 into `parts`; the lines pyarrow refuses go per-line. After a
        refusal, _WINDOW_LINES at a time, twice as many after each success: a refusal costs a
        parse up to the refused row."""
        while lo < hi:
            if state["failures"] >= 8 and state["failures"] * _MAX_REFUSED > lo:
                per_line[cand[lo:hi]] = True  # this feed is read as fast line by line
                return
            end = min(hi, lo + state["window"])
            a, b = int(starts[cand[lo]]), int(ends[cand[end - 1]])
            table, error = _parse_feed(src.slice(a, b - a), state)
            if table is not None and table.num_rows == end - lo:
                parts.append((cand[lo:end], table))
                lo = end
                state["window"] *= 2
                continue
            if state["strict"] and error.endswith("unexpected field"):
                raise _UnknownField
            state["failures"] += 1
            state["window"] = _WINDOW_LINES
            found = _ERROR_ROW.search(error)
            row = int(found.group(1)) if found and b - a < _MAX_BLOCK else end - lo
            if row >= end - lo:  # no usable row number: smaller parts
                if end - lo <= _LEAF_LINES:
                    per_line[cand[lo:end]] = True
                else:
                    step = -(-(end - lo) // _SPLIT_WAYS)
                    for s in range(lo, end, step):
                        parse(cand, src, s, min(s + step, end))
                lo = end
                continue
            if row:  # the rows before the refused one
                parse(cand, src, lo, lo + row)
                lo += row
            change = _KIND_CHANGE.match(error)
            if change and state["kind"] != change.group(1) and state["other_kind_at"] == lo:
                state["kind"] = change.group(1)  # two lines in a row with published_at of the other kind
                continue
            state["other_kind_at"] = lo + 1 if change else -1
            per_line[cand[lo]] = True
            lo += 1

    cand, src = prepare()
    if len(cand):
        state["kind"] = _kind_hint(data[starts[cand[0]]:ends[cand[0]]])
        base = per_line.copy()
        try:
            parse(cand, src, 0, len(cand))
        except _UnknownField:  # again, ignoring unknown fields, once the suspect lines are per-line
            state.update(strict=False, failures=0, window=len(starts))
            parts.clear()
            per_line[:] = base
            per_line[_suspect_lines(buf, starts)] = True
            per_line &= ~blank
            cand, src = prepare()
            if len(cand):
                parse(cand, src, 0, len(cand))
    parts.sort(key=lambda part: part[0][0])
    groups: list[tuple[list, list]] = []  # consecutive parts of one schema, vouched for together
    for idx, table in parts:
        if groups and groups[-1][1][0].schema.equals(table.schema):
            groups[-1][0].append(idx)
            groups[-1][1].append(table)
        else:
            groups.append(([idx], [table]))
    columns: dict[str, list] = {}
    kept = []
    for idxs, tables in groups:
        idx = np.concatenate(idxs)
        ok, out = _vouch(tables[0] if len(tables) == 1 else pa.concat_tables(tables))
        if not ok.all():
            per_line[idx[~ok]] = True
            mask = pa.array(ok)
            out = {k: v.filter(mask) for k, v in out.items()}
            idx = idx[ok]
        kept.append(idx)
        for k, v in out.items():
            columns.setdefault(k, []).append(v)
    lines = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    n = len(lines)

    def column(name: str) -> pa.Array:
        chunks = columns.get(name)
        if not chunks:
            return pa.array([], UPDATE_SCHEMA.field(name).type)
        return chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks)

    fast = pa.RecordBatch.from_arrays(
        [_constant(uri, n), pa.array(lines + first_line, pa.int64()), _constant("jsonl", n),
         *(column(k) for k in ("source", "article_id", "update_id", "headline", "section", "published_at")),
         pa.array(np.zeros(n, np.int32)), column("text")],
        schema=UPDATE_SCHEMA)
    rows = []
    slow = np.flatnonzero(per_line)
    raw_lines = data.split(b"\n") if len(slow) > len(starts) // 8 else None
    for i, a, b in zip(slow.tolist(), starts[slow].tolist(), ends[slow].tolist()):  # in line order, as
        line = first_line + i  # read_jsonl appends its rejects
        s = _decode_line(raw_lines[i] if raw_lines is not None else data[a:b], uri, line, rejects)
        row = _jsonl_row(uri, line, s, rejects) if s is not None else None
        if row is not None:
            rows.append(row)
    if not rows:
        return fast
    both = pa.Table.from_batches([fast, pa.RecordBatch.from_pylist(rows, schema=UPDATE_SCHEMA)])
    return both.take(pc.sort_indices(both.column("line"))).combine_chunks().to_batches()[0]


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


def detect(data: bytes) -> str:
    """`sniff`, then a check for the whole-file JSON formats: a file that does not parse as one
    JSON document but has several lines is read as JSONL, line by line, so that its good lines
    are kept and each bad one is its own reject."""
    fmt = sniff(data[:SNIFF_BYTES])
    if fmt in ("liveblog", "headlines-json") and _load_json_file("", data, []) is _UNREADABLE:
        if sum(1 for line in data.split(b"\n", 2)[:2] if line.strip()) > 1:
            return "jsonl"
    return fmt


def read_plan(plan: ReadPlan, data: bytes) -> tuple[list[dict], list[dict]]:
    """Parse the bytes of one plan: (update rows, reject rows)."""
    rejects: list[dict] = []
    fmt = plan.fmt
    if fmt == "auto":
        fmt = detect(data)
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


def read_plan_batch(plan: ReadPlan, data: bytes) -> tuple[pa.RecordBatch, list[dict]]:
    """`read_plan` as (one UPDATE_SCHEMA batch, reject rows); JSONL through `read_jsonl_batch`."""
    fmt = plan.fmt if plan.fmt != "auto" else detect(data)
    if fmt == "jsonl":
        rejects: list[dict] = []
        return read_jsonl_batch(plan.uri, data, plan.first_line, rejects), rejects
    rows, rejects = read_plan(plan._replace(fmt=fmt), data)
    return _rows_batch(rows, rejects), rejects


def _rows_batch(rows: list[dict], rejects: list) -> pa.RecordBatch:
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


def _read_bytes(uri: str, start: int = 0, end: int = -1) -> bytes:
    with FileSystems.open(uri, compression_type="uncompressed") as f:
        if start:
            f.seek(start)
        return f.read() if end < 0 else f.read(end - start)


def _iter_chunks(uri: str, size: int = 16 << 20) -> Iterator[bytes]:
    with FileSystems.open(uri, compression_type="uncompressed") as f:
        while chunk := f.read(size):
            yield chunk


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


class _PlanReadsFn(beam.DoFn):
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
        if fmt == "jsonl" and size > RANGE_BYTES:
            yield from plan_reads(uri, fmt, size, head, _iter_chunks(uri))
        else:  # "auto" stays: the reader checks the whole file (`detect`)
            yield ReadPlan(uri, self._fmt, 0, -1, 1)


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
        crash_point("after-read")
        batch, rejects = read_plan_batch(plan, data)
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
        plans = files | "Plan" >> beam.ParDo(_PlanReadsFn(self._fmt, fs_options)).with_outputs(REJECTS, main="plans")
        read = (
            plans.plans
            | "Spread" >> beam.Reshuffle()
            | "Parse" >> beam.ParDo(_ReadPlanFn(*self._progress, fs_options)).with_outputs(REJECTS, main="updates")
        )
        rejects = (plans[REJECTS], read[REJECTS]) | "Rejects" >> beam.Flatten()
        return {"updates": read.updates, REJECTS: rejects}
