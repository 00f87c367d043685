"""Errors a server start can raise."""

from __future__ import annotations

__all__ = ["ServerBindError", "ServerCrashedError", "ServerStartError"]


class ServerStartError(Exception):
    """A server did not start; nothing of it is left running.

    The cause (``__cause__``) is the original error, e.g. the framework's
    lifespan failure when a Quart ``before_serving`` hook raised.
    """

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


class ServerBindError(OSError, ServerStartError):
    """The server's address could not be bound (in use, not local, denied).

    An :class:`OSError` with the original ``errno``; the message names the
    server and the address.
    """

    def __init__(
        self, errno: int | None, message: str, *, name: str, host: str, port: int
    ) -> None:
        if errno is None:
            OSError.__init__(self, message)
        else:
            OSError.__init__(self, errno, message)
        self.name = name
        self.host = host
        self.port = port


class ServerCrashedError(Exception):
    """A server that had started ended on its own; ``__cause__`` says why."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name
