// Fleet overview (instruments by site, coloured by state) and one instrument's page
// (checks against the MPE band, CUSUM and EWMA charts, predicted MPE crossing).
import { chart, day, esc, spark, stamp, when } from "./charts.js";
import { api, dueText, LABEL, pill, SEVERITY, STATES, table } from "./ui.js";

export async function overview() {
  const data = await api("/dashboard/api/fleet");
  const now = data.now, all = data.instruments;
  const count = (s) => all.filter((i) => i.state === s).length;
  const tiles = STATES.slice().reverse().map((s) => `<div class="tile s-${s}${count(s) ? "" : " zero"}" data-tile="${s}">
      <div class="n">${count(s)}</div><div class="l">${esc(LABEL[s])}</div></div>`).join("");
  const flagged = all.filter((i) => i.state !== "ok" && SEVERITY[i.state] !== undefined)
    .sort((a, b) => SEVERITY[a.state] - SEVERITY[b.state] || a.instrument.localeCompare(b.instrument));
  const attention = flagged.length ? flagged.map((i) => `<a class="attn s-${i.state}" href="#/instrument/${encodeURIComponent(i.instrument)}" data-flagged="${esc(i.instrument)}">
      <b>${esc(i.instrument)}</b>${pill(i.state)}<span class="why">${esc(i.reasons[0] || "")}</span></a>`).join("")
    : `<p class="empty">Every instrument is in tolerance and verified on time.</p>`;
  const names = Object.fromEntries(data.sites.map((s) => [s.id, s.name || s.id]));
  const sites = [...new Set(all.map((i) => i.site))].sort();
  const siteHtml = sites.map((site) => {
    const mine = all.filter((i) => i.site === site);
    const mini = STATES.filter((s) => s !== "ok" && mine.some((i) => i.state === s))
      .map((s) => pill(s) + `<b>${mine.filter((i) => i.state === s).length}</b>`).join(" ");
    return `<section class="site" data-site="${esc(site)}"><div class="site-head"><h2>${esc(names[site] || site)}</h2>
      <span class="sub">${mine.length} instruments</span><span class="mini">${mini}</span></div>
      <div class="grid">${mine.map((i) => card(i, now)).join("")}</div></section>`;
  }).join("");
  const upcoming = all.filter((i) => i.verification_due != null)
    .sort((a, b) => a.verification_due - b.verification_due).slice(0, 12)
    .map((i) => { const d = dueText(now, i.verification_due);
      return `<tr><td><a href="#/instrument/${encodeURIComponent(i.instrument)}">${esc(i.instrument)}</a></td>
        <td>${esc(names[i.site] || i.site)}</td><td>${day(i.verified_on)}</td><td>${day(i.verification_due)}</td>
        <td class="due ${d.cls}">${esc(d.text)}</td><td>${pill(i.state)}</td></tr>`; });
  const st = data.settings || {}, known = Object.keys(st.check_sigma || {}).length;
  const settings = `baseline ${st.baseline} readings${known ? `, known check σ for ${known} instrument${known === 1 ? "" : "s"}` : ""}`;
  return `<h1>Fleet</h1><p class="sub">${all.length} instruments at ${sites.length} sites ·
      states from the drift engine over every stored check and zero reading (${esc(settings)}) · ${stamp(now)} UTC</p>
    <div class="tiles">${tiles}</div>
    <h2>Needs attention</h2><div class="attention">${attention}</div>
    ${siteHtml}
    <h2>Verification due</h2><div class="card">${table(["instrument", "site", "verified", "due", "", "state"], upcoming)}</div>`;
}

function card(i, now) {
  const d = dueText(now, i.verification_due);
  return `<a class="inst s-${esc(i.state)}" href="#/instrument/${encodeURIComponent(i.instrument)}" data-instrument="${esc(i.instrument)}" data-state="${esc(i.state)}">
    <div class="row1"><span class="id">${esc(i.instrument)}</span>${pill(i.state)}</div>
    <div class="kind">${esc(i.type)} · class ${esc(i.accuracy_class)} · Max ${esc(i.max)} ${esc(i.unit)} · e ${esc(i.e)} ${esc(i.unit)}</div>
    <div class="why">${esc(i.state === "ok" ? "" : i.reasons[0] || "")}</div>
    ${(i.spark || []).length ? spark(i.spark) : `<div class="nochecks">${esc(/dispenser/i.test(i.type || "")
      ? "no checks yet · pulses against volume on every dispense" : "no checks yet")}</div>`}
    <div class="due ${d.cls}"><span>verification due ${day(i.verification_due)}</span><span>${esc(d.text)}</span></div></a>`;
}

