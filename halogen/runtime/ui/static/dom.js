// Building the DOM from data. Text always goes in as text nodes: no string from the server ever
// reaches innerHTML, so a model id such as "<script>" shows as those characters.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

// Numbers as people read them.
export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : value < 10 ? 2 : 1)} ${units[unit]}`;
}

export function number(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  return Number(n).toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export function time(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString();
}

export function dot(state) {
  return h("span", { class: `dot ${state}`, "aria-hidden": "true" });
}

export function stateCell(state) {
  return h("span", { class: "state" }, dot(state), h("span", { "data-state": state }, state));
}

export function table(caption, headers, rows, empty = "Nothing yet.") {
  // A header is its text, or [text, class] (the class its column's cells carry, e.g. hide-narrow).
  const th = (header) =>
    Array.isArray(header) ? h("th", { scope: "col", class: header[1] }, header[0]) : h("th", { scope: "col" }, header);
  const thead = h("thead", {}, h("tr", {}, headers.map(th)));
  const body = rows.length
    ? rows
    : [h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, empty))];
  return h(
    "div",
    { class: "scroll" },
    h("table", {}, h("caption", {}, caption), thead, h("tbody", {}, body)),
  );
}

// A path on this server as an absolute URL. Relative to the page it would carry the user:key of
// an address typed with credentials, which fetch refuses; location.origin never holds them, and
// the browser adds the credentials it was given itself.
export function here(path) {
  return location.origin + path;
}

export async function json(url, options = {}) {
  const response = await fetch(here(url), { credentials: "same-origin", ...options });
  if (!response.ok) {
    const error = new Error(`${url}: ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

export function post(url, body) {
  return fetch(here(url), {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? "{}" : JSON.stringify(body),
  });
}
