"""One frozen settings object: defaults < config file < environment < flags.

Every setting is declared once, as a field of a frozen dataclass made with
:func:`setting` (default, help, environment variable, flag, whether it is
secret, how it is checked). The core settings are :class:`Settings`; a
capability brings its own *section*, a dataclass of the same kind with a
``section`` name (its ``[section]`` table in the config file and the
``--help`` group of its flags). The config file, the environment, the
command line and ``--print-config`` are all read from those fields
(:func:`specs_of`), so they cannot drift apart. Nothing else in the package
reads the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol, TypeVar

from neuro_api._redact import REDACTED

__all__ = [
    "REDACTED",
    "SPECS",
    "SectionSettings",
    "Settings",
    "SettingsError",
    "Spec",
    "check_sections",
    "core_specs",
    "load_settings",
    "names",
    "setting",
    "specs_of",
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
    metavar: str | None = None
    """What ``--help`` shows for the value (``SECONDS``)."""
    group: str | None = None
    """The ``--help`` group (a section's settings: the section's)."""
    section: str | None = None
    """The section (a capability's ``[table]``); None for core settings."""

    @property
    def option(self) -> str:
        """The command-line flag (``--result-timeout``, ``--status-period``)."""
        if self.flag:
            return self.flag
        prefix = f"{self.section}-" if self.section else ""
        return "--" + (prefix + self.name).replace("_", "-")

    @property
    def key(self) -> str:
        """Its name in parsed flags and ``sources``: ``name`` or ``section.name``."""
        return f"{self.section}.{self.name}" if self.section else self.name


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


_META: Final = "neuro_api.setting"
_ENGINES: Final = ("console", "random")
"""The built-in engines (capabilities add theirs, see :func:`core_specs`)."""


def setting(
    default: Any,
    help: str,
    *,
    env: str | None = None,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
    check: Callable[[Any], str | None] | None = None,
    metavar: str | None = None,
    group: str | None = None,
) -> Any:
    """Declare one setting as a dataclass field: its default is the only one.

    ``env`` is the environment variable (a section's default:
    ``NEURO_API_<SECTION>_<NAME>``; seeds fix some, such as
    ``TWILIO_ACCOUNT_SID``); ``flag`` the command-line option (default
    ``--name``, or ``--section-name``); ``check`` returns why a value is
    wrong, or None. A secret is kept out of ``repr``, redacted in
    ``--print-config``, ``/config`` and logs. The type is the field's
    annotation: ``bool``, ``int``, ``float`` or ``str``, optionally ``| None``.
    """
    metadata = {
        _META: {
            "help": help,
            "env": env,
            "flag": flag,
            "choices": choices,
            "secret": secret,
            "check": check,
            "metavar": metavar,
            "group": group,
        }
    }
    return dataclasses.field(default=default, repr=not secret, metadata=metadata)


_KINDS: Final = (bool, int, float, str)


def _kind(hint: Any, where: str) -> type:
    """``int`` of ``int`` or ``int | None``; TypeError for anything else."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = [arg for arg in args if arg is not type(None)]
    if len(kinds) != 1 or kinds[0] not in _KINDS:
        raise TypeError(f"setting {where}: type must be bool, int, float or str")
    kind: type = kinds[0]
    return kind


def specs_of(cls: type) -> tuple[Spec, ...]:
    """The settings a dataclass declares with :func:`setting`, in field order.

    ``cls.section`` (if any) names the section; fields without
    :func:`setting` are not settings. Raises :class:`TypeError` for a field
    whose type no setting can have.
    """
    section = getattr(cls, "section", None)
    if not isinstance(section, str):
        section = None  # Settings.section is a method
    hints = typing.get_type_hints(cls)
    specs = []
    for field in dataclasses.fields(cls):
        meta = field.metadata.get(_META)
        if meta is None:
            continue
        flag = meta["flag"]
        if flag is not None and (not flag.startswith("--") or flag.startswith("--no-")):
            raise TypeError(
                f"setting {cls.__name__}.{field.name}: flag {flag!r} must start "
                "with -- and not --no- (a boolean gets its --no- form itself: "
                "flag='--calls' makes --calls and --no-calls)"
            )
        env = meta["env"]
        if env is None and section is not None:
            env = f"{_ENV_PREFIX}{section}_{field.name}".upper().replace("-", "_")
        specs.append(
            Spec(
                field.name,
                _kind(hints[field.name], f"{cls.__name__}.{field.name}"),
                field.default,
                meta["help"],
                env=env,
                flag=meta["flag"],
                choices=meta["choices"],
                secret=meta["secret"],
                check=meta["check"],
                metavar=meta["metavar"],
                group=meta["group"] or section,
                section=section,
            )
        )
    return tuple(specs)


class SectionSettings(Protocol):
    """What a capability's settings type is: a frozen dataclass with a name.

    Its fields are made with :func:`setting`; ``section`` is the name of its
    ``[table]`` in the config file, of its ``--help`` group and the prefix of
    its flags (``--status-period``)::

        @dataclasses.dataclass(frozen=True, slots=True)
        class StatusSettings:
            section: ClassVar[str] = "status"
            period: float = setting(0.5, "seconds between two looks at the files")
    """

    section: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Any]]


S = TypeVar("S", bound=SectionSettings)

_ENV_PREFIX: Final = "NEURO_API_"


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """The effective core settings of one process.

    Each field's default is the only one (see :func:`setting`).
    Capabilities' sections are in :attr:`sections` (see :meth:`section`).
    """

    # games' WebSocket server
    host: str = setting(
        "127.0.0.1",
        "address the games' WebSocket server binds",
        env="NEURO_API_HOST",
        check=_non_empty,
        metavar="HOST",
        group="server",
    )
    port: int = setting(
        8000,
        "port of the games' WebSocket server (0 picks one)",
        env="NEURO_API_PORT",
        check=_port,
        metavar="PORT",
        group="server",
    )
    allowed_origins: str | None = setting(
        None,
        "web pages allowed to connect to the games' server, comma-separated "
        "origins such as https://example.com ('*': any page; this "
        "machine's pages always may)",
        env="NEURO_API_ALLOWED_ORIGINS",
        metavar="ORIGINS",
        group="server",
    )
    max_connections: int = setting(
        1024,
        "game connections open at once (kept below the open file limit)",
        env="NEURO_API_MAX_CONNECTIONS",
        check=_positive,
        metavar="N",
        group="server",
    )
    memory_budget: int = setting(
        512 << 20,
        "bytes of actions and held context all games together may make the "
        "server keep (each game at most 16 MiB)",
        env="NEURO_API_MEMORY_BUDGET",
        check=_at_least(1 << 20),
        metavar="BYTES",
        group="server",
    )
    certfile: str | None = setting(
        None,
        "TLS certificate (PEM) for wss://",
        env="NEURO_API_CERTFILE",
        check=_readable_file,
        metavar="FILE",
        group="server",
    )
    keyfile: str | None = setting(
        None,
        "TLS private key (PEM) for --certfile",
        env="NEURO_API_KEYFILE",
        check=_readable_file,
        metavar="FILE",
        group="server",
    )
    # engine
    engine: str = setting(
        "console",
        "who answers forces",
        env="NEURO_API_ENGINE",
        choices=_ENGINES,
        group="engine",
    )
    console: bool | None = setting(
        None,
        "read console commands on stdin with any engine (default: only the "
        "console engine, whose prompts read the same input; with --no-console "
        "it reads nothing and answers forces by itself)",
        env="NEURO_API_CONSOLE",
        group="engine",
    )
    seed: int | None = setting(
        None,
        "random engine: seed for repeatable choices",
        env="NEURO_API_SEED",
        metavar="N",
        group="engine",
    )
    max_generated_size: int = setting(
        65536,
        "bytes of JSON one generated answer may take (random engine, console "
        "examples, control-plane defaults)",
        env="NEURO_API_MAX_GENERATED_SIZE",
        check=_at_least(64),
        metavar="BYTES",
        group="engine",
    )
    generate_timeout: float = setting(
        2.0,
        "seconds the generation of one answer may take",
        env="NEURO_API_GENERATE_TIMEOUT",
        check=_positive,
        metavar="SECONDS",
        group="engine",
    )
    # behaviour
    character: str = setting(
        "neuro",
        "character id (neuro, evil, ...)",
        env="NEURO_API_CHARACTER",
        check=_non_empty,
        metavar="ID",
        group="behaviour",
    )
    display_name: str | None = setting(
        None,
        "display name sent to games",
        env="NEURO_API_DISPLAY_NAME",
        metavar="NAME",
        group="behaviour",
    )
    result_timeout: float = setting(
        20.0,
        "seconds to wait for an action/result",
        env="NEURO_API_RESULT_TIMEOUT",
        check=_positive,
        metavar="SECONDS",
        group="behaviour",
    )
    max_retries: int = setting(
        2,
        "retries of a force after a failing result",
        env="NEURO_API_MAX_RETRIES",
        check=_non_negative,
        metavar="N",
        group="behaviour",
    )
    force_policy: str = setting(
        "replace",
        "what a force does while another is active",
        env="NEURO_API_FORCE_POLICY",
        choices=("replace", "queue"),
        group="behaviour",
    )
    # random engine
    delay: float = setting(
        0.0,
        "random engine: seconds before each answer",
        env="NEURO_API_DELAY",
        check=_non_negative,
        metavar="SECONDS",
        group="random engine",
    )
    unforced_interval: float | None = setting(
        None,
        "random and realtime engines: act unforced every this many seconds on average",
        env="NEURO_API_UNFORCED_INTERVAL",
        check=_positive,
        metavar="SECONDS",
        group="random engine",
    )
    # HTTP control plane
    http: bool = setting(
        True,
        "serve the HTTP control plane (--no-http turns it off)",
        env="NEURO_API_HTTP",
        group="control plane",
    )
    http_host: str = setting(
        "127.0.0.1",
        "address the HTTP control plane binds",
        env="NEURO_API_HTTP_HOST",
        check=_non_empty,
        metavar="HOST",
        group="control plane",
    )
    http_port: int = setting(
        8001,
        "port of the HTTP control plane (0 picks one)",
        env="NEURO_API_HTTP_PORT",
        check=_port,
        metavar="PORT",
        group="control plane",
    )
    api_token: str | None = setting(
        None,
        "bearer token for the HTTP control plane (generated when needed and unset)",
        env="NEURO_API_TOKEN",
        secret=True,
        check=_token,
        metavar="TOKEN",
        group="control plane",
    )
    # tunnels
    tunnel: bool = setting(
        False,
        "expose the games' server and control plane via ngrok",
        env="NEURO_API_TUNNEL",
        group="tunnels",
    )
    ngrok_authtoken: str | None = setting(
        None,
        "ngrok auth token (needed by --tunnel)",
        env="NGROK_AUTHTOKEN",
        secret=True,
        metavar="TOKEN",
        group="tunnels",
    )
    ngrok_path: str | None = setting(
        None,
        "ngrok executable (default: the first ngrok on PATH that is not "
        "pyngrok's download script, else pyngrok's install location; never "
        "downloaded)",
        env="NEURO_API_NGROK_PATH",
        metavar="FILE",
        group="tunnels",
    )
    # process
    shutdown_grace: float = setting(
        10.0,
        "seconds to drain on SIGINT/SIGTERM",
        env="NEURO_API_SHUTDOWN_GRACE",
        check=_positive,
        metavar="SECONDS",
        group="process",
    )
    log_level: str = setting(
        "info",
        "logging level",
        env="NEURO_API_LOG_LEVEL",
        choices=("debug", "info", "warning", "error"),
        group="process",
    )
    access_log: str | None = setting(
        None,
        "write one line per HTTP request to this file, appended ('-': stderr); "
        "unset: no access log, so requests never interrupt the console",
        env="NEURO_API_ACCESS_LOG",
        check=_writable_file,
        metavar="FILE",
        group="process",
    )
    # data shared by the capabilities
    data_dir: str = setting(
        "Data",
        "directory of the capabilities' files: client status in its "
        "Server_Data/, the call registry in calls.sqlite3",
        env="NEURO_API_DATA_DIR",
        metavar="DIR",
        group="data",
    )
    redis_url: str | None = setting(
        None,
        "share the client-status lists and the call registry between servers "
        "through this Redis (redis://host:port/db); unset: files only",
        env="REDIS_URL",
        secret=True,
        metavar="URL",
        group="data",
    )

    sections: Mapping[str, Any] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )
    """Each loaded capability section's settings, by section name."""
    sources: Mapping[str, str] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )
    """Where each non-default value came from (``file``, ``env``, ``flag``),
    by :attr:`Spec.key`."""
    warnings: tuple[str, ...] = dataclasses.field(default=(), compare=False, repr=False)
    """What :func:`load_settings` noticed but did not refuse, one line each
    (an unknown ``NEURO_API_*`` variable, say). It logs nothing itself, as
    it runs before logging is set up: ``python -m neuro_api.server`` logs
    them at start; a library caller may do the same."""

    def section(self, kind: type[S]) -> S:
        """The settings of section type ``kind``: loaded, or its defaults.

        A library user who builds :class:`Settings` by hand gets a section's
        defaults, as ``kind()`` would.
        """
        found = self.sections.get(kind.section)
        if found is None:
            return kind()
        if not isinstance(found, kind):
            raise TypeError(
                f"section {kind.section!r} holds {type(found).__name__}, "
                f"not {kind.__name__}"
            )
        return found

    def redacted(self) -> dict[str, Any]:
        """Return every setting as JSON-ready data, secrets replaced.

        A section's settings are a nested object under its name.
        """
        shown = _shown(self, SPECS)
        for name, values in self.sections.items():
            shown[name] = _shown(values, specs_of(type(values)))
        return shown

    def secrets(self) -> list[str]:
        """Return the values of every secret setting that is set (sections too)."""
        found = _secret_values(self, SPECS)
        for values in self.sections.values():
            found += _secret_values(values, specs_of(type(values)))
        return found

    @property
    def exposed(self) -> bool:
        """Whether anything is reachable from elsewhere (tunnel or non-loopback)."""
        return self.tunnel or not all(
            _is_loopback(h) for h in (self.host, self.http_host)
        )


