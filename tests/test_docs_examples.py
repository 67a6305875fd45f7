"""Run the examples in docs/*.md as doctests, so the documentation cannot rot.

Examples are plain ``>>>`` blocks inside fenced code; each fence ends with a
blank line before the closing backticks so doctest stops reading the
expected output there.
"""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_docs_pages_are_found() -> None:
    assert any(page.name == "sipcore.md" for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_docs_page_examples_run_as_written(page: Path) -> None:
    result = doctest.testfile(
        str(page),
        module_relative=False,
        optionflags=FLAGS,
        encoding="utf-8",
        raise_on_error=False,
    )
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {page}"
