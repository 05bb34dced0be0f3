// The job page: builds newest first (paged), the trigger form for the job's typed inputs,
// and rerun, rerun from the failed step, cancel and approve. Live over SSE.
import { api, el, badge, crumbs, setMain, onLeave, canOperate, act, ago, duration, buildDuration, shortVersion } from "/ui/app.js";

const PAGE = 25;
const ACTIVE = ["pending", "running", "waiting_for_approval"];

/** The actions a build allows this user, as buttons. */
export function buildActions(b, after) {
  if (!canOperate()) return [];
  const out = [];
  const post = (label, path, body) => act(label, () => api(path, { method: "POST", body })).then((r) => after && after(r));
  if (ACTIVE.includes(b.status)) {
    out.push(el("button", { onclick: () => post(`cancelling #${b.number}`, `/builds/${b.id}/cancel`) }, "Cancel"));
  }
  if (b.status === "waiting_for_approval") {
    out.push(el("button", { class: "primary", onclick: () => post(`approved #${b.number}`, `/builds/${b.id}/approve`) }, "Approve"));
  }
  if (!ACTIVE.includes(b.status)) {
    out.push(el("button", { onclick: () => post(`rerun of #${b.number} created`, `/builds/${b.id}/rerun`, { from: "job" }) }, "Rerun"));
    if (["failed", "errored"].includes(b.status)) {
      out.push(el("button", { onclick: () => post(`rerun of #${b.number} from its failed step created`, `/builds/${b.id}/rerun`, { from: "failed-step" }) }, "Rerun from failed step"));
    }
  }
  return out;
}

function inputField(i) {
  const id = `in-${i.name}`;
  let field;
  if (i.options && i.options.length) {
    field = el("select", { id, name: i.name, multiple: i.type === "list" },
      i.options.map((o) => el("option", { value: o, selected: JSON.stringify(i.default) === JSON.stringify(o) || (Array.isArray(i.default) && i.default.includes(o)) }, o)));
  } else if (i.type === "bool") {
    field = el("input", { id, name: i.name, type: "checkbox", checked: i.default === true });
  } else {
    field = el("input", { id, name: i.name, type: i.type === "number" ? "number" : "text", value: i.default ?? "", step: "any", required: i.default === null || i.default === undefined });
  }
  field.dataset.type = i.type;
  return [el("label", { for: id }, i.name, i.description ? el("span", { class: "muted" }, ` — ${i.description}`) : ""), field];
}

function readInputs(form) {
  const out = {};
  for (const f of form.querySelectorAll("[data-type]")) {
    const t = f.dataset.type;
    if (t === "bool") out[f.name] = f.checked;
    else if (t === "number") { if (f.value !== "") out[f.name] = Number(f.value); }
    else if (t === "list") out[f.name] = f.tagName === "SELECT" ? [...f.selectedOptions].map((o) => o.value) : f.value.split(",").map((s) => s.trim()).filter(Boolean);
    else if (f.value !== "" || f.required) out[f.name] = f.value;
  }
  return out;
}

function triggerDialog(p, job) {
  const msg = el("p", { class: "error", role: "alert" });
  const form = el("form", { method: "dialog" },
    el("h2", {}, `Trigger ${job.name}`),
    job.inputs.length ? el("div", { class: "form-grid" }, job.inputs.flatMap(inputField)) : el("p", { class: "muted" }, "This job takes no inputs."),
    msg,
    el("div", { class: "row" }, el("button", { type: "submit", class: "primary", value: "go" }, "Trigger"), el("button", { type: "button", onclick: () => dlg.close() }, "Close")));
  const dlg = el("dialog", { "aria-label": `Trigger ${job.name}` }, form);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const b = await api(`/pipelines/${encodeURIComponent(p)}/jobs/${encodeURIComponent(job.name)}/builds`, { method: "POST", body: { inputs: readInputs(form) } });
      dlg.close();
      location.hash = `#/builds/${b.id}`;
    } catch (e) { msg.textContent = e.message; }
  });
  document.body.append(dlg);
  dlg.addEventListener("close", () => dlg.remove());
  dlg.showModal();
}

