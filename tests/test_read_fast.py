"""`read_jsonl_batch` (pyarrow.json, column-wise) against the line-by-line reference `read_jsonl`
(json + pydantic `UpdateIn`): the same UPDATE_SCHEMA batch (rows, values, types, order) and the
same rejects (uri, line, stage, reason, raw, in the same order) on constructed edge cases (every
reject reason, blank lines, CRLF, invalid UTF-8, non-objects, numbers against strings, nulls,
duplicate keys, Unicode, a huge line, ranges that start after line 1), on random timestamps, and
on a feed generated from the real data."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import random
import sys

import pyarrow as pa
import pytest

from schemas.models import UTC
from transforms.read import (PY_WHITESPACE, UPDATE_SCHEMA, ReadTask, fns, jsonl, parse_task, planning, read_jsonl_batch,
                             split_into_ranges)

from .conftest import REPO, need_shared
from .oracles.read import read_jsonl, read_task_rows

URI = "mem://feed.jsonl"


def reference(data: bytes, first_line: int = 1, uri: str = URI):
    rejects: list = []
    rows = read_jsonl(uri, data, first_line, rejects)
    return pa.RecordBatch.from_pylist(rows, schema=UPDATE_SCHEMA), rejects


class CountPerLine:
    """Counts the lines read_jsonl_batch sends through the reference's per-line code."""

    def __init__(self):
        self.lines: list[int] = []

    def __enter__(self):
        self._orig = jsonl.formats.jsonl_line_row

        def counting(uri, n, s, rejects):
            self.lines.append(n)
            return self._orig(uri, n, s, rejects)

        jsonl.formats.jsonl_line_row = counting
        return self

    def __exit__(self, *exc):
        jsonl.formats.jsonl_line_row = self._orig


def assert_same(data: bytes, first_line: int = 1, uri: str = URI, *, max_per_line: int | None = None
                ) -> tuple[pa.RecordBatch, list]:
    """The fast reader gives exactly the reference's batch and rejects; returns them. With
    `max_per_line`, at most that many lines may take the per-line path."""
    want, want_rejects = reference(data, first_line, uri)
    got_rejects: list = []
    with CountPerLine() as per_line:
        got = read_jsonl_batch(uri, data, first_line, got_rejects)
    if max_per_line is not None:
        assert len(per_line.lines) <= max_per_line, per_line.lines[:20]
    assert got.schema.equals(UPDATE_SCHEMA, check_metadata=True)
    if not got.equals(want):
        w, g = want.to_pylist(), got.to_pylist()
        for a, b in zip(w, g):
            assert b == a, f"line {a['line']} differs"
        assert len(g) == len(w), ([r["line"] for r in w], [r["line"] for r in g])
        assert got.equals(want)  # types or nulls
    assert got_rejects == want_rejects
    return got, got_rejects


def feed(*lines) -> bytes:
    """JSONL bytes: dicts through json.dumps, str and bytes verbatim, one per line."""
    out = []
    for x in lines:
        if isinstance(x, dict):
            x = json.dumps(x, ensure_ascii=False)
        out.append(x.encode("utf-8") if isinstance(x, str) else x)
    return b"\n".join(out) + b"\n"


def good(i: int = 0, **kw) -> dict:
    row = {"article_id": f"a{i}", "url": f"https://www.example.org/{i}", "source": "example.org",
           "headline": "Headline", "update_id": f"a{i}/u0", "section": None,
           "published_at": "2022-02-20T08:00:00+02:00", "text": f"Shelling near Donetsk {i}.\nSecond block."}
    row.update(kw)
    return {k: v for k, v in row.items() if v is not ...}


# --- every reject reason, and what pydantic accepts -------------------------------------

