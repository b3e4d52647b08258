// The dashboard's single page: hash routes (#/cluster, #/nodes, #/services, #/events, #/timeline), lists
// read from the API, kept current by the event stream; no page reloads.

import { api } from "./api.js";
import { EventStream } from "./stream.js";
import { drawTimeline } from "./timeline.js";

const PAGES = ["cluster", "nodes", "services", "events", "timeline"];
const MAX_EVENTS = 500;
const $ = (id) => document.getElementById(id);

// Replica counts typed but not yet sent, by service: a re-render must not wipe them.
const edits = new Map();
const state = { cluster: null, nodes: [], services: [], tasks: [], events: [], elections: new Map() };

// -- small DOM helpers: text only, never HTML, so names and messages from the cluster stay text --------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const stateCell = (text) => h("td", { class: `state-${String(text).replace(/\W+/g, "-")}` }, text);
const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString([], { hour12: false }) : "");
const tags = (obj) => Object.entries(obj || {}).map(([k, v]) => h("span", { class: "tag" }, `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`));

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

// A node's resources as an operator reads them: CPUs, memory, drivers; other entries when set.
function resourceTags(r) {
  const out = [];
  for (const [k, v] of Object.entries(r || {})) {
    if (v === false || v === null || (Array.isArray(v) && v.length === 0)) continue;
    if (k === "memory" && typeof v === "number") out.push(h("span", { class: "tag" }, `memory ${bytes(v)}`));
    else if (k === "cpus") out.push(h("span", { class: "tag" }, `${v} CPUs`));
    else out.push(h("span", { class: "tag" }, `${k}=${Array.isArray(v) ? v.join(",") : typeof v === "object" ? JSON.stringify(v) : v}`));
  }
  return out;
}

function fillRows(table, rows) { table.tBodies[0].replaceChildren(...rows); }

// -- pages ----------------------------------------------------------------------------------------------

