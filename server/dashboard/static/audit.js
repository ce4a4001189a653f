// Alerts with their evidence, gateways with their keys and nodes, rejected messages.
import { esc, stamp } from "./charts.js";
import { api, LABEL, pill, table } from "./ui.js";

const instLink = (id) => `<a href="#/instrument/${encodeURIComponent(id)}">${esc(id)}</a>`;

export async function alerts() {
  const data = await api("/dashboard/api/alerts");
  const alarms = data.alarms.map((a) => `<div class="card alarm s-${esc(a.state)}" data-alarm="${esc(a.instrument)}">
    <div class="top2"><h3 style="margin:0">${instLink(a.instrument)}</h3>${pill(a.state)}
      <span class="sub" style="margin:0">${esc(a.site)} · first alarm ${stamp(a.first_alarm_ms)}</span></div>
    <ul>${a.reasons.map((r) => `<li>${esc(r)}</li>`).join("")}</ul>
    ${a.worst.length ? `<details${a.checks_outside ? " open" : ""}><summary>Evidence: the ${a.worst.length} largest check errors
      (${a.checks_outside} outside the in-service MPE)</summary>${table(["time (UTC)", "node / seq", "indication ", "reference ", "error ", "MPE ", "error / MPE "],
      a.worst.map((c) => `<tr class="${c.outside ? "bad" : Math.abs(c.r) > 0.8 ? "warn" : ""}"><td>${stamp(c.t)}</td>
        <td><code>${esc(c.node)}</code> / ${c.seq}</td><td class="num">${c.indication}</td><td class="num">${c.reference}</td>
        <td class="num">${c.error > 0 ? "+" : ""}${c.error}</td><td class="num">±${c.mpe}</td><td class="num">${c.r.toFixed(2)}</td></tr>`))}</details>` : ""}
  </div>`).join("") || `<p class="empty">No instrument needs action.</p>`;
  const stored = data.stored.map(storedAlert).join("") || `<p class="empty">No stored alerts.</p>`;
  return `<h1>Alerts</h1><p class="sub">What needs action now, and every alert the server raised, with the evidence behind it.</p>
    <h2>Instruments needing action</h2><div class="stack">${alarms}</div>
    <h2>Stored alerts <span class="sub">(forgeries, metrology state changes)</span></h2><div class="stack">${stored}</div>`;
}

function storedAlert(a) {
  const state = a.kind in LABEL ? a.kind : "out_of_tolerance";
  let body = "";
  if (a.kind === "forgery" && a.evidence) {
    const s = a.evidence.stored || {}, o = a.evidence.offered || {};
    const keys = [...new Set([...Object.keys(s), ...Object.keys(o)])]
      .filter((k) => !["record_hex", "tag_hex", "extra"].includes(k));
    const side = (name, rec, other) => `<div class="side"><h3>${name}</h3><table>${keys.map((k) =>
      `<tr class="${rec && other && String(rec[k]) !== String(other[k]) ? "diff" : ""}"><td>${esc(k)}</td><td>${esc(k === "t" && rec?.t != null ? `${stamp(rec.t)} (${rec.t})` : rec?.[k] ?? "—")}</td></tr>`).join("")}</table>
      <p class="hex mono">${esc(rec?.record_hex || "")}</p></div>`;
    body = `<p>The same (node, sequence number) arrived twice with different bytes. The first copy stays the record;
      the second is kept as evidence. ${esc(a.evidence.reject || "")}</p>
      <div class="evidence">${side("stored first", s, o)}${side("offered later (rejected)", o, s)}</div>`;
  } else if (a.detail?.source === "metrology") {
    body = `<p>State changed from <b>${esc(LABEL[a.detail.previous] || a.detail.previous)}</b> to <b>${esc(LABEL[a.kind] || a.kind)}</b>:
      ${a.detail.checks ?? 0} checks, largest |error|/MPE ${a.detail.max_abs_r ?? "—"}, CUSUM ${a.detail.cusum ?? 0}×, EWMA ${a.detail.ewma ?? 0}×.</p>`;
  } else {
    body = `<p><code>${esc(JSON.stringify(a.detail))}</code></p>`;
  }
  return `<div class="card alarm s-${esc(state)}" data-stored-alert="${esc(a.kind)}"><div class="top2">
    <b>${esc(a.kind.replaceAll("_", " "))}</b><span class="sub" style="margin:0">${stamp(a.t)} · site ${esc(a.site)}
    ${a.gateway ? `· gateway ${esc(a.gateway)}` : ""} ${a.node ? `· node <code>${esc(a.node)}</code> seq ${a.seq}` : ""}
    ${a.instrument ? `· ${instLink(a.instrument)}` : ""}</span></div>${body}</div>`;
}

