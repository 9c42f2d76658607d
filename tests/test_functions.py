"""Plain-function tests: parsing, classification, normalization (no pipeline)."""
from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from schemas.models import BLOCK_SCHEMA, EVENT_SCHEMA, UTC, UpdateIn
from transforms.dedup import dedup_day, dedup_snapshots
from transforms.normalize import canonical_text, fingerprint, normalize_batch, normalize_text
from transforms.read import RANGE_BYTES, ReadTask, read_liveblog, read_text_article, sniff, split_into_ranges
from transforms.windowing import day_keys, day_start, resolve_event_times

from .conftest import SEED, need_shared
from .oracles.read import read_jsonl, read_task_rows
from .oracles.split import classify, split_update


# --- format detection and parsing -------------------------------------------------------

@pytest.mark.parametrize(
    "head, fmt",
    [
        (b"date 2022-02-21 Headline\nBody.", "text"),
        (b"  \n  date 2022-02-21 Headline", "text"),
        (b'{"text": "x", "published_at": 1}\n', "jsonl"),
        (b'{"blog_id": 1, "documents": []}', "liveblog"),
        (b'{\n  "blog_id": 1,\n  "documents": []\n}', "liveblog"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
        (b"PK\x03\x04zip", "binary"),
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (b"Just some text\nwithout a header", "unknown"),
        (b'[{"title": "x", "timestamp": 1}]', "headlines-json"),
        (b"src,desc,title,Date,Site\nhttps://a,,T,02/28/2022,a.org\n", "headlines-csv"),
        (b"PK\x03\x04\x14\x00\x00\x00RUWA.csv", "headlines-csv"),
    ],
)
def test_sniff(head, fmt):
    assert sniff(head) == fmt


def test_text_article_header_and_body_lines():
    rejects = []
    data = "  date 2022-02-21 Big News Today\n\nFirst paragraph.\nSecond Heading\n".encode()
    rows = read_text_article("/x/site/a.txt", data, rejects)
    assert rejects == []
    (row,) = rows
    assert row["headline"] == "Big News Today"
    assert row["published_at"] == dt.datetime(2022, 2, 21, tzinfo=UTC)
    assert row["line"] == 1 and row["source"] == "site"
    blocks = split_update(row)
    assert [(b["line"], b["kind"], b["text"]) for b in blocks] == [
        (1, "headline", "Big News Today"),
        (3, "paragraph", "First paragraph."),
        (4, "heading", "Second Heading"),
    ]


def test_text_article_without_header_rejects_every_line():
    rejects = []
    rows = read_text_article("f.txt", b"Hello there.\nSecond line\n", rejects)
    assert rows == []
    assert [(r["line"], r["stage"], r["reason"]) for r in rejects] == [
        (1, "parse", "missing_header"), (2, "parse", "missing_header")]


def test_text_article_invalid_header_date():
    rejects = []
    assert read_text_article("f.txt", b"date 2022-02-30 Headline\nBody.\n", rejects) == []
    assert {r["reason"] for r in rejects} == {"invalid_header_date"}


def test_text_article_invalid_utf8_line_is_rejected_rest_kept():
    rejects = []
    data = b"date 2022-02-21 Headline\nGood line.\nBad \xff\xfe line.\nAnother good line.\n"
    (row,) = read_text_article("f.txt", data, rejects)
    assert [(r["line"], r["reason"], r["stage"]) for r in rejects] == [(3, "invalid_utf8", "read")]
    assert "Bad" in rejects[0]["raw"]
    blocks = split_update(row)
    assert [(b["line"], b["text"]) for b in blocks[1:]] == [(2, "Good line."), (4, "Another good line.")]


def test_jsonl_good_and_bad_lines():
    lines = [
        json.dumps({"article_id": "A-1", "url": "https://www.example.org/a", "text": "One.\nTwo.",
                    "published_at": "2022-02-20T08:00:00+02:00"}),
        "{not json",
        "[1, 2]",
        json.dumps({"url": "https://x.org/b", "text": "T.", "published_at": 1645344000}),
        json.dumps({"article_id": "A", "text": "T.", "published_at": "2022-02-20T08:00:00"}),
        json.dumps({"article_id": "A", "published_at": 1645344000}),
        json.dumps({"text": "T.", "published_at": 1645344000}),
        json.dumps({"article_id": "A", "text": "   ", "published_at": 1645344000}),
        "",
    ]
    rejects = []
    rows = read_jsonl("feed.jsonl", "\n".join(lines).encode() + b"\n\xff\n", 1, rejects)
    assert [r["line"] for r in rows] == [1, 4]
    assert rows[0]["article_id"] == "A-1"  # kept verbatim
    assert rows[0]["source"] == "example.org"
    assert rows[0]["published_at"] == dt.datetime(2022, 2, 20, 6, 0, tzinfo=UTC)
    assert rows[1]["article_id"] == "https://x.org/b" and rows[1]["source"] == "x.org"
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (2, "invalid_json"),
        (3, "not_an_object"),
        (5, "invalid_field:published_at"),
        (6, "missing_field:text"),
        (7, "missing_field:article_id_or_url"),
        (8, "invalid_field:text"),
        (10, "invalid_utf8"),
    ]