const fact = (k, v, hot = false) => `<div class="fact${hot ? " hot" : ""}"><div class="k">${esc(k)}</div><div class="v">${v}</div></div>`;

export async function instrument(id) {
  const data = await api(`/dashboard/api/instrument/${encodeURIComponent(id)}`);
  const i = data.instrument, c = data.charts, now = Date.now();
  const d = dueText(now, i.verification_due);
  const crossing = i.crossing_ms == null ? "none predicted" : i.crossing_ms >= now
    ? `${when(i.crossing_ms, now)}<br><small>95 %: ${when(i.crossing_lo_ms, now)} – ${when(i.crossing_hi_ms, now)}</small>`
    : `${when(i.crossing_ms, now)}<br><small>passed: the trend is at the MPE</small>`;
  const facts = [
    fact("checks since verification", `${i.checks ?? 0}`),
    fact("last error / MPE", i.last_r == null ? "—" : (i.last_r >= 0 ? "+" : "") + i.last_r.toFixed(2), Math.abs(i.last_r || 0) > 0.8),
    fact("largest |error| / MPE", i.max_abs_r == null ? "—" : i.max_abs_r.toFixed(2), (i.max_abs_r || 0) > 0.8),
    fact("checks outside MPE", `${i.out ?? 0}`, (i.out || 0) > 0),
    fact("CUSUM / EWMA signals", `${i.cusum ?? 0} / ${i.ewma ?? 0}`, (i.cusum || 0) + (i.ewma || 0) > 0),
    fact("zero-reading alarms", `${i.zero_alarms ?? 0}`, (i.zero_alarms || 0) > 0),
    fact("predicted MPE crossing", crossing, i.crossing_ms != null),
    fact("verification due", `${day(i.verification_due)}<br><small class="due ${d.cls}">${esc(d.text)}</small>`, d.cls === "late"),
  ].join("");
  const reasons = i.reasons.length ? `<ul>${i.reasons.map((r) => `<li>${esc(r)}</li>`).join("")}</ul>`
    : "In tolerance: no check near its MPE, no drift signal, verification not due.";
  return `<p><a href="#/">← Fleet</a></p>
    <div class="head"><h1>${esc(i.instrument)}</h1>${pill(i.state, true)}</div>
    <p class="sub">${esc(i.site)} · ${esc(i.type)} class ${esc(i.accuracy_class)} · Max ${esc(i.max)} ${esc(i.unit)},
      Min ${esc(i.min)} ${esc(i.unit)}, e ${esc(i.e)} ${esc(i.unit)} · node <code>${esc(i.node || "—")}</code> ·
      verified ${day(i.verified_on)} · registry status ${esc(i.registry_status)}</p>
    <div class="callout s-${esc(i.state)}" data-reasons>${reasons}</div>
    <div class="facts">${facts}</div>
    ${c.error ? `<p class="error">${esc(c.error)}</p>` : charts(i, c, now) + zeroCharts(i, c)}
    <div class="two"><div class="card"><h3>Audit trail of node ${esc(i.node || "")}</h3>${events(c.events)}</div>
      <div class="card"><h3>Alerts</h3>${alerts(data.alerts)}</div></div>
    <h2>Latest checks</h2><div class="card scroll">${checkTable(c.checks.slice(-40).reverse(), i.unit)}</div>`;
}

