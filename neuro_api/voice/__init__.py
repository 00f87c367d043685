"""Phone calls to Neuro: Twilio Media Streams bridged to an OpenAI Realtime session.

A person phones a Twilio number; Twilio calls ``POST /twilio/voice`` on the
calls server and is told (TwiML) to stream the call's audio to the
WebSocket ``/twilio/media``; :class:`VoiceService` bridges that stream to
one leased connection of the Realtime pool for the whole call, with
barge-in (what the caller heard, from Twilio's marks) and the connected
games' actions as Neuro's tools. Every call is in the calls registry
(kind ``phone``). See the "Phone calls" docs page.
"""

from __future__ import annotations

from neuro_api.voice._bridge import Bridge as Bridge
from neuro_api.voice._bridge import BridgeLimits as BridgeLimits
from neuro_api.voice._bridge import CallEnd as CallEnd
from neuro_api.voice._bridge import MediaClosed as MediaClosed
from neuro_api.voice._bridge import MediaSocket as MediaSocket
from neuro_api.voice._capability import VoiceCapability as VoiceCapability
from neuro_api.voice._capability import VoiceSettings as VoiceSettings
from neuro_api.voice._games import GameTools as GameTools
from neuro_api.voice._playback import Playback as Playback
from neuro_api.voice._service import VoiceConfig as VoiceConfig
from neuro_api.voice._service import VoiceService as VoiceService

__all__ = [
    "Bridge",
    "BridgeLimits",
    "CallEnd",
    "GameTools",
    "MediaClosed",
    "MediaSocket",
    "Playback",
    "VoiceCapability",
    "VoiceConfig",
    "VoiceService",
    "VoiceSettings",
]
