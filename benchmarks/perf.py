"""End-to-end speed and memory benchmark of the pipeline, against a DuckDB baseline (issue 6) and optionally PySpark.

    .venv/bin/python benchmarks/perf.py 1000000 [--pipeline-args "--direct_num_workers=2 ..."] [--pyspark]

For each N given, three steps on one generated feed (four with --pyspark):

1. Generate an update feed (JSONL, the format `newsevents run` reads) of N updates built from
   the real text in ../shared/data (RUWA titles and sub-headings, headlines.json titles,
   live-blog sentences, the seed article's lines). Shape:
   - updates belong to articles (1-12 original updates per article, mean 3.0), each
     update is 1-4 blocks separated by "\\n" (mean 2.25);
   - about 25% of the updates are re-scrapes: an exact repeat (same update_id, same text) of
     an earlier update of the same article, published 2 minutes to 12 hours later;
   - about 5% are lightly edited copies by another source (another article_id and source,
     5 minutes to 6 hours later): half retyped (curly quotes, dashes, a doubled space:
     same canonical text, so exact duplicates), half with a few words changed in most blocks
     (synonym, dropped or swapped word: near duplicates, distinct fingerprints);
   - publication times over 30 days (2022-03-01 .. 2022-03-30, article starts uniform over
     the first 29 days), written in publication order, with the source's UTC offset.
   The real text holds about 39k distinct strings, too few for millions of blocks, so fresh
   blocks combine them: 10% are one real string verbatim (wire copy: natural cross-article
   repeats), 45% join a title with a second title or sub-heading, 45% add an
   article-specific detail to one string (the article's keyword from RUWA's `KW` column, a
   time or a number). The result at N=100k (seed 6): 98% of the blocks of original updates
   are distinct; of all 224,719 blocks 73% are distinct strings and 25% repeat a block of
   the same UTC day after normalization (each run prints these figures: distinct blocks,
   distinct canonical texts, distinct (day, canonical text) pairs). Deterministic for a given
   --seed; written as it is generated (pending updates of active articles only in memory).

2. Run the pipeline as a subprocess (`python -m pipelines.cli run`, i.e. `newsevents run`),
   timed wall clock, with the resident set size of its whole process tree sampled
   every 0.2 s (psutil: the peak of each process, which also reads the kernel's high-water
   mark VmHWM so a spike between samples counts, and the peak of their sum; sums count
   shared pages more than once). The kernel's `ru_maxrss` (largest process of the tree, not
   sampled) is reported too: this run's from os.wait4, and RUSAGE_CHILDREN (all runs so far).
   Both are upper bounds only: Linux keeps a process's high-water mark across `execve`, so
   the pipeline process starts with the RSS this script had when it forked it (after an
   earlier DuckDB baseline, gigabytes). The per-process peaks (sampled RSS and VmHWM, which
   execve resets) are the figures to read. Then check the output with DuckDB: events + duplicates +
   rejects rows = blocks in the feed, and sum(mention_count) = events + duplicates.

3. The DuckDB baseline on the same feed, in-process, default threads, timed end to end:
   read_json, split text into blocks, canonical form (lower-case, runs of non letters/digits
   to one space, trim), hash, UTC day of published_at, group by (day, hash) keeping the
   earliest occurrence and a count, COPY to Parquet PARTITION_BY (event_date).

4. With --pyspark only: the same job in PySpark on local[2] (benchmarks/spark_baseline.py:
   DataFrame API, 8 shuffle partitions, 4 GB driver), timed end to end including the
   SparkSession's start; needs the `bench` extra's pyspark and Java 17+.

Prints a summary per N and one JSON line with the same figures (for BENCHMARKS.md); with
several N, a final JSON line with the time ratios. Exit 1 when the pipeline fails or the
invariant does not hold, 2 for unusable arguments or missing data.
"""
from __future__ import annotations

import argparse
import ast
import csv
import datetime as dt
import heapq
import io
import json
import math
import os
import random
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GENERATOR_VERSION = 1

UTC = dt.timezone.utc
T0 = int(dt.datetime(2022, 3, 1, tzinfo=UTC).timestamp())
DAY = 86400
START_SPAN = 29 * DAY  # article starts; their updates spill into the 30th day

# Shape of the feed (see the module docstring).
BLOCKS_PER_UPDATE = ((1, 2, 3, 4), (0.30, 0.30, 0.25, 0.15))  # mean 2.25
ORIGINALS_MEAN = 2.5  # 1 + floor(Exp(2.5)) updates per article, capped: mean 3.0
ORIGINALS_MAX = 12
UPDATE_GAP_MEAN = 45 * 60  # between an article's original updates
RESCRAPES = ((0, 1, 2), (0.70, 0.24, 0.06))  # per original update: mean 0.36 -> 25% of lines
RESCRAPE_DELAY_MEAN = 3 * 3600
COPY_PROB = 0.0715  # per original update -> 5% of lines
COPY_DELAY_MEAN = 3600
FRESH_MIX = (0.10, 0.45, 0.45)  # verbatim real string, two joined, one with a detail
WORDY_COPY = 0.5  # share of copies with words changed (else retyped only)

