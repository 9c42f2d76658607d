"""Event-time resolver: the day a block of news text says its event happened.

Plain functions, no Beam. The pipeline's "Resolve event time" step calls
:func:`resolve_batch` on Arrow batches; tests call the functions directly.

Example (an article published Monday 2022-02-21 10:00 UTC)::

    >>> pub = datetime.datetime(2022, 2, 21, 10, 0, tzinfo=datetime.timezone.utc)
    >>> resolve_event_day("This comes after an explosion on Saturday that hit Luhansk.", pub)
    datetime.date(2022, 2, 19)
    >>> resolve_event_time("80 ceasefire violations throughout Sunday, 20 February.", pub)
    (datetime.datetime(2022, 2, 20, 0, 0, tzinfo=datetime.timezone.utc), 'text')
    >>> resolve_event_time("Russia mobilised more than 100,000 troops.", pub)
    (datetime.datetime(2022, 2, 21, 10, 0, tzinfo=datetime.timezone.utc), 'published')

Guarantee: deterministic and pure (the same text and publication time always give the
same answer; no clock, no locale, no I/O). A day is returned only when the text states a
DAY; otherwise the caller keeps the publication time. The reference day is the UTC date of
the publication time. ``resolve_event_time`` returns the publication time itself when the
stated day is the publication day, else that day at 00:00:00 UTC, so the UTC day of the
result is always the stated day.

Rules
-----
Text is matched case-insensitively (lower-cased once); capitals matter only for "May" and
"March". What counts as a stated day:

* ISO dates ``2022-02-20`` (also inside ``2022-02-20T10:00Z``).
* Day and month in either order, with optional weekday and year: ``20 February``,
  ``28th February``, ``the 20th of February``, ``March 3``, ``Feb. 28``, ``Feb 28``,
  ``Sunday, 20 February``, ``February 20, 2022``, ``Mon 21 Feb 2022``. Full month names
  and Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec (optional dot).
  "May" and "March" are also a modal and a verb ("Russia may 2", "thousands march 20
  km"): with them a date needs a cue: a preposition before it (on, from, until, by,
  before, after, of, ...), a weekday, a year, an ordinal ("may 3rd"), "of" ("3rd of
  May"), or a capital ("3 May"; "May 3" unless a count word follows: "March 15
  kilometres" is not a date).
* Relative days: ``yesterday`` and ``last night`` (-1), ``the day before yesterday`` (-2),
  ``today``, ``tonight``, ``this morning|afternoon|evening`` (0), ``tomorrow`` (+1),
  ``the day after tomorrow`` (+2), ``three days ago`` / ``3 days ago`` (-N, N <= 31).
  "USA Today", "Russia Today" and "the Today programme" are not days.
* Weekday names (full names; abbreviations only inside a date, as "Sun" is a newspaper;
  plurals "on Sundays" are habits, not days):

  - bare or "on <weekday>" -> the most recent such weekday on or before the publication
    day: "on Saturday" in a Monday article is two days before, "on Monday" in a Monday
    article is that Monday. English news uses the bare weekday for the past almost always
    (measured on RUWA below);
  - except when the weekday's sentence has, before it, a future cue (will, shall,
    scheduled, is/are (due) to, to be held, due to, expected to, set to, plan(s) to,
    going to, is/are planned for, 'll) with no past reporting verb or auxiliary (said, told, announced,
    according, was, were, had, ...) between cue and weekday: then it is the next such
    weekday on or after the publication day ("talks will take place on Friday"; but
    "he will stay in custody, the court said on Friday" stays in the past);
  - ``last|past <weekday>`` -> strictly before the publication day;
    ``next|coming|this coming <weekday>`` -> strictly after it;
    ``this <weekday>`` -> that weekday in the publication day's Monday-first week;
  - not days: Good/Black Friday, Super Tuesday, Bloody/Palm/Easter Sunday, Ash Wednesday,
    Cyber/Manic Monday, Giving Tuesday, the Sunday Times/Telegraph/Mirror/Express/Herald.
* Weekday with a date: the date wins. "Sunday, 20 February" is 20 February whether or not
  that day is a Sunday; the weekday is consumed with the date, never resolved on its own.
* "since <day>" starts a period that runs up to publication ("548 children injured since
  February 24"): it is not the event's day and is skipped.

What does not count: a month or a year alone ("in 1997", "in March 2021", "early
December", "last May"), numbers, distances, money and clock times ("100,000 troops",
"15 kilometres", "at 10.30", "80 ceasefire violations"), weeks ("last week"), and
numeric day/month forms other than ISO ("10.09.22", "3/4/2022": day/month order differs
between publishers, so they are ignored on purpose).

Year of a day without a year: the candidate (previous, same or next year) inside the
365-day window [publication day - 274 days, publication day + 90 days]. "December 31" in a
2 January article is the previous year; "April 7" in a 22 March article is 16 days ahead;
"June 3" in a 22 March article is 73 days ahead (same year); "September 1" in a 22 March
article is the previous September. The past is favoured 3:1 because news mostly reports
what happened. An explicit year ("20 February 2022") is honoured as written. Impossible
dates ("February 30"; "29 February" with no leap day in the window) are not days.

Several days in one block: the FIRST stated day in text order that is not after the
publication day wins; if every stated day is in the future, the first one wins (future
days stay future days: "closures begin on April 7", "next Friday", "tomorrow").

Speed: the text is lower-cased and searched once for anchor words (weekday and month
names, yesterday/today/tonight/tomorrow, morning/afternoon/evening/night, ago) with a
trie-shaped regex; ISO dates are searched only when the text has a "-". A block without
an anchor returns at once (most news blocks); the detailed patterns run only at anchors.
On an Arrow column, `may_state_day` (RE2) picks the rows that can hold an anchor first.

Why hand-written rules and not a library: on TempEval-3 platinum and on RUWA blocks
(``benchmarks/tempeval.py``; accuracy and speed figures in BENCHMARKS.md) these rules find
more of the stated days, state far fewer false ones and are much faster than
``dateparser.search.search_dates`` and ``dateutil.parser.parse(fuzzy=True)``, which turn
years and stray numbers into days ("killed 105 children" -> the year 105) and resolve a
bare weekday forward: neither knows that "on Saturday" in a Monday article is the
Saturday before.
"""

