"""The endpoint as the smoke test sees it: JSON and streamed requests with a time limit each,
every failure turned into one short message (the HTTP status and the server's own words)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

# The header `halogen serve` puts on every answer: the sha256 of the config.yaml it runs.
CONFIG_VERSION_HEADER = "Halogen-Config-Version"
# How much of an error body is quoted: enough for the server's sentence, not for a page of HTML.
QUOTED = 300
# The largest JSON answer read: a model list or an embedding is far smaller; an endless body is
# cut here rather than held in memory until the time limit.
LARGEST = 64 * 1024 * 1024


class Failed(Exception):
    """A request that did not give a usable answer: `status` is the HTTP status when there was
    one (None for a connection failure or a timeout), `message` says what went wrong."""

    def __init__(self, message: str, status: int | None = None, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.timed_out = timed_out

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}" if self.status is not None else self.message


@dataclass
class Answer:
    """A 200 answer's JSON, its headers and when its headers arrived (seconds after sending)."""

    body: Any
    headers: Mapping[str, str]
    headers_at: float
    seconds: float


def loads(raw: bytes | str) -> Any:
    """JSON, or ValueError: nesting too deep for the parser counts as not JSON too."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def server_message(text: str) -> str:
    """The server's own error message from an error body: OpenAI's `{"error": {"message"}}`,
    Ollama's and llama-swap's `{"error": "..."}`, Anthropic's nested one; else the text itself."""
    try:
        data = loads(text)
    except ValueError:
        return _cut(text.strip()) or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error", data.get("message"))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return _cut(error if isinstance(error, str) else json.dumps(error))
    return _cut(text.strip())


def _why(exc: aiohttp.ClientConnectorError) -> str:
    """The operating system's words for a failed connection: `Connection refused`, not
    asyncio's `Connect call failed ('127.0.0.1', 8080)`."""
    error = exc.os_error
    if isinstance(exc, aiohttp.ClientSSLError) or isinstance(error, ssl.SSLError):
        reason = getattr(error, "verify_message", None) or getattr(error, "reason", None) or error
        return f"TLS failed: {reason}"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {exc.host}: {error.strerror}"
    return os.strerror(error.errno) if error.errno else str(error)


def _cut(text: str) -> str:
    return text if len(text) <= QUOTED else text[: QUOTED - 1] + "…"


class Endpoint:
    """One base URL, its API key and the time limit of each request, over one aiohttp session."""

    def __init__(self, url: str, api_key: str | None, timeout: float, connections: int = 4) -> None:
        self.url = url
        self.timeout = timeout
        self._headers = {"User-Agent": "halogen-smoke"}
        self._key = api_key
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Endpoint:
        connector = aiohttp.TCPConnector(limit=self._connections)
        self._session = aiohttp.ClientSession(headers=self._headers, connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use the Endpoint in `async with`"
        return self._session

    def redact(self, text: str) -> str:
        """`text` without the API key, should a server quote it back."""
        return text.replace(self._key, "<api key>") if self._key else text

    def where(self, path: str) -> str:
        return self.url + path

    async def get(self, path: str, *, timeout: float | None = None) -> Answer:
        async with self.request("GET", path, None, timeout=timeout) as (response, started):
            return await self._json(path, response, started)

    async def post(self, path: str, body: Mapping[str, Any], *, timeout: float | None = None) -> Answer:
        async with self.request("POST", path, body, timeout=timeout) as (response, started):
            return await self._json(path, response, started)

    async def _json(self, path: str, response: aiohttp.ClientResponse, started: float) -> Answer:
        headers_at = time.monotonic() - started
        raw = bytearray()
        while chunk := await response.content.read(1024 * 1024):
            raw += chunk
            if len(raw) > LARGEST:
                raise Failed(f"{self.where(path)} answered more than {LARGEST // 2**20} MiB")
        try:
            body = loads(bytes(raw))
        except ValueError:
            raise Failed(
                f"{self.where(path)} answered 200 but not JSON: {_cut(raw.decode('utf-8', 'replace').strip()) or '(empty body)'}"
            ) from None
        return Answer(body, response.headers, headers_at, time.monotonic() - started)

    @asynccontextmanager
    async def request(
        self, method: str, path: str, body: Mapping[str, Any] | None, *, timeout: float | None = None
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, float]]:
        """The response to a request, once it is known to be a 200 (else Failed with the
        server's message); the whole exchange, reading included, within the time limit."""
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                async with self.session.request(method, self.where(path), json=body) as response:
                    if response.status != 200:
                        text = (await response.content.read(64 * 1024)).decode("utf-8", "replace")
                        raise Failed(server_message(text), response.status)
                    yield response, started
        except TimeoutError:
            raise Failed(
                f"no answer from {self.where(path)} within {limit:g} s (--timeout)", timed_out=True
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise Failed(f"cannot connect to {self.where(path)}: {_why(exc)}") from None
        except (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError) as exc:
            raise Failed(f"{self.where(path)}: {type(exc).__name__}: {_cut(str(exc))}") from None

    async def probe(self, path: str, *, timeout: float) -> tuple[int, Mapping[str, str], bytes]:
        """Any answer at all (status, headers, at most 64 KiB of body): for polling a server
        that may be restarting, where a 401 or a 503 still carries its headers."""
        try:
            async with asyncio.timeout(timeout):
                async with self.session.get(self.where(path)) as response:
                    return response.status, response.headers, await response.content.read(64 * 1024)
        except TimeoutError:
            raise Failed(f"no answer from {self.where(path)} within {timeout:g} s", timed_out=True) from None
        except aiohttp.ClientConnectorError as exc:
            raise Failed(f"cannot connect to {self.where(path)}: {_why(exc)}") from None
        except (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError) as exc:
            raise Failed(f"{self.where(path)}: {type(exc).__name__}: {_cut(str(exc))}") from None

    async def lines(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """A streamed body's lines (server-sent events or NDJSON), each without its newline."""
        while True:
            try:
                line = await response.content.readline()
            except (ValueError, aiohttp.http_exceptions.LineTooLong):  # aiohttp's limits on one line
                raise Failed("a line of the stream is too long") from None
            if not line:
                return
            yield line.rstrip(b"\r\n")