REJECTING = {
    "invalid_json": ['{"text": "a", ', "{not json", '{"text": "a"} x', "{'text': 'a'}", '{"a": 1,}', "{}}",
                     '{"text": "a", "published_at": 1}{"text": "b"}',
                     '{"text": "a", "published_at": 1} {"text": "b"}'],
    "not_an_object": ["[1, 2]", '"text"', "5", "null", "true", "[]", '[{"text": "a"}]'],
    "missing_field:text": [good(text=...)],
    "missing_field:published_at": [good(published_at=...)],
    "missing_field:article_id_or_url": [good(article_id=..., url=...), good(article_id=None, url=None),
                                        good(article_id="", url=""), good(article_id=None, url="")],
    "invalid_field:text": [good(text=None), good(text=""), good(text="   "),
                           good(text=" \t\n\r\x0b\x0c\x1c\x85\u3000\u2028 "),
                           good(text=5), good(text=["a"]), good(text={"a": 1}), good(text=True),
                           '{"article_id": "a", "published_at": 1, "text": "\\ud800 lone surrogate"}',
                           '{"article_id": "a", "published_at": 1, "text": "lone low \\udc00 surrogate"}'],
    "invalid_field:published_at": [
        good(published_at=None), good(published_at="2022-02-20T08:00:00"), good(published_at="2022-02-20"),
        good(published_at="yesterday"),
        good(published_at="1645344000"), good(published_at=""), good(published_at=True), good(published_at=False),
        good(published_at=-1), good(published_at=-0.5), good(published_at=32503680000),
        good(published_at=1e20), good(published_at=[2022, 2, 20]), good(published_at={"t": 1}),
        good(published_at="2023-02-29T00:00:00Z"), good(published_at="2022-02-20T24:00:00Z"),
        good(published_at="2022-02-20T08:00:60Z"), good(published_at="2022-02-20T08:00:00+24:00"),
        good(published_at="0000-01-01T00:00:00Z"), good(published_at="2022-13-01T00:00:00Z"),
        '{"article_id": "a", "text": "t", "published_at": NaN}',
        '{"article_id": "a", "text": "t", "published_at": Infinity}',
        '{"article_id": "a", "text": "t", "published_at": -Infinity}',
        '{"article_id": "a", "text": "t", "published_at": 1e400}',
        '{"article_id": "a", "text": "t", "published_at": 123456789012345678901234567890}'],
    "invalid_field:article_id": [good(article_id=5), good(article_id=["a"])],
    "invalid_field:url": [good(url=5), good(article_id=None, url=True)],
    "invalid_field:update_id": [good(update_id=1)],
    "invalid_field:source": [good(source=1.5)],
    "invalid_field:headline": [good(headline={"a": "b"})],
    "invalid_field:section": [good(section=[])],
}


@pytest.mark.parametrize("reason", sorted(REJECTING))
def test_every_reject_reason(reason):
    lines = REJECTING[reason]
    for line in lines:  # alone, between good lines, and in a range of good lines
        _, rejects = assert_same(feed(line))
        assert [r["reason"] for r in rejects] == [reason], line
        _, rejects = assert_same(feed(good(1), line, good(2)))
        assert [(r["line"], r["reason"]) for r in rejects] == [(2, reason)]
    data = feed(*[x for i, line in enumerate(lines) for x in (good(i), line)], good(99))
    batch, rejects = assert_same(data, first_line=41)
    assert [r["line"] for r in rejects] == [42 + 2 * i for i in range(len(lines))]
    assert batch.column("line").to_pylist() == [41 + 2 * i for i in range(len(lines) + 1)]


