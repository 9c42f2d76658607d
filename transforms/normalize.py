"""Normalize: block batches -> the same rows with normalized `text` and a `fingerprint`.

Normalization:
1. Unicode NFKC, as Python's `unicodedata.normalize("NFKC", ...)` (Python's Unicode data):
   full-width letters, ligatures, super/subscripts, non-breaking spaces become plain forms, and
   decomposed letters are composed (`e` + U+0301 -> `é`, `і` + U+0308 -> `ї`, Hangul jamo ->
   syllables). Not Arrow's `utf8_normalize`: in pyarrow 25 it never composes (apache/arrow#51225);
2. zero-width characters removed; curly/angled quotes become `'` and `"`; the dash family
   (hyphen variants, en and em dash, minus) becomes `-`;
3. every run of white space becomes one space; leading and trailing space removed.
Steps 2 and 3 run after NFKC, so a zero-width character between a letter and a combining mark
(`e` U+200B U+0301) leaves them uncomposed (`e` + U+0301) in the result.

The fingerprint (exact-duplicate key) is xxh3-64 of the canonical form: the normalized text
lower-cased, with every run of characters that are not letters or digits replaced by one
space. So re-typed copies — curly vs straight quotes, doubled spaces, a changed dash, a
different case, a composed vs decomposed accent — share a fingerprint.

Example: `“Kill list”  claims — denied` -> text `"Kill list" claims - denied`,
canonical `kill list claims denied`; `Zu\u0308rich` -> text `Zürich`, canonical `zürich`.

How: numpy on the UTF-8 bytes. Python's NFKC runs only on the rows holding a character that
is not "NFKC-inert" (see `_nfkc_inert`); every other row is NFKC-normalized already. The
definition it equals, Python's NFKC then RE2 regex passes with the character classes below,
is the tests' oracle (`tests/oracles/normalize.py`).

Guarantee: a block whose text is empty after normalization goes to rejects
(stage `normalize`, reason `empty_text`); every other block passes with its row intact.
"""
from __future__ import annotations

import threading
import unicodedata

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from transforms.common import REJECTS, hex_strings, reject, string_view, utf8_code_points

# The character classes of steps 2 and 3 and of the canonical form, in RE2 syntax.
_ZERO_WIDTH = "[\u200b\u200c\u200d\u2060\ufeff\u00ad]"
_SINGLE_QUOTES = "[\u2018\u2019\u201a\u201b\u2032\u00b4`\u2039\u203a]"
_DOUBLE_QUOTES = "[\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb]"
_DASHES = "[\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d]"
_WS_RUN = r"[\s\p{Z}]+"
_NON_ALNUM_RUN = r"[^\p{L}\p{N}]+"


# Each regex pass of the definition (Python NFKC, then RE2 passes with the classes above)
# either maps single characters (done at the few multi-byte characters and back-ticks) or
# collapses every maximal run of one character class into one space (done
# with a per-byte class mask). RE2's classes are taken from RE2 itself, one code point at a
# time, the first time a code point is seen; ASCII classes are fixed (checked in the tests).

_KNOWN, _WS, _NON_ALNUM, _NFKC_INERT = 1, 2, 4, 8
_CP_FLAGS = np.zeros(0x110000, np.uint8)  # code point -> the bits above, filled on first sight
_CP_LOCK = threading.Lock()
_COMPOSE_SECOND: frozenset | None = None

_DELETE = 1  # _REPLACE value: drop the character; other non-zero values: the ASCII byte it becomes
_REPLACE = np.zeros(0x110000, np.uint8)
for _chars, _to in ((_ZERO_WIDTH, _DELETE), (_SINGLE_QUOTES, ord("'")), (_DOUBLE_QUOTES, ord('"')),
                    (_DASHES, ord("-"))):
    for _c in _chars[1:-1]:
        if ord(_c) >= 0x80:  # the one ASCII member, the back-tick, is handled on its own
            _REPLACE[ord(_c)] = _to
del _chars, _to, _c
_BACKTICK, _ASCII_WS_CONTROLS = 0x60, (0x09, 0x0A, 0x0C, 0x0D)  # RE2 \s is [\t\n\f\r ]


