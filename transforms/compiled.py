"""Compiled (numba) kernels of the near-duplicate search: the loops that profiles showed to be
the bottleneck after vectorising with numpy (BENCHMARKS.md, "Compiled kernels").

Each kernel is a plain loop over the same arrays the numpy code used and gives the same
numbers bit for bit (tests/test_compiled.py compares each with a per-row reference):
- `minhash_mins`: the MinHash minima of each text's shingles. numpy materialised a
  (shingles x permutations) block and reduced it; the loop keeps one row of minima.
- `intersections`: |A & B| of two sorted shingle sets by a merge walk. numpy looked up every
  shingle of the smaller set in the whole key array with a binary search.
- `round_pairs`: a round's candidate pairs in band buckets, each pair once (in the first band
  it shares). numpy made every pair's code, sorted them to drop repeats and compared the low
  bytes of every lower band; the loop stops at the first equal band (`first_band_only`).
- `agreement`: equal signature bytes per pair.
- `shingle_keys`: each text's shingle hashes, sorted and unique per text. numpy hashed every
  window at once and sorted all the keys of a block together.
- `band_buckets`: the buckets of a band with two or more rows, by a hash table. numpy
  sorted each band and fixed up the order inside buckets.
- `words`: the words of each text (runs of ASCII letters and digits, lowercased; or runs of
  bytes other than a space in texts the Unicode rules already spaced) and a number per
  distinct word. Arrow lowered, replaced by a regex, split and dictionary-encoded: four passes
  and a list array over every text.

numba (and llvmlite) are imported by this module only, so a process that never searches
near duplicates (the runner's main process) does not load them. Kernels are compiled on first
use and cached (`cache=True`: in `__pycache__` beside this file, or numba's user cache when
that is not writable), so worker processes after the first load them in milliseconds.
"""
from __future__ import annotations

import numba
import numpy as np

from transforms.neardup import _GOLD, _M1, _M2  # its hashes' constants: the kernels give its numbers

_OPTS = dict(cache=True, nogil=True, boundscheck=False)
_SHORT_TAG = np.uint64(0x5EED5EED5EED5EED)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)  # FNV-1a, for the word table only (never stored)
_FNV_PRIME = np.uint64(0x100000001B3)


@numba.njit(**_OPTS)
def minhash_mins(x32, starts, ends, a, b, out):
    """out[t, p] = min over s in [starts[t], ends[t]) of (x32[s] * a[p] + b[p]) mod 2**32
    (uint32 arithmetic), 0xFFFFFFFF for an empty range."""
    n_perm = a.shape[0]
    for t in range(starts.shape[0]):
        row = out[t]
        for p in range(n_perm):
            row[p] = np.uint32(0xFFFFFFFF)
        for s in range(starts[t], ends[t]):
            x = np.uint64(x32[s])
            for p in range(n_perm):
                v = np.uint32((x * np.uint64(a[p]) + np.uint64(b[p])) & np.uint64(0xFFFFFFFF))
                if v < row[p]:
                    row[p] = v
    return out


@numba.njit(**_OPTS)
def intersections(key, offs, mask, pi, pj):
    """|set(pi[k]) & set(pj[k])| for each pair, where text t's set is key[offs[t]:offs[t+1]]
    (sorted, unique; `mask` keeps the shingle-hash bits, below the text's)."""
    out = np.zeros(pi.shape[0], np.int64)
    for k in range(pi.shape[0]):
        x, xe = offs[pi[k]], offs[pi[k] + 1]
        y, ye = offs[pj[k]], offs[pj[k] + 1]
        n = 0
        while x < xe and y < ye:
            u = key[x] & mask
            w = key[y] & mask
            if u == w:
                n += 1
                x += 1
                y += 1
            elif u < w:
                x += 1
            else:
                y += 1
        out[k] = n
    return out


@numba.njit(**_OPTS)
def _shares_lower_band(bt, i, j, band):
    for c in range(band):
        if bt[i, c] == bt[j, c]:
            return True
    return False


@numba.njit(**_OPTS)
def first_band_only(bt, i, j, band):
    """keep[k]: rows i[k] and j[k] of `bt` (band hashes per row) share no band below band[k]."""
    keep = np.ones(i.shape[0], np.bool_)
    for k in range(i.shape[0]):
        keep[k] = not _shares_lower_band(bt, i[k], j[k], band[k])
    return keep


