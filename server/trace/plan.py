"""Capture planning: events + what the store already knows → the rows to insert.

Invariant: pure (no I/O). Either every event passes — known objects where an event
consumes or observes them (unless the caller allows unknown ones), one dimension (mass,
volume or count) per lot — and the plan holds every row, or DocumentError names the first
event and field at fault and nothing is planned. Genealogy edges point the way material
flows: transformation input → output, packed child → container (a container never leads
back to its other children, so a mixed pallet does not mix its lots).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import DocumentError
from .epcis import Event, Quantity, short

_QTY_KEY = {"ObjectEvent": "quantityList", "TransactionEvent": "quantityList",
            "AggregationEvent": "childQuantityList", "AssociationEvent": "childQuantityList",
            "TransformationEvent": "inputQuantityList"}
_EPC_KEY = {"ObjectEvent": "epcList", "TransactionEvent": "epcList",
            "AggregationEvent": "childEPCs", "AssociationEvent": "childEPCs",
            "TransformationEvent": "inputEPCList"}


# one encoder for every stored document: compact, no cycle check (to_json builds trees)
_ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False,
                           ensure_ascii=False).encode


@dataclass
class NodeInfo:
    id: int
    dim: str | None
    origin: int | None  # event row that created the object; None if only referenced


@dataclass
class CapturePlan:
    event_ids: list[int] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)
    new_nodes: list[tuple] = field(default_factory=list)
    node_updates: list[tuple] = field(default_factory=list)
    touches: list[tuple] = field(default_factory=list)
    edges: list[tuple] = field(default_factory=list)
    packed: list[tuple] = field(default_factory=list)
    unpacked: list[tuple] = field(default_factory=list)
    emptied: list[int] = field(default_factory=list)
    node_info: dict[str, NodeInfo] = field(default_factory=dict)


class _Planner:
    def __init__(self, nodes: dict[str, NodeInfo], contents: dict, next_node: int,
                 next_edge: int, require_known: bool):
        self.nodes = nodes
        self.contents = contents
        self.next_node = next_node
        self.next_edge = next_edge
        self.require_known = require_known
        self.plan = CapturePlan()
        self._new: dict[str, NodeInfo] = {}
        self._updates: dict[int, NodeInfo] = {}

    def node(self, urn: str, field_name: str, creates: bool, event_row: int) -> NodeInfo:
        info = self._new.get(urn) or self.nodes.get(urn)
        if info is None:
            if not creates and self.require_known:
                raise DocumentError(field_name, f"unknown lot or object {urn!r}: no event "
                                    "commissioned, produced or packed it")
            info = NodeInfo(self.next_node, None, event_row if creates else None)
            self.next_node += 1
            self._new[urn] = info
        elif creates and info.origin is None:
            info.origin = event_row
            self._updates[info.id] = info
        elif not creates and info.origin is None and self.require_known:
            raise DocumentError(field_name, f"unknown lot or object {urn!r}: referenced "
                                "before, never commissioned, produced or packed")
        return info

    def quantity(self, q: Quantity, where: str, creates: bool, event_row: int,
                 role: str, via: int | None = None) -> NodeInfo:
        info = self.node(q.epc_class, where + ".epcClass", creates, event_row)
        dim = q.dimension()
        if dim is not None:
            if info.dim is None:
                info.dim = dim
                if q.epc_class not in self._new:  # a stored node: its row needs the dim
                    self._updates[info.id] = info
            elif info.dim != dim:
                raise DocumentError(where + ".uom", f"{q.epc_class} is counted in "
                                    f"{info.dim}, this quantity ({q.uom}) is {dim}")
        self.plan.touches.append((info.id, event_row, role, q.base(), dim, via))
        return info

    def finish(self) -> CapturePlan:
        for urn, info in self._new.items():
            self.plan.new_nodes.append((info.id, urn, info.dim, info.origin))
            self.plan.node_info[urn] = info
        for info in self._updates.values():
            self.plan.node_updates.append((info.id, info.dim, info.origin))
        self.plan.node_info.update(
            {u: i for u, i in self.nodes.items() if i.id in self._updates})
        return self.plan


def plan_capture(events: list[Event], nodes: dict[str, NodeInfo], contents: dict,
                 next_event: int, next_node: int, next_edge: int, record_time: int,
                 require_known: bool = True, indexes: list[int] | None = None) -> CapturePlan:
    """Plan the rows for `events`; DocumentError carries the event's index."""
    planner = _Planner(nodes, {k: list(v) for k, v in contents.items()}, next_node,
                       next_edge, require_known)
    for n, event in enumerate(events):
        row = next_event + n
        try:
            _plan_event(planner, event, row, record_time)
        except DocumentError as exc:
            raise exc.at_event(indexes[n] if indexes else n) from exc
        planner.plan.event_ids.append(row)
    return planner.finish()


