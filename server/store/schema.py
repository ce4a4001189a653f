"""Versioned schema migrations, one list for both backends.

Invariant: MIGRATIONS only grows. A released step is never edited; a change is a new
step with the next version number. `{blob}`, `{id}` and `{clustered}` are filled in per
dialect, so both backends always hold the same tables with the same columns.
"""

from __future__ import annotations

DIALECTS = {
    # WITHOUT ROWID: SQLite keeps records in their (node, seq) b-tree, one index fewer.
    "sqlite": {"blob": "BLOB", "id": "INTEGER PRIMARY KEY", "clustered": " WITHOUT ROWID"},
    "postgres": {"blob": "BYTEA", "id": "BIGSERIAL PRIMARY KEY", "clustered": ""},
}

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "envelopes, records, rejects, alerts, registry", [
        """CREATE TABLE envelopes (
            id {id},
            digest {blob} NOT NULL UNIQUE,
            gateway TEXT NOT NULL,
            kid {blob} NOT NULL,
            batch_seq BIGINT NOT NULL,
            created BIGINT NOT NULL,
            received BIGINT NOT NULL,
            topic TEXT NOT NULL,
            backfill INTEGER NOT NULL,
            n_records INTEGER NOT NULL,
            data {blob} NOT NULL)""",
        "CREATE INDEX envelopes_gateway ON envelopes (gateway, batch_seq)",
        """CREATE TABLE records (
            node {blob} NOT NULL,
            seq BIGINT NOT NULL,
            kind INTEGER NOT NULL,
            t BIGINT NOT NULL,
            tq INTEGER NOT NULL,
            inst TEXT,
            prev BIGINT NOT NULL,
            value BIGINT,
            gross BIGINT,
            tare BIGINT,
            reference BIGINT,
            e BIGINT,
            unit TEXT,
            raw BIGINT,
            flags BIGINT,
            link BIGINT,
            extra TEXT,
            record {blob} NOT NULL,
            tag {blob} NOT NULL,
            envelope_id BIGINT NOT NULL,
            PRIMARY KEY (node, seq)){clustered}""",
        "CREATE INDEX records_inst_t ON records (inst, t)",
        """CREATE TABLE rejects (
            id {id},
            received BIGINT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            topic TEXT NOT NULL,
            gateway TEXT,
            node {blob},
            seq BIGINT,
            data {blob})""",
        "CREATE INDEX rejects_received ON rejects (received)",
        """CREATE TABLE alerts (
            id {id},
            t BIGINT NOT NULL,
            site TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL,
            gateway TEXT,
            node {blob},
            seq BIGINT,
            instrument TEXT)""",
        "CREATE INDEX alerts_t ON alerts (t)",
        "CREATE TABLE sites (id TEXT PRIMARY KEY, name TEXT NOT NULL)",
        "CREATE TABLE gateways (id TEXT PRIMARY KEY, site TEXT NOT NULL)",
        """CREATE TABLE gateway_keys (
            kid {blob} PRIMARY KEY,
            gateway TEXT NOT NULL,
            public_key {blob} NOT NULL,
            valid_from BIGINT NOT NULL,
            revoked_at BIGINT)""",
        "CREATE TABLE nodes (id {blob} PRIMARY KEY, gateway TEXT, key {blob} NOT NULL)",
        """CREATE TABLE instruments (
            id TEXT PRIMARY KEY,
            site TEXT NOT NULL,
            node {blob},
            type TEXT NOT NULL,
            accuracy_class TEXT NOT NULL,
            max BIGINT NOT NULL,
            min BIGINT NOT NULL,
            e BIGINT NOT NULL,
            unit TEXT NOT NULL,
            verified_on BIGINT,
            verification_due BIGINT,
            status TEXT NOT NULL)""",
    ]),
    # Bumped in the same transaction as every registry write (SqlStore.put), so running
    # workers notice a revocation or a new key with one cheap read (registry/watch.py).
    (2, "registry version counter", [
        "CREATE TABLE registry_version (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
        "INSERT INTO registry_version (id, version) VALUES (1, 0)",
    ]),
    # Records keep their key, the columns queries filter on (kind, t, inst) and their
    # bytes; every other field is decoded from `record` when read (SqlStore.records), by
    # the decoder ingest checked it with. Binding 7 values a record instead of 19 halves
    # the SQLite insert (docs/server.md, Performance); the bytes stay the only truth.
    (3, "records keep key, kind, t, inst and bytes; other fields decoded on read", [
        f"ALTER TABLE records DROP COLUMN {column}"
        for column in ("tq", "prev", "value", "gross", "tare", "reference", "e", "unit",
                       "raw", "flags", "link", "extra")
    ]),
]

LATEST = MIGRATIONS[-1][0]


def statements(dialect: str, version: int) -> list[str]:
    """The SQL of one migration step for one dialect."""
    subst = DIALECTS[dialect]
    for number, _, steps in MIGRATIONS:
        if number == version:
            return [s.format(**subst) for s in steps]
    raise KeyError(version)
