"""What the demo simulates: two sites, their gateways, six nodes, the instruments they serve,
the registry, the trace rules, and the supply network of lots that flows through them.

Invariant: plain data and pure functions (no processes, no I/O except `write_*`), so the
same scenario is what the demo runs, what its summary explains and what a test asserts on.
Identities follow DESIGN.md: gateway ids are text, node ids 8 bytes shown as hex, legal
values integers in base units (g, mL), times UTC ms. Lots and locations are GS1 (company
prefix 4012345, as server/trace/netgen.py generates them).

The market ("Central market", gateway market-1):
    three stall scales, each with a scanner for the goods it sells (class III, Max 15 kg,
    e = 5 g): S1 in order, S2 drifting (its load cell's sensitivity creeps up, accelerated
    so that it nears its MPE within the run), S3 tampered (its stallholder changes the span
    calibration through the service console: the node records a `cal_change` event and
    every later indication reads 0.3 % heavy);
    a goods-in scanner where lots are received.
The fuel station (gateway station-1): two dispensers (class 0.5, d = 10 mL) drawing from
    tank T1; dispenser 1's node also scans the tanker's delivery note into the tank.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from metrotrace.server.trace import netgen
from metrotrace.server.trace.build import Builder
from metrotrace.server.trace.rules import Rule, Rules

CP = netgen.CP
MARKET, STATION = "market", "station"
MARKET_GLN = f"urn:epc:id:sgln:{CP}.MKT1.0"
STATION_GLN = f"urn:epc:id:sgln:{CP}.STN1.0"
TANK = "T1"  # the station's tank (trace rules keep its current mix)

SCALE_CAL = {"zero_raw": 8400, "span_raw": 420000, "span_load": 10000}  # 42 counts per g
TEST_WEIGHT = 10_000  # g: the inspector's reference weight (class M1, 10 kg)
TEST_WEIGHT_ID = "TW-10kg-0042"
TAMPER_FACTOR_PPM = 3000  # the tampered scale reads 0.3 % heavy: 30 g at 10 kg (MPE 10 g)
KFACTOR = 100_000  # pulses per 1000 L: 100 pulses a litre
# The check process's known standard deviation (registry knowledge, as docs/metrology.md
# recommends over a short estimated baseline): indications are rounded to e = 5 g and the
# test weight is class M1, so half an interval. Zero readings keep an estimated baseline.
CHECK_SIGMA_G = 2.5
# Zero readings come after every sale: a longer baseline than the engine's default 30
# makes their estimated sigma good enough that an in-order scale rarely raises a false
# alarm in a run (each chart alone signals once in about 100-370 in-control readings).
ZERO_BASELINE = 50


@dataclass(frozen=True)
class Gateway:
    id: str
    site: str
    name: str
    gln: str


GATEWAYS = (Gateway("market-1", MARKET, "Central market", MARKET_GLN),
            Gateway("station-1", STATION, "Fuel station on the ring road", STATION_GLN))


@dataclass(frozen=True)
class NodePlan:
    """One simulated board: what it serves and how the demo drives it."""

    hex: str
    gateway: str
    role: str  # scale | goods_in | pump
    title: str
    scale: str | None = None  # instrument ids
    pump: str | None = None
    scanner: str | None = None
    behaviour: str = "ok"  # ok | drifting | tampered (scales)
    link_window_ms: int = 60_000
    seed: int = 1

    @property
    def node(self) -> bytes:
        return bytes.fromhex(self.hex)

    @property
    def site(self) -> str:
        return next(g.site for g in GATEWAYS if g.id == self.gateway)

    def config(self) -> dict:
        """Overrides for tools/hostnode.host_config: this board's instruments, driven."""
        over: dict = {"scale": None, "dispenser": None, "scanner": None, "status_s": 20,
                      "link": {"kind": "tcp", "window": 16, "timeout_ms": 500, "period_ms": 20},
                      "sim": {"driven": True, "seed": self.seed, "period_ms": 10, "noise": 3}}
        if self.scale:
            over["scale"] = {"inst": self.scale, "e": 5, "max": 15_000, "min_e": 20,
                             "window": 3, "cal": dict(SCALE_CAL)}
        if self.pump:
            over["dispenser"] = {"inst": self.pump, "kfactor": KFACTOR, "d": 10,
                                 "idle_ms": 30_000, "max_hz": 2000}
        if self.scanner:
            over["scanner"] = {"inst": self.scanner, "link_window_ms": self.link_window_ms}
        return over


