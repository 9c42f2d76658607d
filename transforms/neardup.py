"""Near-duplicate detection inside one event-day window (plain function, no Beam).

`near_duplicates(texts)` takes the day's distinct event texts in keep-priority order (index 0
is kept first) and groups lightly edited, abridged, re-typed, re-credited and re-laid-out
copies of the same text. Each text points at the kept row of its group (`rep`) with its
verified similarity to that row (`similarity`).

Example::

    >>> r = near_duplicates([
    ...     "Russian troops shelled the town of Zolote in Luhansk region with Grad rockets on Friday",
    ...     "RUSSIAN TROOPS shelled the town of Zolote, Luhansk region, with Grad rockets on Friday (Reuters)",
    ...     "Russian troops shelled the town of Zolote in Luhansk region",
    ...     "Ukraine says Russia has compiled a kill list for the invasion aftermath",
    ... ])
    >>> r.rep.tolist()
    [0, 0, 0, 3]

Method
------
1. Tokens: lower-cased; format characters (soft hyphen, zero-width space) removed; every run
   of characters that are not letters, digits or marks (Unicode P, S, C, Z) is a separator. So case, quotes,
   punctuation, spacing and line-break changes do not change the tokens (dropping an
   apostrophe or a typo does). Done with `pyarrow.compute` in blocks of texts; each distinct
   token of a block is hashed once with xxh3-64 (seeded), never with Python's `hash()`
   (randomised per process), so results are the same in every process.
2. Shingles: the set of contiguous word `shingle`-grams (default 2: word pairs), hashed to 64
   bits by mixing the token hashes. A text with fewer tokens than `shingle` (but at least
   one) gets one shingle standing for its whole token sequence, so it only matches a text
   with the same tokens in the same order ("Background" and "background." merge, "Background"
   and "Background notes" do not). A text with no tokens is never merged.
3. Score of a pair with shingle sets A, B (|A| <= |B|), exact set operations::

       jaccard     = |A & B| / |A | B|
       containment = |A & B| / |A|       counted only when |A| >= MIN_CONTAINMENT_SHINGLES
                                          and |A| >= CONTAINMENT_LENGTH_RATIO * |B|
       score       = max(jaccard, containment)

   Containment catches abridged copies (the first 3/4 of a story has containment 1 but
   Jaccard about 0.75 with the full story, the first half about 0.5) and added credit
   lines; the guard keeps a short text that happens to be contained in a long one (a
   headline inside its own lead paragraph, a sentence quoted in a long post) from being
   merged: below the length-ratio floor only Jaccard counts, and it is then at most the
   ratio. Sets are kept as sorted (text, truncated shingle hash) keys: at least 40 hash
   bits for up to 16M texts per call, so a chance collision inside a compared pair has
   probability about |A| |B| / 2**40 (< 1e-9): exact in practice.
4. Candidates: MinHash LSH. `num_perm` hash functions h(x) = a*x + b mod 2**32 (a odd,
   random from `seed`) over 32 bits of each shingle hash; signatures are computed by a
   compiled loop over each text's shingles (`transforms/compiled.py`) and cut into
   `num_perm // rows` bands of `rows` values; texts equal on a whole band are candidates.
   Defaults: 96 permutations, 32 bands of 3 rows; a pair is a candidate with probability
   1 - (1 - J**3)**32 (`candidate_probability`): 0.03 at J = 0.1, 0.58 at 0.3, 0.88 at 0.4,
   0.95 at 0.45, 0.99 at 0.5, ~1 from 0.6. The defaults need J >= ~0.45: an abridged half
   has J ~0.47, an edited copy scoring 0.74 has J >= 0.59. In a band bucket each text is
   paired with its next `MAX_BUCKET_NEIGHBOURS` members in index order only, so a bucket of
   m texts costs O(m), never O(m**2); the near-identical texts that fill such buckets are
   still joined by chaining. The keyed rule (`keyed=True`, for a day spread over workers:
   `transforms/dedup_spread.py`) makes a text's sets, signature and band hashes independent
   of the other texts of the call, and counts a pair in the first band it shares only
   (`first_band_only`), so each pair is found once wherever the bands are bucketed.
5. Filter, then verify: a candidate is dropped unverified when the set sizes alone rule it
   out, or when its signatures agree (fraction of equal values, on the low byte of each
   value: b-bit MinHash) more than 4 standard deviations below the lowest Jaccard that
   could still reach the threshold with those set sizes (a pair that can reach it is lost
   with probability < 1e-4). Survivors get their exact score (the two sorted sets walked
   side by side, compiled); pairs scoring >= `threshold` are edges. The keyed rule tests
   and verifies its candidates in rounds (`DISTANCE_ROUNDS`: each bucket's next member in
   band 0 first, then in the other bands, then the 2nd-4th next, ...), leaving out pairs
   the earlier rounds' edges already connect: the components are the same, and a bucket of
   near-identical copies is chained by the first rounds instead of verifying up to 64 pairs
   per text and band.
6. Clusters: connected components of the edges (vectorised union-find: hooking and pointer
   jumping). The kept row is the smallest index of the component (the caller sorted by
   keep priority). `similarity[i]` is the exact score of i against its kept row,
   recomputed for every member: it can be below `threshold` when i joined through a chain
   (A~B, B~C, C far from A). Kept rows have similarity 1.0.

Defaults (shingle 2, threshold 0.74, containment guard >= 4 shingles and length ratio >=
0.45) were chosen on a labelled set built from the real data beside the repository
(benchmarks/neardup_eval.py): the grid point with the largest margin over the targets
precision >= 0.98 and recall >= 0.9 on edited, abridged (3/4 and 1/2) and re-typed copies.
Word 3-grams miss too many short re-typed or edited headlines (one changed word kills 3 of
~8 shingles); single words merge distinct same-topic headlines. Figures in BENCHMARKS.md.

Cost is linear in the number of texts: every step is O(total shingles x num_perm) or
O(candidates), band buckets are capped, and temporaries are kept to cache- or heap-sized
blocks (fresh large allocations cost page faults that made an unblocked version grow
faster than linearly). Seconds per million texts by call size, with the commands, are in
BENCHMARKS.md ("Near-duplicate detection").

Why numpy and not datasketch: datasketch 2.0's `MinHash.update` is Python per shingle and
`update_batch` is numpy per text; here one numpy pass signs all shingles of all texts
(`benchmarks/neardup_eval.py --datasketch`, figures in BENCHMARKS.md: several tens of
times faster than `update_batch`, shingling not counted). The
hash family a*x + b mod 2**32 is used for speed (uint32 arithmetic in cache); its inputs are
already uniformly mixed shingle hashes, and the test suite checks that signature agreement
is an unbiased Jaccard estimate with binomial spread and that band collisions follow
1 - (1 - J**rows)**bands.

Guarantees: deterministic (same input, same output, in any process: seeded xxhash and
numpy generators, sorts on unique keys, no dependence on set/dict order or `hash()`);
rep[i] <= i and rep[rep[i]] == rep[i]; a pair's score depends only on the two texts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_SHINGLE",
    "DEFAULT_NUM_PERM",
    "DEFAULT_ROWS",
    "MIN_CONTAINMENT_SHINGLES",
    "CONTAINMENT_LENGTH_RATIO",
    "MAX_BUCKET_NEIGHBOURS",
    "NearDupResult",
    "near_duplicates",
    "pair_scores",
    "candidate_probability",
]

DEFAULT_THRESHOLD: float = 0.74
DEFAULT_SHINGLE: int = 2
DEFAULT_NUM_PERM: int = 96
DEFAULT_ROWS: int = 3
MIN_CONTAINMENT_SHINGLES: int = 4
CONTAINMENT_LENGTH_RATIO: float = 0.45
MAX_BUCKET_NEIGHBOURS: int = 64

TextsLike = Union[Sequence[str], pa.Array, pa.ChunkedArray]

_U64 = np.uint64
_M1 = _U64(0xFF51AFD7ED558CCD)
_M2 = _U64(0xC4CEB9FE1A85EC53)
_GOLD = _U64(0x9E3779B97F4A7C15)
_S33 = _U64(33)
_S32 = _U64(32)
_TEXT_BLOCK = 1 << 14    # texts per tokenizing block
_SIG_BLOCK = 4096        # texts per signature block
SET_BITS = 40            # shingle-hash bits kept in a set (fewer only above 16M texts per call)


@dataclass(frozen=True)
class NearDupResult:
    """rep[i]: index of the kept row of i's cluster (rep[i] == i for kept rows);
    similarity[i]: exact score of i against rep[i] (1.0 for kept rows)."""

    rep: np.ndarray
    similarity: np.ndarray

    @property
    def kept(self) -> np.ndarray:
        """Indices of kept rows, ascending."""
        return np.flatnonzero(self.rep == np.arange(len(self.rep)))


# --------------------------------------------------------------------------- hashing helpers


def _fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3 64-bit finaliser (a bijection with full avalanche), vectorised."""
    x = x ^ (x >> _S33)
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


