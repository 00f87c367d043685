"""``python -m neuro_api.server``: run a Neuro server games can connect to.

Flags, their defaults, checks and environment variables come from
:data:`neuro_api.settings.SPECS` (the subset this command uses), so the
messages match the rest of the package. Exit codes: 0 after ``quit``,
SIGINT or SIGTERM; 1 when the address cannot be bound; 2 for a bad flag or
value (one ``neuro_api.server: error: ...`` line on stderr, no usage).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import ssl
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Final, NoReturn

import trio

from neuro_api import __version__
from neuro_api.server._base import AbstractTrioNeuroServer, ServerInfo
from neuro_api.server._config import CHARACTERS, ForcePolicy, ServerConfig
from neuro_api.server._console import ConsoleInteractiveNeuroServer, close_games
from neuro_api.server._random import RandomNeuroServer
from neuro_api.settings import SPECS, Settings, SettingsError, Spec, load_settings

__all__ = ["build_parser", "main"]

LOGGER: Final = logging.getLogger("neuro_api.server")
PROG: Final = "neuro_api.server"
LISTENING: Final = "neuro_api server listening on"
"""Start of the one stdout line printed once listening (scripts parse it)."""

_GROUPS: Final = (
    ("server", ("host", "port", "certfile", "keyfile")),
    ("engine", ("engine", "seed")),
    ("behaviour", ("character", "display_name", "result_timeout", "max_retries",
                   "force_policy")),
    ("random engine", ("delay", "unforced_interval")),
    ("process", ("log_level",)),
)  # fmt: skip
_METAVARS: Final = {
    "host": "HOST",
    "port": "PORT",
    "certfile": "FILE",
    "keyfile": "FILE",
    "character": "ID",
    "display_name": "NAME",
    "result_timeout": "SECONDS",
    "max_retries": "N",
    "delay": "SECONDS",
    "unforced_interval": "SECONDS",
    "seed": "N",
}
_MORE_HELP: Final = {
    "certfile": " (needs --keyfile)",
    "engine": " (console: you answer at a prompt, 'help' lists its commands; "
    "random: valid random answers at once)",
    "seed": "; also the console's generated examples",
    "character": "; "
    + " and ".join(f"{k} is shown as {v!r}" for k, v in CHARACTERS.items()),
    "display_name": " (default: the character's production name, or its id)",
    "max_retries": " (0 disables)",
}
_SPECS: Final = {spec.name: spec for spec in SPECS}
_RANDOM_ONLY: Final = ("delay", "unforced_interval")
_LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Parser(argparse.ArgumentParser):
    """Reports errors as one line (no usage) and exits with 2."""

    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str) -> NoReturn:
    """Print ``neuro_api.server: error: MESSAGE`` as one line; exit with 2."""
    one_line = " ".join(message.split())
    sys.stderr.write(f"{PROG}: error: {one_line}\n")
    raise SystemExit(2)


def _help(spec: Spec) -> str:
    text = spec.help + _MORE_HELP.get(spec.name, "")
    if spec.default is not None:
        text += f" (default: {spec.default})"
    return f"{text} [env {spec.env}]" if spec.env else text


def build_parser() -> argparse.ArgumentParser:
    """The command line; every value stays a raw string for the settings."""
    parser = _Parser(
        prog="python -m neuro_api.server",
        description="Run a Neuro server: games connect to it over WebSocket "
        "(ws://HOST:PORT). Once listening it prints one line, "
        f"'{LISTENING} ws://HOST:PORT', to stdout.",
        epilog="Options can also be set by the environment variables shown; "
        "a flag wins over its variable. SIGINT, SIGTERM and the console's "
        "'quit' stop the server with exit code 0.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    for title, names in _GROUPS:
        group = parser.add_argument_group(title)
        for name in names:
            spec = _SPECS[name]
            metavar = _METAVARS.get(name)
            if spec.choices is not None:
                metavar = "{" + ",".join(spec.choices) + "}"
            group.add_argument(
                spec.option,
                dest=name,
                default=None,
                metavar=metavar,
                help=_help(spec).replace("%", "%%"),
            )
    return parser


def _environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Only the variables of this command's flags (others are not its business)."""
    wanted = {_SPECS[name].env for _, names in _GROUPS for name in names}
    return {key: value for key, value in environ.items() if key in wanted}


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


def make_engine(settings: Settings) -> AbstractTrioNeuroServer:
    """Build the engine the settings name; :class:`ValueError` if invalid."""
    config = ServerConfig(
        character_id=settings.character,
        display_name=settings.display_name,
        result_timeout=settings.result_timeout,
        max_retries=settings.max_retries,
        force_policy=ForcePolicy(settings.force_policy),
    )
    if settings.engine == "random":
        return RandomNeuroServer(
            config,
            delay=settings.delay,
            unforced_interval=settings.unforced_interval,
            seed=settings.seed,
        )
    for name in _RANDOM_ONLY:
        if name in settings.sources:
            LOGGER.warning("%s is only used by --engine random", _SPECS[name].option)
    return ConsoleInteractiveNeuroServer(config, seed=settings.seed)


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


async def _run_then_cancel(
    server: AbstractTrioNeuroServer,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    done: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[ServerInfo],
) -> None:
    try:
        await server.run(host, port, ssl_context, task_status=task_status)
    finally:
        done.cancel()


async def serve(
    server: AbstractTrioNeuroServer,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
) -> OSError | None:
    """Serve until SIGINT/SIGTERM or until ``server.run`` returns.

    Prints the listening line once bound. Returns the :class:`OSError` that
    prevented binding (address in use, unknown host), else ``None``.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            failure: OSError | None = None
            start = functools.partial(
                _run_then_cancel, server, host, port, ssl_context, nursery.cancel_scope
            )
            try:
                info = await nursery.start(start)
            except* OSError as group:
                failure = next(e for e in _leaves(group) if isinstance(e, OSError))
            if failure is not None:
                return failure
            print(f"{LISTENING} {info.url}", flush=True)
            async for signum in signals:
                LOGGER.info("%s received; stopping", signal.Signals(signum).name)
                await close_games(server)
                nursery.cancel_scope.cancel()
                break
    return None


def main(
    argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> int:
    """Run the command line; returns the exit code (2 raises SystemExit)."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(
            vars(args),
            environ=_environment(os.environ if environ is None else environ),
        )
    except SettingsError as exc:
        fail(str(exc))
    logging.basicConfig(
        level=settings.log_level.upper(), format=_LOG_FORMAT, stream=sys.stderr
    )
    try:
        ssl_context = _ssl_context(settings)
        server = make_engine(settings)
    except ValueError as exc:  # SettingsError, or ServerConfig's own checks
        fail(str(exc))
    try:
        failure = trio.run(serve, server, settings.host, settings.port, ssl_context)
    except KeyboardInterrupt:  # before the signal receiver was installed
        return 0
    if failure is not None:
        where = f"{settings.host}:{settings.port}"
        reason = failure.strerror or str(failure)
        sys.stderr.write(f"{PROG}: error: cannot listen on {where}: {reason}\n")
        return 1
    return 0
