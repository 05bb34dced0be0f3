// The pipeline page: the graph (laid out by the server), the flow of versions through the
// jobs, and the resources with their checks, versions and pins. Live over SSE.
import { api, el, badge, crumbs, setMain, onLeave, canOperate, act, ago, shortVersion, duration, buildDuration } from "/ui/app.js";

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function drawGraph(name, layout, jobs) {
  const root = svg("svg", {
    width: layout.width, height: layout.height, viewBox: `0 0 ${layout.width} ${layout.height}`,
    role: "img", "aria-label": `Graph of pipeline ${name}`,
  });
  root.append(svg("defs", {}, svg("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse",
  }, svg("path", { d: "M0 0 L10 5 L0 10 z" }))));
  for (const e of layout.edges) {
    root.append(svg("path", { class: `edge k-${e.kind}`, d: e.path, "marker-end": "url(#arrow)" }));
  }
  for (const n of layout.nodes) {
    const job = jobs.get(n.id);
    const status = job && job.latest ? job.latest.status : "none";
    const href = n.kind === "job"
      ? `#/p/${encodeURIComponent(name)}/jobs/${encodeURIComponent(n.id)}`
      : `#res-${encodeURIComponent(n.id)}`;
    const title = n.kind === "job"
      ? `${n.id}: ${status === "none" ? "no builds yet" : `#${job.latest.number} ${status}`}`
      : `resource ${n.id}`;
    const g = svg("a", {
      href, class: `node ${n.kind} s-${status}${status === "running" ? " running" : ""}`,
      "data-id": n.id, "data-status": status, "aria-label": title,
    },
    svg("title", {}, document.createTextNode(title)),
    svg("rect", { x: n.x, y: n.y, width: n.w, height: n.h }),
    n.kind === "job" ? svg("rect", { class: "bar", x: n.x, y: n.y, width: 6, height: n.h }) : document.createTextNode(""),
    svg("text", { x: n.x + (n.kind === "job" ? 14 : 10), y: n.y + n.h / 2 }, document.createTextNode(n.label)));
    root.append(g);
  }
  return root;
}

/** Recolours a job's node for a build that changed. */
function updateNode(container, b) {
  const node = container.querySelector(`.node.job[data-id="${CSS.escape(b.job)}"]`);
  if (!node) return;
  node.setAttribute("class", `node job s-${b.status}${b.status === "running" ? " running" : ""}`);
  node.dataset.status = b.status;
  const title = `${b.job}: #${b.number} ${b.status}`;
  node.setAttribute("aria-label", title);
  node.querySelector("title").textContent = title;
}

function flowTable(name, flow) {
  if (!flow.versions.length) return el("p", { class: "muted" }, `No versions of ${flow.resource} yet.`);
  return el("table", { class: "flow", "aria-label": `Where each version of ${flow.resource} is` },
    el("thead", {}, el("tr", {}, el("th", {}, flow.resource), flow.jobs.map((j) => el("th", {}, j)))),
    el("tbody", {}, flow.versions.map((v) => el("tr", {},
      el("td", { class: "ver", title: JSON.stringify(v.version) }, shortVersion(v.version)),
      flow.jobs.map((j) => {
        const c = v.jobs[j];
        if (!c) return el("td", { class: "cell muted", title: "not reached" }, "·");
        return el("td", { class: "cell" }, el("a", { href: `#/builds/${c.build}`, class: `badge s-${c.status}`, title: `${j} #${c.number} ${c.status}` }, `#${c.number}`));
      })))));
}

async function versionsPanel(name, r, box) {
  const path = `/pipelines/${encodeURIComponent(name)}/resources/${encodeURIComponent(r.id)}`;
  const list = await api(`${path}/versions?limit=20`);
  const again = () => versionsPanel(name, r, box);
  const pinButton = (v) => {
    if (!canOperate()) return "";
    if (v.pinned) {
      return el("button", { onclick: () => act(`unpinned ${r.id}`, () => api(`${path}/pin`, { method: "DELETE" })).then(again) }, "Unpin");
    }
    return el("button", { onclick: () => act(`pinned ${r.id}`, () => api(`${path}/pin`, { method: "PUT", body: { version: v.version } })).then(again) }, "Pin");
  };
  const rows = list.map((v) => el("tr", {},
    el("td", { class: "mono" }, Object.entries(v.version).map(([k, x]) => `${k}=${x}`).join(" ")),
    el("td", {}, v.pinned ? el("span", { class: "badge s-waiting_for_approval" }, "pinned") : ""),
    el("td", {}, pinButton(v))));
  box.replaceChildren(list.length ? el("table", {}, el("tbody", {}, rows)) : el("p", { class: "muted" }, "No versions yet."));
}

