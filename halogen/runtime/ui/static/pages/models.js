// Models: each model's state, load and unload (one or all), and per model its details, the
// facts halogen.lock gave the build, its memory and its own log.

import { toNodes } from "../ansi.js";
import { bytes, h, here, json, post, replace, stateCell, table } from "../dom.js";
import { live, subscribe } from "../live.js";
import { follow } from "./logs.js";

export function show(main, selected) {
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const profiles = h("div", { class: "controls" });
  const body = h("div");
  const detail = h("section", { class: "detail", "aria-label": "Model details" });
  replace(
    main,
    h(
      "div",
      { class: "heading" },
      h("h1", {}, "Models"),
      h("button", { type: "button", class: "danger", onclick: () => unloadAll(status) }, "Unload all"),
    ),
    profiles,
    status,
    body,
    detail,
  );
  showProfiles(profiles, status);

  // Redrawn only when what it shows changed: a redraw replaces the buttons, and with them the
  // keyboard focus.
  let shown = "";
  function render() {
    const local = live.models.filter((m) => !m.peerID);
    const key = JSON.stringify(local.map((m) => [m.id, m.name, m.description, m.state, live.memory?.models.find((x) => x.id === m.id)?.estimate]));
    if (key === shown) return;
    shown = key;
    const rows = live.models
      .filter((m) => !m.peerID)
      .map((m) => {
        const memory = live.memory?.models.find((x) => x.id === m.id);
        const running = m.state !== "stopped" && m.state !== "shutdown";
        return h(
          "tr",
          { "data-model": m.id },
          h("td", {}, stateCell(m.state)),
          h(
            "th",
            { scope: "row" },
            h("a", { href: `#models/${encodeURIComponent(m.id)}` }, m.id),
            m.name && m.name !== m.id ? h("div", { class: "muted small" }, m.name) : null,
          ),
          h("td", { class: "hide-narrow" }, m.description || ""),
          h("td", { class: "num" }, bytes(memory?.estimate)),
          h(
            "td",
            { class: "actions" },
            running
              ? h("button", { type: "button", onclick: () => unload(m.id, status) }, "Unload", h("span", { class: "sr" }, ` ${m.id}`))
              : h("button", { type: "button", onclick: () => load(m.id, status) }, "Load", h("span", { class: "sr" }, ` ${m.id}`)),
          ),
        );
      });
    replace(body, table("The models this server serves", ["State", "Model", ["Description", "hide-narrow"], ["Estimate", "num"], ["Action", "num"]], rows, "No models."));
  }

  render();
  const unsubscribe = subscribe((kind) => {
    if (kind === "models" || kind === "memory") render();
    if (kind === "profileChanged") showProfiles(profiles, status);
  });
  const stopDetail = selected ? showDetail(detail, selected) : null;
  return () => {
    unsubscribe();
    if (stopDetail) stopDetail();
  };
}

// llama-swap's profiles (/api/profiles): a choice of which models the names point to.
async function showProfiles(node, status) {
  let state;
  try {
    state = await json("/api/profiles");
  } catch {
    node.replaceChildren();
    return;
  }
  if (!state.profiles?.length) {
    node.replaceChildren();
    return;
  }
  const key = JSON.stringify(state);
  if (node.dataset.shown === key) return; // unchanged: keep the control, and its focus
  node.dataset.shown = key;
  const select = h(
    "select",
    { id: "profile" },
    h("option", { value: "" }, "none"),
    state.profiles.map((p) => h("option", { value: p.id, selected: p.id === state.active }, p.description ? `${p.id}: ${p.description}` : p.id)),
  );
  select.addEventListener("change", async () => {
    const response = await fetch(here("/api/profiles/active"), {
      method: "PUT",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: select.value || null }),
    });
    status.textContent = response.ok ? `Profile: ${select.value || "none"}.` : `The profile did not change: ${response.status}`;
  });
  replace(node, h("label", { for: "profile" }, "Profile "), select);
}

async function load(id, status) {
  status.textContent = `Loading ${id}…`;
  // As llama-swap's UI loads a model: any request through /upstream/ starts it.
  const response = await fetch(here(`/upstream/${encodeURIComponent(id)}/health`), { credentials: "same-origin" });
  status.textContent = response.ok ? `${id} is loaded.` : `${id} did not load: ${response.status}`;
}

async function unload(id, status) {
  status.textContent = `Unloading ${id}…`;
  const response = await post(`/api/models/unload/${encodeURIComponent(id)}`);
  status.textContent = response.ok ? `${id} is unloaded.` : `${id} was not unloaded: ${response.status}`;
}

async function unloadAll(status) {
  status.textContent = "Unloading every model…";
  const response = await post("/api/models/unload");
  status.textContent = response.ok ? "Every model is unloaded." : `Unload failed: ${response.status}`;
}

function showDetail(section, id) {
  const facts = h("div");
  const log = h("pre", { class: "log", tabindex: "0", "aria-label": `Log of ${id}` });
  replace(
    section,
    h("h2", {}, id),
    h("h3", {}, "Details"),
    facts,
    h("h3", {}, "Log"),
    log,
  );
  const known = h("div");
  facts.append(known);
  const refresh = () => renderFacts(known, id, live.memory?.models.find((m) => m.id === id));
  refresh();
  const unsubscribe = subscribe((kind) => kind === "memory" && refresh());
  // The GGUF header's keys, as the Ollama API's /api/show gives them from halogen.lock.
  post("/api/show", { model: id })
    .then((r) => (r.ok ? r.json() : null))
    .then((answer) => {
      if (!answer?.model_info) return;
      const rows = Object.entries(answer.model_info)
        .filter(([, v]) => typeof v !== "object")
        .map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, String(v))));
      facts.append(table("GGUF header", ["Key", "Value"], rows));
    })
    .catch(() => {});
  const stop = follow(`/logs/stream/${encodeURIComponent(id)}`, (text) => {
    log.append(...toNodes(text));
    log.scrollTop = log.scrollHeight;
  });
  return () => {
    unsubscribe();
    stop();
  };
}

function renderFacts(node, id, memory) {
  if (!memory) {
    replace(node, h("p", { class: "muted" }, `No model ${id}.`));
    return;
  }
  const f = memory.facts ?? {};
  const pairs = [
    ["Name", memory.name || "—"],
    ["Description", memory.description || "—"],
    ["State", memory.state],
    ["Group", memory.group || "—"],
    ["Architecture", f.architecture ?? "—"],
    ["Parameters", f.parameterSize ?? "—"],
    ["Quantization", f.quantizationLevel ?? "—"],
    ["Trained context", f.contextLength ?? "—"],
    ["File size", bytes(f.fileSize)],
    ["Memory estimate", bytes(memory.estimate)],
    ["Memory observed (PSS)", bytes(memory.observed)],
  ];
  replace(node, h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])));
}
