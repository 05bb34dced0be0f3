// Statistics: per job and per step, p50/p95 duration and failure rate over the last N
// builds, with a trend chart; the slowest and the flakiest steps of the pipeline first.
import { api, el, crumbs, setMain, duration } from "/ui/app.js";

const SVG = "http://www.w3.org/2000/svg";

/** Bars, one per build, oldest first: height by duration, colour by status. */
function trend(points) {
  const w = 4, gap = 1, h = 36;
  const max = Math.max(1, ...points.map(([, d]) => d || 0));
  const root = document.createElementNS(SVG, "svg");
  root.setAttribute("class", "spark");
  root.setAttribute("width", String(Math.max(1, points.length) * (w + gap)));
  root.setAttribute("height", String(h));
  root.setAttribute("role", "img");
  root.setAttribute("aria-label", `durations of the last ${points.length} builds`);
  points.forEach(([n, d, status], i) => {
    const bh = Math.max(2, Math.round(((d || 0) / max) * (h - 2)));
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", String(i * (w + gap)));
    r.setAttribute("y", String(h - bh));
    r.setAttribute("width", String(w));
    r.setAttribute("height", String(bh));
    r.setAttribute("class", `s-${status}`);
    const t = document.createElementNS(SVG, "title");
    t.textContent = `#${n} ${status} ${duration(d)}`;
    r.append(t);
    root.append(r);
  });
  return root;
}

const pct = (x) => `${(x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0)}%`;

function stepRows(list, withJob) {
  return list.map((s) => el("tr", {},
    withJob ? el("td", {}, s.job) : null,
    el("td", { class: "mono" }, s.step),
    el("td", { class: "num" }, s.runs),
    el("td", { class: "num" }, duration(s.p50_ms)),
    el("td", { class: "num" }, duration(s.p95_ms)),
    el("td", { class: "num" }, pct(s.failure_rate)),
    el("td", { class: "num" }, s.flaky)));
}

const stepHead = (withJob) => el("thead", {}, el("tr", {},
  (withJob ? ["Job"] : []).concat(["Step", "Runs", "p50", "p95", "Failure rate", "Flaky"]).map((h, i) => el("th", { class: i >= (withJob ? 2 : 1) ? "num" : "" }, h))));

export async function statsPage(p, params) {
  const last = Number(params.get("last")) || 50;
  const s = await api(`/pipelines/${encodeURIComponent(p)}/stats?last=${last}`);
  crumbs(el("a", { href: "#/all" }, "Pipelines"), el("a", { href: `#/p/${encodeURIComponent(p)}` }, p), el("span", {}, "Statistics"));
  const windowPick = el("select", { "aria-label": "Builds per job", onchange: (e) => { location.hash = `#/p/${encodeURIComponent(p)}/stats?last=${e.target.value}`; } },
    [20, 50, 100, 200, 500].map((n) => el("option", { value: n, selected: n === last }, `last ${n} builds`)));
  setMain(
    el("h1", {}, `${p}: statistics`, windowPick),
    el("div", { class: "row top" },
      el("section", { class: "panel grow", "aria-label": "Slowest steps" }, el("h2", {}, "Slowest steps (p95)"),
        s.slowest.length ? el("table", {}, stepHead(true), el("tbody", {}, stepRows(s.slowest, true))) : el("p", { class: "muted" }, "No finished steps yet.")),
      el("section", { class: "panel grow", "aria-label": "Flakiest steps" }, el("h2", {}, "Flakiest steps"),
        s.flakiest.length ? el("table", {}, stepHead(true), el("tbody", {}, stepRows(s.flakiest, true)))
          : el("p", { class: "muted" }, "No step needed a retry to pass."))),
    el("h2", {}, "Jobs"),
    el("div", { class: "panel" }, el("table", { id: "job-stats" },
      el("thead", {}, el("tr", {}, ["Job", "Builds", "p50", "p95", "Failure rate", "Trend (oldest → newest)"].map((h, i) => el("th", { class: i && i < 5 ? "num" : "" }, h)))),
      el("tbody", {}, s.jobs.flatMap((j) => {
        const detail = el("tr", { hidden: true }, el("td", { colspan: 6 }, el("table", {}, stepHead(false), el("tbody", {}, stepRows(j.steps, false)))));
        return [el("tr", {},
          el("td", {}, el("button", { "aria-expanded": "false", onclick: (e) => {
            detail.hidden = !detail.hidden;
            e.currentTarget.setAttribute("aria-expanded", String(!detail.hidden));
          } }, j.job)),
          el("td", { class: "num" }, j.runs),
          el("td", { class: "num" }, duration(j.p50_ms)),
          el("td", { class: "num" }, duration(j.p95_ms)),
          el("td", { class: "num" }, pct(j.failure_rate), " ", el("span", { class: "bar-meter", title: pct(j.failure_rate) })),
          el("td", {}, trend(j.trend))), detail];
      })))));
  for (const [i, m] of [...document.querySelectorAll(".bar-meter")].entries()) {
    m.style.width = `${Math.round(s.jobs[i].failure_rate * 60)}px`;
  }
}
