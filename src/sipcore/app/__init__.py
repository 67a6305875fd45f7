"""``sipcore-proxy``: a stateful SIP load balancer built on sipcore.

The libraries (:mod:`sipcore`, :mod:`sipcore_dialog`,
:mod:`sipcore_dispatch`) are sans-I/O; this package is the I/O shell on top
of their public API. ``import sipcore`` does not load it.
"""

from .config import AppConfig, ConfigError, load_config, parse_config

__all__ = ["AppConfig", "ConfigError", "load_config", "parse_config"]
