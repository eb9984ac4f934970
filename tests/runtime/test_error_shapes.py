"""Every route answers its errors in the shape its API's clients parse, found by walking the
router, so a new route cannot be forgotten: OpenAI's on the OpenAI routes and halogen's own,
Anthropic's on the Messages routes, Ollama's on Ollama's, and llama-swap's on the llama-swap API
under `/api/` (SendResponse in internal/shared/http.go, which internal/server/apigroup.go
answers through), whatever the error: the route's own, a wrong method, a refused Host or page, a
missing key, a body over the limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from halogen.runtime.apis.openai import OPENAI_ROUTES
from halogen.runtime.serve import app

from .harness import Proxy, Site, serving
from .test_security import SAMPLES  # the path parameters both route walks fill in

KEY = {"Authorization": "Bearer sk-shapes"}
LIMIT = 4096

# The families of the spec (../shared/spec/runtime.md, and llama-swap's own API for `/api/`
# management routes), written out here rather than read from the code under test.
ANTHROPIC_ROUTES = {"/v1/messages", "/v1/messages/count_tokens", "/v/messages", "/v/messages/count_tokens"}
LLAMA_SWAP_ROUTES = {
    "/api/models/unload",
    "/api/models/unload/{model}",
    "/api/profiles",
    "/api/profiles/active",
    "/api/halogen/memory",
    "/api/events",
    "/api/inflight/{id}/cancel",
    "/api/metrics/activity",
    "/api/metrics/stats",
    "/api/captures/{id}",
    "/api/performance",
    "/api/hardware",
}

NOPE = {"model": "nope"}
WRONG_METHOD = "wrong method"
BAD_JSON = b"{not json"

# What makes each route answer a 4xx of its own: a body (JSON, or raw bytes), a path to ask
# instead of the template, WRONG_METHOD (a method the path does not take), or None for a route
# that takes any method and has no error of its own to give (the checks every route gets cover
# it). A route missing here fails the walk: whoever adds it says how it fails.
OWN_ERROR: dict[tuple[str, str], Any] = {
    **{("POST", path): NOPE for path in OPENAI_ROUTES},
    **{("POST", path): NOPE for path in ANTHROPIC_ROUTES},
    ("GET", "/v1/models"): WRONG_METHOD,
    ("GET", "/models"): WRONG_METHOD,
    ("GET", "/v1/models/{model}"): "/v1/models/nope",
    ("GET", "/v1/audio/voices"): "/v1/audio/voices?model=nope",
    ("GET", "/sdapi/v1/loras"): "/sdapi/v1/loras?model=nope",
    ("GET", "/props"): "/props?model=nope",
    ("GET", "/health"): WRONG_METHOD,
    ("GET", "/wol-health"): WRONG_METHOD,
    ("GET", "/running"): WRONG_METHOD,
    ("GET", "/unload"): WRONG_METHOD,
    ("POST", "/unload"): WRONG_METHOD,
    ("POST", "/unload/{model}"): "/unload/nope",
    ("*", "/upstream/{tail}"): "/upstream/nope/props",
    ("GET", "/metrics"): WRONG_METHOD,
    ("GET", "/logs"): WRONG_METHOD,
    ("GET", "/logs/stream"): WRONG_METHOD,
    ("GET", "/logs/stream/{source}"): "/logs/stream/nope",
    ("POST", "/api/models/unload"): WRONG_METHOD,
    ("POST", "/api/models/unload/{model}"): "/api/models/unload/nope",
    ("GET", "/api/profiles"): WRONG_METHOD,
    ("PUT", "/api/profiles/active"): BAD_JSON,
    ("GET", "/api/events"): WRONG_METHOD,
    ("POST", "/api/inflight/{id}/cancel"): "/api/inflight/nope/cancel",
    ("GET", "/api/metrics/activity"): "/api/metrics/activity?limit=0",
    ("GET", "/api/metrics/stats"): WRONG_METHOD,
    ("GET", "/api/captures/{id}"): "/api/captures/nope",
    ("GET", "/api/performance"): "/api/performance?after=yesterday",
    ("GET", "/api/hardware"): WRONG_METHOD,
    ("GET", "/"): WRONG_METHOD,
    ("GET", "/api/version"): WRONG_METHOD,
    ("GET", "/api/tags"): WRONG_METHOD,
    ("POST", "/api/show"): NOPE,
    ("GET", "/api/ps"): WRONG_METHOD,
    ("POST", "/api/chat"): NOPE,
    ("POST", "/api/generate"): NOPE,
    ("POST", "/api/embed"): NOPE,
    ("POST", "/api/embeddings"): NOPE,
    ("POST", "/api/pull"): BAD_JSON,
    # Not supported: a 501 for any request that reaches them.
    ("POST", "/api/push"): WRONG_METHOD,
    ("POST", "/api/create"): WRONG_METHOD,
    ("POST", "/api/copy"): WRONG_METHOD,
    ("DELETE", "/api/delete"): WRONG_METHOD,
    ("*", "/api/blobs/{digest}"): None,
    # The web UI (halogen/runtime/ui).
    ("GET", "/ui"): WRONG_METHOD,
    ("GET", "/ui/"): WRONG_METHOD,
    ("GET", "/ui/{asset}"): "/ui/nope.js",
    ("GET", "/api/halogen/memory"): WRONG_METHOD,
}


def family(template: str) -> str:
    if template in ANTHROPIC_ROUTES:
        return "anthropic"
    if template in LLAMA_SWAP_ROUTES:
        return "llama-swap"
    if template == "/" or template.startswith("/api/"):
        return "ollama"
    return "openai"


def shape(body: Any) -> str:
    """Which API's error body `body` is, or a description of what it is instead."""
    if not isinstance(body, dict):
        return f"not an object: {body!r}"
    error = body.get("error")
    anthropic = body.keys() == {"type", "error"} and body["type"] == "error" and isinstance(error, dict)
    if anthropic and error.keys() == {"type", "message"} and all(isinstance(v, str) for v in error.values()):
        return "anthropic"
    openai = body.keys() == {"error"} and isinstance(error, dict)
    if openai and {"message", "type", "code"} <= error.keys() and isinstance(error["message"], str):
        return "openai"
    if body.keys() == {"error"} and isinstance(error, str):
        return "ollama"
    if body.keys() == {"src", "error"} and body["src"] == "llama-swap" and isinstance(error, str):
        return "llama-swap"
    return f"no API's shape: {body!r}"


