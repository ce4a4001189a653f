"""The EPCIS 2.0 event model: five event types with what / when / where / why / how.

Invariant: an `Event` holds exactly what its JSON-LD form says, minus recordTime (the
repository's own stamp): `Event.from_json(e.to_json()) == e`. Fields this model does not
name (errorDeclaration, persistentDisposition, certificationInfo, user extensions) travel
unchanged in `extra`. Quantities convert to integers in base units (mg, mL, count) only
through `Quantity.base()`, and a quantity whose unit does not fit its kind is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from . import DocumentError

EVENT_TYPES = ("ObjectEvent", "AggregationEvent", "TransformationEvent", "TransactionEvent",
               "AssociationEvent")
ACTIONS = ("ADD", "OBSERVE", "DELETE")

# UN/ECE Rec 20 codes → (dimension, factor to the base unit). Base units: mg, mL, count.
UOM = {
    "KGM": ("mass", 1_000_000), "GRM": ("mass", 1000), "MGM": ("mass", 1),
    "TNE": ("mass", 1_000_000_000),
    "LTR": ("volume", 1000), "MLT": ("volume", 1), "CLT": ("volume", 10),
    "MTQ": ("volume", 1_000_000), "DMQ": ("volume", 1000),
    "EA": ("count", 1), "H87": ("count", 1), "C62": ("count", 1),
}
BASE_UNIT = {"mass": "mg", "volume": "mL", "count": "count"}
# Sensor report types that measure a trade quantity, and the dimension their uom must have.
MEASURE_DIMENSION = {"Mass": "mass", "Volume": "volume"}

# What / where / why keys this model names; everything else goes to `extra`.
_NAMED = {"type", "eventID", "eventTime", "eventTimeZoneOffset", "recordTime", "action",
          "bizStep", "disposition", "readPoint", "bizLocation", "epcList", "childEPCs",
          "inputEPCList", "quantityList", "childQuantityList", "inputQuantityList",
          "parentID", "outputEPCList", "outputQuantityList", "transformationID",
          "bizTransactionList", "sourceList", "destinationList", "ilmd", "sensorElementList"}
# The "what" list each type keeps its EPCs and quantities under.
_EPC_KEY = {"ObjectEvent": "epcList", "TransactionEvent": "epcList",
            "AggregationEvent": "childEPCs", "AssociationEvent": "childEPCs",
            "TransformationEvent": "inputEPCList"}
_QTY_KEY = {"ObjectEvent": "quantityList", "TransactionEvent": "quantityList",
            "AggregationEvent": "childQuantityList", "AssociationEvent": "childQuantityList",
            "TransformationEvent": "inputQuantityList"}


@dataclass(frozen=True)
class Quantity:
    """A class-level quantity: so much of a lot (epcClass), in a UN/ECE unit."""

    epc_class: str
    quantity: Decimal | None = None
    uom: str | None = None

    def dimension(self) -> str | None:
        if self.uom is None:
            return "count" if self.quantity is not None else None
        entry = UOM.get(self.uom)
        return entry[0] if entry else None

    def base(self) -> int | None:
        """The quantity in integer base units (mg, mL, count), or None if unknown."""
        if self.quantity is None:
            return None
        factor = 1 if self.uom is None else UOM.get(self.uom, (None, None))[1]
        return None if factor is None else int((self.quantity * factor).to_integral_value())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"epcClass": self.epc_class}
        if self.quantity is not None:
            out["quantity"] = _number(self.quantity)
        if self.uom is not None:
            out["uom"] = self.uom
        return out


@dataclass(frozen=True)
class Event:
    """One EPCIS 2.0 event. `epcs`/`quantities` are the type's primary "what" list
    (epcList, childEPCs or inputEPCList); `outputs`/`output_quantities` are only for
    TransformationEvent."""

    type: str
    time: int  # eventTime, UTC ms
    tz: str  # eventTimeZoneOffset, "+01:00"
    event_id: str | None = None
    action: str | None = None
    biz_step: str | None = None
    disposition: str | None = None
    read_point: str | None = None
    biz_location: str | None = None
    parent_id: str | None = None
    epcs: tuple[str, ...] = ()
    quantities: tuple[Quantity, ...] = ()
    outputs: tuple[str, ...] = ()
    output_quantities: tuple[Quantity, ...] = ()
    transformation_id: str | None = None
    biz_transactions: tuple[tuple[str | None, str], ...] = ()
    sources: tuple[tuple[str, str], ...] = ()
    destinations: tuple[tuple[str, str], ...] = ()
    ilmd: dict[str, Any] | None = None
    sensors: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        """Build from one JSON-LD event; raise DocumentError naming the field."""
        kind = data.get("type")
        if kind not in EVENT_TYPES:
            raise DocumentError("type", f"not an EPCIS 2.0 event type: {kind!r}")
        if "eventTime" not in data or "eventTimeZoneOffset" not in data:
            raise DocumentError("eventTime", "eventTime and eventTimeZoneOffset are required")
        action = data.get("action")
        if kind != "TransformationEvent" and action not in ACTIONS:
            raise DocumentError("action", f"must be one of {ACTIONS}, got {action!r}")
        return cls(
            type=kind, time=parse_time(data["eventTime"], "eventTime"),
            tz=data["eventTimeZoneOffset"], event_id=data.get("eventID"), action=action,
            biz_step=data.get("bizStep"), disposition=data.get("disposition"),
            read_point=(data.get("readPoint") or {}).get("id"),
            biz_location=(data.get("bizLocation") or {}).get("id"),
            parent_id=data.get("parentID"),
            epcs=tuple(data.get(_EPC_KEY[kind], ())),
            quantities=_quantities(data.get(_QTY_KEY[kind], ()), _QTY_KEY[kind]),
            outputs=tuple(data.get("outputEPCList", ())),
            output_quantities=_quantities(data.get("outputQuantityList", ()),
                                          "outputQuantityList"),
            transformation_id=data.get("transformationID"),
            biz_transactions=tuple((b.get("type"), b["bizTransaction"])
                                   for b in data.get("bizTransactionList", ())),
            sources=tuple((s["type"], s["source"]) for s in data.get("sourceList", ())),
            destinations=tuple((d["type"], d["destination"])
                               for d in data.get("destinationList", ())),
            ilmd=data.get("ilmd"), sensors=_sensors(data.get("sensorElementList", ())),
            extra={k: v for k, v in data.items() if k not in _NAMED},
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.event_id is not None:
            out["eventID"] = self.event_id
        out["eventTime"] = format_time(self.time, self.tz)
        out["eventTimeZoneOffset"] = self.tz
        if self.parent_id is not None:
            out["parentID"] = self.parent_id
        if self.epcs:
            out[_EPC_KEY[self.type]] = list(self.epcs)
        if self.quantities:
            out[_QTY_KEY[self.type]] = [q.to_json() for q in self.quantities]
        if self.outputs:
            out["outputEPCList"] = list(self.outputs)
        if self.output_quantities:
            out["outputQuantityList"] = [q.to_json() for q in self.output_quantities]
        if self.transformation_id is not None:
            out["transformationID"] = self.transformation_id
        for key, value in (("action", self.action), ("bizStep", self.biz_step),
                           ("disposition", self.disposition)):
            if value is not None:
                out[key] = value
        if self.read_point is not None:
            out["readPoint"] = {"id": self.read_point}
        if self.biz_location is not None:
            out["bizLocation"] = {"id": self.biz_location}
        if self.biz_transactions:
            out["bizTransactionList"] = [
                {"type": t, "bizTransaction": b} if t is not None else {"bizTransaction": b}
                for t, b in self.biz_transactions]
        if self.sources:
            out["sourceList"] = [{"type": t, "source": s} for t, s in self.sources]
        if self.destinations:
            out["destinationList"] = [{"type": t, "destination": d}
                                      for t, d in self.destinations]
        if self.ilmd is not None:
            out["ilmd"] = self.ilmd
        if self.sensors:
            out["sensorElementList"] = list(self.sensors)
        out.update(self.extra)
        return out

    def inputs(self) -> list[str]:
        """Every object this event consumes (TransformationEvent) or observes."""
        return list(self.epcs) + [q.epc_class for q in self.quantities]

    def output_objects(self) -> list[str]:
        return list(self.outputs) + [q.epc_class for q in self.output_quantities]

    def holder(self) -> str | None:
        """Where the goods are held for this event: bizLocation, else the shipper's
        location (sourceList type location), else the readPoint."""
        if self.biz_location:
            return self.biz_location
        for kind, source in self.sources:
            if short(kind) == "location":
                return source
        return self.read_point

    def measurement(self) -> tuple[str, int, str, str | None] | None:
        """(deviceID, measured quantity in base units, base unit, rawData) of the first
        sensor report that measures Mass or Volume: the instrument a sale was weighed or
        dispensed on (DESIGN.md, Traceability)."""
        for element in self.sensors:
            meta = element.get("sensorMetadata", {})
            for report in element.get("sensorReport", ()):
                dim = MEASURE_DIMENSION.get(report.get("type", ""))
                if dim and "value" in report and meta.get("deviceID"):
                    factor = UOM[report["uom"]][1]
                    value = int((Decimal(str(report["value"])) * factor).to_integral_value())
                    return meta["deviceID"], value, BASE_UNIT[dim], meta.get("rawData")
        return None


def short(term: str | None) -> str | None:
    """A CBV term in any spelling (bare, URN, GS1 Web URI) → its bare name."""
    if term is None:
        return None
    found = _SHORT.get(term)  # every capture asks for the same few terms
    if found is None:
        found = _short(term)
        if len(_SHORT) < 4096:
            _SHORT[term] = found
    return found


_SHORT: dict[str, str] = {}


def _short(term: str) -> str:
    for sep in ("BizStep-", "Bizstep-", "Disp-", "SDT-", "BTT-"):
        if sep in term:
            return term.rsplit(sep, 1)[1]
    if term.startswith("urn:epcglobal:cbv:"):
        return term.rsplit(":", 1)[1]
    return term


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _quantities(items: Any, key: str) -> tuple[Quantity, ...]:
    out = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(item, dict) or "epcClass" not in item:
            raise DocumentError(where + ".epcClass", "missing")
        qty = item.get("quantity")
        uom = item.get("uom")
        if uom is not None and qty is None:
            raise DocumentError(where + ".quantity", "a uom needs a quantity")
        if uom is not None and uom not in UOM and not (isinstance(uom, str) and len(uom) == 3):
            raise DocumentError(where + ".uom", f"not a UN/ECE Rec 20 code: {uom!r}")
        if qty is not None and (isinstance(qty, bool) or not isinstance(qty, int | float)):
            raise DocumentError(where + ".quantity", "must be a number")
        if qty is not None and qty < 0:
            raise DocumentError(where + ".quantity", "must not be negative")
        out.append(Quantity(item["epcClass"], Decimal(str(qty)) if qty is not None else None,
                            uom))
    return tuple(out)


def _sensors(items: Any) -> tuple[dict[str, Any], ...]:
    for i, element in enumerate(items):
        for j, report in enumerate(element.get("sensorReport", ())):
            dim = MEASURE_DIMENSION.get(report.get("type", ""))
            if dim is None or "value" not in report:
                continue
            uom = report.get("uom")
            if UOM.get(uom, (None,))[0] != dim:
                raise DocumentError(f"sensorElementList[{i}].sensorReport[{j}].uom",
                                    f"{report['type']} needs a {dim} unit, got {uom!r}")
    return tuple(items)


def parse_time(text: Any, name: str) -> int:
    """ISO 8601 date-time with offset → UTC ms (fractions below 1 ms are cut)."""
    if not isinstance(text, str):
        raise DocumentError(name, "expected an ISO 8601 date-time string")
    stamp = text.replace("Z", "+00:00").replace("z", "+00:00")
    head, dot, tail = stamp.partition(".")
    if dot:  # Python accepts at most 6 fraction digits: trim, keep the offset
        digits = len(tail) - len(tail.lstrip("0123456789"))
        stamp = head + "." + tail[:min(digits, 6)].ljust(3, "0") + tail[digits:]
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise DocumentError(name, f"not an ISO 8601 date-time: {text!r}") from exc
    if moment.tzinfo is None:
        raise DocumentError(name, f"needs a time zone offset: {text!r}")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


@lru_cache(maxsize=64)
def _offset_s(tz: str) -> int:
    sign = -1 if tz.startswith("-") else 1
    hours, _, minutes = tz.lstrip("+-").partition(":")
    return sign * (int(hours) * 3600 + int(minutes or 0) * 60)


def format_time(ms: int, tz: str) -> str:
    """UTC ms → local ISO 8601 time at offset tz, millisecond precision (on every capture
    path, hence time.gmtime rather than datetime arithmetic)."""
    global _LAST_SECOND
    secs, milli = divmod(ms, 1000)
    last = _LAST_SECOND  # events come in time order: most share the previous one's second
    if last[0] != secs or last[1] != tz:
        # one tuple, replaced whole: safe across threads
        last = _LAST_SECOND = (secs, tz, time.strftime("%Y-%m-%dT%H:%M:%S",
                                                       time.gmtime(secs + _offset_s(tz))))
    return f"{last[2]}.{milli:03d}{tz}"


_LAST_SECOND: tuple[int | None, str | None, str] = (None, None, "")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
