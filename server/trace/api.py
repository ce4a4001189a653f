"""HTTP: EPCIS 2.0 capture and event query, trace, recall and mass balance endpoints.

Invariant: the router holds no connection of its own; `make_router(stores)` borrows a
TraceStore per request with `with stores() as store:` (`StorePool(url)` for a server,
`shared(store)` for one connection in tests). Capture is all-or-nothing
(GS1-Capture-Error-Behaviour `rollback`, the EPCIS 2.0 default): a refused document
stores nothing and the 400 answer names the event index and field. Write endpoints carry
the `write_dependencies` the server app gives (its API-token check).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from fastapi import APIRouter, Body, Header, HTTPException, Query, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from . import DocumentError
from . import report as recall_report
from .balance import mass_balance
from .epcis import parse_time
from .jsonld import extension_context, read_document, write_document
from .query import TableTolerance, Tracer
from .store import TraceStore, connect

Stores = Callable[[], AbstractContextManager[TraceStore]]
CAPTURE_LIMIT = 10_000  # events per capture request (GS1-EPCIS-Capture-Limit)


def _refused(exc: DocumentError) -> JSONResponse:
    return JSONResponse(status_code=400, content={
        "type": "epcisException:ValidationException", "title": "Document refused",
        "status": 400, "detail": str(exc), "event": exc.event, "field": exc.field})


class StorePool:
    """TraceStores on the database at `url`, one per concurrent request: FastAPI runs sync
    handlers in a thread pool, and a connection serves one request at a time. A store goes
    back idle with its read transaction ended, so PostgreSQL never holds a stale snapshot."""

    def __init__(self, url: str):
        self.url = url
        self._idle: list[TraceStore] = []
        self._lock = threading.Lock()
        with self.store() as store:  # create or migrate the trace tables once, up front
            store.migrate()

    @contextmanager
    def store(self) -> Iterator[TraceStore]:
        with self._lock:
            store = self._idle.pop() if self._idle else None
        if store is None:
            store = TraceStore(connect(self.url))
        try:
            yield store
        finally:
            store.end_read()
            with self._lock:
                self._idle.append(store)

    __call__ = store

    def close(self) -> None:
        with self._lock:
            for store in self._idle:
                store.conn.close()
            self._idle.clear()


def shared(store: TraceStore) -> Stores:
    """One store for every request (tests; a single-threaded caller)."""
    return lambda: nullcontext(store)


def make_router(stores: Stores, method: str = "index",
                write_dependencies: Sequence[Any] = ()) -> APIRouter:
    """`method` "index" keeps one in-memory TraceIndex for the router's lifetime (it
    catches up with new edges on each trace); "cte" keeps nothing."""
    router = APIRouter(tags=["trace"])
    index = None
    if method == "index":
        from .index import TraceIndex  # numba: loaded where the index is used

        index = TraceIndex()

    def tracer(store: TraceStore, oracle: TableTolerance | None = None) -> Tracer:
        return Tracer(store, oracle, method, index)

    @router.post("/epcis/capture", status_code=201, dependencies=list(write_dependencies))
    def capture(document: dict[str, Any] = Body(...),  # noqa: B008 (FastAPI idiom)
                error_behaviour: str = Header("rollback",
                                              alias="GS1-Capture-Error-Behaviour"),
                allow_unknown: bool = Query(False, description="accept objects never "
                                            "commissioned here (foreign documents)")
                ) -> Any:
        if error_behaviour != "rollback":
            raise HTTPException(501, "only GS1-Capture-Error-Behaviour: rollback is offered")
        try:
            events = read_document(document)
            if len(events) > CAPTURE_LIMIT:
                raise DocumentError("epcisBody.eventList", f"more than {CAPTURE_LIMIT} events")
            with stores() as store:
                ids = store.capture(events, int(time.time() * 1000),
                                    require_known=not allow_unknown,
                                    context=extension_context(document))
        except DocumentError as exc:
            return _refused(exc)
        return {"captured": len(ids), "eventIDs": [e.event_id for e in events]}

    @router.get("/epcis/events")
    def events(MATCH_anyEPC: str | None = None, MATCH_anyEPCClass: str | None = None,  # noqa: N803
               GE_eventTime: str | None = None, LT_eventTime: str | None = None,  # noqa: N803
               EQ_bizStep: str | None = None, EQ_bizLocation: str | None = None,  # noqa: N803
               perPage: int = 1000) -> Any:  # noqa: N803
        where: list[str] = []
        params: list[Any] = []
        for urns in (MATCH_anyEPC, MATCH_anyEPCClass):
            if urns:  # a list of values is separated by '|' (EPCIS 2.0 REST) or ','
                found = [u.strip() for u in urns.replace("|", ",").split(",") if u.strip()]
                found = found or [urns]
                # only the event's own what-lists, not a pallet's contents expanded (via)
                where.append("id IN (SELECT t.event FROM trace_touch t JOIN trace_node n"
                             " ON n.id = t.node WHERE t.via IS NULL AND n.urn IN ("
                             + ", ".join("?" * len(found)) + "))")
                params += found
        try:
            if GE_eventTime:
                where.append("time >= ?")
                params.append(parse_time(GE_eventTime, "GE_eventTime"))
            if LT_eventTime:
                where.append("time < ?")
                params.append(parse_time(LT_eventTime, "LT_eventTime"))
        except DocumentError as exc:
            return _refused(exc)
        if EQ_bizStep:
            where.append("biz_step = ?")
            params.append(EQ_bizStep.rsplit("-", 1)[-1].rsplit(":", 1)[-1])
        if EQ_bizLocation:
            where.append("location = ?")
            params.append(EQ_bizLocation)
        with stores() as store:
            found = store.events(" AND ".join(where), params,
                                 limit=max(1, min(perPage, 10_000)))
            context = store.context()
        doc = write_document([e for e, _ in found], context, [rt for _, rt in found])
        doc["type"] = "EPCISQueryDocument"
        doc["epcisBody"] = {"queryResults": {"queryName": "SimpleEventQuery",
                                             "resultsBody": doc["epcisBody"]}}
        return doc

    @router.get("/trace/forward")
    def forward(epc: str) -> Any:
        with stores() as store:
            return tracer(store, TableTolerance(store)).forward(epc).to_json()

    @router.get("/trace/backward")
    def backward(start: str) -> Any:
        with stores() as store:
            return tracer(store).backward(start).to_json()

    @router.get("/trace/recall")
    def recall(lot: str, format: str = "json") -> Response:  # noqa: A002 (query name)
        with stores() as store:
            trace = tracer(store, TableTolerance(store)).forward(lot)
        if format == "csv":
            return PlainTextResponse(recall_report.to_csv(trace), media_type="text/csv")
        if format == "html":
            return HTMLResponse(recall_report.to_html(trace))
        if format != "json":
            raise HTTPException(400, "format: expected json, csv or html")
        return Response(recall_report.to_json(trace), media_type="application/json")

    @router.get("/trace/balance")
    def balance(holder: str | None = None, lot: str | None = None) -> Any:
        with stores() as store:
            return mass_balance(store, holder, lot)

    return router
