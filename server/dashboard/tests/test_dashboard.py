"""The dashboard in headless Chromium against the real API server over a seeded store.

Each test opens a page, waits until the view says it is drawn (`#view[data-ready]`),
checks what a user would look for, and saves a screenshot (see conftest.shots).
"""

from __future__ import annotations

import re
import time

import pytest

from metrotrace.firmware.metro.wire import record
from metrotrace.server.dashboard.sample import GTIN_HAM, LOT_RECALLED, send
from metrotrace.server.ingest.core import Ingest
from metrotrace.server.store import open_store

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser, server):
    base, _ = server
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error"
            else None)
    page.on("request", lambda r: None if r.url.startswith((base, "data:")) else
            outside.append(r.url))
    page.problems, page.outside = problems, outside
    yield page
    context.close()
    assert not problems, problems
    assert not outside, f"the page fetched something not served by metrotrace: {outside}"


def open_view(page, url: str) -> None:
    page.evaluate("document.getElementById('view')?.removeAttribute('data-ready')") \
        if page.url.startswith("http") else None
    page.goto(url)
    page.wait_for_selector("#view[data-ready]", timeout=20_000)


def test_overview_flags_the_drifting_and_the_tampered_scale(page, server, shots):
    base, truth = server
    open_view(page, base + "/")
    state = {el.get_attribute("data-instrument"): el.get_attribute("data-state")
             for el in page.query_selector_all("a.inst")}
    assert state[truth.drifting] == "drifting"
    assert state[truth.tampered] == "out_of_tolerance"
    assert state[truth.overdue] == "overdue_verification"
    for ident in truth.in_tolerance:
        assert state[ident] not in ("drifting", "out_of_tolerance"), ident
    flagged = [el.get_attribute("data-flagged") for el in page.query_selector_all("[data-flagged]")]
    assert flagged[:2] == [truth.tampered, truth.drifting]  # most serious first
    card = page.inner_text(f"a.inst[data-instrument='{truth.tampered}']")
    assert "out of tolerance" in card and "outside the in-service MPE" in card
    assert "verification due" in card
    assert page.is_visible("#live.on")
    shots(page, "overview")


def test_instrument_page_draws_the_mpe_band_and_the_drift_charts(page, server, shots):
    base, truth = server
    open_view(page, f"{base}/#/instrument/{truth.drifting}")
    for name in ("mpe", "cusum", "ewma"):
        assert page.query_selector(f"[data-chart='{name}'] svg.chart"), name
    assert page.query_selector_all("[data-chart='mpe'] polygon.band")
    assert page.query_selector_all("[data-chart='cusum'] circle.sig")  # drift signals drawn
    facts = page.inner_text(".facts")
    assert re.search(r"predicted MPE crossing\s+\d{4}-\d\d-\d\d", facts), facts
    assert "drift confirmed" in page.inner_text("[data-reasons]")
    shots(page, "instrument-drifting")
    open_view(page, f"{base}/#/instrument/{truth.tampered}")
    assert "cal_change" in page.inner_text("body")  # the audit trail shows why
    assert page.query_selector_all("[data-chart='mpe'] circle.pt.out")
    shots(page, "instrument-tampered")


def test_recall_page_lists_every_sale_of_the_recalled_lot(page, server, shots):
    base, truth = server
    open_view(page, base + "/#/recall")
    page.fill("input[name=gtin]", GTIN_HAM)
    page.fill("input[name=lot]", LOT_RECALLED)
    page.evaluate("document.getElementById('view').removeAttribute('data-ready')")
    page.click("button[type=submit]")
    page.wait_for_selector("#view[data-ready] [data-sales]", timeout=20_000)
    rows = page.query_selector_all("[data-sales] tbody tr")
    assert len(rows) == len(truth.sales_recalled)
    sold_on = sorted(row.query_selector_all("td")[2].inner_text() for row in rows)
    assert sold_on == sorted(inst for inst, _ in truth.sales_recalled)
    graph = page.inner_text("[data-graph]")
    for inst in {inst for inst, _ in truth.sales_recalled}:
        assert inst in graph
    # sales measured after an instrument's first alarm are marked; only flagged ones
    flagged = {r.query_selector_all("td")[2].inner_text()
               for r in page.query_selector_all("[data-sales] tr.bad")}
    assert truth.tampered in flagged and flagged <= {truth.tampered, truth.drifting}
    shots(page, "recall")


def test_alerts_gateways_and_rejects_show_their_evidence(page, server, shots):
    base, truth = server
    open_view(page, base + "/#/alerts")
    forgery = page.query_selector("[data-stored-alert='forgery']")
    assert forgery and "stored first" in forgery.inner_text()
    assert forgery.query_selector_all("tr.diff")  # the fields that differ are marked
    assert truth.tampered in page.inner_text(f"[data-alarm='{truth.tampered}']")
    shots(page, "alerts")
    open_view(page, base + "/#/gateways")
    text = page.inner_text("[data-gateway='market-1']")
    assert "revoked" in text and "active" in text
    shots(page, "gateways")
    open_view(page, base + "/#/rejects")
    reasons = {el.get_attribute("data-reason") for el in page.query_selector_all("[data-reason]")}
    assert {"forgery", "bad_tag", "unknown_key", "malformed"} <= reasons
    shots(page, "rejects")


def test_the_footers_api_link_opens_local_docs_with_no_outside_request(page, server, shots):
    """FastAPI's /docs loads Swagger UI from a CDN; ours draws /openapi.json itself (the
    page fixture fails the test on any request not served by metrotrace)."""
    base, _ = server
    open_view(page, base + "/")
    page.click("footer a[href='/docs']")
    page.wait_for_selector("#view[data-ready='docs']", timeout=20_000)
    assert page.query_selector("[data-op='GET /rejects']")
    assert page.query_selector("#schema-HTTPValidationError")
    shots(page, "api-docs")


def test_overview_updates_live_when_records_arrive(page, server, seeded_store):
    """Last: it changes the shared store. New checks push M-SCALE-04 out of tolerance."""
    base, truth = server
    data, _ = seeded_store
    open_view(page, base + "/")
    card = "a.inst[data-instrument='M-SCALE-04']"
    assert page.get_attribute(card, "data-state") != "out_of_tolerance"
    store = open_store(f"sqlite:///{data / 'metrotrace.sqlite3'}")
    try:
        node, t = truth.scales[3], int(time.time() * 1000) - 60_000
        checks = [node.make(record.CHECK, t + k, indication=10_200, reference=10_000, e=5,
                            unit="g", ref_id="TW-10kg") for k in range(3)]
        send(Ingest(store), truth.market, checks)
    finally:
        store.close()
    page.wait_for_selector(f"{card}[data-state='out_of_tolerance']", timeout=15_000)
