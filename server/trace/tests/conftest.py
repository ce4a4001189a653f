"""Fixtures: a trace store on SQLite and on PostgreSQL (127.0.0.1:5432, trust auth)."""

import os
import sqlite3

import psycopg
import pytest

from metrotrace.server.trace.store import TraceStore

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
# one database per pytest process: two runs at once on a shared machine must not drop
# each other's database mid-test
PG_DB = f"metrotrace_test_trace_{os.getpid()}"
PG_TEST = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"


def fresh_pg() -> psycopg.Connection:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {PG_DB}")
    return psycopg.connect(PG_TEST)


@pytest.fixture(scope="session", autouse=True)
def _drop_test_database():
    yield
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    conn = sqlite3.connect(tmp_path / "trace.sqlite3") if request.param == "sqlite" \
        else fresh_pg()
    trace_store = TraceStore(conn)
    trace_store.migrate()
    yield trace_store
    conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A store URL (the server's data dir file, or the test database) on each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metrotrace.sqlite3'}"
    fresh_pg().close()
    return PG_TEST
