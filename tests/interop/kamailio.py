"""A real Kamailio with the dialog module on 127.0.0.1, and a JSON-RPC client.

This module owns the kamailio.cfg of the dialog reference check, starting one
kamailio in the foreground (with that cfg or one a test renders itself) with
every file in a directory the test owns (``-DD -E -Y RUNDIR -w RUNDIR``, no
core files), waiting for it boundedly by probing its JSON-RPC socket,
stopping it by PID (SIGTERM, then SIGKILL to its process group), and
:class:`JsonRpcClient`, which speaks JSON-RPC 2.0 over the ``jsonrpcs``
datagram socket. It must not touch system paths, system services or any
kamailio it did not start.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
MODULES_DIR = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
REQUIRED_MODULES = (
    "jsonrpcs",
    "ctl",
    "kex",
    "tm",
    "sl",
    "rr",
    "pv",
    "maxfwd",
    "textops",
    "siputils",
    "dialog",
)
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
RPC_TIMEOUT = 2.0

# Kamailio's own statistic names, in the "dialog" group.
DIALOG_STATISTICS = (
    "active_dialogs",
    "early_dialogs",
    "processed_dialogs",
    "expired_dialogs",
    "failed_dialogs",
)


def config_head(purpose: str, modules: Sequence[str], *, children: int = 2) -> str:
    """The start every test's kamailio.cfg shares: a comment saying what it
    is for, logging to stderr, ``children`` workers on 127.0.0.1 UDP, the
    module path, ``jsonrpcs`` (datagram socket only) and ``ctl``, then
    ``modules``. A ``str.format`` template: ``{host}``, ``{port}``,
    ``{modules}``, ``{rpc_socket}`` and ``{ctl_socket}`` are left to fill."""
    loads = "".join(f'loadmodule "{name}.so"\n' for name in ("jsonrpcs", "ctl", *modules))
    return (
        "#!KAMAILIO\n"
        f"# {purpose}\n"
        "debug=2\nlog_stderror=yes\n"
        f"children={children}\n"
        "listen=udp:{host}:{port}\ndisable_tcp=yes\nauto_aliases=no\n"
        'mpath="{modules}"\n\n'
        f"{loads}\n"
        "# jsonrpcs transport 4: the datagram socket only, no FIFO.\n"
        'modparam("jsonrpcs", "transport", 4)\n'
        'modparam("jsonrpcs", "dgram_socket", "{rpc_socket}")\n'
        'modparam("ctl", "binrpc", "unix:{ctl_socket}")\n'
    )


CONFIG_TEMPLATE = (
    config_head(
        "The dialog reference check: sipcore_dialog's Rig script, in Kamailio.",
        ("kex", "tm", "sl", "rr", "pv", "maxfwd", "textops", "siputils", "dialog"),
    )
    + """
# dlg_match_mode 0 (DID_ONLY), every timeout left at its default.
modparam("dialog", "enable_stats", 1)
modparam("dialog", "dlg_match_mode", 0)
modparam("dialog", "profiles_with_value", "caller")
modparam("dialog", "profiles_no_value", "calls")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        # Sequential requests: the dialog module follows them through rr's
        # loose_route() callback.
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL|ACK")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        dlg_manage();
        set_dlg_profile("caller", "$fU");
        set_dlg_profile("calls");
        record_route();
        $du = "sip:{uas_host}:{uas_port}";
        t_relay();
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""
)


def find_kamailio() -> str | None:
    """The kamailio binary (it lives in /usr/sbin, often not on PATH)."""
    found = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin:/usr/local/sbin")
    return found


def missing_modules(
    modules_dir: Path = MODULES_DIR, names: Sequence[str] = REQUIRED_MODULES
) -> list[str]:
    return [name for name in names if not (modules_dir / f"{name}.so").exists()]