from __future__ import annotations

import datetime
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["resolve_event_day", "resolve_event_time", "resolve_batch"]

UTC = datetime.timezone.utc
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_US_PER_DAY = 86_400_000_000

# Window for a month-day without a year, in days relative to the publication day.
PAST_WINDOW_DAYS = 274
FUTURE_WINDOW_DAYS = 90

_WEEKDAYS = {
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3,
    "friday": 4, "saturday": 5, "sunday": 6,
}
_WEEKDAY_ABBR = {
    "mon": 0, "tue": 1, "tues": 1, "wed": 2, "thu": 3, "thur": 3, "thurs": 3,
    "fri": 4, "sat": 5, "sun": 6,
}
_MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3,
    "april": 4, "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7,
    "august": 8, "aug": 8, "september": 9, "sept": 9, "sep": 9, "october": 10,
    "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}
_NUMBER_WORDS = {
    "a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}
_RELATIVE = {"yesterday": -1, "today": 0, "tonight": 0, "tomorrow": 1}

# Words before a month name that make "May"/"March" a date rather than a modal/verb.
_DATE_PREPOSITIONS = frozenset(
    "on since from until till by before after of between and to through".split()
)
# Words after "May 3" / "March 15" that make the number a count, not a day.
_COUNT_WORDS = frozenset(
    "km kms kilometres kilometers kilometre kilometer miles mile metres meters "
    "percent per people persons troops soldiers civilians men women children times "
    "years year months month weeks week days day hours hour minutes minute "
    "million billion thousand hundred dollars euros tanks points".split()
)
_WEEKDAY_NOT_BEFORE = frozenset(
    "good black bloody super ash palm easter holy maundy cyber giving manic".split()
)
_WEEKDAY_NOT_AFTER = frozenset(
    "times telegraph mirror express herald".split()
)
_TODAY_NOT_BEFORE = frozenset("usa russia the".split())

_DAY_RE = r"3[01]|[12][0-9]|0?[1-9]"
_YEAR_RE = r"1[6-9][0-9][0-9]|20[0-9][0-9]"
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))


