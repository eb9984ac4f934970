"""Requests are served only under this server's own names: a `Host` allow-list against DNS
rebinding.

`origin.py` lets a browser's same-origin requests through, and a page is same-origin with this
server when its address is. A page on `evil.example` whose name the attacker then points at this
server's address (DNS rebinding) is same-origin too, and reads every answer; only the `Host` it
sends, `evil.example`, gives it away. So a request whose `Host` is not one of this server's names
is refused before any route, key or not.

An address (`192.168.1.5:8080`, `[::1]:8080`) is always allowed: DNS does not take part in
reaching it, so no rebinding can put it in a browser's `Host`, and what arrived under it was sent
to an address that leads here (the pod's own, the Service's, a node port, a port forward). This
keeps the kubelet's probes, which send the pod's IP, and a ClusterIP no config can know. The names
allowed by default: `localhost` and `*.localhost`, the name serve listens on, and when it listens
on every address (0.0.0.0), the machine's host name (and `<name>.local`, its mDNS name). More with
`--allow-host` (the Deployment `halogen build` writes passes the Service's names), or `*` for any.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from halogen.runtime.base.errors import BadRequest, Refusal, clip

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ANY = "*"
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
# A DNS name, as an `--allow-host` value may give it: labels of letters, digits, '-' and '_'
# (a leading dot: the domain and every name under it).
NAME = re.compile(r"^\.?[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$")


class HostNotAllowed(Refusal):
    status = 403
    kind = "invalid_request_error"
    code = "host_not_allowed"


class BadHost(BadRequest):
    code = "invalid_host"


def allowed_value(value: str) -> str:
    """An `--allow-host` value as kept: a name (`chat.lan`), a domain (`.lan`: every name under
    it too), an address, or `*`; ValueError saying what is wrong otherwise."""
    text = value.strip().lower()
    if text == ANY or _address(text.strip("[]")):
        return text.strip("[]")
    if NAME.match(text.removesuffix(".")):
        return text.removesuffix(".")
    raise ValueError(
        f"--allow-host {value!r}: give a host name (chat.lan), a domain with a leading dot (.lan), "
        "or * for any; no scheme, port or path"
    )


def _address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return False
    return True


def host_name(header: str) -> str | None:
    """The name or address in a `Host` value, without its port, lower case and without a final
    dot; None when it is not `host[:port]`."""
    text = header.strip().lower()
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        if not bracket or not _address(address) or (rest and not re.fullmatch(r":[0-9]{1,5}", rest)):
            return None
        return address
    name, colon, port = text.partition(":")
    if colon and not re.fullmatch(r"[0-9]{1,5}", port):
        return None
    name = name.removesuffix(".")
    if _address(name) or NAME.match(name):
        return name
    return None


def default_names(listen_host: str) -> list[str]:
    """The names a server listening on `listen_host` answers to without being told more."""
    names = ["localhost", ".localhost"]
    host = listen_host.strip("[]").lower()
    if host in WILDCARD_BINDS:
        machine = socket.gethostname().lower().rstrip(".")
        if machine and NAME.match(machine):
            short = machine.partition(".")[0]
            names += [machine, short, f"{short}.local"]
    elif not _address(host):
        names.append(host)
    return names


@dataclass(frozen=True)
class Hosts:
    """The names a request's `Host` may give; addresses are always allowed."""

    names: frozenset[str]
    domains: tuple[str, ...]
    any: bool

    @classmethod
    def of(cls, values: Iterable[str]) -> Hosts:
        kept = {allowed_value(v) for v in values}
        return cls(
            names=frozenset(v for v in kept if not v.startswith(".")),
            domains=tuple(sorted(v for v in kept if v.startswith("."))),
            any=ANY in kept,
        )

    def allows(self, name: str) -> bool:
        if self.any or name in self.names or _address(name):
            return True
        return any(name.endswith(domain) or name == domain[1:] for domain in self.domains)


def middleware(hosts: Hosts) -> Middleware:
    @web.middleware
    async def refuse_other_hosts(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.getall("Host", [])
        if len(given) > 1:
            raise BadHost("the request has more than one Host header")
        if not given:
            if request.version >= (1, 1):
                raise BadHost("the request has no Host header, which HTTP/1.1 requires")
            return await handler(request)  # HTTP/1.0 may leave it out; no browser does
        name = host_name(given[0])
        if name is None:
            raise BadHost(f"the Host header {clip(given[0])} is not host[:port]")
        if not hosts.allows(name):
            raise HostNotAllowed(
                f"this server does not answer to the name {clip(name)} in Host (a page of another "
                "site that pointed its name here?); halogen serve --allow-host NAME adds a name"
            )
        return await handler(request)

    return refuse_other_hosts
