"""The compiled near-duplicate kernels (`transforms/compiled.py`) against per-row references
written the plain way, on random inputs with the awkward cases (empty sets, equal and
disjoint sets, wrap-around arithmetic)."""
import numpy as np
import pyarrow as pa

from transforms import compiled
from transforms import neardup as nd


def test_minhash_minima_are_the_minimum_of_the_wrapped_affine_hash_per_text():
    rng = np.random.default_rng(3)
    sizes = rng.integers(0, 40, 300)
    sizes[:5] = 0  # empty ranges: every minimum stays 0xFFFFFFFF
    offs = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=offs[1:])
    x32 = rng.integers(0, 1 << 32, offs[-1], dtype=np.uint64).astype(np.uint32)
    a = (rng.integers(0, 1 << 32, 96, dtype=np.uint64) | np.uint64(1)).astype(np.uint32)
    b = rng.integers(0, 1 << 32, 96, dtype=np.uint64).astype(np.uint32)
    got = compiled.minhash_mins(x32, offs[:-1], offs[1:], a, b, np.empty((len(sizes), 96), np.uint32))
    for t in range(len(sizes)):
        xs = [int(v) for v in x32[offs[t]:offs[t + 1]]]
        want = [min(((x * int(ap) + int(bp)) % (1 << 32) for x in xs), default=0xFFFFFFFF)
                for ap, bp in zip(a, b)]
        assert got[t].tolist() == want, t


def test_intersections_count_the_shared_hashes_of_each_pair_of_sets():
    rng = np.random.default_rng(4)
    bits = 40
    pool = rng.integers(0, 1 << bits, 60, dtype=np.uint64)  # a small pool: sets overlap a lot
    sets = [np.unique(rng.choice(pool, rng.integers(0, 30))) for _ in range(200)]
    sets[7] = sets[8].copy()  # equal sets
    sizes = np.array([len(s) for s in sets], np.int64)
    offs = np.zeros(len(sets) + 1, np.int64)
    np.cumsum(sizes, out=offs[1:])
    key = np.concatenate([(np.uint64(t) << np.uint64(bits)) | s for t, s in enumerate(sets)])
    pi, pj = rng.integers(0, 200, 5000), rng.integers(0, 200, 5000)
    pi[:3], pj[:3] = [7, 0, 3], [8, 0, 3]
    got = compiled.intersections(key, offs, np.uint64((1 << bits) - 1), pi, pj)
    want = [len(set(sets[i].tolist()) & set(sets[j].tolist())) for i, j in zip(pi, pj)]
    assert got.tolist() == want
    assert got[0] == sizes[7] > 0 and (got == 0).any()


def test_exact_scores_on_real_sentences_equal_python_set_arithmetic():
    texts = ["the minister said on monday that the talks would resume next week",
             "the minister said on monday the talks would resume next week in geneva",
             "talks would resume next week, the minister said on monday",
             "an unrelated sentence about the weather in the north", "", "word"]
    arr = pa.array(texts, pa.large_string())
    sets = nd._shingle_sets(arr, 2, 1, True)
    mask = (1 << sets.bits) - 1
    members = [set((int(k) & mask) for k in sets.key[sets.offs[t]:sets.offs[t + 1]]) for t in range(len(texts))]
    i, j = np.array([0, 0, 1, 0, 4, 5]), np.array([1, 2, 2, 3, 0, 5])
    got = nd._intersections(sets, i, j)
    assert got.tolist() == [len(members[a] & members[b]) for a, b in zip(i, j)]
    assert got[0] > 5 and got[3] <= 1


def test_agreement_counts_equal_bytes_per_pair():
    rng = np.random.default_rng(5)
    sig8 = rng.integers(0, 3, (100, 96)).astype(np.uint8)
    ci, cj = rng.integers(0, 100, 2000), rng.integers(0, 100, 2000)
    got = compiled.agreement(sig8, ci, cj)
    assert got.tolist() == [int((sig8[a] == sig8[b]).sum()) for a, b in zip(ci, cj)]
    assert nd._agreement(sig8, ci[:1], ci[:1]).tolist() == [1.0]


