"""Small helpers shared by the steps: reject rows, stable hashes, batch utilities."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from schemas.models import REJECT_RAW_LIMIT
from transforms import coders as _coders  # noqa: F401 - registers the fallback coder (see its docstring)

REJECTS = "rejects"


def reject(uri: str, line: int | None, stage: str, reason: str, raw) -> dict:
    """A `rejects` row. `raw` (bytes or str) is kept, truncated to REJECT_RAW_LIMIT characters."""
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw[: REJECT_RAW_LIMIT * 4]).decode("utf-8", "backslashreplace")
    return {"source_uri": uri, "line": line, "stage": stage, "reason": reason, "raw": str(raw)[:REJECT_RAW_LIMIT]}


def stable_hash(text: str, hex_chars: int = 16) -> str:
    """A stable hex digest (xxh3-128, truncated): the same in every process and run.

    Python's hash() is salted per process, so it is never used for ids or shards."""
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8"))[:hex_chars]


# each byte value -> its two lower-case hex digits, as one little-endian uint16
_HEX_PAIRS = np.array([ord(h[0]) | ord(h[1]) << 8 for h in (f"{i:02x}" for i in range(256))], "<u2")


def hex_strings(digests: np.ndarray, hex_chars: int) -> pa.Array:
    """Rows of digest bytes (uint8, one row per value, big-endian as xxhash's hexdigest) ->
    a string array of their first `hex_chars` lower-case hex digits, formed with numpy."""
    n = len(digests)
    pairs = _HEX_PAIRS[digests]  # (n, bytes) uint16: each byte's two digits
    width = min(hex_chars, 2 * digests.shape[1])
    text = np.ascontiguousarray(pairs.view(np.uint8).reshape(n, 2 * digests.shape[1])[:, :width])
    offsets = np.arange(0, width * n + 1, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text)])


def stable_hashes(values: pa.Array, hex_chars: int = 16) -> pa.Array:
    """`stable_hash` of every value of an Arrow string array (no nulls), as a string array:
    xxh3-128 of each value's UTF-8 bytes read in place, the digests' hex digits formed with
    numpy (per value a digest call, instead of a Python string, its encoding and a hex
    string)."""
    if values.null_count:
        raise ValueError(f"stable_hashes of {values.null_count} null values")
    data, off = string_view(values)
    mv, o = memoryview(data), off.tolist()
    digest = xxhash.xxh3_128_digest  # 16 bytes, big-endian: hexdigest's order
    raw = np.frombuffer(b"".join([digest(mv[i:j]) for i, j in zip(o, o[1:])]), np.uint8)
    return hex_strings(raw.reshape(len(values), 16), hex_chars)


def shard_of(key: str, shards: int) -> int:
    return xxhash.xxh3_64_intdigest(key.encode("utf-8")) % shards


def shards_of(keys, shards: int) -> np.ndarray:
    """`shard_of` of every value of an Arrow string column (no nulls), each distinct value
    hashed once."""
    arr = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    if not len(arr):
        return np.zeros(0, np.int64)
    enc = pc.dictionary_encode(arr)
    of = np.fromiter((shard_of(k, shards) for k in enc.dictionary.to_pylist()), np.int64, len(enc.dictionary))
    return of[enc.indices.to_numpy(zero_copy_only=False)]


_HEX = np.zeros(256, np.uint64)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i


def fingerprint_shards(fps, shards: int) -> np.ndarray:
    """Shard of each fingerprint (hex digits of a uniform hash): its last 8 digits mod
    `shards`, computed on the Arrow buffer. Rows with the same fingerprint share a shard."""
    arr = fps.combine_chunks() if isinstance(fps, pa.ChunkedArray) else fps
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.int64)
    arr = arr.cast(pa.large_string()) if arr.type != pa.large_string() else arr
    offs = np.frombuffer(arr.buffers()[1], np.int64, n + 1, arr.offset * 8)
    ends = offs[1:]
    if arr.null_count or np.any(ends - offs[:-1] < 8):
        return np.array([int(f[-8:], 16) % shards if f else 0 for f in arr.to_pylist()], np.int64)
    data = np.frombuffer(arr.buffers()[2], np.uint8)
    digits = _HEX[data[ends[:, None] - np.arange(8, 0, -1)]]
    value = np.zeros(n, np.uint64)
    for k in range(8):
        value = (value << np.uint64(4)) | digits[:, k]
    return (value % np.uint64(shards)).astype(np.int64)


