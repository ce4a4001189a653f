"""A sample market and fuel station, seeded through the real paths, for the dashboard's
tests and screenshots: `python -m metrotrace.server.dashboard.sample DIR` writes one into
DIR/metrotrace.sqlite3 (then `metrotrace server api --data-dir DIR`).

Invariant: every byte comes the way production bytes come. Node records are made by the
firmware's encoder and tagged with the node keys, sealed by the gateway's envelope code
(server/ingest/synth) and handed to the server's ingest core; sales and dispenses become
EPCIS events through server/trace's rules and are captured into the trace tables. Known
truth, relative to `now`:

    M-SCALE-01, M-SCALE-04  in tolerance (raw counts, 1 g noise on a 10 kg test weight)
    M-SCALE-02              drifting: +0.2 g a day from day 30, never outside the MPE
    M-SCALE-03              tampered: seal opened, calibration changed, +1.5 % afterwards
    S-PUMP-01               in tolerance;  S-PUMP-02  verification overdue
    lot L2611A of GTIN 04012345000016: recalled; sold on M-SCALE-01..03
plus a forgery (same node and seq, other bytes), a bad tag, an unknown key and junk.
"""

from __future__ import annotations

import hmac
import random
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from metrotrace.firmware.metro.wire import record
from metrotrace.gateway import envelope

from ..ingest.core import Ingest
from ..ingest.synth import Site
from ..store import open_store
from ..store.rows import GatewayKeyRow, InstrumentRow, SiteRow
from ..trace import build as trace_build
from ..trace.netgen import sgln
from ..trace.rules import Rule, Rules
from ..trace.store import TraceStore
from . import recall, states

DAY = 86_400_000
GTIN_HAM, LOT_RECALLED, LOT_OTHER = "04012345000016", "L2611A", "L2611B"
GTIN_DIESEL, LOT_DIESEL = "04012345000023", "D7731"
MARKET, STATION = sgln("M", 1), sgln("S", 1)
PRODUCER, TANK = sgln("P", 1), sgln("T", 1)


@dataclass
class Seeded:
    now: int
    sales_recalled: list[tuple[str, int]] = field(default_factory=list)  # (instrument, t)
    drifting: str = "M-SCALE-02"
    tampered: str = "M-SCALE-03"
    in_tolerance: tuple[str, ...] = ("M-SCALE-01", "M-SCALE-04", "S-PUMP-01")
    overdue: str = "S-PUMP-02"
    market: Site | None = None  # for tests that send more traffic later
    scales: list = field(default_factory=list)


class Node:
    """One node of a synth Site: records from the firmware's encoder, tagged with its key."""

    def __init__(self, site: Site, i: int, inst: str):
        self.site, self.node, self.inst = site, site.node_ids[i], inst

    def make(self, kind: int, t: int, inst: str | None = "", **body) -> tuple[int, bytes, bytes]:
        seq = self.site.next_seq[self.node]
        self.site.next_seq[self.node] = seq + 1
        data = record.make(kind, self.node, seq, seq - 1, t, record.TQ_NTP,
                           inst=self.inst if inst == "" else inst, **body)
        return t, data, hmac.new(self.site.node_keys[self.node], data, "sha256").digest()


def _registry(market: Site, station: Site, now: int) -> list:
    rows: list = []
    for s in (market, station):
        rows += [r for r in s.registry_rows() if not isinstance(r, InstrumentRow | SiteRow)]
    old = Site(gateway="market-1-old", nodes=0).key
    rows += [SiteRow("market", "Central market"), SiteRow("station", "Route 9 fuel station"),
             GatewayKeyRow(envelope.key_id(old.public_key()), "market-1",
                           envelope.raw_public(old.public_key()), market.valid_from - 400 * DAY,
                           market.valid_from)]
    verified, due = now - 75 * DAY, now + 290 * DAY
    for i, (ident, soon) in enumerate((("M-SCALE-01", 0), ("M-SCALE-02", 0), ("M-SCALE-03", 0),
                                       ("M-SCALE-04", 270))):
        rows.append(InstrumentRow(ident, "market", market.node_ids[i], "NAWI", "III", 15000,
                                  100, 5, "g", verified, due - soon * DAY))
    for i, ident in enumerate(("S-PUMP-01", "S-PUMP-02")):
        rows.append(InstrumentRow(ident, "station", station.node_ids[i], "fuel_dispenser",
                                  "0.5", 60000, 2000, 10, "mL", verified - i * 300 * DAY,
                                  due if i == 0 else now - 12 * DAY))
    return rows


