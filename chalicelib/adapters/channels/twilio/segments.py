"""SMS segments: how many parts a text costs, GSM-7 or UCS-2 (https://www.twilio.com/docs/glossary/what-sms-character-limit).

A text whose every character is in the GSM 03.38 default alphabet (or its extension table, two
septets each) is sent in GSM-7: 160 septets in one segment, 153 per segment once it is split (the
concatenation header takes the rest). One character outside it switches the whole text to UCS-2:
70 UTF-16 code units in one segment, 67 per part. A split never cuts an escape pair or a surrogate
pair, so parts are packed character by character, as carriers (and Twilio's segment calculator) do.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7 = "GSM-7"
UCS2 = "UCS-2"

#: 3GPP TS 23.038 default alphabet, without the escape character (0x1B) itself.
_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The extension table: each costs an escape septet plus its own.
_EXTENDED = frozenset("^{}\\[~]|€\f")

_SINGLE = {GSM7: 160, UCS2: 70}
_PART = {GSM7: 153, UCS2: 67}


@dataclass(frozen=True)
class Segments:
    encoding: str
    #: Septets (GSM-7) or UTF-16 code units (UCS-2) of the whole text.
    units: int
    count: int

    @property
    def per_segment(self) -> int:
        return _SINGLE[self.encoding] if self.count <= 1 else _PART[self.encoding]


def encoding_of(text: str) -> str:
    return GSM7 if all(c in _BASIC or c in _EXTENDED for c in text) else UCS2


def segments(text: str) -> Segments:
    """The encoding and segment count of `text` as one SMS (an empty text is one segment)."""
    encoding = encoding_of(text)
    if encoding == GSM7:
        sizes = [2 if c in _EXTENDED else 1 for c in text]
    else:
        sizes = [2 if ord(c) > 0xFFFF else 1 for c in text]
    units = sum(sizes)
    if units <= _SINGLE[encoding]:
        return Segments(encoding, units, 1)
    capacity, count, used = _PART[encoding], 1, 0
    for size in sizes:
        if used + size > capacity:
            count, used = count + 1, 0
        used += size
    return Segments(encoding, units, count)


def utf16_length(text: str) -> int:
    """Length against Twilio's 1,600-character `Body` limit, in UTF-16 code units: Twilio says
    emoji and other non-GSM characters "can use more space" (error 21617), so an emoji (a
    surrogate pair) counts twice, the reading that never lets a refused body through."""
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)
