"""Pydantic v2 models: the single source of truth for every record shape.

Validation happens at the edges (an update feed line is validated with `UpdateIn`); between
pipeline steps records travel as Arrow record batches whose schemas are derived here from the
models with `arrow_schema()`, so a column added to a model is added everywhere.

Example: `UpdateIn.model_validate({"article_id": "a1", "text": "Shelling near Donetsk.",
"published_at": "2022-02-20T08:00:00+02:00"})` gives `published_at` = 2022-02-20 06:00 UTC.
A timestamp without an offset is refused: a naive time is ambiguous by up to a day.
"""
from __future__ import annotations

import datetime as dt
import types
import typing
from typing import Annotated, Literal, Optional, Union

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

UTC = dt.timezone.utc
# Arrow types that differ from the default mapping are stated on the field.
INT32 = {"arrow": "int32"}
REJECT_RAW_LIMIT = 2000
# Epoch seconds accepted as a publication time: [0, this), i.e. 1970 up to the year 3000.
EPOCH_SECONDS_END = 32503680000

Kind = Literal["headline", "heading", "paragraph", "bullet"]


class UpdateIn(BaseModel):
    """One line of the update feed (JSONL)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    text: str = Field(min_length=1)
    published_at: dt.datetime
    article_id: Optional[str] = None
    url: Optional[str] = None
    update_id: Optional[str] = None
    source: Optional[str] = None
    headline: Optional[str] = None
    section: Optional[str] = None

    @field_validator("published_at", mode="before")
    @classmethod
    def _published(cls, v):
        if isinstance(v, bool):
            raise ValueError("must be ISO 8601 with offset or epoch seconds")
        if isinstance(v, (int, float)):
            if not (0 <= v < EPOCH_SECONDS_END):
                raise ValueError("epoch seconds out of range")
            return dt.datetime.fromtimestamp(v, UTC)
        if isinstance(v, str):
            try:
                parsed = dt.datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("not an ISO 8601 timestamp") from None
            if parsed.tzinfo is None:
                raise ValueError("ISO timestamp has no UTC offset")
            try:
                return parsed.astimezone(UTC)
            except OverflowError:  # year 1 with a positive offset, 9999 with a negative one
                raise ValueError("timestamp out of range") from None
        raise ValueError("must be ISO 8601 with offset or epoch seconds")

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text is blank")
        return v

    @field_validator("article_id", "url", "update_id", "source", "headline", "section")
    @classmethod
    def _unicode(cls, v):
        if v is not None:
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
                raise ValueError("not valid Unicode (lone surrogate)") from None
        return v

    @model_validator(mode="after")
    def _identity(self):
        if not (self.article_id or self.url):
            raise ValueError("article_id or url is required")
        return self


class Block(BaseModel):
    """One block read from an input (the unit the accounting invariant counts).

    Internal: travels as Arrow between steps. `line` is the 1-based line (text, JSONL) or
    record (live-blog post) of the input; `position` is the block's order in its article.
    """

    source_uri: str
    line: int
    source: str
    article_id: str
    update_id: str
    headline: str
    section: Optional[str]
    kind: Kind
    position: Annotated[int, INT32]
    text: str
    published_at: dt.datetime


class Event(BaseModel):
    """A row of the `events` table (partition column `event_date` lives in the folder name)."""

    event_id: str
    event_date: dt.date
    event_time: dt.datetime
    time_source: Literal["text", "published"]
    published_at: dt.datetime
    source: str
    article_id: str
    update_id: str
    headline: str
    section: Optional[str]
    kind: Kind
    position: Annotated[int, INT32]
    text: str
    fingerprint: str
    cluster_id: str
    mention_count: Annotated[int, INT32]


class Duplicate(BaseModel):
    """A row of the `duplicates` table: one input occurrence merged into `event_id`."""

    event_id: str
    event_date: dt.date
    source: str
    article_id: str
    update_id: str
    text: str
    method: Literal["exact", "near"]
    similarity: float


class Reject(BaseModel):
    """A row of the `rejects` table: one refused input (a block, a line, or a whole file)."""

    source_uri: str
    line: Optional[int]
    stage: str
    reason: str
    raw: str


class Quality(BaseModel):
    """A row of the `quality` table, one per event_date (NULL: rejects with no known day).

    blocks_read = events_written + exact_duplicates + near_duplicates + rejected + redelivered.
    """

    event_date: Optional[dt.date]
    blocks_read: int
    rejected: int
    exact_duplicates: int
    near_duplicates: int
    redelivered: int = Field(0, description="blocks that repeat an occurrence already read (same article, "
                                            "update and canonical text): no row, only this count")
    late: int
    events_written: int


def _arrow_type(annotation, extra: dict | None) -> tuple[pa.DataType, bool]:
    nullable = False
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        args = typing.get_args(annotation)
        annotation = args[0]
        for meta in args[1:]:
            if isinstance(meta, dict):
                extra = {**(extra or {}), **meta}
        origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if extra and extra.get("arrow") == "int32":
        return pa.int32(), nullable
    if origin is Literal or annotation is str:
        return pa.string(), nullable
    if annotation is bool:
        return pa.bool_(), nullable
    if annotation is int:
        return pa.int64(), nullable
    if annotation is float:
        return pa.float64(), nullable
    if annotation is dt.datetime:
        return pa.timestamp("us", tz="UTC"), nullable
    if annotation is dt.date:
        return pa.date32(), nullable
    raise TypeError(f"no Arrow type for {annotation!r}")


def arrow_schema(model: type[BaseModel], *, exclude: tuple[str, ...] = ()) -> pa.Schema:
    """The Arrow schema of a model, fields in declaration order."""
    fields = []
    for name, info in model.model_fields.items():
        if name in exclude:
            continue
        typ, nullable = _arrow_type(info.annotation, None)
        for meta in info.metadata:
            if isinstance(meta, dict) and meta.get("arrow") == "int32":
                typ = pa.int32()
        fields.append(pa.field(name, typ, nullable=nullable))
    return pa.schema(fields)


# Tables as written: the partition column is in the folder name, not in the files.
PARTITION = "event_date"
BLOCK_SCHEMA = arrow_schema(Block)
EVENT_SCHEMA = arrow_schema(Event, exclude=(PARTITION,))
DUPLICATE_SCHEMA = arrow_schema(Duplicate, exclude=(PARTITION,))
REJECT_SCHEMA = arrow_schema(Reject)
QUALITY_SCHEMA = arrow_schema(Quality, exclude=(PARTITION,))
TABLE_SCHEMAS = {
    "events": EVENT_SCHEMA,
    "duplicates": DUPLICATE_SCHEMA,
    "rejects": REJECT_SCHEMA,
    "quality": QUALITY_SCHEMA,
}
PARTITIONED_TABLES = ("events", "duplicates", "quality")