def test_invalid_utf8_lines():
    bad = [b"\xff", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80",
           b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\x80", b"\xc3"]
    for seq in bad:
        lines = [b'{"article_id": "a", "published_at": 1, "text": "x' + seq + b'"}',  # in a value
                 b'{"article_id": "a", "published_at": 1, "text": "x", "z": "' + seq + b'"}',  # in an ignored field
                 b'{"article_id": "a", "published_at": 1, "text": "x", "' + seq + b'": 1}',  # in a key
                 seq, b"{" + seq + b"}", b'{"article_id": "a", "published_at": 1, "text": "x"}' + seq]
        for line in lines:
            _, rejects = assert_same(feed(good(1), line, good(2)))
            assert [(r["line"], r["reason"], r["stage"]) for r in rejects] == [(2, "invalid_utf8", "read")]
    valid = ["\u00e9", "\u20ac", "\U0001F600", "\U0010FFFF", "\ud7ff", "\ue000", "\ufeff", "\x7f", "\u0800"]
    _, rejects = assert_same(feed(*[good(i, text=f"x {c}") for i, c in enumerate(valid)]))
    assert rejects == []


def test_blank_lines_crlf_and_white_space():
    data = feed("", good(1), "   ", "\t", "\r", good(2), "\x0c", "\u3000", "\x85", "\u2028", "", good(3))
    batch, rejects = assert_same(data, first_line=10)
    assert rejects == [] and batch.column("line").to_pylist() == [11, 15, 21]
    crlf = feed(good(1), "", good(2)).replace(b"\n", b"\r\n")
    batch, rejects = assert_same(crlf)
    assert rejects == [] and batch.column("line").to_pylist() == [1, 3]
    odd = [json.dumps(good(1)) + "\r\r", "  " + json.dumps(good(2)), json.dumps(good(3)) + " \t",
           "\t" + json.dumps(good(4)) + "\r", "\r" + json.dumps(good(5)), json.dumps(good(6), indent=None) + "\x0c",
           "\u3000" + json.dumps(good(7)), json.dumps(good(8), indent=1)]
    assert_same(feed(*odd))
    # a lone surrogate escape in a field other than text: a reject (it used to fail the run)
    surrogate = feed(good(1), '{"url": "u", "published_at": 1, "headline": "\\udfff", "text": "t"}')
    _, rejects = assert_same(surrogate)
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "invalid_field:headline")]
    assert_same(b"\r\n".join(feed(good(i)).rstrip(b"\n") for i in range(5)))  # CRLF, no final newline
    _, rejects = assert_same(feed(good(1)) + feed(good(2), good(3)).replace(b"\n", b"\r"))  # CR only: one line
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "invalid_json")]
    for data in (b"", b"\n", b"\r\n", b"\n\n\n", b"   ", b"\r"):
        batch, rejects = assert_same(data)
        assert batch.num_rows == 0 and rejects == []


def test_byte_order_marks():
    bom = b"\xef\xbb\xbf"
    batch, rejects = assert_same(bom + feed(good(1), good(2)))
    assert batch.num_rows == 2 and rejects == []
    batch, rejects = assert_same(feed(good(1)) + bom + feed(good(2)), first_line=7)  # only the first is dropped
    assert batch.column("line").to_pylist() == [7] and [r["line"] for r in rejects] == [8]
    assert_same(bom)
    assert_same(bom + b"\n" + feed(good(1)))


def test_nulls_empty_strings_and_derived_fields():
    lines = [
        good(1, headline=None, update_id=None, section=None),
        good(2, headline=..., update_id=..., section=..., source=...),
        good(3, source=None, url="https://www.bbc.co.uk/news/1"),
        good(4, source="", url="http://Example.COM:8080/x"),
        good(5, source=None, url="not a url"),
        good(6, source=None, url=None),
        good(7, source=None, url=""),
        good(8, article_id="", url="https://x.org/8"),
        good(9, article_id=None, url="https://x.org/9"),
        good(10, article_id=..., url="https://x.org/10", headline=""),
        good(11, section="", update_id="", headline=""),
        good(12, source=None, url="//host.only/path"),
        good(13, source=None, url="mailto:someone@example.org"),
        good(14, source=None, url="https://www./"),
        {"text": "minimal", "published_at": 0, "url": "u"},
    ]
    # all by pyarrow but the last line: a number published_at among strings goes per-line
    batch, rejects = assert_same(feed(*lines), max_per_line=1)
    assert rejects == [] and batch.num_rows == len(lines)
    rows = {r["line"]: r for r in batch.to_pylist()}
    assert rows[3]["source"] == "bbc.co.uk" and rows[5]["source"] == "unknown" and rows[2]["headline"] == ""
    assert rows[8]["article_id"] == "https://x.org/8" and rows[11]["section"] == ""


def test_a_url_that_urlparse_refuses_gives_source_unknown():
    data = feed(good(1), good(2, source=None, url="http://[::1"), good(3))
    batch, _ = assert_same(data)
    assert batch.column("source").to_pylist()[1] == "unknown"
    assert_same(feed(good(1), good(2, url="http://[::1")))  # with a source, the url is not parsed


