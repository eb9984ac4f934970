"""`halogen serve`: run a llama-swap config in front of llama-server.

The layers, each a folder, each importing only those below it:

- `serve/`: the process, the HTTP application and the middlewares every route shares; who may
  ask (keys, Host, Origin, connection limits); listening; reloads of the config.
- `apis/`: one module or package per API family (OpenAI and llama.cpp's own routes, Anthropic,
  Ollama, llama-swap's management routes); each declares its routes' error shape.
- `forward/`: from a request to an answer: which target a name means, a local model or a peer,
  and the one relay that streams every answer back.
- `scheduling/`: which models run: the pure planner, the eviction policies, the selectors, and
  the Swapper that carries the decisions out.
- `process/`: a model's llama-server as a process: spawning, health, stopping, reaping, and the
  pooled clients that talk to it.
- `base/`: what every layer shares: errors as data, error shapes, logs, metrics, and the facts
  `halogen build` wrote into the config.

Behaviour follows llama-swap at commit 0bdb3720199f530b622a1934c0db89f32c94819c (2026-08-22);
citations of llama-swap files (internal/...) in this package point to that commit."""
