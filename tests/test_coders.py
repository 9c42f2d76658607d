"""The fallback coder of untyped PCollections (`transforms.coders`): what it encodes comes back
equal, spill references are packed rather than pickled, and Arrow data is sized by its buffers
without being encoded."""
import pickle

import pyarrow as pa
import pytest
from apache_beam import coders
from apache_beam.typehints import typehints

import transforms.coders as tc
from transforms.coders import ArrowSizedCoder, arrow_size
from transforms.spill import SpillRef

REFS = [
    SpillRef("/tmp/spill/a.arrow", 0, 1, 10, 5),
    SpillRef("/tmp/spill/b.arrow", 3, 7, 12_345, -1),  # whole batches: offset -1
    SpillRef("/srv/spill/dag ü/ø.arrow", 2**40, 1, 2**33, 2**35),  # big numbers, non-ASCII path
    SpillRef("", 0, 0, 0),
]


def test_untyped_pcollections_get_the_arrow_sized_coder():
    assert isinstance(coders.registry.get_coder(typehints.Any), ArrowSizedCoder)


@pytest.mark.parametrize("ref", REFS)
def test_a_spill_reference_round_trips_packed_not_pickled(ref):
    c = ArrowSizedCoder()
    for value in (ref, ("2024-03-04/0003", ref), ("2024-03-04", [[(5, ref), (6, ref)]])):
        back = c.decode(c.encode(value))
        assert back == value
    got = c.decode(c.encode(ref))
    assert type(got) is SpillRef and got.offset == ref.offset and got.path == ref.path
    packed = tc._encode(ref)
    assert packed[:1] == tc._REF and len(packed) == 1 + 32 + len(ref.path.encode())
    assert len(packed) < len(pickle.dumps(ref, pickle.HIGHEST_PROTOCOL))


def test_other_values_fall_back_to_pickle_and_round_trip():
    c = ArrowSizedCoder()
    t = pa.table({"a": [1, 2, None], "s": ["x", "ü", None]})
    back = c.decode(c.encode(("k", t)))
    assert back[0] == "k" and back[1].equals(t)
    assert tc._encode(t)[:1] != tc._REF  # a pickle: never read as a reference
    assert c.decode(c.encode({"day": "2024-03-04", "n": 3})) == {"day": "2024-03-04", "n": 3}


def test_arrow_values_are_sized_by_their_buffers_without_encoding(monkeypatch):
    t = pa.table({"a": list(range(1000)), "s": [f"row {i}" for i in range(1000)]})
    impl = ArrowSizedCoder().get_impl()
    monkeypatch.setattr(tc, "_encode", lambda v: (_ for _ in ()).throw(AssertionError("encoded to size")))
    monkeypatch.setattr(pickle, "dumps", lambda *a, **k: (_ for _ in ()).throw(AssertionError("pickled to size")))
    assert impl.estimate_size(t) == t.get_total_buffer_size()
    assert impl.estimate_size(("k", [t, t])) == 2 * t.get_total_buffer_size() + 16
    size, observables = impl.get_estimated_size_and_observables(("k", t))
    assert size == t.get_total_buffer_size() + 16 and observables == []
    assert arrow_size(("k", 3)) is None  # no Arrow data: the coder's own estimate
    assert impl.estimate_size(("k", 3)) > 0
