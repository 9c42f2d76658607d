"""Split: update batches -> block batches, one row per block (an event candidate).

Classification of a block (`classify`), by the rules of DESIGN.md:
- `heading`: a short line (at most 12 words, 100 characters) without closing punctuation
  whose words are in Title Case (first word capitalised and at least 60% of the words that are
  not short function words start with a capital or a digit). A heading starts a new section.
- `bullet`: a line without closing punctuation that is not a heading (lists, often after a
  line ending in `:`); a line starting with a list marker (`-`, `*`, `•`) is a bullet too.
- `paragraph`: everything else (a line ending in `.`, `!`, `?`, `:` or `;`, possibly followed
  by a closing quote or bracket).
- `headline`: the article's header line (text format only).

Headline records (`headlines-csv`, `headlines-json`): the headline is block 0 (`headline`),
a sub-heading (the CSV's `desc`) is block 1, classified like any line.

Sections and updates: in a text article each heading starts a new update; the update id is
`<article_id>/<hash of the section title>` (`/lead` before the first heading), so a
re-scraped snapshot gives the same update ids. Feed lines and live-blog posts are updates of
their own; their blocks are the non-blank lines (feed) or sentences (live blog).

Example: the body lines "Background", "Tensions rose.", "Putin has two demands:",
"The removal of NATO troops" give heading/paragraph/paragraph/bullet, all in section
"Background".

Guarantee: positions are the order of the blocks in their article (0 = headline for text
articles; feed updates number their own blocks from 0; live-blog posts continue one count
over the file). Nothing is dropped: every non-blank line becomes exactly one block.

`split_update` and `classify` are the reference, one row at a time (`split_rows` applies them
to a batch). `split_batch` gives the same rows in the same order but works on whole Arrow
columns (pyarrow.compute + numpy), with character classes taken from Python's own regular
expressions and `str` methods, so both agree on every character; text articles (one small
update per file) take the row-by-row path.
"""
from __future__ import annotations

import functools
import re

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.models import BLOCK_SCHEMA
from transforms.common import stable_hash
from transforms.read import UPDATE_SCHEMA

SMALL_WORDS = frozenset(
    "a an and as at but by for from in into nor of off on onto or over per the to up upon via vs with".split()
)
CLOSING = ".!?:;"
TRAILING_QUOTES = "\"'’”»)]"
LIST_MARKER = re.compile(r"^\s*(?:[-*•–]|\d{1,2}[.)])\s+")
WORD = re.compile(r"[^\W_][\w'’.-]*", re.UNICODE)


def ends_with_closing_punctuation(line: str) -> bool:
    s = line.rstrip().rstrip(TRAILING_QUOTES).rstrip()
    return bool(s) and s[-1] in CLOSING


def is_title_case(line: str) -> bool:
    words = WORD.findall(line)
    if not words or len(words) > 12 or len(line) > 100:
        return False
    if not (words[0][0].isupper() or words[0][0].isdigit()):
        return False
    significant = [w for w in words[1:] if w.lower() not in SMALL_WORDS]
    if not significant:
        return True
    capital = sum(1 for w in significant if w[0].isupper() or w[0].isdigit())
    return capital / len(significant) >= 0.6


def classify(line: str) -> str:
    """Kind of one body line: `heading`, `bullet` or `paragraph`.

    >>> classify("Ukraine Accuses Separatists of violating Ceasefire")
    'heading'
    >>> classify("Both NATO and Ukraine have rejected this demand")
    'bullet'
    """
    if LIST_MARKER.match(line):
        return "bullet"
    if ends_with_closing_punctuation(line):
        return "paragraph"
    if is_title_case(line):
        return "heading"
    return "bullet"


def strip_marker(line: str) -> str:
    return LIST_MARKER.sub("", line, count=1).strip()


