"""Accuracy and speed of the event-time resolver (transforms/event_time.py).

Accuracy on the TempEval-3 platinum test set (TimeML; 20 news documents, March 2013).
Each document's <DCT> is the publication day; inline TIMEX3 carry gold values normalised
against it ("Friday" -> 2013-03-22). The text is split into sentences (blank lines, then
sentence punctuation) and the resolver runs on each sentence with the DCT as publication
time. Figures printed:

  (a) day recall: of the gold DATE TIMEX3 whose value is a full day (YYYY-MM-DD), how many
      the resolver gives from the sentence that contains them ("sentence"), and from the
      expression text alone preceded by its previous word ("expression"). The sentence
      figure is what the pipeline sees; it is lower when a sentence states two days and the
      one-day-per-block rule picks the other.
  (b) false days: of the sentences whose gold TIMEX3 (any type) contain no full-day value,
      how many the resolver still gives a day; also on the subset of those sentences that
      contain a month- or year-level DATE (the "in 1997" / "last May" traps).
  (c) day precision: of all sentences where the resolver states a day, how many state a
      day equal to a gold full-day value (DATE or TIME) of that sentence.

These are NOT TempEval-3 Task A scores (value F1 = relaxed-match F1 x value accuracy over
all TIMEX3 of all types and granularities): the resolver neither marks spans nor
normalises months, years, durations or sets, because the pipeline only needs a day per
block. Published Task A value F1 on the same documents, for orientation only: HeidelTime
77.61, SUTime 67.38 (UzZaman et al., SemEval-2013).

Also: the weekday rule on RUWA (blocks saying "<Weekday>, <Month> <day>" whose weekday
agrees with the date: does the weekday alone, with the date removed, give the same day
relative to the RUWA publication date?), and throughput in blocks/s on real text (RUWA
titles and sub-headings, Guardian live-blog sentences, te3 sentences).

Usage:
  python benchmarks/tempeval.py [TE3_DIR] [--throughput] [--compare] [--verbose]

TE3_DIR defaults to ../shared/data/timeml/te3-platinum beside the repo. --compare also
measures dateparser.search.search_dates and dateutil.parser.parse(fuzzy=True) when they
are importable (not project dependencies; install them in a scratch virtualenv).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import re
import sys
import time
import warnings
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from transforms.event_time import resolve_batch, resolve_event_day  # noqa: E402

DATA = REPO.parent / "shared" / "data"
DEFAULT_TE3 = DATA / "timeml" / "te3-platinum"
FULL_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")  # DATE "2013-03-22", TIME "2013-03-22TAF"
UTC = datetime.timezone.utc

# A day resolver: (text, publication datetime) -> date or None.
Resolver = Callable[[str, datetime.datetime], "datetime.date | None"]


@dataclass
class Timex:
    start: int
    end: int
    type: str
    value: str
    text: str

    @property
    def day(self) -> datetime.date | None:
        m = FULL_DAY.match(self.value)
        return datetime.date(*map(int, m.groups())) if m else None


@dataclass
class Document:
    name: str
    dct: datetime.date
    text: str
    timexes: list[Timex] = field(default_factory=list)

    @property
    def published_at(self) -> datetime.datetime:
        return datetime.datetime(self.dct.year, self.dct.month, self.dct.day, tzinfo=UTC)


def load_document(path: Path) -> Document:
    """Plain text of <TEXT> with the character spans of its TIMEX3, and the DCT day."""
    root = ET.parse(path).getroot()
    dct_value = root.find("DCT/TIMEX3").get("value")
    dct = datetime.date.fromisoformat(dct_value[:10])
    parts: list[str] = []
    timexes: list[Timex] = []
    pos = 0

    def walk(elem: ET.Element) -> None:
        nonlocal pos
        start = pos
        if elem.text:
            parts.append(elem.text)
            pos += len(elem.text)
        for child in elem:
            walk(child)
            if child.tail:
                parts.append(child.tail)
                pos += len(child.tail)
        if elem.tag == "TIMEX3":
            timexes.append(Timex(start, pos, elem.get("type", ""), elem.get("value", ""),
                                 "".join(parts)[start:pos]))

    walk(root.find("TEXT"))
    return Document(path.stem, dct, "".join(parts), sorted(timexes, key=lambda t: t.start))


def load_documents(te3_dir: Path) -> list[Document]:
    return [load_document(p) for p in sorted(Path(te3_dir).glob("*.tml"))]


_ABBREV = frozenset(
    "mr mrs ms dr st jr sr gov sen rep gen lt col sgt capt prof inc corp co ltd no vs "
    "jan feb mar apr jun jul aug sep sept oct nov dec u.s u.n u.k e.g i.e a.m p.m".split()
)
_SENT_END = re.compile(r"[.!?][\"'”’)\]]*\s+(?=[\"“‘(]?[A-Z0-9])")


def split_sentences(text: str, protected: list[Timex] = ()) -> list[tuple[int, int]]:
    """(start, end) spans: paragraphs split on blank lines, then on sentence punctuation
    followed by a capital, except after common abbreviations and inside a TIMEX3."""
    inside = [(t.start, t.end) for t in protected]
    spans: list[tuple[int, int]] = []
    for para in re.finditer(r"\S(?:.|\n(?!\s*\n))*", text):
        start = para.start()
        for m in _SENT_END.finditer(text, para.start(), para.end()):
            word = re.search(r"([\w.]+)[.!?]$", text[start:m.start() + 1])
            if word and (word.group(1).lower() in _ABBREV or len(word.group(1)) == 1):
                continue
            if any(a < m.start() + 1 < b for a, b in inside):
                continue
            spans.append((start, m.start() + 1))
            start = m.end()
        spans.append((start, para.end()))
    return [(a, b) for a, b in spans if text[a:b].strip()]


@dataclass
class Sentence:
    doc: Document
    start: int
    end: int
    timexes: list[Timex]

    @property
    def text(self) -> str:
        return " ".join(self.doc.text[self.start:self.end].split())

    @property
    def gold_days(self) -> set[datetime.date]:
        return {t.day for t in self.timexes if t.day is not None}


def sentences_of(docs: list[Document]) -> list[Sentence]:
    out = []
    for doc in docs:
        for a, b in split_sentences(doc.text, doc.timexes):
            out.append(Sentence(doc, a, b, [t for t in doc.timexes if a <= t.start < b]))
    return out


def evaluate(te3_dir: Path = DEFAULT_TE3, resolver: Resolver = resolve_event_day,
             verbose: bool = False) -> dict:
    """Figures (a), (b), (c) described in the module docstring, as a dict."""
    docs = load_documents(te3_dir)
    sents = sentences_of(docs)
    out: dict = {"documents": len(docs), "sentences": len(sents)}

    # (a) day recall on gold day-level DATE expressions
    gold = [(s, t) for s in sents for t in s.timexes if t.type == "DATE" and t.day]
    hit_sent = hit_expr = 0
    for s, t in gold:
        got = resolver(s.text, s.doc.published_at)
        before = s.doc.text[max(0, t.start - 30):t.start].split()
        expr = " ".join(before[-1:] + [t.text])
        got_expr = resolver(expr, s.doc.published_at)
        hit_sent += got == t.day
        hit_expr += got_expr == t.day
        if verbose and (got != t.day or got_expr != t.day):
            print(f"  MISS {s.doc.name} gold {t.day} {t.text!r}: sentence -> {got}, "
                  f"expression {expr!r} -> {got_expr}\n     {s.text[:160]}")
    out["gold_day_dates"] = len(gold)
    out["day_recall_sentence"] = hit_sent
    out["day_recall_expression"] = hit_expr

    # (b) false days on sentences without a gold day; (c) precision of stated days
    no_day = [s for s in sents if not s.gold_days]
    traps = [s for s in no_day if any(t.type == "DATE" and re.match(r"^\d{4}(-\d\d)?$", t.value)
                                      for t in s.timexes)]
    fp = fp_traps = stated = correct = 0
    for s in sents:
        got = resolver(s.text, s.doc.published_at)
        if got is None:
            continue
        stated += 1
        correct += got in s.gold_days
        if not s.gold_days:
            fp += 1
            fp_traps += s in traps
            if verbose:
                print(f"  FALSE DAY {s.doc.name} -> {got}: {s.text[:160]}")
        elif verbose and got not in s.gold_days:
            print(f"  WRONG DAY {s.doc.name} -> {got}, gold {sorted(s.gold_days)}: "
                  f"{s.text[:160]}")
    out["sentences_without_day"] = len(no_day)
    out["false_days"] = fp
    out["sentences_with_month_or_year_only"] = len(traps)
    out["false_days_on_those"] = fp_traps
    out["sentences_with_stated_day"] = stated
    out["stated_day_correct"] = correct
    return out


def day_accuracy(te3_dir: Path = DEFAULT_TE3) -> float:
    """Share of gold day-level DATE expressions resolved from their sentence (figure a)."""
    r = evaluate(te3_dir)
    return r["day_recall_sentence"] / r["gold_day_dates"]


# ---------------------------------------------------------------- real-text corpora

def ruwa_rows(data: Path = DATA) -> list[dict]:
    z = zipfile.ZipFile(data / "ruwa" / "RUWA_01.08.23.csv.zip")
    name = next(n for n in z.namelist() if n.endswith(".csv") and not n.startswith("__MACOSX"))
    with z.open(name) as f:
        return list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8")))


def ruwa_blocks(rows: list[dict]) -> list[tuple[str, datetime.datetime]]:
    out = []
    for r in rows:
        pub = datetime.datetime.strptime(r["Date"], "%m/%d/%Y").replace(tzinfo=UTC)
        for col in ("title", "desc"):
            if r[col].strip():
                out.append((r[col], pub))
    return out


def liveblog_blocks(data: Path = DATA) -> list[tuple[str, datetime.datetime]]:
    out = []
    for p in sorted((data / "liveblog").glob("*.json")):
        for doc in json.loads(p.read_text(encoding="utf-8"))["documents"]:
            y, mo, d, h, mi = doc["time"]
            pub = datetime.datetime(y, mo, d, h, mi, tzinfo=UTC)
            out.extend((s, pub) for s in doc["text"])
    return out


_WD_DATE = re.compile(
    r"\b(?:on\s+)?(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday),?\s+"
    r"((?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December)\s+\d{1,2}|\d{1,2}\s+(?:January|February|March|April|May|June|July|August|"
    r"September|October|November|December))\b(?!,?\s+\d{4})"
)


def weekday_rule_check(blocks: list[tuple[str, datetime.datetime]],
                       resolver: Resolver = resolve_event_day,
                       verbose: bool = False) -> dict:
    """On blocks stating '<Weekday>, <Month> <day>' (weekday agreeing with the date) that
    the resolver resolves to that date: with the date deleted and the weekday kept, does
    the block still resolve to the same day?"""
    n = same = 0
    for text, pub in blocks:
        m = _WD_DATE.search(text)
        if not m:
            continue
        with_date = resolver(text, pub)
        if with_date is None or with_date.strftime("%A") != m.group(1) \
                or resolver(m.group(0), pub) != with_date:
            continue
        n += 1
        bare = text[:m.start(1)] + m.group(1) + text[m.end():]
        got = resolver(bare, pub)
        same += got == with_date
        if verbose and got != with_date:
            print(f"  WEEKDAY {pub.date()} {pub:%a}: dated {with_date}, bare {got}: "
                  f"{bare[max(0, m.start() - 90):m.start() + 30]!r}")
    return {"weekday_date_blocks": n, "weekday_alone_same_day": same}


def throughput(blocks: list[tuple[str, datetime.datetime]], repeat: int = 5) -> dict:
    """Best-of-`repeat` blocks/s of resolve_batch on the blocks (one batch)."""
    texts = [t for t, _ in blocks]
    pub_us = [int(p.timestamp()) * 1_000_000 for _, p in blocks]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = resolve_batch(texts, pub_us)
        best = min(best, time.perf_counter() - t0)
    return {"blocks": len(texts), "seconds": best, "blocks_per_s": len(texts) / best,
            "mb": sum(len(t) for t in texts) / 1e6,
            "with_day": sum(r is not None for r in res)}


def time_resolver(resolver: Resolver, blocks: list[tuple[str, datetime.datetime]]) -> dict:
    t0 = time.perf_counter()
    n_day = sum(resolver(t, p) is not None for t, p in blocks)
    dt = time.perf_counter() - t0
    return {"blocks": len(blocks), "seconds": dt, "blocks_per_s": len(blocks) / dt,
            "with_day": n_day}


# ---------------------------------------------------------------- library baselines

def _first_past_else_first(days: list[datetime.date], pub: datetime.date):
    for d in days:
        if d <= pub:
            return d
    return days[0] if days else None


def dateparser_resolver() -> Resolver | None:
    try:
        from dateparser.search import search_dates
    except ImportError:
        return None

    def resolve(text: str, pub: datetime.datetime) -> datetime.date | None:
        found = search_dates(text, languages=["en"], settings={
            "RELATIVE_BASE": pub.replace(tzinfo=None), "PREFER_DATES_FROM": "past"})
        return _first_past_else_first([d.date() for _, d in found or []], pub.date())
    return resolve


def dateutil_resolver() -> Resolver | None:
    try:
        from dateutil import parser
    except ImportError:
        return None

    def resolve(text: str, pub: datetime.datetime) -> datetime.date | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return parser.parse(text, fuzzy=True, default=pub.replace(tzinfo=None)).date()
            except (ValueError, OverflowError):
                return None
    return resolve


# ---------------------------------------------------------------- report

def _report_accuracy(label: str, r: dict) -> None:
    g, ns = r["gold_day_dates"], r["sentences_without_day"]
    print(f"[{label}] te3-platinum: {r['documents']} documents, {r['sentences']} sentences")
    print(f"  (a) day recall, gold day-level DATE: sentence {r['day_recall_sentence']}/{g} "
          f"= {r['day_recall_sentence'] / g:.1%}; expression {r['day_recall_expression']}/{g} "
          f"= {r['day_recall_expression'] / g:.1%}")
    print(f"  (b) false days: {r['false_days']}/{ns} sentences without a gold day "
          f"= {r['false_days'] / ns:.1%}; on those with a month/year-only DATE: "
          f"{r['false_days_on_those']}/{r['sentences_with_month_or_year_only']}")
    st = r["sentences_with_stated_day"]
    print(f"  (c) day precision: {r['stated_day_correct']}/{st} sentences with a stated day "
          f"= {r['stated_day_correct'] / max(st, 1):.1%}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("te3_dir", nargs="?", type=Path, default=DEFAULT_TE3)
    ap.add_argument("--throughput", action="store_true", help="blocks/s on real text")
    ap.add_argument("--compare", action="store_true",
                    help="also measure dateparser and dateutil when importable")
    ap.add_argument("--verbose", action="store_true", help="print misses and false days")
    args = ap.parse_args(argv)
    if not args.te3_dir.is_dir():
        print(f"error: no TimeML directory at {args.te3_dir}", file=sys.stderr)
        return 2

    print(f"python {sys.version.split()[0]}, resolver transforms/event_time.py")
    _report_accuracy("event_time", evaluate(args.te3_dir, verbose=args.verbose))
    print("  TempEval-3 Task A value F1 on the same set (different metric, all timexes): "
          "HeidelTime 77.61, SUTime 67.38")

    baselines: list[tuple[str, Resolver]] = []
    if args.compare:
        for name, make in (("dateparser.search_dates", dateparser_resolver),
                           ("dateutil.parse(fuzzy)", dateutil_resolver)):
            fn = make()
            if fn is None:
                print(f"[{name}] not importable, skipped")
                continue
            baselines.append((name, fn))
            _report_accuracy(name, evaluate(args.te3_dir, resolver=fn))

    if args.throughput or args.compare:
        data = DATA  # RUWA and the live blog always come from ../shared/data
        rows = ruwa_rows(data)
        ruwa = ruwa_blocks(rows)
        live = liveblog_blocks(data)
        te3 = [(s.text, s.doc.published_at) for s in sentences_of(load_documents(args.te3_dir))]
        w = weekday_rule_check(ruwa, verbose=args.verbose)
        print(f"[weekday rule] RUWA blocks with an agreeing '<Weekday>, <Month> <day>': "
              f"{w['weekday_date_blocks']}; the weekday alone gives the same day in "
              f"{w['weekday_alone_same_day']} "
              f"({w['weekday_alone_same_day'] / max(w['weekday_date_blocks'], 1):.1%})")
        corpora = [("RUWA titles+desc", ruwa), ("liveblog sentences", live),
                   ("te3 sentences", te3)]
        for name, blocks in corpora:
            t = throughput(blocks * max(1, 20_000 // len(blocks)))
            print(f"[throughput] {name}: {t['blocks']} blocks ({t['mb']:.1f} MB) in "
                  f"{t['seconds']:.3f} s = {t['blocks_per_s']:,.0f} blocks/s "
                  f"(resolve_batch, best of 5); with a day: {t['with_day']}")
        for name, fn in baselines:
            sample = ruwa[::max(1, len(ruwa) // 1000)][:1000]
            t = time_resolver(fn, sample)
            mine = time_resolver(resolve_event_day, sample)
            print(f"[throughput] {name} on {t['blocks']} RUWA blocks: "
                  f"{t['blocks_per_s']:,.0f} blocks/s, with a day: {t['with_day']} "
                  f"(event_time on the same: {mine['blocks_per_s']:,.0f} blocks/s, "
                  f"with a day: {mine['with_day']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
