// The failover timeline: each leader election as a mark on a time axis, with a bar as tall as the time
// the cluster spent without a leader before it (leaderless_ms). Plain SVG, drawn here.

const NS = "http://www.w3.org/2000/svg";
const W = 800, H = 240, LEFT = 56, RIGHT = 16, TOP = 16, BOTTOM = 40;

function el(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });

export function drawTimeline(container, elections) {
  container.replaceChildren();
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${elections.length} leader elections; the longest without a leader: ` +
      `${Math.max(0, ...elections.map((e) => e.leaderless_ms || 0))} ms` });
  const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
  svg.append(el("line", { class: "axis", x1: LEFT, y1: TOP + plotH, x2: W - RIGHT, y2: TOP + plotH }));
  svg.append(el("line", { class: "axis", x1: LEFT, y1: TOP, x2: LEFT, y2: TOP + plotH }));
  if (elections.length === 0) {
    svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "No leader election seen yet"));
    container.append(svg);
    return;
  }
  const times = elections.map((e) => e.time);
  let t0 = Math.min(...times), t1 = Math.max(...times);
  if (t1 - t0 < 60) { const mid = (t0 + t1) / 2; t0 = mid - 30; t1 = mid + 30; } // at least a minute
  const pad = (t1 - t0) * 0.05; // no bar on the plot's edge
  t0 -= pad; t1 += pad;
  const maxMs = Math.max(100, ...elections.map((e) => e.leaderless_ms || 0));
  const x = (t) => LEFT + ((t - t0) / (t1 - t0)) * plotW;
  const y = (ms) => TOP + plotH - (ms / maxMs) * plotH;
  svg.append(el("text", { x: LEFT - 6, y: TOP + 4, "text-anchor": "end" }, `${maxMs} ms`));
  svg.append(el("text", { x: LEFT - 6, y: TOP + plotH, "text-anchor": "end" }, "0"));
  svg.append(el("text", { x: LEFT, y: H - 8 }, clock(t0)));
  svg.append(el("text", { x: W - RIGHT, y: H - 8, "text-anchor": "end" }, clock(t1)));
  const xs = elections.map((e) => x(e.time));
  for (const e of elections) {
    const ms = e.leaderless_ms || 0, cx = x(e.time);
    const group = el("g", { class: "election", "data-term": e.term });
    group.append(el("title", {}, `term ${e.term}: ${e.node} elected at ${clock(e.time)} after ${ms} ms without a leader`));
    group.append(el("line", { class: "mark", x1: cx, y1: TOP, x2: cx, y2: TOP + plotH }));
    group.append(el("rect", { class: "bar", x: cx - 5, y: Math.min(y(ms), TOP + plotH - 2), width: 10,
      height: Math.max(2, TOP + plotH - y(ms)) }));
    svg.append(group);
  }
  // Labels on top, each beside its bar where it crosses no other bar or label (the table below has
  // every value).
  const LABEL_W = 112;
  let taken = -Infinity; // right end of the last label drawn
  elections.forEach((e, i) => {
    const ms = e.leaderless_ms || 0, cx = xs[i];
    const free = (lo, hi) => lo >= Math.max(LEFT, taken) && hi <= W - RIGHT && xs.every((o, j) => j === i || o + 6 < lo || o - 6 > hi);
    const side = free(cx + 8, cx + 8 + LABEL_W) ? 1 : free(cx - 8 - LABEL_W, cx - 8) ? -1 : 0;
    if (side === 0) return;
    svg.append(el("text", { x: cx + side * 8, y: Math.min(TOP + plotH - 4, Math.max(TOP + 12, y(ms) + 12)), "text-anchor": side > 0 ? "start" : "end" },
      `term ${e.term}: ${ms} ms`));
    taken = side > 0 ? cx + 8 + LABEL_W : cx - 8;
  });
  container.append(svg);
}