def _round_pairs_by_definition(bt, rnd, label):
    """Pairs (i, j), j the d-th next row after i (index order) in the bucket of band b, with
    rnd.lo <= d <= rnd.hi and rnd.band_lo <= b < rnd.band_hi, in different components of
    `label`, sharing no band below b."""
    m, n_bands = bt.shape
    out = []
    for b in range(max(rnd.band_lo, 0), min(rnd.band_hi, n_bands)):
        buckets = {}
        for r in range(m):
            buckets.setdefault(int(bt[r, b]), []).append(r)
        for rows in buckets.values():
            for p, i in enumerate(rows):
                for d in range(rnd.lo, rnd.hi + 1):
                    if p + d >= len(rows):
                        break
                    j = rows[p + d]
                    if label is not None and label[i] == label[j]:
                        continue
                    if any(bt[i, c] == bt[j, c] for c in range(b)):
                        continue
                    out.append((i, j))
    return out


def test_round_pairs_are_each_pair_once_in_its_first_shared_band():
    rng = np.random.default_rng(6)
    m, n_bands = 300, 12
    bt = rng.integers(0, 6, (m, n_bands)).astype(np.uint64)  # few values: big buckets, many shared bands
    sk = nd._Sketch(np.ascontiguousarray(bt.T), np.zeros((m, 1), np.uint8))
    runs = nd._band_runs(sk)
    label = rng.integers(0, 40, m)
    for rnd, lab in [(nd.Round(1, 1, 0, 1), None), (nd.Round(1, 1, 1, 4), label), (nd.Round(2, 4), label),
                     (nd.Round(1, 64), None), (nd.Round(17, 30, 3, 7), label)]:
        i, j = nd.round_candidates(runs, bt, rnd, lab)
        got = list(zip(i.tolist(), j.tolist()))
        want = _round_pairs_by_definition(bt, rnd, lab)
        assert len(got) == len(set(got)), rnd  # each pair once
        assert sorted(got) == sorted(want), rnd
        assert len(want) > 50, rnd


