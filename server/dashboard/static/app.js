// The dashboard's shell: hash routes to views, and live redraws. Every few seconds it asks
// the server for the store's counts; when they change, the current view is redrawn.
import { alerts, gateways, rejects } from "./audit.js";
import { esc } from "./charts.js";
import { instrument, overview } from "./fleet.js";
import { bindRecall, recall } from "./recall.js";
import { api } from "./ui.js";

const POLL_MS = 2000;
const view = document.getElementById("view");
let last = null, drawing = false, pending = false;

function route() {
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "instrument" && parts[1]) return ["overview", () => instrument(decodeURIComponent(parts[1]))];
  if (parts[0] === "alerts") return ["alerts", alerts];
  if (parts[0] === "gateways") return ["gateways", gateways];
  if (parts[0] === "rejects") return ["rejects", rejects];
  if (parts[0] === "recall") return ["recall", () => recall(params)];
  return ["overview", overview];
}

async function draw(keepScroll = false) {
  if (drawing) { pending = true; return; }
  drawing = true;
  const [nav, render] = route();
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
  const y = window.scrollY;
  try {
    const html = await render();
    const open = [...view.querySelectorAll("details[open]")].map((d) => d.closest("[data-alarm]")?.dataset.alarm);
    view.innerHTML = html;
    view.querySelectorAll("[data-alarm]").forEach((el) => { if (open.includes(el.dataset.alarm)) el.querySelector("details")?.setAttribute("open", ""); });
    bindRecall(view);
    view.dataset.ready = location.hash || "#/";
  } catch (e) {
    view.innerHTML = `<p class="error">Could not load this page: ${esc(e.message)}</p>`;
    // an answer of the server or a lost connection is shown; anything else is a bug
    if (e.status === undefined && !(e instanceof TypeError && /fetch/i.test(e.message))) console.error(e);
    view.dataset.ready = "error";
  }
  if (keepScroll) window.scrollTo(0, y); else window.scrollTo(0, 0);
  drawing = false;
  if (pending) { pending = false; draw(true); }
}

async function poll() {
  const live = document.getElementById("live"), text = document.getElementById("live-text");
  try {
    const p = await api("/dashboard/api/pulse");
    live.className = "live on";
    text.textContent = `live · ${p.records.toLocaleString()} records · ${new Date(p.now).toISOString().slice(11, 19)} UTC`;
    document.getElementById("nav-rejects").textContent = p.rejects || "";
    document.getElementById("nav-alerts").textContent = p.alerts || "";
    const key = [p.records, p.rejects, p.alerts, p.instruments].join("/");
    if (last !== null && key !== last && !document.querySelector("input:focus")) draw(true);
    last = key;
  } catch {
    live.className = "live off";
    text.textContent = "server not reachable — retrying";
  }
}

window.addEventListener("hashchange", () => draw(false));
draw(false);
poll();
setInterval(poll, POLL_MS);