function charts(i, c, now) {
  const pts = c.checks;
  const full = Math.max(600, document.getElementById("view").clientWidth - 40), half = Math.max(420, full / 2 - 30);
  if (!pts.length) return `<p class="empty">No checks stored for this instrument yet.</p>`;
  const lim = c.limits, unit = i.unit;
  const t0 = pts[0].t, tLast = pts[pts.length - 1].t;
  const crossing = i.crossing_ms != null && i.crossing_ms >= now ? i.crossing_ms : null;
  // The axis fits the checks (and the predicted crossing, up to as far again as the checks
  // span); it reaches "now" only while checks are still arriving.
  const live = now - tLast <= Math.max(60000, (tLast - t0) * 0.1);
  const tEnd = Math.max(tLast, live ? now : 0, crossing ? Math.min(i.crossing_hi_ms ?? crossing, crossing + (tLast - t0)) : 0);
  const base = pts.filter((p) => p.baseline);
  const baseSpan = base.length ? [{ vspan: [t0, base[base.length - 1].t], cls: "baseline", label: `baseline (${base.length} checks)` }] : [];
  const mpeLast = pts[pts.length - 1].mpe;
  const band = pts.filter((p) => p.mpe != null).map((p) => [p.t, -p.mpe, p.mpe]);
  if (band.length) band.push([tEnd, -band[band.length - 1][2], band[band.length - 1][2]]);
  const trend = [];
  if (crossing && mpeLast) {  // the engine's trend: slope of r per day through its crossing
    const sign = i.slope_r_per_day >= 0 ? 1 : -1;
    const rAt = (t) => sign + i.slope_r_per_day * (t - crossing) / 86400000;
    trend.push({ line: [[tLast, rAt(tLast) * mpeLast], [crossing, sign * mpeLast]], cls: "trend" },
      { vspan: [i.crossing_lo_ms, Math.min(i.crossing_hi_ms, tEnd)], cls: "crossing" },
      { dots: [[crossing, sign * mpeLast, "sig", `predicted crossing ${when(crossing, now)}`]], r: 5 });
  }
  // The firmware's audit codes (docs/firmware.md): seal, cal_change, param_change.
  const LOUD = new Set(["seal", "cal_change", "param_change"]);
  const marks = c.events.filter((e) => LOUD.has(e.code) && e.t >= t0)
    .map((e, k) => ({ vline: e.t, cls: "limit", label: k ? "" : e.code.replace("_", " ") }));
  const errs = pts.map((p) => p.error).concat(band.flatMap((b) => [b[1], b[2]]));
  const dotCls = (p) => p.out ? "pt out" : p.warn ? "pt warn" : p.baseline ? "pt base" : "pt";
  const errChart = chart({ title: "check errors", t: [t0, tEnd], y: [Math.min(...errs), Math.max(...errs)],
    yLabel: `error (${unit})`, width: full, height: 300, layers: [...baseSpan,
      { band, warn: lim.warn, label: mpeLast ? `in-service MPE ±${mpeLast} ${unit}` : "" },
      { hline: 0, cls: "axis" }, ...marks, { line: pts.map((p) => [p.t, p.error]), cls: "series" }, ...trend,
      { dots: pts.map((p) => [p.t, p.error, dotCls(p), `${stamp(p.t)}\nindication ${p.indication} ${unit}, reference ${p.reference} ${unit}\nerror ${p.error} ${unit} = ${p.r} × MPE`]) },
      { vline: now, label: "now", bottom: true }] });
  // a signal restarts the statistic at 0: draw it at the limit, on the side it crossed
  const signals = (key, side, limit) => pts.map((p, k) => [p, pts[k - 1]]).filter(([p]) => p[key])
    .map(([p, prev]) => [p.t, side(p, prev || {}) * limit, "sig", `signal ${stamp(p.t)}`]);
  const cusSide = (p, prev) => ((prev.cusum_hi ?? 0) >= (prev.cusum_lo ?? 0) ? 1 : -1);
  const ewSide = (p, prev) => ((prev.ewma ?? 0) >= 0 ? 1 : -1);
  const cus = pts.map((p) => [p.t, p.cusum_hi]), cusLo = pts.map((p) => [p.t, p.cusum_lo == null ? null : -p.cusum_lo]);
  const cusChart = chart({ title: "CUSUM", t: [t0, tEnd], y: [-lim.h * 1.15, lim.h * 1.15], yLabel: "CUSUM (σ)", width: half, height: 220,
    layers: [...baseSpan, { hline: lim.h, label: `h = ${lim.h}` }, { hline: -lim.h }, { hline: 0, cls: "axis" },
      { line: cus, cls: "series" }, { line: cusLo, cls: "series2" }, { dots: signals("cusum_signal", cusSide, lim.h), r: 4.5 }, { vline: now }] });
  const ew = pts.map((p) => [p.t, p.ewma]);
  const ewVals = ew.map(([, v]) => Math.abs(v ?? 0));
  const ewMax = Math.max(lim.ewma * 1.3, ...ewVals);
  const ewChart = chart({ title: "EWMA", t: [t0, tEnd], y: [-ewMax, ewMax], yLabel: "EWMA (σ)", width: half, height: 220,
    layers: [...baseSpan, { hline: lim.ewma, label: `±${lim.ewma.toFixed(2)} (L = 2.86, λ = ${lim.lam})` }, { hline: -lim.ewma },
      { hline: 0, cls: "axis" }, { line: ew, cls: "series" }, { dots: signals("ewma_signal", ewSide, lim.ewma), r: 4.5 }, { vline: now }] });
  return `<div class="charts">
    <div class="card" data-chart="mpe"><h3>Check errors against the in-service MPE band</h3>${errChart}
      <div class="legend"><span><i style="background:rgba(31,157,85,.5)"></i>±MPE at the check's load</span>
      <span><i style="background:#d69e00"></i>±0.8 MPE (early warning)</span>
      ${crossing ? `<span><i style="background:var(--drifting)"></i>trend → predicted crossing ${when(crossing, now)} (95 % interval shaded)</span>` : ""}
      <span>${c.checks_total} checks${c.checks_total > pts.length ? `, last ${pts.length} drawn` : ""}</span></div></div>
    <div class="two"><div class="card" data-chart="cusum"><h3>CUSUM of standardised errors</h3>${cusChart}
      <div class="legend"><span><i style="background:#2f6fed"></i>S+ (reads high)</span><span><i style="background:#8a63d2"></i>−S− (reads low)</span><span>● signal (restarts at 0)</span></div></div>
      <div class="card" data-chart="ewma"><h3>EWMA of standardised errors</h3>${ewChart}
      <div class="legend"><span>${lim.known_sigma != null ? `σ = ${lim.known_sigma} ${esc(unit)} known (drift settings), μ0 = 0`
        : `μ0 = ${lim.mu0 ?? "—"}, σ = ${lim.sigma ?? "—"} from the baseline of ${lim.baseline} checks (converter counts when the node sends them)`}</span><span>● signal</span></div></div></div></div>`;
}

