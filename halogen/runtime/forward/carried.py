"""Where a request names its model, and the same request naming another: a JSON body's `model`,
a multipart form's `model` field, or a GET's `model` query parameter (extractContext and
ReplaceRequestModel in internal/swaputil/http.go, llama-swap)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from halogen.runtime.base.errors import BadRequest
from halogen.runtime.forward import jsonbody, multipart

# Versionless routes (`/v/chat/completions`, llama-swap issue #728) and audio.cpp's task API
# (`/audioapi/v1/tasks/run`) reach the model's server without their prefix (stripVersionPrefix
# and stripAudioAPIPrefix in internal/server/server.go, llama-swap).
_VERSIONLESS = "/v/"
_AUDIO_API = "/audioapi"


def upstream_path(path: str) -> str:
    """The path a model's server is sent for a request to `path`."""
    if path.startswith(_VERSIONLESS):
        return path[len(_VERSIONLESS) - 1 :]
    if path.startswith(_AUDIO_API):
        return path[len(_AUDIO_API) :]
    return path


@dataclass(frozen=True)
class Carried:
    """A request's body and query, and the model they name (`asked`: None when they name none).
    Exactly one of `named_at` (a JSON object body: where its top-level `model` value is, None
    when it has none), `form` (a multipart form's boundary) or `in_query` says where the name
    is; none of them when the request cannot carry one. A JSON body is walked, never parsed:
    it goes on as sent, but for its model's value when that is renamed (`jsonbody`)."""

    asked: Any
    body: bytes
    query: str
    is_json: bool = False
    named_at: tuple[int, int] | None = None
    streams: bool = False  # a JSON body's top-level `stream` is true
    form: bytes | None = None
    in_query: bool = False

    @classmethod
    def read(cls, method: str, content_type: str, body: bytes, query: str, *, json: bool) -> Carried:
        """What a request carries: a GET or HEAD its query, a multipart form its `model` field,
        any other body JSON when `json` (a `BadRequest` when it is not) or when its type says
        so (when it is not JSON, it names no model). Walked at once: `receive` is for a route."""
        return jsonbody.run(cls._reading(method, content_type, body, query, json))

    @classmethod
    async def receive(cls, method: str, content_type: str, body: bytes, query: str, *, json: bool) -> Carried:
        """`read`, a JSON body walked a slice at a time with the event loop free between."""
        return await jsonbody.run_sliced(cls._reading(method, content_type, body, query, json))

    @classmethod
    def _reading(
        cls, method: str, content_type: str, body: bytes, query: str, json: bool
    ) -> jsonbody.Walk[Carried]:
        if method in ("GET", "HEAD"):
            return cls(_query_model(query), body, query, in_query=True)
        mark = multipart.boundary(content_type)
        if mark is not None:
            return cls(multipart.field(body, content_type, "model"), body, query, form=mark)
        if not json and content_type.split(";")[0].strip().lower() != "application/json":
            return cls(None, body, query)
        try:
            found = yield from jsonbody.survey(body, _MEMBERS)
        except (jsonbody.Unreadable, jsonbody.TooDeep) as exc:
            if json:
                raise BadRequest(str(exc)) from None
            return cls(None, body, query)  # as gjson reads it: such a body names no model
        span = found.members.get("model")
        asked = None if span is None else jsonbody.member_text(body, span)
        stream = found.members.get("stream")
        streams = stream is not None and body[stream[0] : stream[1]] == b"true"
        return cls(asked, body, query, is_json=True, named_at=span, streams=streams)

    @property
    def data(self) -> dict[str, Any] | None:
        """A JSON body parsed (within `jsonbody`'s limits); None for any other."""
        return jsonbody.parse(self.body) if self.is_json else None

    def naming(self, name: str) -> Carried:
        """The same request with `name` as its model, every other byte as sent; a request that
        cannot carry a name is unchanged."""
        if self.named_at is not None:
            body = jsonbody.replaced(self.body, self.named_at, name)
            start, end = self.named_at
            named_at = (start, len(body) - (len(self.body) - end))
            return dataclasses.replace(self, asked=name, body=body, named_at=named_at)
        if self.form is not None:
            span = multipart.value_span(self.body, self.form, "model")
            return dataclasses.replace(self, asked=name, body=multipart.replace(self.body, span, name))
        if self.in_query:
            pairs = [(k, v) for k, v in parse_qsl(self.query, keep_blank_values=True) if k != "model"]
            return dataclasses.replace(self, asked=name, query=urlencode([*pairs, ("model", name)]))
        return self

    def path_qs(self, path: str) -> str:
        return f"{path}?{self.query}" if self.query else path


# The top-level members a route reads without a parse (extractContext's gjson reads).
_MEMBERS = ("model", "stream")


def _query_model(query: str) -> str | None:
    """The first `model` parameter, as Go's url.Values.Get gives it."""
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "model":
            return value
    return None
