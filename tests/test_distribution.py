"""The package's identity: a distribution name of its own, no upstream URLs.

``neuro-api`` on PyPI is the upstream SDK, which installs the same import
package; under that name ``pip install -U`` would replace this project.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import metadata, packages_distributions, version
from pathlib import Path

import neuro_api

NAME = "trio-neuro-api"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# Where the upstream project lives: its docs, its PyPI page, its repository.
UPSTREAM = ("neuro-api.readthedocs", "pypi.org/project/neuro-api", "coolcat467")


def test_installed_under_its_own_name() -> None:
    assert metadata(NAME)["Name"] == NAME
    assert neuro_api.DISTRIBUTION == NAME
    assert neuro_api.__version__ == version(NAME)
    assert NAME in packages_distributions()["neuro_api"]


def test_pyproject_names_it_too() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["name"] == NAME


def test_no_project_url_points_to_upstream() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    installed = metadata(NAME)
    urls = [
        *project.get("urls", {}).values(),
        *(entry.split(",", 1)[-1] for entry in installed.get_all("Project-URL", [])),
        *installed.get_all("Home-page", []),
    ]
    for url in urls:
        assert not any(marker in url.lower() for marker in UPSTREAM), url
