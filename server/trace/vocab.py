"""CBV business steps as traces read them, and base units by dimension."""

from __future__ import annotations

SALE_STEPS = ("retail_selling", "dispensing")
RECEIVE_STEPS = ("receiving", "commissioning", "accepting", "arriving")
SHIP_STEPS = ("shipping", "departing")
COUNT_STEPS = ("stock_taking", "cycle_counting")
UNITS = {"mass": "mg", "volume": "mL", "count": "count"}


def unit_of(dim: str | None) -> str | None:
    return UNITS.get(dim or "")
