"""The ``<Stream>`` a webhook's TwiML asks Twilio to open."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TwimlStream:
    """``<Connect><Stream url=…><Parameter name=… value=…/></Stream></Connect>``.

    ``bidirectional``: under ``<Connect>`` (Twilio plays what the server
    sends back), not ``<Start>``. ``parameters`` arrive in the ``start``
    message's ``customParameters``.
    """

    url: str
    parameters: dict[str, str] = field(default_factory=dict)
    bidirectional: bool = True

    @classmethod
    def parse(cls, twiml: str | bytes) -> TwimlStream:
        """The first ``<Stream>`` of a ``<Response>``; :class:`ValueError` if none."""
        try:
            root = ET.fromstring(twiml)
        except ET.ParseError as exc:
            raise ValueError(f"not TwiML: {exc}") from None
        if root.tag != "Response":
            raise ValueError(f"TwiML's root is <{root.tag}>, not <Response>")
        for verb in root:
            if verb.tag not in ("Connect", "Start"):
                continue
            stream = verb.find("Stream")
            if stream is None:
                continue
            url = stream.get("url")
            if not url:
                raise ValueError("<Stream> has no url")
            parameters = {
                parameter.get("name", ""): parameter.get("value", "")
                for parameter in stream.findall("Parameter")
            }
            return cls(url, parameters, verb.tag == "Connect")
        raise ValueError("TwiML has no <Connect><Stream> or <Start><Stream>")
