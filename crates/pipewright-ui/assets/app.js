// Pipewright UI: the shell (API calls, session, routing, small helpers). Pages live in their
// own modules. Plain ES modules, no framework, no build step, no external requests.
import { pipelinePage } from "/ui/pipeline.js";
import { jobPage } from "/ui/job.js";
import { buildPage } from "/ui/build.js";
import { statsPage } from "/ui/stats.js";

export const state = { me: { name: null, role: null, public: false } };
const ROLES = ["worker", "viewer", "operator", "admin"];

/** Whether the caller may trigger, cancel, rerun, approve and pin. */
export function canOperate() {
  return ROLES.indexOf(state.me.role) >= ROLES.indexOf("operator");
}

function cookie(name) {
  const m = document.cookie.split(";").map((c) => c.trim().split("=")).find(([k]) => k === name);
  return m ? m[1] : "";
}

/** An API error with the server's message and status. */
export class ApiError extends Error {
  constructor(status, message, code) { super(message); this.status = status; this.code = code; }
}

/** Calls the API; JSON in and out; state-changing calls carry the CSRF token. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = cookie("pw_csrf");
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path.startsWith("/ui/") ? path : "/api/v1" + path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 204) return null;
  let data = null;
  try { data = await resp.json(); } catch { data = null; }
  if (!resp.ok) {
    throw new ApiError(resp.status, (data && data.error) || resp.statusText, data && data.code);
  }
  return data;
}

/** Creates an element: el("a", {href: "#"}, "text", child…). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function badge(status) {
  return el("span", { class: `badge s-${status || "none"}` }, (status || "no builds").replace(/_/g, " "));
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.round(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

export function buildDuration(b) {
  if (!b || !b.started_at_ms) return null;
  return (b.finished_at_ms || Date.now()) - b.started_at_ms;
}

export function ago(ms) {
  if (!ms) return "–";
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return `${Math.max(s, 0)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return new Date(ms).toLocaleString();
}

/** A short form of a version: its first field, cut to 12 characters. */
export function shortVersion(v) {
  if (!v) return "–";
  const vals = Object.values(v);
  const first = String(vals[0] ?? "");
  return first.length > 12 ? first.slice(0, 12) : first;
}

export function toast(text, bad = false) {
  const t = el("div", { class: bad ? "toast bad" : "toast", role: "status" }, text);
  document.body.append(t);
  setTimeout(() => t.remove(), bad ? 8000 : 4000);
}

/** Runs an action, telling the user what happened. */
export async function act(label, f) {
  try {
    const r = await f();
    toast(label);
    return r;
  } catch (e) {
    if (e.status === 401) location.hash = `#/login?next=${encodeURIComponent(location.hash)}`;
    toast(`${label} failed: ${e.message}`, true);
    return null;
  }
}

export function crumbs(...parts) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...parts.flatMap((p, i) => (i ? [" / ", p] : [p])));
}

/** Replaces `node`'s children, skipping empty ones (replaceChildren would print "null"). */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

export function setMain(...children) {
  fill(document.getElementById("main"), ...children);
}

async function loadMe() {
  try { state.me = await api("/me"); } catch { state.me = { name: null, role: null, public: false }; }
  const who = document.getElementById("who");
  if (state.me.role) {
    who.replaceChildren(
      el("span", {}, `${state.me.name} (${state.me.role})`),
      el("button", { onclick: logout }, "Log out"),
    );
  } else {
    who.replaceChildren(
      el("span", {}, state.me.public ? "read-only" : ""),
      el("a", { class: "button", href: `#/login?next=${encodeURIComponent(location.hash)}` }, "Log in"),
    );
  }
}

async function logout() {
  await api("/ui/logout", { method: "POST" }).catch(() => null);
  await loadMe();
  route();
}

function loginPage(params) {
  crumbs(el("span", {}, "Log in"));
  const input = el("input", { type: "password", id: "token", autocomplete: "current-password", required: true, size: 50 });
  const msg = el("p", { class: "error", role: "alert" });
  const form = el("form", {
    class: "panel",
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api("/ui/login", { method: "POST", body: { token: input.value } });
        input.value = "";
        await loadMe();
        location.hash = params.get("next") || "#/";
      } catch (e) { msg.textContent = e.message; }
    },
  },
  el("h1", {}, "Log in"),
  el("p", { class: "muted" }, "Paste an API token (", el("code", {}, "pipewright token create --role operator --name you"),
    "). It is kept in an HttpOnly cookie, never in the page or the URL."),
  el("div", { class: "row" }, el("label", { for: "token" }, "Token"), input, el("button", { class: "primary", type: "submit" }, "Log in")),
  msg);
  setMain(form);
  input.focus();
}

async function pipelinesPage() {
  crumbs(el("span", {}, "Pipelines"));
  const list = await api("/pipelines");
  if (list.length === 1 && !location.hash.includes("all")) {
    location.replace(`#/p/${encodeURIComponent(list[0].name)}`);
    return;
  }
  setMain(el("h1", {}, "Pipelines"), el("ul", {}, list.map((p) =>
    el("li", {}, el("a", { href: `#/p/${encodeURIComponent(p.name)}` }, p.name),
      ` — ${p.jobs.length} jobs, ${p.resources.length} resources`,
      p.config_error ? el("div", { class: "error" }, p.config_error) : null))));
}

/** The page's teardown (closes event streams) when the route changes. */
let cleanup = null;
export function onLeave(f) { cleanup = f; }

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "login") return loginPage(params);
    if (parts[0] === "builds" && parts[1]) return await buildPage(parts[1]);
    if (parts[0] === "p" && parts[1] && parts[2] === "jobs" && parts[3]) return await jobPage(parts[1], parts[3], params);
    if (parts[0] === "p" && parts[1] && parts[2] === "stats") return await statsPage(parts[1], params);
    if (parts[0] === "p" && parts[1]) return await pipelinePage(parts[1]);
    return await pipelinesPage();
  } catch (e) {
    if (e.status === 401) {
      location.replace(`#/login?next=${encodeURIComponent(location.hash)}`);
      return;
    }
    setMain(el("h1", {}, "Something went wrong"), el("p", { class: "error" }, e.message));
  }
}

window.addEventListener("hashchange", route);
loadMe().then(route);
