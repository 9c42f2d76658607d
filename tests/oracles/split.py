"""Splitting, one update at a time: the oracle of `transforms.split.split_batch`.

`classify` is the rule of DESIGN.md for one line; `split_update` gives the blocks of one
update row; `split_rows` applies it to every row of an update batch.
"""
from __future__ import annotations

import pyarrow as pa

from schemas.models import BLOCK_SCHEMA
from transforms.common import stable_hash
from transforms.split import CLOSING, LIST_MARKER, SMALL_WORDS, TRAILING_QUOTES, WORD


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


