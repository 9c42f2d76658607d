"""`split_batch` (column-wise) against the row-by-row oracle `split_update` (tests/oracles/split.py): the same rows,
in the same order, with the same values and schema, on constructed edge cases, on every
Unicode character where a rule looks at characters, and on the real data."""
from __future__ import annotations

import datetime as dt
import importlib.util
import re
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from schemas.models import BLOCK_SCHEMA, UTC
from transforms import split
from transforms.read import SNIFF_BYTES, UPDATE_SCHEMA, sniff, split_into_ranges
from transforms.common import string_view
from transforms.split import LIST_MARKER, SMALL_WORDS, split_batch

from .conftest import REPO, SHARED_DATA, need_shared
from .oracles.read import read_jsonl, read_task_rows
from .oracles.split import classify, split_rows, strip_marker

T = dt.datetime(2022, 2, 21, 8, 30, 15, 123456, tzinfo=UTC)
# every code point but the surrogates (which cannot occur in Arrow strings)
ALL_CHARS = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


reference = split_rows


def assert_same(batch: pa.RecordBatch) -> pa.RecordBatch:
    want, got = reference(batch), split_batch(batch)
    assert got.schema.equals(BLOCK_SCHEMA, check_metadata=True)
    if not got.equals(want):
        w, g = want.to_pylist(), got.to_pylist()
        for i, (a, b) in enumerate(zip(w, g)):
            assert b == a, f"block {i} differs"
        assert len(g) == len(w)
        assert got.equals(want)  # types or chunking
    return got


def update(text: str, fmt: str = "jsonl", *, line: int = 1, update_id: str | None = "a1/u1",
           section: str | None = None, position: int = 0, headline: str = "A Headline",
           article_id: str = "a1", published_at: dt.datetime = T) -> dict:
    return {"source_uri": f"mem://{fmt}", "line": line, "fmt": fmt, "source": "example.org",
            "article_id": article_id, "update_id": update_id, "headline": headline, "section": section,
            "published_at": published_at, "position": position, "text": text}


def batch_of(rows: list[dict]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=UPDATE_SCHEMA)


