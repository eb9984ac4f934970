// Logs: the proxy's and the models' lines as they come (/logs/stream, llama-swap's route),
// coloured as the terminal would show them.

import { toNodes } from "../ansi.js";
import { h, here, replace } from "../dom.js";

const KEEP = 2000; // lines shown at most

// Read a text stream line by line until the returned function is called.
export function follow(url, onText) {
  const abort = new AbortController();
  (async () => {
    const response = await fetch(here(url), { credentials: "same-origin", signal: abort.signal });
    if (!response.ok || !response.body) {
      onText(`(${url}: ${response.status})\n`);
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      onText(value);
    }
  })().catch((error) => {
    if (error.name !== "AbortError") onText(`(${error.message})\n`);
  });
  return () => abort.abort();
}

export function show(main) {
  const source = h(
    "select",
    { id: "log-source" },
    h("option", { value: "" }, "everything"),
    h("option", { value: "proxy" }, "proxy"),
    h("option", { value: "upstream" }, "models"),
  );
  const filter = h("input", { id: "log-filter", type: "search", placeholder: "text to keep" });
  const log = h("pre", { class: "log tall", tabindex: "0", "aria-label": "Log lines", "aria-live": "off" });
  replace(
    main,
    h("h1", {}, "Logs"),
    h(
      "div",
      { class: "controls" },
      h("label", { for: "log-source" }, "Source "),
      source,
      h("label", { for: "log-filter" }, "Filter "),
      filter,
    ),
    log,
  );

  let stop = null;
  let partial = "";
  function addText(text) {
    const lines = (partial + text).split("\n");
    partial = lines.pop();
    const wanted = filter.value.toLowerCase();
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    for (const line of lines) {
      if (wanted && !line.toLowerCase().includes(wanted)) continue;
      log.append(h("span", { class: "line" }, toNodes(line)), "\n");
    }
    while (log.childNodes.length > 2 * KEEP) {
      log.firstChild.remove();
      log.firstChild.remove();
    }
    if (atEnd) log.scrollTop = log.scrollHeight;
  }
  function start() {
    if (stop) stop();
    log.replaceChildren();
    partial = "";
    stop = follow(source.value ? `/logs/stream/${source.value}` : "/logs/stream", addText);
  }
  source.addEventListener("change", start);
  filter.addEventListener("change", start);
  start();
  return () => stop && stop();
}