def _as_arrow(texts: TextsLike) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], pa.large_string())
    if isinstance(texts, pa.Array):
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
            raise TypeError(f"texts must be strings, got Arrow type {texts.type}")
        return texts
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    return pa.array(list(texts), type=pa.large_string())


def _tokens(texts: pa.Array, seed: int, cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> (token hashes uint64, flat in text order; token count per text int64). `cache`
    (word bytes -> hash) carries token hashes across the blocks of one call.

    Words are the runs of letters, digits and marks of the lowered text: every run of other
    characters separates. ASCII texts (nearly all) are lowered and split in one compiled pass
    (`compiled.words`: runs of [a-z0-9]); texts with non-ASCII characters are lowered and
    spaced by Arrow's Unicode rules first (format characters such as the soft hyphen and the
    zero-width space removed, every run of punctuation, symbols, controls and separators a
    space) and then split on spaces in the same pass. Each distinct word is hashed once
    (xxh3, `seed`)."""
    from transforms import compiled

    n = len(texts)
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    ascii_rules = pc.string_is_ascii(texts).to_numpy(zero_copy_only=False)
    if not ascii_rules.all():
        idx = pa.array(np.flatnonzero(~ascii_rules))
        # = [^\p{L}\p{N}\p{M} ] except for unassigned code points; a positive class compiles
        # twice as fast as the negated one. (A text that lowering makes ASCII, with a Kelvin
        # sign say, gets the same words by either rule.)
        sub = pc.replace_substring_regex(pc.utf8_lower(texts.take(idx)), r"\p{Cf}+", "")
        sub = pc.replace_substring_regex(sub, r"[\p{P}\p{S}\p{C}\p{Z}]+", " ")
        texts = pc.replace_with_mask(texts, pa.array(~ascii_rules), sub.cast(texts.type))
    width = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offs = np.frombuffer(texts.buffers()[1], width, n + 1, texts.offset * np.dtype(width).itemsize).astype(np.int64)
    data = texts.buffers()[2]
    lo, hi = int(offs[0]), int(offs[-1])
    raw = np.frombuffer(data, np.uint8, hi - lo, lo) if data is not None and hi > lo else np.zeros(0, np.uint8)
    ids, counts, arena, start = compiled.words(raw, offs - lo, ascii_rules)
    if not len(ids):
        return np.zeros(0, _U64), counts
    digest = xxhash.xxh3_64_intdigest
    if cache is None:
        cache = {}
    get = cache.get
    text = arena.tobytes()
    bounds = start.tolist()
    hashes = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        w = text[s:e]
        h = get(w)
        if h is None:
            h = cache[w] = digest(w, seed)
        hashes.append(h)
    return np.array(hashes, dtype=_U64)[ids], counts


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    x = np.sort(x)
    if len(x) < 2:
        return x
    keep = np.empty(len(x), bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


@dataclass(frozen=True)
class _Sets:
    """Per-text shingle sets as one sorted array of unique keys (text << bits) | h, where h
    is the top `bits` bits of the shingle's 64-bit hash (bits = 64 - bits needed for the text
    index, >= 40 for up to 16M texts; with the keyed rule SET_BITS = 40, so a text's set does
    not depend on the other texts of the call). Text t's keys are key[offs[t]:offs[t+1]].

    Set operations compare these truncated hashes: two different shingles of a compared
    pair collide with probability |A| |B| / 2**bits (about 1e-11 for two 30-shingle texts
    in a batch of 100k), so intersections are exact in practice."""

    key: np.ndarray     # uint64, sorted, unique
    offs: np.ndarray    # int64, N+1
    size: np.ndarray    # int64, N
    bits: int


def _shingle_sets(texts: pa.Array, k: int, seed: int, keyed: bool = False) -> _Sets:
    """Shingle sets of all texts, built in blocks of `_TEXT_BLOCK` texts so that no
    temporary array outgrows the allocator's reusable heap (fresh memory costs page faults).
    `keyed`: SET_BITS hash bits whatever the number of texts (the keyed rule, see
    `near_duplicates`); else as many as the text index leaves."""
    n = len(texts)
    bits = 64 - max(1, (n - 1).bit_length())
    if keyed:
        bits = min(SET_BITS, bits)
    if bits < 32:
        raise ValueError(f"too many texts for one call: {n}")
    from transforms import compiled

    parts, sizes = [], []
    cache: dict[bytes, int] = {}
    for lo in range(0, n, _TEXT_BLOCK):
        tok, counts = _tokens(texts.slice(lo, _TEXT_BLOCK), seed, cache)
        # blocks cover increasing text ranges, so their keys concatenate to a sorted array
        keys, size = compiled.shingle_keys(tok, counts, k, lo, bits)
        parts.append(keys)
        sizes.append(size)
    key = np.concatenate(parts) if parts else np.zeros(0, _U64)
    size = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
    offs = np.zeros(n + 1, np.int64)
    np.cumsum(size, out=offs[1:])
    return _Sets(key, offs, size, bits)


@dataclass(frozen=True)
class _Sketch:
    """LSH material of the non-empty texts (rows 0..m-1): `bands[b]` holds, per row, the
    64-bit hash of band b's signature values, with the row index in its low `index_bits` bits
    (whole-day rule) or whole (keyed rule, `index_bits` 0: then, like `sig8`, it depends on
    the text alone); `sig8` the low byte of every signature value (for the agreement
    estimate)."""

    bands: np.ndarray   # uint64 (n_bands, m)
    sig8: np.ndarray    # uint8 (m, num_perm)
    index_bits: int = 0  # > 0: the low bits of each band hash hold the row index (the whole-day rule)


def _band_hash(mins: np.ndarray, n_bands: int, rows: int) -> np.ndarray:
    """(texts, num_perm) uint32 minima -> (texts, n_bands) uint64 band hashes (equal band
    values give equal hashes)."""
    cols = mins[:, : n_bands * rows].reshape(len(mins), n_bands, rows)
    key = cols[:, :, 0].astype(_U64) << _S32
    if rows > 1:
        key |= cols[:, :, 1]
    key = _fmix64(key)
    for c in range(2, rows):
        key = _fmix64(key ^ cols[:, :, c])
    return key


def _sketch(sets: _Sets, rows_of: np.ndarray, num_perm: int, rows: int, seed: int, keyed: bool = False) -> _Sketch:
    """MinHash signatures of the texts `rows_of` (non-empty, increasing) by
    h(x) = a*x + b mod 2**32 over 32 bits of each shingle hash (`compiled.minhash_mins`), in
    blocks of texts reduced at once to band hashes and low bytes (the full signature matrix
    is never materialised)."""
    from transforms import compiled

    rng = np.random.default_rng([seed, 0x4E44])
    a = (rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64) | _U64(1)).astype(np.uint32)
    b = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64).astype(np.uint32)
    if keyed:  # the top 32 of the kept hash bits: a signature does not depend on the other texts
        x32 = (sets.key >> _U64(sets.bits - 32)).astype(np.uint32)
    else:
        x32 = sets.key.astype(np.uint32)  # low 32 bits: hash bits (bits >= 32)
    m = len(rows_of)
    n_bands = num_perm // rows
    index_bits = 0 if keyed else max(1, (m - 1).bit_length())
    low = _U64((1 << index_bits) - 1)
    bands = np.empty((n_bands, m), _U64)
    sig8 = np.empty((m, num_perm), np.uint8)
    starts = sets.offs[rows_of]
    ends = sets.offs[rows_of + 1]
    mins = np.empty((_SIG_BLOCK, num_perm), np.uint32)
    for t0 in range(0, m, _SIG_BLOCK):
        t1 = min(m, t0 + _SIG_BLOCK)
        blk = compiled.minhash_mins(x32, starts[t0:t1], ends[t0:t1], a, b, mins[: t1 - t0])
        sig8[t0:t1] = blk
        if keyed:
            bands[:, t0:t1] = _band_hash(blk, n_bands, rows).T
        else:
            keys = (_band_hash(blk, n_bands, rows) & ~low) | np.arange(t0, t1, dtype=_U64)[:, None]
            bands[:, t0:t1] = keys.T
    return _Sketch(bands, sig8, index_bits)


def in_runs(same: np.ndarray) -> np.ndarray:
    """Positions of the members of runs of two or more in a sorted array, from `same`
    (element k + 1 equals element k)."""
    in_run = np.zeros(len(same) + 1, bool)
    in_run[1:] |= same
    in_run[:-1] |= same
    return np.flatnonzero(in_run)


def _runs(same: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """`same[i]`: sorted item i + 1 equals item i -> (`pos`, the positions of the items in runs
    of two or more (`in_runs`); `left`, for each, how many items of its run follow it; the
    longest run's length)."""
    pos = in_runs(same)
    new_run = np.ones(len(pos), bool)
    new_run[1:] = ~same[pos[1:] - 1]
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.append(run_start, len(pos)))
    left = run_len[run_id] - 1 - (np.arange(len(pos)) - run_start[run_id])
    return pos, left, int(run_len.max())


