"""The test suite's port allocator (tests/ports.py): the servers tests start must never race
the proxy, which binds port 0, for a port."""

from __future__ import annotations

import socket

import pytest

from tests import ports


def test_ports_are_outside_the_kernel_s_ephemeral_range_and_never_handed_out_twice() -> None:
    handed = ports.free_ports(50) + [ports.free_port_run(3) + i for i in range(3)]
    assert len(set(handed)) == len(handed)
    with socket.socket() as s:  # what the proxy under test does
        s.bind(("127.0.0.1", 0))
        ephemeral = s.getsockname()[1]
    assert all(port in ports._PORTS for port in handed)
    assert ephemeral not in ports._PORTS


def test_a_port_something_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.free_ports(1)[0]))
        taken.listen()
        port = taken.getsockname()[1]
        next_in_line = iter(range(ports._PORTS.index(port), 10**9))
        monkeypatch.setattr(ports, "_cursor", next_in_line)
        assert port not in ports.free_ports(2)
