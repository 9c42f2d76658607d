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

numba (and llvmlite) are imported by this module only, so a process that never searches
near duplicates (the runner's main process) does not load them. Kernels are compiled on first
use and cached (`cache=True`: in `__pycache__` beside this file, or numba's user cache when
that is not writable), so worker processes after the first load them in milliseconds.
"""
from __future__ import annotations

import numba
import numpy as np

_OPTS = dict(cache=True, nogil=True, boundscheck=False)


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