S99 = " ".join(["Abcdefghi"] * 10)  # 99 characters, 10 words
LINES = [
    # blank and white space only
    "", " ", "   ", "\t", "\r", " \r", "\u00a0", "\u2028", "\u2029", "\u3000 \u205f", "\x1c\x1d\x1e\x1f",
    "\x85", "\x0b\x0c", "\u200b",  # U+200B is not white space for Python
    # paragraphs, closing punctuation and trailing quotes
    "Plain paragraph.", "  Indented paragraph.  ", "Paragraph with CR.\r", "Ends with colon:",
    "Ends with semicolon;", "Question?", "Wow!", "Said he.\"", "Said he.” ", "Quote at end.' )",
    "Bracket (end.)", "Bracket (End)", "Two Quotes After.\" \"", "Quotes Only \"'’”»)]", "”", ".", "!  ",
    "Guillemet »", "Ends With Period.»\u00a0", "Ends With Period .\u2028", "Colon Then Space : ",
    "Dots...", "Ellipsis Char…", "Full Stop Ideographic。",
    # list markers
    "- dash bullet", "* star bullet", "• dot bullet", "– en dash bullet", "— Em Dash Is Not A Marker",
    "1. numbered", "12) numbered", "123. Three Digits", "1.no space", "-no space", "  - indented dash",
    "\t* tab star", "-\u00a0nbsp after marker", "-\u2028line separator after marker", "1.\u3000ideographic",
    "٣. Arabic-Indic Digit", "１. Fullwidth Digit", "²) Superscript Two", "𝟏. Math Digit", "- ",
    "-  \t", "- Ends with period.", "- Title Case Marker Line", "-- Double Dash", "- - Nested Dash",
    "1) 2) Two Markers", "\u00a0\u00a0* Nbsp Indent", "9.", "9. ", "99) x", "09. Leading Zero",
    # title case: headings or bullets
    "Ukraine Accuses Separatists of violating Ceasefire", "Both NATO and Ukraine have rejected this demand",
    "2022 Winter Olympics Open in Beijing", "10 Things To Know", "the Lower Case Start", "Putin's Demands",
    "O'Brien Says No", "U.S. Sanctions Explained", "Russia’s Next Move", "’Tis The Season",
    "'Quoted Start Here", "\"Quoted Start Here", "_Underscore Start", "___", "--", "-", "'", "’ Curly",
    "Snake_case Words Here", "Well-known Facts About", "e.g. Examples Here", "-Leading Hyphen Heading",
    "Dr. Who Returns", "Mixed Case words here Now", "Talks OF THE Year", "Talks IN Vienna",
    "Upon Reflection Upon", "Off Track", "Vs Rivals", "Of", "of", "A", "a", "1", "A the of and",
    "The of and", "Alpha Bravo Charlie delta echo Foxtrot",  # 3 of 5 capitalised: exactly 0.6
    "Alpha Bravo delta echo Foxtrot", "Alpha Bravo Charlie delta echo foxtrot golf",
    "One Two Three Four Five Six Seven Eight Nine Ten Eleven Twelve",
    "One Two Three Four Five Six Seven Eight Nine Ten Eleven Twelve Thirteen",
    "One Two Three Four Five Six Seven Eight Nine Ten Eleven of",
    S99, S99 + "X", S99 + "XY", " " + S99 + "X", S99 + "X\r", "\t" + S99,
    "Tab\tSeparated\tWords", "\u00a0Non-breaking Space Heading\u00a0", "Heading Before Separator\u2028",
    "Word\u00a0Joined\u00a0By\u00a0Nbsp", "Zero\u200bWidth Space", "\ufeffBOM Start Heading",
    "²³ Superscript Start", "Ⅻ Roman Numeral", "ǅemal Title Case Letter", "Éire Rises Again",
    "İstanbul Talks Resume", "ΑΘΗΝΑ Νέα Μέτρα", "Москва вводит санкции", "Москва Вводит Санкции",
    "東京 Olympics Delayed", "Olympics 東京 Delayed", "\u212aelvin Of The Day", "The \u212a Of It",
    "Cafe\u0301 Opens Today", "e\u0301cole Normale Opens", "𝐁old Math Letters Here", "😀 Emoji Start Here",
    "Emoji 😀 Middle Heading", "𝟏𝟐 Math Digits Lead", "Ünïcödé Ëvërywhërë Wörds", "ß Lower Sharp S",
    "ẞ Capital Sharp S", "Ǆ Digraph Start", "ꝺ Insular Letter", "Aa Bb Cc Dd Ee Ff Gg Hh Ii Jj Kk Ll",
    "123 456 789", "12:30 Meeting Starts", "Meeting At 12:30", "@Handle Says Hello", "#Hashtag Trends Now",
    "$100 Million Deal", "x", "X", "_", "__init__ Method Explained", "...Dots Lead The Way",
    "US-Russia talks", "UN Security Council Meets", "a.m. Update From Kyiv", "Part 2", "Part two",
]


def test_lines_cover_the_rules():
    kinds = {classify(x) for x in LINES if x.strip()}
    assert kinds == {"heading", "paragraph", "bullet"}


@pytest.mark.parametrize("fmt", ["jsonl", "liveblog", "headlines-csv", "headlines-json"])
def test_each_line_alone(fmt):
    rows = [update(x, fmt, line=i + 1, update_id=f"a1/u{i}", position=i % 3, section=None if i % 2 else "Sec")
            for i, x in enumerate(LINES)]
    assert_same(batch_of(rows))


@pytest.mark.parametrize("fmt", ["jsonl", "liveblog", "headlines-csv", "headlines-json", "text"])
def test_all_lines_in_one_update(fmt):
    text = "\n".join(LINES)
    rows = [update(text, fmt, line=7, position=3, section="Background"),
            update("\n".join(reversed(LINES)), fmt, line=8, update_id=None),
            update("\n\n" + text + "\n", fmt, line=9, update_id="")]
    out = assert_same(batch_of(rows))
    if fmt == "text":
        assert "heading" in out.column("kind").to_pylist()


