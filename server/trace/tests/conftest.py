"""Fixtures: a trace store on SQLite and on PostgreSQL (127.0.0.1:5432, trust auth)."""

import sqlite3

import psycopg
import pytest

from metrotrace.server.trace.store import TraceStore

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_TEST = "postgresql://postgres@127.0.0.1:5432/metrotrace_test_trace"


def fresh_pg() -> psycopg.Connection:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS metrotrace_test_trace WITH (FORCE)")
        admin.execute("CREATE DATABASE metrotrace_test_trace")
    return psycopg.connect(PG_TEST)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    conn = sqlite3.connect(tmp_path / "trace.sqlite3") if request.param == "sqlite" \
        else fresh_pg()
    trace_store = TraceStore(conn)
    trace_store.migrate()
    yield trace_store
    conn.close()
