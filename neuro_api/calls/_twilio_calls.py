"""Twilio's REST API for phone calls: hang up, say something and hang up, look.

:class:`TwilioCalls` is blocking (the twilio SDK uses ``requests``), like
:class:`~neuro_api.calls.TwilioRooms`, with the same account SID and API
key, the same ``base_url`` rewriting for tests and the same timeout;
:class:`ThreadedCalls` runs it in worker threads, bounded in number and time,
for Trio code. Both update one call
(``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``) and say
whether Twilio took it: a call that is not in progress any more (hung up
already) is no error. Both look one call up too (``GET`` of the same
resource) for the sync, as a :class:`CallLook` that never raises.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Final, Self
from urllib.parse import urlsplit

import requests
import trio
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from neuro_api._text import printable
from neuro_api.calls._phone import call_sid_problem
from neuro_api.calls._phone_rules import CALL_STATUSES, CallLook
from neuro_api.calls._twilio import (
    _NO_ENVIRONMENT,
    _http_reason,
    _MalformedAnswer,
    _network_reason,
    _PooledHttpClient,
)

__all__ = [
    "TWIML_MAX",
    "CallLook",
    "ThreadedCalls",
    "TwilioCallError",
    "TwilioCalls",
]

LOGGER: Final = logging.getLogger("neuro_api.calls")
TWIML_MAX: Final = 4000
"""Twilio's limit on the ``Twiml`` parameter of a call's update (characters)."""
_GONE: Final = frozenset({20404, 21220})
"""Twilio's codes for "no such call" and "the call is not in progress"."""
_MESSAGE_MAX: Final = 120


class TwilioCallError(Exception):
    """Twilio could not be asked to change a call, or refused; a one-line message.

    "Twilio is not configured ...", "timed out after 15 s", "authentication
    failed (401) (error 20003: ...)", "Twilio answered 400 (error 12100:
    Unable to update record: Document parse failure)", "network: Connection
    refused", "malformed answer: not JSON".
    """