@dataclass
class BucketRuns:
    """The members of band buckets with two or more members: `members` (row numbers, a
    bucket's members adjacent and in keep-priority order), `left` (members of its bucket after
    each), `longest` bucket, `band` (one band, or one per member). Each member is paired with
    the next MAX_BUCKET_NEIGHBOURS members of its bucket only (`pairs`), so a bucket of m
    members costs O(m), never O(m**2); the near-identical texts that fill big buckets still
    chain."""

    band: Union[int, np.ndarray]
    members: np.ndarray
    left: np.ndarray
    longest: int

    @classmethod
    def of(cls, bucket: np.ndarray, rows: np.ndarray, band) -> "BucketRuns | None":
        """`bucket` labels sorted (a bucket's rows `rows` in priority order), `band` per position
        or one for all."""
        if len(bucket) < 2:
            return None
        same = bucket[1:] == bucket[:-1]
        if not same.any():
            return None
        pos, left, longest = _runs(same)
        return cls(band if np.isscalar(band) else np.asarray(band)[pos], rows[pos], left, longest)

    def pairs(self, rnd: "Round", bt: np.ndarray, label: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """The candidate pairs of round `rnd` (members d apart in a bucket of one of its bands)
        that share no lower band (rows of `bt`, C-contiguous uint64) and that `label` (a
        component label per row) puts in different components (`compiled.round_pairs`)."""
        from transforms import compiled

        if np.isscalar(self.band):
            if not rnd.band_lo <= self.band < rnd.band_hi:
                return None
            band = np.full(len(self.members), self.band, np.int64)
        else:
            band = np.asarray(self.band, np.int64)
        hi = min(rnd.hi, self.longest - 1)
        if hi < rnd.lo:
            return None
        lab = _NO_LABEL if label is None else np.asarray(label, np.int64)
        return compiled.round_pairs(np.asarray(self.members, np.int64), np.asarray(self.left, np.int64), band,
                                    rnd.band_lo, rnd.band_hi, rnd.lo, hi, lab, bt)


_NO_LABEL = np.zeros(0, np.int64)


@dataclass(frozen=True)
class Round:
    """Candidate pairs d apart in a bucket of a band: lo <= d <= hi, band_lo <= band < band_hi."""

    lo: int
    hi: int
    band_lo: int = 0
    band_hi: int = 1 << 30


# Candidate pairs (keyed rule) are tested and verified in rounds, nearest neighbours and low
# bands first, and a round leaves out the pairs whose two rows the edges of the earlier
# rounds already connect. Every candidate is in one round (the round of the band it was
# found in and its distance d, the d-th next member in the bucket) and the clusters are the
# same (an edge inside a component changes no component, and similarities are scored against
# the kept row afterwards). Where buckets are full of near-identical copies the first rounds
# chain them, so most of each member's MAX_BUCKET_NEIGHBOURS neighbours in 32 bands are never
# tested or scored.
DISTANCE_ROUNDS = (Round(1, 1, 0, 1), Round(1, 1, 1, 4), Round(1, 1, 4), Round(2, 4), Round(5, 16), Round(17, 1 << 30))


def edges_in_rounds(m: int, neighbours: int, candidates, verify) -> tuple[np.ndarray, np.ndarray]:
    """The verified edges (i, j) over rows 0..m-1 that give the components all candidate
    pairs would give: `candidates(round, label)` -> the candidate pairs (i, j) of a `Round`
    not already joined by `label` (None in the first round); `verify(i, j)` -> the indexes of
    the pairs that are edges (`DISTANCE_ROUNDS`)."""
    ei, ej = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    label = None
    for rnd in DISTANCE_ROUNDS:
        if rnd.lo > neighbours:
            break
        i, j = candidates(Round(rnd.lo, min(rnd.hi, neighbours), rnd.band_lo, rnd.band_hi), label)
        if not len(i):
            continue
        k = verify(i, j)
        if len(k):
            ei.append(i[k])
            ej.append(j[k])
            label = _components(m, np.concatenate(ei), np.concatenate(ej))
    return np.concatenate(ei), np.concatenate(ej)


def first_band_only(bt: np.ndarray, i: np.ndarray, j: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Mask of the pairs (rows i[k], j[k] of `bt`, band hashes per row (m, n_bands)) found in
    band `band[k]` that share no lower band: a pair is a candidate of its first shared band
    only, so every pair is found (and verified) once, wherever its bands are bucketed
    (`compiled.first_band_only`: the lower bands compared in order, up to the first equal one)."""
    from transforms import compiled

    if not len(i):
        return np.ones(0, bool)
    return compiled.first_band_only(np.ascontiguousarray(bt, _U64), np.asarray(i, np.int64),
                                    np.asarray(j, np.int64), np.asarray(band, np.int64))


def _band_runs(sk: _Sketch) -> list[BucketRuns]:
    """Per band of a keyed sketch, its buckets of two or more rows, each in index order
    (`compiled.band_buckets`: a hash table per band instead of sorting it)."""
    from transforms import compiled

    n_bands, m = sk.bands.shape
    runs = []
    if m < 2:
        return runs
    slots = 1 << (2 * m - 1).bit_length()
    keys, ids = np.empty(slots, _U64), np.empty(slots, np.int64)
    for band in range(n_bands):
        members, left, longest = compiled.band_buckets(np.ascontiguousarray(sk.bands[band]), keys, ids)
        if len(members):
            runs.append(BucketRuns(band, members, left, longest))
    return runs


def round_candidates(runs: list[BucketRuns], bt: np.ndarray, rnd: Round, label, feasible=None):
    """The candidate pairs (keyed rule) of round `rnd` not joined by `label`, each once: found
    in their first shared band (`BucketRuns.pairs`). `feasible(i, j)`, when given, drops pairs
    (a mask: those that could still be edges)."""
    bt = np.ascontiguousarray(bt, _U64)
    found = [p for p in (r.pairs(rnd, bt, label) for r in runs) if p is not None and len(p[0])]
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i, j = (np.concatenate(side) for side in zip(*found))
    if feasible is not None:
        ok = feasible(i, j)
        i, j = i[ok], j[ok]
    return i, j


def _candidates(sk: _Sketch, neighbours: int, feasible=None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of rows with equal 64-bit hashes of at least one band: within the bucket
    of their first shared band, j is one of the next `neighbours` rows after i in index order
    (the keyed rule, every candidate at once; `near_duplicates` tests them in rounds); with
    `sk.index_bits`, the whole-day rule (`_candidates_indexed`)."""
    if sk.index_bits:
        return _candidates_indexed(sk, neighbours)
    return round_candidates(_band_runs(sk), np.ascontiguousarray(sk.bands.T), Round(1, neighbours), None, feasible)


def _candidates_indexed(sk: _Sketch, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of rows that share all values of at least one band. Within a bucket
    each row is paired with the next `neighbours` rows in index order."""
    n_bands, m = sk.bands.shape
    bits = _U64(sk.index_bits)
    low = _U64((1 << sk.index_bits) - 1)
    out = []
    for band in range(n_bands):
        # band hash (high bits) | row index (low bits): one plain sort groups equal band
        # hashes with rows in index order. Hash bits lost to the index only add candidates.
        key = np.sort(sk.bands[band])
        hk = key >> bits
        same = hk[1:] == hk[:-1]
        if not same.any():
            continue
        pos, left, longest = _runs(same)
        members = (key[pos] & low).astype(np.int64)
        for d in range(1, min(neighbours, longest - 1) + 1):
            sel = np.flatnonzero(left >= d)
            if not len(sel):
                break
            out.append(members[sel].astype(_U64) * _U64(m) + members[sel + d].astype(_U64))
    if not out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    code = _sorted_unique(np.concatenate(out))  # members ascend within a bucket: i < j
    return (code // _U64(m)).astype(np.int64), (code % _U64(m)).astype(np.int64)


def _agreement(sig8: np.ndarray, ci: np.ndarray, cj: np.ndarray) -> np.ndarray:
    """Fraction of equal signature rows per pair: the MinHash estimate of Jaccard. `sig8`
    holds the low byte of each row (b-bit MinHash): different minima agree by chance with
    probability 1/256, which only raises the estimate (never drops a true pair)."""
    from transforms import compiled

    if not len(ci):
        return np.zeros(0, np.float64)
    same = compiled.agreement(np.ascontiguousarray(sig8, np.uint8), np.asarray(ci, np.int64), np.asarray(cj, np.int64))
    return same / sig8.shape[1]


def _intersections(sets: _Sets, pi: np.ndarray, pj: np.ndarray) -> np.ndarray:
    """Exact |A_i & A_j| per pair: the two sorted sets walked side by side
    (`compiled.intersections`)."""
    from transforms import compiled

    if not len(pi):
        return np.zeros(0, np.int64)
    mask = _U64((1 << sets.bits) - 1)
    return compiled.intersections(sets.key, sets.offs, mask, np.asarray(pi, np.int64), np.asarray(pj, np.int64))


def _scores(
    sets: _Sets, pi: np.ndarray, pj: np.ndarray, min_shingles: int, ratio_floor: float
) -> np.ndarray:
    inter = _intersections(sets, pi, pj).astype(np.float64)
    a = sets.size[pi].astype(np.float64)
    b = sets.size[pj].astype(np.float64)
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    union = a + b - inter
    jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    guard = (lo >= min_shingles) & (lo >= ratio_floor * hi)
    con = np.divide(inter, lo, out=np.zeros_like(inter), where=guard & (lo > 0))
    return np.maximum(jac, con)


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Label of every node = smallest node index of its connected component."""
    label = np.arange(n, dtype=np.int64)
    if not len(i):
        return label
    while True:
        li, lj = label[i], label[j]
        diff = li != lj
        if not diff.any():
            return label
        li, lj = li[diff], lj[diff]
        # hook the larger root onto the smaller one (labels are roots after the jumps below)
        np.minimum.at(label, np.maximum(li, lj), np.minimum(li, lj))
        while True:  # pointer jumping until every node points at a root
            nxt = label[label]
            if np.array_equal(nxt, label):
                break
            label = nxt


def _agreement_floor(
    a: np.ndarray, b: np.ndarray, threshold: float, min_shingles: int, ratio: float, num_perm: int
) -> np.ndarray:
    """Per pair of set sizes: the signature agreement below which the pair is dropped
    unverified, or 2.0 when the sizes alone rule it out.

    The lowest Jaccard a pair with sizes lo <= hi can have and still score >= t is
    t*lo / (lo + hi - t*lo) when containment counts (the guard passes), else t (then also
    lo/hi >= t is needed). The floor is that Jaccard minus 4 standard deviations of the
    MinHash estimate, so a pair that can reach the threshold is dropped with probability
    below 1e-4.
    """
    lo = np.minimum(a, b).astype(np.float64)
    hi = np.maximum(a, b).astype(np.float64)
    guard = (lo >= min_shingles) & (lo >= ratio * hi)
    j = np.where(guard, threshold * lo / (lo + hi - threshold * lo), threshold)
    floor = np.maximum(j - 4.0 * np.sqrt(j * (1.0 - j) / num_perm), 0.0)
    return np.where(guard | (lo >= threshold * hi), floor, 2.0)


def verify_pairs(sets: _Sets, sig8: np.ndarray, ti: np.ndarray, tj: np.ndarray, si: np.ndarray, sj: np.ndarray,
                 threshold: float, num_perm: int = DEFAULT_NUM_PERM,
                 min_shingles: int = MIN_CONTAINMENT_SHINGLES, ratio: float = CONTAINMENT_LENGTH_RATIO
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (texts ti[k], tj[k] of `sets`; signature rows si[k], sj[k] of `sig8`)
    -> (k of the pairs that are edges, their exact scores >= threshold).

    A candidate is dropped unverified when the set sizes alone rule it out, or when its
    signatures agree far less than the lowest Jaccard that could reach the threshold given
    the sizes (`_agreement_floor`); the others get their exact score."""
    floor = _agreement_floor(sets.size[ti], sets.size[tj], threshold, min_shingles, ratio, num_perm)
    k = np.flatnonzero(floor <= 1.0)
    if len(k):
        k = k[_agreement(sig8, si[k], sj[k]) >= floor[k]]
    score = _scores(sets, ti[k], tj[k], min_shingles, ratio)
    edge = score >= threshold
    return k[edge], score[edge]


@dataclass(frozen=True)
class TextSketch:
    """What a text brings to LSH and verification, computed on any worker for any subset of
    a day's texts (nothing depends on the other texts of the call): `size` shingles per text,
    `sig8` low signature bytes (n, num_perm; zero rows for texts without shingles), `bands`
    band hashes (n, num_perm // rows), `sets` each text's sorted shingle hashes (SET_BITS
    bits, uint64 little-endian, as binary values: `sets_of` reads them back)."""

    size: np.ndarray
    sig8: np.ndarray
    bands: np.ndarray
    sets: pa.Array


def sketch_texts(texts: TextsLike, *, shingle: int = DEFAULT_SHINGLE, num_perm: int = DEFAULT_NUM_PERM,
                 rows: int = DEFAULT_ROWS, seed: int = 1) -> TextSketch:
    """`TextSketch` of each text."""
    _settings(DEFAULT_THRESHOLD, shingle, num_perm, rows)
    arr = _as_arrow(texts)
    n = len(arr)
    sig8 = np.zeros((n, num_perm), np.uint8)
    bands = np.zeros((n, num_perm // rows), _U64)
    if n == 0:
        return TextSketch(np.zeros(0, np.int64), sig8, bands, pa.array([], pa.large_binary()))
    sets = _shingle_sets(arr, shingle, seed, keyed=True)
    if sets.bits != SET_BITS:
        raise ValueError(f"too many texts for one sketch call: {n}")
    rows_of = np.flatnonzero(sets.size > 0)
    if len(rows_of):
        sk = _sketch(sets, rows_of, num_perm, rows, seed, keyed=True)
        sig8[rows_of] = sk.sig8
        bands[rows_of] = sk.bands.T
    values = sets.key & _U64((1 << SET_BITS) - 1)
    binary = pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(sets.offs * 8),
                                                                     pa.py_buffer(values)])
    return TextSketch(sets.size.copy(), sig8, bands, binary)


def sets_of(binary: pa.Array) -> _Sets:
    """The shingle sets of `TextSketch.sets` values (any subset, any order), as one `_Sets`."""
    binary = binary.combine_chunks() if isinstance(binary, pa.ChunkedArray) else binary
    binary = binary.cast(pa.large_binary()) if binary.type != pa.large_binary() else binary
    n = len(binary)
    offs = np.frombuffer(binary.buffers()[1], np.int64, n + 1, binary.offset * 8)
    data = binary.buffers()[2]
    lo, hi = int(offs[0]), int(offs[-1])
    values = np.frombuffer(data, _U64, (hi - lo) // 8, lo) if data is not None and hi > lo else np.zeros(0, _U64)
    size = np.diff(offs) // 8
    key = (np.repeat(np.arange(n, dtype=_U64), size) << _U64(SET_BITS)) | values
    out = np.zeros(n + 1, np.int64)
    np.cumsum(size, out=out[1:])
    return _Sets(key, out, size.astype(np.int64), SET_BITS)


def set_scores(sets: _Sets, i: np.ndarray, j: np.ndarray, min_shingles: int = MIN_CONTAINMENT_SHINGLES,
               ratio: float = CONTAINMENT_LENGTH_RATIO) -> np.ndarray:
    """Exact score of texts i[k] and j[k] of `sets` (`sets_of`)."""
    return _scores(sets, np.asarray(i, np.int64), np.asarray(j, np.int64), min_shingles, ratio)


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Label of every node 0..n-1 = the smallest node index of its connected component."""
    return _components(n, np.asarray(i, np.int64), np.asarray(j, np.int64))


def _settings(threshold: float, shingle: int, num_perm: int, rows: int) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if shingle < 1:
        raise ValueError(f"shingle must be >= 1, got {shingle}")
    if rows < 1 or num_perm < rows:
        raise ValueError(f"need 1 <= rows <= num_perm, got rows={rows}, num_perm={num_perm}")


def candidate_probability(jaccard: float, num_perm: int = DEFAULT_NUM_PERM, rows: int = DEFAULT_ROWS) -> float:
    """Probability that a pair with this Jaccard similarity becomes an LSH candidate."""
    bands = num_perm // rows
    return 1.0 - (1.0 - jaccard**rows) ** bands


def pair_scores(
    texts: TextsLike,
    pairs: Sequence[tuple[int, int]] | np.ndarray,
    *,
    shingle: int = DEFAULT_SHINGLE,
    seed: int = 1,
    min_containment_shingles: int = MIN_CONTAINMENT_SHINGLES,
    containment_length_ratio: float = CONTAINMENT_LENGTH_RATIO,
) -> np.ndarray:
    """Exact score (see module doc) of the given index pairs, without LSH. For tests/benchmarks."""
    arr = _as_arrow(texts)
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    sets = _shingle_sets(arr, shingle, seed)
    return _scores(sets, p[:, 0], p[:, 1], min_containment_shingles, containment_length_ratio)


def near_duplicates(
    texts: TextsLike,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    shingle: int = DEFAULT_SHINGLE,
    num_perm: int = DEFAULT_NUM_PERM,
    seed: int = 1,
    rows: int = DEFAULT_ROWS,
    min_containment_shingles: int = MIN_CONTAINMENT_SHINGLES,
    containment_length_ratio: float = CONTAINMENT_LENGTH_RATIO,
    max_bucket_neighbours: int = MAX_BUCKET_NEIGHBOURS,
    keyed: bool = False,
) -> NearDupResult:
    """Group near-duplicate texts; `texts` in keep-priority order (index 0 kept first).

    Returns `NearDupResult(rep, similarity)`: rep[i] is the smallest index of i's cluster
    (connected component of pairs with score >= `threshold`), similarity[i] the exact score
    of i against rep[i] (1.0 for kept rows). Accepts a sequence of str (None = empty) or an
    Arrow string array. See the module docstring for the score and the LSH.

    `keyed`: the rule a day spread by key over workers can follow exactly (what
    `transforms.dedup_spread` computes without the whole day in one place): a text's sets,
    signature and band hashes do not depend on the other texts of the call (SET_BITS set
    bits, signatures from their top 32, full 64-bit band hashes), and a pair is a candidate in
    the first band it shares only (`first_band_only`). Same thresholds, score and filter. The
    pipeline follows the keyed rule (`transforms.dedup.NearDetector`); False, the whole-day
    rule the pipeline used before days were spread, is faster in one call and kept here for
    the comparisons of BENCHMARKS.md.
    """
    _settings(threshold, shingle, num_perm, rows)
    arr = _as_arrow(texts)
    n = len(arr)
    rep = np.arange(n, dtype=np.int64)
    sim = np.ones(n, dtype=np.float64)
    if n < 2:
        return NearDupResult(rep, sim)
    sets = _shingle_sets(arr, shingle, seed, keyed)
    rows_of = np.flatnonzero(sets.size > 0)
    if len(rows_of) < 2:
        return NearDupResult(rep, sim)
    sk = _sketch(sets, rows_of, num_perm, rows, seed, keyed)
    size = sets.size

    def feasible(i, j):  # set sizes that can reach the threshold (verify_pairs tests it again)
        return _agreement_floor(size[rows_of[i]], size[rows_of[j]], threshold, min_containment_shingles,
                                containment_length_ratio, num_perm) <= 1.0

    def verify(ci, cj):
        return verify_pairs(sets, sk.sig8, rows_of[ci], rows_of[cj], ci, cj, threshold, num_perm,
                            min_containment_shingles, containment_length_ratio)[0]

    if sk.index_bits:  # the whole-day rule: every candidate verified
        ci, cj = _candidates(sk, max_bucket_neighbours, feasible)
        k = verify(ci, cj)
        ei, ej = ci[k], cj[k]
    else:
        runs, bt = _band_runs(sk), np.ascontiguousarray(sk.bands.T)
        ei, ej = edges_in_rounds(len(rows_of), max_bucket_neighbours,
                                 lambda rnd, label: round_candidates(runs, bt, rnd, label, feasible), verify)
    rep = _components(n, rows_of[ei], rows_of[ej])
    members = np.flatnonzero(rep != np.arange(n))
    if len(members):
        sim[members] = _scores(sets, rep[members], members, min_containment_shingles, containment_length_ratio)
    return NearDupResult(rep, sim)
