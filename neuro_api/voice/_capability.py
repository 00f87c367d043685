"""The voice capability: settings, the service, its routes on the calls server."""

from __future__ import annotations

import dataclasses
import logging
import urllib.parse
from typing import Any, ClassVar, Final

from neuro_api.calls import CallsCapability
from neuro_api.capability import Capability, Setup
from neuro_api.manager import ServerInfo
from neuro_api.realtime import RealtimeCapability
from neuro_api.server import Console
from neuro_api.settings import setting
from neuro_api.status import StatusCapability
from neuro_api.voice._bridge import BridgeLimits
from neuro_api.voice._control import voice_control_routes
from neuro_api.voice._routes import voice_routes
from neuro_api.voice._service import VoiceConfig, VoiceService

__all__ = ["DEFAULT_PERSONA", "VoiceCapability", "VoiceSettings"]

LOGGER: Final = logging.getLogger("neuro_api.voice")
DEFAULT_PERSONA: Final = (
    "You are Neuro-sama, an AI streamer, talking with someone on the phone. "
    "Speak casually and briefly, like in a live call. You can act in the games "
    "that are connected through your tools: when the caller asks you to do "
    "something in a game, call the matching tool, then say what happened."
)


def _between(low: float, high: float) -> Any:
    def check(value: float) -> str | None:
        return None if low <= value <= high else f"must be {low:g} to {high:g}"

    return check


def _base_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL"
    if parts.query or parts.fragment:
        return "must have no query string or fragment"
    return None


def _turn_detection(value: str) -> str | None:
    return (
        None
        if value in ("server_vad", "semantic_vad")
        else ("must be server_vad or semantic_vad")
    )


def _action_name(value: str | None) -> str | None:
    if value is None or 0 < len(value) <= 256:
        return None
    return "must be an action name of 1 to 256 characters"


@dataclasses.dataclass(frozen=True, slots=True)
class VoiceSettings:
    """The ``[voice]`` section: phone calls to Neuro (Twilio Media Streams)."""

    section: ClassVar[str] = "voice"
    enabled: bool | None = setting(
        None,
        "answer phone calls (default: when the calls and realtime capabilities are on)",
        flag="--voice",
    )
    twilio_auth_token: str | None = setting(
        None,
        "Twilio auth token: checks every voice request's X-Twilio-Signature",
        env="TWILIO_AUTH_TOKEN",
        secret=True,
        metavar="TOKEN",
    )
    public_url: str | None = setting(
        None,
        "public base URL of the calls server (behind a reverse proxy); default: "
        "the tunnel's with --tunnel, else the local address",
        env="NEURO_API_PUBLIC_URL",
        check=_base_url,
        metavar="URL",
    )
    insecure: bool = setting(
        False,
        "serve the voice routes without TWILIO_AUTH_TOKEN: no signature check "
        "(local testing only)",
    )
    game: str | None = setting(
        None,
        "the game whose actions Neuro may perform in a call (default: every "
        "connected game)",
        metavar="TITLE",
    )
    instructions: str = setting(
        DEFAULT_PERSONA, "Neuro's persona in a call", metavar="TEXT"
    )
    voice: str = setting(
        "marin",
        "the Realtime voice Neuro speaks with",
        flag="--voice-name",
        metavar="VOICE",
    )
    turn_detection: str = setting(
        "server_vad",
        "how the end of the caller's turn is found: server_vad or semantic_vad",
        check=_turn_detection,
        metavar="KIND",
    )
    max_duration: float = setting(
        1800.0,
        "seconds a call may last, then a goodbye (Realtime sessions end at 60 min)",
        check=_between(10, 3300),
        metavar="SECONDS",
    )
    lease_wait: float = setting(
        2.0,
        "seconds a new call waits for a Realtime connection, then hears 'busy'",
        check=_between(0.1, 60),
        metavar="SECONDS",
    )
    hang_up_tool: bool = setting(
        True,
        "let Neuro end a call herself (an end_call tool, after her goodbye)",
    )
    dtmf_action: str | None = setting(
        None,
        'the game action a keypad digit performs, with data {"digit": "5"} '
        "(default: Neuro is told the digit and answers)",
        check=_action_name,
        metavar="ACTION",
    )
    max_tool_calls: int = setting(
        100,
        "actions Neuro may perform in one call (each may start a response)",
        check=_between(1, 10000),
        metavar="N",
    )
    send_timeout: float = setting(
        10.0,
        "seconds a send to Twilio may take (a stalled stream ends the call)",
        check=_between(0.5, 120),
        metavar="SECONDS",
    )

    def on(self, calls: bool, realtime: bool) -> bool:
        """Whether calls are answered: ``--voice``, else when both parts are on."""
        if self.enabled is None:
            return calls and realtime
        return self.enabled


