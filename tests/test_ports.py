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


def test_each_xdist_worker_hands_out_ports_from_its_own_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = range(10_000, 32_768)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    slices = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        slices.append(set(ports._this_workers(whole)))
    assert not slices[0] & slices[1]
    assert all(len(s) >= len(whole) // 2 for s in slices) and slices[0] | slices[1] <= set(whole)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    assert ports._this_workers(whole) == whole
