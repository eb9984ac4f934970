"""One model's child process, from spawn to reaped; the clients that talk to it are its
`ClientPool` (`process/pool.py`).

llama-swap calls this a Process (internal/process/process.go; ProcessCommand in
process_command.go runs one). halogen keeps `Upstream`, the name llama-swap's config gives a
model's server (`upstream.ignorePaths`, the `/upstream/<model>/` route), which the scheduler and
routes use throughout."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import re
import shlex
import signal
import socket
import struct
from collections.abc import Callable, Sequence

import aiohttp
from yarl import URL

from halogen.llamaswap.resolved import Runnable
from halogen.runtime.base.errors import StartFailed
from halogen.runtime.base.logs import Logs, Ring
from halogen.runtime.process import deathsig, reaper
from halogen.runtime.process.lines import LineSplitter
from halogen.runtime.process.pool import ClientPool

# Readiness polls: every 10 ms at first, then a tenth of the time spent so far, at most every
# 50 ms. Noticing readiness late is the proxy's own share of a cold start: this keeps it under
# 50 ms however long the model loads, for at most 20 local GETs a second while it does.
FIRST_POLL = 0.01
LAST_POLL = 0.05
POLL_FRACTION = 0.1
TAIL_LINES = 20
# How long to keep reading a dead child's output for its last words: a grandchild that kept
# the pipe open must not hold up the error.
OUTPUT_DRAIN = 1.0
# How long to try connecting to a model's port before its start, to see whether it is taken.
PORT_PROBE = 1.0
# llama.cpp's GGML_ABORT writes "<source file>:<line>: <message>" and then a backtrace, which
# can push the message out of the tail (ggml_abort in ggml/src/ggml.c): e.g. ggml-rpc.cpp's
# "Failed to connect to <host:port>" when an rpc-server that `--rpc` names does not answer.
ABORTED = re.compile(r"(?:\S*/)?([\w.+-]+\.(?:c|cc|cpp|cu|h|m)):(\d+): (\S.*)")


class State(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"


class Upstream:
    """A `Runnable` as a process: spawned in its own process group, ready when its check
    endpoint answers 200, stopped with `cmdStop` or SIGTERM, then SIGKILL after the grace time.

    A child that dies while ready goes back to `stopped` and `on_exit` is called, so whoever
    schedules models can start it again.
    """

    def __init__(
        self,
        runnable: Runnable,
        *,
        health_check_timeout: float,
        logs: Logs | None = None,
        on_exit: Callable[[Upstream], None] | None = None,
        output_lines: int = 200,
    ) -> None:
        self.pool = ClientPool(runnable.timeouts, runnable.proxy)
        self.runnable = runnable
        self.state = State.STOPPED
        self.output = Ring(output_lines)
        self.exit_code: int | None = None
        self.health_check_timeout = health_check_timeout  # read at each start
        self._logs = logs or Logs(echo_proxy=False)
        self._on_exit = on_exit
        self._proc: asyncio.subprocess.Process | None = None
        self._exit: asyncio.Task[int] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def runnable(self) -> Runnable:
        return self._runnable

    @runnable.setter
    def runnable(self, runnable: Runnable) -> None:
        """A reload that keeps the process gives it the new settings (the pool's timeouts from
        its next sessions)."""
        self._runnable = runnable
        self.pool.timeouts = runnable.timeouts

    @property
    def id(self) -> str:
        return self.runnable.id

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def url(self, path_qs: str) -> URL:
        """The upstream URL for a path (with query) that starts with `/`: the proxy's scheme and
        host always stay, whatever the path holds."""
        if not path_qs.startswith("/"):
            path_qs = "/" + path_qs
        return URL(self.runnable.proxy + path_qs, encoded=True)

    def tail(self, count: int = TAIL_LINES) -> list[str]:
        return self.output.tail(count)

    def abort_reason(self) -> str | None:
        """The message of the last GGML_ABORT in the output kept, with the source line it
        names; None when the process wrote none."""
        for line in reversed(self.output.lines()):
            found = ABORTED.fullmatch(line.strip())
            if found:
                return f"{found[3]} ({found[1]}:{found[2]})"
        return None

    async def last_words(self, patience: float = 0.5) -> list[str]:
        """The log tail after a failed exchange. When the failure was the process dying, its
        exit may not have been seen yet, nor its final output read: wait a little for both."""
        if self._exit is not None and not self._exit.done():
            await asyncio.wait([self._exit], timeout=patience)
        return self.tail()

    # --- start --------------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the command and wait until it is ready; raise `StartFailed` with the log tail
        when it exits first or is not ready within the health check timeout."""
        if self.state is not State.STOPPED:
            raise RuntimeError(f"cannot start {self.id!r} while {self.state}")
        self.state = State.STARTING
        self.exit_code = None
        # Connections pooled for a previous process are dead; do not offer them again.
        await self.pool.close()
        try:
            await self._refuse_taken_port()
            exit_task = await self._spawn()
            await self._wait_ready(exit_task)
        except BaseException:
            await asyncio.shield(self._terminate())
            await self.pool.close()
            self.state = State.STOPPED
            raise
        self.state = State.READY
        self._logs.proxy(f"model {self.id!r} is ready (pid {self.pid})")

    async def _refuse_taken_port(self) -> None:
        """Fail when the port the command is told to listen on already accepts connections: the
        child could not bind it, and the readiness check would be answered by whatever holds it,
        so requests would go to the wrong server."""
        url = URL(self.runnable.proxy)
        host, port = url.host, url.port
        if host is None or port is None:
            return
        number = re.compile(rf"(?<![0-9]){port}(?![0-9])")
        if not any(number.search(arg) for arg in self.runnable.argv):
            return  # the command serves elsewhere (or the proxy URL is someone else's server)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PORT_PROBE)
        except (OSError, TimeoutError):
            return
        # A probe from an ephemeral port equal to the one it probes connects to itself when
        # nothing listens (TCP's simultaneous open on loopback): that is not a server.
        itself = writer.get_extra_info("sockname") == writer.get_extra_info("peername")
        probe = writer.get_extra_info("socket")
        if probe is not None:  # closed with a reset: no TIME_WAIT left holding the port
            with contextlib.suppress(OSError):
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        if itself:
            return
        message = (
            f"cannot start model {self.id!r}: {host}:{port} is already in use by another process "
            "(a leftover server?), so the model's server could not listen there"
        )
        self._logs.proxy(message, "error")
        raise StartFailed(message)

    async def _exec(self, argv: Sequence[str]) -> asyncio.subprocess.Process:
        """Run argv (never through a shell) with the model's env and output captured, in its
        own process group, so a stop reaches every process it spawned, and killed if the proxy
        dies. The session stays the proxy's: `ps`/`pgrep -s` show the children under it."""
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._environment(),
            process_group=0,
            preexec_fn=deathsig.preexec(),
        )

    async def _spawn(self) -> asyncio.Task[int]:
        argv = self.runnable.argv
        self._logs.proxy(f"starting model {self.id!r}: {shlex.join(argv)}")
        try:
            proc = await self._exec(argv)
        except OSError as exc:
            message = self._logs.redact(
                f"cannot run {argv[0]!r} for model {self.id!r}: {exc.strerror or exc}"
            )
            self._logs.proxy(message, "error")
            raise StartFailed(message) from None
        self._proc = proc
        reaper.track(proc.pid)
        assert proc.stdout is not None
        self._reader = asyncio.create_task(self._read_output(proc.stdout))
        self._exit = asyncio.create_task(self._watch(proc, self._reader))
        return self._exit

    def _environment(self) -> dict[str, str]:
        return {**os.environ, **dict(self.runnable.env)}

    async def _read_output(self, stream: asyncio.StreamReader) -> None:
        lines = LineSplitter()
        while chunk := await stream.read(64 * 1024):
            for line in lines.feed(chunk):
                self._output_line(line)
        for line in lines.close():
            self._output_line(line)

    def _output_line(self, raw: bytes) -> None:
        line = self._logs.redact(raw.decode("utf-8", errors="replace"))
        self.output.add(line)
        self._logs.upstream(self.id, line)

    async def _watch(self, proc: asyncio.subprocess.Process, reader: asyncio.Task[None]) -> int:
        code = await proc.wait()
        reaper.untrack(proc.pid)
        await asyncio.wait([reader], timeout=OUTPUT_DRAIN)
        self.exit_code = code
        if self.state in (State.STARTING, State.READY):
            self._logs.proxy(f"model {self.id!r} exited with code {code}", "warn")
        if self.state is State.READY:
            self.state = State.STOPPED
            self._proc = None
            # The group may hold grandchildren that outlive the leader; they go with it.
            self._kill_group(proc.pid, signal.SIGKILL)
            if self._on_exit is not None:
                self._on_exit(self)
        return code

    async def _wait_ready(self, exit_task: asyncio.Task[int]) -> None:
        endpoint = self.runnable.check_endpoint
        if not endpoint:
            return
        url = self.url(endpoint)
        loop = asyncio.get_running_loop()
        timeout = self.health_check_timeout
        deadline = loop.time() + timeout
        began = loop.time()
        while True:
            if exit_task.done():
                reason = self.abort_reason()
                raise StartFailed(
                    f"model {self.id!r} exited with code {exit_task.result()} before it was ready"
                    + (f": {reason}" if reason else ""),
                    self.tail(),
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StartFailed(
                    f"model {self.id!r} was not ready within {timeout:g} s "
                    f"({self.runnable.proxy}{endpoint} never answered 200)",
                    self.tail(),
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                poll_timeout = aiohttp.ClientTimeout(total=min(remaining, 5.0))
                async with self.pool.session.get(url, timeout=poll_timeout) as response:
                    # Read the (small) body so the connection is reused, not reset.
                    await response.read()
                    if response.status == 200:
                        return
            # Sleep until the next poll, but wake at once if the child exits.
            now = loop.time()
            delay = min(LAST_POLL, max(FIRST_POLL, (now - began) * POLL_FRACTION))
            await asyncio.wait([exit_task], timeout=max(0.0, min(delay, deadline - now)))

    # --- stop ---------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop the process (and its group) and reap it; concurrent calls share one stop."""
        if self._stopping is None or self._stopping.done():
            if self._proc is None and self.state is State.STOPPED:
                await self.pool.close()
                return
            self.state = State.STOPPING
            self._stopping = asyncio.create_task(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        try:
            await self._terminate()
        finally:
            self.state = State.STOPPED
            await self.pool.close()
            self._logs.proxy(f"model {self.id!r} stopped")

    async def _terminate(self) -> None:
        proc, exit_task = self._proc, self._exit
        if proc is None or exit_task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.runnable.unload_timeout
        if not exit_task.done():
            if self.runnable.stop_argv:
                await self._run_stop_command(proc.pid, deadline)
            else:
                self._kill_group(proc.pid, signal.SIGTERM)
            await asyncio.wait([exit_task], timeout=max(0.0, deadline - loop.time()))
        # Grandchildren get the same grace as the leader, then the whole group is killed.
        while _group_alive(proc.pid) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if not exit_task.done() or _group_alive(proc.pid):
            self._logs.proxy(f"model {self.id!r} did not stop in time: SIGKILL", "warn")
            self._kill_group(proc.pid, signal.SIGKILL)
        await exit_task
        self._proc = None

    async def _run_stop_command(self, pid: int, deadline: float) -> None:
        argv = [arg.replace("${PID}", str(pid)) for arg in self.runnable.stop_argv]
        self._logs.proxy(f"stopping model {self.id!r}: {shlex.join(argv)}")
        try:
            stopper = await self._exec(argv)
        except OSError as exc:
            self._logs.proxy(f"cmdStop of {self.id!r} failed: {exc.strerror or exc}; SIGTERM", "warn")
            self._kill_group(pid, signal.SIGTERM)
            return
        reaper.track(stopper.pid)
        assert stopper.stdout is not None
        reader = asyncio.create_task(self._read_output(stopper.stdout))
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(stopper.wait(), remaining)
        except TimeoutError:
            self._kill_group(stopper.pid, signal.SIGKILL)
            await stopper.wait()
        finally:
            reaper.untrack(stopper.pid)
        await asyncio.wait([reader], timeout=OUTPUT_DRAIN)

    def _kill_group(self, pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def command(self) -> str:
        """The command line as shown: values from `${env.…}` masked."""
        return self._logs.redact(shlex.join(self.runnable.argv))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