def _plan_event(p: _Planner, event: Event, row: int, record_time: int) -> None:
    measured = event.measurement()
    instrument, value, unit, raw = measured if measured else (None, None, None, None)
    p.plan.events.append((row, event.event_id, event.type, event.time, record_time,
                          short(event.biz_step), short(event.disposition), event.holder(),
                          event.read_point, instrument, value, unit, raw,
                          _ENCODE(event.to_json())))
    kind = event.type
    if kind == "TransformationEvent":
        inputs = [p.node(u, f"inputEPCList[{i}]", False, row) for i, u in enumerate(event.epcs)]
        inputs += [p.quantity(q, f"inputQuantityList[{i}]", False, row, "in")
                   for i, q in enumerate(event.quantities)]
        outputs = [p.node(u, f"outputEPCList[{i}]", True, row)
                   for i, u in enumerate(event.outputs)]
        outputs += [p.quantity(q, f"outputQuantityList[{i}]", True, row, "out")
                    for i, q in enumerate(event.output_quantities)]
        p.plan.touches += [(n.id, row, "in", None, None, None) for n in inputs[:len(event.epcs)]]
        p.plan.touches += [(n.id, row, "out", None, None, None)
                           for n in outputs[:len(event.outputs)]]
        for src in inputs:
            for dst in outputs:
                p.plan.edges.append((p.next_edge, src.id, dst.id, row))
                p.next_edge += 1
        return
    creates = kind == "ObjectEvent" and event.action == "ADD"
    if kind == "AssociationEvent":  # sensors and assets, not goods: no checks, no flow
        creates = True
    epc_key, qty_key = _EPC_KEY[kind], _QTY_KEY[kind]
    role = "child" if kind in ("AggregationEvent", "AssociationEvent") else "obs"
    items = []
    for i, urn in enumerate(event.epcs):
        info = p.node(urn, f"{epc_key}[{i}]", creates, row)
        p.plan.touches.append((info.id, row, role, None, None, None))
        items.append((info, None, None))
    for i, q in enumerate(event.quantities):
        info = p.quantity(q, f"{qty_key}[{i}]", creates, row, role)
        items.append((info, q.base(), q.dimension()))
    if event.parent_id is None:
        if role == "obs":
            _expand_containers(p, [i[0] for i in items], row)
        return
    parent_creates = creates or (kind == "AggregationEvent" and event.action == "ADD")
    parent = p.node(event.parent_id, "parentID", parent_creates, row)
    p.plan.touches.append((parent.id, row, "parent", None, None, None))
    if role == "obs":  # a TransactionEvent or ObjectEvent about a container's contents
        _expand_containers(p, [parent], row)
    if kind != "AggregationEvent":
        return
    if event.action in ("ADD", "OBSERVE"):
        held = p.contents.setdefault(parent.id, [])
        for info, qty, dim in items:
            p.plan.edges.append((p.next_edge, info.id, parent.id, row))
            p.next_edge += 1
            if event.action == "ADD":
                held.append((info.id, qty, dim))
                p.plan.packed.append((parent.id, info.id, qty, dim))
    elif items:
        removed = {info.id for info, _, _ in items}
        p.contents[parent.id] = [c for c in p.contents.get(parent.id, [])
                                 if c[0] not in removed]
        p.plan.unpacked += [(parent.id, node_id) for node_id in removed]
        p.plan.packed = [r for r in p.plan.packed if r[0] != parent.id or r[1] not in removed]
    else:
        p.contents[parent.id] = []
        p.plan.emptied.append(parent.id)
        p.plan.packed = [r for r in p.plan.packed if r[0] != parent.id]


def _expand_containers(p: _Planner, infos: list[NodeInfo], row: int) -> None:
    # Receiving or shipping a pallet moves what is on it: one row per contained lot, so a
    # holder's lot balance and a lot's holders are read without walking containers.
    for info in infos:
        for node_id, qty, dim in p.contents.get(info.id, ()):
            p.plan.touches.append((node_id, row, "obs", qty, dim, info.id))
