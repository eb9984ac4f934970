"""What the proxy guarantees a deployment: keys on every route but /health (found by walking the
router, so a new route cannot be forgotten), keys compared in constant time, bodies bounded, the
upstream route confined to its model's server, loopback by default, and no shell anywhere."""

from __future__ import annotations

import ast
import asyncio
import hmac
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from halogen import cli
from halogen.commands import serve as serve_command
from halogen.llamaswap.resolved import Runnable
from halogen.runtime.apis.anthropic import anthropic_style
from halogen.runtime.process.upstream import Upstream
from halogen.runtime.serve import app, auth, server

from .harness import PATIENCE, Proxy, Site, challenge, eventually, fake_process, free_ports, serving
from .processes import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "halogen"

# Values for the router's path parameters; a route with a parameter not named here fails the
# walk, so whoever adds it decides what it takes.
SAMPLES = {
    "model": "m",
    "tail": "m/props",
    "digest": "sha256-0",
    "source": "proxy",
    "id": "1",
    "asset": "app.js",
}
# Routes that never read a request body, so no body can cost them memory.
WITHOUT_BODY = {
    "/unload",
    "/unload/{model}",
    "/api/models/unload",
    "/api/models/unload/{model}",
    "/api/inflight/{id}/cancel",
    "/api/pull",
    "/api/push",
    "/api/create",
    "/api/copy",
    "/api/blobs/{digest}",
}


def routes() -> list[tuple[str, str, str]]:
    """(method, path template, a path to request) for every route `halogen serve` has."""
    found = []
    for route in app.build(None).router.routes():  # type: ignore[arg-type]
        template = route.resource.canonical if route.resource is not None else ""
        path = template.format(**SAMPLES)
        methods = ["GET", "POST", "PUT", "DELETE"] if route.method == "*" else [route.method]
        found += [(method, template, path) for method in methods]
    return found


def ollama_route(path: str) -> bool:
    return path == "/" or path.startswith("/api/")