NODES = (
    NodePlan("4d4b543100000001", "market-1", "scale", "stall 1 scale (in order)",
             scale="MKT1-S1", scanner="MKT1-S1-SCAN", seed=11),
    NodePlan("4d4b543100000002", "market-1", "scale", "stall 2 scale (drifting)",
             scale="MKT1-S2", scanner="MKT1-S2-SCAN", behaviour="drifting", seed=12),
    NodePlan("4d4b543100000003", "market-1", "scale", "stall 3 scale (tampered)",
             scale="MKT1-S3", scanner="MKT1-S3-SCAN", behaviour="tampered", seed=13),
    NodePlan("4d4b543100000010", "market-1", "goods_in", "goods-in scanner",
             scanner="MKT1-IN", seed=14),
    # The delivery note is scanned long before the next fuelling: a short link window
    # keeps a dispense from being linked to it (it draws from the tank's mix instead).
    NodePlan("53544e3100000001", "station-1", "pump", "dispenser 1 + tank scanner",
             pump="STN1-P1", scanner="STN1-T1-IN", link_window_ms=200, seed=21),
    NodePlan("53544e3100000002", "station-1", "pump", "dispenser 2", pump="STN1-P2", seed=22),
)


def stall_gln(n: int) -> str:
    return f"urn:epc:id:sgln:{CP}.MKT1.{n}"


# -- GS1 codes the nodes scan ------------------------------------------------------------

def gtin14(item: int) -> str:
    body = f"0{CP}{item:05d}"
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class Lot:
    item: int
    lot: str
    title: str
    produced_kg: int
    to_market_kg: int

    @property
    def urn(self) -> str:
        return netgen.lot_urn(self.item, self.lot)

    def sale_line(self) -> str:
        """What a stall scanner reads off the crate: GS1-128, (01) GTIN (10) lot."""
        return f"]C101{gtin14(self.item)}10{self.lot}"

    def receiving_line(self) -> str:
        """The goods-in scan of the delivery label: (01) GTIN (3102) net kg.xx (10) lot."""
        return f"]C101{gtin14(self.item)}3102{self.to_market_kg * 100:06d}10{self.lot}"


LOTS = (Lot(11, "PORK2511A", "pork shoulder", 400, 120),
        Lot(12, "BEEF2511C", "beef mince", 300, 120),
        Lot(13, "APPL2511K", "apples", 600, 200),
        Lot(14, "CHSE2511B", "cheese", 200, 80))
RECALLED = LOTS[0]  # the lot the regulator recalls at the end
FUEL = Lot(21, "DSL251123", "diesel", 0, 0)
FUEL_PRODUCED_L, FUEL_TO_STATION_L = 90_000, 30_000


def delivery_line() -> str:
    """The tanker's delivery note at the station: (01) GTIN (3150) litres (10) batch."""
    return f"]C101{gtin14(FUEL.item)}3150{FUEL_TO_STATION_L:06d}10{FUEL.lot}"


# -- the registry --------------------------------------------------------------------------

def instruments(verified_ms: int, due_ms: int) -> list[dict]:
    out = []
    for plan in NODES:
        if plan.scale:
            out.append({"id": plan.scale, "site": plan.site, "node": plan.hex, "type": "NAWI",
                        "accuracy_class": "III", "max": 15_000, "min": 100, "e": 5,
                        "unit": "g", "verified_on": verified_ms,
                        "verification_due": due_ms})
        if plan.pump:
            out.append({"id": plan.pump, "site": plan.site, "node": plan.hex,
                        "type": "fuel_dispenser", "accuracy_class": "0.5", "max": 100_000,
                        "min": 2_000, "e": 10, "unit": "mL", "verified_on": verified_ms,
                        "verification_due": due_ms})
    return out


def check_sigma() -> dict[str, float]:
    """instrument -> known check sigma (base units), for the drift engine."""
    return {p.scale: CHECK_SIGMA_G for p in NODES if p.scale}


def drift_settings():
    """The drift engine's settings for this fleet (server/metrology/settings.py): written
    once to the data directory, where the server's jobs, the dashboard and the summary all
    read them, so they compute the same states."""
    from metrotrace.server.metrology import kernels, settings

    return settings.Settings(kernels.Params(baseline=ZERO_BASELINE), check_sigma())


