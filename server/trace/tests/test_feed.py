"""Stored node records become trace events through rules loaded from a TOML file; the
feed keeps nothing that a restart could lose (cursor, tank mixes, scans waiting for their
weighing all come back from the store)."""

import hashlib
from collections import Counter
from itertools import count

import pytest

from metrotrace.firmware.metro.wire import record
from metrotrace.server.ingest.columns import decode
from metrotrace.server.ingest.monitoring import MonitorLoop
from metrotrace.server.store import open_store
from metrotrace.server.store.rows import EnvelopeRow
from metrotrace.server.trace import RuleError, gs1, rulefile
from metrotrace.server.trace.feed import TraceFeed
from metrotrace.server.trace.query import Tracer
from metrotrace.server.trace.store import TraceStore, connect
from metrotrace.tools.cli import build_parser

STALL, PUMP = bytes.fromhex("0a01"), bytes.fromhex("0f01")
MARKET, STATION = "urn:epc:id:sgln:4012345.00001.0", "urn:epc:id:sgln:4012345.00009.0"
SCALE, NOZZLE = "urn:epc:id:giai:4012345.SCALE1", "urn:epc:id:giai:4012345.NOZZLE1"
MEAT = b"0109501101020917" + b"3103025000" + b"10PORK7\x1d"  # 25 kg of lot PORK7
DIESEL_1 = b"0109501101020917" + b"3150030000" + b"10D1"  # 30,000 L, lot D1
DIESEL_2 = b"0109501101020917" + b"3150020000" + b"10D2"  # 20,000 L, lot D2
RULES = f"""
mix_prefix = "urn:epc:class:lgtin:4012345.999999"

[[rule]]
node = "0a01"
kind = "sale"
site = "{MARKET}"
device = "{SCALE}"

[[rule]]
node = "0a01"
instrument = "in"
kind = "receive"
site = "{MARKET}"

[[rule]]
node = "0f01"
kind = "dispense"
site = "{STATION}"
device = "{NOZZLE}"
tank = "T1"

[[rule]]
node = "0f01"
instrument = "in"
kind = "delivery"
site = "{STATION}"
tank = "T1"
"""
_batches = count(1)


def ingest(url, node, *recs):
    """Store records as one gateway envelope, as ingest does."""
    data = [record.make(kind, node, seq, seq - 1, t, record.TQ_NTP, **body)
            for kind, seq, t, body in recs]
    blob = b"".join(data)
    store = open_store(url)
    try:
        store.store_batch(EnvelopeRow(hashlib.sha256(blob).digest(), "gw", b"k" * 16,
                                      next(_batches), 1, 1, "metrotrace/v1/gw/gw/up", False,
                                      len(data), blob), [decode(b, b"\0" * 32) for b in data])
    finally:
        store.close()


def load_rules(url, tmp_path, text=RULES):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    store_args = ["--db", url] if url.startswith("postgresql") else [
        "--data-dir", str(tmp_path)]
    args = build_parser().parse_args(["trace", "rules", "load", str(path), *store_args])
    return args.func(args)


