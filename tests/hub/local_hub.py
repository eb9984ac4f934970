"""A local Hugging Face Hub: enough of its download protocol for the real `huggingface_hub` client.

What the client sends (huggingface_hub/file_download.py, `get_hf_file_metadata` and `http_get`):
a HEAD on `/{repo}/resolve/{revision}/{file}` without following redirects off the Hub's origin,
then a GET (with `Range: bytes=N-` when it resumes) on the Location it was given. So, as the Hub
does for an LFS file, the resolve endpoint answers 302 to a CDN on another origin (here another
port), with X-Repo-Commit, X-Linked-Etag (the sha256) and X-Linked-Size; the CDN serves the bytes,
honouring Range (`bytes=N-` and `bytes=N-M`, as a 206 with Content-Range). Unknown repos and
revisions get the Hub's 404 with X-Error-Code, which the client turns into RepositoryNotFoundError
/ RevisionNotFoundError.

`HfApi.model_info(repo, revision=..., files_metadata=True)` (huggingface_hub/hf_api.py) asks
`/api/models/{repo}/revision/{revision}?blobs=true`: the commit (`sha`) and every file with its
size and, for an LFS file, `lfs: {sha256, size, pointerSize}`, as the Hub answers it.

Faults for tests: `throttle` (seconds per chunk), `cut_after` (close the connection after that many
body bytes, once), `corrupt` (flip one byte of the body), `ignore_range` (answer 200 with the
whole file, as a CDN may). Every GET is recorded with its range and
the body bytes it sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tests.ports import free_ports

CHUNK = 256 * 1024
COMMIT = "3f0c2a9e1b7d4c5a8e6f9b0d2c4a6e8f0b1d3c5a"


@dataclass
class HubFile:
    data_path: Path
    sha256: str
    size: int
    lfs: bool = True


@dataclass
class Served:
    path: str
    start: int
    sent: int


@dataclass
class LocalHub:
    files: dict[tuple[str, str], HubFile] = field(default_factory=dict)
    """(repo, file) -> what it serves, at every revision in `revisions`."""
    revisions: dict[str, str] = field(default_factory=lambda: {"main": COMMIT, COMMIT: COMMIT})
    """Revision name (branch or commit) -> the commit it resolves to."""
    throttle: float = 0.0
    cut_after: int | None = None
    corrupt: bool = False
    ignore_range: bool = False
    token: str | None = None
    """When set, the repositories are private: the resolve endpoint wants `Bearer <token>`."""
    gets: list[Served] = field(default_factory=list)
    heads: int = 0
    infos: int = 0
    """Model-info requests answered."""
    endpoint: str = ""
    cdn: str = ""

    def add(self, repo: str, name: str, data_path: Path, sha256: str | None = None) -> HubFile:
        """Serve `data_path` as `name` in `repo`; a sparse file of tens of GB may be given the
        sha256 it is listed with, instead of being hashed."""
        if sha256 is None:
            hasher = hashlib.sha256()
            with data_path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    hasher.update(chunk)
            sha256 = hasher.hexdigest()
        entry = HubFile(data_path, sha256, data_path.stat().st_size)
        self.files[(repo, name)] = entry
        return entry

    def fetched(self, sha256: str | None = None) -> int:
        """Body bytes the CDN sent: in all, or of the file with that sha256."""
        return sum(g.sent for g in self.gets if sha256 is None or g.path.endswith(f"/{sha256}"))

    def _refused(self, request: web.Request, repo: str) -> web.Response | None:
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            # The Hub answers a private repository without a valid token as one that does not exist.
            return web.Response(
                status=401, headers={"X-Error-Code": "RepoNotFound"}, text="Repository not found"
            )
        if not any(r == repo for r, _ in self.files):
            return web.Response(
                status=404, headers={"X-Error-Code": "RepoNotFound"}, text="Repository not found"
            )
        if request.match_info["revision"] not in self.revisions:
            return web.Response(
                status=404, headers={"X-Error-Code": "RevisionNotFound"}, text="Invalid rev id"
            )
        return None

    # The Hub's API: a repository at a revision, with its files' metadata.
    async def info(self, request: web.Request) -> web.StreamResponse:
        self.infos += 1
        repo = f"{request.match_info['org']}/{request.match_info['repo']}"
        refused = self._refused(request, repo)
        if refused is not None:
            return refused
        commit = self.revisions[request.match_info["revision"]]
        siblings = []
        for (r, name), entry in sorted(self.files.items()):
            if r != repo:
                continue
            sibling: dict[str, object] = {"rfilename": name, "blobId": entry.sha256[:40], "size": entry.size}
            if entry.lfs:
                sibling["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": 135}
            siblings.append(sibling)
        return web.json_response(
            {
                "_id": "0" * 24,
                "id": repo,
                "modelId": repo,
                "sha": commit,
                "private": False,
                "siblings": siblings,
            }
        )

    # The Hub's origin: metadata, and a redirect to the CDN.
    async def resolve(self, request: web.Request) -> web.StreamResponse:
        self.heads += request.method == "HEAD"
        repo = f"{request.match_info['org']}/{request.match_info['repo']}"
        refused = self._refused(request, repo)
        if refused is not None:
            return refused
        commit = self.revisions[request.match_info["revision"]]
        entry = self.files.get((repo, request.match_info["file"]))
        if entry is None:
            return web.Response(status=404, headers={"X-Error-Code": "EntryNotFound"}, text="Entry not found")
        return web.Response(
            status=302,
            headers={
                "Location": f"{self.cdn}/lfs/{entry.sha256}?expires=never",
                "X-Repo-Commit": commit,
                "X-Linked-Etag": f'"{entry.sha256}"',
                "X-Linked-Size": str(entry.size),
                "ETag": '"0123456789abcdef0123456789abcdef01234567"',
            },
        )

    # The CDN's origin: the bytes, with Range.
    async def lfs(self, request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha"]
        entry = next((f for f in self.files.values() if f.sha256 == sha), None)
        if entry is None:
            return web.Response(status=404)
        start, stop = 0, entry.size  # stop: one past the last byte sent
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
        if ranged is not None and not self.ignore_range:
            start = int(ranged[1])
            stop = min(int(ranged[2]) + 1, entry.size) if ranged[2] else entry.size
            if entry.size and (start >= entry.size or stop <= start):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{entry.size}"})
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(stop - start), "ETag": f'"{sha}"'}
        status = 200
        if ranged is not None and not self.ignore_range:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{entry.size}"
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        record = Served(request.path, start, 0)
        self.gets.append(record)
        cut, self.cut_after = self.cut_after, None
        with entry.data_path.open("rb") as fh:
            fh.seek(start)
            position = start
            while position < stop and (chunk := fh.read(min(CHUNK, stop - position))):
                if self.corrupt and position <= entry.size // 2 < position + len(chunk):
                    i = entry.size // 2 - position
                    chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
                if cut is not None and record.sent + len(chunk) > cut:
                    await response.write(chunk[: cut - record.sent])
                    record.sent = cut
                    assert request.transport is not None
                    request.transport.close()  # the connection drops mid-body
                    return response
                await response.write(chunk)
                record.sent += len(chunk)
                position += len(chunk)
                if self.throttle:
                    await asyncio.sleep(self.throttle)
        await response.write_eof()
        return response


@contextmanager
def running(hub: LocalHub) -> Iterator[LocalHub]:
    """The hub and its CDN on two loopback ports, in a thread of their own."""
    loop = asyncio.new_event_loop()
    hub_app, cdn_app = web.Application(), web.Application()
    hub_app.router.add_route("*", "/{org}/{repo}/resolve/{revision}/{file:.+}", hub.resolve)
    hub_app.router.add_get("/api/models/{org}/{repo}/revision/{revision}", hub.info)
    cdn_app.router.add_route("*", "/lfs/{sha}", hub.lfs)
    runners = [web.AppRunner(hub_app, access_log=None), web.AppRunner(cdn_app, access_log=None)]
    ports = free_ports(2)

    async def start() -> None:
        for runner, port in zip(runners, ports, strict=True):
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()

    loop.run_until_complete(start())
    hub.endpoint, hub.cdn = (f"http://127.0.0.1:{p}" for p in ports)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:

        async def stop() -> None:
            for runner in runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