def concat_as_first(tables: list[pa.Table]) -> pa.Table:
    """One table from tables whose schemas may differ in details (nullability, metadata):
    each is cast to the first one's schema (a table whose schema is already equal, metadata
    aside, is taken as it is: a cast walks every column in Python)."""
    schema = tables[0].schema
    return concat([t if t.schema.equals(schema) else t.cast(schema) for t in tables])


def concat(tables) -> pa.Table:
    """One table from RecordBatches/Tables of the same schema."""
    parts = [t if isinstance(t, pa.Table) else pa.Table.from_batches([t]) for t in tables]
    return pa.concat_tables(parts) if parts else None


# Options that configure Beam's filesystems (S3, GCS, Azure, HDFS): the sink carries them to the
# workers with its DoFns (see `use_filesystem_options`).
_FS_OPTION_PREFIXES = ("s3_", "gcs_", "azure_", "blob_service_", "hdfs_")
_FS_OPTION_NAMES = ("project", "impersonate_service_account")


def filesystem_options(options: PipelineOptions | None) -> dict:
    """The run's filesystem settings (`--s3_endpoint_url`, `--hdfs_host`, ...), non-defaults only."""
    if options is None:
        return {}
    return {k: v for k, v in options.get_all_options(drop_default=True).items()
            if k.startswith(_FS_OPTION_PREFIXES) or k in _FS_OPTION_NAMES}


def use_filesystem_options(fs_options: dict) -> None:
    """Give Beam's FileSystems the run's options in a worker that was started without them.

    Beam's own worker entry point (`sdk_worker_main`: containers, PROCESS environments,
    Dataflow, the multi-processing DirectRunner) calls `FileSystems.set_options`; an SDK
    harness started directly (`worker_pool_main` without a container executable) does not,
    and Beam's S3 filesystem then refuses to work at all. Only fills the gap: options already
    set are kept.
    """
    if FileSystems._pipeline_options is None:  # pylint: disable=protected-access
        FileSystems.set_options(PipelineOptions.from_dictionary(dict(fs_options)))


# --- UTF-8 bytes of Arrow string arrays, for the numpy kernels -------------------------------

def string_view(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes, int64 offsets from 0) of a string or large_string array, without copying
    the bytes: value i is bytes[offsets[i]:offsets[i + 1]].

    >>> string_view(pa.array(["ab", "", "é"]))
    (array([ 97,  98, 195, 169], dtype=uint8), array([0, 2, 2, 4]))
    """
    odt = np.int32 if arr.type == pa.string() else np.int64
    off = np.frombuffer(arr.buffers()[1], odt, count=len(arr) + 1,
                        offset=arr.offset * np.dtype(odt).itemsize).astype(np.int64)
    start, end = int(off[0]), int(off[-1])
    if end == start:
        return np.empty(0, np.uint8), off - start
    return np.frombuffer(arr.buffers()[2], np.uint8, count=end - start, offset=start), off - start


def utf8_code_points(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position, code point, byte length) of every multi-byte character of valid UTF-8 bytes.

    >>> utf8_code_points(np.frombuffer("aé€".encode(), np.uint8))
    (array([1, 3]), array([ 233, 8364], dtype=int32), array([2, 3]))
    """
    lead = np.flatnonzero(b >= 0xC0)
    if not lead.size:
        return lead, lead, lead
    last = len(b) - 1
    b0 = b[lead].astype(np.int32)
    c1, c2, c3 = (b[np.minimum(lead + k, last)].astype(np.int32) & 0x3F for k in (1, 2, 3))
    nb = 2 + (b0 >= 0xE0) + (b0 >= 0xF0)
    cp = np.where(nb == 2, ((b0 & 0x1F) << 6) | c1,
                  np.where(nb == 3, ((b0 & 0x0F) << 12) | (c1 << 6) | c2,
                           ((b0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3))
    return lead, cp, nb
