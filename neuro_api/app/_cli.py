"""``python -m neuro_api.server``: run a Neuro server games can connect to.

Flags, their defaults, checks and environment variables come from the
settings' fields (:class:`neuro_api.settings.Settings` and each
capability's section), so the messages match the rest of the package.
Exit codes: 0 after ``quit``, SIGINT or SIGTERM; 1 when a critical
service fails (the games' address cannot be bound, say); 2 for a bad flag,
value or config file, or ``--tunnel`` without an ngrok executable or auth
token (one ``neuro_api.server: error: ...`` line on stderr per problem, no
usage, nothing started).
"""

from __future__ import annotations

import argparse
import functools
import logging
import ssl
import sys
from collections.abc import Mapping, Sequence
from typing import Final, NoReturn

import orjson
import trio

from neuro_api import __version__
from neuro_api._fds import raise_open_file_limit
from neuro_api._redact import RedactingFormatter, redact
from neuro_api._shared import find_exception
from neuro_api.app._builtins import default_capabilities, listen_failure
from neuro_api.app._process import LISTENING, NeuroProcess
from neuro_api.capability import Capability
from neuro_api.manager import NgrokTunnels, ServerBindError
from neuro_api.server import (
    CHARACTERS,
    AbstractTrioNeuroServer,
    ConsoleInteractiveNeuroServer,
    RandomNeuroServer,
    ServerConfig,
)
from neuro_api.settings import (
    SPECS,
    SectionSettings,
    Settings,
    SettingsError,
    Spec,
    check_sections,
    core_specs,
    load_settings,
    specs_of,
)
from neuro_api.supervisor import CriticalServiceError

__all__ = ["build_parser", "main"]

LOGGER: Final = logging.getLogger("neuro_api.server")
SETTINGS_LOGGER: Final = logging.getLogger("neuro_api.settings")
PROG: Final = "neuro_api.server"

_MORE_HELP: Final = {
    "certfile": " (needs --keyfile)",
    "engine": " (console: you answer at a prompt, 'help' lists its commands; "
    "once its input ends or is closed it answers like random, so no game waits "
    "forever; random: valid random answers at once)",
    "seed": "; also the console's generated examples",
    "character": "; "
    + " and ".join(f"{k} is shown as {v!r}" for k, v in CHARACTERS.items()),
    "display_name": " (default: the character's production name, or its id)",
    "max_retries": " (0 disables)",
    "api_token": " (at least 16 characters); needed, and generated and printed "
    "once if unset, whenever a server is reachable from elsewhere (non-loopback "
    "host or --tunnel)",
    "tunnel": " and print their public wss:// and https:// URLs",
}
_SPECS: Final = {spec.name: spec for spec in SPECS}
_RANDOM_ONLY: Final = ("delay", "unforced_interval")
_LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_ACCESS_LOGGER: Final = "neuro_api.manager.access"
"""Where every HTTP server of the process logs its requests, at INFO."""


class _Parser(argparse.ArgumentParser):
    """Reports errors as one line (no usage) and exits with 2."""

    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str, *more: str) -> NoReturn:
    """Print ``neuro_api.server: error: MESSAGE``, one line each; exit with 2."""
    for text in (message, *more):
        one_line = " ".join(text.split())
        sys.stderr.write(f"{PROG}: error: {one_line}\n")
    raise SystemExit(2)


def _help(spec: Spec) -> str:
    text = spec.help + _MORE_HELP.get(spec.name, "")
    if spec.default is not None:
        text += f" (default: {spec.default})"
    return f"{text} [env {spec.env}]" if spec.env else text