def test_duplicate_keys_the_last_wins():
    base = '{"article_id": "a", "published_at": 1645344000, '
    lines = [base + '"text": "", "text": "second"}', base + '"text": "first", "text": ""}',
             base + '"text": "t", "x": 1, "x": 2}', base + '"text": "t", "published_at": "2022-01-01T00:00:00Z"}',
             base + '"text": "t", "te\\u0078t": "escaped key"}', base + '"te\\u0078t": "only escaped"}',
             base + '"text": "t", "url": 5, "url": "u"}', base + '"text": "t", "article_id": null}',
             base + '"text": "t", "source": "s", "source": null}']
    _, rejects = assert_same(feed(*lines))
    assert [r["line"] for r in rejects] == [2, 8]


def test_published_at_forms():
    forms = ["2022-02-20T08:00:00Z", "2022-02-20T08:00:00+00:00", "2022-02-20T08:00:00-00:00",
             "2022-02-20T08:00:00-05:30", "2022-02-20T23:59:59+23:59", "2022-02-20T00:00:00-23:59",
             "2022-02-20 08:00:00+02:00", "2022-02-20T08:00:00.5Z", "2022-02-20T08:00:00.05+01:00",
             "2022-02-20T08:00:00.123456-03:00", "2022-02-20T08:00:00.1234567Z", "2022-02-20T08:00:00,5Z",
             "2022-02-20T08:00Z", "2022-02-20T08Z", "20220220T080000Z", "2022-02-20T08:00:00z",
             "2022-02-20T08:00:00+0200", "2022-02-20T08:00:00+02", "2022-02-20T08:00:00+01:60",
             "2022-02-20T08:00:00+02:00:30", " 2022-02-20T08:00:00Z ", "2022-02-20T08:00:00Z\n",
             "2022-02-20x08:00:00+02:00", "2022-W07-7T08:00:00Z", "2022-051T08:00:00Z",
             "2024-02-29T12:00:00Z", "2000-02-29T12:00:00Z", "1900-02-28T12:00:00Z", "1969-12-31T23:59:59.999999Z",
             "1970-01-01T00:00:00+14:00", "0002-01-01T00:00:00+23:59", "9998-12-31T23:59:59-23:59",
             "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00-01:00",
             "2022-02-20T08:00:00\u00a0Z", "\u00a02022-02-20T08:00:00Z", "\uff12022-02-20T08:00:00Z"]
    epochs = [0, -0.0, 1, 1645344000, 1645344000.5, 1645344000.123456, 1645344000.1234565, 1645344000.9999996,
              1e9, 1.5e9, 32503679999, 32503679999.999999, 0.0000004, 0.0000005, 0.0000015, 1e-300, 5e-324]
    lines = [good(i, published_at=f) for i, f in enumerate(forms + epochs)]
    lines += ['{"url": "u", "text": "t", "published_at": 1645344000.000000500}',
              '{"url": "u", "text": "t", "published_at": 16453440005e-1}',
              '{"url": "u", "text": "t", "published_at": 1.6453440001234567E9}',
              '{"url": "u", "text": "t", "published_at": -0}',
              '{"url": "u", "text": "t", "published_at": 1e-400}',
              '{"url": "u", "text": "t", "published_at": 0.0000005000000000000000000001}',
              '{"url": "u", "text": "t", "published_at": 1645344000.12345649999999999999999}',
              '{"url": "u", "text": "t", "published_at": 1645344000.12345650000000000000001}']
    assert_same(feed(*lines))
    for line in lines:  # alone: its range is all of one kind
        assert_same(feed(line))


def test_year_one_with_an_offset_is_a_reject():
    data = feed(good(1), good(2, published_at="0001-01-01T00:00:00+01:00"))
    _, rejects = assert_same(data)
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "invalid_field:published_at")]


