"""The spread day dedup (transforms/dedup_spread.py) gives the rows of the whole-day step
(`transforms.dedup.dedup_day`, the oracle): kept row, duplicates (method, similarity), mention
counts, quality.

Layers: the plain functions chained by hand, shard by shard, as the pipeline chains them (on
the labelled near-duplicate set of BENCHMARKS.md and on generated mixes); the Beam composite
behind `WindowByDay(shards=...)` (TestPipeline, with spill files); and whole runs (one-shot
and incremental) read back against runs with the whole-day step."""
from __future__ import annotations

import datetime as dt
import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindows

from schemas.models import BLOCK_SCHEMA, UTC
from transforms.common import fingerprint_shards
from transforms.dedup import DedupDay, NearDetector, dedup_day, dedup_snapshots
from transforms.dedup_spread import (ROWS_PER_SHARD, DedupDaySpread, coalesce, band_rows, band_shards, bucket_edges, build_rows,
                                     cluster_assignments, exact_groups, member_scores, rep_requests, rep_sets,
                                     sum_quality)
from transforms import dedup_spread
from transforms.normalize import normalize_batch
from transforms.spill import SpillRef
from transforms.windowing import WindowByDay, resolve_event_times

from .conftest import SHARED_DATA, query, run_pipeline
from .test_neardup import _load_eval

TestPipeline.__test__ = False
NEAR = NearDetector(keyed=True)  # the whole-day oracle, with the rule a spread day follows
DAY = dt.date(2022, 2, 20)


def day_rows(specs) -> pa.Table:
    """specs: (article_id, text, published datetime, source_uri, line) -> rows as they reach
    the day dedup (snapshot dedup done, event time = publication)."""
    rows = [dict(source_uri=uri, line=line, source=art.split("-")[0], article_id=art, update_id=f"{art}@{pub:%H%M%S}",
                 headline="h", section=None, kind="paragraph", position=line % 7, text=text, published_at=pub)
            for art, text, pub, uri, line in specs]
    table, _ = normalize_batch(pa.RecordBatch.from_pylist(rows, schema=BLOCK_SCHEMA))
    return resolve_event_times(dedup_snapshots(table))


def spread(table: pa.Table, near: NearDetector | None, shards: int) -> dict[str, pa.Table]:
    """The pipeline's chain of plain functions for one day, group by group."""
    fp = fingerprint_shards(table.column("fingerprint"), shards)
    groups = {int(k): table.filter(pa.array(fp == k)) for k in np.unique(fp)}
    assign = {k: None for k in groups}
    sets = {k: None for k in groups}
    reps: dict[int, list] = {k: [] for k in groups}
    if near is not None:
        buckets: dict[int, list] = {}
        for k, t in groups.items():
            b, sets[k] = band_rows(exact_groups(t), k, near)
            bs = band_shards(b, shards)
            for s in np.unique(bs):
                buckets.setdefault(int(s), []).append(b.filter(pa.array(bs == s)))
        edges = [t for e in (bucket_edges(ts, near) for ts in buckets.values()) if e is not None for t in e]
        if edges:
            a = cluster_assignments(edges, {k: len(exact_groups(t).survivors) for k, t in groups.items()})
            assign = {k: a.filter(pc.equal(a.column("shard"), k)).select(["uid", "rep", "extra"]) for k in groups}
            want = rep_requests(a)
            for k in groups:
                got = rep_sets([sets[k]], [want.filter(pc.equal(want.column("rep_shard"), k))])
                if got is not None:
                    for s in np.unique(got.column("to_shard").to_numpy()):
                        reps[int(s)].append(got.filter(pc.equal(got.column("to_shard"), s)).select(["rep", "rep_sid", "set"]))
    outs = [build_rows(exact_groups(t), member_scores(assign[k], sets[k], pa.concat_tables(reps[k]) if reps[k] else None))
            for k, t in groups.items()]
    return {"events": pa.concat_tables([o["events"] for o in outs]),
            "duplicates": pa.concat_tables([o["duplicates"] for o in outs]),
            "quality": sum_quality([o["quality"] for o in outs])}