def registry(gateway_keys: dict[str, str], node_keys: dict[str, str], verified_ms: int,
             due_ms: int) -> dict:
    """The JSON form of a registry file (docs/server.md) for `metrotrace registry load`."""
    return {
        "site": [{"id": MARKET, "name": GATEWAYS[0].name},
                 {"id": STATION, "name": GATEWAYS[1].name}],
        "gateway": [{"id": g.id, "site": g.site,
                     "key": [{"public_key": gateway_keys[g.id], "valid_from": 0}]}
                    for g in GATEWAYS],
        "node": [{"id": p.hex, "gateway": p.gateway, "key": node_keys[p.hex]} for p in NODES],
        "instrument": instruments(verified_ms, due_ms),
    }


# -- trace rules: node records -> EPCIS events ---------------------------------------------

def rules() -> Rules:
    table: dict[tuple[str, str | None], Rule] = {}
    stall = 0
    for plan in NODES:
        if plan.role == "scale":
            stall += 1
            table[(plan.hex, None)] = Rule("sale", stall_gln(stall))  # deviceID = record inst
        elif plan.role == "goods_in":
            table[(plan.hex, None)] = Rule("receive", MARKET_GLN)
        elif plan.role == "pump":
            table[(plan.hex, None)] = Rule("dispense", STATION_GLN, tank=TANK)
            if plan.scanner:
                table[(plan.hex, plan.scanner)] = Rule("delivery", STATION_GLN, tank=TANK)
    return Rules(table, Builder("metrotrace-demo-sales"),
                 mix_prefix=f"urn:epc:class:lgtin:{CP}.999999")


# -- the supply network upstream of the demo's sites ---------------------------------------

@dataclass
class Supply:
    events: list = field(default_factory=list)
    background_lots: int = 0


def supply(now_ms: int, seed: int = 2025) -> Supply:
    """Producers -> distributor -> the market (and two other markets that sell some of the
    same lots), a refinery batch -> the station (and another station); plus a background
    network from server/trace/netgen.py. The demo's own sites receive by scanning, so this
    stops at the shipping events towards them."""
    rng = random.Random(seed)
    b = Builder("metrotrace-demo-supply")
    out = Supply()
    t = now_ms - 5 * 86_400_000
    dist = netgen.sgln("D", 1)
    for k, lot in enumerate(LOTS):
        producer = netgen.sgln("P", k + 1)
        total = lot.produced_kg * 1_000_000
        to_market = lot.to_market_kg * 1_000_000
        t += 3_600_000
        out.events += [
            b.commission(t, lot.urn, total, "mass", producer,
                         ilmd={"example:producer": producer}),
            b.move(t + 60_000, "shipping", producer, [(lot.urn, total, "mass")]),
            b.move(t + 7_200_000, "receiving", dist, [(lot.urn, total, "mass")]),
            b.move(t + 86_400_000, "shipping", dist, [(lot.urn, to_market, "mass")]),
        ]
        for m in (1, 2):  # the rest goes to two other markets, which sell it
            other = netgen.sgln("M", m)
            share = (total - to_market) // 2
            out.events.append(b.move(t + 90_000_000, "receiving", other,
                                     [(lot.urn, share, "mass")]))
            for s in range(3):
                grams = rng.randrange(200, 2000)
                out.events.append(b.sell(t + 100_000_000 + s * 60_000, lot.urn,
                                         grams * 1000, "mass", other,
                                         netgen.instrument(f"M{m}", s), f"0000000{m}", s + 1))
    refinery = netgen.sgln("R", 0)
    fuel_total, to_station = FUEL_PRODUCED_L * 1000, FUEL_TO_STATION_L * 1000
    t = now_ms - 2 * 86_400_000
    out.events += [
        b.commission(t, FUEL.urn, fuel_total, "volume", refinery),
        b.move(t + 60_000, "shipping", refinery, [(FUEL.urn, to_station, "volume")]),
        b.move(t + 120_000, "shipping", refinery, [(FUEL.urn, fuel_total - to_station,
                                                    "volume")]),
        b.move(t + 3_600_000, "receiving", netgen.sgln("S", 2),
               [(FUEL.urn, fuel_total - to_station, "volume")]),
    ]
    background = netgen.food(seed, lots=6, pallets_per_lot=2, sales_per_portion=3,
                             producers=5, distributors=2, markets=4, stalls=2)
    out.events += background.events
    out.background_lots = len(background.lots)
    return out