function renderCluster() {
  const c = state.cluster;
  if (!c) return;
  const leader = c.leader ? (c.leader.name || `raft id ${c.leader.raft_id}`) : "none";
  const items = [
    ["Leader", leader], ["Term", c.raft.term], ["Commit index", c.raft.commit_index ?? "?"],
    ["Applied index", c.raft.applied_index ?? "?"],
    ["Quorum", `${c.quorum.reachable}/${c.quorum.managers} reachable, ${c.quorum.needed} needed` + (c.quorum.ok ? "" : " (lost)")],
    ["Workers", c.workers], ["Answered by", c.node], ["Cluster ID", c.cluster_id],
  ];
  $("cluster-summary").replaceChildren(...items.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", { "data-field": k }, v))));
  fillRows($("managers"), c.managers.map((m) => h("tr", { "data-name": m.name },
    h("th", { scope: "row" }, m.name), stateCell(m.role), stateCell(m.status),
    h("td", {}, m.raft_id ?? ""), h("td", {}, m.api_addr ?? ""))));
}

function renderNodes() {
  const running = new Map();
  for (const t of state.tasks) {
    if (t.node && t.desired_state === "running") running.set(t.node, [...(running.get(t.node) || []), t]);
  }
  fillRows($("nodes"), state.nodes.map((n) => h("tr", { "data-name": n.name },
    h("th", { scope: "row" }, n.name), h("td", {}, n.role), stateCell(n.state), stateCell(n.availability),
    h("td", {}, tags(n.labels)), h("td", {}, resourceTags(n.resources)),
    h("td", {}, (running.get(n.name) || []).map((t) => h("span", { class: "tag" }, `${t.name} (${t.state})`))))));
}

async function act(button, what, call) {
  const result = $("action-result");
  button.disabled = true;
  result.classList.remove("error");
  try {
    await call();
    result.textContent = `${what}: done`;
    await refresh();
  } catch (err) {
    result.classList.add("error");
    result.textContent = `${what}: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

function restartsBySlot(tasks) {
  // A task that ended is replaced by a new one in the same slot: the slot's restarts are its older tasks.
  const bySlot = new Map();
  for (const t of tasks) {
    const key = t.slot ?? t.node;
    bySlot.set(key, (bySlot.get(key) || 0) + 1);
  }
  return (t) => (bySlot.get(t.slot ?? t.node) || 1) - 1;
}

function renderServices() {
  const root = $("services");
  if (state.services.length === 0) { root.replaceChildren(h("p", {}, "No services.")); return; }
  const focused = document.activeElement && document.activeElement.id;
  root.replaceChildren(...state.services.map((s) => {
    const tasks = state.tasks.filter((t) => t.service_name === s.name);
    const current = tasks.filter((t) => t.desired_state === "running");
    const restarts = restartsBySlot(tasks);
    const input = h("input", { type: "number", min: 0, max: 10000, id: `replicas-${s.name}`, value: edits.get(s.name) ?? s.spec.replicas ?? s.replicas_desired,
      oninput: (ev) => edits.set(s.name, ev.target.value) });
    const scale = h("button", { type: "button", id: `scale-${s.name}`,
      onclick: () => act(scale, `scale ${s.name} to ${input.value}`, async () => { await api.scale(s.name, Number(input.value)); edits.delete(s.name); }) }, "Scale");
    const rollback = h("button", { type: "button", class: "secondary", id: `rollback-${s.name}`, disabled: !s.has_previous,
      onclick: () => act(rollback, `roll back ${s.name}`, () => api.rollback(s.name)) }, "Roll back");
    const update = s.update_status ? `update: ${s.update_status.state}${s.update_status.message ? " — " + s.update_status.message : ""}` : "";
    return h("article", { class: "service", "data-name": s.name, "aria-labelledby": `svc-${s.name}` },
      h("h3", { id: `svc-${s.name}` }, s.name),
      h("p", {}, h("span", { "data-field": "replicas" }, `${s.replicas_running}/${s.replicas_desired} running`),
        ` · ${s.spec.mode || "replicated"} · ${s.spec.image}`, update ? ` · ${update}` : ""),
      h("div", { class: "controls" }, h("label", { for: input.id }, "Replicas", input), scale, rollback),
      h("div", { class: "scroll" }, h("table", {},
        h("caption", { class: "sr" }, `Tasks of ${s.name}`),
        h("thead", {}, h("tr", {}, ["Task", "State", "Health", "Node", "Restarts", "Message"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, current.map((t) => h("tr", { "data-task": t.id },
          h("th", { scope: "row" }, t.name), stateCell(t.state), stateCell(t.health || ""), h("td", {}, t.node ?? ""),
          h("td", {}, restarts(t)), h("td", {}, t.message || "")))))));
  }));
  if (focused) { const again = document.getElementById(focused); if (again) again.focus(); }
}

function describe(e) {
  // The message names its actor already; without one, the actor and the action say it.
  return e.message || `${e.actor || ""} ${e.action}`.trim();
}

function addEventRow(e, gap) {
  const list = $("events");
  const row = gap
    ? h("li", { class: "gap" }, h("time", {}, clock(Date.now() / 1000)), h("span", {}, "gap"), h("span", {}, gap))
    : h("li", { "data-id": e.id, "data-type": e.type }, h("time", { datetime: new Date(e.time * 1000).toISOString() }, clock(e.time)),
      h("span", {}, `${e.type} ${e.action}`), h("span", {}, describe(e)));
  list.prepend(row);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

function lostText(data) {
  // The events API says what is missing ({"after", "before", "message"}); the lists are read again.
  return typeof data.message === "string" && data.message ? data.message : "some events were lost";
}

function renderTimeline() {
  const elections = [...state.elections.values()].sort((a, b) => a.time - b.time);
  drawTimeline($("timeline-chart"), elections);
  fillRows($("elections"), elections.slice().reverse().map((e) => h("tr", { "data-term": e.term },
    h("td", {}, clock(e.time)), h("td", {}, e.term), h("td", {}, e.node), h("td", {}, `${e.leaderless_ms} ms`))));
}

function renderAll() { renderCluster(); renderNodes(); renderServices(); renderTimeline(); }

// -- data -----------------------------------------------------------------------------------------------

// One read of the lists at a time; a refresh asked for while one runs comes after it (that one may have
// read the lists before the change that asked).
let refreshing = null;
let again = false;
async function refresh() {
  if (refreshing) { again = true; return refreshing; }
  refreshing = (async () => {
    do {
      again = false;
      try {
        const [cluster, nodes, services, tasks] = await Promise.all([api.cluster(), api.nodes(), api.services(), api.tasks()]);
        Object.assign(state, { cluster, nodes, services, tasks });
        renderAll();
        $("problem").textContent = "";
      } catch (err) {
        $("problem").textContent = `Cannot read the cluster: ${err.message}`;
      }
    } while (again);
    refreshing = null;
  })();
  return refreshing;
}

// Many events arrive together (a scale, a failover): one refresh for the lot.
let pending = null;
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh(); }, 150);
}

function onEvent(e) {
  addEventRow(e);
  if (e.type === "leader" && e.action === "elected") {
    const a = e.attributes || {};
    state.elections.set(String(a.term ?? e.id), { time: e.time, term: a.term, node: a.node ?? e.actor, leaderless_ms: Number(a.leaderless_ms ?? 0) });
    renderTimeline();
  }
  if (["leader", "manager", "node", "task", "service"].includes(e.type)) refreshSoon();
}

// While the stream is down (no events API, the dashboard's server away, every manager unreachable),
// the lists are read again every few seconds instead.
const POLL_MS = 2000;
let poller = null;
function pollWhileDown(down) {
  if (down && !poller) poller = setInterval(refresh, POLL_MS);
  if (!down && poller) { clearInterval(poller); poller = null; }
}

function setLink(stateName, text) {
  pollWhileDown(stateName === "down");
  const link = $("link");
  link.dataset.state = stateName;
  link.textContent = text;
}

// -- routing ----------------------------------------------------------------------------------------------

function show() {
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const page = PAGES.includes(name) ? name : "cluster";
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.dataset.page !== page;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `Warren — ${page}`;
}

window.addEventListener("hashchange", () => { show(); $("main").focus(); });
show();
refresh();
new EventStream({
  onEvent,
  onGap: (kind, data) => {
    addEventRow(null, kind === "overflow" ? "fell behind the stream; resuming" : lostText(data));
    refresh();
  },
  onState: (s) => setLink(s, s === "live" ? "live" : s === "down" ? "reconnecting…" : "connecting…"),
  onResume: () => refresh(),
}).start();
