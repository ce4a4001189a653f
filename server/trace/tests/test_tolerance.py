"""The metrology monitor records each instrument's tolerance history into the trace tables,
so a trace shows every sale's instrument state at the time of the sale."""

import hashlib

import pytest

from metrotrace.firmware.metro.wire import record
from metrotrace.server.ingest.columns import decode
from metrotrace.server.metrology.monitor import Monitor
from metrotrace.server.store import open_store
from metrotrace.server.store.rows import EnvelopeRow, InstrumentRow, SiteRow
from metrotrace.server.trace import report, tolerance
from metrotrace.server.trace.build import Builder
from metrotrace.server.trace.netgen import lot_urn, sgln
from metrotrace.server.trace.query import TableTolerance, Tracer
from metrotrace.server.trace.store import TraceStore, connect

DAY = 86_400_000
T0 = 1_700_000_000_000  # the scale's verification
SCALE, MARKET, LOT = "scale-7", sgln("M", 7), lot_urn(7, "HAM7")


def checks(store, bad_day: int, days: int = 10) -> None:
    """Daily checks of SCALE from T0; the one on `bad_day` is 3 e over its reference."""
    node, data = hashlib.sha256(b"scale-7").digest()[:8], []
    for d in range(days):
        load = (2000, 10000)[d % 2]
        data.append(record.make(record.CHECK, node, d + 1, d, T0 + d * DAY, record.TQ_NTP,
                                inst=SCALE, indication=load + (15 if d == bad_day else 0),
                                reference=load, e=5, unit="g"))
    blob = b"".join(data)
    rows = [decode(b, b"\0" * 32) for b in data]
    store.store_batch(EnvelopeRow(hashlib.sha256(blob).digest(), "gw", b"k" * 16, 1, T0, T0,
                                  "metrotrace/v1/gw/gw/up", False, len(rows), blob), rows)


def sales(trace: TraceStore) -> None:
    b = Builder("tolerance-test")
    trace.capture([b.commission(T0, LOT, 50_000_000, "mass", sgln("P", 7)),
                   b.move(T0 + 1, "receiving", MARKET, [(LOT, 50_000_000, "mass")]),
                   b.sell(T0 + 5 * DAY, LOT, 1_000_000, "mass", MARKET, SCALE, "0a07", 1),
                   b.sell(T0 + 9 * DAY, LOT, 2_000_000, "mass", MARKET, SCALE, "0a07", 2)], 1)


def test_sale_after_the_first_alarm_shows_out_of_tolerance(url):
    store = open_store(url)
    store.put(SiteRow("market", "Market 7"))
    store.put(InstrumentRow(SCALE, "market", None, "NAWI", "III", 15000, 100, 5, "g",
                            T0, T0 + 400 * DAY))
    checks(store, bad_day=8)  # out of tolerance between the two sales
    trace = TraceStore(connect(url))
    trace.migrate()
    sales(trace)
    try:
        monitor = Monitor(store)
        alerts = monitor.run(T0 + 12 * DAY)
        assert [a.kind for a in alerts] == ["out_of_tolerance"]
        assert trace.rows("SELECT from_t, state FROM trace_tolerance ORDER BY from_t") == [
            (T0, "ok"), (T0 + 8 * DAY, "out_of_tolerance")]  # from the first alarm, not now
        found = Tracer(trace, TableTolerance(trace)).forward(LOT)
        assert [(s["time"], s["tolerance"]) for s in found.sales] == [
            (T0 + 5 * DAY, "ok"), (T0 + 9 * DAY, "out_of_tolerance")]
        summary = report.summary(found)
        assert summary["sales_on_instruments_out_of_tolerance"] == 1
        assert summary["sales_on_drifting_instruments"] == 0
        # a second run changes nothing; a later run does not move the alarm's time
        monitor.run(T0 + 30 * DAY)
        trace.end_read()
        assert trace.rows("SELECT COUNT(*) FROM trace_tolerance")[0][0] == 2
    finally:
        trace.conn.close()
        store.close()


def test_reverification_keeps_the_earlier_history(url):
    trace = TraceStore(connect(url))
    trace.migrate()
    try:
        out = {"instrument": SCALE, "state": "out_of_tolerance", "first_alarm_ms": T0 + 8 * DAY,
               "due_ms": None}
        assert tolerance.record(trace, [out], [T0], T0 + 9 * DAY) == 1
        again = {"instrument": SCALE, "state": "ok", "first_alarm_ms": None, "due_ms": None}
        assert tolerance.record(trace, [again], [T0 + 20 * DAY], T0 + 21 * DAY) == 1
        assert tolerance.record(trace, [again], [T0 + 20 * DAY], T0 + 22 * DAY) == 0
        states = TableTolerance(trace).states(SCALE, [T0 - 1, T0 + 9 * DAY, T0 + 25 * DAY])
        assert states == [None, "out_of_tolerance", "ok"]
    finally:
        trace.conn.close()


def test_intervals_take_the_worst_state_begun():
    row = {"state": "drifting", "first_alarm_ms": 500, "due_ms": 300}
    assert tolerance.intervals(row, 100, 1000) == [
        (100, "ok"), (300, "overdue_verification"), (500, "drifting")]
    warning = {"state": "warning", "first_alarm_ms": None, "due_ms": 5000}
    assert tolerance.intervals(warning, 100, 1000) == [(100, "ok"), (1000, "warning")]
    assert tolerance.intervals(warning, 100, 2000, warning_since=1000) == [
        (100, "ok"), (1000, "warning")]  # a warning keeps the run that first saw it
    out = {"state": "out_of_tolerance", "first_alarm_ms": 1500, "due_ms": None}
    assert tolerance.intervals(out, 100, 2000, warning_since=1000) == [
        (100, "ok"), (1000, "warning"), (1500, "out_of_tolerance")]
    with pytest.raises(ValueError, match="state"):
        tolerance.intervals({"state": "in_tolerance"}, 0, 1)


def test_recall_counts_only_out_of_tolerance_and_shows_drifting_apart(tmp_path):
    import sqlite3

    trace = TraceStore(sqlite3.connect(tmp_path / "t.sqlite3"))
    trace.migrate()
    sales(trace)
    oracle = TableTolerance(trace)
    oracle.set_state(SCALE, T0, "warning")
    oracle.set_state(SCALE, T0 + 8 * DAY, "drifting")
    found = Tracer(trace, oracle, "cte").forward(LOT)
    summary = report.summary(found)
    assert summary["sales_on_instruments_out_of_tolerance"] == 0
    assert summary["sales_on_drifting_instruments"] == 1
    page = report.to_html(found)
    assert "class='sale drift'" in page and " bad'" not in page
