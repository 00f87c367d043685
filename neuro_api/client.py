"""The transport contract shared by both sides of the Neuro API.

:class:`AbstractNeuroAPIClient` is the base the upstream package
``neuro-api`` 4.0.0 gives a game (:class:`neuro_api.api.AbstractNeuroAPI`):
a subclass supplies :meth:`~AbstractNeuroAPIClient.write_to_websocket` (and
:meth:`~AbstractNeuroAPIClient.read_from_websocket` to read by itself), and
gets sending of the bytes the builders of :mod:`neuro_api.command` return,
and reading of raw messages. Code written for upstream's class runs on this
one unchanged.
"""

from __future__ import annotations

import logging
from abc import ABCMeta, abstractmethod
from typing import Final, NotRequired, TypedDict

import orjson

from neuro_api._text import printable
from neuro_api._typed_dict import check_typed_dict

__all__ = ["AbstractNeuroAPIClient", "NeuroMessage"]

LOGGER: Final = logging.getLogger(__name__)

_SHOWN_CHARS: Final = 200
"""Characters of a frame shown in an error's note or a log line."""


class NeuroMessage(TypedDict):
    """A frame of either side as a dict: ``command``, maybe ``game`` and ``data``.

    Frames from Neuro have no ``game``; frames from games always have it.
    """

    command: str
    game: NotRequired[str]
    data: NotRequired[dict[str, object]]


class AbstractNeuroAPIClient(metaclass=ABCMeta):
    """Sending and reading Neuro API frames over some WebSocket.

    Only :meth:`write_to_websocket` is abstract. :meth:`read_from_websocket`
    is needed only by the ``read_raw_*`` methods (and by
    :meth:`neuro_api.api.AbstractNeuroAPI.read_message` called without a
    frame); its default raises :class:`NotImplementedError`.
    """

    __slots__ = ()

    @abstractmethod
    async def write_to_websocket(self, data: str) -> None:
        """Send ``data`` as one *text* frame."""

    async def read_from_websocket(self) -> bytes | bytearray | memoryview | str:
        """Return the next frame received (anything :func:`orjson.loads` takes)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not read by itself: implement "
            "read_from_websocket(), or pass each frame to read_message(frame)"
        )

    async def send_command_data(self, data: bytes) -> None:
        """Send a frame built by :mod:`neuro_api.command` as a text frame.

        Raises :class:`UnicodeDecodeError` if ``data`` is not UTF-8.
        """
        await self.write_to_websocket(data.decode("utf-8"))

    async def read_raw_full_message(self) -> NeuroMessage:
        """Read the next frame and return it as a :class:`NeuroMessage`.

        Raises :class:`orjson.JSONDecodeError` (a :class:`ValueError`) for
        text that is not JSON, with the start of the text in a note, and
        :class:`ValueError` or :class:`TypeError` (from
        :func:`~neuro_api.command.check_typed_dict`) for JSON that is not a
        frame.
        """
        content = await self.read_from_websocket()
        try:
            message = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            exc.add_note(f"content = {printable(repr(content)[:_SHOWN_CHARS])}")
            raise
        if not isinstance(message, dict):
            raise TypeError(
                f"a frame must be a JSON object, not {type(message).__name__}"
            )
        return check_typed_dict(message, NeuroMessage)

    async def read_raw_server_message(self) -> tuple[str, dict[str, object] | None]:
        """Read a frame from Neuro: ``(command, data or None)``."""
        message = await self.read_raw_full_message()
        return message["command"], message.get("data")

    async def read_raw_client_message(
        self,
    ) -> tuple[str, str, dict[str, object] | None]:
        """Read a frame from a game: ``(command, game, data or None)``.

        Raises :class:`TypeError` if the frame has no ``game``.
        """
        message = await self.read_raw_full_message()
        game = message.get("game")
        if game is None:
            raise TypeError("`game` field missing in client response.")
        return message["command"], game, message.get("data")

    async def handle_unknown_command(
        self, command: str, data: dict[str, object] | None
    ) -> None:
        """A frame with a command this side does not know: logged as a warning."""
        LOGGER.warning(
            "received unknown command %s with data %s",
            printable(repr(command)[:_SHOWN_CHARS]),
            printable(repr(data)[:_SHOWN_CHARS]),
        )

    async def read_message(self) -> object:
        """Read one frame and hand it to :meth:`handle_unknown_command`.

        Subclasses handle the commands they know (see
        :meth:`neuro_api.api.AbstractNeuroAPI.read_message`).
        """
        command, data = await self.read_raw_server_message()
        await self.handle_unknown_command(command, data)
        return None