def _shown(values: object, specs: Iterable[Spec]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for spec in specs:
        value = getattr(values, spec.name)
        shown[spec.name] = REDACTED if spec.secret and value else value
    return shown


def _secret_values(values: object, specs: Iterable[Spec]) -> list[str]:
    return [
        str(value)
        for spec in specs
        if spec.secret and (value := getattr(values, spec.name))
    ]


SPECS: Final[tuple[Spec, ...]] = specs_of(Settings)
"""Every core setting, in ``--help`` order (derived from :class:`Settings`)."""


def core_specs(engines: Iterable[str] = ()) -> tuple[Spec, ...]:
    """:data:`SPECS`, ``engines`` (capabilities') among ``--engine``'s choices."""
    extra = tuple(name for name in engines if name not in (_ENGINES))
    if not extra:
        return SPECS
    return tuple(
        dataclasses.replace(spec, choices=(*_ENGINES, *extra))
        if spec.name == "engine"
        else spec
        for spec in SPECS
    )


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


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


def _env_suggestions(specs: Iterable[Spec]) -> dict[str, str]:
    """Map what a mistyped variable may have meant to the variable to use.

    Keys are the rest of each ``NEURO_API_*`` name and each setting's name
    in capitals.
    """
    suggestions: dict[str, str] = {}
    for spec in specs:
        if spec.env is None:
            continue
        if spec.env.startswith(_ENV_PREFIX):
            suggestions[spec.env.removeprefix(_ENV_PREFIX)] = spec.env
        # NEURO_API_API_TOKEN means NEURO_API_TOKEN; NEURO_API_NGROK_AUTHTOKEN
        # means NGROK_AUTHTOKEN, the variable ngrok itself reads.
        suggestions.setdefault(spec.name.upper(), spec.env)
    return suggestions


def _unknown_env(environ: Mapping[str, str], specs: Sequence[Spec]) -> tuple[str, ...]:
    """One warning per ``NEURO_API_*`` variable that no setting reads.

    Only that prefix (in any case) is ours: other variables belong to
    other programs and are none of our business.
    """
    known = {spec.env for spec in specs if spec.env}
    suggestions = _env_suggestions(specs)
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(_ENV_PREFIX) or name in known:
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
    return data


def _file_entries(
    data: Mapping[str, Any],
    path: str,
    core: Mapping[str, Spec],
    sections: Mapping[str, Mapping[str, Spec]],
) -> list[tuple[Spec, Any, str]]:
    """The config file's values with their specs; unknown keys are refused.

    Core settings are top-level keys; a section's are in its ``[table]``.
    Keys may be written ``http-port`` as well as ``http_port``, as TOML
    users write both.
    """
    entries: list[tuple[Spec, Any, str]] = []
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key in core:
            entries.append((core[key], value, f"{path}: {key}"))
            continue
        table = sections.get(raw_key) if isinstance(value, dict) else None
        if table is None:
            if raw_key in sections:
                raise SettingsError(
                    f"--config: {path}: {raw_key!r} must be a [{raw_key}] table"
                )
            raise SettingsError(f"--config: {path}: unknown setting {raw_key!r}")
        for raw_name, item in value.items():
            name = raw_name.replace("-", "_")
            spec = table.get(name)
            if spec is None:
                raise SettingsError(
                    f"--config: {path}: [{raw_key}]: unknown setting {raw_name!r}"
                )
            entries.append((spec, item, f"{path}: [{raw_key}] {name}"))
    return entries


def load_settings(
    args: argparse.Namespace | Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
    sections: Iterable[type[SectionSettings]] = (),
    engines: Iterable[str] = (),
) -> Settings:
    """Build the settings: defaults < ``config_file`` < ``environ`` < ``args``.

    ``args`` is the parsed command line (or a mapping of :attr:`Spec.key`
    to raw values; ``None`` entries mean "not given"). ``sections`` are the
    capabilities' settings types (see :class:`SectionSettings`): each is
    read from its ``[table]``, its variables and its flags, and found in
    :attr:`Settings.sections`. ``environ`` defaults to ``os.environ``: this
    is the only place the package reads it. A ``NEURO_API_*`` variable that
    is no setting's is not an error (a shell may hold one for another
    version), but is reported in :attr:`Settings.warnings` with the closest
    setting's variable. Raises :class:`SettingsError` with one line naming
    the setting and its source. ``engines`` are the capabilities' engines,
    accepted by ``engine`` besides the built-in ones.
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
    kinds = check_sections(sections)
    by_section = {name: {s.name: s for s in specs_of(k)} for name, k in kinds.items()}
    specs = core_specs(engines)
    every = [*specs, *(s for table in by_section.values() for s in table.values())]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    layers: list[tuple[str, Iterable[tuple[Spec, Any, str]]]] = []
    if config_file:
        data = _read_file(config_file)
        core = {spec.name: spec for spec in specs}
        layers.append(("file", _file_entries(data, config_file, core, by_section)))
    layers.append(
        (
            "env",
            [(s, environ[s.env], s.env) for s in every if s.env and s.env in environ],
        )
    )
    layers.append(
        (
            "flag",
            [
                (s, flags[s.key], s.option)
                for s in every
                if flags.get(s.key) is not None
            ],
        )
    )
    for source, entries in layers:
        for spec, raw, where in entries:
            value = _convert(spec, raw, where)
            _check(spec, value, where)
            values[spec.key] = value
            sources[spec.key] = source
    built = {
        name: kind(
            **{
                spec.name: values[spec.key]
                for spec in by_section[name].values()
                if spec.key in values
            }
        )
        for name, kind in kinds.items()
    }
    settings = Settings(
        **{spec.name: values[spec.name] for spec in SPECS if spec.name in values},
        sections=built,
        sources=sources,
        warnings=_unknown_env(environ, every),
    )
    if (settings.certfile is None) != (settings.keyfile is None):
        raise SettingsError("--certfile and --keyfile: give both or neither")
    return settings


def check_sections(
    sections: Iterable[type[SectionSettings]],
) -> dict[str, type[SectionSettings]]:
    """Sections by name, each once; ValueError if two settings would share a name.

    A section's name, each of its variables and each of its flags must be
    its own: not a core setting's, not another section's. The same type
    given twice counts once. The message names both owners.
    """
    kinds: dict[str, type[SectionSettings]] = {}
    core = {spec.name for spec in SPECS}
    for kind in dict.fromkeys(sections):
        name = kind.section
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"section name {name!r}: use letters, digits, - and _")
        if name in kinds or name in core:
            raise ValueError(f"section name {name!r} is taken")
        kinds[name] = kind
    owners: dict[str, str] = {}
    for owner, specs in [("core", SPECS)] + [
        (f"[{name}]", specs_of(kind)) for name, kind in kinds.items()
    ]:
        for spec in specs:
            for what in (spec.env, spec.option, "--no-" + spec.option[2:]):
                if what is None or (what.startswith("--no-") and spec.kind is not bool):
                    continue
                other = owners.setdefault(what, f"{owner} {spec.name}")
                if other != f"{owner} {spec.name}":
                    raise ValueError(
                        f"{owner} {spec.name}: {what} is {other}'s already"
                    )
    return kinds


def names() -> Sequence[str]:
    """Every setting name, in ``--help`` order."""
    return [spec.name for spec in SPECS]
