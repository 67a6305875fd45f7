"""``sipcore-proxy``: a stateful SIP load balancer built on sipcore.

The libraries (:mod:`sipcore`, :mod:`sipcore_dialog`,
:mod:`sipcore_dispatch`) are sans-I/O; this package is the I/O shell on top
of their public API: sockets through :mod:`sipcore.asyncio`, the loop's
clock, an SQLite file, a JSON-over-HTTP management endpoint, logging and
signals. ``import sipcore`` does not load it.

Run it as ``sipcore-proxy CONFIG`` or ``python -m sipcore.app CONFIG``, or
from Python with :func:`run` (or :class:`App`); see ``docs/proxy-app.md``.
"""

from .config import AppConfig, ConfigError, load_config, parse_config
from .service import App, run

__all__ = ["App", "AppConfig", "ConfigError", "load_config", "parse_config", "run"]