async function webhooksPanel(name, r, box) {
  const list = await api(`/pipelines/${encodeURIComponent(name)}/resources/${encodeURIComponent(r.id)}/webhooks`);
  if (!list.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No webhook deliveries since the server started (see docs/server.md#webhooks)."));
    return;
  }
  const bad = ["rejected"];
  box.replaceChildren(el("table", { class: "webhooks" },
    el("thead", {}, el("tr", {}, ["When", "Forge", "Event", "Delivery", "Result", "HTTP", "Reason"].map((h) => el("th", {}, h)))),
    el("tbody", {}, list.map((d) => el("tr", {},
      el("td", {}, ago(d.at_ms)),
      el("td", {}, d.forge),
      el("td", {}, d.event || "–"),
      el("td", { class: "mono" }, d.delivery_id || "–"),
      el("td", {}, el("span", { class: `badge s-${bad.includes(d.result) ? "failed" : d.result === "checking" ? "succeeded" : "skipped"}` }, d.result)),
      el("td", { class: "num" }, d.status),
      el("td", { class: bad.includes(d.result) ? "error" : "muted" }, d.reason || ""))))));
}

function resourcesTable(name, view) {
  return el("table", {}, el("thead", {}, el("tr", {}, ["Resource", "Last check", "Status", "Pinned", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, view.resources.flatMap((r) => {
      const box = el("div");
      const c = r.check;
      return [el("tr", { id: `res-${r.id}` },
        el("td", { class: "mono" }, r.id),
        el("td", {}, c.last_checked_at_ms ? `${ago(c.last_checked_at_ms)} (${duration(c.last_duration_ms)})` : "not yet"),
        el("td", {}, c.error ? el("span", { class: "error" }, `failing ×${c.failures}: ${c.error}`) : el("span", { class: "muted" }, "ok")),
        el("td", { class: "mono" }, r.pinned ? shortVersion(r.pinned) : "–"),
        el("td", {}, el("div", { class: "row" },
          el("button", { onclick: () => versionsPanel(name, r, box) }, "Versions"),
          el("button", { onclick: () => webhooksPanel(name, r, box) }, "Webhooks"),
          canOperate() ? el("button", { onclick: () => act(`checking ${r.id}`, () => api(`/pipelines/${encodeURIComponent(name)}/resources/${encodeURIComponent(r.id)}/check`, { method: "POST" })) }, "Check now") : null))),
      el("tr", {}, el("td", { colspan: 5 }, box))];
    })));
}

function jobsTable(name, view) {
  return el("table", { id: "jobs" }, el("thead", {}, el("tr", {}, ["Job", "Latest", "Duration", "Trigger", "When"].map((h) => el("th", {}, h)))),
    el("tbody", {}, view.jobs.map((j) => {
      const b = j.latest;
      return el("tr", { "data-job": j.name },
        el("td", {}, el("a", { href: `#/p/${encodeURIComponent(name)}/jobs/${encodeURIComponent(j.name)}` }, j.name)),
        el("td", { class: "latest" }, b ? el("a", { href: `#/builds/${b.id}` }, badge(b.status), ` #${b.number}`) : badge(null)),
        el("td", { class: "num" }, b ? duration(buildDuration(b)) : "–"),
        el("td", { class: "muted" }, b ? b.trigger : ""),
        el("td", { class: "muted" }, b ? ago(b.created_at_ms) : ""));
    })));
}

export async function pipelinePage(name) {
  const base = `/pipelines/${encodeURIComponent(name)}`;
  const [view, layout] = await Promise.all([api(base), api(`${base}/graph`)]);
  crumbs(el("a", { href: "#/all" }, "Pipelines"), el("span", {}, name));
  const jobs = new Map(view.jobs.map((j) => [j.name, j]));
  const graph = el("div", { class: "graph", id: "graph" }, drawGraph(name, layout, jobs));
  const flowBox = el("div", { class: "panel", id: "flow" }, el("p", { class: "muted" }, "Loading the flow of versions…"));
  const jobsBox = el("div", { class: "panel" }, jobsTable(name, view));
  setMain(
    el("h1", {}, name, el("a", { class: "button", href: `#/p/${encodeURIComponent(name)}/stats` }, "Statistics")),
    view.config_error ? el("p", { class: "error panel" }, `The newest version of ${view.file} was rejected; the previous one keeps running: ${view.config_error}`) : null,
    graph,
    el("h2", {}, "Where is my commit?"), flowBox,
    el("h2", {}, "Jobs"), jobsBox,
    el("h2", {}, "Resources"), el("div", { class: "panel" }, resourcesTable(name, view)));
  // For the UI bench: when the page's first full render happened.
  performance.mark("pipeline-drawn");
  const loadFlow = async () => {
    try { flowBox.replaceChildren(flowTable(name, await api(`${base}/flow?limit=10`))); } catch (e) {
      flowBox.replaceChildren(el("p", { class: "muted" }, e.message));
    }
  };
  loadFlow();
  let flowTimer = null;
  const es = new EventSource(`/api/v1${base}/events`);
  const apply = (b) => {
    const j = jobs.get(b.job);
    if (!j || (j.latest && (j.latest.id > b.id || JSON.stringify(j.latest) === JSON.stringify(b)))) return;
    j.latest = b;
    updateNode(graph, b);
    jobsBox.replaceChildren(jobsTable(name, view));
    clearTimeout(flowTimer);
    flowTimer = setTimeout(loadFlow, 300);
  };
  es.addEventListener("build", (ev) => apply(JSON.parse(ev.data)));
  // The stream sends changes from when it opens: what changed between the first fetch and
  // then (or during a reconnect) is fetched once more.
  es.addEventListener("open", async () => {
    try {
      for (const j of (await api(base)).jobs) if (j.latest) apply(j.latest);
    } catch (_) { /* the next event or resync repairs it */ }
  });
  es.addEventListener("resync", () => pipelinePage(name));
  onLeave(() => { es.close(); clearTimeout(flowTimer); });
}
