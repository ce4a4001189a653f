"""The drift engine over a real store (SQLite and PostgreSQL): records made by the firmware's
encoder, decoded by ingest, kept by the store; the report, the CLI and the monitor's alerts."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import psycopg
import pytest

from metrotrace.firmware.metro.wire import record
from metrotrace.server.ingest.columns import decode
from metrotrace.server.metrology import analysis, monitor, storeio
from metrotrace.server.metrology.normalise import RAW_NONE
from metrotrace.server.store import open_store
from metrotrace.server.store.rows import EnvelopeRow, InstrumentRow
from metrotrace.tools.cli import main

DAY = 86_400_000
T0 = 1_760_000_000_000
NOW = T0 + 100 * DAY
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "metrotrace_test_metrology"
INSTRUMENTS = [
    InstrumentRow("ok-scale", "market", None, "NAWI", "III", 15000, 100, 5, "g", T0,
                  NOW + 100 * DAY),
    InstrumentRow("broken-scale", "market", None, "NAWI", "III", 15000, 100, 5, "g", T0,
                  NOW + 100 * DAY),
    InstrumentRow("overdue-scale", "market", None, "NAWI", "III", 15000, 100, 5, "g", T0,
                  NOW - DAY),
    InstrumentRow("pump", "station", None, "fuel_dispenser", "0.5", 100_000, 2000, 10, "mL",
                  T0, NOW + 100 * DAY),
]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metrotrace.sqlite3'}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {PG_DB}")
    return f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"


class Node:
    """One node per instrument: consecutive seq numbers, real record bytes."""

    def __init__(self, name: str):
        self.id = hashlib.sha256(name.encode()).digest()[:8]
        self.inst, self.seq = name, 0

    def make(self, kind: int, t: int, **body) -> bytes:
        self.seq += 1
        return record.make(kind, self.id, self.seq, self.seq - 1, t, record.TQ_NTP,
                           inst=self.inst, **body)


def fill(store) -> None:
    for row in INSTRUMENTS:
        store.put(row)
    nodes = {name: Node(name) for name in ("ok-scale", "broken-scale", "overdue-scale", "pump",
                                           "stray")}
    data = []
    for d in range(60):
        t = T0 + d * DAY  # every scale's check shares its t: paging must keep ties whole
        for name in ("ok-scale", "broken-scale", "overdue-scale"):
            load = (2000, 10000)[d % 2]
            ind = load + (15 if name == "broken-scale" and d == 40 else 0)
            data.append(nodes[name].make(record.CHECK, t, indication=ind, reference=load,
                                         e=5, unit="g"))
            data.append(nodes[name].make(record.ZERO, t + 1, indication=0, e=5, unit="g"))
        off = 1.007 if d >= 50 else 1.0  # 0.7 % more indicated than the pulses say
        data.append(nodes["pump"].make(record.DISPENSE, t, volume=int(20000 * off),
                                       pulses=2000, kfactor=100_000, t_start=t - 60_000,
                                       unit="mL", d=10))
    data.append(nodes["stray"].make(record.CHECK, T0, indication=5, reference=5, e=5, unit="g"))
    # a check made before the node's clock was set: its t is uptime, not a date
    data.append(record.make(record.CHECK, b"\x42" * 8, 1, 0, 12_345, record.TQ_UNSET,
                            inst="ok-scale", indication=2400, reference=2000, e=5, unit="g"))
    rows = [decode(b, b"\0" * 32) for b in data]
    blob = b"".join(data)
    store.store_batch(EnvelopeRow(hashlib.sha256(blob).digest(), "gw", b"k" * 16, 1, T0, T0,
                                  "metrotrace/v1/gw/gw/up", False, len(rows), blob), rows)


def states(report):
    return {r["instrument"]: r["state"] for r in report}


EXPECTED = {"ok-scale": "ok", "broken-scale": "out_of_tolerance",
            "overdue-scale": "overdue_verification", "pump": "drifting"}


def test_store_gives_the_documented_columns_and_the_expected_report(store_url):
    store = open_store(store_url)
    try:
        fill(store)
        loaded = storeio.load(store)
        small_pages = storeio.load(store, page=2)  # ties of 6 rows at one t: pages double
    finally:
        store.close()
    ids = [i.id for i in loaded.instruments]
    assert sorted(ids) == sorted(r.id for r in INSTRUMENTS)
    pump = loaded.instruments[ids.index("pump")]
    assert (pump.mmq, pump.table, pump.accuracy_class) == (2000, "oiml-r117", "0.5")
    assert dict(loaded.skipped) == {"instrument not in the registry": 1,
                                    storeio.CLOCK_UNSET: 1}
    checks = loaded.data["check"]
    assert dict(zip(ids, np.diff(checks.offsets).tolist(), strict=True)) == {
        "ok-scale": 60, "broken-scale": 60, "overdue-scale": 60, "pump": 0}
    assert np.all(checks.columns["raw"] == RAW_NONE)  # these scales send no raw counts
    assert loaded.data["dispense"].columns["kfactor"].tolist() == [100_000] * 60
    for kind, grouped in loaded.data.items():
        np.testing.assert_array_equal(grouped.offsets, small_pages.data[kind].offsets)
        for name, col in grouped.columns.items():
            np.testing.assert_array_equal(col, small_pages.data[kind].columns[name], kind + name)
    report = analysis.report(loaded.instruments, loaded.verified, loaded.due, loaded.data, NOW)
    assert states(report) == EXPECTED
    assert {r["instrument"]: r["first_alarm_ms"] for r in report}["broken-scale"] == \
        T0 + 40 * DAY


def test_cli_reads_the_store(store_url, tmp_path, capsys):
    store = open_store(store_url)
    fill(store)
    store.close()
    where = (["--data-dir", str(tmp_path)] if store_url.startswith("sqlite")
             else ["--db", store_url])
    assert main(["drift", "analyze", *where, "--now", str(NOW), "--json",
                 "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["instruments"] == 4
    assert states(doc["report"]) == {k: v for k, v in EXPECTED.items() if v != "ok"}
    assert doc["skipped_records"] == {"instrument not in the registry": 1,
                                      storeio.CLOCK_UNSET: 1}


def test_monitor_alerts_once_per_state_change_and_survives_a_restart(store_url):
    store = open_store(store_url)
    try:
        fill(store)
        sent = []
        first = monitor.Monitor(store, publish=lambda topic, payload: sent.append(
            (topic, json.loads(payload)))).run(NOW)
        assert {a.instrument: a.kind for a in first} == {
            k: v for k, v in EXPECTED.items() if v != "ok"}
        assert all(a.id is not None and a.detail["previous"] == "ok" for a in first)
        assert sorted(topic for topic, _ in sent) == ["metrotrace/v1/alerts/market"] * 2 + [
            "metrotrace/v1/alerts/station"]
        assert {p["instrument"] for _, p in sent} == {a.instrument for a in first}
        assert monitor.Monitor(store).run(NOW) == []  # a restarted server: nothing new
        store.put(InstrumentRow("overdue-scale", "market", None, "NAWI", "III", 15000, 100, 5,
                                "g", T0, NOW + 300 * DAY))  # re-verification booked
        (back,) = monitor.Monitor(store).run(NOW)
        assert (back.instrument, back.kind, back.detail["previous"]) == (
            "overdue-scale", "ok", "overdue_verification")
        assert len(store.alerts()) == 4
    finally:
        store.close()