def _tokens_by_arrow(texts: pa.Array, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The word rule as Arrow spells it (what `_tokens` did before its compiled pass): lower,
    every run of characters other than letters, digits, marks and space a space (ASCII texts by
    an ASCII class; others lose format characters first), split on spaces, empty words dropped;
    each word's xxh3 hash."""
    import pyarrow.compute as pc
    import xxhash

    low = pc.utf8_lower(texts)
    spaced = pc.replace_substring_regex(low, r"[^a-z0-9 ]+", " ")
    non_ascii = pc.invert(pc.fill_null(pc.string_is_ascii(low), True))
    if pc.any(non_ascii).as_py():
        idx = pa.array(np.flatnonzero(non_ascii.to_numpy(zero_copy_only=False)))
        sub = pc.replace_substring_regex(low.take(idx), r"\p{Cf}+", "")
        sub = pc.replace_substring_regex(sub, r"[\p{P}\p{S}\p{C}\p{Z}]+", " ")
        spaced = pc.replace_with_mask(spaced, non_ascii, sub)
    toks, counts = [], []
    for s in spaced.to_pylist():
        w = [x for x in (s or "").split(" ") if x]
        toks += [xxhash.xxh3_64_intdigest(x.encode("utf-8"), seed) for x in w]
        counts.append(len(w))
    return np.array(toks, np.uint64), np.array(counts, np.int64)


HOSTILE = ["Hello, World!", None, "", "   ", "\tTabs\tand\nlines", "Kelvin \u212a sign", "ZERO-width\u200bjoin",
           "soft\u00adhyphen", "Émile Zola à Paris", "İstanbul ΣΊΣΥΦΟΣ straße", "emoji 😀 here", "数字123汉字",
           "a--b__c", "MiXeD CaSe 42x", "ǅemal", "ﬁne ligature", "x", "x y", "\u00a0nbsp\u00a0here", "déjà-vu",
           "A" * 300 + " b", "repeat repeat REPEAT Repeat"]


def test_words_of_texts_equal_arrows_lower_replace_split():
    import json

    from tests.conftest import need_shared

    data = need_shared()
    titles = [h["title"] for h in json.loads((data / "headlines" / "headlines.json").read_text())]
    blog = []
    for f in sorted((data / "liveblog").glob("*.json")):
        doc = json.loads(f.read_text())
        blog += [t for d in doc["documents"] for t in d["text"]] + [doc["title"]]
    assert len(titles) > 1000 and len(blog) > 50
    texts = [pa.array(HOSTILE, pa.large_string()), pa.array(HOSTILE, pa.string()).slice(3, 12),
             pa.array(titles, pa.large_string()), pa.array(blog, pa.string())]
    for arr in texts:
        got, want = nd._tokens(arr, 1, {}), _tokens_by_arrow(arr, 1)
        assert np.array_equal(got[1], want[1]) and np.array_equal(got[0], want[0])
    t, c = nd._tokens(pa.array(["repeat repeat REPEAT Repeat"], pa.large_string()), 1, {})
    assert c.tolist() == [4] and len(set(t.tolist())) == 1


def test_band_buckets_are_the_equal_hashes_with_two_or_more_rows_in_index_order():
    rng = np.random.default_rng(8)
    hashes = rng.integers(0, 300, 2000).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    hashes[:5] = np.uint64(2**64 - 1)  # the largest value, and a bucket of its own
    hashes[5] = np.uint64(12345)       # a single row: no bucket
    keys, ids = np.empty(4096, np.uint64), np.empty(4096, np.int64)
    members, left, longest = compiled.band_buckets(hashes, keys, ids)
    want = {}
    for r, h in enumerate(hashes.tolist()):
        want.setdefault(h, []).append(r)
    want = sorted(rows for rows in want.values() if len(rows) > 1)
    got, p = [], 0
    while p < len(members):
        got.append(members[p:p + left[p] + 1].tolist())
        assert left[p:p + left[p] + 1].tolist() == list(range(left[p], -1, -1))
        p += left[p] + 1
    assert sorted(got) == want and longest == max(len(b) for b in want)
    assert 5 not in members and [0, 1, 2, 3, 4] in got


def _shingles_by_numpy(tok: np.ndarray, counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The shingle rule as numpy spelt it before `compiled.shingle_keys`: -> (text index, shingle
    hash) for every shingle occurrence."""
    n = len(counts)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    # regular k-shingles: every token that has k-1 tokens after it in its own text
    valid = np.ones(len(tok), bool)
    for d in range(1, k):
        valid[starts[1:][counts >= d] - d] = False
    first = np.flatnonzero(valid)
    h = tok[first] * nd._GOLD if k > 1 else nd._fmix64(tok[first] ^ nd._GOLD)
    for j in range(1, k):
        h = nd._fmix64(h ^ tok[first + j])
    s_text = np.repeat(np.arange(n, dtype=np.int64), np.maximum(counts - (k - 1), 0))
    # texts with 1..k-1 tokens: one shingle for the whole (ordered) token sequence
    short = np.flatnonzero((counts > 0) & (counts < k))
    if len(short):
        c = counts[short]
        seg = np.cumsum(c) - c
        tpos = np.arange(int(c.sum()), dtype=np.int64) - np.repeat(seg, c)
        idx = np.repeat(starts[short], c) + tpos
        mixed = nd._fmix64(tok[idx] + (tpos.astype(np.uint64) + np.uint64(1)) * nd._GOLD)
        hs = nd._fmix64(np.bitwise_xor.reduceat(mixed, seg) ^ (c.astype(np.uint64) * np.uint64(0x5EED5EED5EED5EED)))
        s_text = np.concatenate([s_text, short])
        h = np.concatenate([h, hs])
    return s_text, h


def test_shingle_keys_equal_the_numpy_rule_sorted_and_unique_per_text():
    rng = np.random.default_rng(9)
    counts = rng.integers(0, 12, 3000)
    counts[:4] = [0, 1, 2, 3]
    tok = rng.integers(0, 40, int(counts.sum())).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # repeats
    for k in (1, 2, 3):
        for bits in (40, 50):
            keys, size = compiled.shingle_keys(tok, counts, k, 7, bits)
            s_text, h = _shingles_by_numpy(tok, counts, k)
            want = np.unique(((s_text + 7).astype(np.uint64) << np.uint64(bits)) | (h >> np.uint64(64 - bits)))
            assert np.array_equal(keys, want), (k, bits)
            assert np.array_equal(size, np.bincount((want >> np.uint64(bits)).astype(np.int64) - 7, minlength=len(counts)))
            if k == 1:  # repeated words: repeated shingles, dropped
                assert (size < counts).any()
