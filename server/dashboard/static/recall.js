// Recall: a GTIN + lot -> every holder and every sale, drawn as a graph and listed.
import { esc, stamp } from "./charts.js";
import { drawGraph } from "./graph.js";
import { api, pill, qty, short, table } from "./ui.js";

export async function recall(params) {
  const gtin = params.get("gtin") || "", lot = params.get("lot") || "", epc = params.get("epc") || "";
  const lots = await api("/dashboard/api/lots");
  const chips = lots.lots.map((l) => `<a class="chip" href="#/recall?${l.gtin ? `gtin=${l.gtin}&lot=${encodeURIComponent(l.lot)}` : `epc=${encodeURIComponent(l.urn)}`}">
    ${esc(l.gtin || short(l.urn))} · lot <b>${esc(l.lot)}</b>${l.sales ? ` · ${l.sales} sales` : ""}</a>`).join("");
  const form = `<h1>Recall</h1><p class="sub">Name a product (GTIN) and lot: every place that received it, every sale,
    on which instrument, and whether that instrument was in tolerance.</p>
    <form class="form card" id="recall-form"><label>GTIN<input name="gtin" value="${esc(gtin)}" placeholder="04012345000016" inputmode="numeric"></label>
    <label>Lot (AI 10)<input name="lot" value="${esc(lot)}" placeholder="L2611A"></label><button type="submit">Trace</button>
    ${lots.trace_tables ? `<div class="chips">${chips || ""}</div>` : `<p class="empty">No trace events stored yet.</p>`}</form>`;
  if (!gtin && !epc) return form;
  const q = epc ? `epc=${encodeURIComponent(epc)}` : `gtin=${encodeURIComponent(gtin)}&lot=${encodeURIComponent(lot)}`;
  let r;
  try { r = await api(`/dashboard/api/recall?${q}`); } catch (e) { return form + `<p class="error">${esc(e.message)}</p>`; }
  if (!r.found) return form + `<p class="error">Lot ${esc(r.lot)} is not in the trace tables.</p>`;
  const s = r.summary, flagged = r.sales.filter((x) => x.after_alarm || x.tolerance === "out_of_tolerance");
  const sold = Object.entries(s.sold).map(([u, v]) => qty(v, u)).join(" + ") || "—";
  const tile = (n, l, st = "ok") => `<div class="tile s-${st}"><div class="n">${n}</div><div class="l">${esc(l)}</div></div>`;
  const sales = r.sales.map((x) => `<tr class="${x.after_alarm || x.tolerance === "out_of_tolerance" ? "bad" : ""}" data-sale="${esc(x.event)}">
    <td>${stamp(x.time)}</td><td>${esc(short(x.location))}</td>
    <td>${x.registered ? `<a href="#/instrument/${encodeURIComponent(x.instrument)}">${esc(x.instrument)}</a>` : esc(short(x.instrument) || "—")}</td>
    <td class="num">${qty(x.qty, x.unit)}</td><td class="num">${qty(x.measured, x.measured_unit)}</td>
    <td>${x.tolerance ? esc(x.tolerance.replaceAll("_", " ")) : "—"}${x.after_alarm ? ` <span class="flag">after the instrument's first alarm</span>` : ""}</td>
    <td>${x.instrument_state ? pill(x.instrument_state) : "—"}</td><td class="mono">${esc(String(x.raw || "—").replace(/^urn:metrotrace:record:/, ""))}</td></tr>`);
  const holders = r.holders.map((h) => `<tr><td>${esc(short(h.location))}</td><td>${esc(short(h.epc))}</td>
    <td class="num">${qty(h.received, h.unit)}</td><td>${stamp(h.first)}</td><td>${stamp(h.last)}</td></tr>`);
  return form + `<h2>Lot <code>${esc(r.lot)}</code></h2>
    <div class="tiles">${tile(s.sales, "sales")}${tile(s.sale_points, "places of sale")}${tile(s.holders, "holders")}
      ${tile(esc(sold), "sold")}${tile(flagged.length, "sales on flagged instruments", flagged.length ? "out_of_tolerance" : "ok")}</div>
    <div class="card" style="overflow-x:auto" data-graph>${drawGraph(r.graph)}${r.graph.truncated ? `<p class="sub">Graph truncated; the table lists every sale.</p>` : ""}</div>
    <h2>Every sale (${r.sales.length}) <a class="chip" href="/dashboard/api/recall?${q}&format=csv">download CSV</a></h2>
    <div class="card scroll" data-sales>${table(["time (UTC)", "place", "instrument", "quantity ", "measured ", "tolerance at sale", "instrument now", "record (node:seq)"], sales)}</div>
    <h2>Holders</h2><div class="card">${table(["place", "object", "received ", "first", "last"], holders)}</div>`;
}

export function bindRecall(view) {
  const form = view.querySelector("#recall-form");
  if (!form) return;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    location.hash = `#/recall?gtin=${encodeURIComponent(f.get("gtin").trim())}&lot=${encodeURIComponent(f.get("lot").trim())}`;
  });
}