def render_config(
    *,
    port: int,
    uas: tuple[str, int],
    rpc_socket: Path,
    ctl_socket: Path,
    modules_dir: Path = MODULES_DIR,
) -> str:
    """The kamailio.cfg: listen on 127.0.0.1:``port``, relay INVITEs to ``uas``."""
    return CONFIG_TEMPLATE.format(
        host=LOOPBACK,
        port=port,
        modules=f"{modules_dir}/",
        rpc_socket=rpc_socket,
        ctl_socket=ctl_socket,
        uas_host=uas[0],
        uas_port=uas[1],
    )


def free_udp_port(taken: set[int]) -> int:
    """A UDP port on 127.0.0.1 that is free now and not in ``taken`` (which
    it joins). A peer binds it a moment later; acceptable on a test machine."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            port: int = probe.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port
    raise AssertionError("could not find a free UDP port on 127.0.0.1")


class RpcError(Exception):
    """Kamailio answered a JSON-RPC request with an error, or not at all."""


class JsonRpcClient:
    """JSON-RPC 2.0 over kamailio's ``jsonrpcs`` datagram socket.

    The client binds its own datagram socket (kamailio replies to the
    sender's address) and reads each reply with a timeout; a reply whose id
    is not the request's (a late answer to an earlier timed-out request) is
    skipped.
    """

    def __init__(self, server: Path, client: Path, timeout: float = RPC_TIMEOUT) -> None:
        self.server = server
        self.client = client
        self.timeout = timeout
        self._ids = itertools.count(1)
        with contextlib.suppress(FileNotFoundError):
            client.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(client))

    def call(self, method: str, *params: str | int) -> Any:
        """The ``result`` of ``method(*params)``; RpcError on an error or timeout."""
        request_id = next(self._ids)
        payload = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": request_id}
        try:
            self._sock.sendto(json.dumps(payload).encode(), str(self.server))
        except OSError as exc:
            raise RpcError(f"{method}: cannot reach {self.server}: {exc}") from exc
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RpcError(f"{method}: no reply within {self.timeout}s")
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(1 << 20)
            except TimeoutError:
                continue
            reply = json.loads(data)
            if reply.get("id") != request_id:
                continue
            if "error" in reply:
                raise RpcError(f"{method}{list(params)}: {reply['error']}")
            return reply.get("result")

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.client.unlink()


def _no_core_files() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass
class Kamailio:
    """One running kamailio and what it is asked about dialogs."""

    process: subprocess.Popen[bytes]
    rundir: Path
    port: int
    config: str
    log_file: Path
    rpc: JsonRpcClient
    stopped: bool = field(default=False)

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    def log(self) -> str:
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    # -- the dialog module's RPC commands -------------------------------------------

    def dialogs(self) -> list[dict[str, Any]]:
        """``dlg.list``."""
        result = self.rpc.call("dlg.list")
        return list(result or [])

    def briefing(self, attrs: str = "cFTs") -> list[dict[str, Any]]:
        """``dlg.briefing``: h_entry and h_id always, the rest per ``attrs``."""
        result = self.rpc.call("dlg.briefing", attrs)
        return list(result or [])

    def stats_active(self) -> dict[str, int]:
        """``dlg.stats_active``."""
        result = self.rpc.call("dlg.stats_active")
        return {str(k): int(v) for k, v in dict(result).items()}

    def profile_size(self, profile: str, value: str | None = None) -> int:
        """``dlg.profile_get_size``."""
        params = (profile,) if value is None else (profile, value)
        return int(self.rpc.call("dlg.profile_get_size", *params))

    def statistics(self) -> dict[str, int]:
        """The dialog group of ``stats.get_statistics``, by statistic name."""
        lines = self.rpc.call("stats.get_statistics", "dialog:")
        values: dict[str, int] = {}
        for line in lines:
            name, _, value = str(line).partition(" = ")
            values[name.removeprefix("dialog:")] = int(value)
        missing = [name for name in DIALOG_STATISTICS if name not in values]
        if missing:
            raise RpcError(f"stats.get_statistics dialog: lacks {missing}: {lines}")
        return values

    # -- lifetime -----------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL to its process group (its children)."""
        if self.stopped:
            return
        self.stopped = True
        self.rpc.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT)
        # Children outlive a killed main process; the group is ours alone.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


