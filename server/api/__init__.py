"""HTTP API (FastAPI, OpenAPI at /docs and /openapi.json): registry, readings, alerts, rejects.

`app.create_app(store_url, token, routers=[...])` builds the app; other areas add their
routes with an `APIRouter` (the store is `Depends(get_store)`). Write endpoints need
`Authorization: Bearer <token>`; reads are open to whoever reaches the port.
"""