def _scale_records(node: Node, rng: random.Random, start: int, days: int, kind: str) -> list:
    out = [node.make(record.EVENT, start - DAY, inst=None, code="power_up",
                     detail={"fw": "metro-1.4.2"})]
    for d in range(days):
        t = start + d * DAY + rng.randrange(3600_000)
        true = rng.gauss(0, 1.0)
        if kind == "drifting" and d >= 30:
            true += 0.2 * (d - 30)
        if kind == "tampered" and d == 45:
            # The firmware's own audit events (app/params.py): seal, then cal_change.
            out.append(node.make(record.EVENT, t - 600_000, inst=None, code="seal",
                                 detail={"state": "open", "by": "stallholder"}))
            out.append(node.make(record.EVENT, t - 300_000, inst=None, code="cal_change",
                                 detail={"param": "span_raw", "old": 100000, "new": 101500,
                                         "by": "stallholder"}))
        if kind == "tampered" and d >= 45:
            true += 150.0
        raw = round((10_000 + true) * 20 + rng.gauss(0, 4))
        out.append(node.make(record.CHECK, t, indication=5 * round((10_000 + true) / 5),
                             reference=10_000, e=5, unit="g", raw=raw, ref_id="TW-10kg"))
        out.append(node.make(record.ZERO, t + 60_000, indication=0, e=5, unit="g"))
    return out


def _sales(node: Node, t: int, gtin: str, lot: str, grams: int) -> list:
    code = f"]C101{gtin}10{lot}".encode()[3:]
    scan = node.make(record.SCAN, t, inst=None, code=code, symbology="]C1")
    seq = node.site.next_seq[node.node] - 1
    weigh = node.make(record.WEIGHING, t + 4000, gross=grams, tare=0, net=grams, e=5, unit="g",
                      flags=record.F_STABLE, raw=grams * 20, link=seq)
    return [scan, weigh]


def _pump_records(node: Node, rng: random.Random, start: int, days: int) -> list:
    out = [node.make(record.EVENT, start - DAY, inst=None, code="power_up",
                     detail={"fw": "metro-1.4.2"})]
    for d in range(0, days, 2):
        t = start + d * DAY + rng.randrange(3600_000)
        out.append(node.make(record.CHECK, t, indication=20_000 + 10 * round(rng.gauss(0, 15) / 10),
                             reference=20_000, e=10, unit="mL", ref_id="PM-20L"))
        volume = 10 * rng.randrange(1500, 6000)
        out.append(node.make(record.DISPENSE, t + 3600_000, volume=volume, pulses=volume // 10,
                             kfactor=100_000, t_start=t + 3500_000, unit="mL", d=10))
    return out


def send(ingest: Ingest, site: Site, records: list, per_batch: int = 150) -> None:
    records.sort(key=lambda r: r[0])
    for k in range(0, len(records), per_batch):
        chunk = records[k:k + per_batch]
        created = chunk[-1][0]
        ingest.handle(site.topic, site.seal([(d, tag) for _, d, tag in chunk], created=created),
                      created + 1500)


def _attacks(ingest: Ingest, market: Site, tampered: Node, now: int) -> None:
    t = now - 2 * DAY
    seq = market.next_seq[tampered.node] - 1  # its last stored record, offered again altered
    forged = record.make(record.WEIGHING, tampered.node, seq, seq - 1, t, record.TQ_NTP,
                         inst=tampered.inst, gross=900, tare=0, net=900, e=5, unit="g",
                         flags=record.F_STABLE)
    good_tag = hmac.new(market.node_keys[tampered.node], forged, "sha256").digest()
    ingest.handle(market.topic, market.seal([(forged, good_tag)], created=t), t + 900)
    wrong = record.make(record.WEIGHING, tampered.node, seq + 1, seq, t + 5, record.TQ_NTP,
                        inst=tampered.inst, gross=50, tare=0, net=50, e=5, unit="g",
                        flags=record.F_STABLE)
    ingest.handle(market.topic, market.seal([(wrong, b"\x00" * 32)], created=t + 5), t + 905)
    stranger = Site(gateway="market-1", nodes=1, key=Site(gateway="intruder").key)
    ingest.handle(market.topic, stranger.seal([], created=t + 9), t + 909)
    ingest.handle(market.topic, b"\x17\x42 garbage", t + 913)


