"""Developer sessions: ``nox -s tests typecheck lint`` (the default set).

Each session builds its own virtualenv with Python 3.11 and installs the
project with its ``dev`` extra. ``interop`` needs the real peers from
``scripts/install-peers.sh``; ``bench`` and ``docs`` are run on demand.
"""

from __future__ import annotations

from pathlib import Path

import nox

PYTHON = "3.11"
TYPED_PATHS = ("src", "tests", "benchmarks")
LINT_PATHS = (*TYPED_PATHS, "noxfile.py", "docs/conf.py")

nox.options.sessions = ["tests", "typecheck", "lint"]
nox.options.reuse_venv = "yes"


def _install(session: nox.Session, extras: str = "dev") -> None:
    session.install("-e", f".[{extras}]")


def _python_paths(paths: tuple[str, ...]) -> list[str]:
    """The paths that hold Python code: mypy and ruff refuse a missing or
    empty directory, and benchmarks/ may not exist yet."""
    return [
        path
        for path in paths
        if Path(path).is_file() or (Path(path).is_dir() and any(Path(path).rglob("*.py")))
    ]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit tests; the interop tests have their own session."""
    _install(session)
    session.run("pytest", "-m", "not interop", *session.posargs)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the library, its tests and the benchmarks."""
    _install(session)
    session.run("mypy", "--strict", *_python_paths(TYPED_PATHS))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff's lint rules and its formatter, in check mode."""
    _install(session)
    paths = _python_paths(LINT_PATHS)
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session(python=PYTHON)
def interop(session: nox.Session) -> None:
    """Tests against sipp, Kamailio and rtpengine (scripts/install-peers.sh)."""
    _install(session)
    # pytest exits 5 when it collects nothing, e.g. before any interop test exists.
    session.run("pytest", "-m", "interop", *session.posargs, success_codes=[0, 5])


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark suite; prints its figures against sippy measured in the same run."""
    _install(session)
    # sippy is the peer the message layer is measured against, not a dependency.
    session.install("sippy==2.5.0")
    session.run("python", "benchmarks/run.py", *session.posargs)
    session.run("python", "benchmarks/floor.py")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Sphinx HTML build with warnings as errors."""
    _install(session, "dev,docs")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