def build_parser(
    sections: Sequence[type[SectionSettings]] = (),
    engines: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """The command line; every value stays a raw string for the settings.

    ``sections`` are the capabilities' settings types: each setting gets its
    flag, in the ``--help`` group its spec names (the section's own).
    ``engines`` are the capabilities' engines, listed among ``--engine``'s.
    """
    parser = _Parser(
        prog="python -m neuro_api.server",
        description="Run a Neuro server: games connect to it over WebSocket "
        "(ws://HOST:PORT). Once listening it prints one line, "
        f"'{LISTENING} ws://HOST:PORT', to stdout.",
        epilog="Settings come from, last wins: the defaults shown, the --config "
        "file, the environment variables shown, the flags. SIGINT, SIGTERM and "
        "the console's 'quit' drain within --shutdown-grace and exit with code "
        "0; a second signal stops at once. Bad settings exit with code 2, a "
        "server that cannot start (port in use) with 1.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file of settings (keys as flag names; a capability's in "
        "its [section] table)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective settings as JSON (secrets redacted) and exit",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    specs = [
        *core_specs(engines),
        *(spec for kind in sections for spec in specs_of(kind)),
    ]
    for spec in specs:
        title = spec.group or spec.section or "other"
        group = groups.get(title)
        if group is None:
            group = groups[title] = parser.add_argument_group(title)
        _add_flag(group, spec)
    return parser


def _add_flag(group: argparse._ArgumentGroup, spec: Spec) -> None:
    if spec.kind is bool:
        group.add_argument(
            spec.option,
            dest=spec.key,
            default=None,
            action=argparse.BooleanOptionalAction,
            help=_help(spec).replace("%", "%%"),
        )
        return
    metavar = spec.metavar
    if spec.choices is not None:
        metavar = "{" + ",".join(spec.choices) + "}"
    group.add_argument(
        spec.option,
        dest=spec.key,
        default=None,
        metavar=metavar,
        help=_help(spec).replace("%", "%%"),
    )


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.certfile is None or settings.keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.certfile, settings.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            f"--certfile/--keyfile: cannot load the certificate: {exc}"
        ) from None
    return context


def _engine_clash(capabilities: Sequence[Capability]) -> str | None:
    """Why two makers would answer to one ``--engine`` name (None: none would)."""
    makers = dict.fromkeys(("console", "random"), "the server")
    for capability in capabilities:
        for name in capability.engines:
            maker = makers.setdefault(name, f"capability {capability.name!r}")
            if maker != f"capability {capability.name!r}":
                return (
                    f"engine {name!r} of capability {capability.name!r} is "
                    f"offered by {maker} already"
                )
    return None


def make_engine(
    settings: Settings, capabilities: Sequence[Capability] = ()
) -> AbstractTrioNeuroServer:
    """Build the engine the settings name; :class:`ValueError` if invalid.

    The console engine reads its input unless ``--no-console`` (then it
    answers forces automatically from the start). An engine of a
    capability (its :attr:`~neuro_api.capability.Capability.engines`) is
    made by that capability.
    """
    config = ServerConfig.from_settings(settings)
    for capability in capabilities:
        if settings.engine in capability.engines:
            if "delay" in settings.sources:
                LOGGER.warning(
                    "%s is only used by --engine random", _SPECS["delay"].option
                )
            return capability.make_engine(settings.engine, settings, config)
    if settings.engine not in ("console", "random"):
        raise SettingsError(f"--engine {settings.engine}: no capability makes it")
    if settings.engine == "random":
        return RandomNeuroServer(
            config,
            delay=settings.delay,
            unforced_interval=settings.unforced_interval,
            seed=settings.seed,
        )
    for name in _RANDOM_ONLY:
        if name in settings.sources:
            LOGGER.warning("%s is not used by the console engine", _SPECS[name].option)
    return ConsoleInteractiveNeuroServer(
        config, seed=settings.seed, read_input=settings.console is not False
    )


def _failure_line(error: CriticalServiceError) -> str:
    bind = find_exception(error, ServerBindError)
    if bind is not None:
        # The error's own text already names the server and the address.
        return listen_failure(bind)
    return str(error)


def _access_log(settings: Settings) -> RedactingFormatter:
    """Send access lines only where ``--access-log`` says (nowhere if unset).

    They never reach the root handler, which writes into the console: a
    request would interrupt a prompt. Returns the file's formatter, for
    secrets made later. Exits with 2 if the file cannot be opened.
    """
    formatter = RedactingFormatter("%(message)s", settings.secrets())
    access = logging.getLogger(_ACCESS_LOGGER)
    access.propagate = False
    if settings.access_log is None:
        access.setLevel(logging.CRITICAL + 1)  # off: lines are not even made
        return formatter
    handler: logging.Handler
    if settings.access_log == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        try:
            handler = logging.FileHandler(settings.access_log, encoding="utf-8")
        except OSError as exc:
            fail(f"--access-log: cannot open {settings.access_log!r}: {exc.strerror}")
    handler.setFormatter(formatter)
    access.addHandler(handler)
    access.setLevel(logging.INFO)  # whatever --log-level says: it was asked for
    return formatter


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    capabilities: Sequence[Capability] | None = None,
) -> int:
    """Run the command line; returns the exit code (2 raises SystemExit).

    ``capabilities`` default to :func:`~neuro_api.app.default_capabilities`;
    their settings sections get flags, variables and config tables.
    """
    if capabilities is None:
        capabilities = default_capabilities()
    try:
        kinds = check_sections(c.settings for c in capabilities if c.settings)
    except ValueError as exc:  # two settings would share a variable or flag
        fail(str(exc))
    sections = list(kinds.values())
    engines = [name for capability in capabilities for name in capability.engines]
    if clash := _engine_clash(capabilities):
        fail(clash)
    args = build_parser(sections, engines).parse_args(argv)
    try:
        settings = load_settings(
            vars(args), environ=environ, sections=sections, engines=engines
        )
    except (SettingsError, ValueError) as exc:
        fail(str(exc))
    redactor = RedactingFormatter(_LOG_FORMAT, settings.secrets())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(redactor)
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    for warning in settings.warnings:
        SETTINGS_LOGGER.warning("%s", warning)
    if args.print_config:
        print(orjson.dumps(settings.redacted(), option=orjson.OPT_INDENT_2).decode())
        return 0
    access_redactor = _access_log(settings)
    try:
        ssl_context = _ssl_context(settings)
        server = make_engine(settings, capabilities)
    except ValueError as exc:  # SettingsError, or ServerConfig's own checks
        fail(str(exc))
    try:
        process = NeuroProcess(
            settings, server, capabilities=capabilities, ssl_context=ssl_context
        )
    except ValueError as exc:  # a capability's bad contribution (a route...)
        fail(str(exc))
    if isinstance(process.tunnels, NgrokTunnels) and (
        missing := process.tunnels.missing()
    ):
        # Before any server starts: a server that cannot be reached as asked
        # is a bad setting, not a degraded run.
        fail(*missing)
    redactor.add(process.token)  # possibly generated just now
    access_redactor.add(process.token)
    # Every game holds a descriptor: take all the system allows (game
    # connections stay below it, see ServerConfig.max_connections).
    LOGGER.debug("open file limit: %s", raise_open_file_limit())
    try:
        trio.run(functools.partial(process.run, tune_gc=True))
    except KeyboardInterrupt:  # before the signal receiver was installed
        return 0
    except CriticalServiceError as exc:
        line = redact(_failure_line(exc), process.secrets())
        sys.stderr.write(f"{PROG}: error: {line}\n")
        return 1
    return 0
