"""A real rtpengine on 127.0.0.1 for the sipcore_media interop tests.

This module owns starting one ``rtpengine`` daemon in userspace mode, in
the foreground, with its log in a directory the test owns (the command
line facts are in ``../shared/reference/interop-notes.md``: no config
file, ``--table=-1``, a private media port range, ``--delete-delay=0``),
waiting for it boundedly with ng pings, starting it again on a new port
when the one chosen was taken meanwhile, and stopping it by its PID. It
also gives a UDP socket that takes datagrams and never answers, the node
that is down without a word. It must not touch system paths or services,
or any rtpengine it did not start.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from sipcore_media import decode_message, encode_message

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
PORT_RETRIES = 5
MEDIA_PORTS = 100


def find_rtpengine() -> str | None:
    return shutil.which("rtpengine") or (
        "/usr/bin/rtpengine" if Path("/usr/bin/rtpengine").exists() else None
    )


def free_udp_port(taken: set[int]) -> int:
    """A UDP port on 127.0.0.1 free now and not in ``taken`` (which it
    joins); rtpengine binds it a moment later, so a start may still lose
    the race and is retried by :func:`start_rtpengine`."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            port: int = probe.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port
    raise AssertionError("could not find a free UDP port on 127.0.0.1")


@dataclass
class RtpengineDaemon:
    """One running rtpengine: where its ng socket is and its media range."""

    process: subprocess.Popen[bytes]
    port: int
    port_min: int
    port_max: int
    log_file: Path
    stopped: bool = field(default=False)

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    @property
    def url(self) -> str:
        return f"udp:{LOOPBACK}:{self.port}"

    def log(self) -> str:
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL to its process group."""
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT)


class _PortTaken(AssertionError):
    """rtpengine could not bind its ng port: another socket took it."""


def _ping(port: int, timeout: float) -> bool:
    cookie = f"probe_{os.getpid()}_{time.monotonic_ns()}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(encode_message(cookie, {"command": "ping"}), (LOOPBACK, port))
        try:
            data = sock.recv(65535)
        except (TimeoutError, ConnectionRefusedError):
            return False
    message = decode_message(data)
    return message.cookie == cookie and message.document.get("result") == "pong"


def _launch(binary: str, workdir: Path, port: int, port_min: int) -> RtpengineDaemon:
    log_file = workdir / f"rtpengine-{port}.log"
    port_max = port_min + MEDIA_PORTS - 1
    command = [
        binary,
        "--config-file=none",
        "--table=-1",
        f"--interface={LOOPBACK}",
        f"--listen-ng={LOOPBACK}:{port}",
        f"--port-min={port_min}",
        f"--port-max={port_max}",
        "--foreground",
        "--log-stderr",
        "--delete-delay=0",
        "--num-threads=2",
    ]
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    daemon = RtpengineDaemon(process, port, port_min, port_max, log_file)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        while True:
            if process.poll() is not None:
                output = daemon.log()
                failure = _PortTaken if "Address already in use" in output else AssertionError
                raise failure(f"rtpengine exited with {process.returncode}:\n{output[-3000:]}")
            if _ping(port, 0.2):
                return daemon
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"rtpengine did not answer a ping within {STARTUP_TIMEOUT}s\n"
                    + daemon.log()[-3000:]
                )
    except BaseException:
        daemon.stop()
        raise


def start_rtpengine(binary: str, workdir: Path, taken: set[int]) -> RtpengineDaemon:
    """Start rtpengine on a free ng port and a private media port range (a
    random block of 100 between 20000 and 59999, so that two daemons and a
    leftover from an earlier run do not share ports), ready for commands."""
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random()
    for attempt in range(PORT_RETRIES + 1):
        port = free_udp_port(taken)
        port_min = rng.randrange(20000, 60000 - MEDIA_PORTS, MEDIA_PORTS)
        try:
            return _launch(binary, workdir, port, port_min)
        except _PortTaken:
            if attempt == PORT_RETRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class SilentNode:
    """A UDP socket that takes datagrams and never answers them."""

    sock: socket.socket

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"udp:{LOOPBACK}:{self.port}"

    def drain(self) -> list[bytes]:
        """Every datagram received so far."""
        got: list[bytes] = []
        self.sock.setblocking(False)
        while True:
            try:
                got.append(self.sock.recv(65535))
            except BlockingIOError:
                return got

    def close(self) -> None:
        self.sock.close()


def silent_node() -> SilentNode:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    return SilentNode(sock)
