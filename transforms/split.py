"""Split: update batches -> block batches, one row per block (an event candidate).

Classification of a block, by the rules of DESIGN.md:
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
their own (id: the given `update_id`, else `<article_id>@<published_at>`); their blocks are
the non-blank lines (feed) or sentences (live blog).

Example: the body lines "Background", "Tensions rose.", "Putin has two demands:",
"The removal of NATO troops" of a text article give heading/paragraph/paragraph/bullet, all
in section "Background".

Guarantee: positions are the order of the blocks in their article (0 = headline for text
articles; feed updates number their own blocks from 0; live-blog posts continue one count
over the file). Nothing is dropped: every non-blank line becomes exactly one block.

`split_batch` works on whole Arrow columns (pyarrow.compute + numpy), with character
classes taken from Python's own regular expressions and `str` methods; the tests compare it
with a line-by-line oracle written from the rules above (`tests/oracles/split.py`).
"""
from __future__ import annotations

import functools
import re

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.models import BLOCK_SCHEMA
from transforms.common import stable_hash, string_view, utf8_code_points
from transforms.read import UPDATE_SCHEMA

SMALL_WORDS = frozenset(
    "a an and as at but by for from in into nor of off on onto or over per the to up upon via vs with".split()
)
CLOSING = ".!?:;"
TRAILING_QUOTES = "\"'’”»)]"
LIST_MARKER = re.compile(r"^\s*(?:[-*•–]|\d{1,2}[.)])\s+")
WORD = re.compile(r"[^\W_][\w'’.-]*", re.UNICODE)


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
    """What the column-wise split needs to follow the rules exactly (Python's `re` classes and
    `str` methods), computed once per process from Python itself."""
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


def _char_flags(data: np.ndarray, rules: dict) -> np.ndarray:
    """The `rules["flags"]` of the character each UTF-8 byte belongs to."""
    flags = rules["byte_flags"][data]
    lead, cp, size = utf8_code_points(data)  # the characters beyond ASCII
    if len(lead):
        f = rules["flags"][cp]
        for k in range(4):
            sel = k < size
            flags[lead[sel] + k] = f[sel]
    return flags


def _title_case(lines: pa.Array, rules: dict) -> np.ndarray:
    """`is_title_case` of each line of at most 100 characters, on the UTF-8 bytes. The words of
    WORD.findall are the runs of _WORD_CHAR characters that hold a _WORD_START character, each
    from its first _WORD_START character to the end of the run."""
    n = len(lines)
    data, offsets = string_view(lines)
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


def _split_columns(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The blocks of an update batch of UPDATE_SCHEMA (see the module docstring)."""
    rules = _rules()
    n = batch.num_rows
    col = batch.column
    lists = pc.split_pattern(col("text"), "\n")
    lines, parent = pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy()
    line_index, _, _ = _rank(parent, n)  # the line's index in its update's text, blank lines counted
    blank = _bools(pc.equal(pc.binary_length(pc.utf8_trim(lines, characters=rules["space"])), 0))
    if blank.any():
        lines, parent, line_index = lines.filter(pa.array(~blank)), parent[~blank], line_index[~blank]
    kind, text = _classify_lines(lines, rules)
    rank, count, first = _rank(parent, n)
    article = _bools(pc.equal(col("fmt"), "text"))
    in_article = article[parent]

    # each update: its headline block (text articles, headline records), then its lines
    headed = article | _bools(pc.starts_with(col("fmt"), "headlines-"))
    heads = np.flatnonzero(headed)
    size = count + headed
    first_row = np.cumsum(size) - size
    line_rows = first_row[parent] + headed[parent] + rank
    order = np.empty(len(lines) + len(heads), dtype=np.int64)
    order[line_rows] = np.arange(len(lines))
    order[first_row[heads]] = len(lines) + np.arange(len(heads))
    order = pa.array(order)
    take_parent = pa.array(np.concatenate([parent, heads])).take(order)

    # sections of text articles: from a heading to the next one; the lines before the first
    # heading are the article's lead
    heading = in_article & (kind == _HEADING)
    last_heading = np.maximum.accumulate(np.where(heading, np.arange(len(lines)), -1)) if len(lines) else parent
    in_section = in_article & (last_heading >= first[parent])
    heading_no = np.cumsum(heading) - 1  # the heading's number among the headings
    heading_ids = [f"{a}/{stable_hash(' '.join(t.lower().split()), 8)}" for a, t in
                   zip(col("article_id").take(pa.array(parent[heading])).to_pylist(), text.filter(pa.array(heading)).to_pylist())]
    at_heading = np.where(in_section, last_heading, 0)

    # update ids: given, else `<article_id>@<published_at>`; `<article_id>/lead` in articles
    update_id = col("update_id")
    missing = _bools(pc.or_kleene(pc.is_null(update_id), pc.equal(update_id, "")).fill_null(True)) & ~article
    if missing.any() or article.any():
        m = missing | article
        ids = [f"{a}/lead" if lead else f"{a}@{p.isoformat()}" for a, p, lead in
               zip(col("article_id").filter(pa.array(m)).to_pylist(), col("published_at").filter(pa.array(m)).to_pylist(),
                   article[m].tolist())]
        update_id = pc.replace_with_mask(update_id, pa.array(m), pa.array(ids, pa.string()))
    update_id = pa.concat_arrays([update_id, pa.array(heading_ids, pa.string())]).take(pa.array(
        np.concatenate([np.where(in_section, n + heading_no[at_heading], parent), heads])).take(order))
    section = pa.concat_arrays([col("section"), text]).take(pa.array(
        np.concatenate([np.where(in_article, n + at_heading, parent), heads]),
        mask=np.concatenate([in_article & ~in_section, np.ones(len(heads), bool)]))).take(order)

    line = col("line").to_numpy()
    position = col("position").to_numpy()
    out = pa.RecordBatch.from_arrays(
        [
            col("source_uri").take(take_parent),
            pa.array(np.concatenate([line[parent] + np.where(in_article, 1 + line_index, 0), line[heads]])).take(order),
            col("source").take(take_parent),
            col("article_id").take(take_parent),
            update_id,
            col("headline").take(take_parent),
            section,
            _KINDS.take(pa.array(np.concatenate([kind, np.full(len(heads), _HEADLINE, np.int8)]))).take(order),
            pa.array(np.concatenate([np.where(in_article, 1, position[parent]) + rank, np.zeros(len(heads), np.int64)]),
                     pa.int32()).take(order),
            pa.concat_arrays([text, col("headline").take(pa.array(heads, pa.int64()))]).take(order),
            col("published_at").take(take_parent),
        ],
        schema=BLOCK_SCHEMA,
    )
    return out


def _update_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with the columns and types of UPDATE_SCHEMA (cast where they differ); a
    missing value in a required column is a ValueError."""
    if not batch.schema.equals(UPDATE_SCHEMA):
        batch = pa.RecordBatch.from_arrays([batch.column(f.name).cast(f.type) for f in UPDATE_SCHEMA],
                                           schema=UPDATE_SCHEMA)
    for f in UPDATE_SCHEMA:
        if not f.nullable and batch.column(f.name).null_count:
            raise ValueError(f"update batch: {f.name} is required, {batch.column(f.name).null_count} rows have none")
    return batch


def split_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The blocks of an update batch, one row per non-blank line (and one per headline of a
    text article or headline record), in update order."""
    return _split_columns(_update_batch(batch))


class SplitEvents(beam.PTransform):
    """Update batches -> block batches (one row per block, classified, with section/position)."""

    def expand(self, updates):
        return updates | "SplitBlocks" >> beam.Map(split_batch)
