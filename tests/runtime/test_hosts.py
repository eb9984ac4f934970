"""A request is answered only under the server's own names (DNS rebinding), and a malformed
`Host`, `Origin` or `Referer` is a 400, never a 500."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from halogen.llamaswap import io
from halogen.runtime.base.logs import Logs
from halogen.runtime.serve.hosts import Hosts, default_names, host_name
from halogen.runtime.serve.server import Server

from .harness import PATIENCE, Fake, Site
from .processes import ROOT, listen_port, stop_serving, wait_healthy

HALOGEN = Path(sys.executable).with_name("halogen")
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@asynccontextmanager
async def served(
    tmp_path: Path, *allow_hosts: str, api_keys: list[str] | None = None
) -> AsyncIterator[tuple[Server, Fake]]:
    site = Site(tmp_path)
    fake = site.fake("m")
    if api_keys:
        site.top["apiKeys"] = api_keys
    resolved, _ = io.load(site.write())
    server = Server(resolved, host="127.0.0.1", port=0, logs=Logs(echo_proxy=False), allow_hosts=allow_hosts)
    await server.start()
    try:
        yield server, fake
    finally:
        await server.close()


async def send(
    server: Server, method: str, path: str, headers: dict[str, str], body: object = None
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, server.url + path, json=body, headers=headers) as response,
    ):
        return response.status, await response.text()


async def test_a_page_that_points_its_own_name_at_the_server_is_refused_before_any_route(
    tmp_path: Path,
) -> None:
    async with served(tmp_path) as (server, fake):
        name = f"evil.example:{server.port}"
        rebound = {"Host": name, "Origin": f"http://{name}", "Sec-Fetch-Site": "same-origin"}
        for method, path, body in (
            ("POST", "/unload", None),
            ("GET", "/logs", None),
            ("POST", "/v1/chat/completions", CHAT),
            ("POST", "/api/chat", CHAT),
            ("GET", "/running", None),
        ):
            status, text = await send(server, method, path, rebound, body)
            assert status == 403, (path, text)
            assert "evil.example" in text and "--allow-host" in text, text
        # Not even a curl without an Origin gets an answer under a name that is not the server's.
        status, _ = await send(server, "GET", "/v1/models", {"Host": name})
        assert status == 403
        assert fake.starts() == 0


async def test_same_origin_browser_requests_under_the_server_s_names_are_served(tmp_path: Path) -> None:
    async with served(tmp_path, "chat.lan", ".home.arpa") as (server, fake):
        names = (
            "127.0.0.1",
            "localhost",
            "LOCALHOST.",
            "ui.localhost",
            "chat.lan",
            "box.home.arpa",
            "home.arpa",
        )
        for name in names:
            host = f"{name}:{server.port}"
            page = {"Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
            status, text = await send(server, "POST", "/v1/chat/completions", page, CHAT)
            assert status == 200, (name, text)
            status, text = await send(server, "POST", "/unload", page)
            assert status == 200, (name, text)
        for name in ("chat.lan.evil.example", "evilchat.lan", "home.arpa.evil.example", "evilhome.arpa"):
            status, _ = await send(server, "GET", "/v1/models", {"Host": f"{name}:{server.port}"})
            assert status == 403, name
        assert fake.starts() == len(names)  # each chat started the model the unload before stopped


async def test_the_kubelet_s_probes_and_any_address_are_answered(tmp_path: Path) -> None:
    """The kubelet sends the pod's IP as Host; a ClusterIP, a node port or a port forward arrive
    under addresses no config knows. No DNS is involved in any of them, so none is a rebinding."""
    async with served(tmp_path) as (server, _):
        for host in ("10.244.1.7:8080", "192.168.68.100", "[fd00::7]:8080", "[::1]"):
            status, text = await send(server, "GET", "/health", {"Host": host})
            assert status == 200, (host, text)
            status, text = await send(server, "GET", "/v1/models", {"Host": host})
            assert status == 200, (host, text)


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n", b"400"),
        (
            b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            b"400",
        ),
        (b"GET /v1/models HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n", b"400"),
        (b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:port\r\nConnection: close\r\n\r\n", b"400"),
        (b"GET /v1/models HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n", b"400"),
        (b"GET /api/tags HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", b"403"),
        # HTTP/1.0 may leave Host out (old health checkers do); no browser does.
        (b"GET /v1/models HTTP/1.0\r\n\r\n", b"200"),
    ],
    ids=[
        "no Host",
        "two Hosts",
        "bracket left open",
        "port not a number",
        "a space",
        "another name",
        "HTTP/1.0",
    ],
)
async def test_a_missing_doubled_or_malformed_host_is_a_400(
    tmp_path: Path, head: bytes, status: bytes
) -> None:
    async with served(tmp_path) as (server, _):
        answer = await asyncio.to_thread(_raw, server.port, head)
        assert answer.split(b" ", 2)[1] == status, answer[:300]
        assert b"Traceback" not in answer


@pytest.mark.parametrize("api_keys", [["sk-good"], None], ids=["apiKeys set", "no apiKeys"])
@pytest.mark.parametrize("header", ["Origin", "Referer"])
async def test_a_malformed_origin_or_referer_is_a_400_before_or_after_the_key(
    tmp_path: Path, header: str, api_keys: list[str] | None
) -> None:
    async with served(tmp_path, api_keys=api_keys) as (server, fake):
        for value in ("http://[::1", "http://127.0.0.1:99999/page", "http://[zz]:80"):
            for key in ({}, {"Authorization": "Bearer sk-good"}, {"Authorization": "Bearer wrong"}):
                for path, body in (("/v1/chat/completions", CHAT), ("/api/chat", CHAT), ("/unload", None)):
                    status, text = await send(server, "POST", path, {header: value, **key}, body)
                    assert status == 400, (header, value, key, path, text)
                    error = json.loads(text)["error"]
                    message = error if path.startswith("/api/") else error["message"]
                    assert f"the {header} header" in message, message
        assert fake.starts() == 0


def test_an_allow_host_value_is_a_name_a_domain_an_address_or_any() -> None:
    hosts = Hosts.of(["Chat.LAN.", ".home.arpa", "10.0.0.1", "[fd00::1]"])
    assert hosts.names == {"chat.lan", "10.0.0.1", "fd00::1"} and hosts.domains == (".home.arpa",)
    assert Hosts.of(["*"]).allows("anything.example")
    for bad in ("http://chat.lan", "chat.lan:8080", "chat.lan/ui", "*.lan", "", "a..b"):
        with pytest.raises(ValueError, match="--allow-host"):
            Hosts.of([bad])


def test_host_values_are_read_without_port_case_or_final_dot() -> None:
    assert host_name("Chat.Lan.:8080") == "chat.lan"
    assert host_name("[FD00::1]:80") == "fd00::1"
    assert host_name("10.0.0.1") == "10.0.0.1"
    for bad in ("[::1", "[::1]x", "host:", "host:123456", "a b", "ev\til", "host:80:80"):
        assert host_name(bad) is None, bad


def test_on_every_address_the_machine_s_own_name_is_allowed_on_loopback_only_loopback_names() -> None:
    machine = socket.gethostname().lower()
    everywhere = default_names("0.0.0.0")
    assert machine in everywhere and "localhost" in everywhere
    assert f"{machine.partition('.')[0]}.local" in everywhere
    assert default_names("127.0.0.1") == ["localhost", ".localhost"]
    assert default_names("::") == everywhere
    assert default_names("box.lan")[-1] == "box.lan"


def _get(url: str, host: str) -> int:
    request = urllib.request.Request(url + "/v1/models", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.parametrize("how", ["option", "environment"])
def test_halogen_serve_answers_the_names_given_with_allow_host(tmp_path: Path, how: str) -> None:
    site = Site(tmp_path)
    site.fake("m")
    path = site.write()
    port = listen_port(path)
    argv = [str(HALOGEN), "serve", "--config", str(path), "--listen", f"127.0.0.1:{port}", "--no-watch"]
    env = dict(os.environ)
    if how == "option":
        argv += ["--allow-host", "chat.lan", "--allow-host", ".home.arpa"]
    else:
        env["HALOGEN_ALLOW_HOSTS"] = "chat.lan .home.arpa"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(process, url, lambda: log.read_text())
        statuses = {
            host: _get(url, f"{host}:{port}") for host in ("chat.lan", "nas.home.arpa", "evil.example")
        }
        assert statuses == {"chat.lan": 200, "nas.home.arpa": 200, "evil.example": 403}
    finally:
        stop_serving(process)


def test_halogen_serve_refuses_an_allow_host_with_a_scheme_or_port_as_a_usage_error(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    for value in ("http://chat.lan", "chat.lan:8080"):
        done = subprocess.run(
            [str(HALOGEN), "serve", "--config", str(site.write()), "--allow-host", value],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )
        assert done.returncode == 2, done.stderr
        assert f"--allow-host {value!r}" in done.stderr and "Traceback" not in done.stderr


async def test_a_request_the_http_parser_refuses_is_one_line_in_the_log_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with served(tmp_path) as (server, _):
        for head in (
            b"GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n",
            b"GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        ):
            answer = await asyncio.to_thread(_raw, server.port, head)
            assert answer.split(b" ", 2)[1] == b"400", answer
        said = [line for line in server.logs.history() if "Error handling request" in line]
        assert len(said) == 2, server.logs.history()
        assert "Missing 'Host' header" in said[0] and "Duplicate 'Host' header" in said[1]
        assert not any("Traceback" in line for line in server.logs.history())
    assert not [record for record in caplog.records if record.exc_info]