def test_random_timestamps_match_python():
    rnd = random.Random(7)
    lines = []
    for i in range(3000):
        if rnd.random() < 0.5:
            y = rnd.choice([1970, 1999, 2000, 2020, 2022, 2024, 2100, 2400, rnd.randint(2, 9998)])
            m, d = rnd.randint(1, 12), rnd.randint(1, 31)
            frac = "" if rnd.random() < 0.5 else "." + str(rnd.randrange(10**6)).zfill(6)[:rnd.randint(1, 6)]
            off = "Z" if rnd.random() < 0.3 else f"{rnd.choice('+-')}{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}"
            sep = "T" if rnd.random() < 0.9 else " "
            value = f"{y:04d}-{m:02d}-{d:02d}{sep}{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:" \
                    f"{rnd.randint(0, 59):02d}{frac}{off}"
        else:
            kind = rnd.random()
            if kind < 0.3:
                value = rnd.randint(0, 32503679999)
            elif kind < 0.6:
                value = rnd.uniform(0, 4e9)
            else:  # exactly between two microseconds, and nearby
                value = rnd.randint(0, 4 * 10**15) / 1e6 + rnd.choice([5e-7, 4.99999e-7, 5.00001e-7, 0])
        lines.append(good(i, published_at=value))
    for i in range(300):  # long decimals: pyarrow and Python must round them to the same double
        digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(7, 25)))
        lines.append(f'{{"url": "u", "text": "t", "published_at": {rnd.randint(0, 4 * 10**9)}.{digits}}}')
    # string and number lines interleaved (pyarrow parses published_at as one kind per part: this
    # goes per-line), then in runs (per-line: the invalid dates, and the line where the kind changes)
    assert_same(feed(*lines))
    invalid = sum(1 for r in lines if isinstance(r, dict) and isinstance(r["published_at"], str)
                  and not _valid_iso(r["published_at"]))
    assert_same(feed(*sorted(lines, key=lambda r: isinstance(r, dict) and isinstance(r["published_at"], str))),
                first_line=1000, max_per_line=invalid + 1)


def _valid_iso(value: str) -> bool:
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def test_numbers_where_strings_belong_and_types_in_ignored_fields():
    lines = [good(1, update_id=12), good(2, headline=1.5), good(3, text=0), good(4, article_id=None, url=7),
             good(5, extra={"nested": [1, {"a": None}]}, tags=["x", 2, True, None], score=1e300, flag=False),
             good(6, extra="string now"), good(7, extra=5), good(8, extra=None),
             good(9, published_at="2022-02-20T08:00:00Z")]
    assert_same(feed(*lines))


def test_tokens_only_rapidjson_accepts_and_deep_nesting():
    tail = '"article_id": "a", "published_at": 1645344000, "text": "t"}'
    lines = ['{"x": NaN, ' + tail, '{"x": -NaN, ' + tail, '{"x": Inf, ' + tail, '{"x": -Inf, ' + tail,
             '{"x": Infinity, ' + tail, '{"x": -Infinity, ' + tail, '{"x": [Inf], ' + tail, '{"x": [1,-Inf], ' + tail,
             '{"x": Infinit, ' + tail, '{"x": Infx, ' + tail, '{"x": "Inf", ' + tail, '{"x": "-NaN", ' + tail,
             '{"x": {"y": Inf}, ' + tail, '{"x":Inf,' + tail, '{"x":\tInf\t,' + tail,
             '{"x": "Inflation; Inf. NaN -NaN", ' + tail, good(1, text="Infantry: Inf -NaN [[[{{{")]
    _, rejects = assert_same(feed(*lines))
    assert [r["line"] for r in rejects] == [2, 3, 4, 7, 8, 9, 10, 13, 14, 15]
    deep = '{"x": ' + "[" * 5000 + "]" * 5000 + ", " + tail
    _, rejects = assert_same(feed(good(1), deep))
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "too_deeply_nested")]
    assert_same(feed(good(1), '{"x": ' + "[" * 150 + "]" * 150 + ", " + tail))
    assert_same(feed(good(1), good(2, text="[" * 500)))  # brackets in a string: per-line, same result


