import pytest

from metrotrace.firmware.metro.wire import record
from metrotrace.server.trace import RuleError, gs1
from metrotrace.server.trace.build import Builder
from metrotrace.server.trace.netgen import sgln
from metrotrace.server.trace.query import Tracer
from metrotrace.server.trace.rules import Rule, Rules

STALL, SCALE = bytes.fromhex("0a01"), "urn:epc:id:giai:4012345.SCALE1"
PUMP, NOZZLE = bytes.fromhex("0f01"), "urn:epc:id:giai:4012345.NOZZLE1"
MEAT = b"0109501101020917" + b"3103025000" + b"10PORK7\x1d"  # 25 kg of lot PORK7
DIESEL_1 = b"0109501101020917" + b"3150030000" + b"10D1"  # 30,000 L, lot D1
DIESEL_2 = b"0109501101020917" + b"3150020000" + b"10D2"


def rec(kind, node, seq, t, **body):
    return record.decode(record.make(kind, node, seq, seq - 1, t, record.TQ_NTP, **body))


def rules():
    return Rules({("0a01", None): Rule("sale", sgln("M", 1), SCALE),
                  ("0a01", "in"): Rule("receive", sgln("M", 1)),
                  ("0f01", None): Rule("dispense", sgln("S", 1), NOZZLE, tank="T1"),
                  ("0f01", "in"): Rule("delivery", sgln("S", 1), tank="T1")},
                 Builder("rules-test"))


def test_scans_weighings_and_dispenses_become_traceable_events(store):
    r = rules()
    lot = gs1.parse(MEAT, "]C1").lot_class()
    diesel1 = gs1.parse(DIESEL_1, "]C1").lot_class()
    b = Builder("origin")
    origin = [b.commission(1, lot, 25_000_000, "mass", sgln("P", 1)),
              b.commission(1, diesel1, 30_000_000, "volume", sgln("R", 1)),
              b.commission(1, gs1.parse(DIESEL_2, "]C1").lot_class(), 20_000_000, "volume",
                           sgln("R", 1))]
    stream = [
        rec(record.SCAN, STALL, 1, 10, inst="in", code=MEAT, symbology="]C1"),
        rec(record.SCAN, STALL, 2, 20, code=MEAT, symbology="]C1"),
        rec(record.WEIGHING, STALL, 3, 21, inst="S1", gross=1250, tare=0, net=1250, e=5,
            unit="g", flags=record.F_STABLE, link=2),
        rec(record.SCAN, PUMP, 1, 30, inst="in", code=DIESEL_1, symbology="]C1"),
        rec(record.DISPENSE, PUMP, 2, 40, volume=40_000, pulses=4000, kfactor=100_000,
            t_start=35, unit="mL", d=10),
        rec(record.SCAN, PUMP, 3, 50, inst="in", code=DIESEL_2, symbology="]C1"),
        rec(record.DISPENSE, PUMP, 4, 60, volume=25_000, pulses=2500, kfactor=100_000,
            t_start=55, unit="mL", d=10),
        rec(record.STATUS, PUMP, 5, 70, fw="x", uptime_s=1, mem_free=1, backlog=0),
    ]
    events = origin + [e for rec_ in stream for e in r.events(rec_)]
    store.capture(events, 1)
    sale = Tracer(store).forward(lot).sales
    assert [(s["qty"], s["instrument"], s["raw"]) for s in sale] == \
        [(1_250_000, SCALE, "urn:metrotrace:record:0a01:3")]
    fuel = Tracer(store).forward(diesel1)
    assert [(s["qty"], s["instrument"]) for s in fuel.sales] == [(40_000, NOZZLE),
                                                                (25_000, NOZZLE)]
    assert len(fuel.transformations) == 2  # D1 into the empty tank, then D2 into the mix
    assert r.tanks.mix["T1"][1] == 30_000_000 - 40_000 + 20_000_000 - 25_000


def test_records_rules_cannot_place_name_the_field():
    r = rules()
    with pytest.raises(RuleError) as err:
        r.events(rec(record.WEIGHING, STALL, 3, 21, gross=5, tare=0, net=5, e=5, unit="g",
                     flags=1, link=99))
    assert err.value.field == "link"
    with pytest.raises(RuleError) as err:
        r.events(rec(record.SCAN, STALL, 4, 22, code=b"9501101531001", symbology="]E0"))
    assert err.value.field == "code" and "check digit" in err.value.reason
    with pytest.raises(RuleError) as err:
        r.events(rec(record.SCAN, bytes.fromhex("0bad"), 1, 1, code=MEAT, symbology="]C1"))
    assert err.value.field == "node"
