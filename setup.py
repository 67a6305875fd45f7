"""Build the optional compiled twin of the message layer's hot paths.

Everything else is declared in pyproject.toml. ``optional=True``: where no
C compiler or Python headers are found, the install goes on without
``sipcore._speedups`` and the pure-Python code runs (same results, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sipcore._speedups",
            sources=["src/sipcore/_speedups.c"],
            optional=True,
        )
    ]
)
