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
"""
from __future__ import annotations

import re

import apache_beam as beam
import pyarrow as pa

from schemas.models import BLOCK_SCHEMA
from transforms.common import stable_hash

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


def split_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    rows = [b for u in batch.to_pylist() for b in split_update(u)]
    return pa.RecordBatch.from_pylist(rows, schema=BLOCK_SCHEMA)


class SplitEvents(beam.PTransform):
    """Update batches -> block batches (one row per block, classified, with section/position)."""

    def expand(self, updates):
        return updates | "SplitBlocks" >> beam.Map(split_batch)
