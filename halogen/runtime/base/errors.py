"""What can go wrong while serving a request, as data; it becomes an error body in the shape
the route's family declared (`shapes`) at one place (`middleware.error_middleware`)."""

from __future__ import annotations

from collections.abc import Sequence

# What a client sent is shown (in an answer or a log line) up to this many characters: a 4 MiB
# model name must not come back 4 MiB long, nor fill the log history.
SHOWN = 200


def clip(value: object, limit: int = SHOWN) -> str:
    """`value` as `repr` shows it, cut to `limit` characters with the size left out said."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class Refusal(Exception):
    """A request that cannot be served, with the HTTP status and OpenAI error type to say so."""

    status = 500
    kind = "server_error"
    code = "internal_error"

    def __init__(self, message: str, log_tail: Sequence[str] = ()) -> None:
        self.message = message
        self.log_tail = tuple(log_tail)
        super().__init__(message)

    def text(self) -> str:
        """The message with the upstream's last output lines, when there are any."""
        if not self.log_tail:
            return self.message
        return self.message + "\nlast output:\n" + "\n".join(self.log_tail)

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(Refusal):
    status = 400
    kind = "invalid_request_error"
    code = "invalid_request"


class MissingModel(BadRequest):
    code = "model_missing"


class TooLarge(Refusal):
    """A body past what the proxy will hold or parse (`jsonbody.MAX_ELEMENTS`)."""

    status = 413
    kind = "invalid_request_error"
    code = "request_too_large"


class RequestTimeout(BadRequest):
    status = 408
    code = "request_timeout"


class UnknownModel(Refusal):
    status = 404
    kind = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"model {clip(name)} not found")


class ProfileNotFound(Refusal):
    status = 404
    kind = "invalid_request_error"
    code = "profile_not_found"


class NotFound(Refusal):
    """A thing an API names that is not there (an in-flight request, a capture)."""

    status = 404
    kind = "invalid_request_error"
    code = "not_found"


class Unavailable(Refusal):
    """A part of the server that is not running here (hardware detection)."""

    status = 503
    kind = "server_error"
    code = "unavailable"


class Unauthorized(Refusal):
    status = 401
    kind = "authentication_error"
    code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class BrowserUnauthorized(Unauthorized):
    """llama-swap's answer (CreateAuthMiddleware, internal/server/auth.go) on the routes its web
    UI calls: a browser asks for the key as a password, then sends it with every request, the
    event stream's too (an EventSource cannot set a header)."""

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="llama-swap"'}


class Overloaded(Refusal):
    status = 429
    kind = "rate_limit_error"
    code = "concurrency_limit"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class StartFailed(Refusal):
    status = 502
    kind = "upstream_error"
    code = "start_failed"


class UpstreamFailed(Refusal):
    status = 502
    kind = "upstream_error"
    code = "upstream_failed"


class UpstreamAnswered(Refusal):
    """The model answered with an error of its own, which a translating route (Ollama's) passes
    on with the model's status and message."""

    kind = "upstream_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = str(status)


class NotSupported(Refusal):
    status = 501
    kind = "invalid_request_error"
    code = "not_supported"


class NoTargetAvailable(Refusal):
    """Every target of a selector is stopping (llama-swap answers 503)."""

    status = 503
    kind = "server_error"
    code = "no_target_available"


class ShuttingDown(Refusal):
    status = 503
    kind = "server_error"
    code = "shutting_down"


class NotLoaded(Refusal):
    """A request that may not start its model, which is not running (upstream.ignorePaths)."""

    status = 409
    kind = "invalid_request_error"
    code = "model_not_loaded"


class NotReady(Refusal):
    """A websocket for a model that is not running, which it may not start."""

    status = 503
    kind = "server_error"
    code = "model_not_ready"
