"""Audio for the phone-call tests: real speech, tones, silence, noise.

Every function returns μ-law 8 kHz mono bytes (:mod:`mulaw`; 8 bytes a
millisecond), what Twilio streams and an ``audio/pcmu`` session carries.

:func:`speech` ``(text, *, voice="en", words_per_minute=175)``
    Real speech made at test time by Debian's ``espeak-ng`` (text to a WAV
    file) and ``sox`` (to 8 kHz μ-law, normalised to -3 dBFS, the silence
    before and after trimmed), cached per text in a temporary directory of
    the run (and in memory). It is blocking (about 0.1 s the first time):
    call it in a test's set-up or body, not while a timing matters; it runs
    no thread on purpose, as ``autojump_clock`` would jump virtual time
    while a thread works. A pause at a comma or a full stop lasts about
    200 ms: VAD settings with a shorter ``silence_duration_ms`` see two
    turns there. Without the tools it returns the fallback, :func:`tone`
    of about the same length (60 ms a character, at least 300 ms), unless
    ``NEURO_TESTS_REQUIRE_SPEECH=1`` (set by ``.ci/run``, which installs
    them): then the test fails. The run's header says which one tests get.
:func:`tone` ``(ms, *, frequency=440.0, amplitude=8000)``
    A sine tone (RMS ``amplitude / √2``, well above any VAD threshold).
:func:`silence` ``(ms)``
    Digital silence (``0xFF`` bytes).
:func:`noise` ``(ms, *, amplitude=100, seed=0)``
    Quiet white noise (uniform in ``±amplitude``; RMS about ``amplitude /
    √3``), what a line sounds like between words: below the VAD threshold.
:func:`missing`
    Why real speech cannot be made here (``str``), or ``None``.
:func:`require_speech_tools`
    Skip the calling test without the tools (fail when required).
:func:`describe`
    One line for the test run's header.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import math
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

import mulaw
import pytest

REQUIRE_ENV: Final = "NEURO_TESTS_REQUIRE_SPEECH"
TOOLS: Final = ("espeak-ng", "sox")
TOOL_TIMEOUT: Final = 30.0
"""Seconds either tool may take for one text."""
FALLBACK_MS_PER_CHARACTER: Final = 60
FALLBACK_MIN_MS: Final = 300


def missing() -> str | None:
    """Why :func:`speech` gives tones here, or ``None`` when it speaks."""
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return (
            f"needs {' and '.join(absent)} on PATH for real speech "
            "(apt-get install espeak-ng sox; .ci/run installs them)"
        )
    return None


def require_speech_tools() -> None:
    """Skip the calling test without the tools; fail instead in CI."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but the speech test {reason}", pytrace=False)
    pytest.skip(reason)


def describe() -> str:
    """What :func:`speech` gives in this run, for the report header."""
    reason = missing()
    if reason is None:
        return "speech fixtures: espeak-ng + sox (real speech)"
    return f"speech fixtures: synthetic tones ({reason})"


def silence(ms: float) -> bytes:
    """``ms`` milliseconds of digital silence."""
    return bytes([mulaw.SILENCE]) * _samples(ms)


def tone(ms: float, *, frequency: float = 440.0, amplitude: int = 8000) -> bytes:
    """``ms`` milliseconds of a sine tone of ``frequency`` Hz."""
    step = 2 * math.pi * frequency / mulaw.SAMPLE_RATE
    return mulaw.encode(
        round(amplitude * math.sin(step * n)) for n in range(_samples(ms))
    )


def noise(ms: float, *, amplitude: int = 100, seed: int = 0) -> bytes:
    """``ms`` milliseconds of white noise in ``±amplitude`` (reproducible)."""
    rng = random.Random(seed)
    return mulaw.encode(rng.randint(-amplitude, amplitude) for _ in range(_samples(ms)))


def speech(text: str, *, voice: str = "en", words_per_minute: int = 175) -> bytes:
    """``text`` spoken (see the module docstring; the fallback is a tone)."""
    if not text.strip():
        raise ValueError("speech needs some text")
    if missing() is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but speech() {missing()}", pytrace=False)
        return tone(max(FALLBACK_MIN_MS, FALLBACK_MS_PER_CHARACTER * len(text)))
    return _spoken(text, voice, words_per_minute)


@functools.cache
def _spoken(text: str, voice: str, words_per_minute: int) -> bytes:
    key = hashlib.sha256(f"{voice}\0{words_per_minute}\0{text}".encode()).hexdigest()
    target = _cache_dir() / f"{key}.ul"
    if target.exists():
        return target.read_bytes()
    wav = target.with_suffix(".wav")
    partial = target.with_suffix(".part")
    # "--" ends the options: a text starting with "-" is spoken, not parsed.
    _run(
        "espeak-ng",
        *("-v", voice, "-s", str(words_per_minute), "-w", str(wav)),
        "--",
        text,
    )
    _run(
        "sox",
        str(wav),
        *("-r", str(mulaw.SAMPLE_RATE), "-c", "1", "-e", "u-law", "-t", "raw"),
        str(partial),
        *("norm", "-3"),
        # Trim the silence at both ends (tests add their own): cut up to the
        # first 10 ms above 1 %, the same once reversed, reverse back.
        *("silence", "1", "0.01", "1%", "reverse"),
        *("silence", "1", "0.01", "1%", "reverse"),
    )
    wav.unlink()
    partial.replace(target)  # whole files only, should another process look
    audio = target.read_bytes()
    if not audio:
        raise RuntimeError(f"espeak-ng and sox made no audio of {text!r}")
    return audio


def _run(*command: str) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=TOOL_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace").strip()
        raise RuntimeError(
            f"{command[0]} failed ({exc.returncode}): {stderr}"
        ) from None


@functools.cache
def _cache_dir() -> Path:
    path = tempfile.mkdtemp(prefix="neuro-api-test-speech-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return Path(path)


def _samples(ms: float) -> int:
    if ms < 0:
        raise ValueError(f"a duration cannot be negative: {ms} ms")
    return round(ms * mulaw.BYTES_PER_MS)
