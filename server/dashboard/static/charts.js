// Small SVG charts over time, no library: a chart is a list of layers drawn on shared
// time and value scales. Every value is escaped; every point carries a <title> tooltip.

export const esc = (v) => String(v ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

export const day = (ms) => ms == null ? "—" : new Date(ms).toISOString().slice(0, 10);
export const stamp = (ms) => ms == null ? "—" :
  new Date(ms).toISOString().slice(0, 16).replace("T", " ");

function niceTicks(lo, hi, n = 5) {
  const span = hi - lo || 1;
  const raw = span / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

function timeTicks(t0, t1) {
  const DAY = 86400000, span = t1 - t0;
  const step = [DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 182 * DAY, 365 * DAY]
    .find((s) => span / s <= 8) || 730 * DAY;
  const out = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
  return out;
}

// chart({width, height, t: [t0, t1], y: [lo, hi], yLabel, fmt, layers}) -> SVG text.
// Layers: {band: [[t, lo, hi]...]}, {line: [[t, y]...], cls}, {dots: [[t, y, cls, title]...]},
// {hline: y, cls, label}, {vspan: [t0, t1], cls, label}, {vline: t, cls, label}.
export function chart(o) {
  const W = o.width || 900, H = o.height || 240, L = 58, R = 16, T = 12, B = 28;
  let [t0, t1] = o.t, [lo, hi] = o.y;
  if (t1 <= t0) t1 = t0 + 86400000;
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
  for (const t of timeTicks(t0, t1)) {
    parts.push(`<line class="grid" x1="${x(t)}" x2="${x(t)}" y1="${T}" y2="${H - B}"/>`,
      `<text class="tick" x="${x(t)}" y="${H - B + 16}" text-anchor="middle">${day(t).slice(5)}</text>`);
  }
  for (const layer of o.layers) {
    const cls = layer.cls || "";
    if (layer.vspan) {
      const [a, b] = layer.vspan;
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
      parts.push(`<line class="${cls || "now"}" x1="${x(layer.vline)}" x2="${x(layer.vline)}" y1="${T}" y2="${H - B}"/>`);
      if (layer.label) parts.push(`<text class="lab" x="${x(layer.vline) - 4}" y="${T + 12}" text-anchor="end">${esc(layer.label)}</text>`);
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