SYNONYMS = {
    "said": "stated", "says": "states", "killed": "slain", "attack": "assault",
    "attacks": "assaults", "strike": "attack", "troops": "soldiers", "soldiers": "troops",
    "forces": "troops", "city": "town", "town": "city", "people": "residents",
    "near": "close to", "after": "following", "over": "about", "big": "large",
    "large": "big", "new": "fresh", "officials": "authorities", "authorities": "officials",
    "president": "leader", "government": "administration", "warns": "cautions",
    "claims": "alleges", "shows": "reveals", "amid": "during", "more": "further",
    "russian": "Russia's", "ukrainian": "Ukraine's", "report": "account",
}
DETAILS = (
    "{KW} - {s}",
    "{s} ({kw}, {hh:02d}:{mm:02d} local time)",
    "{s} Update {n} on {kw}.",
    "{kw}, day {day}: {s}",
    "{s} ({n} reports from {kw})",
)
TZ_OFFSETS = (0,) * 12 + (2, 2, 3, 3) + (-4, -5, 1, 0)  # hours, picked per source


class UsageError(Exception):
    pass


# ----------------------------------------------------------------------------- text pool


def _clean(s: str) -> str:
    return " ".join(s.split())


def _usable(s: str) -> bool:
    return len(s.split()) >= 3 and any(c.isalnum() for c in s)


def load_pool(data: Path = DATA) -> dict:
    """Real strings from ../shared/data: titles, longer sentences, keywords, sources (weighted)."""
    if not data.is_dir():
        raise UsageError(f"real data not found: {data} (expected ../shared/data beside the project)")
    titles: dict[str, None] = {}
    sentences: dict[str, None] = {}
    keywords: dict[str, None] = {}
    sources: dict[str, int] = {}
    try:
        with zipfile.ZipFile(data / "ruwa" / "RUWA_01.08.23.csv.zip") as z:
            name = next(n for n in z.namelist() if n.endswith(".csv") and not n.startswith("__MACOSX"))
            rows = csv.DictReader(io.StringIO(z.read(name).decode("utf-8")))
            for r in rows:
                t, d = _clean(r.get("title") or ""), _clean(r.get("desc") or "")
                if _usable(t):
                    titles[t] = None
                if _usable(d):
                    sentences[d] = None
                site = (r.get("Site") or "").removeprefix("www.")
                if site:
                    sources[site] = sources.get(site, 0) + 1
                try:
                    kws = ast.literal_eval(r.get("KW") or "[]")
                except (ValueError, SyntaxError):
                    kws = []
                for kw in kws:
                    kw = _clean(str(kw))
                    if kw[:1].isupper() and len(kw) > 2:
                        keywords[kw] = None
        headlines = json.loads((data / "headlines" / "headlines.json").read_text("utf-8"))
        for h in headlines:
            t = _clean(h.get("title") or "")
            if _usable(t):
                titles[t] = None
            dom = (h.get("domain") or "").removeprefix("www.")
            if dom:
                sources[dom] = sources.get(dom, 0) + 1
        for path in sorted((data / "liveblog").glob("*.json")):
            blog = json.loads(path.read_text("utf-8"))
            for doc in blog.get("documents", []):
                for s in doc.get("text", []):
                    s = _clean(s)
                    if _usable(s):
                        sentences[s] = None
            sources["theguardian.com"] = sources.get("theguardian.com", 0) + 1
        for path in sorted((data / "seed").glob("*.txt")):
            lines = [_clean(x) for x in path.read_text("utf-8").splitlines() if x.strip()]
            for s in lines[1:]:  # the first line is the `date ... headline` header
                if _usable(s):
                    sentences[s] = None
            sources["thequint.com"] = sources.get("thequint.com", 0) + 1
    except (OSError, KeyError, StopIteration, ValueError, zipfile.BadZipFile) as e:
        raise UsageError(f"cannot read the real data under {data}: {e}") from None
    for t in titles:  # one string, one list: a title used as a sentence stays a title
        sentences.pop(t, None)
    if len(titles) < 1000 or len(sentences) < 1000:
        raise UsageError(f"too little text under {data}: {len(titles)} titles, {len(sentences)} sentences")
    names = sorted(sources)
    return {
        "titles": list(titles),
        "sentences": list(sentences),
        "keywords": list(keywords) or ["Kyiv"],
        "sources": names,
        "source_weights": [sources[n] for n in names],
    }


# ----------------------------------------------------------------------------- generator


