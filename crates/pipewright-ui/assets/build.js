// The build page: the step tree and the live log over SSE. The log is virtualized (only the
// lines in view are in the DOM), so a log of a million lines scrolls; ANSI colours are drawn,
// and a dropped connection resumes after the last event seen (Last-Event-ID), so no line
// comes twice.
import { api, el, badge, crumbs, setMain, fill, onLeave, ago, duration, buildDuration, shortVersion } from "/ui/app.js";
import { buildActions } from "/ui/job.js";

const LINE_H = 18;
const OVERSCAN = 30;

/** How the server names a step in logs and summaries (StepId's Display). */
function stepName(id) {
  const leaf = id.path[id.path.length - 1] || "";
  switch (id.role) {
    case "hook": return `${id.path.length > 1 ? id.path[id.path.length - 2] : "job"}:${leaf}`;
    case "service_start": return `${leaf}:start`;
    case "service_stop": return `${leaf}:stop`;
    default: return leaf;
  }
}
const keyOf = (path, name) => `${path.join("/")}#${name}`;

const SGR = /\x1b\[([0-9;]*)m/g;
/** One line with its ANSI colours as spans; other escape codes dropped; `\r` overwrites. */
function renderText(raw, search) {
  let text = raw;
  const cr = text.lastIndexOf("\r", text.length - 1);
  if (cr >= 0) text = text.slice(cr + 1);
  text = text.replace(/\x1b\[[0-9;?]*[A-HJKSTfhlnsu]/g, "");
  const out = document.createDocumentFragment();
  let cls = [];
  let last = 0;
  const push = (s) => {
    if (!s) return;
    const span = cls.length ? el("span", { class: cls.join(" ") }) : null;
    const parent = span || out;
    if (search) {
      const lower = s.toLowerCase();
      let i = 0;
      for (let j = lower.indexOf(search); j >= 0; j = lower.indexOf(search, i)) {
        parent.append(s.slice(i, j), el("mark", {}, s.slice(j, j + search.length)));
        i = j + search.length;
      }
      parent.append(s.slice(i));
    } else parent.append(s);
    if (span) out.append(span);
  };
  for (const m of text.matchAll(SGR)) {
    push(text.slice(last, m.index));
    last = m.index + m[0].length;
    for (const c of (m[1] || "0").split(";").map(Number)) {
      if (c === 0) cls = [];
      else if ([1, 3, 4].includes(c)) cls.push(`ansi-${c}`);
      else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) cls = cls.filter((x) => !x.startsWith("fg-")).concat(`fg-${c}`);
      else if (c >= 41 && c <= 44) cls = cls.filter((x) => !x.startsWith("bg-")).concat(`bg-${c}`);
      else if (c === 39) cls = cls.filter((x) => !x.startsWith("fg-"));
    }
  }
  push(text.slice(last));
  return out;
}

class LogView {
  constructor(startMs) {
    this.start = startMs;
    this.lines = []; // {k: step key, t: ms, s: "o" | "e" | "s", x: text}
    this.partial = new Map();
    this.view = null; // indexes shown, or null for all
    this.step = null;
    this.search = "";
    this.follow = true;
    this.stamps = false;
    this.box = el("div", { class: "log", tabindex: "0", role: "log", "aria-label": "Build log", "aria-live": "off" });
    this.spacer = el("div", { class: "spacer" });
    this.box.append(this.spacer);
    this.box.addEventListener("scroll", () => {
      const atEnd = this.box.scrollTop + this.box.clientHeight >= this.box.scrollHeight - LINE_H * 2;
      if (!atEnd && this.follow && this.userScrolled) this.setFollow(false);
      this.userScrolled = true;
      this.schedule();
    });
    this.followBtn = el("button", { "aria-pressed": "true", onclick: () => this.setFollow(!this.follow) }, "Following");
    this.count = el("span", { class: "muted" });
  }
  setFollow(on) {
    this.follow = on;
    this.followBtn.setAttribute("aria-pressed", String(on));
    this.followBtn.textContent = on ? "Following" : "Follow";
    if (on) this.toEnd();
  }
  matches(l) {
    return (this.step === null || l.k === this.step) && (!this.search || l.x.toLowerCase().includes(this.search));
  }
  refilter() {
    this.view = this.step === null && !this.search ? null : [];
    if (this.view) this.lines.forEach((l, i) => { if (this.matches(l)) this.view.push(i); });
    this.schedule(true);
  }
  add(k, t, s, x) {
    const i = this.lines.push({ k, t, s, x }) - 1;
    if (this.view && this.matches(this.lines[i])) this.view.push(i);
  }
  chunk(k, t, stream, data, attempt) {
    const pk = `${k}|${attempt}|${stream}`;
    const parts = ((this.partial.get(pk) || "") + data).split("\n");
    this.partial.set(pk, parts.pop());
    const s = stream === "stderr" ? "e" : stream === "system" ? "s" : "o";
    for (const p of parts) this.add(k, t, s, p);
    this.schedule();
  }
  flush() {
    for (const [pk, rest] of this.partial) {
      if (rest) { const [k, , stream] = pk.split("|"); this.add(k, Date.now(), stream === "stderr" ? "e" : "o", rest); }
    }
    this.partial.clear();
    this.schedule();
  }
  size() { return this.view ? this.view.length : this.lines.length; }
  toEnd() { this.box.scrollTop = this.box.scrollHeight; }
  schedule(force) {
    if (this.pending && !force) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }
  draw() {
    const n = this.size();
    this.spacer.style.height = `${n * LINE_H}px`;
    this.count.textContent = `${n.toLocaleString()} lines${this.view ? ` of ${this.lines.length.toLocaleString()}` : ""}`;
    if (this.follow) { this.userScrolled = false; this.toEnd(); }
    const first = Math.max(0, Math.floor(this.box.scrollTop / LINE_H) - OVERSCAN);
    const last = Math.min(n, Math.ceil((this.box.scrollTop + this.box.clientHeight) / LINE_H) + OVERSCAN);
    const rows = [];
    for (let r = first; r < last; r++) {
      const l = this.lines[this.view ? this.view[r] : r];
      const line = el("div", { class: `line${l.s === "s" ? " sys" : l.s === "e" ? " err" : ""}` },
        el("span", { class: "ln" }, r + 1),
        this.stamps ? el("span", { class: "ts" }, `+${((l.t - this.start) / 1000).toFixed(3)}s`) : null,
        this.step === null ? el("span", { class: "st" }, l.k.split("#")[1]) : null,
        el("span", { class: "tx" }, renderText(l.x, this.search)));
      // A CSSOM property, not a style attribute: the page's CSP allows no inline styles.
      line.style.top = `${r * LINE_H}px`;
      rows.push(line);
    }
    this.spacer.replaceChildren(...rows);
  }
}

function stepTree(steps, onPick, selected) {
  // Nest by path: ["in_parallel", "unit"] sits under a group "in_parallel".
  const root = { children: new Map(), step: null };
  for (const s of steps) {
    let node = root;
    for (const part of s.path.slice(0, -1)) {
      if (!node.children.has(part)) node.children.set(part, { children: new Map(), step: null, label: part });
      node = node.children.get(part);
    }
    node.children.set(s.key, { children: new Map(), step: s });
  }
  const draw = (node) => el("ul", { class: "steps" }, [...node.children.values()].map((c) => {
    if (!c.step) return el("li", {}, el("div", { class: "group" }, c.label), draw(c));
    const s = c.step;
    return el("li", {}, el("button", {
      "aria-pressed": String(selected === s.key), onclick: () => onPick(s.key), title: s.reason || "",
    }, el("span", { class: `dot s-${s.status}` }), s.name,
    s.attempts > 1 ? el("span", { class: "muted" }, ` ×${s.attempts}`) : null,
    el("span", { class: "dur" }, duration(s.duration_ms))), c.children.size ? draw(c) : null);
  }));
  return draw(root);
}

export async function buildPage(id) {
  let b = await api(`/builds/${encodeURIComponent(id)}`);
  crumbs(el("a", { href: "#/all" }, "Pipelines"), el("a", { href: `#/p/${encodeURIComponent(b.pipeline)}` }, b.pipeline),
    el("a", { href: `#/p/${encodeURIComponent(b.pipeline)}/jobs/${encodeURIComponent(b.job)}` }, b.job), el("span", {}, `#${b.number}`));
  const steps = new Map(b.steps.map((s) => [keyOf(s.path, s.step), { ...s, key: keyOf(s.path, s.step), name: s.step }]));
  const log = new LogView(b.started_at_ms || b.created_at_ms);
  const head = el("div");
  const tree = el("nav", { class: "panel", "aria-label": "Steps" });
  const search = el("input", { type: "search", placeholder: "Search the log", "aria-label": "Search the log" });
  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { log.search = search.value.toLowerCase(); log.refilter(); }, 150);
  });
  const stamps = el("input", { type: "checkbox", onchange: (e) => { log.stamps = e.target.checked; log.schedule(true); } });
  const pick = (key) => { log.step = log.step === key ? null : key; log.refilter(); drawTree(); };
  const drawTree = () => fill(tree,
    el("button", { "aria-pressed": String(log.step === null), onclick: () => { log.step = null; log.refilter(); drawTree(); } }, "All steps"),
    stepTree([...steps.values()], pick, log.step));
  const drawHead = () => fill(head,
    el("h1", {}, `${b.job} #${b.number}`, badge(b.status), el("div", { class: "row" }, buildActions(b, (nb) => { if (nb && nb.id) location.hash = `#/builds/${nb.id}`; }))),
    el("p", { class: "muted" }, b.trigger, ` · created ${ago(b.created_at_ms)} · `, el("span", { id: "bdur" }, duration(buildDuration(b))),
      b.worker ? ` · on ${b.worker}` : "", b.attempt > 1 ? ` · attempt ${b.attempt}` : "",
      b.rerun_of ? el("span", {}, " · rerun of ", el("a", { href: `#/builds/${b.rerun_of}` }, `build ${b.rerun_of}`)) : ""),
    Object.keys(b.inputs).length ? el("p", { class: "mono" }, Object.entries(b.inputs).map(([k, v]) => `${k} ${shortVersion(v)}`).join(" · ")) : null,
    b.reason ? el("p", { class: ["failed", "errored"].includes(b.status) ? "error" : "muted" }, b.reason) : null);
  drawHead();
  drawTree();
  setMain(head, el("div", { class: "build-grid" }, tree, el("section", {},
    el("div", { class: "logbar" }, search, el("label", {}, stamps, "timestamps"), log.followBtn,
      el("a", { class: "button", href: `/api/v1/builds/${b.id}/log`, download: `${b.pipeline}-${b.job}-${b.number}.log` }, "Download"), log.count),
    log.box)));
  log.draw();

  let lastSeq = -1;
  let refreshTimer = null;
  const refresh = () => {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => { try { b = await api(`/builds/${b.id}`); drawHead(); } catch { /* next event retries */ } }, 200);
  };
  const es = new EventSource(`/api/v1/builds/${b.id}/events`);
  const on = (kind, f) => es.addEventListener(kind, (ev) => {
    const e = JSON.parse(ev.data);
    if (e.seq <= lastSeq) return; // never twice, whatever the transport did
    lastSeq = e.seq;
    f(e);
  });
  const stepOf = (id) => {
    const name = stepName(id);
    const key = keyOf(id.path, name);
    if (!steps.has(key)) steps.set(key, { key, name, path: id.path, status: "pending", attempts: 0, duration_ms: null });
    return steps.get(key);
  };
  on("build_started", () => {});
  on("build_status", (e) => { b.status = e.status; refresh(); });
  on("step_started", (e) => {
    const s = stepOf(e.step);
    s.status = "running";
    s.attempts = e.attempt;
    if (e.attempt === 1) s.sum = 0;
    if (e.attempt > 1) log.add(s.key, e.at_ms, "s", `--- attempt ${e.attempt}/${e.attempts} ---`);
    drawTree();
  });
  on("log", (e) => log.chunk(stepOf(e.step).key, e.at_ms, e.stream, e.data, e.attempt));
  on("exports", () => {});
  on("step_finished", (e) => {
    const s = stepOf(e.step);
    // A step's duration is the sum of its attempts'; the stream replays them all.
    s.sum = (s.sum || 0) + (e.duration_ms || 0);
    s.duration_ms = s.sum;
    if (e.final) { s.status = e.status; s.reason = e.reason; }
    if (e.status !== "succeeded" && e.status !== "skipped") log.add(s.key, e.at_ms, "s", `✗ ${s.name} ${e.status}${e.reason ? `: ${e.reason}` : ""}`);
    drawTree();
  });
  on("build_finished", (e) => {
    log.flush();
    b.status = e.status;
    es.close();
    refresh();
  });
  // A running build's duration grows while the page is open.
  // Only the text changes, so a focused button keeps its focus.
  const ticker = setInterval(() => {
    const d = document.getElementById("bdur");
    if (d && !b.finished_at_ms) d.textContent = duration(buildDuration(b));
  }, 1000);
  onLeave(() => { es.close(); clearTimeout(refreshTimer); clearInterval(ticker); });
}
