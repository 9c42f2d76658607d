"""Normalization by its definition: the oracle of `transforms.normalize`.

Python's NFKC on every value, then RE2 regular-expression passes over the whole array
(zero-width characters, quotes, dashes, white-space runs); the canonical form lower-cases
and turns every run of characters that are not letters or digits into one space; the
fingerprint is xxhash's hex digest of each value.
"""
from __future__ import annotations

import unicodedata

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from transforms.common import reject


_ZERO_WIDTH = "[\u200b\u200c\u200d\u2060\ufeff\u00ad]"
_SINGLE_QUOTES = "[\u2018\u2019\u201a\u201b\u2032\u00b4`\u2039\u203a]"
_DOUBLE_QUOTES = "[\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb]"
_DASHES = "[\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d]"


def nfkc_array(texts):
    """unicodedata.normalize("NFKC", ...) of every value (not Arrow's utf8_normalize, which in
    pyarrow 25 does not compose: apache/arrow#51225)."""
    if isinstance(texts, pa.ChunkedArray):
        return pa.chunked_array([nfkc_array(c) for c in texts.chunks], type=texts.type)
    texts.validate(full=True)
    return pa.array([None if s is None else unicodedata.normalize("NFKC", s) for s in texts.to_pylist()],
                    texts.type)


def normalize_array(texts: pa.Array) -> pa.Array:
    a = nfkc_array(texts)
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
    digest = xxhash.xxh3_64_hexdigest
    return pa.array([digest(s.encode("utf-8")) for s in canonical.to_pylist()], pa.string())


def normalize_batch(batch: pa.RecordBatch) -> tuple[pa.Table, list[dict]]:
    """Row by row: each block with its normalized text and the fingerprint of its canonical
    form; a block whose canonical form is empty is a reject (`empty_text`) instead."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    texts = normalize_array(table.column("text"))
    canonical = canonical_array(texts).to_pylist()
    kept, rejects = [], []
    for row, text, canon in zip(table.to_pylist(), texts.to_pylist(), canonical):
        if canon:
            kept.append({**row, "text": text, "fingerprint": xxhash.xxh3_64_hexdigest(canon.encode("utf-8"))})
        else:
            rejects.append(reject(row["source_uri"], row["line"], "normalize", "empty_text", row["text"]))
    i = table.schema.get_field_index("text")
    schema = table.schema.set(i, pa.field("text", texts.type)).append(pa.field("fingerprint", pa.string()))
    return pa.Table.from_pylist(kept, schema=schema), rejects
