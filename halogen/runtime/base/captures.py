"""Request/response captures for llama-swap's UI (`/api/captures/{id}`): each request to a model
with its body and its answer's, compressed, in a buffer of `captureBuffer` MB that drops the
oldest first (internal/server/captures.go and internal/cache, llama-swap; zstd+CBOR there, zlib
and JSON here, from the standard library)."""

from __future__ import annotations

import base64
import json
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# What a route keeps (captureFieldsByPath, internal/server/captures.go): routes with large
# binary payloads keep less. (request headers, request body, response headers, response body)
_ALL = (True, True, True, True)
FIELDS_BY_PATH: dict[str, tuple[bool, bool, bool, bool]] = {
    "/v1/audio/speech": (True, True, True, False),
    "/v1/audio/voices": (True, False, True, True),
    "/v1/audio/transcriptions": (True, False, True, True),
    "/v1/images/generations": (True, True, True, False),
    "/v1/images/edits": (True, False, True, False),
    "/sdapi/v1/txt2img": (True, True, True, False),
    "/sdapi/v1/img2img": (True, False, True, False),
}


@dataclass
class Sink:
    """What one request's capture gathers as it is forwarded: bounded by the buffer's size (a
    body bigger than the whole buffer could never be kept)."""

    limit: int
    path: str
    req_headers: dict[str, str]
    req_body: bytes = b""
    resp_body: bytearray = field(default_factory=bytearray)
    over: bool = False

    def sent(self, body: bytes | None) -> None:
        self.req_body = body or b""
        if len(self.req_body) > self.limit:
            self.over = True
            self.req_body = b""

    def feed(self, chunk: bytes) -> None:
        if self.over:
            return
        self.resp_body += chunk
        if len(self.resp_body) + len(self.req_body) > self.limit:
            self.over = True
            self.resp_body = bytearray()


def _decoded(body: bytes, encoding: str) -> bytes:
    """decompressBody (internal/server/metrics.go): gzip and deflate are read, others kept."""
    kind = encoding.strip().lower()
    if kind == "gzip":
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if kind == "deflate":
        return zlib.decompress(body, -zlib.MAX_WBITS)
    return body


# Under this, a small window and state: zlib's default ones cost more to set up (~60 us) than a
# chat's bodies take to compress with these (~8 us); decompress reads either.
SMALL = 64 * 1024


def compress(data: bytes) -> bytes:
    if len(data) >= SMALL:
        return zlib.compress(data, 1)
    packer = zlib.compressobj(1, zlib.DEFLATED, 10, 1)
    return packer.compress(data) + packer.flush()


class Captures:
    """Compressed captures by activity id, at most `megabytes` MB of them; 0 keeps none."""

    def __init__(self, megabytes: int) -> None:
        self.limit = megabytes * 1024 * 1024
        self._items: OrderedDict[int, bytes] = OrderedDict()
        self._size = 0

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        return self._size

    def sink(self, path: str, req_headers: dict[str, str]) -> Sink | None:
        return Sink(self.limit, path, req_headers) if self.enabled else None

    def has(self, capture_id: int) -> bool:
        return capture_id in self._items

    def add(self, capture_id: int, sink: Sink, resp_headers: Mapping[str, str], failed: bool) -> bool:
        """Keep the capture; False when it is not kept (disabled, or bigger than the buffer).
        A failed request keeps its request only (llama-swap's `record`: the failure is the row's
        error_msg)."""
        if not self.enabled or sink.over:
            return False
        keep_req_headers, keep_req_body, keep_resp_headers, keep_resp_body = FIELDS_BY_PATH.get(
            sink.path, _ALL
        )
        headers = {k: v for k, v in resp_headers.items() if k.lower() != "content-encoding"}
        resp_body = b""
        if keep_resp_body and not failed:
            try:
                resp_body = _decoded(bytes(sink.resp_body), resp_headers.get("Content-Encoding", ""))
            except zlib.error:
                resp_body = b""
        meta = {
            "id": capture_id,
            "req_path": sink.path,
            "req_headers": sink.req_headers if keep_req_headers else {},
            "resp_headers": headers if keep_resp_headers else {},
            "req_len": len(sink.req_body) if keep_req_body else 0,
        }
        packed = json.dumps(meta).encode() + b"\n" + (sink.req_body if keep_req_body else b"") + resp_body
        data = compress(packed)
        if len(data) > self.limit:
            return False
        self._items[capture_id] = data
        self._size += len(data)
        while self._size > self.limit:
            _, dropped = self._items.popitem(last=False)
            self._size -= len(dropped)
        return True

    def get(self, capture_id: int) -> dict[str, Any] | None:
        """ReqRespCapture (ui/src/lib/types.ts): the bodies base64, as Go marshals bytes."""
        data = self._items.get(capture_id)
        if data is None:
            return None
        packed = zlib.decompress(data)
        head, _, bodies = packed.partition(b"\n")
        meta = json.loads(head)
        cut = meta.pop("req_len")
        return {
            "id": meta["id"],
            "req_path": meta["req_path"],
            "req_headers": meta["req_headers"],
            "req_body": base64.b64encode(bodies[:cut]).decode(),
            "resp_headers": meta["resp_headers"],
            "resp_body": base64.b64encode(bodies[cut:]).decode(),
        }
