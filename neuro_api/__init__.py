"""neuro_api: a Trio-native framework for both sides of the Neuro game API.

* :mod:`neuro_api.command` - the wire format (messages, builders, parsers);
* :mod:`neuro_api.schema` - action-schema checks, validation, data generation;
* :mod:`neuro_api.diagnostics` - the catalogue of everything a game can do
  off-spec;
* :mod:`neuro_api.api` and :mod:`neuro_api.trio_ws` - the game side;
* :mod:`neuro_api.server` - the Neuro side: the layered per-connection
  clients, :class:`~neuro_api.server.AbstractTrioNeuroServer` to subclass,
  the console and random engines, and the whole process
  (``python -m neuro_api.server``);
* :mod:`neuro_api.control` - the HTTP control plane (Quart-Trio);
* :mod:`neuro_api.manager` - named HTTP and WebSocket servers with ngrok
  tunnels;
* :mod:`neuro_api.supervisor` - supervised services with restart backoff;
* :mod:`neuro_api.settings` - one frozen settings object from defaults, a
  config file, the environment and flags.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "trio-neuro-api"
"""The name this package is installed under (``pip show trio-neuro-api``).

Not ``neuro-api``: that name on PyPI is the upstream SDK, which installs a
package of the same import name."""

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

__all__ = ["DISTRIBUTION", "__version__"]
