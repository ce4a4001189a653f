"""Versioned schema migrations, on SQLite and PostgreSQL: a database an older metrotrace made
is upgraded with its data intact, a newer one is refused with a clear error, and workers
starting at once on a fresh database migrate it exactly once."""

import hashlib
import subprocess
import sys
import threading

import psycopg
import pytest

from metrotrace.gateway import envelope as cose
from metrotrace.server.audit import verify
from metrotrace.server.ingest.columns import decode
from metrotrace.server.ingest.core import Ingest
from metrotrace.server.ingest.synth import T0
from metrotrace.server.store import SchemaError, open_store, schema

# Version 1's records table, column for column (a released migration never changes).
V1_RECORD_COLUMNS = ("node", "seq", "kind", "t", "tq", "inst", "prev", "value", "gross", "tare",
                     "reference", "e", "unit", "raw", "flags", "link", "extra", "record", "tag",
                     "envelope_id")
V1_REGISTRY = {  # table -> columns, as version 1 wrote them
    "sites": ("id", "name"), "gateways": ("id", "site"),
    "gateway_keys": ("kid", "gateway", "public_key", "valid_from", "revoked_at"),
    "nodes": ("id", "gateway", "key"),
    "instruments": ("id", "site", "node", "type", "accuracy_class", "max", "min", "e", "unit",
                    "verified_on", "verification_due", "status")}


def _connect(url):
    if url.startswith("sqlite:///"):
        import sqlite3

        return sqlite3.connect(url[len("sqlite:///"):]), "sqlite", "?"
    return psycopg.connect(url), "postgres", "%s"


def _insert(conn, mark, table, columns, values):
    conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) "
                 f"VALUES ({', '.join([mark] * len(columns))})", values)


def make_v1_database(url, site, envelopes):
    """What metrotrace with schema version 1 left behind: its tables, its registry, and
    `envelopes` stored with every decoded column of version 1."""
    conn, dialect, mark = _connect(url)
    conn.execute("CREATE TABLE schema_version "
                 "(version INTEGER PRIMARY KEY, description TEXT NOT NULL)")
    for statement in schema.statements(dialect, 1):
        conn.execute(statement)
    _insert(conn, mark, "schema_version", ("version", "description"),
            (1, schema.MIGRATIONS[0][1]))
    tables = {"SiteRow": "sites", "GatewayRow": "gateways", "GatewayKeyRow": "gateway_keys",
              "NodeRow": "nodes", "InstrumentRow": "instruments"}
    for row in site.registry_rows():
        table = tables[type(row).__name__]
        _insert(conn, mark, table, V1_REGISTRY[table],
                tuple(getattr(row, c) for c in V1_REGISTRY[table]))
    public = site.key.public_key()
    for env_id, data in enumerate(envelopes, 1):
        batch = cose.open_envelope(data, site.topic, lambda kid: public).batch
        _insert(conn, mark, "envelopes", ("id", "digest", "gateway", "kid", "batch_seq",
                                          "created", "received", "topic", "backfill",
                                          "n_records", "data"),
                (env_id, hashlib.sha256(data).digest(), site.gateway,
                 cose.key_id(public), batch.seq, batch.created, T0, site.topic, 0,
                 len(batch.records), data))
        for record, tag in batch.records:
            _insert(conn, mark, "records", V1_RECORD_COLUMNS, (*decode(record, tag), env_id))
    if dialect == "postgres":  # ids were given explicitly: move the sequence past them
        conn.execute("SELECT setval('envelopes_id_seq', (SELECT MAX(id) FROM envelopes))")
    conn.commit()
    conn.close()


def _versions(url):
    conn, _, _ = _connect(url)
    try:
        return [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    finally:
        conn.close()


def test_a_version_1_database_is_upgraded_with_its_data(store_url, site):
    envelopes = site.stream(3, 8)
    make_v1_database(store_url, site, envelopes[:2])
    store = open_store(store_url)
    try:
        assert store.schema_version() == schema.LATEST
        assert _versions(store_url) == list(range(1, schema.LATEST + 1))
        assert (store.count("envelopes"), store.count("records")) == (2, 16)
        report = verify.verify_store(store)  # signatures, tags, bytes, columns: all intact
        assert report.ok and report.stored_rows == 16, report.problems
        weighing = store.records(instrument=site.instrument(1), limit=1)[0]
        assert (weighing.value, weighing.unit, weighing.e) == (1005, "g", 5)
        assert {k.kid for k in store.registry()["keys"]} == {cose.key_id(site.key.public_key())}
        assert store.registry_version() == 0
        # the upgraded store takes new traffic as any other
        outcome = Ingest(store).handle(site.topic, envelopes[2], T0)
        assert (outcome.status, outcome.inserted) == ("stored", 8)
    finally:
        store.close()


def test_a_database_newer_than_the_code_is_refused_and_left_alone(store_url, site):
    store = open_store(store_url)
    for row in site.registry_rows():
        store.put(row)
    store.close()
    conn, _, mark = _connect(store_url)
    _insert(conn, mark, "schema_version", ("version", "description"),
            (schema.LATEST + 1, "made by a newer metrotrace"))
    conn.commit()
    conn.close()
    message = (f"schema version {schema.LATEST + 1} is newer than this code "
               f"({schema.LATEST}): upgrade metrotrace")
    with pytest.raises(SchemaError) as refused:
        open_store(store_url)
    assert str(refused.value) == message
    cli = subprocess.run([sys.executable, "-m", "metrotrace.tools.cli", "registry", "show",
                          "--db", store_url], capture_output=True, text=True)
    assert cli.returncode == 2 and cli.stderr.strip() == f"metrotrace: {message}"
    assert "Traceback" not in cli.stderr
    assert _versions(store_url) == [*range(1, schema.LATEST + 1), schema.LATEST + 1]


def _fresh(store_url, n):
    """A fresh, empty database of the same backend as store_url."""
    if store_url.startswith("sqlite:///"):
        return store_url.replace(".sqlite3", f"-{n}.sqlite3")
    name = f"{store_url.rsplit('/', 1)[1]}_m{n}"
    with psycopg.connect(store_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    return store_url.rsplit("/", 1)[0] + f"/{name}"


def _drop(url):
    if url.startswith("postgresql://"):
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_workers_starting_at_once_on_a_fresh_database_migrate_it_once(store_url):
    # A race may pass once by luck: several rounds of four starts (SQLite's lost about one
    # round in 25 before its WAL switch took the write lock; PostgreSQL's without its
    # advisory lock lost every round).
    for n in range(12 if store_url.startswith("sqlite") else 3):
        url = _fresh(store_url, n)
        barrier = threading.Barrier(4)
        stores, errors = [], []

        def start(url=url, barrier=barrier, stores=stores, errors=errors):
            barrier.wait()
            try:
                stores.append(open_store(url))
            except Exception as e:  # any failure to open is the finding
                errors.append(e)

        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        try:
            assert not errors, errors
            assert [s.schema_version() for s in stores] == [schema.LATEST] * 4
            assert _versions(url) == list(range(1, schema.LATEST + 1))
            # version 2 inserts the counter's one row: applied twice, it would fail or
            # leave two rows
            assert stores[0].registry_version() == 0
        finally:
            for s in stores:
                s.close()
            _drop(url)
