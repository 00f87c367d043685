"""G.711 μ-law in pure Python: what Twilio streams and ``audio/pcmu`` carries.

The stdlib's ``audioop`` would do this, but it warns (``DeprecationWarning``)
on Python 3.11 and 3.12, an error under this suite's warning filter, and is
gone in 3.13. These are the classic tables of the ITU-T G.711 reference
(Sun's ``g711.c``), giving the very bytes and samples of
``audioop.lin2ulaw``/``ulaw2lin``: a 16-bit sample is taken to 14 bits,
clipped, biased and coded as sign, 3-bit segment and 4-bit mantissa, bits
inverted. Decoding gives the 14-bit steps scaled to 16 bits: ``0xFF`` (and
``0x7F``) is 0, ``0x00`` is -32124, ``0x80`` is 32124.

8 kHz, one byte a sample: 8 bytes are a millisecond, a 20 ms Twilio frame
is 160 bytes.

:func:`encode` (16-bit samples, a sequence of ints or native-endian bytes,
to μ-law bytes), :func:`decode` (μ-law bytes to an ``array('h')``),
:func:`rms` (the root mean square of the decoded samples, 0 to 32124, for
voice activity), :data:`SILENCE` (the byte of a zero sample).
"""

from __future__ import annotations

import array
import math
from collections.abc import Iterable
from typing import Final

SAMPLE_RATE: Final = 8000
BYTES_PER_MS: Final = SAMPLE_RATE // 1000
SILENCE: Final = 0xFF
"""The μ-law byte of a zero sample."""

_BIAS: Final = 0x84
_CLIP_14: Final = 8159


def _encode_one(sample: int) -> int:
    # As the ITU reference (and audioop): to 14 bits first (an arithmetic
    # shift: small negative samples round away from zero), then the code.
    value = sample >> 2
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value, _CLIP_14) + (_BIAS >> 2)
    segment = max(value.bit_length() - 6, 0)
    if segment > 7:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _decode_one(byte: int) -> int:
    byte = ~byte & 0xFF
    exponent = (byte >> 4) & 0x07
    magnitude = (((byte & 0x0F) << 3) + _BIAS) << exponent
    magnitude -= _BIAS
    return -magnitude if byte & 0x80 else magnitude


# Indexed by the sample as an unsigned 16-bit number (sample & 0xFFFF).
_ENCODE: Final = bytes(
    _encode_one(n - 65536 if n >= 32768 else n) for n in range(65536)
)
_DECODE: Final = array.array("h", (_decode_one(byte) for byte in range(256)))
_SQUARES: Final = tuple(value * value for value in _DECODE)


def encode(samples: Iterable[int] | bytes | bytearray) -> bytes:
    """μ-law bytes of 16-bit signed samples.

    ``samples`` are ints (clipped to -32768..32767) or bytes of native-endian
    16-bit samples (as ``array('h').tobytes()`` gives; an odd length is a
    :class:`ValueError`).
    """
    if isinstance(samples, bytes | bytearray):
        if len(samples) % 2:
            raise ValueError("16-bit samples need an even number of bytes")
        samples = array.array("h", samples)
    return bytes(_ENCODE[max(-32768, min(32767, s)) & 0xFFFF] for s in samples)


def decode(data: bytes | bytearray | memoryview) -> array.array[int]:
    """The 16-bit samples of μ-law ``data``."""
    return array.array("h", (_DECODE[byte] for byte in bytes(data)))


def rms(data: bytes | bytearray | memoryview) -> float:
    """Root mean square of the decoded samples (0.0 for no data)."""
    raw = bytes(data)
    if not raw:
        return 0.0
    return math.sqrt(sum(map(_SQUARES.__getitem__, raw)) / len(raw))


def ms(data: bytes | bytearray | memoryview) -> float:
    """How many milliseconds ``data`` lasts at 8 kHz."""
    return len(data) / BYTES_PER_MS