async def answer(
    proxy: Proxy, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **headers} if data is not None else headers
    async with proxy.client.request(method, path, data=data, headers=sent) as response:
        text = await response.text()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


def routes() -> list[tuple[str, str]]:
    """(method, path template) of every route `halogen serve` has, HEAD aside: its answer has
    no body to shape, and the GET beside it has the same errors."""
    found = []
    for route in app.build(None).router.routes():  # type: ignore[arg-type]
        assert route.resource is not None
        if route.method != "HEAD":
            found.append((route.method, route.resource.canonical))
    return found


async def test_every_route_answers_its_own_errors_in_its_apis_shape(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    site.top["apiKeys"] = [KEY["Authorization"].split()[1]]
    walked = routes()
    untold = [route for route in walked if route not in OWN_ERROR]
    assert not untold, f"say in OWN_ERROR what makes these routes answer a 4xx: {untold}"
    wrong: list[str] = []
    async with serving(site.write(), max_body=LIMIT) as proxy:
        methods = {template: {m for m, t in walked if t == template} for _, template in walked}
        for method, template in walked:
            want = family(template)
            path = template.format(**SAMPLES)
            own = OWN_ERROR[(method, template)]
            sending = method if method != "*" else "GET"
            asks: list[tuple[str, str, str, dict[str, str], Any]] = [
                ("a refused Host", sending, path, {**KEY, "Host": "evil.example"}, None),
                ("a cross-site page", sending, path, {**KEY, "Sec-Fetch-Site": "cross-site"}, None),
                ("a body over the limit", sending, path, KEY, {"model": "m", "pad": "x" * 2 * LIMIT}),
            ]
            if template not in ("/health", "/wol-health"):
                asks.append(("no key", sending, path, {}, None))
            if own == WRONG_METHOD:
                other = next(m for m in ("PATCH", "POST", "GET") if m not in methods[template])
                asks.append(("a wrong method", other, path, KEY, None))
            elif isinstance(own, str):
                asks.append(("its own error", sending, own, KEY, None))
            elif own is not None:
                asks.append(("its own error", sending, path, KEY, own))
            for what, verb, target, headers, body in asks:
                status, got = await answer(proxy, verb, target, headers, body)
                if not 400 <= status < 500 or shape(got) != want:
                    wrong.append(f"{verb} {target} with {what}: {status} {shape(got)}, not {want}'s 4xx")
    assert not wrong, "\n".join(wrong)
    assert fake.starts() == 0


async def test_a_path_no_route_takes_answers_in_the_shape_of_the_api_it_falls_under(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    async with serving(site.write()) as proxy:
        for path, want in (
            ("/api/nope", "ollama"),
            ("/api/models/nope", "ollama"),
            ("/v1/nope", "openai"),
            ("/nope", "openai"),
        ):
            status, got = await answer(proxy, "GET", path, {})
            assert (status, shape(got)) == (404, want), path
        for method, path, want in (
            ("GET", "/api/models/unload", "llama-swap"),
            ("DELETE", "/api/profiles", "llama-swap"),
            ("GET", "/api/chat", "ollama"),
            ("GET", "/v1/messages", "anthropic"),
            ("GET", "/v1/chat/completions", "openai"),
        ):
            status, got = await answer(proxy, method, path, {})
            assert (status, shape(got)) == (405, want), (method, path)
