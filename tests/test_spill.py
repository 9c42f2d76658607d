"""Spill files: what a reference points at is what was written under its key."""
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.spill import _MAPS, SpillRef, release, tables_of, write_groups, write_ranges


def _table(n: int, seed: int = 3) -> tuple[pa.Table, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 7, n)
    t = pa.table({"row": np.arange(n), "text": [f"t{i}" for i in range(n)], "flag": rng.random(n) < 0.5})
    return t, keys


def test_write_ranges_gives_each_key_its_rows_in_order(tmp_path):
    t, keys = _table(1000)
    refs = write_ranges(str(tmp_path), t, keys)
    assert [k for k, _ in refs] == sorted(set(keys.tolist()))
    assert len({r.path for _, r in refs}) == 1  # one file, one batch
    for k, ref in refs:
        assert ref.first == 0 and ref.count == 1 and ref.offset >= 0
        (got,) = tables_of([ref])
        assert got.column("row").to_pylist() == np.flatnonzero(keys == k).tolist()
        assert got.column("flag").to_pylist() == t.column("flag").to_numpy()[keys == k].tolist()


def test_adjacent_ranges_are_read_as_one_chunk_and_others_stay_apart(tmp_path):
    t, keys = _table(500)
    refs = [r for _, r in write_ranges(str(tmp_path), t, keys)]
    (whole,) = tables_of(refs)  # every key in key order: one slice of the batch
    assert whole.column("row").num_chunks == 1
    assert whole.column("row").to_pylist() == np.argsort(keys, kind="stable").tolist()
    (gap,) = tables_of([refs[0], refs[2], refs[3]])  # not adjacent: two slices, same rows
    expect = [i for k in (0, 2, 3) for i in np.flatnonzero(keys == k).tolist()]
    assert gap.column("row").to_pylist() == expect
    assert gap.column("row").num_chunks == 2
    (back,) = tables_of([refs[3], refs[2]])  # out of order: kept in the order asked
    assert back.column("row").to_pylist() == (np.flatnonzero(keys == 3).tolist() + np.flatnonzero(keys == 2).tolist())


def test_write_groups_and_write_ranges_hold_the_same_rows(tmp_path):
    t, keys = _table(300, seed=9)
    by_groups = dict(write_groups(str(tmp_path / "g"), t, keys))
    by_ranges = dict(write_ranges(str(tmp_path / "r"), t, keys))
    assert by_groups.keys() == by_ranges.keys()
    for k in by_groups:
        (a,), (b,) = tables_of([by_groups[k]]), tables_of([by_ranges[k]])
        assert a.equals(b)
    assert write_ranges(str(tmp_path), t.slice(0, 0), keys[:0]) == []
    assert isinstance(by_ranges[int(keys[0])], SpillRef)


def test_write_ranges_makes_a_batch_per_run_of_keys_with_the_same_label(tmp_path):
    """The day shuffle's layout: a batch per day, a key (day/shard) a row range of its day's batch."""
    t, keys = _table(600, seed=4)
    labels = np.array([f"d{k // 3}/{k:04d}" for k in keys])  # days d0 (keys 0-2), d1 (3-5), d2 (6)
    refs = dict(write_ranges(str(tmp_path), t, labels, lambda key: key[:2]))
    assert sorted({(k[:2], r.first) for k, r in refs.items()}) == [("d0", 0), ("d1", 1), ("d2", 2)]
    for k, ref in refs.items():
        (got,) = tables_of([ref])
        assert got.column("row").to_pylist() == np.flatnonzero(labels == k).tolist()
    d1 = [refs[k] for k in sorted(refs) if k.startswith("d1")]
    (day,) = tables_of(d1)  # the keys of a day: one slice of its batch
    assert day.column("row").num_chunks == 1
    assert sorted(day.column("row").to_pylist()) == np.flatnonzero((keys >= 3) & (keys <= 5)).tolist()
    (two,) = tables_of([refs[max(k for k in refs if k.startswith("d0"))], d1[0]])  # adjacent rows, not one batch
    assert two.column("row").num_chunks == 2


def _rss_file_mb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no RssFile in /proc/self/status")


def test_release_drops_a_maps_pages_from_the_process_and_the_rows_stay_readable(tmp_path):
    n = 8 << 20  # 64 MB of int64
    t = pa.table({"v": np.arange(n, dtype=np.int64)})
    (_, ref), = write_groups(str(tmp_path), t, np.zeros(n, np.int64))
    (mapped,) = tables_of([ref])
    before = _rss_file_mb()
    assert pc.sum(mapped.column("v")).as_py() == n * (n - 1) // 2  # touches every page
    touched = _rss_file_mb()
    assert touched - before >= 48, (before, touched)  # the pages count in this process
    assert release(mapped) == 1
    assert touched - _rss_file_mb() >= 48  # and no longer do
    assert release(pa.table({"v": [1, 2]})) == 0  # a table in this process's memory: no map
    assert mapped.column("v").equals(t.column("v"))  # read again from the page cache


def test_tables_of_with_copy_gives_the_rows_in_this_process_and_closes_the_map(tmp_path):
    t, keys = _table(2000)
    refs = [r for _, r in write_ranges(str(tmp_path), t, keys)]
    mapped = tables_of(refs[1:3])
    maps = len(_MAPS)
    assert maps >= 1
    copied = tables_of(refs[1:3], copy=True)
    assert len(_MAPS) == maps  # the copy's own map is gone already
    assert [c.num_chunks for c in copied[0].columns] == [1, 1, 1]
    assert copied[0].equals(mapped[0])
    assert release(copied[0]) == 0  # no buffer of it is in a map
