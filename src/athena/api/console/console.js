// Athena's operator console. Plain DOM, no framework, no build step. Everything people said is put on the
// page with textContent (never as HTML), and the page's Content-Security-Policy allows no inline script.
"use strict";

const PATHS = ["local", "llm", "tools", "reset", "error", "refused"];
const POLL_MS = 2000;
const state = { token: null, device: null, session: null, tab: "devices", timer: null, busy: false, note: "" };

// -- DOM helpers: every string becomes a text node ------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
const $ = (sel) => document.querySelector(sel);
const when = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "–");
const clock = (ts) => new Date(ts * 1000).toLocaleTimeString();
function ago(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  return seconds >= 3600 ? `${Math.floor(seconds / 3600)}h${String(Math.floor(seconds % 3600 / 60)).padStart(2, "0")}m`
    : seconds >= 60 ? `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, "0")}s` : `${seconds}s`;
}
const ms = (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} ms`);
const enc = (device) => encodeURIComponent(device).replace(/%2F/g, "/");

// -- the API: the token in memory, on every call ------------------------------------------------------
class Unauthorized extends Error {}
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (resp.status === 401) throw new Unauthorized();
  const data = await resp.json().catch(() => null);
  if (!resp.ok) throw new Error((data && data.error && data.error.message) || `HTTP ${resp.status}`);
  return { data, resp };
}
function failed(err) {
  if (err instanceof Unauthorized) { logout("The gateway refused the token."); return; }
  $("#live").textContent = `Error: ${err.message}`;
}

// -- login ------------------------------------------------------------------------------------------
async function login(event) {
  event.preventDefault();
  state.token = $("#token").value.trim();
  $("#login-error").textContent = "";
  try {
    await api("GET", "/athena/info");
  } catch (err) {
    state.token = null;
    $("#login-error").textContent = err instanceof Unauthorized ? "Wrong token." : `Cannot reach the gateway: ${err.message}`;
    return;
  }
  $("#login").hidden = true;
  $("#app").hidden = false;
  await refresh();
  state.timer = setInterval(refresh, POLL_MS);
}
function logout(message) {
  clearInterval(state.timer);
  Object.assign(state, { token: null, device: null, session: null, timer: null });
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#devices tbody").replaceChildren();
  $("#detail").replaceChildren();
  $("#usage").replaceChildren();
  $("#token").value = "";
  $("#login-error").textContent = message || "";
}

// -- devices ----------------------------------------------------------------------------------------
async function refresh() {
  if (!state.token || state.busy) return;
  state.busy = true;
  try {
    if (state.tab === "devices") {
      const { data } = await api("GET", "/athena/devices");
      renderDevices(data);
      if (state.device) await renderDetail();
    } else {
      await renderUsage();
    }
    $("#live").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    failed(err);
  } finally {
    state.busy = false;
  }
}

function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

function renderDevices(data) {
  $("#policy").textContent = `policy: ${data.policy}`;
  $("#no-devices").hidden = data.devices.length > 0;
  const rows = data.devices.map((d) => {
    const live = d.session;
    const decide = d.status === "allowed" ? null : h("span", { class: "actions" },
      d.status === "pending" ? h("button", { type: "button", class: "allow", onclick: (e) => { e.stopPropagation(); setStatus(d.id, "allowed"); } }, "Allow") : null,
      d.status === "blocked" ? h("button", { type: "button", class: "allow", onclick: (e) => { e.stopPropagation(); setStatus(d.id, "allowed"); } }, "Unblock") : null,
      d.status === "pending" ? h("button", { type: "button", class: "block danger", onclick: (e) => { e.stopPropagation(); setStatus(d.id, "blocked"); } }, "Block") : null);
    return h("tr", { "data-device": d.id, class: d.id === state.device ? "selected" : null, onclick: () => select(d.id) },
      h("td", {}, d.id), h("td", {}, d.name || "–"), h("td", {}, d.area || "–"), h("td", {}, statusBadge(d.status)),
      h("td", {}, when(d.first_seen)), h("td", {}, when(d.last_seen)), h("td", {}, d.turns + (d.refused ? ` (+${d.refused} refused)` : "")),
      h("td", {}, live ? `${live.turns} turns, ends in ${ago(live.expires_in)}` : "–"), h("td", {}, decide));
  });
  $("#devices tbody").replaceChildren(...rows);
}

async function select(device) {
  state.device = device;
  state.session = null;
  state.note = "";
  await refresh();
}

async function setStatus(device, status) {
  try {
    await api("PUT", `/athena/devices/${enc(device)}`, { status });
    await refresh();
  } catch (err) { failed(err); }
}

const FIELDS = [
  ["timeout", "Timeout (s)", "number"], ["max_age", "Max age (s)", "number"], ["history", "History (msgs)", "number"],
  ["language", "Language", "text"], ["system_prompt", "Extra prompt", "textarea"],
];

function settingsForm(d) {
  const inputs = {};
  const rows = FIELDS.map(([name, label, type]) => {
    const stored = d.settings[name];
    const attrs = { id: `set-${name}`, name, placeholder: d.effective[name] ?? "" };
    const input = type === "textarea" ? h("textarea", attrs) : h("input", { ...attrs, type, step: "any", min: type === "number" ? "0" : null });
    input.value = stored ?? "";
    inputs[name] = input;
    return [h("label", { for: attrs.id }, label), input];
  });
  const status = h("select", { id: "set-status", name: "status" },
    h("option", { value: "" }, `policy default`), h("option", { value: "allowed" }, "allowed"), h("option", { value: "blocked" }, "blocked"));
  status.value = d.settings.status || "";
  rows.push([h("label", { for: "set-status" }, "Status"), status]);
  const save = h("button", { type: "submit", id: "save", class: "primary" }, "Save");
  const note = h("p", { class: "muted", id: "saved" }, state.note || "Empty: the ATHENA_DEVICES or global value (shown greyed). Applies from the device's next turn.");
  const form = h("form", { id: "settings-form", onsubmit: async (e) => {
    e.preventDefault();
    const body = {};
    for (const [name, , type] of FIELDS) {
      const raw = inputs[name].value.trim();
      const was = d.settings[name];
      if (raw === "") { if (was !== undefined) body[name] = null; continue; }
      const value = type === "number" ? Number(raw) : raw;
      if (value !== was) body[name] = name === "history" ? Math.round(value) : value;
    }
    if ((status.value || undefined) !== d.settings.status) body.status = status.value || null;
    if (!Object.keys(body).length) { note.textContent = "Nothing changed."; return; }
    try {
      await api("PUT", `/athena/devices/${enc(d.id)}`, body);
      state.note = note.textContent = "Saved: applies from the device's next turn.";
      if (document.activeElement) document.activeElement.blur();
      await refresh();
    } catch (err) { note.textContent = `Not saved: ${err.message}`; if (err instanceof Unauthorized) failed(err); }
  } }, h("div", { id: "settings" }, ...rows.flat()), h("div", { class: "actions" }, save), note);
  return form;
}

async function renderDetail() {
  const device = state.device;
  let d;
  try {
    d = (await api("GET", `/athena/devices/${enc(device)}`)).data;
  } catch (err) {
    if (err instanceof Unauthorized) throw err;
    state.device = null;
    $("#detail").hidden = true;
    return;
  }
  const detail = $("#detail");
  const right = h("div", { class: "panel", id: "right" }, h("h2", {}, "Transcript"), await transcript(d));
  // While someone types in the settings, leave that panel alone; the transcript updates on every poll.
  const editing = document.activeElement && document.activeElement.matches("#settings input, #settings textarea, #settings select");
  if (editing && detail.querySelector("#right")) {
    detail.querySelector("#right").replaceWith(right);
    return;
  }
  const sessions = [];
  if (d.session) sessions.push(h("li", { "data-session": d.session.id, class: state.session === null ? "selected" : null, onclick: () => { state.session = null; refresh(); } },
    `Live: ${d.session.turns} turns, ends in ${ago(d.session.expires_in)} (${d.session.expires_reason})`));
  for (const p of d.past) sessions.push(h("li", { "data-session": p.id, class: state.session === p.id ? "selected" : null, onclick: () => { state.session = p.id; refresh(); } },
    `${when(p.ended_at)}: ${p.turns} turns, ended by ${p.ended_reason.replace("_", " ")}`));
  const live = d.session;
  const left = h("div", { class: "panel", id: "left" },
    h("h2", {}, d.name ? `${d.name} (${d.id})` : d.id),
    h("p", { class: "muted" }, `${d.area || "no area"} · `, statusBadge(d.status), ` · ${d.turns} turns`),
    settingsForm(d),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "end-session", disabled: !live, onclick: () => endSession(d.id) }, "End session"),
      h("button", { type: "button", id: "export", onclick: () => exportSession(d.id) }, "Export"),
      h("button", { type: "button", id: "delete", class: "danger", onclick: () => forget(d.id) }, "Delete data")),
    h("h3", {}, "Sessions"),
    sessions.length ? h("ul", { id: "sessions" }, sessions) : h("p", { class: "muted" }, "No sessions kept."));
  detail.replaceChildren(left, right);
  detail.hidden = false;
}

async function transcript(d) {
  let head, messages;
  if (state.session === null) {
    if (!d.session) return h("p", { class: "muted", id: "transcript" }, "No live session. Pick a past one.");
    const { data } = await api("GET", `/athena/sessions/${enc(d.id)}`).catch((err) => { if (err instanceof Unauthorized) throw err; return { data: null }; });
    if (!data) return h("p", { class: "muted", id: "transcript" }, "The session just ended.");
    messages = data.messages;
    head = `Live session ${data.id} · started ${when(data.created_at)} · ${data.turns} turns · ends in ${ago(data.expires_in)} by ${data.expires_reason === "max_age" ? "maximum age" : "inactivity"} (timeout ${data.timeout}s, max age ${data.max_age}s)`;
  } else {
    const { data } = await api("GET", `/athena/sessions/${enc(d.id)}/export?session=${encodeURIComponent(state.session)}`);
    messages = data.messages;
    const p = data.session;
    head = `Session ${p.id} · ${when(p.created_at)} – ${when(p.ended_at)} · ${p.turns} turns · ended by ${p.ended_reason.replace("_", " ")}`;
  }
  return h("div", { id: "transcript" }, h("div", { class: "session-head" }, head),
    h("div", { class: "transcript" }, messages.map(message)));
}

function who(m) {
  const meta = m.meta || {};
  if (m.role === "user") return meta.source === "home_assistant" ? "user (answered by Home Assistant)" : meta.path === "error" ? "user (not answered)" : "user";
  if (m.role === "tool") return `tool result${meta.tool_name ? ` (${meta.tool_name})` : ""}`;
  if (meta.source === "home_assistant") return "Home Assistant";
  if (meta.path === "local") return `local intent${meta.intent ? ` · ${meta.intent.name}` : ""}${meta.follow_up ? ` (follow-up: ${meta.follow_up})` : ""}`;
  if (meta.path === "error") return "error";
  if (meta.path === "llm") return `LLM · ${[meta.backend, meta.model].filter(Boolean).join(" ")}${meta.tool_calls ? " · tool calls" : ""}`;
  return m.role;
}

function message(m) {
  const meta = m.meta || {};
  const kind = meta.tool_calls ? "tools" : meta.path;
  const cls = ["msg", m.role, kind && m.role !== "user" ? `path-${kind}` : null].filter(Boolean).join(" ");
  return h("div", { class: cls, "data-role": m.role },
    h("div", { class: "who" }, h("span", {}, who(m)), h("span", {}, clock(m.ts)),
      meta.latency_ms !== undefined ? h("span", {}, ms(meta.latency_ms)) : null,
      meta.finish_reason && meta.finish_reason !== "stop" ? h("span", {}, `finish: ${meta.finish_reason}`) : null),
    m.content ? h("div", { class: "text" }, m.content) : null,
    (meta.tool_calls || []).map((c) => h("div", { class: "call" }, `→ ${c.name}(${c.arguments})`)),
    meta.error ? h("div", { class: "err" }, meta.error) : null);
}

async function endSession(device) {
  try {
    await api("DELETE", `/athena/sessions/${enc(device)}`);
    state.session = null;
    await refresh();
  } catch (err) { failed(err); }
}

async function exportSession(device) {
  const query = state.session ? `?session=${encodeURIComponent(state.session)}` : "";
  try {
    const { data, resp } = await api("GET", `/athena/sessions/${enc(device)}/export${query}`);
    const name = (/filename="([^"]+)"/.exec(resp.headers.get("content-disposition") || "") || [])[1] || "athena-session.json";
    const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
    const a = h("a", { href: url, download: name, id: "download" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) { failed(err); }
}

async function forget(device) {
  if (!window.confirm(`Delete everything kept about ${device}: settings, sessions, transcripts, usage?`)) return;
  try {
    await api("DELETE", `/athena/devices/${enc(device)}`);
    state.device = null;
    $("#detail").hidden = true;
    await refresh();
  } catch (err) { failed(err); }
}

// -- usage ------------------------------------------------------------------------------------------
async function renderUsage() {
  const days = Number($("#range").value);
  const until = Date.now() / 1000;
  const { data } = await api("GET", `/athena/stats?since=${until - days * 86400}&until=${until}`);
  const t = data.totals;
  const pct = (n) => (t.turns ? `${Math.round(100 * n / t.turns)}%` : "–");
  const cards = h("div", { class: "cards" },
    card("Turns", t.turns), card("Sessions", t.sessions), card("Local", pct(t.paths.local)), card("LLM", pct(t.paths.llm)),
    card("With tools", pct(t.paths.tools)), card("Failed", pct(t.paths.error)), card("LLM p50 / p95", `${ms(t.latency_ms.llm.p50)} / ${ms(t.latency_ms.llm.p95)}`));
  const charts = h("div", { class: "charts" },
    h("div", { class: "panel" }, h("h2", {}, "Turns per day, by who answered"), stacked(data.days), legend()),
    h("div", { class: "panel" }, h("h2", {}, "Session length (turns)"), histogram(t.session_turns),
      h("p", { class: "muted" }, `Session duration p50 ${ago(t.session_seconds.p50 || 0)}, p95 ${ago(t.session_seconds.p95 || 0)}`)));
  const latency = h("table", { id: "latency" }, h("thead", {}, h("tr", {}, h("th", {}, "Path"), h("th", {}, "Turns"), h("th", {}, "p50"), h("th", {}, "p95"))),
    h("tbody", {}, Object.entries(t.latency_ms).map(([p, l]) => h("tr", {}, h("td", {}, p), h("td", {}, l.n), h("td", {}, ms(l.p50)), h("td", {}, ms(l.p95))))));
  const perDevice = h("table", { id: "per-device" }, h("thead", {}, h("tr", {}, ["Device", "Turns", "Sessions", ...PATHS, "LLM p50", "LLM p95"].map((c) => h("th", {}, c)))),
    h("tbody", {}, data.devices.map((d) => h("tr", {}, h("td", {}, d.device), h("td", {}, d.turns), h("td", {}, d.sessions),
      PATHS.map((p) => h("td", {}, d.paths[p])), h("td", {}, ms(d.latency_ms.llm.p50)), h("td", {}, ms(d.latency_ms.llm.p95))))));
  $("#usage").replaceChildren(cards, charts,
    h("div", { class: "charts" }, h("div", { class: "panel" }, h("h2", {}, "Latency per path"), latency),
      h("div", { class: "panel" }, h("h2", {}, "Per device"), perDevice)));
}
function card(label, value) {
  return h("div", { class: "card" }, h("div", { class: "muted" }, label), h("div", { class: "n" }, value));
}
function legend() {
  return h("div", { class: "legend" }, PATHS.map((p) => h("span", {}, h("span", { class: `swatch sw-${p}` }), p)));
}
function stacked(days) {
  const W = 460, H = 180, pad = 24;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H + 20}`, width: "100%", role: "img", "aria-label": "turns per day" });
  if (!days.length) { svg.append(s("text", { x: 10, y: 20 }, "No turns in this period.")); return svg; }
  const max = Math.max(...days.map((d) => d.turns), 1);
  const bw = Math.min(40, (W - pad) / days.length - 4);
  svg.append(s("line", { x1: pad, y1: H, x2: W, y2: H, class: "axis" }), s("text", { x: 0, y: 12 }, max));
  days.forEach((d, i) => {
    const x = pad + 4 + i * ((W - pad) / days.length);
    let y = H;
    for (const p of PATHS) {
      const hgt = (d.paths[p] / max) * (H - 10);
      if (!hgt) continue;
      y -= hgt;
      svg.append(s("rect", { x, y, width: bw, height: hgt, class: `bar-${p}` }, s("title", {}, `${d.day}: ${d.paths[p]} ${p}`)));
    }
    svg.append(s("text", { x, y: H + 14 }, d.day.slice(5)));
  });
  return svg;
}
function histogram(buckets) {
  const W = 460, H = 160, entries = Object.entries(buckets);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H + 20}`, width: "100%", role: "img", "aria-label": "session lengths" });
  const max = Math.max(...entries.map(([, n]) => n), 1);
  const bw = W / entries.length - 10;
  svg.append(s("line", { x1: 0, y1: H, x2: W, y2: H, class: "axis" }));
  entries.forEach(([label, n], i) => {
    const hgt = (n / max) * (H - 14), x = i * (W / entries.length) + 5;
    svg.append(s("rect", { x, y: H - hgt, width: bw, height: hgt, class: "bar-plain" }, s("title", {}, `${n} sessions of ${label} turns`)));
    svg.append(s("text", { x, y: H + 14 }, label), s("text", { x, y: H - hgt - 3 }, n || ""));
  });
  return svg;
}

// -- wiring -----------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", () => logout());
  $("#range").addEventListener("change", refresh);
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      state.tab = tab.dataset.tab;
      for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
      $("#devices-view").hidden = state.tab !== "devices";
      $("#usage-view").hidden = state.tab !== "usage";
      refresh();
    });
  }
  $("#token").focus();
});
