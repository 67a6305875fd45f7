"""Sphinx configuration for the sipcore documentation (MyST Markdown)."""

from __future__ import annotations

import sys
from pathlib import Path

# Build from a plain checkout too, without the package installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

project = "sipcore"
author = "The sipcore authors"
copyright = "2026, The sipcore authors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_typehints = "description"
autodoc_member_order = "bysource"

html_theme = "alabaster"
html_title = "sipcore"