def _trie_regex(words: list[str]) -> str:
    """A regex alternation of `words` factored as a trie, so the regex engine rejects a
    position after one character comparison instead of one per word."""
    trie: dict = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict) -> str:
        alts = [re.escape(ch) + emit(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


# Every stated day contains one of these words (the text is lower-cased first), except
# ISO dates, which are looked for only when the text has a "-". This one search is the
# pre-filter: a block without an anchor returns None at once.
_ANCHOR_KIND: dict[str, str] = {
    **{w: "weekday" for w in _WEEKDAYS},
    **{w: "weekday_abbr" for w in _WEEKDAY_ABBR},
    **{w: "month" for w in _MONTHS},
    **{w: "relative" for w in ("yesterday", "today", "tonight", "tomorrow")},
    **{w: "daypart" for w in ("morning", "afternoon", "evening", "night")},
    "ago": "ago",
}
_ANCHOR = re.compile(r"\b" + _trie_regex(sorted(_ANCHOR_KIND)) + r"\b")
# The same pre-filters for a whole Arrow column at once, in RE2 (see `may_state_day`).
_ANCHOR_RE2 = "(?i)\\b" + _trie_regex(sorted(_ANCHOR_KIND)) + "\\b"
_ISO_RE2 = r"(?:1[6-9]\p{Nd}\p{Nd}|20\p{Nd}\p{Nd})-(?:0[1-9]|1[0-2])-(?:3[01]|[12]\p{Nd}|0[1-9])"
# the only characters whose str.lower() holds an ASCII letter: İ -> "i̇", KELVIN SIGN -> "k"
_LOWER_TO_ASCII = "[\u0130\u212a]"
# the three in one pattern: one pass of RE2 over the column instead of three
_MAY_STATE_DAY_RE2 = f"(?:{_ANCHOR_RE2})|(?:{_ISO_RE2})|{_LOWER_TO_ASCII}"
_ISO = re.compile(r"(1[6-9]\d\d|20\d\d)-(0[1-9]|1[0-2])-(3[01]|[12]\d|0[1-9])(?!\d)(?!-\d)")
# Month-day, matched at the month: "february 20", "feb. 28th", "march 3, 2021".
_MONTH_FIRST = (
    rf"(?P<m2>{_MONTH_RE})\.?\s+(?:the\s+)?(?P<d2>{_DAY_RE})(?P<s2>st|nd|rd|th)?"
    rf"(?!\w)(?![.,:]\d)(?:,?\s+(?P<y2>{_YEAR_RE})(?!\d))?"
)
# Day-month, matched at the day: "20 february", "20th of february, 2022".
_DAY_FIRST = (
    rf"(?<![\d.,:/-])(?P<d1>{_DAY_RE})(?P<s1>st|nd|rd|th)?(?P<of>\s+of)?\s+"
    rf"(?P<m1>{_MONTH_RE})\b\.?(?:,?\s+(?P<y1>{_YEAR_RE})(?!\d))?"
)
_MF_AT = re.compile(_MONTH_FIRST)
_DF_AT = re.compile(_DAY_FIRST)
_DF_DAY_BEFORE = re.compile(rf"\b(?:{_DAY_RE})(?:st|nd|rd|th)?(?:\s+of)?\s+$")
_DATE_AFTER_WEEKDAY = re.compile(rf"\.?,?\s+(?:the\s+)?(?:{_DAY_FIRST}|{_MONTH_FIRST})")
_WEEKDAY_MOD = re.compile(r"\b(this\s+coming|next|coming|last|past|this)\s+$")
_DAYS_AGO = re.compile(
    r"\b(a|one|two|three|four|five|six|seven|eight|nine|ten|[1-9]|[12][0-9]|3[01])\s+days?\s+$"
)
# A bare weekday with one of these earlier in its sentence (and no past-tense reporting
# verb or auxiliary between them) is the next such weekday: "talks will take place on
# Monday", "Putin is scheduled to speak on Friday".
_FUTURE_CUE = re.compile(
    r"\b(?:will|shall|scheduled|(?:is|are)\s+(?:due\s+)?to|to\s+be\s+held|due\s+to|"
    r"expected\s+to|set\s+to|plans?\s+to|planning\s+to|going\s+to|(?:is|are)\s+planned\s+for)\b|'ll\b"
)
_PAST_BETWEEN = re.compile(
    r"\b(?:said|says|told|announced|reported|according|added|confirmed|stated|claimed|"
    r"wrote|was|were|had|did)\b"
)
_WORD_BEFORE = re.compile(r"([a-z]+)[^a-z0-9]*$")
_WORD_AFTER = re.compile(r"[^a-z0-9%]*([a-z%]+)")


def _word_before(low: str, pos: int) -> str:
    m = _WORD_BEFORE.search(low, max(0, pos - 24), pos)
    return m.group(1) if m else ""


def _word_after(low: str, pos: int) -> str:
    m = _WORD_AFTER.match(low, pos, pos + 24)
    return m.group(1) if m else ""


def _month_day(month: int, day: int, year: int | None, pub_ord: int) -> int | None:
    """Ordinal of the stated day, or None when the date cannot exist."""
    if year is not None:
        try:
            return datetime.date(year, month, day).toordinal()
        except ValueError:
            return None
    pub_year = datetime.date.fromordinal(pub_ord).year
    low, high = pub_ord - PAST_WINDOW_DAYS, pub_ord + FUTURE_WINDOW_DAYS
    for y in (pub_year, pub_year - 1, pub_year + 1):
        try:
            o = datetime.date(y, month, day).toordinal()
        except ValueError:
            continue
        if low <= o <= high:
            return o
    return None


def _date_ordinal(
    m: re.Match, text: str, low: str, pub_ord: int, after_weekday: bool
) -> int | None:
    """Ordinal of a _DAY_FIRST / _MONTH_FIRST match, applying the May/March guard."""
    day_first = "d1" in m.re.groupindex and m.group("d1") is not None
    g = (lambda name: m.group(name + "1")) if day_first else (lambda name: m.group(name + "2"))
    month_word = g("m")
    month = _MONTHS[month_word]
    year = g("y")
    if month_word in ("may", "march") and not after_weekday and year is None:
        start = m.start("m1" if day_first else "m2")
        capital = text[start].isupper()
        before = _word_before(low, m.start())
        if before in _DATE_PREPOSITIONS:
            pass
        elif day_first:
            if not (m.group("of") or capital):
                return None
        elif not (m.group("s2") or (capital and _word_after(low, m.end()) not in _COUNT_WORDS)):
            return None
    return _month_day(month, int(g("d")), int(year) if year else None, pub_ord)


def _future_context(low: str, start: int) -> bool:
    """True when the sentence before `start` puts a bare weekday in the future."""
    lo = max(0, start - 120)
    for stop in (". ", "! ", "? ", "; "):
        i = low.rfind(stop, lo, start)
        if i >= 0:
            lo = i + 2
    cue = None
    for cue in _FUTURE_CUE.finditer(low, lo, start):
        pass
    return cue is not None and _PAST_BETWEEN.search(low, cue.end(), start) is None


def _weekday_ordinal(wd: int, mod: str | None, pub_ord: int) -> int:
    pub_wd = (pub_ord - 1) % 7  # date.fromordinal(1) is a Monday
    back = (pub_wd - wd) % 7  # days back to the most recent such weekday (0 = today)
    if mod is None:
        return pub_ord - back
    mod = " ".join(mod.split())
    if mod in ("last", "past"):
        return pub_ord - (back or 7)
    if mod in ("next", "coming", "this coming"):
        return pub_ord + ((wd - pub_wd) % 7 or 7)
    # "this <weekday>": that weekday in the publication day's Monday-first week.
    return pub_ord + (wd - pub_wd)


def _stated_days(text: str, pub_ord: int) -> list[tuple[int, int]]:
    """(position, ordinal) of every day the text states, in text order."""
    low = text.lower()
    if len(low) != len(text):  # rare Unicode case changes: keep offsets aligned
        text = low
    found: list[tuple[int, int]] = []
    if "-" in low:
        for m in _ISO.finditer(low):
            if m.start() and low[m.start() - 1] in "0123456789/.-" \
                    or _word_before(low, m.start()) == "since":
                continue
            try:
                o = datetime.date(int(m[1]), int(m[2]), int(m[3])).toordinal()
            except ValueError:
                continue
            found.append((m.start(), o))
    skip_to = 0
    for a in _ANCHOR.finditer(low):
        start, end = a.span()
        if start < skip_to:
            continue
        word = a.group()
        kind = _ANCHOR_KIND[word]
        o: int | None = None
        pos = start
        if kind == "month":
            before = _DF_DAY_BEFORE.search(low, max(0, start - 16), start)
            m = _DF_AT.match(low, before.start()) if before else None
            if m is None or m.start("m1") != start:
                m = _MF_AT.match(low, start)
            if m is None:
                continue
            pos, skip_to = m.start(), m.end()
            o = _date_ordinal(m, text, low, pub_ord, after_weekday=False)
        elif kind in ("weekday", "weekday_abbr"):
            m = _DATE_AFTER_WEEKDAY.match(low, end)
            if m is not None:
                skip_to = m.end()
                o = _date_ordinal(m, text, low, pub_ord, after_weekday=True)
            elif kind == "weekday":
                mod = _WEEKDAY_MOD.search(low, max(0, start - 16), start)
                if mod is not None:
                    pos = mod.start()
                elif _word_before(low, start) in _WEEKDAY_NOT_BEFORE:
                    continue
                if _word_after(low, end) in _WEEKDAY_NOT_AFTER:
                    continue
                if mod is None and _future_context(low, start):
                    o = pub_ord + (_WEEKDAYS[word] - pub_ord + 1) % 7
                else:
                    o = _weekday_ordinal(_WEEKDAYS[word], mod and mod.group(1), pub_ord)
        elif kind == "relative":
            offset = _RELATIVE[word]
            before = _word_before(low, start)
            if word == "today":
                if before in _TODAY_NOT_BEFORE or _word_after(low, end) in ("programme", "show"):
                    continue
            elif low.endswith("the day before ", 0, start):
                pos, offset = start - 15, offset - 1
            elif low.endswith("the day after ", 0, start):
                pos, offset = start - 14, offset + 1
            o = pub_ord + offset
        elif kind == "daypart":
            before = _word_before(low, start)
            if before == "this" and word != "night":
                o = pub_ord
            elif before == "last" and word == "night":
                o = pub_ord - 1
            else:
                continue
            pos = start - 5
        else:  # "ago"
            m = _DAYS_AGO.search(low, max(0, start - 16), start)
            if m is None:
                continue
            n = _NUMBER_WORDS.get(m.group(1))
            pos, o = m.start(), pub_ord - (n if n is not None else int(m.group(1)))
        if o is not None and _word_before(low, pos) != "since":
            found.append((pos, o))
    if len(found) > 1:
        found.sort()
    return found


def _resolve_ordinal(text: str, pub_ord: int) -> int | None:
    """Proleptic ordinal of the stated day (rule: first non-future, else first)."""
    if not text:
        return None
    found = _stated_days(text, pub_ord)
    for _, o in found:
        if o <= pub_ord:
            return o
    return found[0][1] if found else None


def _as_utc(published_at: datetime.datetime) -> datetime.datetime:
    if published_at.tzinfo is None:  # naive values are taken to be UTC already
        return published_at.replace(tzinfo=UTC)
    return published_at.astimezone(UTC)


def resolve_event_day(text: str, published_at: datetime.datetime) -> datetime.date | None:
    """The day the block says the event happened, or None when no day is stated."""
    pub_ord = _as_utc(published_at).date().toordinal()
    o = _resolve_ordinal(text, pub_ord)
    return None if o is None else datetime.date.fromordinal(o)


def resolve_event_time(
    text: str, published_at: datetime.datetime
) -> tuple[datetime.datetime, str]:
    """(event_time as tz-aware UTC datetime, 'text' | 'published').

    The publication time when no day is stated ('published') or when the stated day is
    the publication day ('text'); otherwise the stated day at 00:00:00 UTC ('text').
    """
    pub = _as_utc(published_at)
    pub_ord = pub.date().toordinal()
    o = _resolve_ordinal(text, pub_ord)
    if o is None:
        return pub, "published"
    if o == pub_ord:
        return pub, "text"
    d = datetime.date.fromordinal(o)
    return datetime.datetime(d.year, d.month, d.day, tzinfo=UTC), "text"


def may_state_day(texts) -> np.ndarray:
    """Rows of an Arrow string column on which the rules can find a day, computed by RE2: a
    superset of the rows where `_ANCHOR` or `_ISO` matches the lower-cased text. RE2's `\\b`
    is ASCII-only, so it sees a word boundary wherever Python's Unicode `\\b` does (and more);
    its case-insensitive match covers `str.lower()` except for the two characters that
    lower-case to an ASCII letter, whose rows are always taken; `\\p{Nd}` is Python's `\\d`."""
    hit = pc.match_substring_regex(texts, _MAY_STATE_DAY_RE2)
    return hit.fill_null(False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def resolve_batch(texts, published_us: list[int]) -> list[int | None]:
    """The event times of a column of blocks: `published_us` are UTC epoch microseconds; for
    each row the resolved event time in UTC epoch microseconds, or None where no day is stated
    (the caller keeps the publication time).

    Same rules as :func:`resolve_event_time`: a stated publication day gives the
    publication time itself, any other stated day its 00:00 UTC. A null text or null
    publication time gives None. `texts` is an Arrow string column (or a list of strings,
    made one); `may_state_day` picks the rows the rules look at (most blocks state no day
    and never become Python strings).
    """
    if len(texts) != len(published_us):
        raise ValueError(f"resolve_batch: {len(texts)} texts but {len(published_us)} publication times")
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = pa.array(texts, pa.string())
    out: list[int | None] = [None] * len(texts)
    rows = np.flatnonzero(may_state_day(texts))
    for i, text in zip(rows.tolist(), texts.take(pa.array(rows, pa.int64())).to_pylist()):
        pub_us = published_us[i]
        if text is None or pub_us is None:
            continue
        pub_ord = pub_us // _US_PER_DAY + _EPOCH_ORDINAL
        o = _resolve_ordinal(text, pub_ord)
        if o is not None:
            out[i] = pub_us if o == pub_ord else (o - _EPOCH_ORDINAL) * _US_PER_DAY
    return out
