"""llama-swap's `sendLoadingState`: while a streamed request waits for its model to start, the
client is sent progress in the reasoning field (as internal/router/loading.go does), so a chat
UI shows something instead of timing out. The answer then follows in the same stream.

A `Loading` writes into a response it has prepared itself; the route stops it (`done`) once the
model is held, and goes on writing the model's answer after it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

from aiohttp import web

# internal/router/loading.go: only chat completions stream loading progress.
LOADING_PATHS = ("/v1/chat/completions",)
RULE = "━━━━━"
TICK = 0.75  # seconds between progress marks, as loading.go's ticker
SAY_EVERY = 5.0  # seconds between the elapsed-time lines between the dots

Frame = Callable[[str], bytes]
Position = Callable[[], "int | None"]  # where the request waits in the queue, None when in none


def openai_frame(text: str) -> bytes:
    """One SSE event carrying `text` as reasoning, the field loading.go writes."""
    data = {"choices": [{"index": 0, "delta": {"reasoning_content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


class Loading:
    """Progress for one request, written to `response` until `done` is awaited."""

    def __init__(
        self, response: web.StreamResponse, model_id: str, frame: Frame, position: Position | None = None
    ) -> None:
        self._response = response
        self._model_id = model_id
        self._frame = frame
        self._position = position
        self._told: int | None = None  # the queue position last written
        self._began = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._broken = False

    @classmethod
    async def begin(
        cls,
        request: web.Request,
        model_id: str,
        frame: Frame,
        content_type: str,
        position: Position | None = None,
    ) -> Loading:
        """Prepare a 200 stream of `content_type` and start writing progress into it, with the
        request's place in the queue (`position`) whenever it changes."""
        response = web.StreamResponse(
            headers={"Content-Type": content_type, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        loading = cls(response, model_id, frame, position)
        await loading._send(f"{RULE}\nloading model: {model_id}\n")
        loading._task = asyncio.create_task(loading._run())
        return loading

    @property
    def response(self) -> web.StreamResponse:
        return self._response

    async def _send(self, text: str) -> None:
        if self._broken:
            return
        try:
            await self._response.write(self._frame(text))
        except (ConnectionResetError, RuntimeError):
            self._broken = True  # the client went away; the route finds out on its own

    async def _run(self) -> None:
        said = self._began
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            place = self._position() if self._position is not None else None
            if place is not None and place != self._told:
                # loading.go's pending update, as base.go words it for the queue.
                self._told = place
                said = now
                await self._send(f"\nQueue position: #{place} ")
            elif now - said >= SAY_EVERY:
                said = now
                await self._send(f"\n{now - self._began:.0f}s ")
            else:
                await self._send(".")

    async def stop(self) -> None:
        """Stop the progress marks (without the closing lines): the client left or it failed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def done(self) -> None:
        """The model is held: close the progress with the time it took, as loading.go does."""
        await self.stop()
        await self._send(f"\nDone! ({time.monotonic() - self._began:.2f}s)\n{RULE}\n \n")
