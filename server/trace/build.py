"""Event builders for the supply-chain steps metrotrace records.

Invariant: each method returns one valid EPCIS 2.0 `Event` (it passes GS1's schema when
written out) with CBV business steps, quantities in UN/ECE units, and — for sales and
dispenses — the instrument in sensorMetadata.deviceID, the measured quantity in a Mass or
Volume sensorReport and the node record (node, seq) as rawData (DESIGN.md, Traceability).
Event IDs are `urn:uuid:` values derived from a namespace and a counter, so a seeded
generator produces the same IDs every run.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from .epcis import Event, Quantity, format_time

RECORD_URI = "urn:metrotrace:record:{node}:{seq}"  # rawData: the node record measured


def record_uri(node: bytes | str, seq: int) -> str:
    return RECORD_URI.format(node=node.hex() if isinstance(node, bytes) else node, seq=seq)


def _qty(epc_class: str, base: int, dim: str) -> Quantity:
    # base units (mg, mL) → KGM / LTR, exactly
    if dim == "mass":
        return Quantity(epc_class, Decimal(base) / 1_000_000, "KGM")
    if dim == "volume":
        return Quantity(epc_class, Decimal(base) / 1000, "LTR")
    return Quantity(epc_class, Decimal(base), None)


class Builder:
    def __init__(self, namespace: str = "metrotrace", tz: str = "+00:00"):
        self.ns = uuid.uuid5(uuid.NAMESPACE_URL, namespace).int
        self.count = 0
        self.tz = tz

    def _id(self) -> str:
        self.count += 1
        return f"urn:uuid:{uuid.UUID(int=(self.ns + self.count) % (1 << 128))}"

    def _event(self, **kw) -> Event:
        return Event(event_id=self._id(), tz=self.tz, **kw)

    def commission(self, t: int, lot: str, base: int, dim: str, location: str,
                   ilmd: dict | None = None) -> Event:
        return self._event(type="ObjectEvent", time=t, action="ADD", biz_step="commissioning",
                           disposition="active", biz_location=location, read_point=location,
                           quantities=(_qty(lot, base, dim),), ilmd=ilmd)

    def move(self, t: int, step: str, location: str, lots: list[tuple[str, int, str]] = (),
             epcs: tuple[str, ...] = ()) -> Event:
        """shipping (from location) or receiving (at location) of lots and/or containers."""
        disposition = {"shipping": "in_transit", "receiving": "in_progress"}.get(step)
        return self._event(type="ObjectEvent", time=t, action="OBSERVE", biz_step=step,
                           disposition=disposition, biz_location=location,
                           read_point=location, epcs=tuple(epcs),
                           quantities=tuple(_qty(*lot) for lot in lots))

    def pack(self, t: int, container: str, lots: list[tuple[str, int, str]],
             location: str) -> Event:
        return self._event(type="AggregationEvent", time=t, action="ADD", biz_step="packing",
                           disposition="in_progress", parent_id=container,
                           biz_location=location, read_point=location,
                           quantities=tuple(_qty(*lot) for lot in lots))

    def unpack(self, t: int, container: str, location: str) -> Event:
        return self._event(type="AggregationEvent", time=t, action="DELETE",
                           biz_step="unpacking", parent_id=container, biz_location=location,
                           read_point=location)

    def transform(self, t: int, inputs: list[tuple[str, int, str]],
                  outputs: list[tuple[str, int, str]], location: str,
                  step: str = "commissioning") -> Event:
        """Blending: deliveries into a tank mix the tank's content with the delivery."""
        return self._event(type="TransformationEvent", time=t, biz_step=step,
                           biz_location=location, read_point=location,
                           quantities=tuple(_qty(*i) for i in inputs),
                           output_quantities=tuple(_qty(*o) for o in outputs))

    def sell(self, t: int, lot: str, base: int, dim: str, location: str, instrument: str,
             node: bytes | str, seq: int, step: str = "retail_selling") -> Event:
        """A sale (scale) or dispense (fuel): the instrument and its measured quantity."""
        kind, uom, factor = ("Mass", "KGM", 1_000_000) if dim == "mass" else (
            "Volume", "LTR", 1000)
        value = Decimal(base) / factor
        sensor = {"sensorMetadata": {"time": format_time(t, self.tz), "deviceID": instrument,
                                     "rawData": record_uri(node, seq)},
                  "sensorReport": [{"type": kind, "value": float(value), "uom": uom}]}
        return self._event(type="ObjectEvent", time=t, action="OBSERVE", biz_step=step,
                           disposition="retail_sold" if step == "retail_selling" else None,
                           biz_location=location, read_point=location,
                           quantities=(_qty(lot, base, dim),), sensors=(sensor,))

    def count_stock(self, t: int, lot: str, base: int, dim: str, location: str) -> Event:
        return self._event(type="ObjectEvent", time=t, action="OBSERVE",
                           biz_step="stock_taking", biz_location=location,
                           read_point=location, quantities=(_qty(lot, base, dim),))
