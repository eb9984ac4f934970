// The live data every page reads. It comes from /api/events (llama-swap's envelope: {type,
// data}, data a JSON string) and, for what only halogen knows, /api/halogen/memory once a second;
// without an event stream the models' states come from that document too.

import { here, json } from "./dom.js";

const POLL_MS = 1000;
const HISTORY = 600; // samples kept: ten minutes since the page opened

export const live = {
  models: [], // [{id, name, description, state, ...}]
  memory: null, // the /api/halogen/memory document
  inflight: [], // llama-swap's InflightRequestEntry rows
  history: [], // one sample of the running models' memory per poll: {t, pss, estimate}
  activityRevision: 0,
  events: "connecting", // connected | connecting | polling
};

const listeners = new Set();

export function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function emit(kind) {
  for (const listener of [...listeners]) listener(kind);
}

function applyEvent(message) {
  const data = JSON.parse(message.data);
  switch (message.type) {
    case "modelStatus":
      live.models = data;
      emit("models");
      break;
    case "activity":
      live.activityRevision++;
      emit("activity");
      break;
    case "inflight": {
      let rows = live.inflight;
      if (data.operation === "snapshot") rows = data.requests ?? [];
      else if (data.operation === "upsert" && data.request) {
        rows = rows.filter((r) => r.id !== data.request.id).concat([data.request]);
      } else if (data.operation === "remove") rows = rows.filter((r) => r.id !== data.id);
      live.inflight = rows.sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
      emit("inflight");
      break;
    }
    default:
      emit(message.type);
  }
}

export function connect() {
  const source = new EventSource(here("/api/events"));
  source.onopen = () => {
    live.events = "connected";
    live.inflight = [];
    showConnection();
  };
  source.onmessage = (event) => {
    try {
      applyEvent(JSON.parse(event.data));
    } catch (error) {
      console.error("event", error);
    }
  };
  source.onerror = () => {
    // CLOSED: the server has no event stream (or refused it); the browser will not retry, and
    // the models' states come from the memory document instead.
    live.events = source.readyState === EventSource.CLOSED ? "polling" : "connecting";
    showConnection();
  };
}

export async function poll() {
  if (document.visibilityState === "visible") {
    try {
      live.memory = await json("/api/halogen/memory");
      const running = live.memory.models.filter((m) => m.state !== "stopped");
      live.history.push({
        t: Date.now(),
        pss: running.reduce((sum, m) => sum + (m.observed ?? 0), 0),
        estimate: running.reduce((sum, m) => sum + (m.estimate ?? 0), 0),
      });
      if (live.history.length > HISTORY) live.history.shift();
      if (live.events !== "connected") {
        live.models = live.memory.models.map((m) => ({ ...m }));
        emit("models");
      }
      emit("memory");
    } catch (error) {
      console.error("memory", error);
    }
  }
  setTimeout(poll, POLL_MS);
}

export function showConnection() {
  const node = document.getElementById("connection");
  node.textContent = { connected: "live", connecting: "connecting", polling: "live (polling)" }[live.events];
  node.dataset.state = live.events;
}

