"""Small helpers shared by the steps: reject rows, stable hashes, batch utilities."""
from __future__ import annotations

import xxhash
import pyarrow as pa

from schemas.models import REJECT_RAW_LIMIT

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


def shard_of(key: str, shards: int) -> int:
    return xxhash.xxh3_64_intdigest(key.encode("utf-8")) % shards


def concat(tables) -> pa.Table:
    """One table from RecordBatches/Tables of the same schema."""
    parts = [t if isinstance(t, pa.Table) else pa.Table.from_batches([t]) for t in tables]
    return pa.concat_tables(parts) if parts else None