// Zero readings (no load on the pan): the offset every small weighing carries, watched by
// the engine's own CUSUM and EWMA (converter counts when the node sends them).
function zeroCharts(i, c) {
  const z = c.zeros || [];
  if (!z.length) return "";
  const full = Math.max(600, document.getElementById("view").clientWidth - 40), half = Math.max(420, full / 2 - 30);
  const lim = c.limits, zl = c.zero_limits || {}, unit = i.unit;
  const t0 = z[0].t, t1 = z[z.length - 1].t;
  const raw = z.every((p) => p.raw != null);
  const val = (p) => raw ? p.raw : p.indication;
  const vals = z.map(val);
  const base = z.filter((p) => p.baseline);
  const baseSpan = base.length ? [{ vspan: [t0, base[base.length - 1].t], cls: "baseline", label: `baseline (${base.length})` }] : [];
  const alarms = z.filter((p) => p.cusum_signal || p.ewma_signal || p.out);
  const dotCls = (p) => p.out ? "pt out" : p.cusum_signal || p.ewma_signal ? "sig" : p.baseline ? "pt base" : "pt";
  const band = !raw && c.zero_mpe != null ? c.zero_mpe : 0;  // indications: the MPE at zero too
  const offset = chart({ title: "zero readings", t: [t0, t1], y: [Math.min(-band, ...vals), Math.max(band, ...vals)],
    yLabel: raw ? "converter counts" : `indication (${unit})`, width: half, height: 220, layers: [...baseSpan,
      ...(raw ? [] : c.zero_mpe != null ? [{ hline: c.zero_mpe, label: `MPE at zero ±${c.zero_mpe} ${unit}` }, { hline: -c.zero_mpe }] : []),
      { line: z.map((p) => [p.t, val(p)]), cls: "series" },
      { dots: z.map((p) => [p.t, val(p), dotCls(p), `${stamp(p.t)}\nindication ${p.indication} ${unit}${p.raw != null ? `, raw ${p.raw}` : ""}${p.cusum_signal || p.ewma_signal ? "\nchart signal" : ""}`]), r: 2.6 }] });
  const sig = (p) => p.cusum_signal || p.ewma_signal;
  const cus = chart({ title: "zero CUSUM", t: [t0, t1], y: [-lim.h * 1.15, lim.h * 1.15], yLabel: "CUSUM (σ)", width: half, height: 220,
    layers: [...baseSpan, { hline: lim.h, label: `h = ${lim.h}` }, { hline: -lim.h }, { hline: 0, cls: "axis" },
      { line: z.map((p) => [p.t, p.cusum_hi]), cls: "series" }, { line: z.map((p) => [p.t, p.cusum_lo == null ? null : -p.cusum_lo]), cls: "series2" },
      { dots: z.map((p, k) => [p, z[k - 1] || {}]).filter(([p]) => sig(p)).map(([p, prev]) => [p.t,
        ((prev.cusum_hi ?? 0) >= (prev.cusum_lo ?? 0) ? 1 : -1) * lim.h, "sig", `${p.cusum_signal ? "CUSUM" : "EWMA"} signal ${stamp(p.t)}`]), r: 4.5 }] });
  return `<div class="card zeros${alarms.length ? " alarmed" : ""}" data-chart="zero"><h3>Zero readings: ${c.zeros_total}
      ${alarms.length ? `<span class="flag">· ${alarms.length} alarm${alarms.length === 1 ? "" : "s"}</span>` : "· no alarm"}</h3>
    <div class="two"><div>${offset}</div><div>${cus}</div></div>
    <div class="legend"><span>left: ${raw ? "raw converter counts at no load" : "indication at no load"}; right: CUSUM S+ / −S− of the standardised offset</span>
      <span>${zl.sigma == null ? `still in the baseline: ${c.zeros_total} of the ${lim.baseline} zero readings that fix μ0 and σ; the charts start after it`
        : `μ0 = ${zl.mu0}, σ = ${zl.sigma} from the first ${lim.baseline} zero readings`}</span><span>● chart signal (an alarm)</span>
      ${c.zeros_total > z.length ? `<span>last ${z.length} drawn</span>` : ""}</div></div>`;
}

