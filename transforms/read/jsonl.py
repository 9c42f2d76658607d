"""The Arrow JSONL engine: one range of an update feed -> one UPDATE_SCHEMA batch, vectorised.

`read_jsonl_batch(uri, data, first_line, rejects)` gives exactly the rows and rejects of
reading the range line by line with `formats.jsonl_line_row` (json + pydantic `UpdateIn`),
in the same order, but reads the range with pyarrow.json and checks whole columns with
Arrow compute and numpy. Speed: see BENCHMARKS.md.

Example: the lines `{"url": "https://x.org/a", "text": "T.", "published_at": 1645344000}`,
an empty line and `[1]` give one row (line `first_line`, source `x.org`) and one reject
(`not_an_object`, line `first_line + 2`).

How (`ArrowJsonlReader`): pyarrow.json reads the range and the engine vouches, column by
column, for the rows whose values are exactly what `jsonl_line_row` gives. Every other line
goes through `jsonl_line_row` itself ("per-line"), so rows, rejects and line numbers stay
those of the line-by-line definition. Where pyarrow.json and Python's json could disagree,
the line goes per-line:
- invalid UTF-8 anywhere in a line (pyarrow.json does not check it; Arrow's UTF-8 validation,
  as strict as Python's, finds it);
- a line that is not exactly `{...}` (white space around it, an array, a BOM, ...): blanked out
  of the pyarrow input, so that pyarrow gives one row per remaining line (the count is checked;
  a `{...}` line cannot share an object with the next one without a parse error);
- a line pyarrow refuses (a key given twice, a field of another JSON type, invalid JSON): the
  error names its row; the rows before it are parsed again, and the line goes per-line (a
  refusal without a row number: the part is parsed again in smaller parts);
- fields outside the model: the first parse refuses them (pyarrow's "error" mode), which proves
  that every value of a parsed line is a flat string, number or null. Only a range that has
  such fields is parsed again ignoring them, after sending per-line the lines that may hold a
  token that rapidjson accepts and Python does not (-NaN, Inf, -Inf) or enough brackets to
  exceed Python's json recursion limit.
Each refusal costs a parse call. published_at is read as one JSON kind (string or number) per
part, so a line of the other kind is a refusal too: it goes per-line, and when the next line
is of the other kind as well, the range goes on with that kind. After 8 refusals, once more
than one line in _MAX_REFUSED has been refused, the rest of the range goes per-line (a feed
where string and number timestamps alternate is read as fast that way).
"""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from schemas.models import EPOCH_SECONDS_END
from transforms.read import formats
from transforms.read.formats import UPDATE_SCHEMA, decode_line

_FEED_FIELDS = ("text", "published_at", "article_id", "url", "update_id", "source", "headline", "section")
_FEED_SCHEMAS = {  # published_at as a JSON string, or as a JSON number
    kind: pa.schema([(f, typ if f == "published_at" else pa.string()) for f in _FEED_FIELDS])
    for kind, typ in (("string", pa.string()), ("number", pa.float64()))
}
# The characters for which str.isspace() is true, i.e. what str.strip() removes (a test checks it).
PY_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                 "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_NOT_BLANK_RE = "[^" + "".join(f"\\x{{{ord(c):x}}}" for c in PY_WHITESPACE) + "]"
# The ISO 8601 forms vouched for; Arrow's cast reads them as `UpdateIn._published` does (`_iso_micros`).
_ISO_RE = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
           r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
_MAX_BRACKETS = 200  # '[' and '{' per line; Python's json stops at about 1000 levels of nesting
_SPLIT_WAYS = 8  # a part refused without a row number is parsed again in this many parts ...
_LEAF_LINES = 8  # ... down to this many lines, which go per-line
_WINDOW_LINES = 256  # lines per parse once pyarrow has refused a line in the range
_MIN_REFUSALS = 8  # after this many refusals ...
_MAX_REFUSED = 40  # ... more than one refused line in this many: the rest of the range goes per-line
_MAX_BLOCK = 1 << 30  # pyarrow.json block: a whole part, so that "in row N" counts from its start
_ERROR_ROW = re.compile(r" in row (\d+)$")
_KIND_CHANGE = re.compile(r"^JSON parse error: Column\(/published_at\) changed from (?:string|number) to "
                          r"(string|number) in row \d+$")
_SCAN_BYTES = 1 << 18  # numpy scans in cache-sized pieces
_TIMESTAMP = pa.timestamp("us", tz="UTC")


def read_jsonl_batch(uri: str, data: bytes, first_line: int, rejects: list) -> pa.RecordBatch:
    """The update rows of a JSONL range as one UPDATE_SCHEMA batch (line order), the rejects
    appended to `rejects` in line order: what `jsonl_line_row` gives line by line."""
    return ArrowJsonlReader(uri, data, first_line, rejects).read()