def test_update_model_rejects_naive_and_accepts_epoch():
    u = UpdateIn.model_validate({"url": "u", "text": "t", "published_at": 0})
    assert u.published_at == dt.datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(Exception, match="no UTC offset"):
        UpdateIn.model_validate({"url": "u", "text": "t", "published_at": "2022-01-01T00:00:00"})


def test_liveblog_posts():
    blog = {"blog_id": "b1", "title": "Live", "url": "https://www.theguardian.com/live/x",
            "documents": [
                {"block_id": "p2", "title": "Later", "time": [2014, 8, 28, 21, 42], "text": ["second post ."]},
                {"block_id": "p1", "title": "", "time": [2014, 8, 28, 9, 0], "text": ["a .", "b ."]},
                {"block_id": "p0", "time": "yesterday", "text": ["x"]},
            ]}
    rejects = []
    rows = read_liveblog("lb.json", json.dumps(blog).encode(), rejects)
    assert [(r["update_id"], r["section"], r["line"], r["position"]) for r in rows] == [
        ("p2", "Later", 1, 0), ("p1", None, 2, 1)]
    assert rows[0]["source"] == "theguardian.com"
    assert rows[0]["published_at"] == dt.datetime(2014, 8, 28, 21, 42, tzinfo=UTC)
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "invalid_field:time")]
    blocks = [b for r in rows for b in split_update(r)]
    assert [(b["position"], b["text"]) for b in blocks] == [(0, "second post ."), (1, "a ."), (2, "b .")]


def test_headlines_csv_zipped_with_bad_rows():
    import io
    import zipfile

    csv_text = ("src,desc,title,Date,Site\n"
                "https://bbc.co.uk/news/1,Shelling continued overnight.,Kyiv Under Fire,02/28/2022,bbc.co.uk\n"
                "https://bbc.co.uk/news/2,,,02/28/2022,bbc.co.uk\n"
                "https://bbc.co.uk/news/3,,Talks Resume,2022-02-28,bbc.co.uk\n"
                "https://x.org/4,,\"Quoted, title\",03/01/2022,\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("data.csv", csv_text)
        z.writestr("__MACOSX/._data.csv", b"\x00\x05junk")
    rows, rejects = read_task_rows(ReadTask("r.zip", "auto", 0, -1, 1), buf.getvalue())
    assert [(r["line"], r["article_id"], r["source"], r["headline"], r["published_at"].day) for r in rows] == [
        (2, "https://bbc.co.uk/news/1", "bbc.co.uk", "Kyiv Under Fire", 28),
        (5, "https://x.org/4", "x.org", "Quoted, title", 1)]
    assert [(r["source_uri"], r["line"], r["reason"]) for r in rejects] == [
        ("r.zip!data.csv", 3, "missing_field:title"), ("r.zip!data.csv", 4, "invalid_field:date")]
    blocks = split_update(rows[0])
    assert [(b["kind"], b["position"], b["text"]) for b in blocks] == [
        ("headline", 0, "Kyiv Under Fire"), ("paragraph", 1, "Shelling continued overnight.")]


def test_headlines_json_items():
    items = [{"title": "Texas grid warns of blackouts", "domain": "reuters.com", "link": "https://r/1",
              "timestamp": 1657514452}, {"title": "", "timestamp": 1}, {"title": "No time"}, "x"]
    rows, rejects = read_task_rows(ReadTask("h.json", "auto", 0, -1, 1), json.dumps(items).encode())
    assert [(r["line"], r["article_id"], r["source"]) for r in rows] == [(1, "https://r/1", "reuters.com")]
    assert rows[0]["published_at"] == dt.datetime(2022, 7, 11, 4, 40, 52, tzinfo=UTC)
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (2, "missing_field:title"), (3, "missing_field:timestamp"), (4, "not_an_object")]
    assert [(b["kind"], b["text"]) for b in split_update(rows[0])] == [("headline", "Texas grid warns of blackouts")]