async def raw_request(proxy: Proxy, head: str, host: str = "127.0.0.1", body: str = "") -> tuple[int, bytes]:
    """Status and body for a request sent byte for byte (clients normalise what is tested here)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    writer.write(head.encode("latin-1") + f"Host: {host}\r\nConnection: close\r\n\r\n{body}".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


async def listens(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


# --- keys -----------------------------------------------------------------------------------


def test_the_route_walk_sees_the_openai_ollama_and_management_routes() -> None:
    templates = {template for _, template, _ in routes()}
    assert {
        "/v1/chat/completions",
        "/api/chat",
        "/api/embed",
        "/",
        "/upstream/{tail}",
        "/metrics",
    } <= templates


async def test_api_keys_guard_every_route_of_the_router_but_health(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    site.top["apiKeys"] = ["sk-one", "sk-two"]
    async with serving(site.write()) as proxy:
        guarded = [
            (method, path)
            for method, template, path in routes()
            if template not in ("/health", "/wol-health")
        ]
        # A path or method the router does not know says nothing about the routes without a key.
        guarded += [("GET", "/nope"), ("PATCH", "/v1/chat/completions")]
        for method, path in guarded:
            for headers in (
                {},
                {"Authorization": "Bearer sk-three"},
                {"Authorization": "bearer sk-three"},  # the scheme is case-insensitive, the key is not
                {"Authorization": "BEARER sk-ONE"},
                {"x-api-key": "sk-on"},
                {"Authorization": "sk-one"},
            ):
                async with proxy.client.request(
                    method, path, json={"model": "m"}, headers=headers
                ) as response:
                    assert response.status == 401, (method, path, headers)
                    assert response.headers["WWW-Authenticate"] == challenge(path)
                    if method != "HEAD":
                        error = (await response.json())["error"]
                        if ollama_route(path):
                            assert isinstance(error, str)
                        elif anthropic_style(path):
                            assert error["type"] == "authentication_error"
                        else:
                            assert error["code"] == "invalid_api_key"
        assert fake.starts() == 0
        for method in ("GET", "HEAD"):
            async with proxy.client.request(method, "/health") as response:
                assert response.status == 200
        for method, path in guarded[:-2]:
            # /logs/stream never ends: the status is all this reads.
            async with proxy.client.request(
                method, path, json={"model": "m"}, headers={"x-api-key": "sk-two"}
            ) as response:
                assert response.status != 401, (method, path)


def test_keys_are_compared_with_hmac_compare_digest_and_every_key_is_compared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    keys = ["k1", "k2", "k3"]
    assert auth.allowed(CIMultiDict({"x-api-key": "k1"}), keys) is True
    # No early exit on a match: the time taken does not say which key matched.
    assert calls == [(b"k1", b"k1"), (b"k1", b"k2"), (b"k1", b"k3")]
    assert auth.allowed(CIMultiDict({"Authorization": "Bearer k4"}), keys) is False
    assert len(calls) == 6

    # The decision is compare_digest's alone: no other comparison lets a key through.
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: False)
    assert auth.allowed(CIMultiDict({"x-api-key": "k1"}), keys) is False


def test_the_bearer_scheme_is_read_without_case_and_a_wrong_key_in_any_case_is_refused() -> None:
    # RFC 7235: the auth scheme is case-insensitive; the key is compared as written.
    keys = ["sk-one"]
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert auth.allowed(CIMultiDict({"Authorization": f"{scheme} sk-one"}), keys) is True
        assert auth.allowed(CIMultiDict({"Authorization": f"{scheme} sk-wrong"}), keys) is False
        assert auth.allowed(CIMultiDict({"Authorization": f"{scheme} SK-ONE"}), keys) is False
    assert auth.allowed(CIMultiDict({"Authorization": "Basic sk-one"}), keys) is False


async def test_a_served_request_is_checked_with_compare_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    site = Site(tmp_path)
    site.fake("m")
    site.top["apiKeys"] = ["sk-one"]
    async with (
        serving(site.write()) as proxy,
        proxy.client.get("/api/tags", headers={"Authorization": "Bearer sk-one"}) as response,
    ):
        assert response.status == 200
    assert calls == [b"sk-one"]


@pytest.mark.parametrize(
    "header",
    [b"x-api-key: \xff\xfe", b"Authorization: Bearer sk-\xe9", b"x-api-key: sk-\xc3"],
    ids=["latin-1 bytes", "bearer latin-1", "cut utf-8"],
)
async def test_a_key_that_is_not_utf_8_is_refused_with_401_not_an_error(
    tmp_path: Path, header: bytes
) -> None:
    site = Site(tmp_path)
    site.fake("m")
    site.top["apiKeys"] = ["sk-\u00e9"]
    async with serving(site.write()) as proxy:
        status, _ = await raw_request(
            proxy, "GET /v1/models HTTP/1.1\r\n" + header.decode("latin-1") + "\r\n"
        )
        assert status == 401
        status, _ = await raw_request(proxy, "GET /v1/models HTTP/1.1\r\nx-api-key: sk-\u00c3\u00a9\r\n")
        assert status == 200  # the configured key, sent as UTF-8


# --- bodies ---------------------------------------------------------------------------------

LIMIT = 1024


async def test_every_route_that_reads_a_body_refuses_one_over_the_limit_with_413(tmp_path: Path) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    body = json.dumps({"model": "m", "prompt": "x" * 4 * LIMIT})
    async with serving(site.write(), max_body=LIMIT) as proxy:
        readers = [(m, t, p) for m, t, p in routes() if m in ("POST", "PUT") and t not in WITHOUT_BODY]
        assert {"/v1/chat/completions", "/api/chat", "/api/generate", "/api/embed", "/api/show"} <= {
            t for _, t, _ in readers
        }
        for method, _, path in readers:
            headers = {"Content-Type": "application/json"}
            async with proxy.client.request(method, path, data=body, headers=headers) as response:
                assert response.status == 413, (method, path)
                error = (await response.json())["error"]
                if ollama_route(path):
                    assert isinstance(error, str)
                elif anthropic_style(path):
                    assert error["type"] == "request_too_large"
                else:
                    assert error["code"] == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"x" * LIMIT

        for path in ("/v1/chat/completions", "/api/chat"):  # no Content-Length to go by
            async with proxy.client.post(path, data=chunks()) as response:
                assert response.status == 413, path
        form = aiohttp.FormData()
        form.add_field("model", "m")
        form.add_field("file", b"\0" * 4 * LIMIT, filename="a.wav")
        async with proxy.client.post("/v1/audio/transcriptions", data=form) as response:
            assert response.status == 413
        assert fake.starts() == 0


# --- the upstream route ---------------------------------------------------------------------

# Each tries to make `/upstream/m/...` reach something other than model m's own server: the
# other model, or a server at EVIL that no model owns.
TRICKS = [
    "/upstream/m/@127.0.0.1:{evil}/x",
    "/upstream/m/%40127.0.0.1:{evil}/x",
    "/upstream/m@127.0.0.1:{evil}/x",
    "/upstream/m:{evil}/x",
    "/upstream/m/http://127.0.0.1:{evil}/x",
    "/upstream/m/http:%2F%2F127.0.0.1:{evil}/x",
    "/upstream/m//127.0.0.1:{evil}/x",
    "/upstream/m/%2F%2F127.0.0.1:{evil}/x",
    "/upstream/m/\\\\127.0.0.1:{evil}/x",
    "/upstream/m/%5C%5C127.0.0.1:{evil}/x",
    "/upstream/m/;@127.0.0.1:{evil}",
    "/upstream/m/x#@127.0.0.1:{evil}",
    "/upstream/m/x?next=http://127.0.0.1:{evil}/",
    "/upstream/m/../other/x",
    "/upstream/m/%2e%2e/other/x",
    "/upstream/m/.%2E/other/x",
    "/upstream/m/..%2Fother/x",
    "/upstream/m/..;/other/x",
    "/upstream/m/%252e%252e/other/x",
    "/upstream/m%2F..%2Fother/x",
    "http://127.0.0.1:{evil}/upstream/m/x",
]


async def test_the_upstream_route_reaches_only_that_models_server(tmp_path: Path) -> None:
    site = Site(tmp_path)
    m = site.fake("m")
    other = site.fake("other")
    site.top["groups"] = {"side": {"swap": False, "exclusive": False, "members": ["m", "other"]}}
    (evil,) = free_ports(1)
    evil_record = tmp_path / "evil.events"
    with fake_process(evil, "evil", evil_record):
        async with serving(site.write()) as proxy:
            await eventually(lambda: listens(evil), "the evil listener listens")
            async with await proxy.chat("other") as response:
                assert response.status == 200
            outcomes = {}
            for trick in TRICKS:
                target = trick.format(evil=evil)
                status, body = await raw_request(proxy, f"GET {target} HTTP/1.1\r\n")
                outcomes[target] = status
                assert status in (200, 400, 404), target
                if status == 200:
                    assert json.loads(body)["served_by"] == "m", target
            # The Host header names nothing either.
            status, body = await raw_request(proxy, "GET /upstream/m/x HTTP/1.1\r\n", f"127.0.0.1:{evil}")
            assert status == 200 and json.loads(body)["echo"]["headers"]["host"] == f"127.0.0.1:{m.port}"
        requests = [e for e in m.events("request")]
        assert all(e["path"].startswith("/") for e in requests)
        assert len(other.events("request")) == 1  # only the chat sent to it directly
        evil_requests = [line for line in evil_record.read_text().splitlines() if '"request"' in line]
        assert not evil_requests, outcomes


async def test_an_absolute_form_request_target_is_routed_by_its_path_not_its_authority(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    fake = site.fake("m")
    async with serving(site.write()) as proxy:
        body = json.dumps({"model": "m"})
        status, _ = await raw_request(
            proxy,
            "POST http://127.0.0.1:1/v1/chat/completions?x=%20y HTTP/1.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n",
            body=body,
        )
        assert status == 200
        status, body_bytes = await raw_request(proxy, "GET http://127.0.0.1:1/upstream/m/props HTTP/1.1\r\n")
        assert status == 200 and json.loads(body_bytes)["echo"]["path"] == "/props"
    chat, props = fake.events("request")
    assert (chat["path"], chat["query"]) == ("/v1/chat/completions", "x=%20y")
    assert props["path"] == "/props"


def upstream_at(proxy_url: str) -> Upstream:
    runnable = Runnable(
        id="m", argv=("srv",), stop_argv=(), proxy=proxy_url, check_endpoint="/health", env=(), group="g"
    )
    return Upstream(runnable, health_check_timeout=1)


PROXY_URLS = ["http://127.0.0.1:5800", "http://localhost:8080/base", "http://[::1]:9"]


@given(st.sampled_from(PROXY_URLS), st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF)))
def test_no_path_can_move_an_upstream_url_off_the_models_server(proxy_url: str, path: str) -> None:
    base = URL(proxy_url)
    url = upstream_at(proxy_url).url(path)
    assert (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
    assert url.raw_path.startswith(base.raw_path.rstrip("/") + "/")


# --- where it listens -----------------------------------------------------------------------


def test_every_entry_point_defaults_to_loopback() -> None:
    listen = next(p for p in cli.serve.params if p.name == "listen")
    assert listen.default == "127.0.0.1:8080"
    assert serve_command.DEFAULT_LISTEN == "127.0.0.1:8080"
    assert (server.DEFAULT_HOST, server.DEFAULT_PORT) == ("127.0.0.1", 8080)
    assert server.Server.__init__.__kwdefaults__["host"] == "127.0.0.1"  # type: ignore[index]


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket `pid` listens on, from /proc (IPv4 and IPv6)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}") if os.path.exists(f"/proc/{pid}/fd/{fd}") else ""
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(match.group(1))
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # LISTEN
                address, port = local.split(":")
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    text = ".".join(str(b) for b in raw[::-1])
                else:
                    words = [raw[i : i + 4][::-1].hex() for i in range(0, 16, 4)]
                    text = ":".join("".join(words)[i : i + 4] for i in range(0, 32, 4))
                found.add((text, int(port, 16)))
    return found


def test_halogen_serve_given_only_a_port_listens_on_127_0_0_1_only(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.fake("m")
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "halogen",
            "serve",
            "--config",
            str(site.write()),
            "--listen",
            str(port),
            "--no-watch",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}")
        assert listening_addresses(process.pid) == {("127.0.0.1", port)}
    finally:
        process.terminate()
        process.wait(PATIENCE)


# --- no shell -------------------------------------------------------------------------------

SHELL_CALLS = {
    "system",
    "popen",
    "create_subprocess_shell",
    "subprocess_shell",
    "getoutput",
    "getstatusoutput",
}
SHELL_PATHS = re.compile(r"(^|/)(ba|da|z|k|c|tc)?sh$")


def shell_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if name in SHELL_CALLS:
                yield node.lineno, f"{name}(...)"
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    yield node.lineno, "shell=..."
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and SHELL_PATHS.search(node.value)
        ):
            yield node.lineno, repr(node.value)


def test_the_scan_for_shells_finds_each_kind() -> None:
    source = "os.system('x'); subprocess.run(a, shell=flag); asyncio.create_subprocess_shell('x'); run(['/bin/sh'])"
    assert [what for _, what in shell_uses(ast.parse(source))] == [
        "system(...)",
        "shell=...",
        "create_subprocess_shell(...)",
        "'/bin/sh'",
    ]


def test_no_code_in_halogen_runs_a_shell() -> None:
    found = []
    spawns = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        found += [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in shell_uses(tree)]
        spawns += path.read_text().count("create_subprocess_exec(")
    assert found == []
    assert spawns >= 1  # the scan did see the code that starts processes


async def test_shell_metacharacters_in_cmd_and_cmd_stop_reach_the_process_as_literal_arguments(
    tmp_path: Path,
) -> None:
    canary = tmp_path / "pwned"
    payloads = [
        f"a; touch {canary}",
        f"b | touch {canary}",
        f"$(touch {canary})",
        f"`touch {canary}`",
        f"c && touch {canary} > {canary}",
        "$HOME *",
    ]
    site = Site(tmp_path)
    fake = site.fake("m")
    # Quoted, and bare where shlex keeps a word whole.
    bare = [f"d;touch{canary}", f"e|touch{canary}"]
    site.models["m"]["cmd"] += " " + " ".join(f"--note {shlex.quote(p)}" for p in payloads)
    site.models["m"]["cmd"] += " " + " ".join(f"--note={word}" for word in bare)
    stop_record = tmp_path / "stop.json"
    stopper = (
        "import json, os, signal, sys; "
        f"open({str(stop_record)!r}, 'w').write(json.dumps(sys.argv[1:])); "
        "os.kill(int(sys.argv[1]), signal.SIGTERM)"
    )
    site.models["m"]["cmdStop"] = shlex.join([sys.executable, "-c", stopper]) + " ${PID} ';' `id` $(id) |cat"
    async with serving(site.write()) as proxy:
        async with await proxy.chat("m") as response:
            assert response.status == 200
        async with proxy.client.post("/unload/m") as response:
            assert response.status == 200
    argv = fake.events("start")[0]["argv"]
    assert [argv[i + 1] for i, arg in enumerate(argv) if arg == "--note"] == payloads
    assert [arg.removeprefix("--note=") for arg in argv if arg.startswith("--note=")] == bare
    assert json.loads(stop_record.read_text()) == [str(fake.last_pid()), ";", "`id`", "$(id)", "|cat"]
    assert not canary.exists()
