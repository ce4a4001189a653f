// The recall graph: the lot on the left, then the places that held it, each one column
// after the place it came from (edges are movements that happened: server/dashboard/
// recall.py), each instrument one column after the place where it sold. Layers come from
// the longest path from the lot (back edges of a cycle are ignored); order within a layer
// follows the parents.
import { esc } from "./charts.js";

const STATE_CLASS = (s) => `s-${s || "none"}`;
const short = (urn) => String(urn || "?").replace(/^urn:epc:(id|class):[a-z]+:/, "");
// an SGLN without its company prefix (MKT1.1): enough beside a state in a small box
const where = (urn) => String(urn || "").startsWith("urn:epc:id:sgln:") ? short(urn).split(".").slice(1).join(".") : short(urn);

function layers(nodes, edges) {
  const out = new Map(nodes.map((n) => [n.id, []]));
  for (const e of edges) out.get(e.src)?.push(e.dst);
  const depth = new Map([["lot", 0]]), onStack = new Set();
  const visit = (id) => {  // longest path by DFS (graphs here are small)
    onStack.add(id);
    for (const next of out.get(id) || []) {
      if (onStack.has(next)) continue;
      const d = depth.get(id) + 1;
      if (!depth.has(next) || depth.get(next) < d) { depth.set(next, d); visit(next); }
    }
    onStack.delete(id);
  };
  visit("lot");
  for (const n of nodes) if (!depth.has(n.id)) depth.set(n.id, 1);
  return depth;
}

export function drawGraph(graph) {
  const { nodes, edges } = graph;
  if (nodes.length <= 1) return `<p class="empty">Nothing downstream of this lot yet.</p>`;
  const depth = layers(nodes, edges);
  const cols = [];
  for (const n of nodes) (cols[depth.get(n.id)] ||= []).push(n);
  const parents = new Map();
  for (const e of edges) (parents.get(e.dst) || parents.set(e.dst, []).get(e.dst)).push(e.src);
  const pos = new Map();
  const NW = 190, NH = 46, GX = 120, GY = 16;
  cols.forEach((col, c) => {
    if (!col) return;
    if (c > 0) {  // barycentre of parents keeps edges short
      const bary = (n) => { const ps = (parents.get(n.id) || []).map((p) => pos.get(p)?.row ?? 0);
        return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : 0; };
      col.sort((a, b) => bary(a) - bary(b) || String(a.label).localeCompare(String(b.label)));
    }
    col.forEach((n, r) => pos.set(n.id, { col: c, row: r }));
  });
  const rows = Math.max(...cols.filter(Boolean).map((c) => c.length));
  const H = rows * (NH + GY) + 20, W = cols.length * (NW + GX) - GX + 20;
  const place = (id) => {
    const p = pos.get(id), col = cols[p.col];
    const off = (rows - col.length) * (NH + GY) / 2;
    return { x: 10 + p.col * (NW + GX), y: 10 + off + p.row * (NH + GY) };
  };
  const parts = [];
  for (const e of edges) {
    const a = place(e.src), b = place(e.dst);
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
    const sale = e.dst.startsWith("inst:");
    const name = (urn) => String(urn).split(/[.:]/).pop();
    const label = sale ? `${e.count} sale${e.count === 1 ? "" : "s"}` : e.kind === "site" ? "on site"
      : name(e.objects[0]) + (e.objects.length > 1 ? ` +${e.objects.length - 1}` : "");
    parts.push(`<path class="edge${sale ? " sale" : ""}${e.kind === "site" ? " site" : ""}" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}" marker-end="url(#arrow)"><title>${esc(e.objects.join("\n"))}</title></path>`,
      `<text class="elab" x="${mx}" y="${(y1 + y2) / 2 - 5}" text-anchor="middle">${esc(label)}</text>`);
  }
  for (const n of nodes) {
    const p = place(n.id);
    const cls = n.kind === "instrument" ? `node instrument ${STATE_CLASS(n.state)}` : `node ${n.kind}`;
    const title = short(n.label);
    const sub = n.kind === "instrument" ? `${(n.state || "not registered").replaceAll("_", " ")} · ${where(n.place)}`
      : n.kind === "lot" ? "recalled lot" : n.site ? `part of ${where(n.site)}` : "holder";
    const link = n.kind === "instrument" && n.state ? `#/instrument/${encodeURIComponent(n.label)}` : null;
    const box = `<g class="${cls}" transform="translate(${p.x} ${p.y})"><rect width="${NW}" height="${NH}" rx="8"/>
      <text x="12" y="19">${esc(title.length > 26 ? title.slice(0, 25) + "…" : title)}</text>
      <text class="t2" x="12" y="36">${esc(sub)}</text><title>${esc(n.label)}</title></g>`;
    parts.push(link ? `<a href="${link}">${box}</a>` : box);
  }
  return `<svg class="graph" viewBox="0 0 ${W} ${H}" style="max-width:${W}px" role="img" aria-label="recall graph">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
    <path d="M0,0 L10,5 L0,10 z" fill="#9fb0c8"/></marker></defs>${parts.join("")}</svg>`;
}
