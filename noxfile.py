"""Nox sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``screenshots``.

Each session installs the project with the extras it needs into its own
virtualenv, so a session never depends on what happens to be installed.
"""

from __future__ import annotations

import time
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_venv = "yes"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite; arguments after -- go to pytest."""
    session.install("-e", ".[tests]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check lint rules and formatting (does not rewrite files)."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Run mypy in strict mode over the files listed in pyproject.toml."""
    # The test extras are installed so test modules' imports type-check too.
    session.install("-e", ".[tests,lint]")
    session.run("mypy", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML docs; any Sphinx warning fails the build."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        *session.posargs,
    )


@nox.session
def screenshots(session: nox.Session) -> None:
    """Regenerate the dashboard's screenshots in the docs (docs/_static/).

    Runs the dashboard's browser tests (``tests/test_dashboard_browser*.py``,
    a headless system Chromium: ``apt-get install chromium chromium-driver``)
    with ``NEURO_TESTS_DOCS_SCREENSHOTS=1``. That makes the tests'
    ``save_docs_screenshot(driver, name)`` calls (``tests/browser_helpers.py``)
    write ``docs/_static/dashboard-games.png``,
    ``docs/_static/dashboard-game.png`` and ``docs/_static/dashboard-voice.png``
    at 1280 px; in any other run they write nothing.
    ``NEURO_TESTS_REQUIRE_BROWSER=1`` makes a missing browser an error rather
    than a skip. Commit the images when they changed;
    arguments after -- go to pytest.
    """
    session.install("-e", ".[tests]")
    tests = sorted(str(p) for p in Path("tests").glob("test_dashboard_browser*.py"))
    if not tests:
        session.error("no dashboard browser tests (tests/test_dashboard_browser*.py)")
    started = time.time()
    session.run(
        "python",
        "-m",
        "pytest",
        "--no-cov",
        *tests,
        *session.posargs,
        env={"NEURO_TESTS_DOCS_SCREENSHOTS": "1", "NEURO_TESTS_REQUIRE_BROWSER": "1"},
    )
    for name in ("dashboard-games.png", "dashboard-game.png"):
        image = Path("docs", "_static", name)
        if not image.is_file() or image.stat().st_mtime < started:
            session.error(f"the tests did not write docs/_static/{name}")