def rows_of(t: pa.Table) -> list[tuple]:
    return sorted(tuple(r.values()) for r in t.to_pylist())


def assert_same(got: dict, want: dict) -> None:
    assert rows_of(got["events"]) == rows_of(want["events"])
    assert rows_of(got["duplicates"]) == rows_of(want["duplicates"])
    assert got["quality"].to_pylist() == want["quality"].to_pylist()


def mixed(seed: int, n: int = 400) -> pa.Table:
    """Generated day: distinct stories, exact copies in other articles, near copies (edited,
    cut, credited), chains (A ~ B ~ C), re-scrapes of kept rows and of copies, redeliveries,
    ties in time, and big buckets (many near-identical texts: the neighbour rule)."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(3000)]
    base = [" ".join(rng.choice(words, size=rng.integers(3, 30))) + "." for _ in range(n)]
    t0 = dt.datetime(2022, 2, 20, 0, 0, tzinfo=UTC)
    specs, line = [], 0

    def add(art, text, minute, uri=None, at=None):
        nonlocal line
        line += 1
        specs.append((art, text, t0 + dt.timedelta(minutes=int(minute)), uri or f"{art}.jsonl", at or line))

    for i, text in enumerate(base):
        add(f"src{i % 5}-a{i}", text, rng.integers(0, 1400))
        kind = rng.integers(0, 8)
        w = text[:-1].split(" ")
        if kind == 1:    # exact copy elsewhere, sometimes earlier
            add(f"src{(i + 1) % 5}-b{i}", text.upper(), rng.integers(0, 1400))
        elif kind == 2 and len(w) > 8:   # edited copy
            w2 = list(w)
            w2[rng.integers(0, len(w2))] = "changed"
            add(f"src{(i + 2) % 5}-c{i}", " ".join(w2) + ".", rng.integers(0, 1400))
        elif kind == 3 and len(w) > 10:  # abridged + credit, and a chain through it
            cut = " ".join(w[: int(len(w) * 0.8)])
            add(f"src3-d{i}", cut + " (Reuters)", rng.integers(0, 1400))
            add(f"src4-e{i}", " ".join(w[: int(len(w) * 0.65)]) + " said officials", rng.integers(0, 1400))
        elif kind == 4:  # re-scrape of the same article later (a repeat), and an exact copy of it
            add(f"src{i % 5}-a{i}", text, 1410, uri=f"src{i % 5}-a{i}-later.jsonl")
            add(f"src1-f{i}", text, 5)
        elif kind == 5:  # the same update delivered again from another file: a redelivery
            specs.append(specs[-1][:3] + (f"copy-{specs[-1][3]}", specs[-1][4]))
    # a big bucket: 90 one-word variants of one long text, ties in time
    long = [f"v{j}" for j in range(40)]
    for k in range(90):
        w2 = list(long)
        w2[k % 40] = f"x{k}"
        add(f"src{k % 5}-big{k}", " ".join(w2), 600 + k % 3)
    return day_rows(specs)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("shards", [1, 4, 7])
def test_plain_chain_equals_whole_day_on_mixed_days(seed, shards):
    t = mixed(seed)
    assert_same(spread(t, NEAR, shards), dedup_day(DAY, t, NEAR))
    assert_same(spread(t, None, shards), dedup_day(DAY, t, None))


@pytest.mark.parametrize("seed", [1, 2])
def test_cluster_group_folding_its_edges_in_small_batches_gives_the_same_rows(seed, monkeypatch):
    """The cluster group folds star edges into its labels every FOLD_EDGES edges; folding after
    every bucket group's stars (many folds, components joined across folds) gives the rows
    of one fold and of the whole-day step."""
    t = mixed(seed)
    want = dedup_day(DAY, t, NEAR)
    folds = []
    real = dedup_spread._fold

    def counted(label, a, b):
        folds.append(sum(len(x) for x in a))
        return real(label, a, b)

    monkeypatch.setattr(dedup_spread, "_fold", counted)
    assert_same(spread(t, NEAR, 7), want)
    assert len(folds) == 1  # the default: one fold for a small day
    folds.clear()
    monkeypatch.setattr(dedup_spread, "FOLD_EDGES", 1)
    assert_same(spread(t, NEAR, 7), want)
    assert len([f for f in folds if f]) > 3  # folded piece by piece, edges in several folds


def test_cluster_group_rejects_a_star_whose_survivor_its_shard_did_not_count():
    t = mixed(1)
    fp = fingerprint_shards(t.column("fingerprint"), 2)
    groups = {int(k): t.filter(pa.array(fp == k)) for k in np.unique(fp)}
    pieces = []
    for k, g in groups.items():
        b, _ = band_rows(exact_groups(g), k, NEAR)
        out = bucket_edges([b], NEAR)
        if out is not None:
            pieces.extend(out)
    counts = {k: len(exact_groups(g).survivors) for k, g in groups.items()}
    assert cluster_assignments(pieces, counts).num_rows
    uid = np.concatenate([p.column("uid").to_numpy() for p in pieces if "root" in p.column_names])
    k = int(uid[0] >> 32)
    short = {**counts, k: int((uid[uid >> 32 == k] & 0xFFFFFFFF).max())}  # its last clustered survivor cut off
    with pytest.raises(ValueError, match="did not count"):
        cluster_assignments(pieces, short)


def test_a_bucket_group_reports_its_phases_only_when_asked(monkeypatch, capsys):
    """`dedup_spread.STATS_ENV` (benchmarks/oneday.py --bucket-stats): one line per bucket
    group, whose counts are the group's own."""
    t = mixed(2)
    g = exact_groups(t)
    bands, _ = band_rows(g, 0, NEAR)
    element = ("2024-03-04/b0000", [bands])
    monkeypatch.delenv(dedup_spread.STATS_ENV, raising=False)
    quiet = list(dedup_spread._edges(element, NEAR, None))
    assert "bucket-group" not in capsys.readouterr().err
    monkeypatch.setenv(dedup_spread.STATS_ENV, "1")
    out = list(dedup_spread._edges(element, NEAR, None))
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("bucket-group ")]
    assert len(lines) == 1
    stats = json.loads(lines[0].split(" ", 1)[1])
    stars = out[0][1]
    assert [o[1].num_rows for o in out] == [o[1].num_rows for o in quiet]  # the same output
    assert stats["stars"] == stars.num_rows > 0
    assert stats["band_rows"] == bands.num_rows and stats["pieces"] == 1 and stats["dictionaries"] == 1
    assert stats["survivors_in_dictionaries"] == len(g.survivors)
    assert stats["stars"] <= stats["decoded"] <= len(g.survivors)
    roots = len(np.unique(stars.column("root").to_numpy()))
    assert stats["edges"] >= stars.num_rows - roots  # a tree per local cluster at least
    for phase in ("open", "bands", "buckets", "nodes", "rank", "rounds", "stars", "write"):
        assert stats[f"{phase}_s"] >= 0 and stats[f"{phase}_faults"] >= 0