def test_update_id_fallback_and_sections():
    rows = [
        update("One.", update_id=None),
        update("Two.", update_id=""),
        update("Three.", update_id="given"),
        update("Four.", update_id=None, published_at=dt.datetime(2022, 3, 1, tzinfo=UTC)),  # no microseconds
        update("Five.", update_id=None, published_at=dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)),
        update("", "headlines-json", update_id=None),
        update("Sub-heading Here", "headlines-csv", update_id="", position=1),
        update("Post one.\nPost two", "liveblog", update_id="blog/post-1", section="Title", position=4),
        update("Post three", "liveblog", update_id="blog/post-2", section=None, position=6),
    ]
    out = assert_same(batch_of(rows))
    assert out.column("update_id").to_pylist()[:2] == ["a1@2022-02-21T08:30:15.123456+00:00"] * 2


def test_no_blocks_and_empty_batches():
    assert_same(batch_of([]))
    assert_same(batch_of([update(""), update("\n \n\t"), update("\u2028")]))
    assert_same(batch_of([update("", "headlines-json"), update(" ", "headlines-csv")]))
    assert_same(batch_of([update("", "text"), update("\n\n", "text")]))


def test_mixed_formats_keep_update_order():
    rows = []
    for i, x in enumerate(LINES[::3]):
        fmt = ("text", "jsonl", "liveblog", "headlines-csv", "headlines-json", "jsonl")[i % 6]
        body = "\n".join([x, "A Section Heading", "Body line.", "", "- a bullet", x])
        rows.append(update(body, fmt, line=10 * i + 1, update_id=None if i % 4 == 0 else f"u{i}",
                           article_id=f"art{i % 5}", position=i % 4))
    batch = batch_of(rows)
    assert_same(batch)
    assert_same(batch.slice(5, 17))  # arrays with an offset
    assert_same(batch.take(pa.array(list(range(len(rows)))[::-1])))
    text_only = batch.filter(pc.equal(batch.column("fmt"), "text"))
    assert_same(text_only)


def test_batches_of_other_types_or_with_missing_values():
    """Other column types are cast to UPDATE_SCHEMA's, with the oracle's result; a missing
    required value is an error, as in the oracle (which fails on it, AttributeError)."""
    batch = batch_of([update("Some Heading\nA line."), update("x", "text")])
    big = pa.RecordBatch.from_arrays(
        [c.cast(pa.large_string()) if c.type == pa.string() else c for c in batch.columns],
        names=batch.schema.names)
    assert split_batch(big).equals(reference(big))
    nulls = pa.RecordBatch.from_arrays(
        [pa.array([None, "x"], pa.string()) if n == "text" else c for n, c in zip(batch.schema.names, batch.columns)],
        schema=UPDATE_SCHEMA)
    with pytest.raises(AttributeError):
        reference(nulls)
    with pytest.raises(ValueError, match="text is required"):
        split_batch(nulls)


# --- the character classes, on every code point ---------------------------------------------

def test_strip_set_is_pythons_for_every_character():
    rules = split._rules()
    strings = [f"{c}x{c}" for c in ALL_CHARS]
    got = pc.utf8_trim(pa.array(strings), characters=rules["space"]).to_pylist()
    assert got == [s.strip() for s in strings]


def test_list_marker_matches_python_for_every_character():
    rules = split._rules()
    for template in ("{c}- x", "-{c}x", "{c}{c}) x"):
        strings = [template.format(c=c) for c in ALL_CHARS]
        got = pc.match_substring_regex(pa.array(strings), rules["marker"]).to_numpy(zero_copy_only=False)
        want = np.array([bool(LIST_MARKER.match(s)) for s in strings])
        assert np.array_equal(got, want), [s for s, g, w in zip(strings, got, want) if g != w][:5]
        matched = [s for s, w in zip(strings, want) if w]
        unmarked = pc.replace_substring_regex(pa.array(matched, pa.string()), rules["marker"], "",
                                              max_replacements=1)
        assert pc.utf8_trim(unmarked, characters=rules["space"]).to_pylist() == [strip_marker(s) for s in matched]