def _retype(block: str, rng: random.Random) -> str:
    """Same words, other typography: curly quotes, em dashes, one doubled space."""
    s = block.replace("'", "\u2019")
    s = re.sub(r'"([^"]*)"', "\u201c\\1\u201d", s)
    s = s.replace(" - ", " \u2014 ")
    spaces = [i for i, c in enumerate(s) if c == " "]
    if spaces:
        i = spaces[rng.randrange(len(spaces))]
        s = s[:i] + "  " + s[i + 1:]
    return s


def _reword(block: str, rng: random.Random) -> str:
    """A few words changed: a synonym, a dropped word or two words swapped."""
    words = block.split(" ")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(words))
        key = words[i].lower()
        if key in SYNONYMS:
            w = SYNONYMS[key]
            words[i] = w[:1].upper() + w[1:] if words[i][:1].isupper() else w
        elif len(words) > 5 and rng.random() < 0.5:
            del words[i]
        elif i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def _join(a: str, b: str) -> str:
    return f"{a} {b}" if a[-1:] in ".!?:;\"'”’)" else f"{a}. {b}"


class FeedGenerator:
    def __init__(self, pool: dict, n: int, seed: int):
        self.pool, self.n, self.rng = pool, n, random.Random(seed)
        mean_originals = 1 + sum(math.exp(-j / ORIGINALS_MEAN) for j in range(1, ORIGINALS_MAX))
        per_article = mean_originals * (1 + 0.36 + COPY_PROB)
        self.spacing = START_SPAN / max(1.0, n / per_article)
        self.offsets: dict[str, int] = {}
        self.stats = {"articles": 0, "originals": 0, "rescrapes": 0, "copies_retyped": 0,
                      "copies_reworded": 0, "blocks": 0, "fresh_blocks": 0, "min_t": None, "max_t": None}

    def _offset(self, source: str) -> int:
        if source not in self.offsets:
            self.offsets[source] = TZ_OFFSETS[zlib.crc32(source.encode()) % len(TZ_OFFSETS)] * 3600
        return self.offsets[source]

    def _fresh_block(self, kw: str) -> str:
        rng, titles, sentences = self.rng, self.pool["titles"], self.pool["sentences"]
        r = rng.random()
        if r < FRESH_MIX[0]:
            return rng.choice(titles) if rng.random() < 0.6 else rng.choice(sentences)
        if r < FRESH_MIX[0] + FRESH_MIX[1]:
            second = rng.choice(sentences) if rng.random() < 0.4 else rng.choice(titles)
            return _join(rng.choice(titles), second)
        s = rng.choice(titles) if rng.random() < 0.7 else rng.choice(sentences)
        return rng.choice(DETAILS).format(
            s=s, kw=kw, KW=kw.upper(), hh=rng.randrange(24), mm=rng.randrange(60),
            n=rng.randint(2, 999), day=rng.randint(2, 400))

    def _article(self, k: int, start: float) -> list[tuple]:
        """Every line of article k (originals, re-scrapes, copies) as (t, seq, fields...)."""
        rng, pool = self.rng, self.pool
        source = rng.choices(pool["sources"], pool["source_weights"])[0]
        article_id = f"{source}/news/{k:07d}"
        headline = rng.choice(pool["titles"])
        kw = rng.choice(pool["keywords"])
        copier = rng.choices(pool["sources"], pool["source_weights"])[0]
        if copier == source:
            copier = pool["sources"][(pool["sources"].index(source) + 1) % len(pool["sources"])]
        copy_id = f"{copier}/news/{k:07d}c"
        n_orig = min(ORIGINALS_MAX, 1 + int(rng.expovariate(1 / ORIGINALS_MEAN)))
        out, t = [], start
        for j in range(n_orig):
            if j:
                t += 30 + min(rng.expovariate(1 / UPDATE_GAP_MEAN), 4 * UPDATE_GAP_MEAN)
            nb = rng.choices(*BLOCKS_PER_UPDATE)[0]
            blocks = [self._fresh_block(kw) for _ in range(nb)]
            text = "\n".join(blocks)
            update_id = f"{article_id}/u{j}"
            out.append((t, "original", article_id, source, headline, update_id, text))
            for _ in range(rng.choices(*RESCRAPES)[0]):
                dt_ = 120 + min(rng.expovariate(1 / RESCRAPE_DELAY_MEAN), 4 * RESCRAPE_DELAY_MEAN)
                out.append((t + dt_, "rescrape", article_id, source, headline, update_id, text))
            if rng.random() < COPY_PROB:
                if rng.random() < WORDY_COPY:
                    kind = "copy_reworded"
                    edited = [_reword(b, rng) if (i == 0 or rng.random() < 0.7) else b for i, b in enumerate(blocks)]
                else:
                    kind = "copy_retyped"
                    edited = [_retype(b, rng) for b in blocks]
                dt_ = 300 + min(rng.expovariate(1 / COPY_DELAY_MEAN), 6 * COPY_DELAY_MEAN)
                out.append((t + dt_, kind, copy_id, copier, headline, f"{copy_id}/u{j}", "\n".join(edited)))
        self.stats["articles"] += 1
        return out

    def _line(self, item: tuple) -> tuple[str, int]:
        t, kind, article_id, source, headline, update_id, text = item
        off = self._offset(source)
        local = dt.datetime.fromtimestamp(int(t) + off, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        sign = "+" if off >= 0 else "-"
        published = f"{local}{sign}{abs(off) // 3600:02d}:00"
        line = json.dumps({"article_id": article_id, "source": source, "headline": headline,
                           "update_id": update_id, "published_at": published, "text": text},
                          ensure_ascii=False)
        # blocks as the pipeline counts them: the non-blank lines of `text`
        blocks = sum(1 for x in text.split("\n") if x.strip())
        return line + "\n", blocks

    def write(self, path: Path) -> dict:
        """Write N lines in publication order; return the generation figures."""
        heap: list = []
        seq = 0
        k = 0
        next_start = T0 + self.rng.random() * self.spacing
        scheduled = 0
        written = 0
        st = self.stats
        kinds = {"original": "originals", "rescrape": "rescrapes", "copy_retyped": "copies_retyped",
                 "copy_reworded": "copies_reworded"}
        with open(path, "w", encoding="utf-8", buffering=1 << 20) as f:
            while written < self.n:
                # an article may start before the earliest pending line: create it first
                while scheduled < self.n and (not heap or next_start <= heap[0][0]):
                    for item in self._article(k, next_start):
                        heapq.heappush(heap, (item[0], seq, item))
                        seq += 1
                        scheduled += 1
                    k += 1
                    next_start = T0 + (k + self.rng.random()) * self.spacing
                if not heap:
                    break
                t, _, item = heapq.heappop(heap)
                line, nb = self._line(item)
                f.write(line)
                written += 1
                st[kinds[item[1]]] += 1
                st["blocks"] += nb
                if item[1] == "original":
                    st["fresh_blocks"] += nb
                st["min_t"] = t if st["min_t"] is None else min(st["min_t"], t)
                st["max_t"] = t if st["max_t"] is None else max(st["max_t"], t)
        st["updates"] = written
        st["first_published"] = dt.datetime.fromtimestamp(int(st.pop("min_t")), UTC).isoformat()
        st["last_published"] = dt.datetime.fromtimestamp(int(st.pop("max_t")), UTC).isoformat()
        return st


# ----------------------------------------------------------------------------- DuckDB

FEED_COLUMNS = ("{article_id: 'VARCHAR', source: 'VARCHAR', headline: 'VARCHAR', "
                "update_id: 'VARCHAR', published_at: 'TIMESTAMPTZ', text: 'VARCHAR'}")
CANON = r"trim(regexp_replace(lower(block), '[^\p{L}\p{N}]+', ' ', 'g'))"


def _sql_str(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _read_feed(path: Path) -> str:
    return f"read_json({_sql_str(path)}, format = 'newline_delimited', columns = {FEED_COLUMNS})"


def feed_stats(path: Path) -> dict:
    """Distinct counts of the feed's blocks (untimed; what the dedup can find)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    row = con.execute(f"""
        WITH b AS (SELECT published_at, unnest(string_split(text, chr(10))) AS block FROM {_read_feed(path)}),
             c AS (SELECT published_at::DATE AS d, block, {CANON} AS canon FROM b WHERE trim(block) <> '')
        SELECT count(*), count(DISTINCT block), count(DISTINCT canon), count(DISTINCT (d, canon)),
               count(DISTINCT d), count(*) FILTER (WHERE canon = '')
        FROM c""").fetchone()
    con.close()
    keys = ("blocks_sql", "distinct_blocks", "distinct_canonical", "distinct_day_canonical", "days",
            "canonical_empty")
    return dict(zip(keys, (int(x) for x in row)))


def duckdb_baseline(feed: Path, out: Path) -> tuple[float, int]:
    """The same job in DuckDB: (seconds end to end, rows written)."""
    import duckdb

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(f"""
        COPY (
            SELECT event_date, fingerprint,
                   arg_min({{'published_at': published_at, 'source': source, 'article_id': article_id,
                             'update_id': update_id, 'text': block}}, published_at) AS kept,
                   count(*)::INTEGER AS mention_count
            FROM (
                SELECT published_at::DATE AS event_date, published_at, source, article_id, update_id, block,
                       hash(canon) AS fingerprint
                FROM (
                    SELECT *, {CANON} AS canon
                    FROM (SELECT published_at, source, article_id, update_id,
                                 unnest(string_split(text, chr(10))) AS block
                          FROM {_read_feed(feed)})
                    WHERE trim(block) <> ''
                )
                WHERE canon <> ''
            )
            GROUP BY event_date, fingerprint
        ) TO {_sql_str(out)} (FORMAT parquet, PARTITION_BY (event_date), COMPRESSION zstd)
    """).fetchone()
    con.close()
    return time.perf_counter() - t0, int(rows[0]) if rows else -1


def check_output(out: Path, blocks: int) -> dict:
    """Row counts of the pipeline's dataset and the accounting invariant: every block read is
    an event, a duplicate, a reject, or a redelivery of an update already taken (counted in
    `quality.redelivered`, DESIGN.md)."""
    import duckdb

    con = duckdb.connect()
    res: dict = {}
    try:
        for table in ("events", "duplicates", "rejects"):
            hive = ", hive_partitioning = true" if table != "rejects" else ""
            res[table] = con.execute(
                f"SELECT count(*) FROM read_parquet({_sql_str(out / table / '**' / '*.parquet')}{hive})").fetchone()[0]
        res["sum_mention_count"] = con.execute(
            f"SELECT coalesce(sum(mention_count), 0) FROM read_parquet("
            f"{_sql_str(out / 'events' / '**' / '*.parquet')}, hive_partitioning = true)").fetchone()[0]
        res["redelivered"] = con.execute(
            f"SELECT coalesce(sum(redelivered), 0) FROM read_parquet("
            f"{_sql_str(out / 'quality' / '**' / '*.parquet')}, hive_partitioning = true)").fetchone()[0]
        res["event_days"] = con.execute(
            f"SELECT count(DISTINCT event_date) FROM read_parquet("
            f"{_sql_str(out / 'events' / '**' / '*.parquet')}, hive_partitioning = true)").fetchone()[0]
        res["duplicates_by_method"] = dict(con.execute(
            f"SELECT method, count(*) FROM read_parquet({_sql_str(out / 'duplicates' / '**' / '*.parquet')}, "
            f"hive_partitioning = true) GROUP BY 1 ORDER BY 1").fetchall())
        res["rejects_by_reason"] = dict(con.execute(
            f"SELECT reason, count(*) FROM read_parquet({_sql_str(out / 'rejects' / '**' / '*.parquet')}) "
            f"GROUP BY 1 ORDER BY 1").fetchall())
    except duckdb.Error as e:
        res["error"] = str(e).splitlines()[0]
        res["ok"] = False
        return res
    finally:
        con.close()
    res = {k: (int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in res.items()}
    res["blocks_ok"] = res["events"] + res["duplicates"] + res["rejects"] + res["redelivered"] == blocks
    res["mentions_ok"] = res["sum_mention_count"] == res["events"] + res["duplicates"]
    res["ok"] = res["blocks_ok"] and res["mentions_ok"]
    return res


# ----------------------------------------------------------------------------- pipeline run


class TreeSampler(threading.Thread):
    """Samples the RSS of a process and all its descendants every `interval` seconds; a
    process's peak is the larger of its sampled RSS and the kernel's high-water mark (VmHWM).
    Also the sampled peak of each process's anonymous memory (RssAnon: the RSS without file
    pages such as memory-mapped spill files, which the kernel can drop; no high-water mark
    exists for it, so a spike between two samples is missed)."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.interval = interval
        self.stop = threading.Event()
        self.peak_total = 0
        self.peaks: dict[int, tuple[int, str]] = {}  # pid -> (peak rss, short command line)
        self.anon: dict[int, int] = {}  # pid -> sampled peak RssAnon
        self.samples = 0

    def _label(self, p) -> str:
        try:
            cmd = p.cmdline()
        except (self._psutil.Error, OSError):
            return "?"
        for i, part in enumerate(cmd):
            if part == "-m" and i + 1 < len(cmd):
                return cmd[i + 1]
        return os.path.basename(cmd[0]) if cmd else "?"

    @staticmethod
    def _status(pid: int) -> tuple[int, int]:
        """(VmHWM, RssAnon) of the process in bytes (Linux /proc; 0 where it is not there).
        VmHWM, the kernel's peak RSS so far, catches what rises and falls between samples."""
        hwm = anon = 0
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        hwm = int(line.split()[1]) * 1024
                    elif line.startswith(b"RssAnon:"):
                        anon = int(line.split()[1]) * 1024
        except OSError:
            pass
        return hwm, anon

    def sample(self) -> None:
        psutil = self._psutil
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.Error:
            return
        total = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            hwm, anon = self._status(p.pid)
            self.anon[p.pid] = max(self.anon.get(p.pid, 0), anon)
            peak = max(rss, hwm)
            prev = self.peaks.get(p.pid)
            if prev is None:
                self.peaks[p.pid] = (peak, self._label(p))
            elif peak > prev[0]:
                self.peaks[p.pid] = (peak, prev[1])
        self.peak_total = max(self.peak_total, total)
        self.samples += 1

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)