function checkTable(rows, unit) {
  return table(["time (UTC)", "indication ", "reference ", "error ", "MPE ", "error / MPE ", "CUSUM S+ ", "EWMA "],
    rows.map((p) => `<tr class="${p.out ? "bad" : p.warn ? "warn" : ""}"><td>${stamp(p.t)}</td>
      <td class="num">${p.indication} ${esc(unit)}</td><td class="num">${p.reference} ${esc(unit)}</td>
      <td class="num">${p.error > 0 ? "+" : ""}${p.error}</td><td class="num">±${p.mpe ?? "—"}</td>
      <td class="num">${p.r == null ? "—" : p.r.toFixed(2)}</td><td class="num">${p.cusum_hi ?? "—"}</td>
      <td class="num">${p.ewma ?? "—"}</td></tr>`));
}

function events(list) {
  if (!list.length) return `<p class="empty">No audit events.</p>`;
  const loud = new Set(["seal", "cal_change", "param_change", "buffer_full", "flash_full",
    "pulse_rate", "driver_error"]);
  // tq 0: made before the node's clock was set, so its time counts from power-up
  const time = (e) => e.tq === 0 ? `${(e.t / 1000).toFixed(1)} s after power-up<br><small>clock not set yet</small>` : stamp(e.t);
  return table(["time (UTC)", "event", "detail"], list.slice(0, 30).map((e) => `<tr class="${loud.has(e.code) ? "bad" : ""}">
    <td>${time(e)}</td><td><b>${esc(e.code)}</b></td><td><code>${esc(e.detail ? JSON.stringify(e.detail) : "")}</code></td></tr>`));
}

function alerts(list) {
  if (!list.length) return `<p class="empty">No stored alerts for this instrument.</p>`;
  return table(["time (UTC)", "kind", "detail"], list.map((a) => `<tr><td>${stamp(a.t)}</td><td>${pill(a.kind in LABEL ? a.kind : "out_of_tolerance").replace(/>[^<]*<\/span>$/, `>${esc(a.kind)}</span>`)}</td>
    <td>${esc(a.detail?.previous ? `was ${a.detail.previous}` : a.seq != null ? `node ${a.node} seq ${a.seq}` : "")}</td></tr>`));
}