def _composition_seconds() -> frozenset:
    """Code points that can combine with the character before them under NFC/NFKC (NFKC_QC=Maybe)."""
    global _COMPOSE_SECOND
    if _COMPOSE_SECOND is None:
        seconds = set(range(0x1100, 0x1200))  # conjoining Hangul jamo compose algorithmically
        for cp in range(0x110000):
            d = unicodedata.decomposition(chr(cp))
            if d and d[0] != "<":
                parts = d.split()
                if len(parts) == 2 and unicodedata.normalize("NFC", chr(cp)) == chr(cp):
                    seconds.add(int(parts[1], 16))
        _COMPOSE_SECOND = frozenset(seconds)
    return _COMPOSE_SECOND


def _nfkc_inert(c: str, seconds: frozenset) -> bool:
    """NFKC_QC=Yes and combining class 0, in Python's Unicode data (unassigned, surrogate and
    private-use code points: counted as not inert, so their rows take the slow, exact way).

    Python's NFKC leaves a string of only such characters (and ASCII, all inert) unchanged: the
    UAX #15 quick check answers Yes for it, since no character is NFKC_QC=No (a character alone
    unchanged by NFKC is not No) or Maybe (the composition seconds are excluded: every character
    that can compose with one before it, Hangul V and T jamo included), and with every combining
    class 0 there is nothing to reorder. Characters that can compose with one *after* them (`e`,
    `і`, Hangul LV syllables) are inert: what follows them is then a second, not inert. (All of
    U+1100..U+11FF counts as seconds, a superset of the V and T jamo.)"""
    return (unicodedata.category(c) not in ("Cn", "Cs", "Co") and unicodedata.combining(c) == 0
            and ord(c) not in seconds and unicodedata.is_normalized("NFKC", c))


def _learn(cps: np.ndarray) -> None:
    with _CP_LOCK:
        cps = cps[(_CP_FLAGS[cps] & _KNOWN) == 0]
        if not cps.size:
            return
        chars = [chr(c) for c in cps.tolist()]
        s = pa.array(chars, pa.string())
        ws = pc.match_substring_regex(s, _WS_RUN[:-1]).to_numpy(zero_copy_only=False)
        non_alnum = pc.match_substring_regex(s, _NON_ALNUM_RUN[:-1]).to_numpy(zero_copy_only=False)
        seconds = _composition_seconds()
        inert = np.array([_nfkc_inert(c, seconds) for c in chars], bool)
        _CP_FLAGS[cps] = _KNOWN | (ws * _WS) | (non_alnum * _NON_ALNUM) | (inert * _NFKC_INERT)


def _flags(cp: np.ndarray) -> np.ndarray:
    f = _CP_FLAGS[cp]
    unknown = (f & _KNOWN) == 0
    if unknown.any():
        _learn(np.unique(cp[unknown]))
        f = _CP_FLAGS[cp]
    return f


def _strings(arr) -> bool:
    """Whether the kernels have work: False for an empty array. Not a string array:
    ArrowNotImplementedError; invalid UTF-8: ArrowInvalid."""
    if arr.type not in (pa.string(), pa.large_string()):
        raise pa.ArrowNotImplementedError(f"normalize a {arr.type} array: not a string array")
    arr.validate(full=True)
    return len(arr) > 0


def _build(like: pa.Array, data: pa.Buffer, off: np.ndarray) -> pa.Array:
    odt = np.int32 if like.type == pa.string() else np.int64
    out = pa.Array.from_buffers(like.type, len(like), [None, pa.py_buffer(off.astype(odt)), data])
    if like.null_count:
        out = pc.if_else(like.is_valid(), out, pa.scalar(None, like.type))
    return out


def _expand(first: np.ndarray, count: np.ndarray) -> np.ndarray:
    """first[i], first[i] + 1, ..., first[i] + count[i] - 1 for every i, in order."""
    total = int(count.sum())
    ends = np.cumsum(count)
    return np.repeat(first - (ends - count), count) + np.arange(total)


def _mark(mask: np.ndarray, lead: np.ndarray, nb: np.ndarray) -> None:
    """Set mask on every byte of the characters starting at lead (nb bytes each)."""
    if lead.size:
        mask[_expand(lead, nb)] = True