function row(b, refresh) {
  return el("tr", { "data-build": b.id },
    el("td", { class: "num" }, el("a", { href: `#/builds/${b.id}` }, `#${b.number}`)),
    el("td", {}, badge(b.status), b.reason && ACTIVE.includes(b.status) ? el("div", { class: "muted" }, b.reason) : null),
    el("td", { class: "num" }, duration(buildDuration(b))),
    el("td", {}, b.trigger, b.rerun_of ? el("span", { class: "muted" }, " (", el("a", { href: `#/builds/${b.rerun_of}` }, `build ${b.rerun_of}`), ")") : null),
    el("td", { class: "mono" }, Object.entries(b.inputs).map(([k, v]) => `${k} ${shortVersion(v)}`).join(", ")),
    el("td", { class: "muted" }, ago(b.created_at_ms)),
    el("td", {}, el("div", { class: "row" }, buildActions(b, refresh))));
}

export async function jobPage(p, j, params) {
  const before = params.get("before");
  const base = `/pipelines/${encodeURIComponent(p)}`;
  const [view, builds] = await Promise.all([
    api(base),
    api(`${base}/jobs/${encodeURIComponent(j)}/builds?limit=${PAGE}${before ? `&before=${before}` : ""}`),
  ]);
  const job = view.jobs.find((x) => x.name === j);
  if (!job) throw new Error(`pipeline ${p} has no job ${j}`);
  crumbs(el("a", { href: "#/all" }, "Pipelines"), el("a", { href: `#/p/${encodeURIComponent(p)}` }, p), el("span", {}, j));
  const tbody = el("tbody");
  const refresh = () => jobPage(p, j, params);
  tbody.append(...builds.map((b) => row(b, refresh)));
  if (!builds.length) tbody.append(el("tr", { class: "empty" }, el("td", { colspan: 7, class: "muted" }, "No builds yet.")));
  const last = builds[builds.length - 1];
  setMain(
    el("h1", {}, j,
      canOperate() ? el("button", { class: "primary", id: "trigger", onclick: () => triggerDialog(p, job) }, "Trigger") : el("span", { class: "muted" }, "(read-only: log in to trigger)"),
      job.approve ? el("span", { class: "badge s-waiting_for_approval" }, "needs approval") : null,
      job.tags.length ? el("span", { class: "muted" }, `tags: ${job.tags.join(", ")}`) : null),
    el("div", { class: "panel" },
      el("table", { id: "builds" }, el("thead", {}, el("tr", {}, ["#", "Status", "Duration", "Trigger", "Versions", "Created", ""].map((h) => el("th", {}, h)))), tbody)),
    el("div", { class: "row" },
      before ? el("a", { class: "button", href: `#/p/${encodeURIComponent(p)}/jobs/${encodeURIComponent(j)}` }, "Newest") : null,
      builds.length === PAGE ? el("a", { class: "button", href: `#/p/${encodeURIComponent(p)}/jobs/${encodeURIComponent(j)}?before=${last.number}` }, "Older") : null));
  if (before) return;
  const es = new EventSource(`/api/v1${base}/events`);
  const apply = (b) => {
    if (b.job !== j) return;
    const existing = tbody.querySelector(`tr[data-build="${b.id}"]`);
    const fresh = row(b, refresh);
    tbody.querySelector("tr.empty")?.remove();
    if (existing) existing.replaceWith(fresh);
    else tbody.prepend(fresh);
  };
  es.addEventListener("build", (ev) => apply(JSON.parse(ev.data)));
  // What changed between the first fetch and the stream's start (or a reconnect) is fetched
  // once more, oldest first so new builds are prepended in order.
  es.addEventListener("open", async () => {
    try {
      const now = await api(`${base}/jobs/${encodeURIComponent(j)}/builds?limit=${PAGE}`);
      for (const b of now.reverse()) apply(b);
    } catch (_) { /* the next event repairs it */ }
  });
  onLeave(() => es.close());
}