def run_pipeline(feed: Path, out: Path, extra: list[str], log: Path, code: Path | None = None) -> dict:
    """One `newsevents run` over `feed`, sampled; `code`: run the pipeline of another checkout
    (its folder: imported from there, with this interpreter) instead of this one."""
    shutil.rmtree(out, ignore_errors=True)
    # `python -m pipelines.cli run` is the `newsevents run` console script. Not `-m
    # pipelines.news_events`: run that way the module is imported twice (as __main__ and by
    # pipelines.cli), its two PipelineOptions subclasses both declare --input, and Beam's
    # option parser stops with "conflicting option string: --input".
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "--input", str(feed), "--output", str(out), *extra]
    with open(log, "wb") as logf:
        t0 = time.perf_counter()
        env = None if code is None else {**os.environ, "PYTHONPATH": str(code)}
        proc = subprocess.Popen(cmd, cwd=code or ROOT, stdout=logf, stderr=subprocess.STDOUT, env=env)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        # wait4: the exit status and this run's own rusage (ru_maxrss of the largest process of
        # the tree that was waited for), unlike RUSAGE_CHILDREN, which spans every run so far
        _, status, own = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        rc = proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop.set()
        sampler.join()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    per_process = sorted(((rss, pid, label) for pid, (rss, label) in sampler.peaks.items()), reverse=True)
    return {
        "cmd": cmd,
        "rc": rc,
        "seconds": seconds,
        "peak_rss_total": sampler.peak_total,
        "peak_rss_max_process": per_process[0][0] if per_process else 0,
        "peak_anon_max_process": max(sampler.anon.values(), default=0),
        "per_process": [{"pid": pid, "cmd": label, "peak_rss": rss} for rss, pid, label in per_process],
        "ru_maxrss_children": ru * 1024,
        "ru_maxrss_run": own.ru_maxrss * 1024,
        "samples": sampler.samples,
    }


