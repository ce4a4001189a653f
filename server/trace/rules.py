"""Node records → EPCIS events, by rules configured per site and instrument.

Invariant: pure (records in, events out, tank state carried in a `Tanks` object the
caller keeps, stored scans reached through the `scan_lookup` callable the caller gives).
A record becomes at most one business step; a weighing or dispense that names its scan
(`link` = the scan's seq on the same node) is sold from the lot that scan read, found in
a bounded cache or else through `scan_lookup`; a dispense with no scan draws from its
tank's current mix; a fuel delivery into a tank is a receiving plus a TransformationEvent
that mixes the tank's content with it. Anything a rule cannot place raises RuleError
naming the field. `feed.py` runs rules over stored records; `rulefile.py` reads them.

Rule kinds: `receive` (scans at a stall's goods-in), `sale` (scale: scan + weighing),
`delivery` (scan of a fuel delivery note at a tank: GS1-128 with (01)(10)(315n)),
`dispense` (nozzle drawing from a tank).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import CodeError, RuleError, gs1
from .build import Builder
from .epcis import Event

UNIT_FACTOR = {"mg": ("mass", 1), "g": ("mass", 1000), "kg": ("mass", 1_000_000),
               "mL": ("volume", 1), "L": ("volume", 1000)}
KINDS = ("receive", "sale", "delivery", "dispense")
SCAN_CACHE = 100_000  # scans kept in memory for their weighing; older ones are looked up


@dataclass(frozen=True)
class Rule:
    kind: str
    site: str  # SGLN of the stall / tank / station
    instrument: str | None = None  # deviceID for sales and dispenses
    tank: str | None = None  # for delivery and dispense: which tank
    region: str | None = None  # variable-measure code layout (biip region)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise RuleError("kind", f"expected one of {KINDS}, got {self.kind!r}")


@dataclass
class Tanks:
    """Each tank's current mix (lot URN) and volume in mL; mixes are numbered per tank."""

    mix: dict[str, tuple[str, int]] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)


def mix_urn(mix_prefix: str, tank: str, n: int) -> str:
    """The lot URN of a tank's n-th mix (n counts deliveries into that tank)."""
    return f"{mix_prefix}.{tank.rsplit(':', 1)[-1]}-M{n}"


class Rules:
    def __init__(self, rules: dict[tuple[str, str | None], Rule], builder: Builder,
                 tanks: Tanks | None = None,
                 mix_prefix: str = "urn:epc:class:lgtin:4012345.999999",
                 scan_lookup: Callable[[bytes, int], dict | None] | None = None):
        self.rules = rules  # (node hex, instrument id or None) → rule
        self.b = builder
        self.tanks = tanks or Tanks()
        self.mix_prefix = mix_prefix
        self.scan_lookup = scan_lookup  # (node, seq) → the decoded scan record, or None
        self._scans: dict[tuple[str, int], gs1.Code] = {}

    def rule_for(self, rec: dict) -> Rule:
        node = rec["node"].hex()
        rule = self.rules.get((node, rec.get("inst"))) or self.rules.get((node, None))
        if rule is None:
            raise RuleError("node", f"no rule for node {node} instrument {rec.get('inst')!r}")
        return rule

    def events(self, rec: dict, builder: Builder | None = None) -> list[Event]:
        """Turn one decoded record (firmware/metro/wire/record.py) into events; `builder`
        (default: the one given at construction) names their eventIDs."""
        kind = rec["kind"]
        if kind not in (1, 2, 5):  # weighing, dispense, scan; the rest are metrology
            return []
        b = builder or self.b
        rule = self.rule_for(rec)
        node, t = rec["node"].hex(), rec["t"]
        if kind == 5:
            code = self._parse(rec, rule)
            if len(self._scans) >= SCAN_CACHE:
                del self._scans[next(iter(self._scans))]  # the oldest
            self._scans[(node, rec["seq"])] = code
            if rule.kind == "receive":
                lot = _lot(code)
                qty, dim = (code.net_mg, "mass") if code.net_mg else (
                    (code.net_ml, "volume") if code.net_ml else (code.count or 1, "count"))
                return [b.move(t, "receiving", rule.site, [(lot, qty, dim)])]
            if rule.kind == "delivery":
                return self._deliver(rule, t, code, b)
            return []  # a sale's scan waits for its weighing
        dim, factor = UNIT_FACTOR[rec["unit"]]
        qty = (rec["net"] if kind == 1 else rec["volume"]) * factor
        instrument = rule.instrument or rec.get("inst")
        if instrument is None:
            raise RuleError("inst", "a sale needs the instrument that measured it")
        if rec.get("link") is not None:
            lot = _lot(self._linked(rec["node"], rec["link"]))
        elif rule.tank in self.tanks.mix:
            lot = self.tanks.mix[rule.tank][0]
        else:
            raise RuleError("link", "a sale must name its scan, or its tank must hold a mix")
        if rule.tank in self.tanks.mix and lot == self.tanks.mix[rule.tank][0]:
            mix, held = self.tanks.mix[rule.tank]
            self.tanks.mix[rule.tank] = (mix, held - qty)
        step = "dispensing" if kind == 2 else "retail_selling"
        return [b.sell(t, lot, qty, dim, rule.site, instrument, node, rec["seq"], step)]

    def _parse(self, rec: dict, rule: Rule) -> gs1.Code:
        try:
            return gs1.parse(rec["code"], rec["symbology"], rule.region)
        except CodeError as exc:
            raise RuleError("code", str(exc)) from exc

    def _linked(self, node: bytes, seq: int) -> gs1.Code:
        """The scan a weighing or dispense names: from the cache, else from the store."""
        code = self._scans.get((node.hex(), seq))
        if code is not None:
            return code
        scan = self.scan_lookup(node, seq) if self.scan_lookup else None
        if scan is None or scan.get("kind") != 5:
            raise RuleError("link", f"no scan with seq {seq} from node {node.hex()}")
        return self._parse(scan, self.rule_for(scan))

    def _deliver(self, rule: Rule, t: int, code: gs1.Code, b: Builder) -> list[Event]:
        if rule.tank is None:
            raise RuleError("tank", "a delivery rule names its tank")
        if not code.net_ml:
            raise RuleError("code", "a fuel delivery note carries its volume in AI (315n)")
        lot = _lot(code)
        n = self.tanks.count.get(rule.tank, 0) + 1
        self.tanks.count[rule.tank] = n
        mix = mix_urn(self.mix_prefix, rule.tank, n)
        inputs = [(lot, code.net_ml, "volume")]
        if rule.tank in self.tanks.mix:
            current, held = self.tanks.mix[rule.tank]
            inputs.append((current, held, "volume"))
        total = sum(q for _, q, _ in inputs)
        self.tanks.mix[rule.tank] = (mix, total)
        return [b.move(t, "receiving", rule.site, [(lot, code.net_ml, "volume")]),
                b.transform(t + 1, inputs, [(mix, total, "volume")], rule.site)]


def _lot(code: gs1.Code) -> str:
    lot = code.lot_class()
    if lot is None:
        raise RuleError("code", "the scan names no lot (AI 10); traceability needs one")
    return lot