def _compact(b: np.ndarray, off: np.ndarray, drop: np.ndarray) -> tuple[pa.Buffer, np.ndarray]:
    """(b without the bytes where `drop` is set, offsets moved to match)."""
    n = len(b)
    bits = np.packbits(drop, bitorder="little")
    words = np.zeros((n >> 6) + 1, "<u8")  # bit j of words[w]: drop[64 * w + j]
    words.view(np.uint8)[: len(bits)] = bits
    before = np.zeros(len(words), np.int64)  # dropped bytes before word w
    np.cumsum(np.bitwise_count(words[:-1]), dtype=np.int64, out=before[1:])
    w = off >> 6
    below = (np.uint64(1) << (off & 63).astype(np.uint64)) - np.uint64(1)
    off = off - before[w] - np.bitwise_count(words[w] & below)
    keep = pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(np.invert(bits))])
    kept = pc.filter(pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(b)]), keep)
    data = kept.buffers()[1]
    return (pa.py_buffer(b"") if data is None else data.slice(kept.offset, len(kept))), off


def _collapse(b: np.ndarray, off: np.ndarray, cls: np.ndarray, dirty: bool, gone: np.ndarray | None = None):
    """Every maximal run of `cls` bytes inside a row -> one space, after deleting the bytes at
    `gone` (sorted positions; a run goes on across them). (data, offsets), or None if nothing
    changes. `dirty`: the bytes differ from the input already, or a `cls` byte may not be a space."""
    n = len(b)
    if gone is not None and gone.size:
        # a deleted byte takes the class of the kept byte before it in its row (none: no class)
        at_row_start = off[np.searchsorted(off, gone, "right") - 1] == gone
        first = at_row_start.copy()
        first[0] = True
        first[1:] |= gone[1:] != gone[:-1] + 1
        block = np.cumsum(first) - 1
        cls[gone] = (cls[np.maximum(gone[first] - 1, 0)] & ~at_row_start[first])[block]
    drop = np.empty(n, bool)
    drop[:1] = False
    np.logical_and(cls[1:], cls[:-1], out=drop[1:])
    starts = off[:-1]
    drop[starts[starts < n]] = False  # a run never continues into the next row
    if gone is not None:
        drop[gone] = True
    if not dirty and not drop.any():
        return None
    out = np.subtract(np.uint8(0x20), b)  # out = where(cls, space, b), without a branch per byte
    out *= cls
    out += b
    return _compact(out, off, drop)


def _normalize_chunk(arr: pa.Array) -> pa.Array:
    if not _strings(arr):
        return arr
    b, off = string_view(arr)
    lead, cp, nb = utf8_code_points(b)
    # 1. NFKC (Python's), only on rows with a character that is not NFKC-inert (none in ASCII)
    if lead.size:
        bad = (_flags(cp) & _NFKC_INERT) == 0
        if bad.any():
            row = np.searchsorted(off, lead, "right") - 1
            cand = np.unique(row[bad])
            nfkc = unicodedata.normalize
            changed, subs = [], []
            for i, t in zip(cand.tolist(), arr.take(pa.array(cand)).to_pylist()):
                n = None if t is None else nfkc("NFKC", t)
                if n is None or n != t:  # (a null row is replaced too: no stray bytes stay)
                    changed.append(i)
                    subs.append(n)
            if changed:
                rows = np.zeros(len(arr), bool)
                rows[changed] = True
                sub = pa.array(subs, arr.type)
                arr = pc.replace_with_mask(arr, pa.array(rows), sub)
                b, new_off = string_view(arr)
                # multi-byte characters: the other rows' moved, the normalized rows' decoded afresh
                kept = ~rows[row]
                sub_b, sub_off = string_view(sub)
                sub_lead, sub_cp, sub_nb = utf8_code_points(sub_b)
                sub_row = np.searchsorted(sub_off, sub_lead, "right") - 1
                at = np.flatnonzero(rows)[sub_row]
                lead = np.concatenate([lead[kept] + (new_off - off)[row[kept]], new_off[at] + (sub_lead - sub_off[sub_row])])
                order = np.argsort(lead, kind="stable")
                lead, cp, nb = lead[order], np.concatenate([cp[kept], sub_cp])[order], np.concatenate([nb[kept], sub_nb])[order]
                off = new_off
    # 2. zero-width characters, quotes and dashes: one character -> one byte or none
    ticks = np.flatnonzero(b == _BACKTICK)
    to = _REPLACE[cp]
    mapped = to != 0
    gone = None
    if ticks.size or mapped.any():
        b = b.copy()
        b[ticks] = ord("'")
        ml, mt, mn = lead[mapped], to[mapped], nb[mapped]
        keep1 = mt != _DELETE
        b[ml[keep1]] = mt[keep1]
        gone = _expand(np.where(keep1, ml + 1, ml), np.where(keep1, mn - 1, mn))  # deleted in 3.
        lead, cp, nb = lead[~mapped], cp[~mapped], nb[~mapped]
    # 3. runs of RE2 [\s\p{Z}] -> one space
    cls = b == 0x20
    controls = np.flatnonzero(b < 0x20)
    controls = controls[np.isin(b[controls], _ASCII_WS_CONTROLS)]
    cls[controls] = True
    wide = (_flags(cp) & _WS) != 0
    _mark(cls, lead[wide], nb[wide])
    done = _collapse(b, off, cls, dirty=gone is not None or bool(controls.size or wide.any()), gone=gone)
    return pc.utf8_trim_whitespace(arr if done is None else _build(arr, *done))


