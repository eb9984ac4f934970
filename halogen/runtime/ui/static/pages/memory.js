// Memory, which only halogen knows: the budget as a bar filled by the running models'
// estimates, each model's estimate beside what its process holds (PSS), the pod's cgroup and
// the GPU's GTT pool, the sets of models that may stay loaded together (the one in use marked),
// and the requests waiting for room, with their place in the queue.

import { bytes, h, replace, stateCell, table } from "../dom.js";
import { live, subscribe } from "../live.js";

const COLOURS = 6;

export function show(main) {
  const body = h("div");
  replace(main, h("h1", {}, "Memory"), body);
  let shown = "";
  const render = () => {
    if (!live.memory) return replace(body, h("p", { class: "muted" }, "Reading…"));
    const key = JSON.stringify(live.memory);
    if (key !== shown) draw(body, live.memory); // only when something changed
    shown = key;
  };
  render();
  return subscribe((kind) => kind === "memory" && render());
}

function draw(node, doc) {
  const running = doc.models.filter((m) => m.state !== "stopped");
  const budget = doc.budget;
  const planned = running.reduce((sum, m) => sum + (m.estimate ?? 0), 0);
  const observed = running.reduce((sum, m) => sum + (m.observed ?? 0), 0);
  const scale = Math.max(budget ?? 0, planned, observed, 1);

  const segments = running.map((m, i) =>
    h("span", {
      class: `seg c${i % COLOURS}`,
      style: null,
      "data-width": ((100 * (m.estimate ?? 0)) / scale).toFixed(2),
      title: `${m.id}: ${bytes(m.estimate)}`,
    }),
  );
  const bar = h(
    "div",
    {
      class: "bar",
      role: "img",
      "aria-label": `Estimates of the running models: ${bytes(planned)} of a budget of ${budget ? bytes(budget) : "none set"}`,
    },
    segments,
    observed ? h("span", { class: "observed-mark", "data-left": ((100 * observed) / scale).toFixed(2), title: `observed ${bytes(observed)}` }) : null,
  );
  // Widths through the CSSOM: the policy allows no inline style attribute.
  for (const seg of bar.querySelectorAll("[data-width]")) seg.style.width = `${seg.dataset.width}%`;
  for (const mark of bar.querySelectorAll("[data-left]")) mark.style.left = `${mark.dataset.left}%`;

  const legend = h(
    "ul",
    { class: "legend" },
    running.map((m, i) => h("li", {}, h("span", { class: `swatch c${i % COLOURS}`, "aria-hidden": "true" }), `${m.id} ${bytes(m.estimate)}`)),
    observed ? h("li", {}, h("span", { class: "swatch observed", "aria-hidden": "true" }), `observed in all: ${bytes(observed)}`) : null,
  );

  const rows = doc.models.map((m) => {
    const over = m.estimate && m.observed && m.observed > m.estimate * 1.15;
    return h(
      "tr",
      { "data-model": m.id },
      h("th", { scope: "row" }, m.id),
      h("td", {}, stateCell(m.state)),
      h("td", { class: "num", "data-field": "estimate", "data-bytes": m.estimate }, bytes(m.estimate)),
      h("td", { class: `num${over ? " warn" : ""}`, "data-field": "observed", "data-bytes": m.observed }, bytes(m.observed)),
      h("td", { class: "num hide-narrow" }, m.pid ?? "—"),
      h("td", { class: "num hide-narrow" }, `${m.inFlight} / ${m.queued}`),
    );
  });

  const sets = doc.sets.map((s) =>
    h(
      "tr",
      { class: s.current ? "current" : "", "aria-current": s.current ? "true" : null },
      h("th", { scope: "row" }, s.name || "(default)", s.current ? h("span", { class: "badge" }, "in use") : null),
      h("td", {}, s.rule),
      h("td", {}, s.models.join(", ")),
      h("td", { class: "num" }, bytes(s.estimate)),
    ),
  );

  const waiting = doc.waiting.map((w) =>
    h("tr", {}, h("td", { class: "num" }, String(w.position)), h("th", { scope: "row" }, w.model), h("td", { class: "num" }, String(w.priority))),
  );

  const pools = [
    ["Budget (HALOGEN_MEMORY_BUDGET)", budget === null ? "not set" : bytes(budget), budget],
    ["Running models' estimates", bytes(planned)],
    ["Running models' PSS", bytes(observed)],
    ["Pod cgroup memory", doc.cgroup.current === null ? "—" : `${bytes(doc.cgroup.current)} of ${doc.cgroup.max === null ? "no limit" : bytes(doc.cgroup.max)}`],
    ...doc.gtt.map((g) => [`GTT ${g.card}`, `${bytes(g.used)} of ${bytes(g.total)}`]),
  ];

  replace(
    node,
    h("section", { "aria-labelledby": "budget-h" }, h("h2", { id: "budget-h" }, "Budget"), bar, legend, h("dl", { class: "facts", id: "pools" }, pools.map(([k, v, raw]) => [h("dt", {}, k), h("dd", { "data-bytes": raw }, v)]))),
    h("h2", {}, "Models"),
    table("Each model's estimate beside its process's memory", ["Model", "State", ["Estimate", "num"], ["Observed (PSS)", "num"], ["PID", "num hide-narrow"], ["Serving / waiting", "num hide-narrow"]], rows),
    h("h2", {}, doc.router === "matrix" ? "Sets (the matrix)" : "Groups"),
    table(
      doc.router === "matrix" ? "The sets of models that may stay loaded together" : "The groups: a swapping group holds one member at a time",
      ["Set", "Rule", "Models", ["Estimate", "num"]],
      sets,
      "No sets.",
    ),
    h("h2", {}, "Waiting"),
    table("Requests waiting for room, in the order they will be served", [["Position", "num"], "Model", ["Priority", "num"]], waiting, "No request is waiting."),
  );
}