def test_escapes_and_unicode():
    texts = ["Київ під обстрілом.", "东京 \U0001F600 emoji", "tab\there", "quote \" and \\ backslash",
             "nul \x00 inside", "\u2028line separator\u2029", "bidi \u202e text", "\ufeffBOM inside",
             "a\rb", "only\nnewlines\n\n", "\u00a0non-breaking first", "\x1fcontrol first"]
    lines = [good(i, text=t, headline=t, section=t) for i, t in enumerate(texts)]
    lines += [{**good(99), "text": "ascii escapes \u00e9"}]
    data = feed(*lines) + b'{"url": "u", "published_at": 1, "text": "\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t"}\n'
    assert_same(data, max_per_line=1)  # the last line: a number published_at among strings
    assert_same(feed(*[json.dumps(line, ensure_ascii=True) for line in lines]), max_per_line=0)
    odd = ['{"url": "u",\r"published_at": 1, "text": "raw CR between tokens"}',
           '{"url": "u", "published_at": 1, "text": "t", "x": "\\ud800 lone surrogate, ignored"}',
           '{"url": "u", "published_at": 1, "text": "t", "x": "\\udc00\\ud800"}',
           '{"url": "u", "published_at": 1, "text": "t", "x": 1e400, "y": -1E+999}',
           '{"url": "u", "published_at": 1, "text": "\\ud800\\u0041"}',
           '{"url": "u", "published_at": 1, "text": "t", "text\\u0000": 1}',
           '{"url": "u", "published_at": 1, "text": "raw \x7f and \u0085 controls"}',
           '{"url": "u", "published_at": 1, "text": "raw \x01 control"}']
    assert_same(feed(*odd))
    # a lone surrogate escape in a field other than text: a reject (it used to fail the run)
    surrogate = feed(good(1), '{"url": "u", "published_at": 1, "headline": "\\udfff", "text": "t"}')
    _, rejects = assert_same(surrogate)
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "invalid_field:headline")]


def test_a_huge_line():
    big = "Word " * 600_000  # 3 MB, more than pyarrow's default block
    batch, rejects = assert_same(feed(good(1), good(2, text=big), good(3), good(4, text=big[:-1] + "\xff")))
    assert batch.num_rows == 4 and rejects == []
    assert_same(feed(good(1), good(2, text=5, headline=big), good(3)))


def test_many_refused_lines_and_kind_changes():
    rnd = random.Random(3)
    bad = [good(0, text=5), "[1]", good(0, source=2), '{"text": "a",', good(0, published_at=True)]
    lines = []
    for i in range(3000):
        r = rnd.random()
        lines.append(rnd.choice(bad) if r < 0.01 else good(i, published_at=1645344000 + i) if r < 0.5 else good(i))
    assert_same(feed(*lines))  # published_at alternates between string and number
    lines = [good(i) if i % 3 else good(i, text=i) for i in range(3000)]  # more than pyarrow's refusal budget
    assert_same(feed(*lines), first_line=5)
    lines = [good(i) if i < 2000 else good(i, published_at=i) for i in range(4000)]
    assert_same(feed(*lines))
    lines = [good(i, x=i) if i % 500 == 7 else good(i) for i in range(2000)]  # an unknown field, now and then
    assert_same(feed(*lines))