def test_read_task_binary_and_empty():
    rows, rejects = read_task_rows(ReadTask("img.png", "auto", 0, -1, 1), b"\x89PNG\x00\x00\x00")
    assert rows == [] and [(r["stage"], r["reason"], r["line"]) for r in rejects] == [("read", "binary_file", None)]
    rows, rejects = read_task_rows(ReadTask("e.txt", "auto", 0, -1, 1), b"")
    assert rows == [] and [r["reason"] for r in rejects] == ["empty_file"]


def test_ranges_are_line_aligned_and_numbered():
    line = b'{"article_id": "a", "text": "x", "published_at": 1}\n'
    n = (2 * RANGE_BYTES) // len(line) + 10
    data = line * n
    chunks = (data[i:i + 1_000_003] for i in range(0, len(data), 1_000_003))
    plans = split_into_ranges("f.jsonl", "jsonl", len(data), chunks)
    assert len(plans) == 3
    assert plans[0].start == 0 and plans[-1].end == -1
    for a, b in zip(plans, plans[1:]):
        assert a.end == b.start and data[a.end - 1:a.end] == b"\n"
        assert b.first_line == a.first_line + data[a.start:a.end].count(b"\n")
    total = 0
    for p in plans:
        end = len(data) if p.end < 0 else p.end
        rejects = []
        rows = read_jsonl("f", data[p.start:end], p.first_line, rejects)
        assert rejects == []
        assert rows[0]["line"] == p.first_line
        total += len(rows)
    assert total == n


# --- classification ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "line, kind",
    [
        ("Ukraine Accuses Separatists of violating Ceasefire", "heading"),
        ("Satellite Images Show Russian Troops 15 Km Away From Border", "heading"),
        ("US Says Russia of Compiling 'Kill List'", "heading"),
        ("Background", "heading"),
        ("Both NATO and Ukraine have rejected this demand", "bullet"),
        ("Images captured by Maxar show Russian troops being deployed 15 kilometres away from the border", "bullet"),
        ("Putin has blamed NATO for \"pumping modern weapons and ammunition\" into Ukraine", "bullet"),
        ("- a marked list item.", "bullet"),
        ("Putin has two other key demands from NATO:", "paragraph"),
        ("No casualties, however, were reported.", "paragraph"),
        ("\"We have credible information,\" said the letter.", "paragraph"),
        ("He asked: \"Why now?\"", "paragraph"),
    ],
)
def test_classify(line, kind):
    assert classify(line) == kind


def test_seed_article_kinds_and_sections():
    need_shared(SEED)
    rejects = []
    (row,) = read_text_article(str(SEED), SEED.read_bytes(), rejects)
    blocks = split_update(row)
    assert rejects == [] and len(blocks) == 30
    kinds = [b["kind"] for b in blocks]
    assert kinds.count("headline") == 1 and kinds.count("heading") == 4
    assert kinds.count("bullet") == 6 and kinds.count("paragraph") == 19
    assert [b["text"] for b in blocks if b["kind"] == "heading"] == [
        "Ukraine Accuses Separatists of violating Ceasefire", "US Says Russia of Compiling 'Kill List'",
        "Satellite Images Show Russian Troops 15 Km Away From Border", "Background"]
    assert blocks[-1]["section"] == "Background" and blocks[-1]["kind"] == "bullet"
    assert blocks[1]["section"] is None
    assert [b["position"] for b in blocks] == list(range(30))


# --- normalization ----------------------------------------------------------------------

