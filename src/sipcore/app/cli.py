"""The ``sipcore-proxy`` command: read the file, run until a signal.

This module owns the command line (``sipcore-proxy CONFIG [--check]``),
the exit statuses (0 stopped cleanly or the file is good, 1 could not
start, 2 a bad configuration file) and the SIGTERM / SIGINT handlers that
begin a graceful shutdown (a second signal cuts its grace time short). A
bad file is reported as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence

from . import logs
from .config import AppConfig, ConfigError, load_config, read_destinations
from .service import App, run

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipcore-proxy",
        description="A stateful SIP load balancer configured by one TOML file.",
    )
    parser.add_argument("config", help="the TOML configuration file")
    parser.add_argument(
        "--check", action="store_true", help="read the configuration file, report and exit"
    )
    return parser


def _config_error(exc: ConfigError) -> int:
    print(f"sipcore-proxy: {exc}", file=sys.stderr)
    return EXIT_CONFIG


async def _serve(config: AppConfig) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    running: list[App] = []

    def stop_on(signum: signal.Signals) -> None:
        if not stop.is_set():
            logs.event("signal", f"{signum.name}: stopping", signal=signum.name)
            stop.set()
            return
        # A second signal: stop now, without the rest of the grace time.
        logs.event("signal", f"{signum.name} again: stopping now", signal=signum.name)
        for app in running:
            app.hurry()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_on, signum)
    try:
        await run(config, stop=stop, started=running.append)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector from pausing the proxy.

    Under load the proxy holds many live objects (transactions lingering in
    their wait timers, dialogs); CPython's default thresholds then run full
    collections often, each one walking all of them: measured with
    benchmarks/e2e.py at 300-400 calls/s, pauses of about half a second
    every few seconds, long enough for UDP retransmissions to pile up and
    calls to fail. Objects made at start (modules, configuration) are
    frozen out of every collection, the young generation is collected
    every 50,000 allocations instead of 700, the middle one every 20 of
    those and the old one every 100 of these (CPython also waits until a
    quarter of the old objects are new), so cyclic garbage is still
    reclaimed, in fewer and cheaper passes. With the defaults the same
    rig lost calls (0.7-1.2%) at every rate tried from 364 to 500 calls/s
    over 10 s; with these, 400 calls/s for 15 s lost none.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sipcore-proxy``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _config_error(exc)
    if args.check:
        try:
            read_destinations(config)  # a list file is read at start too
        except ConfigError as exc:
            return _config_error(exc)
        print(f"{args.config}: OK")
        return EXIT_OK
    logs.configure(config.logging.level, config.logging.format)
    tune_garbage_collector()
    try:
        asyncio.run(_serve(config))
    except ConfigError as exc:  # found at start: a store or a name
        return _config_error(exc)
    except OSError as exc:  # a socket that cannot be bound
        logs.event("failed", f"cannot start: {exc}", level=logging.ERROR)
        return EXIT_FAILED
    except KeyboardInterrupt:  # before the handlers were installed
        return EXIT_FAILED
    except Exception:
        logs.log.exception("sipcore-proxy failed")
        return EXIT_FAILED
    return EXIT_OK