def test_ranges_of_a_file_with_line_numbers(monkeypatch):
    rnd = random.Random(5)
    pool = [good(0, text=""), "{bad", "", "  ", good(0, published_at="2022-01-01"), b"\xff\xfe"]
    stamps = [1645344000, "2022-02-21T10:11:12.5Z"]
    lines = [rnd.choice(pool) if rnd.random() < 0.05 else good(i, published_at=stamps[i // 700 % 2])
             for i in range(4000)]
    data = feed(*lines)
    monkeypatch.setattr(planning, "RANGE_BYTES", 50_000)
    chunks = (data[i:i + 70_001] for i in range(0, len(data), 70_001))
    plans = split_into_ranges("f.jsonl", "jsonl", len(data), chunks)
    assert len(plans) > 10
    all_rejects, rows = [], 0
    for p in plans:
        batch, rejects = assert_same(data[p.start:len(data) if p.end < 0 else p.end], p.first_line, "f.jsonl")
        all_rejects += rejects
        rows += batch.num_rows
    _, whole = reference(data, 1, "f.jsonl")
    assert all_rejects == whole and rows + len(whole) == sum(1 for x in data.split(b"\n") if x.strip())


def test_parse_task_matches_the_oracle():
    data = feed(good(1), "[1]", good(2, published_at=5))
    batch, rejects = parse_task(ReadTask("f.jsonl", "auto", 0, -1, 1), data)
    want_rows, want_rejects = read_task_rows(ReadTask("f.jsonl", "auto", 0, -1, 1), data)
    assert batch.equals(pa.RecordBatch.from_pylist(want_rows, schema=UPDATE_SCHEMA)) and rejects == want_rejects
    text = b"date 2022-02-21 Headline\nBody line.\n"
    batch, rejects = parse_task(ReadTask("a.txt", "auto", 0, -1, 1), text)
    want_rows, want_rejects = read_task_rows(ReadTask("a.txt", "auto", 0, -1, 1), text)
    assert batch.to_pylist() == want_rows and rejects == want_rejects
    batch, rejects = parse_task(ReadTask("e.txt", "auto", 0, -1, 1), b"")
    assert batch.num_rows == 0 and [r["reason"] for r in rejects] == ["empty_file"]


def test_texts_of_one_character():
    """text is refused when str.strip() leaves nothing: each white-space character alone, and the
    characters near them that are not white space for Python."""
    chars = list(PY_WHITESPACE) + ["\u180e", "\u200b", "\u2060", "\ufeff", "\x00", "\x1b", "\xad", "\x7f",
                                        "\x84", "\x86", "\x9f", "\u1681", "\u200c", "\u2027", "\u202a", "\u3001", "a"]
    lines = [good(i, text=c) for i, c in enumerate(chars)] + [good(99, text=PY_WHITESPACE)]
    _, rejects = assert_same(feed(*lines), max_per_line=len(PY_WHITESPACE) + 1)
    assert len(rejects) == len(PY_WHITESPACE) + 1


def test_utf8_validation_matches_python():
    """Every lead byte 0x80-0xff followed by representative bytes, inside a text value."""
    follow = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xF5, 0xFF]
    lines = []
    for lead in range(0x80, 0x100):
        for b2 in follow:
            for b3 in (0x80, 0xBF, 0x41):
                seq = bytes([lead, b2, b3, 0x80])
                lines.append(b'{"url": "u", "published_at": 1, "text": "x' + seq.replace(b"\x00", b"") + b'y"}')
    assert_same(feed(*lines))


def test_the_read_dofn_yields_the_batch_and_the_rejects(tmp_path):
    import apache_beam as beam

    path = tmp_path / "f.jsonl"
    path.write_bytes(feed(good(1), "", "[1]", good(2, published_at=1645344000)))
    fn = fns._ParseTaskFn()
    fn.setup()
    out = list(fn.process(ReadTask(str(path), "auto", 0, -1, 1)))
    rejects = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    batches = [o for o in out if isinstance(o, pa.RecordBatch)]
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "not_an_object")]
    assert len(batches) == 1 and batches[0].equals(reference(path.read_bytes(), 1, str(path))[0])


def test_python_whitespace_list_is_complete():
    assert PY_WHITESPACE == "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


def test_random_mutations():
    """Small feeds of lines with random tokens inserted, bytes changed or cut: the same output, or
    the same exception (the reference raises for some inputs, see the tests above)."""
    rnd = random.Random(11)
    tokens = [b'"', b"\\", b"{", b"}", b"[", b"]", b":", b",", b" ", b"\r", b"\t", b"\n", b"NaN", b"-NaN", b"Inf",
              b"-Inf", b"Infinity", b"null", b"true", b"1e400", b"-0", b"0.5", b"\\u0000", b"\\ud800", b"\xff",
              b"\xc3\xa9", b"\xef\xbb\xbf", b'"text"', b'"published_at"', b'"url"', b'"article_id"', b'"source"',
              b"\x00", b"\x0c", b"Z", b"+00:00", b"2022-02-30", b"T", b".123", b"\xe2\x80\xa8", b"12345678901"]

    def line(i: int) -> bytes:
        row = {"article_id": rnd.choice([f"a{i}", "", None]), "url": rnd.choice(["https://www.x.org/a", "", None]),
               "source": rnd.choice(["s", "", None]), "headline": rnd.choice(["H", "", None]),
               "published_at": rnd.choice(["2022-02-20T08:00:00+02:00", "2022-02-20T08:00:00.123Z", 1645344000,
                                           1645344000.5, "2022-02-20 08:00:00-05:30"]),
               "text": rnd.choice(["Text.", " ", "Київ", "a\nb"])}
        row = {k: v for k, v in row.items() if rnd.random() < 0.9}
        if rnd.random() < 0.2:
            row["extra"] = rnd.choice([[1, 2], {"a": None}, "x", 1.5])
        b = json.dumps(row, ensure_ascii=rnd.random() < 0.5).encode()
        for _ in range(rnd.choice([0, 0, 1, 1, 2, 3])):
            pos, op = rnd.randrange(len(b) + 1), rnd.random()
            if op < 0.4:
                b = b[:pos] + rnd.choice(tokens) + b[pos:]
            elif op < 0.7:
                b = b[:pos] + b[pos + rnd.randint(1, 5):]
            else:
                b = b[:pos] + bytes([rnd.randrange(256)]) + b[pos + 1:]
        return b

    for _ in range(300):
        data = b"\n".join(line(i) for i in range(rnd.randint(1, 40))) + rnd.choice([b"\n", b"", b"\r\n"])
        first = rnd.randint(1, 1000)
        try:
            reference(data, first)
        except Exception as e:  # noqa: BLE001
            with pytest.raises(type(e)):
                read_jsonl_batch(URI, data, first, [])
            continue
        assert_same(data, first)


