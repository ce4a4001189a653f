"""Capture planning: events + what the store already knows → the rows to insert.

Invariant: pure (no I/O). Either every event passes — known objects where an event
consumes or observes them (unless the caller allows unknown ones), one dimension (mass,
volume or count) per lot — and the plan holds every row, or DocumentError names the first
event and field at fault and nothing is planned. Genealogy edges point the way material
flows: transformation input → output, packed child → container (a container never leads
back to its other children, so a mixed pallet does not mix its lots).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import DocumentError
from .doctext import doc_text
from .epcis import Event, Quantity, short

_QTY_KEY = {"ObjectEvent": "quantityList", "TransactionEvent": "quantityList",
            "AggregationEvent": "childQuantityList", "AssociationEvent": "childQuantityList",
            "TransformationEvent": "inputQuantityList"}
_EPC_KEY = {"ObjectEvent": "epcList", "TransactionEvent": "epcList",
            "AggregationEvent": "childEPCs", "AssociationEvent": "childEPCs",
            "TransformationEvent": "inputEPCList"}


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
        self.touches = self.plan.touches  # appended to for every object an event names
        self._new: dict[str, NodeInfo] = {}
        self._updates: dict[int, NodeInfo] = {}

    def node(self, urn: str, key: str, i: int | None, creates: bool, event_row: int,
             suffix: str = "") -> NodeInfo:
        # the field name (`key[i]suffix`) is spelled only when an error needs it
        info = self._new.get(urn) or self.nodes.get(urn)
        if info is None:
            if not creates and self.require_known:
                raise DocumentError(_field(key, i, suffix), f"unknown lot or object {urn!r}: no "
                                    "event commissioned, produced or packed it")
            info = NodeInfo(self.next_node, None, event_row if creates else None)
            self.next_node += 1
            self._new[urn] = info
        elif info.origin is None:
            if creates:
                info.origin = event_row
                self._updates[info.id] = info
            elif self.require_known:
                raise DocumentError(_field(key, i, suffix), f"unknown lot or object {urn!r}: "
                                    "referenced before, never commissioned, produced or packed")
        return info

    def quantity(self, q: Quantity, key: str, i: int, creates: bool, event_row: int,
                 role: str, via: int | None = None) -> NodeInfo:
        info = self.node(q.epc_class, key, i, creates, event_row, ".epcClass")
        dim = q.dimension()
        if dim is not None:
            if info.dim is None:
                info.dim = dim
                if q.epc_class not in self._new:  # a stored node: its row needs the dim
                    self._updates[info.id] = info
            elif info.dim != dim:
                raise DocumentError(f"{key}[{i}].uom", f"{q.epc_class} is counted in "
                                    f"{info.dim}, this quantity ({q.uom}) is {dim}")
        self.touches.append((info.id, event_row, role, q.base(), dim, via))
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


def _field(key: str, i: int | None, suffix: str) -> str:
    return key if i is None else f"{key}[{i}]{suffix}"


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


_NO_MEASUREMENT = (None, None, None, None)


def _plan_event(p: _Planner, event: Event, row: int, record_time: int) -> None:
    measured = (event.measurement() if event.sensors else None) or _NO_MEASUREMENT
    p.plan.events.append((row, event.event_id, event.type, event.time, record_time,
                          short(event.biz_step), short(event.disposition), event.holder(),
                          event.read_point, *measured, doc_text(event)))
    kind = event.type
    touches = p.touches
    if kind == "TransformationEvent":
        inputs = [p.node(u, "inputEPCList", i, False, row) for i, u in enumerate(event.epcs)]
        inputs += [p.quantity(q, "inputQuantityList", i, False, row, "in")
                   for i, q in enumerate(event.quantities)]
        outputs = [p.node(u, "outputEPCList", i, True, row)
                   for i, u in enumerate(event.outputs)]
        outputs += [p.quantity(q, "outputQuantityList", i, True, row, "out")
                    for i, q in enumerate(event.output_quantities)]
        touches += [(n.id, row, "in", None, None, None) for n in inputs[:len(event.epcs)]]
        touches += [(n.id, row, "out", None, None, None) for n in outputs[:len(event.outputs)]]
        for src in inputs:
            for dst in outputs:
                p.plan.edges.append((p.next_edge, src.id, dst.id, row))
                p.next_edge += 1
        return
    creates = kind == "AssociationEvent" or (kind == "ObjectEvent" and event.action == "ADD")
    # AssociationEvent: sensors and assets, not goods: no checks, no flow
    role = "child" if kind in ("AggregationEvent", "AssociationEvent") else "obs"
    items = []
    if event.epcs:
        epc_key = _EPC_KEY[kind]
        for i, urn in enumerate(event.epcs):
            info = p.node(urn, epc_key, i, creates, row)
            touches.append((info.id, row, role, None, None, None))
            items.append((info, None, None))
    if event.quantities:
        qty_key = _QTY_KEY[kind]
        for i, q in enumerate(event.quantities):
            info = p.quantity(q, qty_key, i, creates, row, role)
            touch = touches[-1]  # the row quantity() added: (node, event, role, qty, dim, via)
            items.append((info, touch[3], touch[4]))
    if event.parent_id is None:
        if role == "obs" and p.contents:
            _expand_containers(p, [i[0] for i in items], row)
        return
    parent_creates = creates or (kind == "AggregationEvent" and event.action == "ADD")
    parent = p.node(event.parent_id, "parentID", None, parent_creates, row)
    touches.append((parent.id, row, "parent", None, None, None))
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
