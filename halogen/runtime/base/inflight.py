"""The requests to models in flight, for llama-swap's UI: listed (`inflight` events), cancelled
(`POST /api/inflight/{id}/cancel`); the inflight tracker of internal/server/inflight.go and
InflightRequestEntry in internal/swaputil/events.go (llama-swap)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Header values a capture or an in-flight row never shows (sensitiveHeaders in
# internal/server/captures.go, llama-swap).
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})
REDACTED = "[REDACTED]"
# At most one `upsert` per request this often while its answer streams (inflightUpdateInterval).
UPDATE_INTERVAL = 0.25


def header_map(headers: Mapping[str, str]) -> dict[str, str]:
    """headerMap + redactHeaders (internal/server/captures.go): the first value of each header,
    sensitive ones redacted."""
    out: dict[str, str] = {}
    for key, value in headers.items():
        if key not in out:
            out[key] = REDACTED if key.lower() in SENSITIVE_HEADERS else value
    return out


def rfc3339(moment: float) -> str:
    """A Unix time as Go's time.Time marshals it: RFC 3339 with the fraction, UTC."""
    text = datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


@dataclass(slots=True)
class Entry:
    id: str
    started: float  # time.time()
    model: str
    req_path: str
    method: str
    headers: Mapping[str, str]  # the request's, read (and redacted) only when shown
    remote_ip: str
    task: asyncio.Task[Any] | None
    answer_headers: Mapping[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    sent: Callable[[], int] | None = None  # bytes of the answer written so far
    emitted_bytes: int = 0
    cancelled: bool = False

    @property
    def req_headers(self) -> dict[str, str]:
        return header_map(self.headers)

    @property
    def resp_headers(self) -> dict[str, str]:
        return header_map(self.answer_headers)

    @property
    def resp_bytes(self) -> int:
        return self.sent() if self.sent is not None else 0

    def json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self.id,
            "timestamp": rfc3339(self.started),
            "model": self.model,
            "req_path": self.req_path,
            "method": self.method,
            "req_headers": self.req_headers,
            "remote_ip": self.remote_ip,
            "resp_headers": self.resp_headers,
            "resp_bytes": self.resp_bytes,
            "elapsed_ms": max(0, int(1000 * (time.time() - self.started))),
        }
        if self.metadata:
            row["metadata"] = self.metadata
        return row


class Inflight:
    """The requests in flight by id; `publish` is told each change as llama-swap's
    InFlightRequestsEvent (`snapshot`, `upsert`, `remove`)."""

    def __init__(
        self,
        publish: Callable[[dict[str, Any]], None] | None = None,
        listening: Callable[[], bool] = lambda: True,
    ) -> None:
        self._entries: dict[str, Entry] = {}
        self._ids = itertools.count(1)
        self.publish = publish
        self.listening = listening  # whether anyone is told: the rows are only built then

    def __len__(self) -> int:
        return len(self._entries)

    def add(
        self,
        model: str,
        path: str,
        method: str,
        headers: Mapping[str, str],
        remote_ip: str,
        task: asyncio.Task[Any] | None,
        metadata: dict[str, str] | None = None,
    ) -> Entry:
        entry = Entry(
            id=str(next(self._ids)),
            started=time.time(),
            model=model,
            req_path=path,
            method=method,
            headers=headers,
            remote_ip=remote_ip,
            task=task,
            metadata=metadata or {},
        )
        self._entries[entry.id] = entry
        self._upsert(entry)
        return entry

    def answered(self, entry: Entry, headers: Mapping[str, str], sent: Callable[[], int]) -> None:
        """The answer's headers went out; `sent` tells the bytes written from then on."""
        if entry.id not in self._entries:
            return
        entry.answer_headers = headers
        entry.sent = sent
        self._upsert(entry)

    def tick(self) -> None:
        """An `upsert` for each request whose answer grew since the last one (llama-swap sends
        them at most every 250 ms per request, as bytes are written)."""
        for entry in list(self._entries.values()):
            sent = entry.resp_bytes
            if sent != entry.emitted_bytes:
                entry.emitted_bytes = sent
                self._upsert(entry)

    def remove(self, entry: Entry) -> None:
        if self._entries.pop(entry.id, None) is not None:
            self._emit({"operation": "remove", "id": entry.id})

    def cancel(self, entry_id: str) -> bool:
        """Cancel the request's handler: its answer ends and its upstream connection is closed,
        so the model stops generating. False when no such request is in flight."""
        entry = self._entries.get(entry_id)
        if entry is None or entry.task is None or entry.task.done():
            return False
        entry.cancelled = True
        entry.task.cancel()
        return True

    def snapshot(self) -> dict[str, Any]:
        rows = sorted(self._entries.values(), key=lambda e: (e.started, int(e.id)))
        return {"operation": "snapshot", "requests": [e.json() for e in rows]}

    def _upsert(self, entry: Entry) -> None:
        if self.publish is not None and self.listening():
            self.publish({"operation": "upsert", "request": entry.json()})

    def _emit(self, update: dict[str, Any]) -> None:
        if self.publish is not None and self.listening():
            self.publish(update)
