// Performance: generation and prompt speed of the last requests, and the host's CPU and memory
// over time when the server samples them (llama-swap's /api/performance), as hand-drawn SVG.

import { bytes, h, json, number, replace } from "../dom.js";
import { live, subscribe } from "../live.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

// A line chart of one or more series of [x, y] points; x is a time in ms.
export function chart(title, series, unit) {
  // Drawn at the width it is shown at, so its text keeps its size on a phone and a desktop alike.
  const width = Math.min(1200, Math.max(300, (document.getElementById("main")?.clientWidth ?? 640) - 44));
  const height = 200;
  const pad = { left: 48, right: 8, top: 10, bottom: 22 };
  const all = series.flatMap((s) => s.points);
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, title));
  if (!all.length) {
    figure.append(h("p", { class: "muted" }, "No data yet."));
    return figure;
  }
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs, x0 + 1);
  const y1 = Math.max(...ys, 1) * 1.1;
  const X = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const Y = (y) => height - pad.bottom - (y / y1) * (height - pad.top - pad.bottom);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${title}: ${series.map((s) => `${s.label} up to ${number(Math.max(...s.points.map((p) => p[1]), 0), 1)} ${unit}`).join("; ")}` });
  for (const frac of [0, 0.5, 1]) {
    const y = Y(y1 * frac);
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "grid" }));
    const label = svg("text", { x: pad.left - 6, y: y + 4, class: "axis", "text-anchor": "end" });
    label.textContent = number(y1 * frac, y1 < 10 ? 1 : 0);
    root.append(label);
  }
  for (const [x, anchor] of [[x0, "start"], [x1, "end"]]) {
    const label = svg("text", { x: X(x), y: height - 4, class: "axis", "text-anchor": anchor });
    label.textContent = new Date(x).toLocaleTimeString();
    root.append(label);
  }
  series.forEach((s, i) => {
    const points = s.points.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points, class: `series s${i}` }));
    for (const [x, y] of s.points.length < 60 ? s.points : []) root.append(svg("circle", { cx: X(x), cy: Y(y), r: 2.5, class: `series s${i}` }));
  });
  figure.append(root, h("ul", { class: "legend" }, series.map((s, i) => h("li", {}, h("span", { class: `swatch s${i}`, "aria-hidden": "true" }), `${s.label} (${unit})`))));
  return figure;
}

export function show(main) {
  const speed = h("div");
  const memory = h("div");
  const host = h("div");
  const hardware = h("div");
  replace(main, h("h1", {}, "Performance"), speed, memory, host, h("h2", {}, "Hardware"), hardware);
  showHardware(hardware);
  const MiB = 1024 * 1024;
  const drawMemory = () =>
    replace(
      memory,
      chart(
        "Memory of the running models since this page opened",
        [
          { label: "held (PSS)", points: live.history.map((s) => [s.t, s.pss / MiB]) },
          { label: "estimated", points: live.history.map((s) => [s.t, s.estimate / MiB]) },
        ],
        "MiB",
      ),
    );
  drawMemory();
  const why = (error) => (error.status === 404 ? "this server does not keep them" : error.message);

  async function refresh() {
    try {
      const page = await json("/api/metrics/activity?limit=200");
      const rows = (page.data ?? []).filter((r) => r.tokens).reverse();
      const at = (r) => Date.parse(r.timestamp);
      replace(
        speed,
        chart(
          "Speed of the last requests",
          [
            { label: "generation", points: rows.filter((r) => r.tokens.tokens_per_second > 0).map((r) => [at(r), r.tokens.tokens_per_second]) },
            { label: "prompt", points: rows.filter((r) => r.tokens.prompt_per_second > 0).map((r) => [at(r), r.tokens.prompt_per_second]) },
          ],
          "tokens/s",
        ),
      );
    } catch (error) {
      replace(speed, h("p", { class: "muted" }, `No request figures: ${why(error)}.`));
    }
    try {
      const perf = await json("/api/performance");
      const sys = perf.sys_stats ?? [];
      const at = (s) => Date.parse(s.timestamp);
      replace(
        host,
        chart(
          "Host CPU",
          [{ label: "CPU", points: sys.map((s) => [at(s), s.cpu_util_per_core.reduce((a, b) => a + b, 0) / Math.max(1, s.cpu_util_per_core.length)]) }],
          "%",
        ),
        chart("Host memory", [{ label: "used", points: sys.map((s) => [at(s), s.mem_used_mb / 1024]) }], "GiB"),
      );
    } catch (error) {
      replace(host, h("p", { class: "muted" }, `No host samples: ${why(error)}.`));
    }
  }
  refresh();
  const every = setInterval(refresh, 5000);
  const unsubscribe = subscribe((kind) => {
    if (kind === "activity") refresh();
    if (kind === "memory") drawMemory();
  });
  return () => {
    clearInterval(every);
    unsubscribe();
  };
}

// The host as llama-swap's /api/hardware describes it.
async function showHardware(node) {
  try {
    const hw = await json("/api/hardware");
    const cpu = hw.cpu ?? {};
    const os = hw.operating_system ?? {};
    const pairs = [
      ["CPU", [cpu.vendor, cpu.model].filter(Boolean).join(" ") || "—"],
      ["Cores / threads", `${cpu.physical_core_count ?? "—"} / ${cpu.logical_thread_count ?? "—"}`],
      ["Memory", bytes(hw.memory?.capacity_bytes)],
      ["System", [os.name, os.version, os.kernel && `(kernel ${os.kernel})`].filter(Boolean).join(" ") || "—"],
      ["Architecture", hw.architecture?.name ?? "—"],
      ["Runs in", hw.environment?.kind ?? "—"],
      ...(hw.accelerators ?? []).map((a) => [
        `Accelerator ${a.index}`,
        `${[a.vendor, a.model].filter(Boolean).join(" ") || a.kind}, ${bytes(a.memory?.capacity_bytes)} ${a.memory?.kind ?? ""}`.trim(),
      ]),
    ];
    replace(node, h("dl", { class: "facts", id: "hardware" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
  } catch (error) {
    replace(node, h("p", { class: "muted" }, `Not described: ${error.status === 404 ? "this server does not say" : error.message}.`));
  }
}
