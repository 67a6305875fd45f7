"""``python -m sipcore demo [options]``: the same as ``sipcore-demo [options]``.

This module owns only the choice of subcommand; the demo lives in
:mod:`sipcore.demo` and the proxy application in :mod:`sipcore.app`
(``python -m sipcore.app``), each loaded only when asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """\
usage: python -m sipcore demo [--calls N] [--rate R] [--hold S] [--quick]

  demo   run sipcore-proxy in-process in front of three backends on 127.0.0.1,
         place calls through it, take a backend down and bring it back, and
         summarise what happened (the same as sipcore-demo; --help for options)

The proxy application itself: sipcore-proxy CONFIG, or python -m sipcore.app CONFIG.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "demo":
        from .demo import main as demo

        return demo(args[1:], prog="python -m sipcore demo")
    if args and args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    print(USAGE, end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