@numba.njit(**_OPTS)
def round_pairs(members, left, band, band_lo, band_hi, d_lo, d_hi, label, bt):
    """The candidate pairs of one round in band buckets: `members` (rows, a bucket's members
    adjacent in priority order), `left` (members of its bucket after each), `band` (per
    member). Pairs (members[p], members[p + d]) with d_lo <= d <= min(d_hi, left[p]) and
    band_lo <= band[p] < band_hi, leaving out those `label` (per row; empty: none) puts in one
    component and those sharing a band below band[p] (a pair is a candidate of its first
    shared band only, so each pair comes once). -> (i, j), in bucket order."""
    cap = 1024
    oi = np.empty(cap, np.int64)
    oj = np.empty(cap, np.int64)
    n = 0
    use_label = label.shape[0] > 0
    for p in range(members.shape[0]):
        b = band[p]
        if b < band_lo or b >= band_hi:
            continue
        i = members[p]
        for d in range(d_lo, min(d_hi, left[p]) + 1):
            j = members[p + d]
            if use_label and label[i] == label[j]:
                continue
            if _shares_lower_band(bt, i, j, b):
                continue
            if n == cap:
                cap *= 2
                ni = np.empty(cap, np.int64)
                nj = np.empty(cap, np.int64)
                ni[:n] = oi[:n]
                nj[:n] = oj[:n]
                oi, oj = ni, nj
            oi[n] = i
            oj[n] = j
            n += 1
    return oi[:n].copy(), oj[:n].copy()


@numba.njit(**_OPTS)
def agreement(sig8, ci, cj):
    """Equal bytes of rows ci[k] and cj[k] of `sig8`, per pair."""
    n_perm = sig8.shape[1]
    out = np.empty(ci.shape[0], np.int64)
    for k in range(ci.shape[0]):
        a, b = sig8[ci[k]], sig8[cj[k]]
        n = 0
        for p in range(n_perm):
            n += a[p] == b[p]
        out[k] = n
    return out


@numba.njit(**_OPTS)
def band_buckets(hashes, keys, ids):
    """The buckets of one band (rows with equal `hashes`) that have two or more rows ->
    (`members`: their rows, a bucket's rows adjacent and in index order; `left`: rows of its
    bucket after each; the longest bucket). `keys`, `ids`: a work table, a power of two of at
    least twice the rows. Buckets come in the order of their first row."""
    m = hashes.shape[0]
    size = ids.shape[0]
    bits = 0
    while (1 << bits) < size:
        bits += 1
    mask = size - 1
    ids[:] = -1
    bucket = np.empty(m, np.int64)
    count = np.zeros(m, np.int64)
    nb = 0
    for r in range(m):
        h = hashes[r]
        at = _slot(h, bits)
        while True:
            b = ids[at]
            if b < 0:
                ids[at] = nb
                keys[at] = h
                b = nb
                nb += 1
                break
            if keys[at] == h:
                break
            at = (at + 1) & mask
        bucket[r] = b
        count[b] += 1
    pos = np.empty(nb, np.int64)
    total = 0
    longest = 0
    for b in range(nb):
        if count[b] >= 2:
            pos[b] = total
            total += count[b]
            longest = max(longest, count[b])
        else:
            pos[b] = -1
    members = np.empty(total, np.int64)
    left = np.empty(total, np.int64)
    for r in range(m):
        b = bucket[r]
        p = pos[b]
        if p >= 0:
            members[p] = r
            count[b] -= 1
            left[p] = count[b]
            pos[b] = p + 1
    return members, left, longest


@numba.njit(**_OPTS)
def _fmix64(x):
    x ^= x >> np.uint64(33)
    x *= _M1
    x ^= x >> np.uint64(33)
    x *= _M2
    x ^= x >> np.uint64(33)
    return x


@numba.njit(**_OPTS)
def shingle_keys(tok, counts, k, first_text, bits):
    """The shingle set of each text as sorted unique keys (text << bits) | (top `bits` bits of
    the shingle hash), texts numbered from `first_text`; `tok` the token hashes of the texts
    one after another, `counts` tokens per text. A text of c >= k tokens has the c - k + 1
    hashes of its k-token windows (the first token times the golden ratio, then fmix64 of
    the hash xor each next token; for k = 1 fmix64(token xor golden)); a text of 1 <= c < k
    tokens one hash of its whole ordered sequence. -> (keys, set size per text)."""
    n = counts.shape[0]
    total = 0
    for t in range(n):
        total += max(counts[t] - (k - 1), 1) if counts[t] > 0 else 0
    keys = np.empty(total, np.uint64)
    size = np.zeros(n, np.int64)
    drop = np.uint64(64 - bits)
    out = 0
    pos = 0
    for t in range(n):
        c = counts[t]
        if c == 0:
            continue
        high = np.uint64(first_text + t) << np.uint64(bits)
        begin = out
        if c >= k:
            for p in range(pos, pos + c - k + 1):
                if k > 1:
                    h = tok[p] * _GOLD
                else:
                    h = _fmix64(tok[p] ^ _GOLD)
                for j in range(1, k):
                    h = _fmix64(h ^ tok[p + j])
                keys[out] = high | (h >> drop)
                out += 1
        else:
            x = np.uint64(0)
            for q in range(c):
                x ^= _fmix64(tok[pos + q] + np.uint64(q + 1) * _GOLD)
            keys[out] = high | (_fmix64(x ^ (np.uint64(c) * _SHORT_TAG)) >> drop)
            out += 1
        pos += c
        if out - begin > 1:  # sorted, repeats dropped
            keys[begin:out] = np.sort(keys[begin:out])
            w = begin + 1
            for r in range(begin + 1, out):
                if keys[r] != keys[w - 1]:
                    keys[w] = keys[r]
                    w += 1
            out = w
        size[t] = out - begin
    return keys[:out].copy(), size


