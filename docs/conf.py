"""Sphinx configuration for the neuro_api docs.

Build with ``nox -s docs`` or
``sphinx-build -W --keep-going -b html docs docs/_build/html``. The build
makes no network requests (intersphinx is deliberately not enabled).
"""

from __future__ import annotations

import sys
from pathlib import Path

_DOCS = Path(__file__).resolve().parent
# The local extensions (tables generated from the code) live in docs/_ext.
sys.path.insert(0, str(_DOCS / "_ext"))
# Document the checkout these docs belong to, even if another copy of the
# package is installed.
sys.path.insert(0, str(_DOCS.parent))

import neuro_api  # noqa: E402

project = "neuro_api"
author = "neuro_api developers"
copyright = "neuro_api developers"
release = neuro_api.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "diagnostics_table",
    "settings_table",
    "control_routes",
    "benchmark_results",
]

exclude_patterns = ["_build"]
templates_path: list[str] = []
html_static_path: list[str] = ["_static"]
html_theme = "alabaster"

nitpicky = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