# ----------------------------------------------------------------------------- main

MB = 1 << 20


def prepare_feed(workdir: Path, n: int, seed: int, pool_cache: dict) -> tuple[Path, dict, bool]:
    """The feed for (n, seed): reused when --keep left a complete one with its figures."""
    feed = workdir / f"feed-n{n}-seed{seed}.jsonl"
    meta_path = feed.with_suffix(".json")
    if feed.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if (meta.get("generator_version") == GENERATOR_VERSION and meta.get("n") == n
                    and meta.get("seed") == seed and meta.get("bytes") == feed.stat().st_size):
                return feed, meta, True
        except (OSError, ValueError):
            pass
    if "pool" not in pool_cache:
        pool_cache["pool"] = load_pool()
    pool = pool_cache["pool"]
    t0 = time.perf_counter()
    gen = FeedGenerator(pool, n, seed)
    meta = gen.write(feed)
    meta["generation_seconds"] = time.perf_counter() - t0
    meta.update(n=n, seed=seed, generator_version=GENERATOR_VERSION, bytes=feed.stat().st_size,
                pool_titles=len(pool["titles"]), pool_sentences=len(pool["sentences"]))
    t1 = time.perf_counter()
    meta.update(feed_stats(feed))
    meta["stats_seconds"] = time.perf_counter() - t1
    meta_path.write_text(json.dumps(meta, indent=1))
    return feed, meta, False