def labelled_days(size: int):
    """The labelled near-duplicate set of BENCHMARKS.md as pipeline rows: one day table per
    labelled day, keep priority = the set's random order (publication second), some items
    re-scraped (repeats) and copied verbatim into another article (exact duplicates)."""
    if not SHARED_DATA.exists():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    lab = _load_eval().build(size, seed=7, data=SHARED_DATA)
    rng = np.random.default_rng(3)
    for d, order in lab.days.items():
        t0 = dt.datetime(2022, 2, 20, tzinfo=UTC)
        specs = []
        for rank, k in enumerate(order):
            pub = t0 + dt.timedelta(seconds=int(rank) * 3)
            text = lab.items[k].text
            specs.append((f"s{k % 4}-item{k}", text, pub, f"f{k}.jsonl", 1))
            r = rng.random()
            if r < 0.05:
                specs.append((f"s{k % 4}-item{k}", text, pub + dt.timedelta(hours=1), f"f{k}-again.jsonl", 1))
            elif r < 0.1:
                specs.append((f"s9-copy{k}", text, pub + dt.timedelta(seconds=1), f"c{k}.jsonl", 2))
        yield d, day_rows(specs)


def test_plain_chain_equals_whole_day_on_the_labelled_set():
    n_days = near_rows = 0
    for _, t in labelled_days(3000):
        want = dedup_day(DAY, t, NEAR)
        assert_same(spread(t, NEAR, 5), want)
        near_rows += want["quality"].column("near_duplicates")[0].as_py()
        n_days += 1
    assert n_days > 10 and near_rows > 100