@pytest.mark.parametrize(
    "raw, expected",
    [
        ("“Kill list”  claims — denied", '"Kill list" claims - denied'),
        ("Russia’s\u00a0troops\t moved", "Russia's troops moved"),
        ("ｆｕｌｌ width", "full width"),
        ("zero\u200bwidth", "zerowidth"),
        ("  padded  ", "padded"),
        ("ﬁnal ligature", "final ligature"),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_fingerprint_is_stable_across_retyped_copies():
    a = "Russia has warned against the move, while the Ukrainian Constitution seeks NATO membership."
    b = "Russia has warned against the move,  while the Ukrainian constitution seeks NATO membership ."
    c = "Russia has warned against the move — while the Ukrainian Constitution seeks NATO membership"
    assert fingerprint(a) == fingerprint(b) == fingerprint(c)
    assert fingerprint(a) != fingerprint(a.replace("Russia", "Belarus"))
    assert canonical_text("It’s “Done”!") == "it s done"
    assert len(fingerprint("x")) == 16 and int(fingerprint("x"), 16) >= 0  # hex of xxh3-64


def test_normalize_batch_rejects_empty_text():
    rows = [dict(source_uri="u", line=i, source="s", article_id="a", update_id="u1", headline="h", section=None,
                 kind="paragraph", position=i, text=t, published_at=dt.datetime(2022, 1, 1, tzinfo=UTC))
            for i, t in enumerate(["Fine text.", "\u200b\u200b", "--"])]
    table, rejects = normalize_batch(pa.RecordBatch.from_pylist(rows, schema=BLOCK_SCHEMA))
    assert table.column("text").to_pylist() == ["Fine text."]
    assert [(r["line"], r["stage"], r["reason"]) for r in rejects] == [(1, "normalize", "empty_text"),
                                                                       (2, "normalize", "empty_text")]


# --- dedup functions --------------------------------------------------------------------

def _blocks(specs):
    """specs: (article_id, text, hour, source_uri)"""
    rows = [dict(source_uri=uri, line=i + 1, source=art.split("-")[0], article_id=art, update_id=f"{art}@{h}",
                 headline="h", section=None, kind="paragraph", position=i, text=t,
                 published_at=dt.datetime(2022, 2, 20, h, tzinfo=UTC))
            for i, (art, t, h, uri) in enumerate(specs)]
    table, _ = normalize_batch(pa.RecordBatch.from_pylist(rows, schema=BLOCK_SCHEMA))
    return table


def test_dedup_snapshots_keeps_earliest_and_links_repeats():
    t = _blocks([("A", "Same text.", 10, "s2"), ("A", "Same  text.", 8, "s1"), ("A", "Other.", 9, "s1"),
                 ("B", "Same text.", 12, "s3")])
    out = dedup_snapshots(t)
    got = sorted(zip(out.column("article_id").to_pylist(), out.column("source_uri").to_pylist(),
                     out.column("is_dup").to_pylist()))
    assert got == [("A", "s1", False), ("A", "s1", False), ("A", "s2", True), ("B", "s3", False)]
    ids = dict(zip(zip(out.column("source_uri").to_pylist(), out.column("text").to_pylist()),
                   out.column("event_id").to_pylist()))
    assert ids[("s1", "Same text.")] == ids[("s2", "Same text.")]
    assert ids[("s1", "Same text.")] != ids[("s3", "Same text.")]
    # stable ids: the same content in the same article gives the same id in every run
    alone = dedup_snapshots(t.slice(1, 1))
    assert alone.column("event_id")[0].as_py() == ids[("s1", "Same text.")]


def test_dedup_day_cross_article_exact_and_lineage():
    t = resolve_event_times(dedup_snapshots(_blocks([
        ("A", "Same text.", 10, "s2"), ("A", "Same text.", 8, "s1"), ("B", "same text", 9, "s3"),
        ("C", "Unique.", 9, "s4")])))
    out = dedup_day(dt.date(2022, 2, 20), t)
    ev = out["events"].to_pylist()
    assert sorted((e["article_id"], e["mention_count"]) for e in ev) == [("A", 3), ("C", 1)]
    keep = next(e for e in ev if e["article_id"] == "A")
    assert keep["published_at"].hour == 8 and keep["cluster_id"] == keep["event_id"]
    dups = out["duplicates"].to_pylist()
    assert sorted((d["article_id"], d["method"], d["similarity"]) for d in dups) == [
        ("A", "exact", 1.0), ("B", "exact", 1.0)]
    assert {d["event_id"] for d in dups} == {keep["event_id"]}
    (q,) = out["quality"].to_pylist()
    assert q == {"blocks_read": 4, "rejected": 0, "exact_duplicates": 2, "near_duplicates": 0, "redelivered": 0,
                 "late": 0, "events_written": 2}
    assert out["events"].schema == EVENT_SCHEMA


def test_dedup_day_near_hook_repoints_lineage():
    t = resolve_event_times(dedup_snapshots(_blocks([
        ("A", "Storm closes the port.", 8, "s1"), ("A", "Storm closes the port.", 11, "s2"),
        ("B", "Storm closes the port today.", 9, "s3")])))

    def near(texts):  # B's text merges into A's: index 0 is A (earliest)
        assert texts.to_pylist() == ["Storm closes the port.", "Storm closes the port today."]
        return [0, 0], [1.0, 0.8]

    out = dedup_day(dt.date(2022, 2, 20), t, near)
    (ev,) = out["events"].to_pylist()
    assert ev["article_id"] == "A" and ev["mention_count"] == 3
    assert sorted((d["article_id"], d["method"], d["similarity"]) for d in out["duplicates"].to_pylist()) == [
        ("A", "exact", 1.0), ("B", "near", 0.8)]


def test_day_keys_are_utc_days():
    t = resolve_event_times(dedup_snapshots(_blocks([("A", "Late night.", 23, "s"), ("A", "Early.", 0, "s")])))
    assert day_keys(t).tolist() == ["2022-02-20", "2022-02-20"]
    assert day_start("2022-02-20") == 1645315200


def test_arrow_schema_from_model():
    assert EVENT_SCHEMA.field("position").type == pa.int32()
    assert EVENT_SCHEMA.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert EVENT_SCHEMA.field("section").nullable and not EVENT_SCHEMA.field("text").nullable
    assert "event_date" not in EVENT_SCHEMA.names


def test_inputs_that_used_to_crash_the_read_become_rejects():
    """Found while building the fast reader: each of these raised out of the read step."""
    from transforms.read import ReadTask, parse_task, read_jsonl_batch

    ok = {"article_id": "a", "text": "fine", "published_at": "2024-03-05T00:00:00Z"}
    lines = [
        json.dumps(ok),
        json.dumps({**ok, "published_at": "0001-01-01T00:00:00+01:00"}),      # OverflowError in astimezone
        json.dumps({**ok, "published_at": "9999-12-31T23:59:59-01:00"}),
        json.dumps({"url": "http://[::1", "text": "bad url", "published_at": "2024-03-05T00:00:00Z"}),
        '{"article_id": "b", "text": "deep", "published_at": "2024-03-05T00:00:00Z", "x": '
        + "[" * 100_000 + "]" * 100_000 + "}",                                    # RecursionError
        '{"article_id": "c\\ud800", "text": "lone surrogate", "published_at": "2024-03-05T00:00:00Z"}',
        '{"article_id": "d", "headline": "\\udfff", "text": "t", "published_at": "2024-03-05T00:00:00Z"}',
        json.dumps({**ok, "article_id": "e"}),
    ]
    data = ("\n".join(lines) + "\n").encode()
    rejects: list = []
    rows = read_jsonl("f.jsonl", data, 1, rejects)
    assert [r["article_id"] for r in rows] == ["a", "http://[::1", "e"]
    assert rows[1]["source"] == "unknown"
    assert sorted((r["line"], r["reason"]) for r in rejects) == [
        (2, "invalid_field:published_at"), (3, "invalid_field:published_at"), (5, "too_deeply_nested"),
        (6, "invalid_field:article_id"), (7, "invalid_field:headline")]
    fast_rejects: list = []
    batch = read_jsonl_batch("f.jsonl", data, 1, fast_rejects)
    assert batch.to_pylist() == pa.RecordBatch.from_pylist(rows, schema=batch.schema).to_pylist()
    assert sorted(fast_rejects, key=lambda r: r["line"]) == sorted(rejects, key=lambda r: r["line"])
    # a headline JSON array with a lone surrogate in one title: that item is a reject
    arr = b'[{"title": "ok", "timestamp": 1646200000, "link": "https://a.example/1"},' \
          b' {"title": "bad \\ud800", "timestamp": 1646200000, "link": "https://a.example/2"}]'
    batch, rejects = parse_task(ReadTask("h.json", "headlines-json", 0, -1, 1), arr)
    assert batch.column("article_id").to_pylist() == ["https://a.example/1"]
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "invalid_unicode")]


def test_stable_hashes_are_stable_hash_of_every_value():
    from transforms.common import stable_hash, stable_hashes

    values = ["", "a", "é", "Grüße 🎉", "a\x1fb", "x" * 1000, "ﬁ\u200b\u0301", "\x00zero"]
    arr = pa.array(values, pa.string())
    for chars in (8, 16, 32):
        assert stable_hashes(arr, chars).to_pylist() == [stable_hash(v, chars) for v in values]
    sliced = arr.slice(2, 4)  # an array with an offset reads its own values
    assert stable_hashes(sliced, 32).to_pylist() == [stable_hash(v, 32) for v in values[2:6]]
    assert stable_hashes(pa.array([], pa.string()), 32).to_pylist() == []
    with pytest.raises(ValueError, match="null"):
        stable_hashes(pa.array(["a", None]))
