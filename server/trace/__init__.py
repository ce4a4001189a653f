"""Traceability: GS1 codes, EPCIS 2.0 events, lot genealogy, recall traces.

Modules, each with one job: `gs1` (barcodes → identifiers), `rcn` (variable-measure
label layouts), `epcis` (the event model), `jsonld` (EPCIS 2.0 JSON-LD documents, schema
validation), `eventhash` and `digitallink` (CBV 2.0 event hash IDs), `rules` (node records
→ events), `rulefile` (rules as TOML and as stored configuration), `feed` (stored records →
events, exactly once), `store` (tables and capture on a DB-API connection), `plan`
(capture checks and rows, pure), `doctext` (an event's stored JSON text), `query`
(traces, mass balance; the SQL path), `index` (the in-memory trace index: `graph` for the
genealogy, `touches` for rows and names, `kernels` its numba loops, `columns` the trace as
arrays and written out), `tolerance` (instruments' tolerance histories from the metrology
report, and their in-memory copy for the index), `report` (recall as JSON / CSV / HTML),
`netgen` (synthetic networks), `api` (FastAPI router, served by `metrotrace server api`),
`cli` (`metrotrace trace …`, `metrotrace epcis …`).

Errors, one tree; every error names the field at fault::

    TraceError
    ├── CodeError       a barcode or identifier that is not valid GS1 (field, reason)
    ├── DocumentError   an EPCIS document or event refused (event index, field, reason);
    │                   a capture that raises it has stored nothing
    ├── RuleError       a node record no configured rule can turn into an event
    └── StoreError      the database is at a schema version this code does not know
"""

from __future__ import annotations

from metrotrace.server import jitcache

jitcache.use()  # before any kernel is defined


class TraceError(Exception):
    """Base of every error raised by metrotrace.server.trace."""


class CodeError(TraceError, ValueError):
    """A barcode or identifier is not valid GS1; `field` names the part at fault."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class DocumentError(TraceError, ValueError):
    """An EPCIS document or event is refused; `event` is its index in the eventList
    (None for the document itself) and `field` a JSON path inside it."""

    def __init__(self, field: str, reason: str, event: int | None = None):
        where = f"event {event}: " if event is not None else ""
        super().__init__(f"{where}{field}: {reason}")
        self.field = field
        self.reason = reason
        self.event = event

    def at_event(self, index: int) -> DocumentError:
        return DocumentError(self.field, self.reason, index)


class RuleError(TraceError, ValueError):
    """A node record matches no configured rule, or the rule lacks what it needs."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class StoreError(TraceError):
    """The database holds trace tables at a schema version this code does not know."""
