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


def _transaction_args(posargs: list[str]) -> list[str]:
    """run.py's arguments as benchmarks/transactions.py takes them: ``--json
    PATH`` becomes ``PATH``'s sibling ``<stem>.transactions<suffix>`` (the two
    must not write one file) and ``--round-time S``, a message-layer setting,
    is left out."""
    out: list[str] = []
    args = iter(posargs)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name == "--round-time":
            if not eq:
                next(args, None)
            continue
        if name == "--json":
            path = Path(value if eq else next(args, ""))
            out += ["--json", str(path.with_name(f"{path.stem}.transactions{path.suffix}"))]
            continue
        out.append(arg)
    return out


@nox.session(python=PYTHON)
def sanitize(session: nox.Session) -> None:
    """The compiled twins' tests with sipcore._speedups built under ASan and UBSan."""
    _install(session)
    session.run("bash", "scripts/sanitize-speedups.sh", "python", external=True)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark suite; prints its figures against sippy measured in the same run.

    ``nox -s bench -- --quick`` (or ``--check``, ``--json PATH``, ``--rounds N``)
    is passed to both run.py and transactions.py.
    """
    _install(session)
    # sippy is the peer sipcore is measured against, not a dependency.
    session.install("sippy==2.5.0")
    session.run("python", "benchmarks/run.py", *session.posargs)
    # The same with the pure-Python twins alone (what a machine without a C
    # compiler gets): for information, so no --check and no --json.
    session.run(
        "python",
        "benchmarks/run.py",
        *[a for a in session.posargs if a == "--quick"],
        env={"SIPCORE_PURE_PYTHON": "1"},
    )
    session.run("python", "benchmarks/transactions.py", *_transaction_args(session.posargs))
    session.run("python", "benchmarks/floor.py")
    # The dialog tracker: 1,000,000 concurrent dialogs (100,000 with --quick).
    session.run(
        "python",
        "benchmarks/dialogs.py",
        *[a for a in session.posargs if a in ("--quick", "--check")],
    )
    # The dispatcher: selections per algorithm on sets of 10 and 1,000.
    session.run(
        "python",
        "benchmarks/dispatch.py",
        *[a for a in session.posargs if a in ("--quick", "--check")],
    )
    # rtpengine control: the ng codec, and offer/answer/delete against a real rtpengine.
    session.run(
        "python",
        "benchmarks/media.py",
        *[a for a in session.posargs if a in ("--quick", "--check")],
    )
    # End to end: sipp -> sipcore-proxy -> sipp against the same with Kamailio
    # (exit 3: sipp is not installed, said on the console).
    session.run(
        "python",
        "benchmarks/e2e.py",
        *[a for a in session.posargs if a == "--quick"],
        success_codes=[0, 3],
    )


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Sphinx HTML build with warnings as errors."""
    _install(session, "dev,docs")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
