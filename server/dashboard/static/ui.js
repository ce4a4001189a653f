// Helpers every view shares: fetching JSON, state pills, quantities in words.
import { esc } from "./charts.js";

export const STATES = ["out_of_tolerance", "drifting", "overdue_verification", "warning", "ok"];
export const LABEL = {
  ok: "ok", warning: "warning", drifting: "drifting", out_of_tolerance: "out of tolerance",
  overdue_verification: "verification overdue", unknown: "not analysed", withdrawn: "withdrawn",
};
export const SEVERITY = Object.fromEntries(STATES.map((s, i) => [s, i]));

export async function api(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch { /* not JSON */ }
    throw Object.assign(new Error(`${res.status}: ${detail}`), { status: res.status });
  }
  return res.json();
}

export const pill = (state, big = false) =>
  `<span class="pill s-${esc(state || "none")}${big ? " big" : ""}" data-state="${esc(state || "")}">${esc(LABEL[state] || state || "—")}</span>`;

export function qty(value, unit) {
  if (value == null) return "—";
  const scaled = { mg: [1e6, "kg", 3], g: [1e3, "kg", 3], mL: [1e3, "L", 2] }[unit];
  return scaled ? `${(value / scaled[0]).toFixed(scaled[2])} ${scaled[1]}` : `${value} ${unit || ""}`;
}

export const short = (urn) => String(urn || "").replace(/^urn:epc:(id|class):[a-z]+:/, "");

export function daysFrom(now, ms) {
  if (ms == null) return null;
  return Math.round((ms - now) / 86400000);
}

export function dueText(now, due) {
  const d = daysFrom(now, due);
  if (d == null) return { text: "no due date", cls: "" };
  if (d < 0) return { text: `overdue ${-d} d`, cls: "late" };
  return { text: `in ${d} d`, cls: d <= 30 ? "soon" : "" };
}

export const table = (head, rows, cls = "") =>
  `<table class="${cls}"><thead><tr>${head.map((h) => `<th${h.endsWith(" ") ? ' class="num"' : ""}>${esc(h.trim())}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