class _UnknownField(Exception):
    """A field outside the model: the range is read again with pyarrow ignoring such fields."""


class ArrowJsonlReader:
    """Reads one JSONL range (see the module docstring). One use: `read()` once.

    State while reading: `per_line` marks the lines that go through `jsonl_line_row`;
    `parts` holds (candidate line indices, pyarrow table) of the parts pyarrow parsed;
    `kind` (string or number) is how published_at is read; `strict` refuses fields outside
    the model; `window` is the number of lines per parse call.
    """

    def __init__(self, uri: str, data: bytes, first_line: int, rejects: list):
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        self.uri, self.data, self.first_line, self.rejects = uri, data, first_line, rejects
        self.buf = np.frombuffer(data, np.uint8)
        newlines = _positions(self.buf, lambda b: b == 10)
        self.starts = np.append(0, newlines + 1)  # line i is data[starts[i]:ends[i]]
        self.ends = np.append(newlines, len(data))
        self._classify_lines()
        self.kind, self.strict = "string", True
        self.refusals, self.other_kind_at, self.window = 0, -1, len(self.starts)
        self.parts: list[tuple[np.ndarray, pa.Table]] = []
        self.cand, self.src = np.zeros(0, np.int64), pa.py_buffer(b"")

    def read(self) -> pa.RecordBatch:
        self._parse_range()
        fast = self._vouched_batch()
        rows = self._per_line_rows()
        if not rows:
            return fast
        both = pa.Table.from_batches([fast, pa.RecordBatch.from_pylist(rows, schema=UPDATE_SCHEMA)])
        return both.take(pc.sort_indices(both.column("line"))).combine_chunks().to_batches()[0]

    # --- which lines pyarrow reads ------------------------------------------------------------

    def _classify_lines(self) -> None:
        """blank lines; `{...}` lines (candidates for pyarrow); the others go per-line, as do
        the lines that are not UTF-8. A trailing CR is dropped, as in `decode_line`."""
        data, buf, starts, ends = self.data, self.buf, self.starts, self.ends
        if len(data):
            core_end = ends - ((ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13))
            candidate = (core_end - starts >= 2) & (buf[np.minimum(starts, len(data) - 1)] == ord("{"))
            candidate &= buf[np.maximum(core_end - 1, 0)] == ord("}")
        else:
            core_end, candidate = ends, np.zeros(1, bool)
        self.blank = core_end == starts
        self.candidate = candidate
        self.per_line = ~self.blank & ~candidate
        if len(data) and not _is_utf8(data):
            self.per_line[_bad_utf8_lines(data, starts, ends)] = True

    def _prepare_input(self) -> None:
        """`cand`: the candidate line indices; `src`: the bytes pyarrow reads, with the per-line
        lines blanked out (spaces: pyarrow skips them, offsets stay)."""
        self.cand = np.flatnonzero(self.candidate & ~self.per_line)
        if not self.per_line.any():
            self.src = pa.py_buffer(self.data)
            return
        work = np.frombuffer(bytearray(self.data), np.uint8)
        for i in np.flatnonzero(self.per_line).tolist():
            work[self.starts[i]:self.ends[i]] = 32
        self.src = pa.py_buffer(work)

    # --- parsing with pyarrow -----------------------------------------------------------------

    def _parse_range(self) -> None:
        """Parse every candidate, strictly; when a line has a field outside the model, again
        ignoring such fields, once the lines Python's json may read otherwise are per-line."""
        self._prepare_input()
        if not len(self.cand):
            return
        first = self.cand[0]
        self.kind = _kind_hint(self.data[self.starts[first]:self.ends[first]])
        before = self.per_line.copy()
        try:
            self._parse(0, len(self.cand))
        except _UnknownField:
            self.strict, self.refusals, self.window = False, 0, len(self.starts)
            self.parts.clear()
            self.per_line[:] = before
            self.per_line[_suspect_lines(self.buf, self.starts)] = True
            self.per_line &= ~self.blank
            self._prepare_input()
            if len(self.cand):
                self._parse(0, len(self.cand))

    def _parse(self, lo: int, hi: int) -> None:
        """Parse candidates lo..hi-1 into `parts`; the lines pyarrow refuses go per-line. After a
        refusal, _WINDOW_LINES at a time, twice as many after each success: a refusal costs a
        parse up to the refused row."""
        while lo < hi:
            if self.refusals >= _MIN_REFUSALS and self.refusals * _MAX_REFUSED > lo:
                self.per_line[self.cand[lo:hi]] = True  # this feed is read as fast line by line
                return
            end = min(hi, lo + self.window)
            a, b = int(self.starts[self.cand[lo]]), int(self.ends[self.cand[end - 1]])
            table, error = self._parse_part(self.src.slice(a, b - a))
            if table is not None and table.num_rows == end - lo:
                self.parts.append((self.cand[lo:end], table))
                lo = end
                self.window *= 2
                continue
            lo = self._after_refusal(lo, end, error, numbered=b - a < _MAX_BLOCK)

    def _parse_part(self, buf: pa.Buffer) -> tuple[pa.Table | None, str]:
        """pyarrow.json on one part: (table, "") or (None, pyarrow's error message)."""
        opts = pa_json.ReadOptions(use_threads=False, block_size=max(1 << 16, min(buf.size + 1, _MAX_BLOCK)))
        parse = pa_json.ParseOptions(explicit_schema=_FEED_SCHEMAS[self.kind],
                                     unexpected_field_behavior="error" if self.strict else "ignore")
        try:
            return pa_json.read_json(pa.BufferReader(buf), read_options=opts, parse_options=parse), ""
        except pa.ArrowException as e:
            return None, str(e)

    def _after_refusal(self, lo: int, end: int, error: str, numbered: bool) -> int:
        """pyarrow refused candidates lo..end-1: parse again what it can, send the refused line
        per-line (or switch the published_at kind); returns where parsing goes on."""
        if self.strict and error.endswith("unexpected field"):
            raise _UnknownField
        self.refusals += 1
        self.window = _WINDOW_LINES
        found = _ERROR_ROW.search(error)
        row = int(found.group(1)) if found and numbered else end - lo
        if row >= end - lo:  # no usable row number: smaller parts
            if end - lo <= _LEAF_LINES:
                self.per_line[self.cand[lo:end]] = True
            else:
                step = -(-(end - lo) // _SPLIT_WAYS)
                for s in range(lo, end, step):
                    self._parse(s, min(s + step, end))
            return end
        if row:  # the rows before the refused one
            self._parse(lo, lo + row)
            lo += row
        change = _KIND_CHANGE.match(error)
        if change and self.kind != change.group(1) and self.other_kind_at == lo:
            self.kind = change.group(1)  # two lines in a row with published_at of the other kind
            return lo
        self.other_kind_at = lo + 1 if change else -1
        self.per_line[self.cand[lo]] = True
        return lo + 1

    # --- output -------------------------------------------------------------------------------

    def _vouched_batch(self) -> pa.RecordBatch:
        """The rows of the parsed parts that `jsonl_line_row` would accept, as they would come
        out of it; the others are marked per-line. Consecutive parts of one schema are checked
        together."""
        self.parts.sort(key=lambda part: part[0][0])
        groups: list[tuple[list, list]] = []
        for idx, table in self.parts:
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
                self.per_line[idx[~ok]] = True
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

        return pa.RecordBatch.from_arrays(
            [_constant(self.uri, n), pa.array(lines + self.first_line, pa.int64()), _constant("jsonl", n),
             *(column(k) for k in ("source", "article_id", "update_id", "headline", "section", "published_at")),
             pa.array(np.zeros(n, np.int32)), column("text")],
            schema=UPDATE_SCHEMA)

    def _per_line_rows(self) -> list[dict]:
        """The rows of the per-line lines, through `jsonl_line_row`, in line order (so the
        rejects are appended in line order)."""
        rows = []
        slow = np.flatnonzero(self.per_line)
        raw_lines = self.data.split(b"\n") if len(slow) > len(self.starts) // 8 else None
        for i, a, b in zip(slow.tolist(), self.starts[slow].tolist(), self.ends[slow].tolist()):
            line = self.first_line + i
            s = decode_line(raw_lines[i] if raw_lines is not None else self.data[a:b], self.uri, line, self.rejects)
            row = formats.jsonl_line_row(self.uri, line, s, self.rejects) if s is not None else None
            if row is not None:
                rows.append(row)
        return rows


# ----------------------------------------------------------------------------- scans of the bytes

def _positions(buf: np.ndarray, test) -> np.ndarray:
    """Positions (int64) where test(bytes) holds, scanning `buf` piece by piece."""
    found = [np.flatnonzero(test(buf[s:s + _SCAN_BYTES])) + s for s in range(0, len(buf), _SCAN_BYTES)]
    return np.concatenate(found).astype(np.int64) if found else np.zeros(0, np.int64)


def _suspect_lines(buf: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Lines that may hold -NaN, Inf or -Inf outside a string, or more than _MAX_BRACKETS brackets
    (`buf` is not empty: it holds a candidate line)."""
    n = len(buf)
    pairs, brackets = [], []
    for s in range(0, n, _SCAN_BYTES):
        blk = buf[s:s + _SCAN_BYTES + 1]  # one byte more: a pair may cross the piece's end
        head, nxt = blk[:-1], blk[1:]
        pairs.append(np.flatnonzero(((head == 0x49) & (nxt == 0x6E)) | ((head == 0x4E) & (nxt == 0x61))) + s)
        brackets.append(np.flatnonzero((blk[:_SCAN_BYTES] | np.uint8(0x20)) == 0x7B) + s)  # '[' or '{'
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

    def valid(lo: int, hi: int) -> bool:
        try:
            lines.slice(lo, hi - lo).cast(pa.large_string())
            return True
        except pa.ArrowInvalid:
            return False

    return _failing(len(starts), valid)


def _failing(n: int, works) -> np.ndarray:
    """Indices i in 0..n-1 for which works(i, i + 1) is False, where works(lo, hi) is True when it
    holds for every index of lo..hi-1: the parts that fail are split in 64, down to one index."""
    def bad(lo: int, hi: int) -> list[int]:
        if works(lo, hi):
            return []
        if hi - lo == 1:
            return [lo]
        step = -(-(hi - lo) // 64)
        return [i for a in range(lo, hi, step) for i in bad(a, min(a + step, hi))]

    return np.array(bad(0, n) if n else [], np.int64)


def _kind_hint(line: bytes) -> str:
    """Whether published_at looks like a JSON string or a number in this line (a guess: the
    parse starts with that kind, which saves a refusal on a feed of epoch numbers)."""
    at = line.find(b'"published_at"')
    first = line[at + 14:at + 40].lstrip(b" \t\r:")[:1] if at >= 0 else b""
    return "number" if first and first in b"-0123456789" else "string"


# ----------------------------------------------------------------------------- vouching for rows

def _iso_micros(arr: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """(valid, UTC microseconds) of strings that match _ISO_RE, by Arrow's ISO 8601 cast: what
    `datetime.fromisoformat(v.replace("Z", "+00:00")).astimezone(UTC)` gives. An impossible
    date (February 30) is not valid, nor are years 1 and 9999, which may leave datetime's range
    when converted to UTC: those lines go per-line."""
    year = pc.cast(pc.utf8_slice_codeunits(arr, 0, 4), pa.int32()).to_numpy(zero_copy_only=False)
    ok = (year >= 2) & (year <= 9998)
    micros = np.zeros(len(arr), np.int64)
    idx = np.flatnonzero(ok)
    values = arr.take(pa.array(idx, pa.int64()))

    def cast(lo: int, hi: int) -> bool:
        try:
            micros[idx[lo:hi]] = pc.cast(values.slice(lo, hi - lo), _TIMESTAMP).cast(pa.int64()).to_numpy()
            return True
        except pa.ArrowInvalid:
            return False

    ok[idx[_failing(len(idx), cast)]] = False
    return ok, micros


def _epoch_micros(values: np.ndarray) -> np.ndarray:
    """`datetime.fromtimestamp(v, UTC)` in microseconds, for 0 <= v < EPOCH_SECONDS_END: CPython
    splits v with modf and rounds the fraction's microseconds half to even."""
    frac, whole = np.modf(values)
    us = np.rint(frac * 1e6)
    carry = us >= 1e6
    return (whole.astype(np.int64) + carry) * 1_000_000 + np.where(carry, us - 1e6, us).astype(np.int64)


def _vouch(table: pa.Table) -> tuple[np.ndarray, dict]:
    """(rows `jsonl_line_row` would accept, the output columns) of one pyarrow-parsed part."""
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
        inside = (v >= 0) & (v < EPOCH_SECONDS_END)
        pub_ok[inside] = True
        micros[inside] = _epoch_micros(v[inside])
    else:
        idx = np.flatnonzero(np.asarray(pc.fill_null(pc.match_substring_regex(pub, _ISO_RE), False)))
        if len(idx):
            pub_ok[idx], micros[idx] = _iso_micros(pub.take(pa.array(idx)))
    ok &= pub_ok
    source = col["source"]
    need = ok & ~has["source"]
    if need.any():  # `source_of(url) or "unknown"`, once per distinct url
        idx = np.flatnonzero(need)
        urls = col["url"].take(pa.array(idx)).to_pylist()
        memo = {url: formats.source_of(url) or "unknown" for url in set(urls)}
        source = pc.replace_with_mask(source, pa.array(need), pa.array([memo[u] for u in urls], pa.string()))
    out = {
        "source": source,
        "article_id": pc.if_else(pa.array(has["article_id"]), col["article_id"], col["url"]),
        "update_id": col["update_id"],
        "headline": pc.coalesce(col["headline"], ""),
        "section": col["section"],
        "published_at": pa.Array.from_buffers(_TIMESTAMP, n, [None, pa.py_buffer(micros)]),
        "text": col["text"],
    }
    return ok, out


def _constant(value: str, n: int) -> pa.Array:
    """A string array of n times `value`, its bytes repeated without a Python list."""
    raw = value.encode("utf-8")
    if n * len(raw) >= 1 << 31:
        return pa.array([value] * n, pa.string())
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(raw))
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)])
