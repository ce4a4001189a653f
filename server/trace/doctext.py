"""The stored JSON text of an event, written without building `Event.to_json()`'s dict.

Invariant: `doc_text(e) == ENCODE(e.to_json())` for every event, byte for byte (compact
separators, non-ASCII kept): the same keys in the same order, strings escaped by json's own
C function, numbers as `json` writes them. Free-form parts (ILMD, sensor elements, user
extensions) go through the C encoder unchanged. Capture writes one document per event, and
building then encoding a dict cost about as much as everything else the plan does
(tests/test_doctext.py holds the two writers equal on generated and GS1 example events).
"""

from __future__ import annotations

import json
from json.encoder import c_make_encoder
from json.encoder import encode_basestring as _quoted  # the C function: escapes and quotes
from typing import Any

from .epcis import _EPC_KEY, _QTY_KEY, Event, Quantity, _number, format_time

# one encoder for every stored document: compact, no cycle check (to_json builds trees)
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False, ensure_ascii=False)
ENCODE = _ENCODER.encode


def _c_encoder() -> Any:
    # json builds a new C encoder on every call; this one is built once, with the same
    # arguments json.encoder passes it (None where the C module is missing)
    try:
        return c_make_encoder(None, _ENCODER.default, _quoted, None, ":", ",", False, False,
                              True)
    except TypeError:  # another Python's signature: json's own path
        return None


_C_ENCODE = _c_encoder() if c_make_encoder is not None else None


def _encode(value: Any) -> str:
    if _C_ENCODE is None or isinstance(value, str):
        return ENCODE(value)
    chunks = _C_ENCODE(value, 0)
    return chunks if isinstance(chunks, str) else "".join(chunks)


_SPECIAL = ("nan", "inf", "-inf")


_CACHE: dict[str, str] = {}


def _known(text: str) -> str:
    """`_quoted` for strings that recur from event to event (places, lots, devices, CBV
    words): escaping scans every character, a dictionary hit does not."""
    found = _CACHE.get(text)
    if found is None:
        if len(_CACHE) > 50_000:  # bounded: a long capture names ever new lots
            _CACHE.clear()
        found = _CACHE[text] = _quoted(text)
    return found


def _quantity(q: Quantity) -> str:
    text = '{"epcClass":' + _known(q.epc_class)
    if q.quantity is not None:
        value = _number(q.quantity)
        text += ',"quantity":' + (_float(value) if isinstance(value, float) else str(value))
    if q.uom is not None:
        text += ',"uom":' + _known(q.uom)
    return text + "}"


def _float(value: float) -> str:
    text = repr(value)
    return text if text not in _SPECIAL else _encode(value)  # NaN / Infinity as json has them


def _quantities(items: tuple[Quantity, ...]) -> str:
    return "[" + ",".join([_quantity(q) for q in items]) + "]"


def _strings(items: tuple[str, ...]) -> str:
    return "[" + ",".join([_known(s) for s in items]) + "]"


def _id(value: str) -> str:
    return '{"id":' + _known(value) + "}"


def doc_text(e: Event) -> str:
    try:
        return _written(e)
    except TypeError:  # a value json would write its own way (an EPC that is no string)
        return ENCODE(e.to_json())


def _written(e: Event) -> str:
    kind = e.type
    parts: list[Any] = ['{"type":', _known(kind)]
    add = parts.append
    if e.event_id is not None:
        add(',"eventID":')
        add(_quoted(e.event_id))
    add(',"eventTime":')
    add(_quoted(format_time(e.time, e.tz)))
    add(',"eventTimeZoneOffset":')
    add(_known(e.tz))
    if e.parent_id is not None:
        add(',"parentID":')
        add(_known(e.parent_id))
    if e.epcs:
        add(',"' + _EPC_KEY[kind] + '":')
        add(_strings(e.epcs))
    if e.quantities:
        add(',"' + _QTY_KEY[kind] + '":')
        add(_quantities(e.quantities))
    if e.outputs:
        add(',"outputEPCList":')
        add(_strings(e.outputs))
    if e.output_quantities:
        add(',"outputQuantityList":')
        add(_quantities(e.output_quantities))
    if e.transformation_id is not None:
        add(',"transformationID":')
        add(_known(e.transformation_id))
    if e.action is not None:
        add(',"action":')
        add(_known(e.action))
    if e.biz_step is not None:
        add(',"bizStep":')
        add(_known(e.biz_step))
    if e.disposition is not None:
        add(',"disposition":')
        add(_known(e.disposition))
    if e.read_point is not None:
        add(',"readPoint":')
        add(_id(e.read_point))
    if e.biz_location is not None:
        add(',"bizLocation":')
        add(_id(e.biz_location))
    if e.biz_transactions:
        add(',"bizTransactionList":')
        add(_encode([{"type": t, "bizTransaction": b} if t is not None else
                    {"bizTransaction": b} for t, b in e.biz_transactions]))
    if e.sources:
        add(',"sourceList":')
        add(_encode([{"type": t, "source": s} for t, s in e.sources]))
    if e.destinations:
        add(',"destinationList":')
        add(_encode([{"type": t, "destination": d} for t, d in e.destinations]))
    if e.ilmd is not None:
        add(',"ilmd":')
        add(_encode(e.ilmd))
    if e.sensors:
        add(',"sensorElementList":')
        add(_encode(e.sensors))
    for key, value in e.extra.items():
        if not isinstance(key, str):  # json turns such keys into strings its own way
            return ENCODE(e.to_json())
        add("," + _quoted(key) + ":")
        add(_encode(value))
    add("}")
    return "".join(parts)
