"""Fixtures for the server tests: the same store tests run on SQLite and on PostgreSQL."""

import os
import subprocess

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from metrotrace.server.ingest.synth import Site
from metrotrace.server.store import open_store

# Same profile as tests/conftest.py (whichever conftest loads last defines it).
settings.register_profile(
    "metrotrace", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("metrotrace")

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
# One database per pytest process: two test runs at once (a shared machine) must not drop
# each other's database mid-test.
PG_TEST_DB = f"metrotrace_test_server_{os.getpid()}"


def fresh_postgres(name: str = PG_TEST_DB) -> str:
    """Drop and recreate a test database; return its URL."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


@pytest.fixture(scope="session", autouse=True)
def _drop_test_database():
    yield
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_TEST_DB} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metrotrace.sqlite3'}"
    return fresh_postgres()


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def site():
    return Site(nodes=3)


@pytest.fixture
def loaded(store, site):
    """A store whose registry knows `site`'s gateway, key, nodes and instruments."""
    for row in site.registry_rows():
        store.put(row)
    return store


def mosquitto_available() -> bool:
    return subprocess.run(["which", "mosquitto"], capture_output=True).returncode == 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture
def start_mosquitto(tmp_path):
    """start_mosquitto(conf_path, port): our own broker process; stopped after the test."""
    procs = []

    def start(conf, port):
        with open(tmp_path / f"mosquitto-{port}.log", "wb") as log:
            proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
        procs.append(proc)
        wait_for_port(port)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def plain_broker(tmp_path, start_mosquitto):
    """A Mosquitto on a free port, anonymous, persistence off: for worker tests."""
    port = free_port()
    conf = tmp_path / "plain.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                    "max_queued_messages 100000\n")
    start_mosquitto(conf, port)
    return port


@pytest.fixture
def port():
    """A free TCP port on 127.0.0.1."""
    return free_port()