def _trace(path: Path, store, market: Site, station: Site, start: int) -> None:
    conn = sqlite3.connect(path)
    ts = TraceStore(conn)
    ts.migrate()
    b = trace_build.Builder("dashboard-test")
    upstream = [
        b.commission(start - 5 * DAY, f"urn:epc:class:lgtin:4012345.000001.{LOT_RECALLED}",
                     200_000_000, "mass", PRODUCER),
        b.commission(start - 5 * DAY + 1, f"urn:epc:class:lgtin:4012345.000001.{LOT_OTHER}",
                     200_000_000, "mass", PRODUCER),
        b.move(start - 4 * DAY, "shipping", PRODUCER,
               [(f"urn:epc:class:lgtin:4012345.000001.{LOT_RECALLED}", 200_000_000, "mass"),
                (f"urn:epc:class:lgtin:4012345.000001.{LOT_OTHER}", 200_000_000, "mass")]),
        b.move(start - 3 * DAY, "receiving", MARKET,
               [(f"urn:epc:class:lgtin:4012345.000001.{LOT_RECALLED}", 200_000_000, "mass"),
                (f"urn:epc:class:lgtin:4012345.000001.{LOT_OTHER}", 200_000_000, "mass")]),
        b.commission(start - 5 * DAY + 2, f"urn:epc:class:lgtin:4012345.000002.{LOT_DIESEL}",
                     30_000_000, "volume", sgln("R", 1)),
    ]
    ts.capture(upstream, start)
    rules = {}
    for i in range(market.nodes):
        rules[(market.node_ids[i].hex(), None)] = Rule("sale", MARKET)
    for i in range(station.nodes):
        rules[(station.node_ids[i].hex(), None)] = Rule("delivery", STATION, tank=TANK)
        rules[(station.node_ids[i].hex(), f"S-PUMP-0{i + 1}")] = Rule("dispense", STATION,
                                                                     tank=TANK)
    engine = Rules(rules, b)
    events = []
    rows = store.records(kinds=(record.WEIGHING, record.DISPENSE, record.SCAN), limit=10**6)
    for r in sorted(rows, key=lambda r: (r.t, r.node, r.seq)):
        rec = record.decode(r.record)
        events += engine.events(rec)
    ts.capture(events, start)
    conn.close()


def seed(path: Path, now: int | None = None, seed_value: int = 7) -> Seeded:
    """Seed an SQLite store at `path` (see the module docstring)."""
    now = now if now is not None else int(time.time() * 1000)
    rng = random.Random(seed_value)
    market = Site(gateway="market-1", site="market", nodes=4)
    station = Site(gateway="station-1", site="station", nodes=2)
    store = open_store(f"sqlite:///{path}")
    for row in _registry(market, station, now):
        store.put(row)
    ingest = Ingest(store)
    days, start = 60, now - 61 * DAY
    scales = [Node(market, i, f"M-SCALE-0{i + 1}") for i in range(4)]
    pumps = [Node(station, i, f"S-PUMP-0{i + 1}") for i in range(2)]
    seeded = Seeded(now, market=market, scales=scales)
    market_records = []
    for node, kind in zip(scales, ("ok", "drifting", "tampered", "ok"), strict=True):
        market_records += _scale_records(node, rng, start, days, kind)
    for d in range(5, days, 3):  # the recalled lot on scales 1-3, the other lot on scale 4
        for k, node in enumerate(scales):
            t = start + d * DAY + 7200_000 + k * 600_000
            lot = LOT_OTHER if k == 3 else LOT_RECALLED
            market_records += _sales(node, t, GTIN_HAM, lot, 5 * rng.randrange(60, 400))
            if lot == LOT_RECALLED:
                seeded.sales_recalled.append((node.inst, t + 4000))
    station_records = []
    for node in pumps:
        station_records += _pump_records(node, rng, start, days)
    note = f"]C101{GTIN_DIESEL}3150030000\x1d10{LOT_DIESEL}".encode()[3:]
    station_records.append(pumps[0].make(record.SCAN, start, inst=None, code=note,
                                         symbology="]C1"))
    send(ingest, market, market_records)
    send(ingest, station, station_records)
    _attacks(ingest, market, scales[2], now)
    _trace(path, store, market, station, start)
    conn = sqlite3.connect(path)
    recall.record_tolerance(TraceStore(conn), states.report(store, now))
    conn.close()
    store.close()
    return seeded


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m metrotrace.server.dashboard.sample DIR", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    truth = seed(folder / "metrotrace.sqlite3")
    print(f"seeded {folder / 'metrotrace.sqlite3'}: {len(truth.sales_recalled)} sales of lot "
          f"{LOT_RECALLED}; run: metrotrace server api --data-dir {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