export async function gateways() {
  const data = await api("/dashboard/api/gateways");
  const cards = data.gateways.map((g) => `<div class="card" data-gateway="${esc(g.id)}">
    <div class="top2"><h3 style="margin:0">${esc(g.id)}</h3><span class="sub" style="margin:0">site ${esc(g.site)} ·
      ${g.nodes.length} nodes · ${g.rejects} rejected messages</span></div>
    ${table(["key id (kid)", "valid from", "revoked at", "state", "public key (Ed25519)"], g.keys.map((k) =>
      `<tr><td><code>${esc(k.kid)}</code></td><td>${stamp(k.valid_from)}</td><td>${stamp(k.revoked_at)}</td>
       <td>${pill(k.state === "active" ? "ok" : k.state === "revoked" ? "out_of_tolerance" : "warning").replace(/>[^<]*<\/span>$/, `>${esc(k.state.replaceAll("_", " "))}</span>`)}</td>
       <td class="hex mono">${esc(k.public_key)}</td></tr>`), "keys")}
    <h3 style="margin-top:12px">Nodes</h3>
    ${table(["node", "instruments"], g.nodes.map((n) => `<tr><td><code>${esc(n.id)}</code></td><td>${n.instruments.map(instLink).join(", ") || "—"}</td></tr>`))}
    ${Object.keys(g.reject_reasons).length ? `<div class="reasons">${Object.entries(g.reject_reasons).map(([r, n]) =>
      `<a class="chip" href="#/rejects">${esc(r)} <b>${n}</b></a>`).join("")}</div>` : ""}</div>`).join("");
  return `<h1>Gateways &amp; keys</h1><p class="sub">Each gateway signs its batches with its own Ed25519 key.
    Old keys stay listed after rotation or revocation, so archived batches remain verifiable.</p><div class="stack">${cards}</div>`;
}

// What each reject reason means (server/ingest/core.py; docs/server.md lists them).
const MEANING = {
  replay: "this exact batch was already stored: sent again (a replay, or a resend the broker delivered twice)",
  bad_signature: "the gateway's Ed25519 signature does not verify over these bytes: altered after signing, or forged",
  unknown_key: "signed by a key the registry does not know",
  revoked_key: "signed by a revoked key",
  forgery: "same (node, seq) as a stored record, other bytes: kept as evidence, an alert raised",
  bad_tag: "the node's HMAC tag does not match the record's bytes",
  unknown_node: "a record from a node the registry does not know",
  malformed: "not a well-formed signed batch",
  bad_record: "a record that does not decode",
};

export async function rejects() {
  const list = await api("/rejects?limit=1000");
  const counts = {};
  for (const r of list) counts[r.reason] = (counts[r.reason] || 0) + 1;
  const chips = Object.entries(counts).sort((a, b) => b[1] - a[1])
    .map(([r, n]) => `<span class="chip">${esc(r)} <b>${n}</b></span>`).join("");
  const rows = list.slice().reverse().map((r) => `<tr data-reason="${esc(r.reason)}"><td>${stamp(r.received)}</td><td><b>${esc(r.reason)}</b>${MEANING[r.reason] ? `<br><small class="meaning">${esc(MEANING[r.reason])}</small>` : ""}</td>
    <td>${esc(r.detail)}</td><td>${esc(r.gateway || "—")}</td><td><code>${esc(r.node || "—")}</code></td><td>${r.seq ?? "—"}</td>
    <td class="hex mono">${esc((r.data || "").slice(0, 48))}${(r.data || "").length > 48 ? "…" : ""}</td></tr>`);
  return `<h1>Rejects</h1><p class="sub">Messages and records the server refused, with the reason and the bytes as received
    (${list.length} shown; reasons in docs/server.md).</p><div class="reasons">${chips}</div>
    <div class="card scroll">${rows.length ? table(["received (UTC)", "reason", "detail", "gateway", "node", "seq", "bytes"], rows) : `<p class="empty">Nothing rejected.</p>`}</div>`;
}