def _canonical_chunk(arr: pa.Array) -> pa.Array:
    if not _strings(arr):
        return arr
    low = pc.utf8_lower(arr)
    b, off = string_view(low)
    lead, cp, nb = utf8_code_points(b)
    # RE2 [^\p{L}\p{N}]: in ASCII, everything but [0-9A-Za-z]; other characters by their flag
    x = np.bitwise_or(b, np.uint8(0x20))
    x -= np.uint8(ord("a"))
    cls = np.greater(x, 25)
    np.subtract(b, np.uint8(ord("0")), out=x)
    flag = x.view(bool)
    cls &= np.greater(x, 9, out=flag)
    cls &= np.less(b, 0x80, out=flag)
    wide = (_flags(cp) & _NON_ALNUM) != 0
    _mark(cls, lead[wide], nb[wide])
    return pc.utf8_trim_whitespace(_build(low, *_collapse(b, off, cls, dirty=True)))


def normalize_array(texts: pa.Array) -> pa.Array:
    """Steps 1-3 of the module docstring on every value of a (chunked) string array; nulls
    stay null."""
    if isinstance(texts, pa.ChunkedArray):
        return pa.chunked_array([_normalize_chunk(c) for c in texts.chunks], type=texts.type)
    return _normalize_chunk(texts)


def canonical_array(normalized: pa.Array) -> pa.Array:
    """The canonical form (the fingerprint's input) of every normalized value."""
    if isinstance(normalized, pa.ChunkedArray):
        return pa.chunked_array([_canonical_chunk(c) for c in normalized.chunks], type=normalized.type)
    return _canonical_chunk(normalized)


def _hex16(d: np.ndarray) -> pa.Array:
    """uint64 digests -> 16-character lower-case hex strings (xxhash's hexdigest: big-endian)."""
    return hex_strings(d.astype(">u8").view(np.uint8).reshape(len(d), 8), 16)


def fingerprint_array(canonical: pa.Array) -> pa.Array:
    """xxh3-64 hex digests of the canonical values: xxhash per value over the UTF-8 bytes in
    the Arrow buffer (Arrow compute has no stable string hash), hex digits formed with numpy.
    A null value is a ValueError (it has no fingerprint)."""
    chunks = canonical.chunks if isinstance(canonical, pa.ChunkedArray) else [canonical]
    if canonical.type not in (pa.string(), pa.large_string()):
        raise pa.ArrowNotImplementedError(f"fingerprint of a {canonical.type} array: not a string array")
    if canonical.null_count:
        raise ValueError(f"fingerprint of {canonical.null_count} null values")
    digest = xxhash.xxh3_64_intdigest
    parts = []
    for c in chunks:
        if not len(c):
            continue
        b, off = string_view(c)
        mv, o = memoryview(b), off.tolist()
        parts.append(np.fromiter((digest(mv[i:j]) for i, j in zip(o, o[1:])), np.uint64, count=len(c)))
    return _hex16(np.concatenate(parts) if parts else np.empty(0, np.uint64))


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