def test_records_become_events_and_a_restart_keeps_the_tank_mix(url, tmp_path):
    assert load_rules(url, tmp_path) == 0
    lot = gs1.parse(MEAT, "]C1").lot_class()
    diesel1 = gs1.parse(DIESEL_1, "]C1").lot_class()
    ingest(url, STALL, (record.SCAN, 1, 10, dict(inst="in", code=MEAT, symbology="]C1")),
           (record.SCAN, 2, 20, dict(code=MEAT, symbology="]C1")))
    ingest(url, PUMP, (record.SCAN, 1, 30, dict(inst="in", code=DIESEL_1, symbology="]C1")),
           (record.DISPENSE, 2, 40, dict(volume=40_000, pulses=4000, kfactor=100_000,
                                         t_start=35, unit="mL", d=10)))
    feed = TraceFeed(url)
    assert feed.tick() == 4  # receipt of PORK7; receipt and mix of D1; one dispense
    feed.close()  # a restart: the scan of seq 2 waits for its weighing in the store only
    ingest(url, STALL, (record.WEIGHING, 3, 21, dict(inst="S1", gross=1250, tare=0, net=1250,
                                                     e=5, unit="g", flags=record.F_STABLE,
                                                     link=2)))
    ingest(url, PUMP, (record.SCAN, 3, 50, dict(inst="in", code=DIESEL_2, symbology="]C1")),
           (record.DISPENSE, 4, 60, dict(volume=25_000, pulses=2500, kfactor=100_000,
                                         t_start=55, unit="mL", d=10)))
    again = TraceFeed(url)
    try:
        tanks = again.load_rules().tanks
        assert tanks.mix["T1"] == ("urn:epc:class:lgtin:4012345.999999.T1-M1",
                                   30_000_000 - 40_000)  # rebuilt from the store
        assert again.tick() == 4  # the sale, receipt and mix of D2, the dispense
        assert again.tick() == 0  # nothing new: the cursor moved with the events
        assert tanks.mix["T1"] == ("urn:epc:class:lgtin:4012345.999999.T1-M2",
                                   30_000_000 - 40_000 + 20_000_000 - 25_000)
        trace = again.trace
        sale = Tracer(trace).forward(lot).sales
        assert [(s["qty"], s["instrument"], s["raw"]) for s in sale] == [
            (1_250_000, SCALE, "urn:metrotrace:record:0a01:3")]
        fuel = Tracer(trace).forward(diesel1)  # D1 reaches the dispense after D2 came in
        assert [(s["time"], s["qty"]) for s in fuel.sales] == [(40, 40_000), (60, 25_000)]
        assert len(fuel.transformations) == 2
        assert again.counts["records"] == 3  # the weighing, the scan of D2, the dispense
    finally:
        again.close()
    # a feeder that starts over from the beginning stores nothing twice
    fresh = TraceStore(connect(url))
    fresh.put_meta("feed_after", "0")
    before = fresh.rows("SELECT COUNT(*) FROM trace_event")[0][0]
    fresh.conn.close()
    replay = TraceFeed(url)
    try:
        replay.tick()
        assert replay.trace.rows("SELECT COUNT(*) FROM trace_event")[0][0] == before
    finally:
        replay.close()


def test_server_run_monitor_loop_feeds_the_trace(url, tmp_path):
    load_rules(url, tmp_path)
    ingest(url, STALL, (record.SCAN, 1, 10, dict(inst="in", code=MEAT, symbology="]C1")),
           (record.SCAN, 2, 20, dict(code=b"9501101531001", symbology="]E0")))  # bad check
    counts: Counter[str] = Counter()
    loop = MonitorLoop(url, 1, lambda t, p: None, lambda: 100, counts)
    try:
        loop.tick()
    finally:
        loop._close()
    assert counts["trace_events"] == 1 and counts["trace_feed_error"] == 0
    trace = TraceStore(connect(url))
    try:
        assert trace.rows("SELECT biz_step, location FROM trace_event") == [
            ("receiving", MARKET)]
    finally:
        trace.conn.close()


@pytest.mark.parametrize("text,field", [
    ("[[rule]]\nnode = '0a01'\nkind = 'sell'\nsite = 'x'", "rule[0].kind"),
    ("[[rule]]\nnode = 'zz'\nkind = 'sale'\nsite = 'x'", "rule[0].node"),
    ("[[rule]]\nnode = '0a01'\nkind = 'dispense'\nsite = 'x'", "rule[0].tank"),
    ("[[rule]]\nnode = '0a01'\nkind = 'sale'\nsite = 'x'\nregion = 'xx'", "rule[0].region"),
    ("[[rule]]\nnode = '0a01'\nkind = 'sale'\nsite = 'x'\ncolour = 'red'", "rule[0].colour"),
    ("[[rule]]\nnode = '0a01'\nkind = 'sale'\nsite = 'x'\n"
     "[[rule]]\nnode = '0A01'\nkind = 'receive'\nsite = 'y'", "rule[1].node"),
    ("mix_prefix = 7\n[[rule]]\nnode = '0a01'\nkind = 'sale'\nsite = 'x'", "mix_prefix"),
    ("node = ", "file"),
])
def test_a_bad_rules_file_is_refused_naming_the_field(text, field):
    with pytest.raises(RuleError) as err:
        rulefile.parse(text)
    assert err.value.field == field


def test_stored_rules_round_trip():
    ruleset = rulefile.parse(RULES)
    assert rulefile.loads(rulefile.dumps(ruleset)) == ruleset
    assert ruleset.rules[("0a01", None)].instrument == SCALE