def bench(n: int, args, workdir: Path, pool_cache: dict) -> dict:
    print(f"== N = {n:,} (seed {args.seed}) in {workdir}", flush=True)
    feed, meta, reused = prepare_feed(workdir, n, args.seed, pool_cache)
    blocks = meta["blocks"]
    print(f"feed: {feed} ({'reused' if reused else 'generated in %.1f s' % meta['generation_seconds']}), "
          f"{meta['bytes'] / MB:.1f} MB, {meta['updates']:,} updates in {meta['articles']:,} articles "
          f"({meta['originals']:,} original, {meta['rescrapes']:,} re-scrapes, "
          f"{meta['copies_retyped']:,} retyped + {meta['copies_reworded']:,} reworded copies)")
    print(f"blocks: {blocks:,}; distinct {meta['distinct_blocks']:,} "
          f"({meta['distinct_blocks'] / blocks:.1%}), distinct canonical {meta['distinct_canonical']:,}, "
          f"distinct (day, canonical) {meta['distinct_day_canonical']:,} "
          f"-> {1 - meta['distinct_day_canonical'] / blocks:.1%} of blocks repeat within their day; "
          f"{meta['days']} days {meta['first_published'][:16]} .. {meta['last_published'][:16]}", flush=True)
    if meta["blocks_sql"] != blocks:
        print(f"warning: DuckDB counts {meta['blocks_sql']:,} blocks, the generator {blocks:,}")

    result = {"n": n, "seed": args.seed, "blocks": blocks, "distinct_blocks": meta["distinct_blocks"],
              "distinct_day_canonical": meta["distinct_day_canonical"], "feed_mb": round(meta["bytes"] / MB, 1),
              "generation_s": round(meta.get("generation_seconds", 0.0), 1),
              "pipeline_args": args.pipeline_args or ""}
    ok = True
    if not args.skip_pipeline:
        out = workdir / f"out-n{n}"
        extra = shlex.split(args.pipeline_args or "")
        print(f"pipeline: {shlex.join(['python', '-m', 'pipelines.cli', 'run', '--input', str(feed), '--output', str(out), *extra])}",
              flush=True)
        run = run_pipeline(feed, out, extra, workdir / f"pipeline-n{n}.log")
        if run["rc"] != 0:
            tail = (workdir / f"pipeline-n{n}.log").read_text("utf-8", "replace").splitlines()[-25:]
            print("\n".join(["pipeline FAILED, exit status %d; last lines of its log:" % run["rc"], *tail]))
            result.update(pipeline_s=round(run["seconds"], 2), pipeline_rc=run["rc"], invariant="pipeline failed")
            return {**result, "ok": False}
        print(f"pipeline: {run['seconds']:.1f} s, {n / run['seconds']:,.0f} updates/s, "
              f"{blocks / run['seconds']:,.0f} blocks/s")
        for p in run["per_process"][:8]:
            print(f"  peak RSS {p['peak_rss'] / MB:8.1f} MB  pid {p['pid']}  {p['cmd']}")
        if len(run["per_process"]) > 8:
            print(f"  ... {len(run['per_process']) - 8} more processes")
        print(f"  peak RSS of the tree (sum) {run['peak_rss_total'] / MB:.1f} MB over {run['samples']} samples; "
              f"ru_maxrss: this run {run['ru_maxrss_run'] / MB:.1f} MB, RUSAGE_CHILDREN "
              f"{run['ru_maxrss_children'] / MB:.1f} MB (upper bounds: they include this "
              f"script's own RSS when it started the run)", flush=True)
        check = check_output(out, blocks)
        if "error" in check:
            print(f"check FAILED: cannot read the output: {check['error']}")
            invariant = "unreadable output"
        else:
            print(f"check: events {check['events']:,} + duplicates {check['duplicates']:,} "
                  f"({', '.join(f'{k} {v:,}' for k, v in check['duplicates_by_method'].items()) or 'none'}) "
                  f"+ rejects {check['rejects']:,} + redelivered {check['redelivered']:,} = "
                  f"{check['events'] + check['duplicates'] + check['rejects'] + check['redelivered']:,} "
                  f"vs {blocks:,} blocks: {'OK' if check['blocks_ok'] else 'FAIL'}")
            print(f"check: sum(mention_count) {check['sum_mention_count']:,} vs events + duplicates "
                  f"{check['events'] + check['duplicates']:,}: {'OK' if check['mentions_ok'] else 'FAIL'}; "
                  f"{check['event_days']} event days"
                  + (f"; rejects {check['rejects_by_reason']}" if check["rejects_by_reason"] else ""))
            invariant = "ok" if check["ok"] else "FAIL"
        ok = check["ok"]
        result.update(
            pipeline_s=round(run["seconds"], 2),
            updates_per_s=round(n / run["seconds"]),
            events=check.get("events"), duplicates=check.get("duplicates"), rejects=check.get("rejects"),
            peak_rss_mb_max_process=round(run["peak_rss_max_process"] / MB, 1),
            peak_rss_mb_total=round(run["peak_rss_total"] / MB, 1),
            peak_rss_mb_per_process={f"{p['cmd']}[{p['pid']}]": round(p["peak_rss"] / MB, 1)
                                     for p in run["per_process"]},
            ru_maxrss_run_mb=round(run["ru_maxrss_run"] / MB, 1),
            ru_maxrss_children_mb=round(run["ru_maxrss_children"] / MB, 1),
            processes=len(run["per_process"]),
            invariant=invariant,
        )
    if not args.skip_duckdb:
        seconds, rows = duckdb_baseline(feed, workdir / f"duckdb-n{n}")
        print(f"duckdb: {seconds:.2f} s, {rows:,} (day, fingerprint) rows written", flush=True)
        result.update(duckdb_s=round(seconds, 2), duckdb_rows=rows)
    if args.pyspark:
        from spark_baseline import pyspark_baseline  # beside this script; imports pyspark itself

        seconds, rows = pyspark_baseline(feed, workdir / f"pyspark-n{n}")
        print(f"pyspark: {seconds:.2f} s (local[2], SparkSession start included), {rows:,} "
              f"(day, fingerprint) rows written", flush=True)
        result.update(pyspark_s=round(seconds, 2), pyspark_rows=rows)
        if "duckdb_rows" in result and result["duckdb_rows"] != rows:
            print(f"warning: pyspark wrote {rows:,} rows, duckdb {result['duckdb_rows']:,}")
    if "pipeline_s" in result and "duckdb_s" in result:
        result["ratio"] = round(result["pipeline_s"] / result["duckdb_s"], 1)
    if "pipeline_s" in result and "pyspark_s" in result:
        result["pyspark_ratio"] = round(result["pipeline_s"] / result["pyspark_s"], 1)
    return {**result, "ok": ok}


