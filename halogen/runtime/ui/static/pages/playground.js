// Playground: a streaming chat with any model, through the OpenAI chat completions, Anthropic
// messages or OpenAI Responses API (the page's choice): the same routes a client calls.

import { h, here, json, replace } from "../dom.js";

const APIS = {
  chat: {
    label: "OpenAI chat completions",
    url: "/v1/chat/completions",
    body: (model, messages, max) => ({ model, messages, max_tokens: max, stream: true }),
    delta: (event) => event.choices?.[0]?.delta?.content ?? event.choices?.[0]?.delta?.reasoning_content ?? "",
  },
  messages: {
    label: "Anthropic messages",
    url: "/v1/messages",
    body: (model, messages, max) => ({ model, messages, max_tokens: max, stream: true }),
    delta: (event) => (event.type === "content_block_delta" ? event.delta?.text ?? "" : ""),
  },
  responses: {
    label: "OpenAI responses",
    url: "/v1/responses",
    body: (model, messages, max) => ({
      model,
      input: messages.map((m) => ({ role: m.role, content: m.content })),
      max_output_tokens: max,
      stream: true,
    }),
    delta: (event) => (event.type === "response.output_text.delta" ? event.delta ?? "" : ""),
  },
};

const messages = [];

export function show(main) {
  const model = h("select", { id: "pg-model", required: true });
  const api = h(
    "select",
    { id: "pg-api" },
    Object.entries(APIS).map(([key, a]) => h("option", { value: key }, a.label)),
  );
  const max = h("input", { id: "pg-max", type: "number", min: "1", max: "32768", value: "512", inputmode: "numeric" });
  const prompt = h("textarea", { id: "pg-prompt", rows: "3", placeholder: "Say something" });
  const send = h("button", { type: "submit", class: "primary" }, "Send");
  const stop = h("button", { type: "button", disabled: true }, "Stop");
  const clear = h("button", { type: "button" }, "Clear");
  const transcript = h("ol", { class: "transcript", "aria-live": "polite", "aria-label": "Conversation" });
  const form = h(
    "form",
    { class: "playground" },
    h(
      "div",
      { class: "controls" },
      h("span", { class: "field" }, h("label", { for: "pg-model" }, "Model "), model),
      h("span", { class: "field" }, h("label", { for: "pg-api" }, "API "), api),
      h("span", { class: "field" }, h("label", { for: "pg-max" }, "Max tokens "), max),
    ),
    transcript,
    h("label", { for: "pg-prompt", class: "sr" }, "Message"),
    prompt,
    h("div", { class: "controls" }, send, stop, clear),
  );
  replace(main, h("h1", {}, "Playground"), form);

  json("/v1/models")
    .then((list) => {
      for (const m of list.data) model.append(h("option", { value: m.id }, m.id));
    })
    .catch((error) => transcript.append(h("li", { class: "error" }, `models: ${error.message}`)));

  const render = () =>
    replace(
      transcript,
      messages.map((m) => h("li", { class: `msg ${m.role}` }, h("span", { class: "role" }, m.role), h("div", { class: "content" }, m.content))),
    );
  render();

  let abort = null;
  clear.addEventListener("click", () => {
    messages.length = 0;
    render();
  });
  stop.addEventListener("click", () => abort?.abort());
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || !model.value || abort) return;
    prompt.value = "";
    messages.push({ role: "user", content: text });
    const reply = { role: "assistant", content: "" };
    const history = messages.slice();
    messages.push(reply);
    render();
    const replyNode = transcript.lastElementChild.querySelector(".content");
    transcript.lastElementChild.setAttribute("aria-busy", "true");
    abort = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    try {
      let pieces = 0;
      await stream(APIS[api.value], model.value, history, Number(max.value) || 512, abort.signal, (piece) => {
        reply.content += piece;
        replyNode.textContent = reply.content;
        replyNode.dataset.pieces = String(++pieces); // how many times the reply grew
      });
    } catch (error) {
      if (error.name !== "AbortError") reply.content += `\n[${error.message}]`;
      replyNode.textContent = reply.content;
    } finally {
      transcript.lastElementChild?.setAttribute("aria-busy", "false");
      abort = null;
      send.disabled = false;
      stop.disabled = true;
    }
  });
  return () => abort?.abort();
}

async function stream(api, model, history, maxTokens, signal, onDelta) {
  const response = await fetch(here(api.url), {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(api.body(model, history, maxTokens)),
    signal,
  });
  if (!response.ok) {
    const text = await response.text();
    throw new Error(`${response.status}: ${text.slice(0, 300)}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of frame.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (!data || data === "[DONE]") continue;
        try {
          const piece = api.delta(JSON.parse(data));
          if (piece) onDelta(piece);
        } catch {
          // a frame that is not JSON (a comment, a keep-alive) carries no text
        }
      }
    }
  }
}
