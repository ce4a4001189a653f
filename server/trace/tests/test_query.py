import pytest

from metrotrace.server.trace import netgen
from metrotrace.server.trace.balance import mass_balance
from metrotrace.server.trace.build import Builder
from metrotrace.server.trace.examples import (
    D1,
    KG,
    M1,
    M2,
    P1,
    P2,
    S1,
    S3,
    A,
    B,
    L,
    X,
    Y,
    food_events,
    tank_events,
)
from metrotrace.server.trace.query import TableTolerance, Tracer


@pytest.fixture(params=["cte", "index"])
def method(request):
    return request.param


def test_forward_trace_reaches_every_holder_and_sale_not_pallet_neighbours(store, method):
    store.capture(food_events(), 1)
    oracle = TableTolerance(store)
    oracle.set_state(S1, 0, "ok")
    oracle.set_state(S1, 100, "out_of_tolerance")
    oracle.set_state(S3, 50, "ok")
    trace = Tracer(store, oracle, method).forward(A)
    assert sorted(trace.nodes) == sorted([A, X, Y])
    lots = {(h["location"], h["epc"]): h["received"] for h in trace.holders if h["epc"] == A}
    assert lots == {(P1, A): 100 * KG, (D1, A): 100 * KG, (M1, A): 40 * KG, (M2, A): 60 * KG}
    sales = [(s["location"], s["qty"], s["instrument"], s["measured"], s["tolerance"],
              s["raw"]) for s in trace.sales]
    assert sales == [(M1, 1_500_000, S1, 1_500_000, "out_of_tolerance",
                      "urn:metrotrace:record:0a01:7"),
                     (M2, 3 * KG, S3, 3 * KG, "ok", "urn:metrotrace:record:0b02:9")]
    # B shared pallet X with A, but B's sale is not part of A's recall
    assert [s["epc"] for s in Tracer(store, oracle, method).forward(B).sales] == [B]


def test_backward_trace_from_a_holder_and_from_a_sale(store, method):
    events = food_events()
    store.capture(events, 1)
    tracer = Tracer(store, method=method)
    trace = tracer.backward(M1)
    assert {A, B, X} <= set(trace.nodes)
    producers = {(p["epc"], p["location"]) for p in trace.producers
                 if p["step"] == "commissioning"}
    assert producers == {(A, P1), (B, P2)}
    sale_of_b = events[15].event_id
    trace = tracer.backward(sale_of_b)
    assert trace.nodes == [B]
    assert [(p["epc"], p["location"]) for p in trace.producers] == [(B, P2)]


def test_mass_balance_per_holder_and_lot(store):
    store.capture(food_events(), 1)
    rows = {(r["holder"], r["lot"]): r for r in mass_balance(store)}
    assert rows[(P1, A)]["held"] == 0 and rows[(D1, A)]["held"] == 0
    assert rows[(D1, B)]["held"] == 30 * KG
    m1a = rows[(M1, A)]
    assert (m1a["received"], m1a["sold"], m1a["held"], m1a["counted"], m1a["unaccounted"]) == \
        (40 * KG, 1_500_000, 38_500_000, 38 * KG, 500_000)
    assert rows[(M2, A)]["held"] == 57 * KG and rows[(M1, B)]["held"] == 18 * KG
    assert [r["lot"] for r in mass_balance(store, holder=M2)] == [A]


def test_tank_mixing_every_dispense_draws_from_the_current_mix(store, method):
    events, (F1, F2, MIX1, MIX2, T) = tank_events()
    store.capture(events, 1)
    tracer = Tracer(store, method=method)
    first = tracer.forward(F1)
    assert sorted(first.nodes) == sorted([F1, MIX1, MIX2])
    assert [(s["epc"], s["qty"]) for s in first.sales] == [(MIX1, 100 * L), (MIX2, 200 * L)]
    assert len(first.transformations) == 2
    second = tracer.forward(F2)
    assert [(s["epc"], s["qty"]) for s in second.sales] == [(MIX2, 200 * L)]
    back = tracer.backward(events[-1].event_id)
    assert {p["epc"] for p in back.producers if p["step"] == "commissioning"} == {F1, F2}
    rows = {(r["holder"], r["lot"]): r["held"] for r in mass_balance(store, holder=T)}
    assert rows == {(T, F1): 0, (T, F2): 0, (T, MIX1): 0, (T, MIX2): 17_700 * L}


def test_disaggregation_lets_a_pallet_be_repacked(store):
    b = Builder("repack")
    events = food_events()[:8] + [b.unpack(12, X, D1), b.pack(13, X, [(B, 5 * KG, "mass")], D1),
                                  b.move(14, "receiving", M2, epcs=(X,))]
    store.capture(events, 1)
    rows = {(r["holder"], r["lot"]): r["received"] for r in mass_balance(store, holder=M2)}
    assert rows == {(M2, B): 5 * KG}  # only what was on the pallet when it arrived


@pytest.mark.parametrize("shape", ["food", "fuel"])
def test_generated_networks_cte_and_index_agree_and_balances_close(store, shape):
    net = netgen.food(5, 12) if shape == "food" else netgen.fuel(5, 30, layers=4, tanks=3)
    assert [e.event_id for e in net.events] == [
        e.event_id for e in (netgen.food(5, 12) if shape == "food"
                             else netgen.fuel(5, 30, layers=4, tanks=3)).events]
    store.capture(net.events, 1)
    cte, index = Tracer(store, method="cte"), Tracer(store, method="index")
    for lot in net.lots[::3]:
        assert cte.forward(lot) == index.forward(lot)
    for leaf in net.leaves[::5]:
        assert cte.backward(leaf) == index.backward(leaf)
    balances = mass_balance(store)
    assert balances and all(r["held"] >= 0 for r in balances)
    sold = sum(r["sold"] for r in balances)
    assert sold == sum(e.quantities[0].base() for e in net.events
                       if e.biz_step in ("retail_selling", "dispensing"))


def test_index_catches_up_with_new_edges(store):
    events, (F1, F2, MIX1, MIX2, T) = tank_events()
    store.capture(events[:6], 1)
    tracer = Tracer(store, method="index")
    assert sorted(tracer.forward(F1).nodes) == sorted([F1, MIX1])
    store.capture(events[6:], 1)
    assert sorted(tracer.forward(F1).nodes) == sorted([F1, MIX1, MIX2])


def test_an_object_seen_before_it_was_commissioned_gets_its_origin(store):
    """A receipt may arrive before the lot's commissioning: the stored node then gets its
    dimension and its origin from the later event (one batched UPDATE per capture)."""
    from metrotrace.server.trace.build import Builder
    from metrotrace.server.trace.netgen import lot_urn, sgln

    b, lot = Builder("late-origin"), lot_urn(42, "LATE")
    store.capture([b.move(5, "receiving", sgln("M", 4), epcs=(lot,))], 1, require_known=False)
    assert store.rows("SELECT dim, origin FROM trace_node WHERE urn = ?", (lot,)) == [
        (None, None)]
    store.capture([b.commission(1, lot, 7 * KG, "mass", sgln("P", 4))], 1)
    (dim, origin), = store.rows("SELECT dim, origin FROM trace_node WHERE urn = ?", (lot,))
    event, = store.rows("SELECT id FROM trace_event WHERE biz_step = 'commissioning'")
    assert (dim, origin) == ("mass", event[0])
    assert [p["step"] for p in Tracer(store).backward(lot).producers] == ["commissioning"]