def summary(r: dict) -> None:
    def f(key, fmt="{:,}", unit=""):
        v = r.get(key)
        return "-" if v is None else fmt.format(v) + unit

    print("-- summary")
    print(f"N {r['n']:,}  blocks {r['blocks']:,}  feed {r['feed_mb']} MB  pipeline {f('pipeline_s', '{}', ' s')}  "
          f"duckdb {f('duckdb_s', '{}', ' s')}  ratio {f('ratio', '{}')}  updates/s {f('updates_per_s')}"
          + (f"  pyspark {f('pyspark_s', '{}', ' s')}  pyspark_ratio {f('pyspark_ratio', '{}')}"
             if "pyspark_s" in r else ""))
    print(f"peak RSS: max process {f('peak_rss_mb_max_process', '{}', ' MB')}, tree total "
          f"{f('peak_rss_mb_total', '{}', ' MB')} ({f('processes')} processes), ru_maxrss "
          f"{f('ru_maxrss_run_mb', '{}', ' MB')}; invariant {r.get('invariant', 'skipped')}")
    targets = []
    if "ratio" in r:
        targets.append(f"ratio {r['ratio']} {'<=' if r['ratio'] <= 5 else '>'} 5")
    if "peak_rss_mb_max_process" in r:
        targets.append(f"max process RSS {r['peak_rss_mb_max_process']} MB "
                       f"{'<=' if r['peak_rss_mb_max_process'] <= 1536 else '>'} 1536 MB")
    if targets:
        print("targets (official at N=1,000,000): " + "; ".join(targets))
    print(json.dumps({k: v for k, v in r.items() if k != "ok"}, separators=(",", ":")), flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int, nargs="+", help="number of updates in the feed (several: one run each)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the feed and outputs go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the feed and outputs (a kept feed is reused)")
    ap.add_argument("--skip-pipeline", action="store_true", help="do not run the pipeline")
    ap.add_argument("--skip-duckdb", action="store_true", help="do not run the DuckDB baseline")
    ap.add_argument("--pyspark", action="store_true",
                    help="also run the baseline in PySpark on local[2] (needs pyspark and Java 17+)")
    ap.add_argument("--pipeline-args", default="",
                    help='extra arguments for newsevents run, e.g. "--direct_num_workers=2 '
                         '--direct_running_mode=multi_processing"')
    ap.add_argument("--seed", type=int, default=6, help="generator seed (default 6)")
    args = ap.parse_args(argv)
    if any(n < 1 for n in args.n):
        ap.error("N must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.skip_pipeline:
        try:
            import psutil  # noqa: F401
        except ImportError:
            print("perf.py needs psutil to sample memory: .venv/bin/pip install psutil==7.2.2", file=sys.stderr)
            return 2
    if args.pyspark:
        import importlib.util

        if importlib.util.find_spec("pyspark") is None:
            print("--pyspark needs pyspark: .venv/bin/pip install -c constraints.txt -e '.[bench]'", file=sys.stderr)
            return 2
        if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
            print("--pyspark needs a Java 17+ runtime: java on PATH or JAVA_HOME", file=sys.stderr)
            return 2
    created = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="newsevents-perf-")) if created else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    pool_cache: dict = {}
    try:
        for n in args.n:
            try:
                r = bench(n, args, workdir, pool_cache)
            except UsageError as e:
                print(f"perf.py: {e}", file=sys.stderr)
                return 2
            summary(r)
            results.append(r)
        if len(results) > 1 and all("pipeline_s" in r for r in results):
            base = results[0]
            scaling = {f"{r['n']}/{base['n']}": {
                "n_ratio": round(r["n"] / base["n"], 2),
                "pipeline_time_ratio": round(r["pipeline_s"] / base["pipeline_s"], 2),
                **({"duckdb_time_ratio": round(r["duckdb_s"] / base["duckdb_s"], 2)}
                   if "duckdb_s" in r and "duckdb_s" in base else {}),
                **({"pyspark_time_ratio": round(r["pyspark_s"] / base["pyspark_s"], 2)}
                   if "pyspark_s" in r and "pyspark_s" in base else {}),
            } for r in results[1:]}
            print("-- scaling (target: time at 2M <= 2.2 x time at 1M)")
            print(json.dumps({"scaling": scaling}, separators=(",", ":")))
    finally:
        if not args.keep:
            if created:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                for n in args.n:
                    for name in (f"feed-n{n}-seed{args.seed}.jsonl", f"feed-n{n}-seed{args.seed}.json",
                                 f"pipeline-n{n}.log"):
                        (workdir / name).unlink(missing_ok=True)
                    for name in (f"out-n{n}", f"duckdb-n{n}", f"pyspark-n{n}"):
                        shutil.rmtree(workdir / name, ignore_errors=True)
        else:
            print(f"kept: {workdir}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
