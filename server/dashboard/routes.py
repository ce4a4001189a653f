"""The dashboard's routes: the page at `/`, its static files, and the JSON it draws from.

Invariant: read-only. Every route reaches the store through `api.deps.get_store` and
writes nothing (the trace tables are opened read-only); the page and its scripts are
served from this package, so the dashboard works without internet. Expensive answers
(fleet states, instrument charts) are cached until the store's record, reject or alert
count changes, or for `CACHE_S` seconds at most (overdue dates move with the clock).
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse

from metrotrace.server.metrology import MetrologyError, tables
from metrotrace.server.metrology.settings import Settings
from metrotrace.server.trace import CodeError
from metrotrace.server.trace import report as trace_report

from ..api.deps import get_store
from ..store.rows import Store
from . import evidence, recall, series, states

STATIC = Path(__file__).with_name("static")
MEDIA = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
         ".html": "text/html", ".txt": "text/plain"}
CACHE_S = 10.0
DOCS_FILES = ("apidocs.js", "charts.js", "ui.js", "style.css", "favicon.svg")
StoreDep = Annotated[Store, Depends(get_store)]


def now_ms() -> int:
    return int(time.time() * 1000)


class Cache:
    """Answers keyed by name, valid while the store's counts stay the same."""

    def __init__(self, max_age_s: float = CACHE_S) -> None:
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._items: dict[str, tuple[tuple, float, Any]] = {}

    def get(self, name: str, version: tuple, make: Callable[[], Any]) -> Any:
        with self._lock:  # one computation at a time: the kernels use every core anyway
            hit = self._items.get(name)
            if hit and hit[0] == version and time.monotonic() - hit[1] < self.max_age_s:
                return hit[2]
            value = make()
            self._items[name] = (version, time.monotonic(), value)
            if len(self._items) > 256:
                self._items.pop(next(iter(self._items)))
            return value


def pulse(store: Store) -> dict:
    return {"records": store.count("records"), "rejects": store.count("rejects"),
            "alerts": store.count("alerts"), "envelopes": store.count("envelopes"),
            "instruments": store.count("instruments"), "now": now_ms()}


def static_file(name: str, allowed: tuple[str, ...] | None = None) -> FileResponse:
    """A file of static/ (no subfolders, no dot files, known types only)."""
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file() \
            or path.suffix not in MEDIA or (allowed is not None and name not in allowed):
        raise HTTPException(404, f"name: no static file {name!r}")
    return FileResponse(path, media_type=MEDIA[path.suffix],
                        headers={"Cache-Control": "no-cache"})


def api_docs_router() -> APIRouter:
    """`/docs`: the HTTP API reference drawn from /openapi.json by a local page (FastAPI's
    Swagger UI loads from a CDN; create_app turns it off). Served with or without the
    dashboard."""
    router = APIRouter(include_in_schema=False)

    @router.get("/docs", response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        return HTMLResponse((STATIC / "api.html").read_text(encoding="utf-8"))

    @router.get("/docs/static/{name}")
    def docs_static(name: str) -> FileResponse:
        return static_file(name, DOCS_FILES)

    return router


def make_router(tables_dir: str | Path | None = None,
                settings: Settings | None = None) -> APIRouter:
    """The dashboard: include it in the API app (`create_app(..., routers=[...])`).
    `settings`: the drift settings the monitor of this store uses (metrology/settings.py;
    default the engine's), so that the page shows the states the alerts record."""
    router = APIRouter(include_in_schema=False)
    tabs = tables.load(tables_dir)
    settings = settings or Settings()
    cache = Cache()

    def version(store: Store) -> tuple:
        p = pulse(store)
        return (p["records"], p["rejects"], p["alerts"], p["instruments"])

    def computed(store: Store) -> states.Fleet:
        return cache.get("fleet", version(store),
                         lambda: states.fleet(store, now_ms(), tabs, settings))

    def fleet(store: Store) -> list[dict]:
        return computed(store).rows

    def by_id(store: Store) -> dict[str, dict]:
        return {r["instrument"]: r for r in fleet(store)}

    @router.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @router.get("/dashboard/static/{name}")
    def static(name: str) -> FileResponse:
        return static_file(name)

    @router.get("/dashboard/api/pulse")
    def api_pulse(store: StoreDep) -> dict:
        return pulse(store)

    @router.get("/dashboard/api/fleet")
    def api_fleet(store: StoreDep) -> dict:
        reg = store.registry()
        return {"now": now_ms(), "sites": [{"id": s.id, "name": s.name} for s in reg["sites"]],
                "instruments": fleet(store), "settings": settings.as_dict()}

    @router.get("/dashboard/api/instrument/{instrument}")
    def api_instrument(instrument: str, store: StoreDep) -> dict:
        row = next((i for i in store.registry()["instruments"] if i.id == instrument), None)
        if row is None:
            raise HTTPException(404, f"instrument: {instrument!r} is not registered")
        fleet_now = computed(store)  # outside the series' computation: the cache's lock
        state = {r["instrument"]: r for r in fleet_now.rows}[instrument]
        try:
            charts = cache.get("series:" + instrument, version(store),
                               lambda: series.series(fleet_now, row, tabs, store))
        except MetrologyError as exc:
            charts = {"checks": [], "zeros": [], "events": series.events(store, row),
                      "limits": {}, "error": str(exc)}
        if state["state"] == states.UNKNOWN and not charts.get("error"):
            charts["error"] = state["reasons"][0]
        alerts = [a for a in evidence.stored_alerts(store) if a["instrument"] == instrument]
        return {"instrument": state, "charts": charts, "alerts": alerts}

    @router.get("/dashboard/api/alerts")
    def api_alerts(store: StoreDep) -> dict:
        reg = {i.id: i for i in store.registry()["instruments"]}
        alarms = []
        for state in fleet(store):
            if state["state"] in ("ok", states.UNKNOWN):
                continue
            alarms.append(evidence.instrument_alarm(store, reg[state["instrument"]], state,
                                                    tabs))
        order = {"out_of_tolerance": 0, "drifting": 1, "overdue_verification": 2, "warning": 3}
        alarms.sort(key=lambda a: (order.get(a["state"], 9), a["instrument"]))
        return {"now": now_ms(), "alarms": alarms, "stored": evidence.stored_alerts(store)}

    @router.get("/dashboard/api/gateways")
    def api_gateways(store: StoreDep) -> dict:
        return {"now": now_ms(), "gateways": evidence.gateways(store, now_ms())}

    @router.get("/dashboard/api/lots")
    def api_lots(store: StoreDep) -> dict:
        with recall.trace_store(store) as ts:
            return {"lots": recall.lots(ts) if ts else [], "trace_tables": ts is not None}

    @router.get("/dashboard/api/recall")
    def api_recall(store: StoreDep, gtin: str | None = None, lot: str | None = None,
                   epc: str | None = None, format: str = "json") -> Any:  # noqa: A002
        try:
            urn = recall.lot_urn(gtin, lot, epc)
        except CodeError as exc:
            raise HTTPException(422, str(exc)) from None
        with recall.trace_store(store) as ts:
            if ts is None:
                raise HTTPException(404, "trace: this store holds no trace events yet")
            answer = recall.recall(ts, urn, by_id(store))
        if format == "csv":
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=trace_report.COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(answer["rows"])
            return PlainTextResponse(buf.getvalue(), media_type="text/csv", headers={
                "Content-Disposition": 'attachment; filename="recall.csv"'})
        if format != "json":
            raise HTTPException(422, "format: expected json or csv")
        return answer

    return router
