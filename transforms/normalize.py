"""Normalize: block batches -> the same rows with normalized `text` and a `fingerprint`.

Normalization (vectorised with `pyarrow.compute`, no per-row Python):
1. Unicode NFKC (full-width letters, ligatures, non-breaking spaces become plain forms);
2. zero-width characters removed; curly/angled quotes become `'` and `"`; the dash family
   (hyphen variants, en and em dash, minus) becomes `-`;
3. every run of white space becomes one space; leading and trailing space removed.

The fingerprint (exact-duplicate key) is xxh3-64 of the canonical form: the normalized text
lower-cased, with every run of characters that are not letters or digits replaced by one
space. So re-typed copies — curly vs straight quotes, doubled spaces, a changed dash, a
different case — share a fingerprint.

Example: `“Kill list”  claims — denied` -> text `"Kill list" claims - denied`,
canonical `kill list claims denied`.

Guarantee: a block whose text is empty after normalization goes to rejects
(stage `normalize`, reason `empty_text`); every other block passes with its row intact.
"""
from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from transforms.common import REJECTS, reject

_ZERO_WIDTH = "[\u200b\u200c\u200d\u2060\ufeff\u00ad]"
_SINGLE_QUOTES = "[\u2018\u2019\u201a\u201b\u2032\u00b4`\u2039\u203a]"
_DOUBLE_QUOTES = "[\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb]"
_DASHES = "[\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d]"


def normalize_array(texts: pa.Array) -> pa.Array:
    a = pc.utf8_normalize(texts, form="NFKC")
    a = pc.replace_substring_regex(a, _ZERO_WIDTH, "")
    a = pc.replace_substring_regex(a, _SINGLE_QUOTES, "'")
    a = pc.replace_substring_regex(a, _DOUBLE_QUOTES, '"')
    a = pc.replace_substring_regex(a, _DASHES, "-")
    a = pc.replace_substring_regex(a, r"[\s\p{Z}]+", " ")
    return pc.utf8_trim_whitespace(a)


def canonical_array(normalized: pa.Array) -> pa.Array:
    a = pc.utf8_lower(normalized)
    a = pc.replace_substring_regex(a, r"[^\p{L}\p{N}]+", " ")
    return pc.utf8_trim_whitespace(a)


def fingerprint_array(canonical: pa.Array) -> pa.Array:
    # xxhash per value: Arrow compute has no stable string hash; this loop is ~1M values/s.
    digest = xxhash.xxh3_64_hexdigest
    return pa.array([digest(s.encode("utf-8")) for s in canonical.to_pylist()], pa.string())


def normalize_text(text: str) -> str:
    """The normalization of one string (same code path as the batch form)."""
    return normalize_array(pa.array([text])).to_pylist()[0]


def canonical_text(text: str) -> str:
    return canonical_array(normalize_array(pa.array([text]))).to_pylist()[0]


def fingerprint(text: str) -> str:
    return fingerprint_array(canonical_array(normalize_array(pa.array([text])))).to_pylist()[0]


def normalize_batch(batch: pa.RecordBatch) -> tuple[pa.Table, list[dict]]:
    """(rows with normalized text + fingerprint, reject rows for blocks that became empty)."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    text = normalize_array(table.column("text"))
    canon = canonical_array(text)
    empty = pc.equal(pc.utf8_length(canon), 0)
    rejects = []
    if pc.any(empty).as_py():
        bad = table.filter(empty)
        for r in bad.select(["source_uri", "line", "text"]).to_pylist():
            rejects.append(reject(r["source_uri"], r["line"], "normalize", "empty_text", r["text"]))
        keep = pc.invert(empty)
        table, text, canon = table.filter(keep), text.filter(keep), canon.filter(keep)
    table = table.set_column(table.schema.get_field_index("text"), "text", text)
    table = table.append_column("fingerprint", fingerprint_array(canon))
    return table, rejects


class _NormalizeFn(beam.DoFn):
    def process(self, batch):
        table, rejects = normalize_batch(batch)
        for r in rejects:
            yield beam.pvalue.TaggedOutput(REJECTS, r)
        if table.num_rows:
            yield table


class Normalize(beam.PTransform):
    """Block batches -> Arrow tables with normalized `text` and `fingerprint`; rejects tagged."""

    def expand(self, blocks):
        out = blocks | "NormalizeText" >> beam.ParDo(_NormalizeFn()).with_outputs(REJECTS, main="blocks")
        return {"blocks": out.blocks, REJECTS: out[REJECTS]}