def whole_day_calls(monkeypatch) -> list:
    """Counts the days `DedupDaySpread` computes in one `dedup_day` call (a day that is one
    group) instead of spreading them (in-process runs)."""
    calls = []
    real = dedup_spread.dedup_day

    def counted(day, table, near):
        calls.append(day)
        return real(day, table, near)

    monkeypatch.setattr(dedup_spread, "dedup_day", counted)
    return calls


@pytest.mark.parametrize("spilled", [True, False], ids=["spill", "runner-shuffle"])
@pytest.mark.parametrize("per_group", [2000, 16], ids=["small-days", "many-bucket-groups"])
def test_beam_composite_equals_whole_day(tmp_path, spilled, per_group, monkeypatch):
    """Spilled small days are one group each, computed in one call; through a runner's
    shuffle every shard stays a group, and with small ROWS_PER_SHARD the spilled days are
    spread too: the same rows either way."""
    t1, t2 = mixed(1, 250), mixed(4, 150)
    # the second table's rows move to the next day; the composite sees both days at once
    shifted = t2.set_column(t2.schema.get_field_index("event_time"), "event_time",
                            pc.add(t2.column("event_time"), pa.scalar(dt.timedelta(days=1))))
    days = {"2022-02-20": t1, "2022-02-21": shifted}
    want = {d: dedup_day(dt.date.fromisoformat(d), t, NEAR) for d, t in days.items()}
    monkeypatch.setattr(dedup_spread, "SURVIVORS_PER_BUCKET_GROUP", per_group)
    if per_group < 2000:  # and fewer fingerprint groups a day than shards (spilled runs coalesce)
        monkeypatch.setattr(dedup_spread, "ROWS_PER_SHARD", 250)
        assert [dedup_spread.day_shard_count(t.num_rows, 3) for t in (t1, t2)] == [3, 2], (t1.num_rows, t2.num_rows)
    groups = dedup_spread.bucket_shard_count(len(exact_groups(t2).survivors), 3)
    assert (groups == 1) if per_group == 2000 else (groups >= 5)
    calls = whole_day_calls(monkeypatch)

    def check(parts):
        got = {}
        for part in parts:
            assert part.pane == 0
            got.setdefault(part.key.isoformat(), {})[part.table] = part.rows
        assert sorted(got) == sorted(want)
        for d in want:
            assert_same(got[d], want[d])
        return True

    spill = str(tmp_path / "spill") if spilled else None  # None: tables through the shuffles (engines)
    with TestPipeline() as p:
        windowed = p | beam.Create([t1, shifted]) | WindowByDay(spill=spill, shards=3)
        parts = windowed["days"] | DedupDaySpread(NEAR, shards=3, spill=spill)
        checked = (parts | beam.WindowInto(GlobalWindows()) | beam.combiners.ToList() | beam.Map(check))
        assert_that(checked, equal_to([True]))
    assert spilled == (tmp_path / "spill").is_dir()
    # spilled small days: each day in one call; otherwise spread (no call)
    assert sorted(d.isoformat() for d in calls) == (sorted(days) if spilled and per_group == 2000 else [])