class _PortTaken(AssertionError):
    """kamailio could not bind its port: another socket took it meanwhile."""


# How often a start is tried again on a new port when the one chosen was
# taken between choosing it and kamailio binding it (see free_udp_port).
PORT_RETRIES = 5

#: A test's own kamailio.cfg: rendered for (port, rpc_socket, ctl_socket).
RenderConfig = Callable[[int, Path, Path], str]


def start_kamailio(
    binary: str,
    rundir: Path,
    *,
    port: int,
    uas: tuple[str, int] | None = None,
    config: RenderConfig | None = None,
    ready_method: str = "dlg.stats_active",
    startup_timeout: float = STARTUP_TIMEOUT,
) -> Kamailio:
    """Write the cfg into ``rundir``, start kamailio there and wait (bounded)
    until its JSON-RPC socket answers ``ready_method``. The cfg is the
    dialog check's, relaying to ``uas``, unless ``config`` renders another
    (it must set up the ``jsonrpcs`` and ``ctl`` sockets it is given). The
    port is free when chosen, but another socket (a test's own, bound to
    port 0) may take it before kamailio binds it: then the start is tried
    again on a new port, at most ``PORT_RETRIES`` times. Use
    ``kamailio.address`` for where it listens."""
    if config is None:
        if uas is None:
            raise ValueError("start_kamailio needs uas= for the dialog cfg, or config=")
        dialog_uas = uas

        def render(port: int, rpc_socket: Path, ctl_socket: Path) -> str:
            return render_config(
                port=port, uas=dialog_uas, rpc_socket=rpc_socket, ctl_socket=ctl_socket
            )

        config = render
    taken = {port}
    for attempt in range(PORT_RETRIES + 1):
        try:
            return _launch(
                binary,
                rundir,
                port=port,
                config=config,
                ready_method=ready_method,
                startup_timeout=startup_timeout,
            )
        except _PortTaken:
            if attempt == PORT_RETRIES:
                raise
            port = free_udp_port(taken)
    raise AssertionError("unreachable")  # pragma: no cover


def _launch(
    binary: str,
    rundir: Path,
    *,
    port: int,
    config: RenderConfig,
    ready_method: str,
    startup_timeout: float,
) -> Kamailio:
    rundir.mkdir(parents=True, exist_ok=True)
    rpc_socket = rundir / "kamailio_rpc.sock"
    ctl_socket = rundir / "kamailio_ctl.sock"
    for stale in (rpc_socket, ctl_socket):  # left by an attempt on a taken port
        stale.unlink(missing_ok=True)
    text = config(port, rpc_socket, ctl_socket)
    config_file = rundir / "kamailio.cfg"
    config_file.write_text(text, encoding="utf-8")
    log_file = rundir / "kamailio.log"
    command = [
        binary,
        "-f", str(config_file),
        "-DD", "-E",
        "-Y", str(rundir),
        "-w", str(rundir),
    ]  # fmt: skip
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=rundir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_no_core_files,
            start_new_session=True,
        )
    kamailio = Kamailio(
        process=process,
        rundir=rundir,
        port=port,
        config=text,
        log_file=log_file,
        rpc=JsonRpcClient(rpc_socket, rundir / "client_rpc.sock", timeout=0.5),
    )
    deadline = time.monotonic() + startup_timeout
    try:
        while True:
            if process.poll() is not None:
                output = kamailio.log()
                failure = _PortTaken if "Address already in use" in output else AssertionError
                raise failure(
                    f"kamailio exited with status {process.returncode} at startup\n"
                    + output[-4000:]
                )
            if rpc_socket.exists():
                with contextlib.suppress(RpcError):
                    kamailio.rpc.call(ready_method)
                    break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"kamailio did not answer on {rpc_socket} within {startup_timeout}s\n"
                    + kamailio.log()[-4000:]
                )
            time.sleep(0.05)
    except BaseException:
        kamailio.stop()
        raise
    kamailio.rpc.timeout = RPC_TIMEOUT
    return kamailio