def split_update(u: dict) -> list[dict]:
    """Blocks of one update row (a dict with the columns of `read.UPDATE_SCHEMA`)."""
    base = {
        "source_uri": u["source_uri"],
        "source": u["source"],
        "article_id": u["article_id"],
        "headline": u["headline"],
        "published_at": u["published_at"],
    }
    out = []
    if u["fmt"] == "text":
        lead = u["article_id"] + "/lead"
        out.append({**base, "line": u["line"], "update_id": lead, "section": None, "kind": "headline",
                    "position": 0, "text": u["headline"]})
        section, update_id, position = None, lead, 1
        for i, raw in enumerate(u["text"].split("\n")):
            if not raw.strip():
                continue
            kind = classify(raw)
            text = strip_marker(raw) if kind == "bullet" else raw.strip()
            if kind == "heading":
                section = text
                update_id = u["article_id"] + "/" + stable_hash(" ".join(text.lower().split()), 8)
            out.append({**base, "line": u["line"] + 1 + i, "update_id": update_id, "section": section,
                        "kind": kind, "position": position, "text": text})
            position += 1
        return out
    update_id = u["update_id"] or f'{u["article_id"]}@{u["published_at"].isoformat()}'
    position = u["position"]
    if u["fmt"].startswith("headlines-"):
        # a headline record: the headline is block 0, a sub-heading (if any) follows
        out.append({**base, "line": u["line"], "update_id": update_id, "section": None, "kind": "headline",
                    "position": 0, "text": u["headline"]})
    for raw in u["text"].split("\n"):
        if not raw.strip():
            continue
        kind = classify(raw)
        text = strip_marker(raw) if kind == "bullet" else raw.strip()
        out.append({**base, "line": u["line"], "update_id": update_id, "section": u["section"],
                    "kind": kind, "position": position, "text": text})
        position += 1
    return out


