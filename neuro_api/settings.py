"""One frozen settings object: defaults < config file < environment < flags.

Every setting is declared once in :data:`SPECS` (type, default, environment
variable, flag, help, whether it is secret, how it is checked); the config
file, the environment, the command line and ``--print-config`` are all read
from that table, so they cannot drift apart. Nothing else in the package
reads the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from neuro_api._redact import REDACTED

__all__ = [
    "REDACTED",
    "SPECS",
    "Settings",
    "SettingsError",
    "Spec",
    "load_settings",
    "names",
]


class SettingsError(ValueError):
    """A setting with a bad value; the message is one line naming it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Spec:
    """How one setting is read, checked and shown."""

    name: str
    kind: type
    default: Any
    help: str
    env: str | None = None
    flag: str | None = None
    choices: tuple[str, ...] | None = None
    secret: bool = False
    check: Callable[[Any], str | None] | None = None
    """Returns why a value is wrong, or None."""

    @property
    def option(self) -> str:
        """The command-line flag (``--result-timeout``)."""
        return self.flag or "--" + self.name.replace("_", "-")


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def _at_least(minimum: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value >= minimum else f"must be >= {minimum}"

    return check


def _port(value: Any) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number from 0 to 65535"


def _non_empty(value: Any) -> str | None:
    return None if value else "must not be empty"


def _token(value: Any) -> str | None:
    if len(value) < 16 or any(c.isspace() for c in value):
        return "must be at least 16 characters with no spaces"
    return None


def _readable_file(value: Any) -> str | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_file() or not os.access(path, os.R_OK):
        return f"cannot read file {value!r}"
    return None


def _writable_file(value: Any) -> str | None:
    if value is None or value == "-":
        return None
    if not value:
        return "must not be empty ('-' is stderr)"
    path = Path(value)
    if path.is_dir():
        return f"{value!r} is a directory"
    # A new file needs a directory to write in; an existing one, the right.
    where = path if path.exists() else path.parent
    if not where.exists() or not os.access(where, os.W_OK):
        return f"cannot write file {value!r}"
    return None


def _spec(name: str, kind: type, default: Any, help: str, **kw: Any) -> Spec:
    return Spec(name, kind, default, help, **kw)


SPECS: Final[tuple[Spec, ...]] = (
    # games' WebSocket server
    _spec("host", str, "127.0.0.1", "address the games' WebSocket server binds",
          env="NEURO_API_HOST", check=_non_empty),
    _spec("port", int, 8000, "port of the games' WebSocket server (0 picks one)",
          env="NEURO_API_PORT", check=_port),
    _spec("allowed_origins", str, None,
          "web pages allowed to connect to the games' server, comma-separated "
          "origins such as https://example.com ('*': any page; this "
          "machine's pages always may)",
          env="NEURO_API_ALLOWED_ORIGINS"),
    _spec("memory_budget", int, 512 << 20,
          "bytes of actions and held context all games together may make the "
          "server keep (each game at most 16 MiB)",
          env="NEURO_API_MEMORY_BUDGET", check=_at_least(1 << 20)),
    _spec("max_connections", int, 1024,
          "game connections open at once (kept below the open file limit)",
          env="NEURO_API_MAX_CONNECTIONS", check=_positive),
    _spec("certfile", str, None, "TLS certificate (PEM) for wss://",
          env="NEURO_API_CERTFILE", check=_readable_file),
    _spec("keyfile", str, None, "TLS private key (PEM) for --certfile",
          env="NEURO_API_KEYFILE", check=_readable_file),
    # engine and behaviour
    _spec("engine", str, "console", "who answers forces",
          env="NEURO_API_ENGINE", choices=("console", "random")),
    _spec("character", str, "neuro", "character id (neuro, evil, ...)",
          env="NEURO_API_CHARACTER", check=_non_empty),
    _spec("display_name", str, None, "display name sent to games",
          env="NEURO_API_DISPLAY_NAME"),
    _spec("result_timeout", float, 20.0, "seconds to wait for an action/result",
          env="NEURO_API_RESULT_TIMEOUT", check=_positive),
    _spec("max_retries", int, 2, "retries of a force after a failing result",
          env="NEURO_API_MAX_RETRIES", check=_non_negative),
    _spec("force_policy", str, "replace", "what a force does while another is active",
          env="NEURO_API_FORCE_POLICY", choices=("replace", "queue")),
    _spec("delay", float, 0.0, "random engine: seconds before each answer",
          env="NEURO_API_DELAY", check=_non_negative),
    _spec("unforced_interval", float, None,
          "random engine: act unforced every this many seconds on average",
          env="NEURO_API_UNFORCED_INTERVAL", check=_positive),
    _spec("seed", int, None, "random engine: seed for repeatable choices",
          env="NEURO_API_SEED"),
    _spec("max_generated_size", int, 65536,
          "bytes of JSON one generated answer may take (random engine, console "
          "examples, control-plane defaults)",
          env="NEURO_API_MAX_GENERATED_SIZE", check=_at_least(64)),
    _spec("generate_timeout", float, 2.0,
          "seconds the generation of one answer may take",
          env="NEURO_API_GENERATE_TIMEOUT", check=_positive),
    # HTTP control plane
    _spec("http", bool, True, "serve the HTTP control plane (--no-http turns it off)",
          env="NEURO_API_HTTP"),
    _spec("http_host", str, "127.0.0.1", "address the HTTP control plane binds",
          env="NEURO_API_HTTP_HOST", check=_non_empty),
    _spec("http_port", int, 8001, "port of the HTTP control plane (0 picks one)",
          env="NEURO_API_HTTP_PORT", check=_port),
    _spec("api_token", str, None,
          "bearer token for the HTTP control plane (generated when needed and unset)",
          env="NEURO_API_TOKEN", secret=True, check=_token),
    # tunnels
    _spec("tunnel", bool, False, "expose the games' server and control plane via ngrok",
          env="NEURO_API_TUNNEL"),
    _spec("ngrok_authtoken", str, None, "ngrok auth token (needed by --tunnel)",
          env="NGROK_AUTHTOKEN", secret=True),
    _spec("ngrok_path", str, None,
          "ngrok executable (default: the first ngrok on PATH that is not "
          "pyngrok's download script, else pyngrok's install location; never "
          "downloaded)",
          env="NEURO_API_NGROK_PATH"),
    # process
    _spec("shutdown_grace", float, 10.0, "seconds to drain on SIGINT/SIGTERM",
          env="NEURO_API_SHUTDOWN_GRACE", check=_positive),
    _spec("log_level", str, "info", "logging level", env="NEURO_API_LOG_LEVEL",
          choices=("debug", "info", "warning", "error")),
    _spec("access_log", str, None,
          "write one line per HTTP request to this file, appended ('-': stderr); "
          "unset: no access log, so requests never interrupt the console",
          env="NEURO_API_ACCESS_LOG", check=_writable_file),
)  # fmt: skip
"""Every setting, in ``--help`` order."""

_BY_NAME: Final = {spec.name: spec for spec in SPECS}
_ENV_PREFIX: Final = "NEURO_API_"
_BY_ENV: Final = {spec.env: spec for spec in SPECS if spec.env}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """The effective settings of one process (see :data:`SPECS`).

    The field defaults repeat :data:`SPECS` for type checkers and for
    ``Settings()`` in library code; a test keeps the two equal.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    allowed_origins: str | None = None
    memory_budget: int = 512 << 20
    max_connections: int = 1024
    certfile: str | None = None
    keyfile: str | None = None
    engine: str = "console"
    character: str = "neuro"
    display_name: str | None = None
    result_timeout: float = 20.0
    max_retries: int = 2
    force_policy: str = "replace"
    delay: float = 0.0
    unforced_interval: float | None = None
    seed: int | None = None
    max_generated_size: int = 65536
    generate_timeout: float = 2.0
    http: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = 8001
    api_token: str | None = dataclasses.field(default=None, repr=False)
    tunnel: bool = False
    ngrok_authtoken: str | None = dataclasses.field(default=None, repr=False)
    ngrok_path: str | None = None
    shutdown_grace: float = 10.0
    log_level: str = "info"
    access_log: str | None = None
    sources: Mapping[str, str] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )
    """Where each non-default value came from (``file``, ``env``, ``flag``)."""
    warnings: tuple[str, ...] = dataclasses.field(default=(), compare=False, repr=False)
    """What :func:`load_settings` noticed but did not refuse, one line each
    (an unknown ``NEURO_API_*`` variable, say). It logs nothing itself, as
    it runs before logging is set up: ``python -m neuro_api.server`` logs
    them at start; a library caller may do the same."""

    def redacted(self) -> dict[str, Any]:
        """Return every setting as JSON-ready data, secrets replaced."""
        shown: dict[str, Any] = {}
        for spec in SPECS:
            value = getattr(self, spec.name)
            shown[spec.name] = REDACTED if spec.secret and value else value
        return shown

    def secrets(self) -> list[str]:
        """Return the values of every secret setting that is set."""
        return [
            value
            for spec in SPECS
            if spec.secret and (value := getattr(self, spec.name))
        ]

    @property
    def exposed(self) -> bool:
        """Whether anything is reachable from elsewhere (tunnel or non-loopback)."""
        return self.tunnel or not all(
            _is_loopback(h) for h in (self.host, self.http_host)
        )


def _is_loopback(host: str) -> bool:
    return host in {"localhost", "::1"} or host.startswith("127.")


def _convert(spec: Spec, raw: Any, where: str) -> Any:
    """Convert a raw value (TOML value or string) to the spec's type."""
    if raw is None:
        return None

    def bad(why: str) -> SettingsError:
        return SettingsError(f"{where}: {why}")

    if spec.kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise bad(f"expected true or false, got {raw!r}")
    if spec.kind is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise bad(f"expected an integer, got {raw!r}")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise bad(f"expected an integer, got {raw!r}") from None
    if spec.kind is float:
        if isinstance(raw, bool):
            raise bad(f"expected a number, got {raw!r}")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise bad(f"expected a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise bad(f"expected a finite number, got {raw!r}")
        return value
    if not isinstance(raw, str):
        raise bad(f"expected a string, got {raw!r}")
    return raw


def _check(spec: Spec, value: Any, where: str) -> None:
    if value is None:
        return
    if spec.choices is not None and value not in spec.choices:
        allowed = ", ".join(spec.choices)
        raise SettingsError(f"{where}: {value!r} is not one of {allowed}")
    if spec.check is not None:
        why = spec.check(value)
        if why:
            raise SettingsError(f"{where}: {why}")


def _env_suggestions() -> dict[str, str]:
    """Map what a mistyped variable may have meant to the variable to use.

    Keys are the rest of each ``NEURO_API_*`` name and each setting's name
    in capitals.
    """
    suggestions: dict[str, str] = {}
    for spec in SPECS:
        if spec.env is None:
            continue
        if spec.env.startswith(_ENV_PREFIX):
            suggestions[spec.env.removeprefix(_ENV_PREFIX)] = spec.env
        # NEURO_API_API_TOKEN means NEURO_API_TOKEN; NEURO_API_NGROK_AUTHTOKEN
        # means NGROK_AUTHTOKEN, the variable ngrok itself reads.
        suggestions.setdefault(spec.name.upper(), spec.env)
    return suggestions


def _unknown_env(environ: Mapping[str, str]) -> tuple[str, ...]:
    """One warning per ``NEURO_API_*`` variable that no setting reads.

    Only that prefix (in any case) is ours: other variables belong to
    other programs and are none of our business.
    """
    suggestions = _env_suggestions()
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(_ENV_PREFIX) or name in _BY_ENV:
            continue
        shown = name if name.isprintable() else repr(name)
        warning = f"{shown} is not a neuro_api setting and is ignored"
        # Compared without the prefix, which every candidate shares.
        rest = upper.removeprefix(_ENV_PREFIX)
        if close := difflib.get_close_matches(rest, suggestions, n=1):
            warning += f" (did you mean {suggestions[close[0]]}?)"
        warnings.append(warning)
    return tuple(warnings)


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise SettingsError(f"--config: cannot read {path!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"--config: {path}: invalid TOML: {exc}") from None
    # Accept "http-port" as well as "http_port", as TOML users write both.
    return {key.replace("-", "_"): value for key, value in data.items()}


def load_settings(
    args: argparse.Namespace | Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Settings:
    """Build the settings: defaults < ``config_file`` < ``environ`` < ``args``.

    ``args`` is the parsed command line (or a mapping of setting names to
    raw values; ``None`` entries mean "not given"). ``environ`` defaults to
    ``os.environ``: this is the only place the package reads it. A
    ``NEURO_API_*`` variable that is no setting's is not an error (a shell
    may hold one for another version), but is reported in
    :attr:`Settings.warnings` with the closest setting's variable. Raises
    :class:`SettingsError` with one line naming the setting and its source.
    """
    flags: Mapping[str, Any]
    if args is None:
        flags = {}
    elif isinstance(args, argparse.Namespace):
        flags = vars(args)
    else:
        flags = args
    config_file = config_file or flags.get("config")
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    layers: list[tuple[str, Iterable[tuple[Spec, Any, str]]]] = []
    if config_file:
        data = _read_file(config_file)
        unknown = sorted(set(data) - _BY_NAME.keys())
        if unknown:
            raise SettingsError(
                f"--config: {config_file}: unknown setting {unknown[0]!r}"
            )
        layers.append(
            ("file", [(_BY_NAME[k], v, f"{config_file}: {k}") for k, v in data.items()])
        )
    layers.append(
        (
            "env",
            [(s, environ[s.env], s.env) for s in SPECS if s.env and s.env in environ],
        )
    )
    layers.append(
        (
            "flag",
            [
                (s, flags[s.name], s.option)
                for s in SPECS
                if flags.get(s.name) is not None
            ],
        )
    )
    for source, entries in layers:
        for spec, raw, where in entries:
            value = _convert(spec, raw, where)
            _check(spec, value, where)
            values[spec.name] = value
            sources[spec.name] = source
    defaults = {spec.name: spec.default for spec in SPECS}
    settings = Settings(
        **(defaults | values), sources=sources, warnings=_unknown_env(environ)
    )
    if (settings.certfile is None) != (settings.keyfile is None):
        raise SettingsError("--certfile and --keyfile: give both or neither")
    return settings


def names() -> Sequence[str]:
    """Every setting name, in ``--help`` order."""
    return [spec.name for spec in SPECS]