def test_character_flags_for_every_character():
    """The UTF-8 decoding of the word scan and its per-character table, against Python."""
    line = pa.array(["".join(ALL_CHARS)])
    data, offsets = string_view(line)
    flags = split._char_flags(data, split._rules())
    first_bytes = flags[(data & 0xC0) != 0x80]
    assert len(first_bytes) == len(ALL_CHARS)
    in_word = re.compile(split._WORD_CHAR)
    word_first = re.compile(split._WORD_START)
    want = np.array([(1 if in_word.fullmatch(c) else 0) | (2 if word_first.fullmatch(c) else 0)
                     | (4 if word_first.fullmatch(c) and (c.isupper() or c.isdigit()) else 0)
                     for c in ALL_CHARS], dtype=np.uint8)
    assert np.array_equal(first_bytes, want)
    # every byte of a character carries its flags: runs of word characters are runs of bytes
    starts = np.flatnonzero((data & 0xC0) != 0x80)
    assert np.array_equal(flags, np.repeat(first_bytes, np.diff(np.r_[starts, len(data)])))


def test_small_words_only_lower_case_from_ascii():
    """The word scan lower-cases ASCII only: right as long as no other character has a lower
    case made of the letters of a small word."""
    letters = set("".join(SMALL_WORDS))
    odd = [c for c in ALL_CHARS if not c.isascii() and c.lower().isascii()]
    assert odd == ["\u212a"]  # KELVIN SIGN -> k
    assert not any(set(c.lower()) & letters for c in odd)


def _representatives() -> list[str]:
    """Two characters of each kind (as the rules see them) in each block of 256 code points."""
    text = "".join(ALL_CHARS)
    classes = [{m.start() for m in re.finditer(p, text)} for p in (r"\s", r"\d", r"\w", split._WORD_CHAR)]
    seen: dict[tuple, int] = {}
    out = []
    for i, c in enumerate(ALL_CHARS):
        key = (ord(c) >> 8, unicodedata.category(c), c.isupper(), c.isdigit(), *(i in k for k in classes))
        if seen.get(key, 0) < 2:
            seen[key] = seen.get(key, 0) + 1
            out.append(c)
    return out + ["\u212a"]


def test_classification_with_representative_characters():
    chars = _representatives()
    templates = ("{c}", "{c}Word Of Word", "Word {c}ord Word", "Word Word {c}", "{c}- Word", "Word{c}Word word",
                 "Word {c}. Word", "- {c}", "Word.{c}", "{c}{c}) Word", "Big {c}{c} Wins", "Word word {c}word")
    lines = [t.format(c=c) for c in chars for t in templates]
    rows = [update("\n".join(lines[i:i + 7]), ("jsonl", "liveblog", "headlines-csv")[i % 3], line=i)
            for i in range(0, len(lines), 7)]
    assert_same(batch_of(rows))


# --- real data ------------------------------------------------------------------------------

def _read_all(path: Path) -> list[dict]:
    data = path.read_bytes()
    rows = []
    for task in split_into_ranges(str(path), sniff(data[:SNIFF_BYTES]), len(data)):
        got, _ = read_task_rows(task, data if task.end < 0 else data[task.start:task.end])
        rows += got
    return rows


def test_real_data():
    need_shared()
    checked = {}
    for path in sorted(p for p in SHARED_DATA.rglob("*") if p.is_file()):
        rows = _read_all(path)
        if rows:
            out = assert_same(batch_of(rows))
            checked[path.name] = out.num_rows
    assert len(checked) >= 4, checked  # seed article, live blog, RUWA CSV, headline JSON
    # all of them in one batch, interleaved
    rows = [r for path in sorted(SHARED_DATA.rglob("*")) if path.is_file() for r in _read_all(path)[:300]]
    assert_same(batch_of(rows[::2] + rows[1::2]))


def test_generated_feed(tmp_path):
    """A feed made by benchmarks/perf.py from the real data (titles and sentences joined and
    varied), read as the pipeline reads it."""
    need_shared()
    spec = importlib.util.spec_from_file_location("newsevents_perf", REPO / "benchmarks" / "perf.py")
    perf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf)
    feed = tmp_path / "feed.jsonl"
    perf.FeedGenerator(perf.load_pool(SHARED_DATA), 4000, 6).write(feed)
    rows = read_jsonl(str(feed), feed.read_bytes(), 1, [])
    assert len(rows) == 4000
    batch = batch_of(rows)
    out = assert_same(batch)
    assert set(out.column("kind").to_pylist()) == {"heading", "paragraph", "bullet"}
    assert_same(batch.slice(1234, 999))
