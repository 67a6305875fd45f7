"""Whether the compiled twins in ``sipcore._speedups`` are in use.

``sipcore._speedups`` is built from C when the package is installed on a
machine with a compiler and Python's headers, and skipped quietly where
there are none (setup.py marks it optional). Each of its functions has a
pure-Python twin that stays the reference and gives the same results;
setting ``SIPCORE_PURE_PYTHON=1`` in the environment before sipcore is
imported runs the twins alone (the test suite does, to test both).

This module owns that one choice and nothing else: the modules that
define the twins bind their public names to one or the other.
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["speedups"]

speedups: ModuleType | None = None
if not os.environ.get("SIPCORE_PURE_PYTHON"):
    try:
        from . import _speedups as speedups
    except ImportError:  # not built here: the Python twins run
        speedups = None
