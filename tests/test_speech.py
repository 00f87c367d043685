"""The audio helpers of the phone-call tests: the μ-law codec (tests/mulaw.py)
and the speech fixtures (tests/speech.py)."""

from __future__ import annotations

import array
import itertools
import math
import sys
import time
import warnings
from pathlib import Path

import mulaw
import pytest
import speech
from speech import noise, require_speech_tools, silence, tone

VAD_RMS = 500  # the fake Realtime's default threshold (0.5 -> RMS 500)


# -- the codec -----------------------------------------------------------------


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="audioop is gone in 3.13")
def test_the_codec_gives_what_audioop_gives() -> None:
    with warnings.catch_warnings():
        # The very warning that keeps audioop out of the fakes.
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # noqa: PLC0415

    every_sample = array.array("h", range(-32768, 32768))
    assert mulaw.encode(every_sample.tobytes()) == audioop.lin2ulaw(
        every_sample.tobytes(), 2
    )
    every_byte = bytes(range(256))
    assert mulaw.decode(every_byte).tobytes() == audioop.ulaw2lin(every_byte, 2)


def test_known_values() -> None:
    assert mulaw.encode([0]) == bytes([mulaw.SILENCE]) == b"\xff"
    assert list(mulaw.decode(b"\xff\x7f\x00\x80")) == [0, 0, -32124, 32124]
    assert mulaw.encode([40000, -40000]) == mulaw.encode([32767, -32768])  # clipped
    assert mulaw.encode(array.array("h", [0, 1000]).tobytes()) == mulaw.encode(
        [0, 1000]
    )
    with pytest.raises(ValueError, match="even number of bytes"):
        mulaw.encode(b"\x00\x00\x00")


def test_a_round_trip_stays_close() -> None:
    samples = [round(10000 * math.sin(n / 7)) for n in range(800)]
    back = mulaw.decode(mulaw.encode(samples))
    # μ-law steps grow with the level: off by 1/16 of it at most (16 near 0).
    errors = [(abs(a - b), abs(a)) for a, b in zip(samples, back, strict=True)]
    assert all(error <= max(16, level / 16) for error, level in errors)


def test_rms_and_ms() -> None:
    assert mulaw.rms(b"") == 0.0
    assert mulaw.rms(silence(20)) == 0.0
    assert mulaw.rms(mulaw.encode([1000, -1000] * 80)) == pytest.approx(1000, rel=0.03)
    assert mulaw.ms(silence(20)) == 20
    assert mulaw.ms(bytes(8000)) == 1000


# -- tones, silence, noise ---------------------------------------------------------


def test_silence_tone_noise() -> None:
    assert silence(20) == b"\xff" * 160
    assert silence(0) == b""
    assert len(tone(1000)) == 8000
    assert mulaw.rms(tone(1000)) == pytest.approx(8000 / math.sqrt(2), rel=0.02)
    assert mulaw.rms(tone(1000, amplitude=1000)) == pytest.approx(707, rel=0.03)
    quiet = noise(1000)
    assert len(quiet) == 8000
    assert 30 < mulaw.rms(quiet) < VAD_RMS / 5
    assert noise(100, seed=1) == noise(100, seed=1) != noise(100, seed=2)
    with pytest.raises(ValueError, match="cannot be negative"):
        silence(-1)


def test_a_tone_has_its_frequency() -> None:
    samples = mulaw.decode(tone(1000, frequency=500))
    rises = sum(1 for a, b in itertools.pairwise(samples) if a < 0 <= b)
    assert rises == pytest.approx(500, abs=2)


# -- speech ------------------------------------------------------------------------


def test_real_speech() -> None:
    require_speech_tools()
    audio = speech.speech("Put an X in the middle please")
    # About two seconds at 175 words a minute, 8 bytes a millisecond.
    assert 1000 < mulaw.ms(audio) < 3500
    windows = [audio[i : i + 80] for i in range(0, len(audio) - 79, 80)]  # 10 ms
    loud = [mulaw.rms(w) >= VAD_RMS for w in windows]
    assert sum(loud) > len(loud) / 2  # mostly speech, from start to end:
    assert loud.index(True) < 5  # the silence before it trimmed ...
    assert loud[::-1].index(True) < 10  # ... and after it (espeak-ng left 330 ms)
    # Speech is not a tone: its level moves.
    assert max(map(mulaw.rms, windows)) > 3 * sorted(map(mulaw.rms, windows))[10]


def test_speech_is_cached() -> None:
    require_speech_tools()
    text = f"cached words {time.monotonic_ns()}"
    first = speech.speech(text)
    began = time.monotonic()
    assert speech.speech(text) is first
    assert time.monotonic() - began < 0.01
    assert speech.speech(text, words_per_minute=120) != first
    assert len(speech.speech(text, words_per_minute=120)) > len(first)


def test_a_failing_tool_says_why() -> None:
    require_speech_tools()
    with pytest.raises(RuntimeError, match=r"espeak-ng failed \(1\): .*voice"):
        speech.speech("hello", voice="zz")


def test_speech_needs_text() -> None:
    with pytest.raises(ValueError, match="needs some text"):
        speech.speech("  ")


def test_without_the_tools_a_tone_of_about_the_same_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(speech, "TOOLS", ("no-such-tool-here",))
    monkeypatch.delenv(speech.REQUIRE_ENV, raising=False)
    assert speech.missing() is not None
    assert "synthetic tones" in speech.describe()
    assert speech.speech("Hello there") == tone(660)  # 60 ms a character
    assert speech.speech("Hi") == tone(300)  # at least 300 ms
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-here on PATH"):
        require_speech_tools()


def test_without_the_tools_ci_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech, "TOOLS", ("no-such-tool-here",))
    monkeypatch.setenv(speech.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="NEURO_TESTS_REQUIRE_SPEECH=1"):
        speech.speech("Hello there")
    with pytest.raises(pytest.fail.Exception, match="NEURO_TESTS_REQUIRE_SPEECH=1"):
        require_speech_tools()


def test_describe_with_the_tools() -> None:
    require_speech_tools()
    assert speech.missing() is None
    assert speech.describe() == "speech fixtures: espeak-ng + sox (real speech)"


def test_ci_installs_the_tools_and_requires_them() -> None:
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "apt_install espeak-ng sox" in ci
    assert f"export {speech.REQUIRE_ENV}=1" in ci
    # The server warns about NEURO_API_* variables that are no setting.
    assert not speech.REQUIRE_ENV.startswith("NEURO_API_")