def split_rows(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`split_update` on every row of an update batch: the reference for `split_batch`."""
    rows = [b for u in batch.to_pylist() for b in split_update(u)]
    return pa.RecordBatch.from_pylist(rows, schema=BLOCK_SCHEMA)


# --- split_batch: the same rules on whole Arrow columns ------------------------------------
#
# Arrow's regular expressions are RE2, whose `\s`, `\d` and `\w` are ASCII only; Python's are
# Unicode (`str.isspace`, `str.isdecimal`, `str.isalnum` or `_`). So nothing here relies on
# them: white space is trimmed with exactly the characters of `str.strip()`, LIST_MARKER is
# rewritten with Python's `\s` and `\d` spelled out as code-point ranges, and the words of
# `is_title_case` are found by numpy on the UTF-8 bytes, with a table of every code point
# (word character, word start, upper case or digit). All of it is computed once per process
# from Python's own `re` and `str` methods (`_rules`).
_WORD_START, _WORD_CHAR = r"[^\W_]", r"[\w'’.-]"
assert WORD.pattern == _WORD_START + _WORD_CHAR + "*"
_HEADLINE, _HEADING, _PARAGRAPH, _BULLET = range(4)
_KINDS = pa.array(["headline", "heading", "paragraph", "bullet"], pa.string())
# bits of the per-code-point flags of `_rules()["flags"]`
_IN_WORD, _WORD_FIRST, _CAPITAL = 1, 2, 4


def _char_ranges(pattern: str, planes: tuple) -> list[tuple[int, int]]:
    """Code-point ranges of the characters the Python `pattern` (one character) matches."""
    return [(base + m.start(), base + m.end() - 1)
            for base, chars in planes for m in re.finditer(f"(?:{pattern})+", chars)]


def _re2_class(ranges) -> str:
    """The inside of an RE2 character class (`[...]`) for code-point ranges."""
    return "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges)


@functools.lru_cache(maxsize=None)
def _rules() -> dict:
    """What the column-wise split needs to follow the Python rules above exactly, computed once
    per process (about 0.1 s) from Python's own `re` and `str` methods."""
    # every code point but the surrogates, which never occur in Arrow's UTF-8
    planes = tuple((lo, np.arange(lo, hi, dtype="<u4").tobytes().decode("utf-32-le"))
                   for lo, hi in ((0, 0xD800), (0xE000, 0x110000)))
    space, digit = _char_ranges(r"\s", planes), _char_ranges(r"\d", planes)
    marker = LIST_MARKER.pattern.replace(r"\s", f"[{_re2_class(space)}]").replace(r"\d", f"[{_re2_class(digit)}]")
    assert "\\" not in marker.replace("\\x{", ""), marker  # every Python escape was translated
    flags = np.zeros(0x110000, dtype=np.uint8)
    for a, b in _char_ranges(_WORD_CHAR, planes):
        flags[a:b + 1] |= _IN_WORD
    for a, b in _char_ranges(_WORD_START, planes):
        flags[a:b + 1] |= _WORD_FIRST
        flags[[c for c in range(a, b + 1) if chr(c).isupper() or chr(c).isdigit()]] |= _CAPITAL
    assert all(w.isascii() and w == w.lower() and len(w) <= 8 for w in SMALL_WORDS)
    small = np.array([sum(ord(ch) << 8 * i for i, ch in enumerate(w)) for w in SMALL_WORDS], dtype=np.int64)
    return {
        "space": "".join(chr(c) for a, b in space for c in range(a, b + 1)),  # what str.strip() removes
        "marker": marker,  # LIST_MARKER
        "closing": "[" + "".join(f"\\x{{{ord(c):x}}}" for c in CLOSING) + "]$",
        "flags": flags,
        "byte_flags": np.where(np.arange(256) < 0x80, flags[:256], 0).astype(np.uint8),  # of ASCII bytes
        # SMALL_WORDS as integers, one byte a character
        "small": small,
        "small_len": max(map(len, SMALL_WORDS)),
    }


def _rank(parent: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For items grouped by a sorted `parent` in 0..n-1: each item's rank in its group, the
    group sizes and the index of each group's first item."""
    counts = np.bincount(parent, minlength=n)
    starts = np.cumsum(counts) - counts
    return np.arange(len(parent)) - starts[parent], counts, starts


def _bools(a) -> np.ndarray:
    return np.asarray(a.to_numpy(zero_copy_only=False), dtype=bool)


def _utf8(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets from 0, UTF-8 bytes) of a string array, without copying the bytes."""
    n = len(strings)
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32, count=n + 1, offset=4 * strings.offset)
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    return offsets - offsets[0], data


def _char_flags(data: np.ndarray, rules: dict) -> np.ndarray:
    """The `rules["flags"]` of the character each UTF-8 byte belongs to."""
    flags = rules["byte_flags"][data]
    lead = np.flatnonzero(data >= 0xC0)  # first bytes of the characters beyond ASCII
    if len(lead):
        b = np.concatenate([data, np.zeros(3, np.uint8)]).astype(np.int32)
        b0, b1, b2, b3 = b[lead], b[lead + 1] & 0x3F, b[lead + 2] & 0x3F, b[lead + 3] & 0x3F
        cp = np.where(b0 < 0xE0, ((b0 & 0x1F) << 6) | b1, np.where(
            b0 < 0xF0, ((b0 & 0x0F) << 12) | (b1 << 6) | b2, ((b0 & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3))
        f = rules["flags"][cp]
        size = 2 + (b0 >= 0xE0) + (b0 >= 0xF0)
        for k in range(4):
            sel = k < size
            flags[lead[sel] + k] = f[sel]
    return flags


def _title_case(lines: pa.Array, rules: dict) -> np.ndarray:
    """`is_title_case` of each line of at most 100 characters, on the UTF-8 bytes. The words of
    WORD.findall are the runs of _WORD_CHAR characters that hold a _WORD_START character, each
    from its first _WORD_START character to the end of the run."""
    n = len(lines)
    offsets, data = _utf8(lines)
    flags = _char_flags(data, rules)
    in_word = (flags & _IN_WORD) != 0
    line_start = np.zeros(len(data) + 1, dtype=bool)
    line_start[offsets] = True
    run = np.zeros(len(data) + 2, dtype=bool)  # in_word, with a byte outside runs on each side
    run[1:-1] = in_word
    starts = np.flatnonzero(in_word & (line_start[:-1] | ~run[:-2]))
    ends = np.flatnonzero(in_word & (line_start[1:] | ~run[2:])) + 1
    first = starts.copy()
    found = (flags[starts] & _WORD_FIRST) != 0
    pending = np.flatnonzero(~found)
    pos = starts[pending]
    while len(pending):  # runs that begin with `_`, an apostrophe, `.` or `-`: look further
        pos = pos + 1
        alive = pos < ends[pending]
        pending, pos = pending[alive], pos[alive]
        hit = (flags[pos] & _WORD_FIRST) != 0
        first[pending[hit]], found[pending[hit]] = pos[hit], True
        pending, pos = pending[~hit], pos[~hit]
    start, end = first[found], ends[found]  # the words, as byte ranges
    word_line = np.searchsorted(offsets, start, side="right") - 1
    capital = (flags[start] & _CAPITAL) != 0
    # `w.lower() in SMALL_WORDS`: words of at most small_len bytes, packed one byte a character
    # with A-Z lower-cased (a character beyond ASCII never matches: of them only the Kelvin sign
    # U+212A has an ASCII lower case, "k", and no small word holds a k)
    length = end - start
    key = np.zeros(len(start), dtype=np.int64)
    for i in range(rules["small_len"]):
        c = np.where(i < length, data[np.minimum(start + i, len(data) - 1)], 0).astype(np.int64)
        key |= (c + 32 * ((c >= 65) & (c <= 90))) << (8 * i)
    small = (length <= rules["small_len"]) & np.isin(key, rules["small"])
    rank, count, first_word = _rank(word_line, n)
    significant = (rank > 0) & ~small
    n_significant = np.bincount(word_line, weights=significant, minlength=n)
    n_capital = np.bincount(word_line, weights=significant & capital, minlength=n)
    first_capital = np.zeros(n, dtype=bool)
    has_words = count > 0
    first_capital[has_words] = capital[first_word[has_words]]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = n_capital / n_significant
    return has_words & (count <= 12) & first_capital & ((n_significant == 0) | (share >= 0.6))


def _classify_lines(lines: pa.Array, rules: dict) -> tuple[np.ndarray, pa.Array]:
    """(kind codes, block texts) of non-blank lines: `classify`, then `strip_marker` or strip."""
    space = rules["space"]
    stripped = pc.utf8_trim(lines, characters=space)
    marker = _bools(pc.match_substring_regex(lines, rules["marker"]))
    tail = pc.utf8_rtrim(pc.utf8_rtrim(stripped, characters=TRAILING_QUOTES), characters=space)
    closing = _bools(pc.match_substring_regex(tail, rules["closing"]))
    kind = np.full(len(lines), _BULLET, dtype=np.int8)
    kind[closing & ~marker] = _PARAGRAPH
    maybe_heading = ~marker & ~closing & (pc.utf8_length(lines).to_numpy() <= 100)
    idx = np.flatnonzero(maybe_heading)
    if len(idx):
        kind[idx[_title_case(lines.take(pa.array(idx)), rules)]] = _HEADING
    if marker.any():
        unmarked = pc.replace_substring_regex(lines.filter(pa.array(marker)), rules["marker"], "",
                                              max_replacements=1)
        stripped = pc.replace_with_mask(stripped, pa.array(marker), pc.utf8_trim(unmarked, characters=space))
    return kind, stripped


def _split_feed(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, np.ndarray]:
    """Blocks of updates that are not text articles, and the update index of each block."""
    rules = _rules()
    n = batch.num_rows
    col = batch.column
    lists = pc.split_pattern(col("text"), "\n")
    lines, parent = pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy()
    blank = _bools(pc.equal(pc.binary_length(pc.utf8_trim(lines, characters=rules["space"])), 0))
    if blank.any():
        lines, parent = lines.filter(pa.array(~blank)), parent[~blank]
    kind, text = _classify_lines(lines, rules)
    rank, count, _ = _rank(parent, n)

    # each update: its headline block (headline records), then its lines
    headed = _bools(pc.starts_with(col("fmt"), "headlines-"))
    heads = np.flatnonzero(headed)
    size = count + headed
    first_row = np.cumsum(size) - size
    line_rows = first_row[parent] + headed[parent] + rank
    order = np.empty(len(lines) + len(heads), dtype=np.int64)
    order[line_rows] = np.arange(len(lines))
    order[first_row[heads]] = len(lines) + np.arange(len(heads))
    order = pa.array(order)
    take_parent = pa.array(np.concatenate([parent, heads])).take(order)
    is_head_row = np.concatenate([np.zeros(len(lines), bool), np.ones(len(heads), bool)])

    update_id = col("update_id")
    missing = _bools(pc.or_kleene(pc.is_null(update_id), pc.equal(update_id, "")).fill_null(True))
    if missing.any():
        m = pa.array(missing)
        update_id = pc.replace_with_mask(update_id, m, pa.array(
            [f"{a}@{p.isoformat()}" for a, p in zip(col("article_id").filter(m).to_pylist(),
                                                    col("published_at").filter(m).to_pylist())], pa.string()))

    def per_update(column):
        return column.take(take_parent)

    section_of = pa.array(np.concatenate([parent, heads]), mask=is_head_row).take(order)
    position = np.concatenate([col("position").to_numpy()[parent] + rank, np.zeros(len(heads), np.int64)])
    out = pa.RecordBatch.from_arrays(
        [
            per_update(col("source_uri")),
            per_update(col("line")),
            per_update(col("source")),
            per_update(col("article_id")),
            per_update(update_id),
            per_update(col("headline")),
            col("section").take(section_of),
            _KINDS.take(pa.array(np.concatenate([kind, np.full(len(heads), _HEADLINE, np.int8)]))).take(order),
            pa.array(position, pa.int32()).take(order),
            pa.concat_arrays([text, col("headline").take(pa.array(heads, pa.int64()))]).take(order),
            per_update(col("published_at")),
        ],
        schema=BLOCK_SCHEMA,
    )
    return out, take_parent.to_numpy()


def _split_by_rows(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, np.ndarray]:
    rows, parent = [], []
    for i, u in enumerate(batch.to_pylist()):
        blocks = split_update(u)
        rows += blocks
        parent += [i] * len(blocks)
    return pa.RecordBatch.from_pylist(rows, schema=BLOCK_SCHEMA), np.array(parent, dtype=np.int64)


def _columnar(batch: pa.RecordBatch) -> bool:
    """Whether the batch has the columns of UPDATE_SCHEMA, with their types and no missing values
    where they are required (anything else takes the reference path, errors included)."""
    names = batch.schema.names
    for f in UPDATE_SCHEMA:
        if f.name not in names or batch.schema.field(f.name).type != f.type:
            return False
        if not f.nullable and batch.column(f.name).null_count:
            return False
    return True


def split_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Blocks of an update batch: the rows of `split_update` for each update, in update order,
    computed column-wise (text articles, rare and small, row by row)."""
    if batch.num_rows == 0 or not _columnar(batch):
        return split_rows(batch)
    text = _bools(pc.equal(batch.column("fmt"), "text"))
    if text.all():
        return split_rows(batch)
    if not text.any():
        return _split_feed(batch)[0]
    feed_idx, text_idx = np.flatnonzero(~text), np.flatnonzero(text)
    feed, feed_parent = _split_feed(batch.take(pa.array(feed_idx)))
    articles, article_parent = _split_by_rows(batch.take(pa.array(text_idx)))
    parent = np.concatenate([feed_idx[feed_parent], text_idx[article_parent]])
    both = pa.RecordBatch.from_arrays(
        [pa.concat_arrays([feed.column(i), articles.column(i)]) for i in range(feed.num_columns)], schema=feed.schema
    )
    return both.take(pa.array(np.argsort(parent, kind="stable")))


class SplitEvents(beam.PTransform):
    """Update batches -> block batches (one row per block, classified, with section/position)."""

    def expand(self, updates):
        return updates | "SplitBlocks" >> beam.Map(split_batch)