@numba.njit(**_OPTS)
def _slot(h, bits):
    return np.int64((h * _GOLD) >> np.uint64(64 - bits))  # Fibonacci hashing: the product's top bits


@numba.njit(**_OPTS)
def _byte(data, p, rule):
    """data[p], an ASCII capital lowered when the ASCII rules apply."""
    c = data[p]
    if rule and 65 <= c <= 90:
        c += 32
    return c


@numba.njit(**_OPTS)
def _lookup(slots, bits, hashes, start, arena, data, ws, wl, h, rule):
    """(slot, number) of the word data[ws:ws + wl] (lowered by `rule`), number -1 if new."""
    mask = (1 << bits) - 1
    at = _slot(h, bits)
    while True:
        u = slots[at]
        if u < 0:
            return at, -1
        if hashes[u] == h and start[u + 1] - start[u] == wl:
            same = True
            s0 = start[u]
            for k in range(wl):
                if arena[s0 + k] != _byte(data, ws + k, rule):
                    same = False
                    break
            if same:
                return at, u
        at = (at + 1) & mask


@numba.njit(**_OPTS)
def _rehash(hashes, nu, bits):
    mask = (1 << bits) - 1
    slots = np.full(1 << bits, -1, np.int64)
    for v in range(nu):
        k = _slot(hashes[v], bits)
        while slots[k] >= 0:
            k = (k + 1) & mask
        slots[k] = v
    return slots


@numba.njit(**_OPTS)
def words(data, offs, ascii_rules):
    """Words of text t = data[offs[t]:offs[t+1]] (UTF-8): with ascii_rules[t], maximal runs of
    ASCII letters and digits, lowercased (what lowering, replacing [^a-z0-9 ]+ by a space and
    splitting on spaces gives); else maximal runs of bytes other than a space (the text is
    already lowered and spaced). -> (`ids`: a number per word occurrence in text order, equal
    for equal words; `counts`: words per text; `arena`, `start`: the distinct words' bytes,
    word u = arena[start[u]:start[u+1]]).

    Numbers come from an open-addressing table on each word's FNV-1a hash (at most half
    full), bytes compared on an equal hash against the small arena of distinct words. The
    arrays are allocated at their bounds (a word takes a byte and a separator) so that the
    loop never reallocates (numba's reference counting of reassigned arrays doubled its time)."""
    n = offs.shape[0] - 1
    bound = data.shape[0] // 2 + n + 1
    ids = np.empty(bound, np.int64)
    counts = np.zeros(n, np.int64)
    hashes = np.empty(bound, np.uint64)
    start = np.zeros(bound + 1, np.int64)
    arena = np.empty(data.shape[0], np.uint8)
    bits = 12
    slots = np.full(1 << bits, -1, np.int64)
    nw = 0
    nu = 0
    for t in range(n):
        e = offs[t + 1]
        pos = offs[t]
        rule = ascii_rules[t]
        while pos < e:
            ws = pos
            h = _FNV_OFFSET
            while pos < e:
                c = data[pos]
                if rule:
                    if 65 <= c <= 90:
                        c += 32
                    if not ((97 <= c <= 122) or (48 <= c <= 57)):
                        break
                elif c == 32:
                    break
                h = (h ^ np.uint64(c)) * _FNV_PRIME
                pos += 1
            wl = pos - ws
            pos += 1  # the separator
            if wl == 0:
                continue
            at, u = _lookup(slots, bits, hashes, start, arena, data, ws, wl, h, rule)
            if u < 0:
                u = nu
                s0 = start[nu]
                for k in range(wl):
                    arena[s0 + k] = _byte(data, ws + k, rule)
                start[nu + 1] = s0 + wl
                hashes[nu] = h
                nu += 1
                slots[at] = u
                if 2 * nu > (1 << bits):
                    bits += 1
                    slots = _rehash(hashes, nu, bits)
            ids[nw] = u
            nw += 1
            counts[t] += 1
    return ids[:nw].copy(), counts, arena[:start[nu]].copy(), start[:nu + 1].copy()
