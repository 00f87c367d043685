"""neuro_api: a Trio-native framework for both sides of the Neuro game API.

* :mod:`neuro_api.command` - the wire format (messages, builders, parsers);
* :mod:`neuro_api.schema` - action-schema checks, validation, data generation;
* :mod:`neuro_api.diagnostics` - the catalogue of everything a game can do
  off-spec;
* :mod:`neuro_api.api` and :mod:`neuro_api.trio_ws` - the game side.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neuro_api")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

__all__ = ["__version__"]
