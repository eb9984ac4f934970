"""Loopback ports for the servers tests start on a port they name.

A port found by binding port 0 and closing comes from the kernel's ephemeral range, so the
kernel may hand it again to the next socket that binds port 0 (the proxy under test, an aiohttp
test server) before the server meant for it listens: the proxy then finds its model's port
taken. Ports here come from below that range, which binding port 0 and outgoing connections
never use, and this process never hands one out twice."""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000  # below this sit the ports people give their own services


def _outside_ephemeral() -> range:
    try:
        low, high = (int(n) for n in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    if low - _LOWEST >= 4096:
        return range(_LOWEST, low)
    return range(high + 1, 65536)


def _this_workers(ports: range) -> range:
    """Under pytest-xdist (`make test` runs two workers), each worker takes its own slice, so
    two processes never hand out the same port."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw")) if worker.removeprefix("gw").isdigit() else 0
    size = len(ports) // max(count, 1)
    return ports[index * size : (index + 1) * size] if count > 1 else ports


_PORTS = _this_workers(_outside_ephemeral())
_cursor = itertools.count(random.randrange(len(_PORTS)))
_lock = threading.Lock()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nothing listens on, none handed out before."""
    ports: list[int] = []
    with _lock:
        while len(ports) < count:
            port = _PORTS[next(_cursor) % len(_PORTS)]
            if _bindable(port):
                ports.append(port)
    return ports


def free_port_run(count: int = 1) -> int:
    """The first of `count` consecutive free ports: `${PORT}` hands a config's models
    consecutive ports from its `startPort`."""
    with _lock:
        while True:
            start = _PORTS[next(_cursor) % len(_PORTS)]
            run = range(start, start + count)
            if run[-1] >= _PORTS.stop:
                continue
            if all(_bindable(port) for port in run):
                for _ in range(count - 1):  # the rest of the run is handed out too
                    next(_cursor)
                return start