def _feed(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _tables(root) -> dict:
    return {
        "events": query(root, "SELECT event_id, event_date, article_id, text, cluster_id, mention_count FROM events "
                              "ORDER BY 1"),
        "duplicates": query(root, "SELECT event_id, article_id, update_id, text, method, round(similarity, 9) "
                                  "FROM duplicates ORDER BY ALL"),
        "quality": query(root, "SELECT * FROM quality ORDER BY ALL"),
    }


def whole_day_step(monkeypatch) -> list:
    """Batch runs of this process use the whole-day composite `DedupDay` (one group per day,
    what batch runs used before the spread step): the oracle of the runs below. Returns the
    list of the DedupDay steps built."""
    from pipelines import news_events

    window, built = news_events.WindowByDay, []

    def whole(near, prior, exclusions, stager, shards, spill):
        built.append(DedupDay(near, prior, exclusions, stager=stager))
        return built[-1]

    monkeypatch.setattr(news_events, "WindowByDay", lambda *args, shards, **kw: window(*args, shards=0, **kw))
    monkeypatch.setattr(news_events, "DedupDaySpread", whole)
    return built


@pytest.mark.parametrize("rows_per_shard", [None, 15], ids=["a-group-a-day", "days-spread"])
def test_whole_runs_and_incremental_runs_equal_the_whole_day_step(tmp_path, monkeypatch, rows_per_shard):
    """Real runs, one-shot and incremental, against the whole-day composite: with the default
    ROWS_PER_SHARD these small days are one group each (one `dedup_day` call); with 15, each
    day of ~40 rows is spread over 3 fingerprint groups and the LSH bucket groups."""
    if rows_per_shard is not None:
        monkeypatch.setattr(dedup_spread, "ROWS_PER_SHARD", rows_per_shard)
    calls = whole_day_calls(monkeypatch)
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(500)]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(6, 20)))) for _ in range(60)]

    def rows(day: int, offset: int, credit: bool = False):
        out = []
        for i, t in enumerate(texts):
            if (i + day) % 3 == 0:
                continue
            text = t + " (AP)" if credit and i % 2 else t
            out.append({"article_id": f"a{(i + offset) % 23}", "text": text, "source": "s",
                        "published_at": f"2024-03-0{day}T{8 + i % 10:02d}:{i % 60:02d}:00+00:00"})
        return out

    f1 = _feed(tmp_path / "d1.jsonl", rows(1, 0) + rows(2, 3))
    f2 = _feed(tmp_path / "d2.jsonl", rows(2, 7, credit=True) + rows(3, 1))
    common = ["--event-time", "published"]
    for step in ("spread", "whole"):
        built = whole_day_step(monkeypatch) if step == "whole" else []
        run_pipeline([f1, f2], tmp_path / f"once-{step}", *common)
        run_pipeline([f1], tmp_path / f"inc-{step}", *common)
        run_pipeline([f2], tmp_path / f"inc-{step}", *common)
        assert len(built) == (3 if step == "whole" else 0)
        if step == "spread":  # 3 days one-shot; incremental: 2, then 3 (f2's articles have rows on day 1 too)
            assert len(calls) == (0 if rows_per_shard else 8), calls
    want = _tables(tmp_path / "once-whole")
    assert want["duplicates"] and any(r[4] == "near" for r in want["duplicates"])
    assert _tables(tmp_path / "once-spread") == want
    assert _tables(tmp_path / "inc-spread") == _tables(tmp_path / "inc-whole")


def test_coalesce_puts_a_small_day_in_fewer_groups_and_a_fingerprint_in_one():
    def ref(rows):
        return SpillRef("f.arrow", 0, 1, rows)

    small = [[(s, ref(10)) for s in range(4)], [(s, ref(10)) for s in range(4, 8)]]  # two input tables
    assert list(coalesce(("2022-02-20", small), 8)) == [("2022-02-20/0000", (1, [ref(10)] * 8))]
    # three shards' worth of rows in shards 0-2: 3 groups; shard s goes to s * 3 // 8
    some = [[(s, ref(ROWS_PER_SHARD)) for s in range(3)]]
    got = dict(coalesce(("2022-02-20", some), 8))
    assert {k: (n, len(items)) for k, (n, items) in got.items()} == {
        "2022-02-20/0000": (3, 3), "2022-02-20/0001": (3, 0), "2022-02-20/0002": (3, 0)}
    full = dict(coalesce(("2022-02-20", [[(s, ref(ROWS_PER_SHARD))] for s in range(8)]), 8))
    assert {k: (n, len(items)) for k, (n, items) in full.items()} == {f"2022-02-20/{s:04d}": (8, 1) for s in range(8)}


