"""Fixtures for tests against real SIP peers (sipp, kamailio).

Every peer is started by the test itself, in the foreground, bound to
127.0.0.1, with its files in the test's tmp_path, and bounded three ways:
a call count (``-m``), sipp's own global timeout (``-timeout`` with
``-timeout_error``) and a subprocess timeout after which it is killed by
PID. A missing binary skips the test with the command that installs it.
"""

from __future__ import annotations

import contextlib
import csv
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from .kamailio import MODULES_DIR, find_kamailio, missing_modules

LOOPBACK = "127.0.0.1"
INSTALL_HINT = "run scripts/install-peers.sh"

# sipp's documented exit statuses.
SIPP_ALL_CALLS_SUCCESSFUL = 0
SIPP_SOME_CALL_FAILED = 1
SIPP_NO_CALL_PROCESSED = 99

# Grace added to sipp's own -timeout before the subprocess is killed.
KILL_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class SippResult:
    """How a sipp run ended: exit status, final statistics and its logs."""

    returncode: int
    stats: dict[str, str]
    output: str
    errors: str

    def counter(self, name: str) -> int:
        """A cumulative counter from the stat file, e.g. ``"SuccessfulCall"``."""
        value = self.stats.get(f"{name}(C)")
        if value is None:
            raise AssertionError(f"sipp stat file has no {name}(C) column: {sorted(self.stats)}")
        return int(value)

    @property
    def successful_calls(self) -> int:
        return self.counter("SuccessfulCall")

    @property
    def failed_calls(self) -> int:
        return self.counter("FailedCall")

    def describe(self) -> str:
        """Everything useful for an assertion message."""
        tail = "\n".join(self.output.splitlines()[-25:])
        return (
            f"sipp exit status {self.returncode}, "
            f"successful={self.stats.get('SuccessfulCall(C)')} "
            f"failed={self.stats.get('FailedCall(C)')}\n"
            f"--- errors ---\n{self.errors[-3000:]}\n--- screen (tail) ---\n{tail}"
        )


def read_sipp_stats(path: Path) -> dict[str, str]:
    """The last row of a ``-trace_stat`` file, keyed by column name."""
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = [row for row in csv.reader(handle, delimiter=";") if row]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name: value for name, value in zip(header, last, strict=False) if name}


@dataclass
class SippProcess:
    """A sipp started in the background; ``wait()`` bounds and collects it."""

    process: subprocess.Popen[bytes]
    workdir: Path
    stat_file: Path
    error_file: Path
    output_file: Path
    kill_after: float
    result: SippResult | None = field(default=None)

    def wait(self) -> SippResult:
        if self.result is not None:
            return self.result
        try:
            returncode = self.process.wait(timeout=self.kill_after)
        except subprocess.TimeoutExpired:
            self.kill()
            returncode = self.process.wait(timeout=KILL_GRACE_SECONDS)
            self.result = self._collect(returncode)
            raise AssertionError(
                f"sipp did not stop within {self.kill_after:.0f}s and was killed\n"
                + self.result.describe()
            ) from None
        self.result = self._collect(returncode)
        return self.result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def _collect(self, returncode: int) -> SippResult:
        def text(path: Path) -> str:
            if not path.exists():
                return ""
            return path.read_text(encoding="utf-8", errors="replace")

        return SippResult(
            returncode=returncode,
            stats=read_sipp_stats(self.stat_file),
            output=text(self.output_file),
            errors=text(self.error_file),
        )


@pytest.fixture(scope="session")
def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        pytest.skip(f"sipp not installed: {INSTALL_HINT}")
    return path


@pytest.fixture(scope="session")
def kamailio_binary() -> str:
    path = find_kamailio()
    if path is None:
        pytest.skip(f"kamailio not installed (not on PATH nor in /usr/sbin): {INSTALL_HINT}")
    missing = missing_modules()
    if missing:
        pytest.skip(f"kamailio modules missing from {MODULES_DIR}: {missing}: {INSTALL_HINT}")
    return path


def _unused_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def _udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


@pytest.fixture
def udp_port() -> Callable[[], int]:
    """A factory of free UDP ports on 127.0.0.1, distinct within one test.

    The port is free when handed out; a peer binds it a moment later. That
    race is acceptable on a test machine and avoids fixed port numbers.
    """
    handed_out: set[int] = set()

    def allocate() -> int:
        for _ in range(50):
            port = _unused_udp_port()
            # sipp binds its media port p and p+2 (video) at start and exits
            # when either is taken: both must be free now, not only p (a
            # port-0 socket of a proxy under test once sat on p+2).
            if (
                port not in handed_out
                and port + 2 <= 65535
                and port + 2 not in handed_out
                and _udp_port_free(port + 2)
            ):
                handed_out.update({port, port + 1, port + 2})
                return port
        raise AssertionError("could not find a free UDP port on 127.0.0.1")

    return allocate


class StartSipp(Protocol):
    def __call__(
        self,
        *,
        scenario: str,
        local_port: int,
        calls: int,
        timeout: float = ...,
        remote: tuple[str, int] | None = ...,
        rate: int = ...,
        extra_args: Sequence[str] = ...,
    ) -> SippProcess: ...


@pytest.fixture
def start_sipp(
    sipp_binary: str, tmp_path: Path, udp_port: Callable[[], int]
) -> Iterator[StartSipp]:
    """Start sipp with a built-in or file scenario, bounded in calls and time.

    ``start_sipp(scenario="uac", local_port=..., remote=("127.0.0.1", port),
    calls=5, timeout=20)`` returns a :class:`SippProcess`; every sipp still
    running at teardown is killed by its PID.
    """
    started: list[SippProcess] = []

    def start(
        *,
        scenario: str,
        local_port: int,
        calls: int,
        timeout: float = 20.0,
        remote: tuple[str, int] | None = None,
        rate: int = 10,
        extra_args: Sequence[str] = (),
    ) -> SippProcess:
        if not 1 <= calls <= 1000:
            raise ValueError("interop runs are small: 1 to 1000 calls")
        index = len(started)
        workdir = tmp_path / f"sipp{index}"
        workdir.mkdir()
        stat_file = workdir / "stat.csv"
        error_file = workdir / "errors.log"
        output_file = workdir / "screen.log"
        scenario_args = ["-sf", scenario] if scenario.endswith(".xml") else ["-sn", scenario]
        command = [
            sipp_binary,
            *scenario_args,
            "-i", LOOPBACK,
            "-bind_local",
            "-p", str(local_port),
            "-mp", str(udp_port()),
            "-m", str(calls),
            "-r", str(rate),
            "-timeout", f"{int(timeout)}s",
            "-timeout_error",
            "-max_retrans", "5",
            "-nostdin",
            "-trace_stat", "-stf", str(stat_file), "-fd", "1",
            "-trace_err", "-error_file", str(error_file),
            *extra_args,
        ]  # fmt: skip
        if remote is not None:
            command.append(f"{remote[0]}:{remote[1]}")
        with output_file.open("wb") as output:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        sipp = SippProcess(
            process=process,
            workdir=workdir,
            stat_file=stat_file,
            error_file=error_file,
            output_file=output_file,
            kill_after=timeout + KILL_GRACE_SECONDS,
        )
        started.append(sipp)
        return sipp

    yield start

    for sipp in started:
        sipp.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            sipp.process.wait(timeout=KILL_GRACE_SECONDS)
