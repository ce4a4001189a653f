"""The in-memory index against its SQL twin: same traces, row for row, while events and
tolerance states keep arriving; rebuilt arrays and chained rows alike."""

import random

import pytest

from metrotrace.server.trace import graph, netgen, touches
from metrotrace.server.trace.build import Builder
from metrotrace.server.trace.examples import KG
from metrotrace.server.trace.netgen import lot_urn, sgln
from metrotrace.server.trace.query import TableTolerance, Tracer

STATES = ("ok", "warning", "drifting", "out_of_tolerance")
T = 1_700_000_000_000  # netgen's first event time


def network():
    food, fuel = netgen.food(11, 10), netgen.fuel(12, 16, layers=3, tanks=3)
    return food.events + fuel.events, food.lots + fuel.lots, food.leaves + fuel.leaves


def set_states(store, instruments, seed):
    rng = random.Random(seed)
    oracle = TableTolerance(store)
    for instrument in instruments:
        for _ in range(rng.randrange(0, 3)):  # events span a few seconds from T
            oracle.set_state(instrument, T + rng.randrange(-500, 3000), rng.choice(STATES))


def same(store, index, lots, leaves):
    cte = Tracer(store, TableTolerance(store), "cte")
    for lot in lots:
        assert index.forward(lot) == cte.forward(lot), lot
    for leaf in leaves:
        assert index.backward(leaf) == cte.backward(leaf), leaf


@pytest.mark.parametrize("rebuild", [100_000, 3], ids=["chained", "rebuilt"])
def test_index_traces_equal_the_sql_path_as_events_and_states_arrive(store, monkeypatch,
                                                                     rebuild):
    monkeypatch.setattr(touches, "REBUILD_AFTER", rebuild)
    monkeypatch.setattr(graph, "REBUILD_AFTER", rebuild)
    events, lots, leaves = network()
    third = len(events) // 3
    index = Tracer(store, TableTolerance(store))  # one index for the whole test
    for part, chunk in enumerate((events[:third], events[third:2 * third],
                                  events[2 * third:])):
        store.capture(chunk, 1)
        instruments = [r[0] for r in store.rows("SELECT DISTINCT instrument FROM"
                                                " trace_event WHERE instrument IS NOT NULL")]
        set_states(store, instruments, part)  # the monitor writes while traces run
        same(store, index, lots[::2], leaves[::3])
    found = index.forward(lots[-1])
    assert found.sales and {s["tolerance"] for s in found.sales} - {None}
    cols = index.columns(lots[-1])
    names = cols.state_names + [None]
    assert [names[c] for c in cols.sales["tolerance"]] == \
        [s["tolerance"] for s in sorted(found.sales, key=lambda s: (s["time"], s["event"]))]


def test_any_write_to_the_tolerance_table_reaches_the_index(store):
    """A trigger counts writes whoever makes them: a raw SQL insert included."""
    b = Builder("tolerance-writes")
    lot, market, scale = lot_urn(5, "T"), sgln("M", 5), "scale-5"
    store.capture([b.commission(1, lot, 10 * KG, "mass", sgln("P", 5)),
                   b.sell(50, lot, KG, "mass", market, scale, "0a05", 1)], 1)
    tracer = Tracer(store, TableTolerance(store))
    assert [s["tolerance"] for s in tracer.forward(lot).sales] == [None]
    store.begin_write()
    store.execute("INSERT INTO trace_tolerance (instrument, from_t, state) VALUES (?, ?, ?)",
                  (scale, 10, "drifting"))
    store.commit()
    assert [s["tolerance"] for s in tracer.forward(lot).sales] == ["drifting"]
    store.begin_write()
    store.execute("UPDATE trace_tolerance SET from_t = 60")
    store.commit()
    assert [s["tolerance"] for s in tracer.forward(lot).sales] == [None]


class Oracle:
    """A ToleranceOracle that is not the table: asked per instrument."""

    def states(self, instrument, times):
        return [f"{instrument}@{t % 3}" if t % 2 else None for t in times]


def test_any_oracle_gives_the_same_states_both_ways(store):
    events, lots, _ = network()
    store.capture(events, 1)
    index, cte = Tracer(store, Oracle()), Tracer(store, Oracle(), "cte")
    for lot in lots[::3]:
        assert index.forward(lot) == cte.forward(lot)


def test_an_origin_set_after_the_index_loaded_the_object(store):
    b, lot = Builder("late-origin-index"), lot_urn(43, "LATE")
    store.capture([b.move(5, "receiving", sgln("M", 4), epcs=(lot,))], 1,
                  require_known=False)
    tracer = Tracer(store)
    assert tracer.backward(lot).producers == []
    store.capture([b.commission(1, lot, 7 * KG, "mass", sgln("P", 4))], 1)
    assert [p["step"] for p in tracer.backward(lot).producers] == ["commissioning"]
    assert tracer.backward(lot) == Tracer(store, method="cte").backward(lot)


def test_starts_by_event_id_and_location_and_unknown(store):
    events, _, _ = network()
    store.capture(events, 1)
    index, cte = Tracer(store), Tracer(store, method="cte")
    sale = next(e for e in events if e.biz_step == "dispensing")
    for start in (sale.event_id, sale.biz_location, "urn:epc:id:sgln:4012345.NOWHERE.0"):
        assert index.backward(start) == cte.backward(start)
        assert index.forward(start) == cte.forward(start)
    assert index.forward("urn:nothing").nodes == []



@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_version_1_store_migrates_and_its_tolerance_writes_then_reach_the_index(
        dialect, tmp_path, monkeypatch):
    """A trace store made before the write counter (schema 1, e.g. a demo data dir from an
    earlier release) keeps its rows, gains the counter, and the index sees later writes."""
    import sqlite3

    from metrotrace.server.trace import store as trace_store

    from .conftest import fresh_pg

    conn = sqlite3.connect(tmp_path / "v1.sqlite3") if dialect == "sqlite" else fresh_pg()
    store = trace_store.TraceStore(conn)
    with monkeypatch.context() as old_release:
        old_release.setattr(trace_store, "MIGRATIONS", trace_store.MIGRATIONS[:1])
        old_release.setattr(trace_store, "SCHEMA_VERSION", 1)
        assert store.migrate() == 0 and store.version() == 1
        b = Builder("migration")
        lot, market, scale = lot_urn(6, "M"), sgln("M", 6), "scale-6"
        store.capture([b.commission(1, lot, 10 * KG, "mass", sgln("P", 6)),
                       b.sell(50, lot, KG, "mass", market, scale, "0a06", 1)], 1)
        TableTolerance(store).set_state(scale, 10, "warning")
    assert store.migrate() == 1 and store.version() == trace_store.SCHEMA_VERSION
    tracer = Tracer(store, TableTolerance(store))
    assert [s["tolerance"] for s in tracer.forward(lot).sales] == ["warning"]
    TableTolerance(store).set_state(scale, 20, "out_of_tolerance")
    assert [s["tolerance"] for s in tracer.forward(lot).sales] == ["out_of_tolerance"]
    conn.close()
