"""The rows the store keeps and the `Store` interface both backends implement.

Invariant: rows carry integers in base units and UTC milliseconds; bytes stay bytes
(node ids, keys, record and envelope bytes) and are never re-encoded by the store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple, Protocol


class RecordRow(NamedTuple):
    """One node record: its decoded columns plus its exact bytes and node tag."""

    node: bytes
    seq: int
    kind: int
    t: int
    tq: int
    inst: str | None
    prev: int
    value: int | None  # net (weighing), volume (dispense), indication (check, zero)
    gross: int | None
    tare: int | None
    reference: int | None  # check: the reference quantity
    e: int | None  # e or d, in `unit`
    unit: str | None
    raw: int | None
    flags: int | None
    link: int | None
    extra: str | None  # JSON of the fields without a column (scan, event, status)
    record: bytes
    tag: bytes


RECORD_COLUMNS = RecordRow._fields
# The columns of the records table (schema version 3): the key, what queries filter on,
# and the bytes; the store decodes every other field from `record` when it reads a row.
STORED_COLUMNS = ("node", "seq", "kind", "t", "inst", "record", "tag")
stored_values = itemgetter(*(RECORD_COLUMNS.index(c) for c in STORED_COLUMNS))


@dataclass(frozen=True)
class EnvelopeRow:
    digest: bytes  # SHA-256 of `data`
    gateway: str
    kid: bytes
    batch_seq: int
    created: int
    received: int
    topic: str
    backfill: bool
    n_records: int
    data: bytes  # the COSE_Sign1 bytes exactly as received
    id: int | None = None


@dataclass(frozen=True)
class BatchResult:
    envelope_id: int | None  # None: this exact envelope was already stored (a replay)
    inserted: int = 0
    duplicates: int = 0  # same (node, seq), same bytes: harmless
    forgeries: tuple[tuple[bytes, int], ...] = ()  # same (node, seq), different bytes


@dataclass(frozen=True)
class RejectRow:
    received: int
    reason: str
    detail: str
    topic: str = ""
    gateway: str | None = None
    node: bytes | None = None
    seq: int | None = None
    data: bytes | None = None  # the rejected bytes (envelope, or record + tag)
    id: int | None = None


@dataclass(frozen=True)
class AlertRow:
    t: int
    site: str
    kind: str  # "forgery", "out_of_tolerance", ...
    detail: dict = field(default_factory=dict)
    gateway: str | None = None
    node: bytes | None = None
    seq: int | None = None
    instrument: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class SiteRow:
    id: str
    name: str = ""


@dataclass(frozen=True)
class GatewayRow:
    id: str
    site: str


@dataclass(frozen=True)
class GatewayKeyRow:
    kid: bytes
    gateway: str
    public_key: bytes  # raw 32-byte Ed25519 public key
    valid_from: int  # UTC ms: the key may sign batches created at or after this time
    revoked_at: int | None = None  # UTC ms: batches created at or after this are refused


@dataclass(frozen=True)
class NodeRow:
    id: bytes
    gateway: str | None
    key: bytes  # the node's 32-byte HMAC key


@dataclass(frozen=True)
class InstrumentRow:
    id: str
    site: str
    node: bytes | None
    type: str  # "NAWI" (non-automatic weighing), "fuel_dispenser", ...
    accuracy_class: str  # "III", "0.5", ...
    max: int  # base units of `unit`
    min: int
    e: int  # verification scale interval e (or d), base units
    unit: str
    verified_on: int | None = None  # UTC ms of the last verification
    verification_due: int | None = None  # UTC ms
    status: str = "in_service"  # in_service | out_of_tolerance | suspended | withdrawn


class Store(Protocol):
    """What ingest, registry, API and audit need from storage; nothing more."""

    url: str

    def store_batch(self, envelope: EnvelopeRow, records: Sequence[RecordRow]) -> BatchResult:
        """Keep the envelope verbatim and its records idempotently, in one transaction."""

    def store_batches(self, batches: Sequence[tuple[EnvelopeRow, Sequence[RecordRow]]]
                      ) -> list[BatchResult]:
        """store_batch for several envelopes in one transaction: all kept, or none."""

    def add_reject(self, reject: RejectRow) -> None: ...

    def add_alert(self, alert: AlertRow) -> int: ...

    def put(self, row: SiteRow | GatewayRow | GatewayKeyRow | NodeRow | InstrumentRow) -> None:
        """Insert or replace one registry row (keyed by its id / kid)."""

    def registry(self) -> dict[str, list]:
        """Every registry row: {"sites": [...], "gateways": [...], "keys": [...], ...}."""

    def registry_version(self) -> int:
        """A counter every registry write raises (cheap to read; registry/watch.py)."""

    def records(self, *, instrument: str | None = None, node: bytes | None = None,
                kinds: Sequence[int] = (), t0: int | None = None, t1: int | None = None,
                limit: int = 1000) -> list[RecordRow]: ...

    def alerts(self, *, site: str | None = None, since: int | None = None,
               limit: int = 1000) -> list[AlertRow]: ...

    def rejects(self, *, reason: str | None = None, since: int | None = None,
                limit: int = 1000) -> list[RejectRow]: ...

    def envelopes(self, after_id: int = 0, batch: int = 500) -> Iterator[EnvelopeRow]:
        """Every stored envelope in id order (for `metrotrace verify` and archives)."""

    def stored_records(self) -> Iterator[tuple[RecordRow, int]]:
        """(row, envelope_id) of every stored record, in (node, seq) order."""

    def count(self, table: str) -> int: ...

    def try_lease(self, name: str) -> bool:
        """Hold the store-wide lock `name` until close() (or the process dies); True when
        this store holds it, False while another connection does. Never waits."""
        ...

    def close(self) -> None: ...
