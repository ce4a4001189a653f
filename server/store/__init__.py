"""Storage behind one small interface, with two real backends.

    open_store("sqlite:///path/metrotrace.sqlite3")  -> SqliteStore  (embedded default, WAL)
    open_store("postgresql://user@host/dbname")      -> PostgresStore (production, psycopg 3)

Invariants, on both backends:
- an envelope is kept verbatim, once (unique on the SHA-256 of its bytes);
- a record is kept once per (node, seq); a second copy with the same bytes changes nothing,
  one with different bytes is reported as a forgery and never overwrites the first;
- the schema is brought to the newest version on open (`schema.MIGRATIONS`, versioned).

Errors (one tree):

    StoreError              base of everything this package raises
    └── SchemaError         database schema newer than this code, or a migration failed
"""

from __future__ import annotations

from .rows import (
    AlertRow,
    BatchResult,
    EnvelopeRow,
    GatewayKeyRow,
    GatewayRow,
    InstrumentRow,
    NodeRow,
    RecordRow,
    RejectRow,
    SiteRow,
    Store,
)


class StoreError(Exception):
    """Base of the store's errors."""


class SchemaError(StoreError):
    """The database schema is newer than this code, or a migration failed."""


def open_store(url: str) -> Store:
    """Open (and migrate) the store a URL names: sqlite:///PATH or postgresql://..."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///"):])
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(f"store url: expected sqlite:///PATH or postgresql://..., got {url!r}")


__all__ = [
    "AlertRow", "BatchResult", "EnvelopeRow", "GatewayKeyRow", "GatewayRow", "InstrumentRow",
    "NodeRow", "RecordRow", "RejectRow", "SchemaError", "SiteRow", "Store", "StoreError",
    "open_store",
]
