"""Where a request names its model, and the same request naming another: a JSON body's `model`,
a multipart form's `model` field, or a GET's `model` query parameter (extractContext and
ReplaceRequestModel in internal/swaputil/http.go, llama-swap)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from halogen.runtime import multipart, proxy
from halogen.runtime.context import parse_json
from halogen.runtime.errors import BadRequest

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
    Exactly one of `data` (a JSON body, parsed), `form` (a multipart form's boundary) or
    `in_query` says where the name is; none of them when the request cannot carry one."""

    asked: Any
    body: bytes
    query: str
    data: dict[str, Any] | None = None
    form: bytes | None = None
    in_query: bool = False

    @classmethod
    def read(cls, method: str, content_type: str, body: bytes, query: str, *, json: bool) -> Carried:
        """What a request carries: a GET or HEAD its query, a multipart form its `model` field,
        any other body JSON when `json` (a `BadRequest` when it is not) or when its type says
        so (when it is not JSON, it names no model)."""
        if method in ("GET", "HEAD"):
            return cls(_query_model(query), body, query, in_query=True)
        mark = multipart.boundary(content_type)
        if mark is not None:
            return cls(multipart.field(body, content_type, "model"), body, query, form=mark)
        if json:
            data = parse_json(body)
        elif content_type.split(";")[0].strip().lower() == "application/json":
            try:  # as gjson reads it: a body that is not a JSON object names no model
                data = parse_json(body)
            except BadRequest:
                return cls(None, body, query)
        else:
            return cls(None, body, query)
        return cls(data.get("model"), body, query, data=data)

    def naming(self, name: str) -> Carried:
        """The same request with `name` as its model, every other byte as sent; a request that
        cannot carry a name is unchanged."""
        if self.data is not None:
            data = {**self.data, "model": name}
            return dataclasses.replace(self, asked=name, body=proxy.encode(data), data=data)
        if self.form is not None:
            span = multipart.value_span(self.body, self.form, "model")
            return dataclasses.replace(self, asked=name, body=multipart.replace(self.body, span, name))
        if self.in_query:
            pairs = [(k, v) for k, v in parse_qsl(self.query, keep_blank_values=True) if k != "model"]
            return dataclasses.replace(self, asked=name, query=urlencode([*pairs, ("model", name)]))
        return self

    def path_qs(self, path: str) -> str:
        return f"{path}?{self.query}" if self.query else path


def _query_model(query: str) -> str | None:
    """The first `model` parameter, as Go's url.Values.Get gives it."""
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "model":
            return value
    return None
