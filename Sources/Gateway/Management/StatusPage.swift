/// The status page: one static document (HTML, CSS and JS inline, no external resource: clusters run offline) that
/// polls `/v1/cluster` on its own origin every second and draws it.
enum StatusPage {
    static let html: [UInt8] = Array(source.utf8)

    static let source = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MindIE-MS cluster</title>
<style>
:root {
  --bg: #f4f6f9; --panel: #ffffff; --ink: #1c2330; --muted: #6b7585; --line: #e2e6ec;
  --prefill: #2563eb; --decode: #8b3fd9; --mixed: #0f9488;
  --up: #16a34a; --down: #dc2626; --offline: #d97706; --gone: #9aa3b1;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
header { display: flex; align-items: center; gap: 14px; padding: 14px 24px; background: #151b26; color: #e9edf3; }
header h1 { font-size: 18px; font-weight: 600; margin: 0; letter-spacing: .2px; }
header .sub { color: #9aa6b8; font-size: 13px; }
header .spacer { flex: 1; }
.pill { display: inline-block; padding: 2px 9px; border-radius: 999px; font-size: 12px; font-weight: 600; white-space: nowrap; }
.pill.ok { background: #dcfce7; color: #166534; }
.pill.bad { background: #fee2e2; color: #991b1b; }
.pill.warn { background: #fef3c7; color: #92400e; }
.pill.dim { background: #e5e7eb; color: #4b5563; }
#conn { font-size: 12px; color: #9aa6b8; display: flex; align-items: center; gap: 6px; }
#conn .dot { width: 8px; height: 8px; border-radius: 50%; background: var(--up); }
#conn.stale .dot { background: var(--down); }
main { padding: 18px 24px 28px; max-width: 1400px; margin: 0 auto; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; margin-bottom: 18px; }
.tile { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 10px 14px; }
.tile .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .5px; }
.tile .v { font-size: 20px; font-weight: 600; margin-top: 2px; font-variant-numeric: tabular-nums; white-space: nowrap; }
.tile .v small { font-size: 12px; color: var(--muted); font-weight: 500; }
h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); margin: 22px 0 10px; font-weight: 600; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 12px; }
#topology svg { width: 100%; display: block; }
#topology .empty { color: var(--muted); padding: 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.card { background: var(--panel); border: 1px solid var(--line); border-left: 5px solid var(--mixed); border-radius: 10px; padding: 12px 14px; }
.card.role-prefill { border-left-color: var(--prefill); }
.card.role-decode { border-left-color: var(--decode); }
.card.state-gone { opacity: .62; border-left-style: dashed; }
.card.state-down { box-shadow: 0 0 0 2px #fecaca; }
.card .head { display: flex; align-items: center; gap: 8px; }
.role { font-weight: 700; font-size: 12px; color: #fff; border-radius: 6px; padding: 1px 7px; background: var(--mixed); }
.role.prefill { background: var(--prefill); }
.role.decode { background: var(--decode); }
.card .id { font-weight: 700; font-size: 16px; }
.card .addr { color: var(--muted); font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
.card .head .state { margin-left: auto; }
.card .meta { color: var(--muted); font-size: 12px; margin: 4px 0 8px; }
.card .reason { color: var(--down); font-size: 12px; margin: -4px 0 8px; }
.bar { margin: 5px 0; }
.bar .lbl { display: flex; justify-content: space-between; font-size: 12px; color: var(--muted); }
.bar .lbl b { color: var(--ink); font-weight: 600; font-variant-numeric: tabular-nums; }
.bar .track { height: 7px; background: #edf0f4; border-radius: 4px; overflow: hidden; margin-top: 2px; }
.bar .fill { height: 100%; background: #60a5fa; border-radius: 4px; transition: width .4s; }
.bar .fill.kv { background: #a78bfa; }
.bar .fill.hot { background: #f97316; }
.stats { display: grid; grid-template-columns: repeat(2, 1fr); gap: 4px 14px; margin-top: 8px; font-size: 12px; }
.stats div { display: flex; justify-content: space-between; border-bottom: 1px dotted var(--line); padding: 2px 0; }
.stats span { color: var(--muted); }
.stats b { font-weight: 600; font-variant-numeric: tabular-nums; }
.foot { display: flex; gap: 6px; flex-wrap: wrap; margin-top: 9px; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th { text-align: left; color: var(--muted); font-weight: 600; font-size: 12px; padding: 6px 8px; border-bottom: 1px solid var(--line); }
td { padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.none { color: var(--muted); padding: 6px 8px; }
#banner { display: none; background: #fee2e2; color: #991b1b; padding: 8px 24px; font-size: 13px; }
#banner.show { display: block; }
</style>
</head>
<body>
<header>
  <h1>MindIE-MS</h1><span class="sub" id="mode">Coordinator status</span>
  <span id="ready" class="pill dim">…</span>
  <span class="spacer"></span>
  <span id="conn" class="stale"><span class="dot"></span><span id="conntext">connecting…</span></span>
</header>
<div id="banner"></div>
<main id="app" data-polls="0">
  <section class="tiles" id="tiles"></section>
  <h2>Topology</h2>
  <div class="panel" id="topology"><div class="empty">waiting for the first update…</div></div>
  <h2>Instances</h2>
  <div class="cards" id="instances"></div>
  <h2>Recent errors</h2>
  <div class="panel" id="errors"><div class="none">none</div></div>
</main>
<script>
"use strict";
const ROLE = { prefill: "P", decode: "D", mixed: "U" };
const STATE_PILL = { up: "ok", down: "bad", offline: "warn", gone: "dim" };
let polls = 0, failures = 0, lastOk = 0;

function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function ms(v) {
  if (v === null || v === undefined) return "—";
  if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 1 : 2) + " s";
  if (v >= 10) return v.toFixed(0) + " ms";
  return v.toFixed(1) + " ms";
}
function rate(v) { return v === null || v === undefined ? "—" : (v >= 10 ? v.toFixed(0) : v.toFixed(1)); }
function pct(v) { return v === null || v === undefined ? "—" : (100 * v).toFixed(v < 0.1 ? 1 : 0) + "%"; }
function lat(l) { return l && l.count ? `${ms(l.p50)} <small>/ ${ms(l.p99)}</small>` : "—"; }
function clock(tms) { return new Date(tms).toLocaleTimeString([], { hour12: false }); }
function uptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

function tiles(c) {
  const inst = c.instances.filter(i => i.state !== "gone");
  const up = inst.filter(i => i.state === "up").length;
  const co = c.coordinator;
  const t = [
    ["Instances", `${up} <small>/ ${inst.length} up</small>`],
    ["In flight", co.in_flight],
    ["Requests / s", rate(co.requests_per_second)],
    ["TTFT p50 / p99", lat(co.ttft_ms)],
    ["ITL p50 / p99", lat(co.itl_ms)],
    ["Coordinator master", esc(co.master)],
    ["Controller leader", esc(c.controller.leader)],
    ["Uptime", uptime(c.uptime_seconds)],
  ];
  return t.map(([k, v]) => `<div class="tile"><div class="k">${k}</div><div class="v">${v}</div></div>`).join("");
}

function bar(label, value, max, cls) {
  const r = max > 0 ? Math.max(0, Math.min(1, value / max)) : 0;
  const hot = r > 0.85 ? " hot" : "";
  return `<div class="bar"><div class="lbl"><span>${label}</span><b>${value} / ${max}</b></div>` +
    `<div class="track"><div class="fill ${cls}${hot}" style="width:${(100 * r).toFixed(1)}%"></div></div></div>`;
}

function card(i, byId) {
  const gone = i.state === "gone";
  const peers = (i.peers || []).filter(p => byId[p]);
  let meta = `group ${i.group}`;
  if (i.role === "decode" && peers.length) meta += ` · serves P ${peers.map(p => "#" + p).join(", ")}`;
  if (i.role === "prefill") {
    const ds = Object.values(byId).filter(d => d.role === "decode" && (d.peers || []).includes(i.id) && d.state !== "gone");
    if (ds.length) meta += ` · → D ${ds.map(d => "#" + d.id).join(", ")}`;
  }
  if (i.model) meta += ` · ${esc(i.model)}`;
  let body = "";
  if (gone) {
    body = `<div class="meta">gone since ${clock(i.gone_since_ms)}</div>`;
  } else {
    const kvUsed = i.kv.total_blocks - i.kv.free_blocks;
    body = bar("In flight (Coordinator)", i.in_flight, i.slots.total, "") +
      bar("KV blocks used", kvUsed, i.kv.total_blocks, "kv") +
      `<div class="stats">` +
      `<div><span>req/s</span><b>${rate(i.requests_per_second)}</b></div>` +
      `<div><span>prefix hit</span><b>${pct(i.prefix_cache_hit_rate)}</b></div>` +
      `<div><span>TTFT p50</span><b>${ms(i.ttft_ms.p50)}</b></div>` +
      `<div><span>TTFT p99</span><b>${ms(i.ttft_ms.p99)}</b></div>` +
      `<div><span>ITL p50</span><b>${ms(i.itl_ms.p50)}</b></div>` +
      `<div><span>ITL p99</span><b>${ms(i.itl_ms.p99)}</b></div>` +
      `</div><div class="foot">` +
      `<span class="pill ${i.circuit === "closed" ? "ok" : "bad"}">circuit ${esc(i.circuit.replace("_", "-"))}</span>` +
      (i.link ? `<span class="pill ${i.link === "up" ? "ok" : i.link === "connecting" ? "warn" : "bad"}">/dresult ${esc(i.link)}</span>` : "") +
      `<span class="pill ${i.controller === "published" ? "ok" : "warn"}">controller: ${esc(i.controller)}</span>` +
      (i.consecutive_failures ? `<span class="pill bad">${i.consecutive_failures} failures</span>` : "") +
      `</div>`;
  }
  return `<div class="card role-${i.role} state-${i.state}" data-instance-id="${i.id}" data-role="${i.role}" data-state="${i.state}">` +
    `<div class="head"><span class="role ${i.role}">${ROLE[i.role] || "?"}</span><span class="id">#${i.id}</span>` +
    `<span class="addr">${esc(i.address)}</span><span class="pill state ${STATE_PILL[i.state] || "dim"}">${esc(i.state)}</span></div>` +
    `<div class="meta">${meta}</div>` + (i.reason && !gone ? `<div class="reason">${esc(i.reason)}</div>` : "") +
    (gone ? `<div class="reason">${esc(i.reason)}</div>` : "") + body + `</div>`;
}

function topology(c) {
  const ps = c.instances.filter(i => i.role === "prefill"), ds = c.instances.filter(i => i.role === "decode");
  const ms_ = c.instances.filter(i => i.role === "mixed");
  const W = 900, bw = 220, bh = 50, gap = 16;
  const colour = { prefill: "#2563eb", decode: "#8b3fd9", mixed: "#0f9488" };
  const stateColour = { up: "#16a34a", down: "#dc2626", offline: "#d97706", gone: "#9aa3b1" };
  const node = (i, x, y) => {
    const g = i.state === "gone";
    return `<g class="node" data-instance-id="${i.id}"><rect x="${x}" y="${y}" width="${bw}" height="${bh}" rx="9" fill="${g ? "#f3f4f6" : "#fff"}" ` +
      `stroke="${colour[i.role]}" stroke-width="2" ${g ? 'stroke-dasharray="5 4"' : ""}/>` +
      `<rect x="${x}" y="${y}" width="34" height="${bh}" rx="9" fill="${g ? "#9aa3b1" : colour[i.role]}"/>` +
      `<rect x="${x + 24}" y="${y}" width="10" height="${bh}" fill="${g ? "#9aa3b1" : colour[i.role]}"/>` +
      `<text x="${x + 17}" y="${y + 31}" text-anchor="middle" fill="#fff" font-weight="700" font-size="15">${ROLE[i.role]}</text>` +
      `<text x="${x + 44}" y="${y + 21}" font-weight="700" font-size="14" fill="#1c2330">#${i.id}</text>` +
      `<text x="${x + 44}" y="${y + 38}" font-size="11" fill="#6b7585" font-family="monospace">${esc(i.address)}</text>` +
      `<circle cx="${x + bw - 14}" cy="${y + 16}" r="6" fill="${stateColour[i.state] || "#9aa3b1"}"/>` +
      `<text x="${x + bw - 26}" y="${y + 20}" text-anchor="end" font-size="11" fill="#6b7585">${g ? "gone" : i.in_flight + " in flight"}</text>` +
      `</g>`;
  };
  if (!ps.length && !ds.length) {
    if (!ms_.length) return `<div class="empty">no instances registered</div>`;
    const H = bh + 20;
    return `<svg viewBox="0 0 ${W} ${H}" height="${H}">` + ms_.map((i, k) => node(i, 10 + k * (bw + gap), 10)).join("") + `</svg>`;
  }
  const rows = Math.max(ps.length, ds.length, 1);
  const H = rows * (bh + gap) + gap;
  const px = 60, dx = W - 60 - bw;
  const y = (k, n) => gap + k * (bh + gap) + (rows - n) * (bh + gap) / 2;
  const pos = {};
  ps.forEach((p, k) => pos[p.id] = [px, y(k, ps.length)]);
  ds.forEach((d, k) => pos[d.id] = [dx, y(k, ds.length)]);
  let lines = "";
  for (const l of c.pd_links) {
    if (!pos[l.prefill] || !pos[l.decode]) continue;
    const [x1, y1] = pos[l.prefill], [x2, y2] = pos[l.decode];
    const up = l.link === "up";
    const sx = x1 + bw, sy = y1 + bh / 2, ex = x2, ey = y2 + bh / 2, mx = (sx + ex) / 2;
    lines += `<path class="pd-link" data-prefill="${l.prefill}" data-decode="${l.decode}" data-link="${esc(l.link)}" ` +
      `d="M${sx},${sy} C${mx},${sy} ${mx},${ey} ${ex},${ey}" fill="none" stroke="${up ? "#94a3b8" : "#dc2626"}" ` +
      `stroke-width="${up ? 2 : 2.5}" ${up ? "" : 'stroke-dasharray="6 5"'} marker-end="url(#arrow${up ? "" : "bad"})"/>`;
  }
  const defs = `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">` +
    `<path d="M0,0 L10,5 L0,10 z" fill="#94a3b8"/></marker>` +
    `<marker id="arrowbad" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">` +
    `<path d="M0,0 L10,5 L0,10 z" fill="#dc2626"/></marker></defs>`;
  const labels = `<text x="${px}" y="11" font-size="11" fill="#6b7585" font-weight="600">PREFILL</text>` +
    `<text x="${dx}" y="11" font-size="11" fill="#6b7585" font-weight="600">DECODE  (result links /dresult)</text>`;
  return `<svg viewBox="0 0 ${W} ${H}" height="${H}">${defs}${labels}${lines}` +
    ps.map(p => node(p, ...pos[p.id])).join("") + ds.map(d => node(d, ...pos[d.id])).join("") + `</svg>`;
}

function errors(c) {
  if (!c.recent_errors.length) return `<div class="none">none</div>`;
  return `<table><thead><tr><th>Time</th><th>Status</th><th>Instance</th><th>Message</th></tr></thead><tbody>` +
    c.recent_errors.map(e => `<tr class="error-row"><td class="num">${clock(e.time_ms)}</td>` +
      `<td class="num"><span class="pill ${e.status >= 500 ? "bad" : "warn"}">${e.status}</span></td>` +
      `<td class="num">${e.instance === null ? "—" : "#" + e.instance}</td><td>${esc(e.message)}</td></tr>`).join("") +
    `</tbody></table>`;
}

function render(c) {
  const byId = {};
  for (const i of c.instances) byId[i.id] = i;
  document.getElementById("mode").textContent = `${c.deploy_mode} · ${c.algorithm}`;
  const ready = document.getElementById("ready");
  ready.textContent = c.ready ? "ready" : "not ready";
  ready.className = "pill " + (c.ready ? "ok" : "bad");
  document.getElementById("tiles").innerHTML = tiles(c);
  document.getElementById("topology").innerHTML = topology(c);
  const order = { prefill: 0, decode: 1, mixed: 2 };
  const list = c.instances.slice().sort((a, b) => (a.state === "gone") - (b.state === "gone") || order[a.role] - order[b.role] || a.id - b.id);
  document.getElementById("instances").innerHTML = list.map(i => card(i, byId)).join("") || `<div class="none">no instances registered</div>`;
  document.getElementById("errors").innerHTML = errors(c);
}

async function poll() {
  const conn = document.getElementById("conn"), text = document.getElementById("conntext"), banner = document.getElementById("banner");
  try {
    // relative, so the page also works behind a reverse proxy that mounts it under a path
    const r = await fetch("v1/cluster", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const c = await r.json();
    render(c);
    polls += 1;
    failures = 0;
    lastOk = c.time_ms;
    const app = document.getElementById("app");
    app.dataset.polls = polls;
    app.dataset.updated = c.time_ms;
    conn.className = "";
    text.textContent = "live · " + clock(c.time_ms);
    banner.className = "";
  } catch (e) {
    failures += 1;
    conn.className = "stale";
    text.textContent = lastOk ? "stale since " + clock(lastOk) : "no answer";
    banner.textContent = `Cannot reach the Coordinator (${e.message || e}); retrying every second. Figures below are from ${lastOk ? clock(lastOk) : "never"}.`;
    banner.className = "show";
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
"""#
}
