// The HTTP API reference, drawn from the server's /openapi.json: every path and method with
// its parameters, body and answers, then the schemas. No Swagger UI (it comes from a CDN).
import { esc } from "./charts.js";
import { table } from "./ui.js";

const view = document.getElementById("view");
const ref = (s) => s?.$ref ? s.$ref.split("/").pop() : null;

function type(s) {
  if (!s) return "—";
  if (ref(s)) return `<a href="#schema-${esc(ref(s))}">${esc(ref(s))}</a>`;
  if (s.anyOf) return s.anyOf.map(type).join(" | ");
  if (s.type === "array") return `${type(s.items)}[]`;
  if (s.enum) return s.enum.map((v) => `<code>${esc(v)}</code>`).join(" | ");
  return esc(s.type || "object");
}

function operation(path, method, op) {
  const params = (op.parameters || []).map((p) => `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td>
    <td>${p.required ? "required" : ""}</td><td>${type(p.schema)}</td><td>${esc(p.description || p.schema?.description || "")}</td></tr>`);
  const body = op.requestBody ? Object.entries(op.requestBody.content || {}).map(([media, c]) =>
    `<p><b>Body</b> <code>${esc(media)}</code>: ${type(c.schema)}</p>`).join("") : "";
  const answers = Object.entries(op.responses || {}).map(([code, r]) => `<tr><td><b>${esc(code)}</b></td>
    <td>${esc(r.description || "")}</td><td>${Object.values(r.content || {}).map((c) => type(c.schema)).join(", ")}</td></tr>`);
  const id = `op-${method}-${path}`.replace(/[^a-zA-Z0-9-]/g, "_");
  return `<div class="card op" id="${esc(id)}" data-op="${esc(method.toUpperCase())} ${esc(path)}">
    <div class="top2"><span class="verb v-${esc(method)}">${esc(method.toUpperCase())}</span><code class="path">${esc(path)}</code>
    <span class="sub" style="margin:0">${esc(op.summary || "")}</span></div>
    ${op.description ? `<p>${esc(op.description)}</p>` : ""}
    ${params.length ? table(["parameter", "in", "", "type", "description"], params) : ""}${body}
    ${answers.length ? table(["answer", "meaning", "body"], answers) : ""}</div>`;
}

function schema(name, s) {
  const required = new Set(s.required || []);
  const rows = Object.entries(s.properties || {}).map(([k, p]) => `<tr><td><code>${esc(k)}</code></td>
    <td>${required.has(k) ? "required" : ""}</td><td>${type(p)}</td><td>${esc(p.description || p.title || "")}</td></tr>`);
  return `<div class="card" id="schema-${esc(name)}"><h3>${esc(name)}</h3>
    ${s.description ? `<p class="sub">${esc(s.description)}</p>` : ""}${rows.length ? table(["field", "", "type", "description"], rows) : ""}</div>`;
}

async function main() {
  let doc;
  try {
    const res = await fetch("/openapi.json");
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    doc = await res.json();
  } catch (e) {
    view.innerHTML = `<p class="error">Could not read /openapi.json: ${esc(e.message)}</p>`;
    return;
  }
  const ops = Object.entries(doc.paths || {}).flatMap(([path, item]) =>
    Object.entries(item).filter(([m]) => ["get", "post", "put", "patch", "delete"].includes(m))
      .map(([method, op]) => ({ path, method, op, tag: (op.tags || ["other"])[0] })));
  const tags = [...new Set(ops.map((o) => o.tag))];
  const toc = tags.map((t) => `<a class="chip" href="#tag-${esc(t)}">${esc(t)} <b>${ops.filter((o) => o.tag === t).length}</b></a>`).join("");
  const sections = tags.map((t) => `<h2 id="tag-${esc(t)}">${esc(t)}</h2><div class="stack">${ops.filter((o) => o.tag === t)
    .map((o) => operation(o.path, o.method, o.op)).join("")}</div>`).join("");
  const schemas = Object.entries(doc.components?.schemas || {}).map(([n, s]) => schema(n, s)).join("");
  view.innerHTML = `<h1>${esc(doc.info?.title || "API")} HTTP API <span class="sub">version ${esc(doc.info?.version || "")} · OpenAPI ${esc(doc.openapi || "")}</span></h1>
    <p class="sub">${esc(doc.info?.description || "")}</p><div class="chips">${toc}</div>${sections}
    <h2>Schemas</h2><div class="stack">${schemas || `<p class="empty">None.</p>`}</div>`;
  view.dataset.ready = "docs";
}

main();