# --- a feed generated from the real data ------------------------------------------------------

def _generated_feed(tmp_path, n: int, seed: int) -> bytes:
    need_shared()
    spec = importlib.util.spec_from_file_location("newsevents_perf", REPO / "benchmarks" / "perf.py")
    perf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf)
    path = tmp_path / "feed.jsonl"
    perf.FeedGenerator(perf.load_pool(), n, seed).write(path)
    return path.read_bytes()


def test_generated_feed_in_ranges(tmp_path, monkeypatch):
    data = _generated_feed(tmp_path, 4000, 6)
    monkeypatch.setattr(planning, "RANGE_BYTES", 400_000)
    chunks = (data[i:i + 1 << 20] for i in range(0, len(data), 1 << 20))
    plans = split_into_ranges("feed.jsonl", "jsonl", len(data), chunks)
    assert len(plans) > 3
    rows = 0
    for p in plans:
        batch, rejects = assert_same(data[p.start:len(data) if p.end < 0 else p.end], p.first_line, "feed.jsonl",
                                     max_per_line=0)
        assert rejects == []
        rows += batch.num_rows
    assert rows == 4000


def test_generated_feed_damaged(tmp_path):
    """The generated lines, with every 37th one damaged in one of many ways, some re-encoded."""
    lines = _generated_feed(tmp_path, 3000, 11).split(b"\n")
    damage = [
        lambda b: b[:-7], lambda b: b"", lambda b: b + b" ", lambda b: b.replace(b'"text"', b'"txt"'),
        lambda b: b.replace(b'"published_at": "', b'"published_at": "x'),
        lambda b: b.replace(b'"article_id"', b'"id"'), lambda b: b.replace(b"e", b"\xe9", 1),
        lambda b: b[:-1] + b', "extra": [1, {"a": Inf}]}', lambda b: b[:-1] + b', "extra": {"k": [null]}}',
        lambda b: b + b"\r", lambda b: b"[" + b + b"]", lambda b: b + b + b,
        lambda b: json.dumps({**json.loads(b), "published_at": 1646000000.25}).encode(),
        lambda b: json.dumps({**json.loads(b), "source": None}).encode(),
        lambda b: json.dumps({**json.loads(b), "text": " "}).encode(),
    ]
    out = [damage[(i // 37) % len(damage)](line) if i % 37 == 5 and line else line for i, line in enumerate(lines)]
    batch, rejects = assert_same(b"\n".join(out), first_line=100)
    assert rejects and batch.num_rows > 2800


def test_reference_values_spot_check():
    """The fast path's values, written out once (the reference is checked by test_functions)."""
    data = feed({"url": "https://www.x.org/a", "text": "T.", "published_at": 1645344000.0000005},
                {"article_id": "b", "text": "U.", "published_at": "2022-02-20T08:00:00.25-01:30", "headline": None})
    batch, rejects = assert_same(data, first_line=3)
    assert rejects == []
    rows = batch.to_pylist()
    assert [(r["line"], r["source"], r["article_id"], r["headline"], r["fmt"], r["position"]) for r in rows] == [
        (3, "x.org", "https://www.x.org/a", "", "jsonl", 0), (4, "unknown", "b", "", "jsonl", 0)]
    assert rows[0]["published_at"] == dt.datetime(2022, 2, 20, 8, 0, 0, 0, tzinfo=UTC)
    assert rows[1]["published_at"] == dt.datetime(2022, 2, 20, 9, 30, 0, 250000, tzinfo=UTC)
