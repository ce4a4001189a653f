// Small SVG charts over time, no library: a chart is a list of layers drawn on shared
// time and value scales. Every value is escaped; every point carries a <title> tooltip.

export const esc = (v) => String(v ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

export const day = (ms) => ms == null ? "—" : new Date(ms).toISOString().slice(0, 10);
export const stamp = (ms) => ms == null ? "—" :
  new Date(ms).toISOString().slice(0, 19).replace("T", " ");
// A moment near `now` (within two days) with its time of day, a far one as a date.
export const when = (ms, now) => ms == null ? "—" :
  Math.abs(ms - now) < 2 * 86400000 ? `${stamp(ms)} UTC` : day(ms);

function niceTicks(lo, hi, n = 5) {
  const span = hi - lo || 1;
  const raw = span / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

const S = 1000, MIN = 60 * S, HOUR = 60 * MIN, DAY = 24 * HOUR;
const STEPS = [S, 2 * S, 5 * S, 10 * S, 15 * S, 30 * S, MIN, 2 * MIN, 5 * MIN, 10 * MIN, 15 * MIN,
  30 * MIN, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY,
  30 * DAY, 91 * DAY, 182 * DAY, 365 * DAY];

// Ticks on round UTC times, at most 8, labelled as finely as their step needs.
export function timeTicks(t0, t1) {
  const span = t1 - t0;
  const step = STEPS.find((s) => span / s <= 8) || 730 * DAY;
  const iso = (t) => new Date(t).toISOString();
  const label = step < MIN ? (t) => iso(t).slice(11, 19) : step < DAY ? (t) => iso(t).slice(11, 16)
    : (t) => iso(t).slice(5, 10);
  const out = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push([t, label(t)]);
  return out;
}

// chart({width, height, t: [t0, t1], y: [lo, hi], yLabel, fmt, layers}) -> SVG text.
// Layers: {band: [[t, lo, hi]...]}, {line: [[t, y]...], cls}, {dots: [[t, y, cls, title]...]},
// {hline: y, cls, label}, {vspan: [t0, t1], cls, label}, {vline: t, cls, label}.
export function chart(o) {
  const W = o.width || 900, H = o.height || 240, L = 58, R = 16, T = 12, B = 28;
  let [t0, t1] = o.t, [lo, hi] = o.y;
  if (t1 <= t0) { t0 -= 30 * S; t1 = t0 + 60 * S; }
  const tpad = (t1 - t0) * 0.02; t0 -= tpad; t1 += tpad;  // end points off the axes
  if (hi <= lo) { hi = lo + 1; }
  const pad = (hi - lo) * 0.06; lo -= pad; hi += pad;
  const x = (t) => L + (t - t0) / (t1 - t0) * (W - L - R);
  const y = (v) => T + (hi - v) / (hi - lo) * (H - T - B);
  const clampY = (v) => Math.max(T, Math.min(H - B, y(v)));
  const fmt = o.fmt || ((v) => String(+v.toFixed(2)));
  const parts = [];
  for (const v of niceTicks(lo, hi)) {
    parts.push(`<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/>`,
      `<text class="tick" x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${esc(fmt(v))}</text>`);
  }
  for (const [t, text] of timeTicks(t0, t1)) {
    parts.push(`<line class="grid" x1="${x(t)}" x2="${x(t)}" y1="${T}" y2="${H - B}"/>`,
      `<text class="tick" x="${x(t)}" y="${H - B + 16}" text-anchor="middle">${text}</text>`);
  }
  for (const layer of o.layers) {
    const cls = layer.cls || "";
    if (layer.vspan) {
      const a = Math.max(layer.vspan[0], t0), b = Math.min(layer.vspan[1], t1);
      if (!(b >= a)) continue;
      parts.push(`<rect class="${cls}" x="${x(a)}" y="${T}" width="${Math.max(1, x(b) - x(a))}" height="${H - T - B}"><title>${esc(layer.label || "")}</title></rect>`);
      if (layer.label) parts.push(`<text class="lab" x="${x(a) + 4}" y="${T + 12}">${esc(layer.label)}</text>`);
    } else if (layer.band) {
      const pts = layer.band;
      if (!pts.length) continue;
      const top = pts.map(([t, , h]) => `${x(t)},${clampY(h)}`), bot = pts.map(([t, l]) => `${x(t)},${clampY(l)}`).reverse();
      parts.push(`<polygon class="band" points="${top.concat(bot).join(" ")}"/>`,
        `<polyline class="bandedge" points="${top.join(" ")}"/>`, `<polyline class="bandedge" points="${bot.join(" ")}"/>`);
      if (layer.warn) {
        const w = layer.warn;
        parts.push(`<polyline class="warnline" points="${pts.map(([t, , h]) => `${x(t)},${clampY(h * w)}`).join(" ")}"/>`,
          `<polyline class="warnline" points="${pts.map(([t, l]) => `${x(t)},${clampY(l * w)}`).join(" ")}"/>`);
      }
      if (layer.label) parts.push(`<text class="lab" x="${W - R - 4}" y="${clampY(pts[pts.length - 1][2]) - 5}" text-anchor="end">${esc(layer.label)}</text>`);
    } else if (layer.line) {
      const segs = [[]];
      for (const [t, v] of layer.line) {
        if (v == null) { if (segs[segs.length - 1].length) segs.push([]); continue; }
        segs[segs.length - 1].push(`${x(t)},${clampY(v)}`);
      }
      for (const s of segs) if (s.length > 1) parts.push(`<polyline class="${cls || "series"}" points="${s.join(" ")}"/>`);
    } else if (layer.dots) {
      for (const [t, v, c, title] of layer.dots) {
        if (v == null) continue;
        parts.push(`<circle class="${c || cls || "pt"}" cx="${x(t)}" cy="${clampY(v)}" r="${layer.r || 3.2}"><title>${esc(title || "")}</title></circle>`);
      }
    } else if (layer.hline !== undefined) {
      parts.push(`<line class="${cls || "limit"}" x1="${L}" x2="${W - R}" y1="${y(layer.hline)}" y2="${y(layer.hline)}"/>`);
      if (layer.label) parts.push(`<text class="lab" x="${W - R - 4}" y="${y(layer.hline) - 4}" text-anchor="end">${esc(layer.label)}</text>`);
    } else if (layer.vline !== undefined) {
      if (layer.vline < t0 || layer.vline > t1) continue;  // off the fitted axis
      parts.push(`<line class="${cls || "now"}" x1="${x(layer.vline)}" x2="${x(layer.vline)}" y1="${T}" y2="${H - B}"/>`);
      if (layer.label) parts.push(`<text class="lab" x="${x(layer.vline) - 4}" y="${layer.bottom ? H - B - 6 : T + 12}" text-anchor="end">${esc(layer.label)}</text>`);
    }
  }
  parts.push(`<line class="axis" x1="${L}" x2="${L}" y1="${T}" y2="${H - B}"/>`,
    `<line class="axis" x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}"/>`);
  if (o.yLabel) parts.push(`<text class="lab" transform="translate(13 ${(H - B + T) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  return `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(o.title || "")}">${parts.join("")}</svg>`;
}

// sparkline of normalised errors r with the ±1 MPE band: the overview's glance at a trend.
export function spark(values) {
  const W = 220, H = 38, n = values.length;
  if (!n) return `<svg class="spark" viewBox="0 0 ${W} ${H}"><text x="0" y="24" class="tick" fill="#9aa6b8" font-size="11">no checks yet</text></svg>`;
  const m = Math.max(1.2, ...values.filter((v) => v != null).map(Math.abs));
  const y = (v) => H / 2 - v / m * (H / 2 - 3), x = (i) => n === 1 ? W / 2 : i / (n - 1) * (W - 6) + 3;
  const pts = values.map((v, i) => v == null ? null : `${x(i)},${y(v)}`).filter(Boolean).join(" ");
  const last = values[n - 1];
  const colour = last == null ? "#9aa6b8" : Math.abs(last) > 1 ? "var(--out)" : Math.abs(last) > 0.8 ? "var(--warning)" : "#2f6fed";
  return `<svg class="spark" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" aria-label="recent check errors">
    <rect x="0" y="${y(1)}" width="${W}" height="${y(-1) - y(1)}" fill="rgba(31,157,85,.09)"/>
    <line x1="0" x2="${W}" y1="${y(0)}" y2="${y(0)}" stroke="#e3e8ef"/>
    <polyline points="${pts}" fill="none" stroke="${colour}" stroke-width="1.6" vector-effect="non-scaling-stroke"/>
    ${last == null ? "" : `<circle cx="${x(n - 1)}" cy="${y(last)}" r="2.6" fill="${colour}"/>`}</svg>`;
}