def _earlier_day(tmp_path, seed: int, n: int, articles: int, copied: int, fresh: str):
    """A day's earlier feed (n texts over `articles` articles, every 4th credited again by
    another source) and a later feed of 2 rows on the same day: a copy of text `copied` and
    the text `fresh`. -> (old rows, new rows, old feed path, new feed path)."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(400)]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(6, 16)))) for _ in range(n)]
    old = [{"article_id": f"a{i % articles}", "text": t, "source": "s",
            "published_at": f"2024-03-01T{8 + i % 10:02d}:{i % 60:02d}:00+00:00"} for i, t in enumerate(texts)]
    old += [{"article_id": f"c{i}", "text": texts[i] + " (AP)", "source": "t",
             "published_at": "2024-03-01T21:00:00+00:00"} for i in range(0, n, 4)]
    new = [{"article_id": "b0", "text": texts[copied], "source": "u", "published_at": "2024-03-01T23:00:00+00:00"},
           {"article_id": "b1", "text": fresh, "source": "u", "published_at": "2024-03-01T23:30:00+00:00"}]
    return old, new, _feed(tmp_path / "old.jsonl", old), _feed(tmp_path / "new.jsonl", new)


@pytest.mark.parametrize("spill", ["on", "off"], ids=["spill-files", "runner-shuffle"])
def test_new_articles_on_a_day_with_earlier_rows_keep_the_earlier_rows(tmp_path, monkeypatch, spill):
    """An incremental run whose new articles land on a day that already has rows: every
    fingerprint group of the day, also one without new rows, must read its share of the
    earlier rows (the day's files are replaced). With spill files the day is spread over 4
    groups here, of which the 2 new rows reach at most 2; through the runner's shuffle over
    every shard (16)."""
    monkeypatch.setattr(dedup_spread, "day_shard_count", lambda rows, shards: min(shards, 4))
    old, new, f1, f2 = _earlier_day(tmp_path, 11, 40, 9, 3, "an entirely new paragraph about the harbour")
    common = ["--event-time", "published", "--spill", spill]
    run_pipeline([f1, f2], tmp_path / "once", *common)
    run_pipeline([f1], tmp_path / "inc", *common)
    run_pipeline([f2], tmp_path / "inc", *common)
    want = _tables(tmp_path / "once")
    assert len(want["events"]) + len(want["duplicates"]) == len(old) + len(new)
    assert any(r[4] == "near" for r in want["duplicates"]) and any(r[1] == "b0" for r in want["duplicates"])
    assert _tables(tmp_path / "inc") == want


def test_a_few_new_rows_on_a_big_earlier_day_spread_it_and_each_group_reads_its_share(tmp_path, monkeypatch):
    """A day's size counts its earlier rows: an incremental run with 2 new rows on a day of
    ~50 earlier rows spreads it as a one-shot run does (ROWS_PER_SHARD 15 here), not one group
    holding the whole earlier day; each group reads only its share of the earlier rows, batch
    by batch, and the tables equal the one-shot run's."""
    from transforms import state

    monkeypatch.setattr(dedup_spread, "ROWS_PER_SHARD", 15)
    monkeypatch.setattr(state, "PRIOR_BATCH_ROWS", 7)
    calls = whole_day_calls(monkeypatch)
    reads = []
    real = state.PriorDays.untouched

    def untouched(self, day, exclude=None, keep=None):
        got = real(self, day, exclude, keep)
        reads.append((day, keep is not None, 0 if got is None else got.num_rows, self.rows(day)))
        return got

    monkeypatch.setattr(state.PriorDays, "untouched", untouched)
    old, new, f1, f2 = _earlier_day(tmp_path, 17, 44, 11, 5, "a paragraph nobody wrote before")
    common = ["--event-time", "published", "--spill", "on"]
    run_pipeline([f1, f2], tmp_path / "once", *common)
    run_pipeline([f1], tmp_path / "inc", *common)
    assert calls == [] and all(n == 0 for _, _, n, _ in reads)  # spread; no earlier rows yet
    reads.clear()
    run_pipeline([f2], tmp_path / "inc", *common)
    assert calls == []  # 2 new rows, 55 earlier ones: spread, not one dedup_day call
    earlier = [r for r in reads if r[0] == "2024-03-01"]
    assert len(earlier) == dedup_spread.day_shard_count(len(old) + len(new), 1000) == 4, reads
    assert all(keep for _, keep, _, _ in earlier)  # every group filtered while reading
    assert sum(n for _, _, n, _ in earlier) == earlier[0][3] == len(old)  # shares add up to the day
    assert max(n for _, _, n, _ in earlier) < len(old)
    assert _tables(tmp_path / "inc") == _tables(tmp_path / "once")


def test_the_day_shuffle_writes_a_spill_batch_per_day_and_table(tmp_path):
    """WindowByDay with spill files and shards (batch runs): each input table's file holds one
    record batch per event day (its shards row ranges of it), not one per (day, shard)."""
    t1 = mixed(2, 120)
    t2 = t1.set_column(t1.schema.get_field_index("event_time"), "event_time",
                       pc.add(t1.column("event_time"), pa.scalar(dt.timedelta(days=1))))
    both = pa.concat_tables([t1, t2])  # one input table with rows on two days
    spill = tmp_path / "spill"
    with TestPipeline() as p:
        days = p | beam.Create([both]) | WindowByDay(spill=str(spill), shards=4)
        got = (days["days"] | beam.WindowInto(GlobalWindows())
               | beam.MapTuple(lambda day, lists: (day, sorted(s for lst in lists for s, _ in lst))))
        assert_that(got, equal_to([("2022-02-20", [0, 1, 2, 3]), ("2022-02-21", [0, 1, 2, 3])]))
    files = list(spill.glob("*.arrow"))
    assert len(files) == 1
    assert pa.ipc.open_file(pa.memory_map(str(files[0]))).num_record_batches == 2


def test_nodes_gathers_the_wanted_survivors_of_every_dictionary_fixed_width_or_not():
    """`_Nodes` gives, in number order, the same values as a take per dictionary: fixed-width
    fields without nulls through its numpy path, a field with nulls and the strings and sets
    through Arrow's takes."""
    from transforms.dedup_spread import NODE_FIELDS, _Nodes, _width

    def node(start, n, null_at=None):
        uid = np.arange(start, start + n, dtype=np.int64)
        published = pa.array([None if i == null_at else 1_000_000 * i for i in range(n)], pa.timestamp("us", tz="UTC"))
        cols = {"uid": pa.array(uid), "count": pa.array(uid * 3), "published_at": published,
                "article_id": pa.array([f"a{i}" for i in uid]), "position": pa.array(uid.astype(np.int32)),
                "source_uri": pa.array([f"s{i}" * (i % 3 + 1) for i in uid]), "line": pa.array(uid + 7),
                "sig": pa.array([bytes([i % 256]) * 4 for i in uid], pa.binary(4)),
                "set": pa.array([b"x" * (i % 5) for i in uid], pa.large_binary()),
                "bands": pa.array([int(i).to_bytes(8, "little") for i in uid], pa.binary(8))}
        return pa.StructArray.from_arrays([cols[f] for f in NODE_FIELDS], names=NODE_FIELDS)

    for null_at in (None, 3):
        dicts = [node(0, 10), node(100, 6, null_at), node(200, 8)]
        base = np.array([0, 10, 16, 24])
        wanted = np.array([1, 4, 9, 10, 13, 15, 16, 23])
        nodes = _Nodes(dicts, base, wanted)
        assert len(nodes) == len(wanted)
        assert (_width(dicts, "published_at") == 0) == (null_at is not None)
        assert _width(dicts, "sig") == 4 and _width(dicts, "article_id") == 0
        for name in NODE_FIELDS:
            expected = pa.concat_arrays([d.field(name).take(pa.array(wanted[(wanted >= base[i]) & (wanted < base[i + 1])] - base[i]))
                                         for i, d in enumerate(dicts)])
            assert nodes.field(name).equals(expected), (name, null_at)
