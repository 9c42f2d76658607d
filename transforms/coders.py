"""The coder of the pipeline's untyped PCollections: Beam's FastPrimitivesCoder, except that
it sizes Arrow data by its buffers instead of encoding it.

Every step passes Arrow tables and record batches (alone, in tuples such as `(key, table)`
or `Part`, or in lists); their PCollections have no declared type, so Beam gives them its
fallback coder, FastPrimitivesCoder, which pickles an Arrow object. Encoding happens only
where a PCollection crosses a stage boundary, and with spill files only references do. But
every operation of a fused stage also samples its outputs to estimate their size for the
`MeanByteCount` metric (`opcounters.OperationCounters.do_sample`: the first 10 elements of
every input element, then about 10 in N), and FastPrimitivesCoder estimates a size by
encoding: each big table was pickled again at each step it passed, only to measure it. On
perf.py's 200k-update feed that was 1.3 GB of pickles for a 134 MB input; on the 28-day 1M
feed, 3.7 % of the workers' samples (BENCHMARKS.md).

`ArrowSizedCoder` encodes as FastPrimitivesCoder (it is one: same deterministic form for
keys) and estimates the size of a value holding Arrow data as the sum of its Arrow buffers.
Its fallback, for the types FastPrimitivesCoder does not know, writes a spill reference
(`transforms.spill.SpillRef`, the element of every spilled shuffle: ~134k of them cross the
day shuffle of the 28-day 1M feed, each decoded and encoded again by the runner's grouping)
as its five fields packed, instead of a pickle, and pickles everything else.

Importing this module registers `ArrowSizedCoder` as the registry's fallback coder
(`CoderRegistry.register_fallback_coder`), so every PCollection without a declared type gets
it; `transforms.common`, which every step imports, imports it.
"""
from __future__ import annotations

import pickle
import struct

import pyarrow as pa
from apache_beam import coders
from apache_beam.coders import coder_impl

from transforms.spill import SpillRef

_ARROW = (pa.Table, pa.RecordBatch, pa.Array, pa.ChunkedArray)
_SCALAR = 16  # bytes counted for each non-Arrow item beside Arrow data (a key, a day, a count)


def arrow_size(value, depth: int = 0) -> int | None:
    """Bytes of the Arrow buffers in `value`: an Arrow table, batch or array, or a tuple or
    list holding some (to two levels: `(key, [tables])`), each other item counted as a few
    bytes. None when `value` holds no Arrow data (then the coder's own estimate applies)."""
    if isinstance(value, _ARROW):
        return value.get_total_buffer_size()
    if depth < 2 and isinstance(value, (tuple, list)):
        total, found = 0, False
        for item in value:
            size = arrow_size(item, depth + 1)
            if size is None:
                total += _SCALAR
            else:
                total, found = total + size, True
        return total if found else None
    return None


_REF = b"\x00"  # a pickle starts with the PROTO opcode, 0x80: the first byte tells them apart
_REF_FIELDS = struct.Struct("<qqqq")


def _encode(value) -> bytes:
    if type(value) is SpillRef:
        return _REF + _REF_FIELDS.pack(value.first, value.count, value.rows, value.offset) + value.path.encode()
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def _decode(data: bytes):
    if data[:1] == _REF:
        first, count, rows, offset = _REF_FIELDS.unpack_from(data, 1)
        return SpillRef(bytes(data[1 + _REF_FIELDS.size:]).decode(), first, count, rows, offset)
    return pickle.loads(data)


class _RefsOrPickle(coders.coders.FastCoder):
    """The fallback of ArrowSizedCoder: SpillRef packed, any other value pickled."""

    def _create_impl(self):
        return coder_impl.CallbackCoderImpl(_encode, _decode)

    def is_deterministic(self):
        return False

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))


class _ArrowSizedImpl(coder_impl.FastPrimitivesCoderImpl):
    """FastPrimitivesCoderImpl (encoding untouched) whose size estimate reads Arrow buffers."""

    def estimate_size(self, value, nested=False):
        size = arrow_size(value)
        return super().estimate_size(value, nested) if size is None else size

    def get_estimated_size_and_observables(self, value, nested=False):
        size = arrow_size(value)
        if size is None:
            return super().get_estimated_size_and_observables(value, nested)
        return size, []


class ArrowSizedCoder(coders.FastPrimitivesCoder):
    """FastPrimitivesCoder with a size estimate that does not encode Arrow data, and spill
    references packed (`_RefsOrPickle`)."""

    def __init__(self, fallback_coder=None):
        super().__init__(fallback_coder or _RefsOrPickle())

    def _create_impl(self):
        return _ArrowSizedImpl(self._fallback_coder.get_impl())

    @classmethod
    def from_type_hint(cls, typehint, registry):
        # Beam's own fallback order puts the protobuf coders before FastPrimitivesCoder
        for proto in (coders.ProtoCoder, coders.ProtoPlusCoder):
            try:
                return proto.from_type_hint(typehint, registry)
            except Exception:  # noqa: BLE001 - not a protobuf type (FirstOf's own test)
                pass
        return cls()


coders.registry.register_fallback_coder(ArrowSizedCoder)
