"""The dashboard: a page people would rather look at than read, served by the API server.

    routes.make_router()  -> APIRouter: `/` (the page), `/dashboard/static/*` (its scripts
                             and styles, all local), `/dashboard/api/*` (the JSON it draws)

Pages (one HTML file, hash routes): fleet overview by site with state colours and
verification due dates; an instrument's checks against its MPE band, CUSUM and EWMA
charts and predicted MPE-crossing date; alerts with their evidence; gateways and keys;
rejects; recall of a GTIN + lot as a graph and a table. The page polls
`/dashboard/api/pulse` and redraws when the store's counts change (live while a demo runs).

Modules: `states` (store -> metrology engine -> fleet states and reasons), `series` (one
instrument's charts, from the engine's own state), `evidence` (alerts with evidence,
gateways with keys and nodes), `recall` (GTIN + lot -> trace table and graph), `routes`.

Errors: none of its own. Bad input is refused with HTTP 422 naming the field (`gtin`,
`lot`, `epc`, `format`); an unknown instrument or a store without trace tables is a 404;
an instrument the MPE tables cannot cover is shown with state `unknown` and the reason
(metrology's InstrumentError text), not raised.
"""
