"""Build the FastAPI app: the server's routes plus any APIRouter another area brings.

Invariant: one store per app, opened here and closed on shutdown; routers reach it only
through `deps.get_store`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from ..store import open_store
from . import routes


def create_app(store_url: str, token: str | None = None,
               routers: Sequence[APIRouter] = ()) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.store.close()

    # No Swagger UI / ReDoc: FastAPI loads them from a CDN, and a site may have no
    # internet. /openapi.json stays; `metrotrace server api` serves a local page at /docs.
    app = FastAPI(title="metrotrace", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="Trade measurements, instrument status, alerts and the "
                              "evidence behind them. Writes need `Authorization: Bearer`.")
    app.state.store = open_store(store_url)
    app.state.token = token
    app.include_router(routes.router)
    for router in routers:
        app.include_router(router)

    @app.get("/health", tags=["health"])
    def health() -> dict:
        return {"ok": True, "records": app.state.store.count("records")}

    return app
