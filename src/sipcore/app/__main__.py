"""``python -m sipcore.app CONFIG``: the same as ``sipcore-proxy CONFIG``."""

import sys

from .cli import main

sys.exit(main())
