"""The server's events for llama-swap's UI (`/api/events`): each published once, as the SSE frame
every subscriber is sent, into a bounded queue per subscriber.

llama-swap's handleAPIEvents (internal/server/apigroup.go) gives each client a 1024-message
buffer and drops the message, with a warning, when it is full; the client then shows a state
that is wrong until it reconnects. Here the client is dropped instead: its stream ends, the
browser's EventSource reconnects and is sent the whole state again, so no client sees a stale
one, and none can hold the publisher or memory."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable

# As llama-swap's sendBuffer (internal/server/apigroup.go).
QUEUE_SIZE = 1024

# The envelope's `type`s (messageType in internal/server/apigroup.go, llama-swap).
MODEL_STATUS = "modelStatus"
LOG_DATA = "logData"
ACTIVITY = "activity"
INFLIGHT = "inflight"
UI_CONFIG = "uiConfig"
PROFILE_CHANGED = "profileChanged"


def frame(kind: str, data: str) -> bytes:
    """One SSE message as llama-swap writes it: `event:message` and the `{type, data}` envelope,
    `data` being JSON text itself."""
    envelope = json.dumps({"type": kind, "data": data}, separators=(",", ":"), ensure_ascii=False)
    return b"event:message\ndata:" + envelope.encode() + b"\n\n"


def payload(value: object) -> str:
    """A value as the JSON text an envelope's `data` carries."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Subscriber:
    """One client's queue of frames. Overflowing it drops the client: `on_drop` is called (the
    route aborts the connection) and the stream ends."""

    def __init__(self, hub: Hub, size: int, on_drop: Callable[[], None] | None) -> None:
        self._hub = hub
        self._frames: deque[bytes] = deque()
        self._size = size
        self._ready = asyncio.Event()
        self._on_drop = on_drop
        self.dropped = False
        self.closed = False

    def offer(self, data: bytes) -> None:
        if self.closed:
            return
        if len(self._frames) >= self._size:
            self.dropped = True
            self.close()
            if self._on_drop is not None:
                self._on_drop()
            return
        self._frames.append(data)
        self._ready.set()

    async def next(self) -> list[bytes]:
        """The frames queued since the last call (waiting for one); [] once closed."""
        while not self._frames and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        if self.closed:
            return []
        out = list(self._frames)
        self._frames.clear()
        return out

    def close(self) -> None:
        self.closed = True
        self._frames.clear()
        self._hub.discard(self)
        self._ready.set()


class Hub:
    """Publishes to every subscriber; never waits on one."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self._subscribers: set[Subscriber] = set()
        self._queue_size = queue_size
        self.dropped = 0  # subscribers dropped for falling behind, since start

    def __len__(self) -> int:
        return len(self._subscribers)

    def listened(self) -> bool:
        return bool(self._subscribers)

    def subscribe(self, on_drop: Callable[[], None] | None = None) -> Subscriber:
        subscriber = Subscriber(self, self._queue_size, on_drop)
        self._subscribers.add(subscriber)
        return subscriber

    def discard(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def publish(self, kind: str, data: str) -> None:
        if not self._subscribers:
            return
        message = frame(kind, data)
        for subscriber in list(self._subscribers):
            subscriber.offer(message)
            if subscriber.dropped:
                self.dropped += 1

    def close(self) -> None:
        for subscriber in list(self._subscribers):
            subscriber.close()