class VoiceCapability(Capability):
    """Phone calls to Neuro: see the "Phone calls" docs page.

    :attr:`service` is the :class:`~neuro_api.voice.VoiceService` once set
    up (None while off).
    """

    name = "voice"
    settings = VoiceSettings

    def __init__(self) -> None:
        self.service: VoiceService | None = None

    def setup(self, app: Setup) -> None:
        """Add the voice routes to the calls server, health, stats, console."""
        config: VoiceSettings = app.section()
        calls = app.capability(CallsCapability)
        realtime = app.capability(RealtimeCapability)
        calls_on = calls is not None and calls.service is not None
        pool = None if realtime is None else realtime.pool
        if not config.on(calls_on, pool is not None):
            return
        if calls is None or calls.service is None:
            raise ValueError("--voice needs the calls capability: drop --no-calls")
        if pool is None:
            raise ValueError("--voice needs the Realtime pool: set OPENAI_API_KEY")
        if config.twilio_auth_token is None:
            if config.insecure:
                LOGGER.warning(
                    "--voice-insecure: the voice routes check no Twilio "
                    "signature; anyone who reaches the calls server can call"
                )
            else:
                LOGGER.info(
                    "phone calls are off until TWILIO_AUTH_TOKEN is set (the "
                    "voice routes answer 503)"
                )
        manager = app.manager
        public = config.public_url

        def public_base() -> str:
            if public is not None:
                return public
            for info in manager.list():
                if isinstance(info, ServerInfo) and info.name == "calls":
                    return info.public_url or info.local_url
            return "http://127.0.0.1"

        status = app.capability(StatusCapability)

        def blocked(number: str) -> bool:
            manager = None if status is None else status.manager
            if manager is None or not number:
                return False
            return "blocked" in manager.lists().state_of(number)

        service = VoiceService(
            VoiceConfig(
                instructions=config.instructions,
                voice=config.voice,
                turn_detection=config.turn_detection,
                game=config.game,
                limits=BridgeLimits(
                    max_duration=config.max_duration,
                    send_timeout=config.send_timeout,
                    max_tool_calls_total=config.max_tool_calls,
                ),
                lease_wait=config.lease_wait,
                announced_only=not config.insecure,
                hang_up_tool=config.hang_up_tool,
                dtmf_action=config.dtmf_action,
            ),
            server=app.server,
            pool=pool,
            registry=calls.service,
            public_base=public_base,
            control=calls.service if calls.service.phone is not None else None,
            blocked=blocked,
        )
        self.service = service
        # Announced calls whose stream never came are ended by this sweep
        # (the webhook sweeps too, but only when another call comes).
        app.add_service("voice-sweep", service.run)
        calls.add_routes(
            voice_routes(
                service,
                auth_token=config.twilio_auth_token,
                insecure=config.insecure,
                public_base=public_base,
            ),
            owner=self.name,
        )
        signatures = (
            "checked"
            if config.twilio_auth_token
            else "off (--voice-insecure)"
            if config.insecure
            else "no TWILIO_AUTH_TOKEN: calls are refused (503)"
        )
        # How many, not who: /health needs no token (load balancers), and
        # a call's numbers and SID are for the token's holders (/stats).
        app.add_health(
            lambda: {
                "status": "healthy",
                "signatures": signatures,
                "live_calls": len(service.calls),
            }
        )
        app.add_stats(service.stats)
        app.add_routes(voice_control_routes(service), prefix="/voice")

        async def calls_command(console: Console, args: list[str], data: str) -> None:
            for line in service.describe():
                console.say(line)

        app.add_command(
            "calls", "calls", "Show the phone calls in progress", calls_command
        )
