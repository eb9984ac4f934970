// The shell: the page router (one page per #hash) and the theme; the live data is live.js's.

import { connect, poll, showConnection } from "./live.js";
import * as activity from "./pages/activity.js";
import * as logs from "./pages/logs.js";
import * as memory from "./pages/memory.js";
import * as models from "./pages/models.js";
import * as performance from "./pages/performance.js";
import * as playground from "./pages/playground.js";

const PAGES = { activity, models, playground, logs, performance, memory };
// --- pages ------------------------------------------------------------------------------------

let leave = null;

function route() {
  const [name, ...rest] = location.hash.replace(/^#/, "").split("/");
  const page = PAGES[name] ? name : "models";
  const main = document.getElementById("main");
  if (leave) leave();
  main.replaceChildren();
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#${page}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${page[0].toUpperCase()}${page.slice(1)} · halogen`;
  leave = PAGES[page].show(main, decodeURIComponent(rest.join("/"))) ?? null;
}

// --- theme: the system's, until the toggle picks one (kept in localStorage) -------------------

function applyTheme(theme) {
  const root = document.documentElement;
  if (theme) root.dataset.theme = theme;
  else delete root.dataset.theme;
  const dark = theme ? theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  const button = document.getElementById("theme");
  button.setAttribute("aria-pressed", String(dark));
  button.textContent = dark ? "Light" : "Dark";
  button.setAttribute("aria-label", dark ? "Use the light theme" : "Use the dark theme");
}

function setupTheme() {
  applyTheme(localStorage.getItem("halogen-theme"));
  document.getElementById("theme").addEventListener("click", () => {
    const dark = document.documentElement.dataset.theme
      ? document.documentElement.dataset.theme === "dark"
      : matchMedia("(prefers-color-scheme: dark)").matches;
    const next = dark ? "light" : "dark";
    localStorage.setItem("halogen-theme", next);
    applyTheme(next);
  });
}

// The skip link moves focus to the page without touching the #hash, which names the page.
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});

setupTheme();
showConnection();
connect();
poll();
window.addEventListener("hashchange", () => {
  route();
  // A keyboard user who picked a page lands on it, not back on the navigation.
  document.getElementById("main").focus({ preventScroll: true });
});
route();
