// Activity: the requests served (llama-swap's /api/metrics/activity rows: tokens, speeds,
// duration), the totals, the requests in flight now (with Cancel) and the captures.

import { bytes, duration, h, json, number, post, replace, table, time } from "../dom.js";
import { live, subscribe } from "../live.js";

export function show(main) {
  const totals = h("div", { class: "cards" });
  const inflight = h("div");
  const rows = h("div");
  const dialog = h("dialog", { class: "capture", "aria-labelledby": "capture-title" });
  replace(
    main,
    h("h1", {}, "Activity"),
    totals,
    h("h2", {}, "In flight"),
    inflight,
    h("h2", {}, "Requests"),
    rows,
    dialog,
  );

  async function refresh() {
    try {
      const [page, stats] = await Promise.all([
        json("/api/metrics/activity?limit=50"),
        json("/api/metrics/stats").catch(() => null),
      ]);
      renderTotals(totals, stats);
      renderRows(rows, page.data ?? [], dialog);
    } catch (error) {
      const why = error.status === 404 ? "this server keeps no activity log" : error.message;
      replace(rows, h("p", { class: "muted" }, `No activity to show: ${why}.`));
    }
  }

  function renderInflight() {
    const now = Date.now();
    const body = live.inflight.map((r) =>
      h(
        "tr",
        {},
        h("td", {}, time(r.timestamp)),
        h("th", { scope: "row" }, r.model),
        h("td", {}, `${r.method} ${r.req_path}`),
        h("td", { class: "num" }, duration(Math.max(0, now - Date.parse(r.timestamp)))),
        h("td", { class: "num" }, bytes(r.resp_bytes)),
        h(
          "td",
          {},
          h(
            "button",
            { type: "button", class: "danger", onclick: () => post(`/api/inflight/${encodeURIComponent(r.id)}/cancel`) },
            "Cancel",
            h("span", { class: "sr" }, ` request ${r.id}`),
          ),
        ),
      ),
    );
    replace(inflight, table("Requests being served now", ["Started", "Model", "Request", ["Elapsed", "num"], ["Sent", "num"], "Action"], body, "None."));
  }

  refresh();
  renderInflight();
  const tick = setInterval(() => live.inflight.length && renderInflight(), 1000);
  const unsubscribe = subscribe((kind) => {
    if (kind === "activity") refresh();
    if (kind === "inflight") renderInflight();
  });
  return () => {
    clearInterval(tick);
    unsubscribe();
  };
}

function renderTotals(node, stats) {
  if (!stats) {
    node.replaceChildren();
    return;
  }
  const card = (label, value) => h("div", { class: "card" }, h("div", { class: "muted small" }, label), h("div", { class: "big" }, value));
  replace(
    node,
    card("Requests", number(stats.total_requests)),
    card("Input tokens", number(stats.total_input_tokens)),
    card("Output tokens", number(stats.total_output_tokens)),
    card("Cached tokens", number(stats.total_cache_tokens)),
    stats.gen_histogram ? card("Generation p50", `${number(stats.gen_histogram.p50, 1)} t/s`) : null,
  );
}

function renderRows(node, data, dialog) {
  const body = data.map((r) =>
    h(
      "tr",
      { "data-activity": r.id },
      h("td", {}, time(r.timestamp)),
      h("th", { scope: "row" }, r.model),
      h("td", { class: "hide-narrow" }, r.req_path),
      h("td", { class: "num hide-narrow" }, String(r.resp_status_code)),
      h("td", { class: "num", "data-field": "input" }, number(r.tokens?.input_tokens)),
      h("td", { class: "num", "data-field": "output" }, number(r.tokens?.output_tokens)),
      h("td", { class: "num hide-narrow", "data-field": "cached" }, number(r.tokens?.cache_tokens)),
      h("td", { class: "num hide-narrow" }, r.tokens?.prompt_per_second > 0 ? number(r.tokens.prompt_per_second, 1) : "—"),
      h("td", { class: "num" }, r.tokens?.tokens_per_second > 0 ? number(r.tokens.tokens_per_second, 1) : "—"),
      h("td", { class: "num" }, duration(r.duration_ms)),
      h(
        "td",
        {},
        r.has_capture
          ? h("button", { type: "button", onclick: () => openCapture(dialog, r.id) }, "Open", h("span", { class: "sr" }, ` capture ${r.id}`))
          : "",
      ),
    ),
  );
  replace(
    node,
    table(
      "The last requests, newest first",
      ["Time", "Model", ["Path", "hide-narrow"], ["Status", "num hide-narrow"], ["In", "num"], ["Out", "num"], ["Cached", "num hide-narrow"], ["Prompt t/s", "num hide-narrow"], ["Gen t/s", "num"], ["Duration", "num"], "Capture"],
      body,
      "No requests yet.",
    ),
  );
}

function decode(base64) {
  try {
    const raw = Uint8Array.from(atob(base64 ?? ""), (c) => c.charCodeAt(0));
    return new TextDecoder().decode(raw);
  } catch {
    return "(not text)";
  }
}

async function openCapture(dialog, id) {
  replace(dialog, h("p", {}, "Loading…"));
  dialog.showModal();
  try {
    const c = await json(`/api/captures/${encodeURIComponent(id)}`);
    const headers = (obj) => Object.entries(obj ?? {}).map(([k, v]) => `${k}: ${v}`).join("\n");
    replace(
      dialog,
      h("h2", { id: "capture-title" }, `Capture ${id}: ${c.req_path}`),
      h("h3", {}, "Request"),
      h("pre", { class: "log", tabindex: "0" }, headers(c.req_headers), "\n\n", decode(c.req_body)),
      h("h3", {}, "Response"),
      h("pre", { class: "log", tabindex: "0" }, headers(c.resp_headers), "\n\n", decode(c.resp_body)),
      h("form", { method: "dialog" }, h("button", { class: "primary" }, "Close")),
    );
  } catch (error) {
    replace(dialog, h("p", {}, `Capture ${id}: ${error.message}`), h("form", { method: "dialog" }, h("button", {}, "Close")));
  }
  dialog.querySelector("button")?.focus();
}