class TwilioCalls:
    """Blocking updates of Twilio phone calls; thread-safe.

    The arguments are :class:`~neuro_api.calls.TwilioRooms`' (nothing is read
    from ``os.environ``; ``base_url`` sends every request to that scheme and
    host; ``timeout`` bounds connecting and each wait for data). Raises
    ``ValueError`` for a ``base_url`` that is not an ``http(s)://host`` URL
    or a timeout that is not positive. Call :meth:`close` once no update
    runs any more.
    """

    def __init__(
        self,
        account_sid: str,
        api_key: str,
        api_secret: str,
        *,
        region: str | None = None,
        base_url: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if base_url is not None:
            parts = urlsplit(base_url)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.timeout: Final = timeout
        self._http = _PooledHttpClient(timeout, base_url)
        self._client = Client(
            api_key,
            api_secret,
            account_sid,
            region=region,
            http_client=self._http,
            environment=_NO_ENVIRONMENT,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept-alive connections; a later update opens new ones."""
        self._http.close()

    def complete(self, call_sid: str) -> bool:
        """Hang up the call now (``Status=completed``), blocking.

        Returns True when Twilio ended it, False when it was not in progress
        (hung up already, or unknown to Twilio: nothing to end). Raises
        :class:`TwilioCallError` when Twilio could not be asked or refused,
        ``ValueError`` for a ``call_sid`` that is no CallSid.
        """
        return self._update(call_sid, status="completed")

    def say_and_hang_up(self, call_sid: str, twiml: str) -> bool:
        """Replace what the call does by ``twiml`` (``Twiml=``), blocking.

        Twilio stops what the call was doing (a media stream included) and
        runs ``twiml`` (``<Response><Say>Goodbye</Say><Hangup/></Response>``;
        a call whose TwiML runs out hangs up too). Returns and raises as
        :meth:`complete`; ``ValueError`` too for TwiML longer than
        :data:`TWIML_MAX` characters (Twilio checks the document itself).
        """
        if not isinstance(twiml, str) or not twiml or len(twiml) > TWIML_MAX:
            raise ValueError(f"twiml must be 1 to {TWIML_MAX} characters of TwiML")
        return self._update(call_sid, twiml=twiml)

    def look(self, call_sid: str) -> CallLook:
        """Fetch the call ``call_sid`` (its status and end time), blocking.

        Never raises for Twilio or network trouble, nor for a ``call_sid``
        that is no CallSid (nothing is sent then): Twilio's 404 with its
        code 20404 is ``not_found``; anything else that is not a call with
        one of Twilio's statuses (another answer, a bare 404 from a proxy, a
        timeout, a refused connection, an unknown status) is ``error`` with
        a one-line reason, as :class:`TwilioCallError`'s messages.
        """
        problem = call_sid_problem(call_sid)
        if problem is not None:
            return CallLook("error", error=problem)
        try:
            instance = self._client.calls(call_sid).fetch()
        except TwilioRestException as error:
            # Twilio's own 404 carries its code; a bare 404 (a proxy, a
            # wrong base_url path) says nothing about the call.
            if error.status == 404 and error.code == 20404:
                return CallLook("not_found")
            return self._failed(call_sid, _rest_reason(error))
        except TwilioException as error:
            message = error.args[0] if error.args else type(error).__name__
            reason = f"Twilio error: {printable(str(message))[:_MESSAGE_MAX]}"
            return self._failed(call_sid, reason)
        except requests.Timeout:
            return self._failed(call_sid, f"timed out after {self.timeout:g} s")
        except requests.RequestException as error:
            return self._failed(call_sid, _network_reason(error))
        except _MalformedAnswer as error:
            return self._failed(call_sid, f"malformed answer: {error}")
        except (TypeError, ValueError, AttributeError) as error:
            # The SDK parses the dates as it builds the call, and raises
            # what that raises: a 31 February, a year 99999, a number.
            reason = printable(str(error) or type(error).__name__)[:_MESSAGE_MAX]
            return self._failed(call_sid, f"malformed answer: {reason}")
        status = instance.status
        if not isinstance(status, str) or status not in CALL_STATUSES:
            shown = printable(repr(status))[:_MESSAGE_MAX]
            reason = f"malformed answer: unknown call status {shown}"
            return self._failed(call_sid, reason)
        end_time = instance.end_time
        # The SDK reads dates leniently: anything but a datetime is no time.
        if not isinstance(end_time, dt.datetime):
            end_time = None
        return CallLook("found", str(status), end_time)

    def _failed(self, call_sid: str, reason: str) -> CallLook:
        LOGGER.debug("Looking up call %s failed: %s", call_sid, reason)
        return CallLook("error", error=reason)

    def _update(self, call_sid: str, **fields: str) -> bool:
        problem = call_sid_problem(call_sid)
        if problem is not None:
            raise ValueError(problem)
        try:
            self._client.calls(call_sid).update(**fields)
        except TwilioRestException as error:
            if error.code in _GONE and error.status in {400, 404}:
                LOGGER.debug("Twilio call %s is not in progress", call_sid)
                return False
            raise TwilioCallError(_rest_reason(error)) from None
        except TwilioException as error:
            message = error.args[0] if error.args else type(error).__name__
            reason = f"Twilio error: {printable(str(message))[:_MESSAGE_MAX]}"
            raise TwilioCallError(reason) from None
        except requests.Timeout:
            raise TwilioCallError(f"timed out after {self.timeout:g} s") from None
        except requests.RequestException as error:
            raise TwilioCallError(_network_reason(error)) from None
        except _MalformedAnswer as error:
            raise TwilioCallError(f"malformed answer: {error}") from None
        return True


def _rest_reason(error: TwilioRestException) -> str:
    reason = _http_reason(error.status)
    if error.code is None:
        return reason
    message = printable(str(error.msg or "")).strip()[:_MESSAGE_MAX]
    return f"{reason} (error {error.code}: {message})" if message else reason


class ThreadedCalls:
    """:class:`TwilioCalls` in worker threads, for Trio code.

    At most ``limiter`` requests (updates and lookups) at once (more wait
    their turn); an update that takes longer than ``timeout`` seconds in all
    raises :class:`TwilioCallError` ("timed out after ..."). Cancelled (or timed
    out) while the request is out, the caller returns at once and the
    worker thread is left to finish on its own (the client's own timeout
    ends it): Twilio may still get the request.
    """

    def __init__(
        self,
        calls: TwilioCalls,
        limiter: trio.CapacityLimiter,
        timeout: float = 15.0,
    ) -> None:
        self.calls = calls
        self.limiter = limiter
        self.timeout = timeout

    async def complete(self, call_sid: str) -> bool:
        """:meth:`TwilioCalls.complete` in a worker thread."""
        return await self._run(self.calls.complete, call_sid)

    async def say_and_hang_up(self, call_sid: str, twiml: str) -> bool:
        """:meth:`TwilioCalls.say_and_hang_up` in a worker thread."""
        return await self._run(self.calls.say_and_hang_up, call_sid, twiml)

    async def look(self, call_sid: str) -> CallLook:
        """:meth:`TwilioCalls.look` in a worker thread; never raises for Twilio.

        One that takes longer than the timeout is ``error`` ("timed out
        after ...").
        """
        with trio.move_on_after(self.timeout):
            return await trio.to_thread.run_sync(
                self.calls.look, call_sid, limiter=self.limiter, abandon_on_cancel=True
            )
        return CallLook("error", error=f"timed out after {self.timeout:g} s")

    async def _run(self, update: Callable[..., bool], *args: str) -> bool:
        with trio.move_on_after(self.timeout):
            done: bool = await trio.to_thread.run_sync(
                update, *args, limiter=self.limiter, abandon_on_cancel=True
            )
            return done
        raise TwilioCallError(f"timed out after {self.timeout:g} s")
