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


# Captures are gathered raw into a block of about this size, then the block is compressed as one
# zlib stream: one compressor's setup for many captures (it costs more than a chat's bodies take to
# compress), and requests that look alike compress against each other.
BLOCK = 64 * 1024


def _pack(meta: dict[str, Any], req_body: bytes, resp_body: bytes) -> bytes:
    head = json.dumps(meta).encode()
    return len(head).to_bytes(4, "big") + head + req_body + resp_body


def _unpack(packed: bytes) -> dict[str, Any]:
    cut = 4 + int.from_bytes(packed[:4], "big")
    meta = json.loads(packed[4:cut])
    bodies = packed[cut:]
    split = meta.pop("req_len")
    return {
        "id": meta["id"],
        "req_path": meta["req_path"],
        "req_headers": meta["req_headers"],
        "req_body": base64.b64encode(bodies[:split]).decode(),
        "resp_headers": meta["resp_headers"],
        "resp_body": base64.b64encode(bodies[split:]).decode(),
    }


@dataclass
class _Block:
    data: bytes  # zlib
    index: dict[int, tuple[int, int]]  # capture id -> (offset, length) in the raw block


class Captures:
    """Captures by activity id, at most `megabytes` MB of them (the block being filled counted
    raw, sealed blocks compressed); the oldest block goes first. 0 keeps none."""

    def __init__(self, megabytes: int) -> None:
        self.limit = megabytes * 1024 * 1024
        self._seal_at = min(BLOCK, self.limit // 4)
        self._open: dict[int, bytes] = {}
        self._open_size = 0
        self._blocks: OrderedDict[int, _Block] = OrderedDict()
        self._sealed_size = 0
        self._where: dict[int, int] = {}  # capture id -> block number (sealed ones)
        self._next_block = 0

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def __len__(self) -> int:
        return len(self._open) + len(self._where)

    @property
    def size(self) -> int:
        return self._sealed_size + self._open_size

    def sink(self, path: str, req_headers: dict[str, str]) -> Sink | None:
        return Sink(self.limit, path, req_headers) if self.enabled else None

    def has(self, capture_id: int) -> bool:
        return capture_id in self._open or capture_id in self._where

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
        req_body = sink.req_body if keep_req_body else b""
        meta = {
            "id": capture_id,
            "req_path": sink.path,
            "req_headers": sink.req_headers if keep_req_headers else {},
            "resp_headers": headers if keep_resp_headers else {},
            "req_len": len(req_body),
        }
        packed = _pack(meta, req_body, resp_body)
        if len(packed) > self.limit:
            return False
        self._open[capture_id] = packed
        self._open_size += len(packed)
        if self._open_size >= self._seal_at:
            self._seal()
        self._evict()
        return True

    def _seal(self) -> None:
        index: dict[int, tuple[int, int]] = {}
        offset = 0
        for capture_id, packed in self._open.items():
            index[capture_id] = (offset, len(packed))
            offset += len(packed)
        block = _Block(zlib.compress(b"".join(self._open.values()), 1), index)
        number, self._next_block = self._next_block, self._next_block + 1
        self._blocks[number] = block
        self._sealed_size += len(block.data)
        for capture_id in index:
            self._where[capture_id] = number
        self._open, self._open_size = {}, 0

    def _evict(self) -> None:
        while self.size > self.limit and self._blocks:
            _, block = self._blocks.popitem(last=False)
            self._sealed_size -= len(block.data)
            for capture_id in block.index:
                del self._where[capture_id]

    def get(self, capture_id: int) -> dict[str, Any] | None:
        """ReqRespCapture (ui/src/lib/types.ts): the bodies base64, as Go marshals bytes."""
        packed = self._open.get(capture_id)
        if packed is None:
            number = self._where.get(capture_id)
            if number is None:
                return None
            block = self._blocks[number]
            offset, length = block.index[capture_id]
            packed = zlib.decompress(block.data)[offset : offset + length]
        return _unpack(packed)
