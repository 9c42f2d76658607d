"""benchmarks/node_gather.py: the three node layouts it times hold the same values."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import node_gather  # noqa: E402


def test_the_layouts_give_the_same_survivors_and_a_wrong_unpack_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(node_gather, "PER_DICT", 4000)  # small dictionaries: a quick test
    out = node_gather.run(4000, 500, 1, tmp_path)
    assert out["dictionaries"] == 1 and out["rows_per_dictionary"] == 500
    assert set(out["ns_per_survivor"]) == {"columns", "record", "blob"}
    assert all(v["total"] > 0 for v in out["ns_per_survivor"].values())

    right = node_gather.unpack

    def shifted(b):  # the fixed fields read one byte late
        head, sets = right(b)
        return np.roll(head, 1, axis=1), sets

    monkeypatch.setattr(node_gather, "unpack", shifted)
    with pytest.raises(AssertionError, match="blob and record"):
        node_gather.check(tmp_path / "nodes-0.arrow", 100, np.random.default_rng(0))
