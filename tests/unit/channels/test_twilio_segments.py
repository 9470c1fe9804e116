"""SMS segment counting (GSM-7 vs UCS-2), as the Twilio sender's `check` reports it."""

from __future__ import annotations

import pytest

from chalicelib.adapters.channels.twilio.segments import GSM7, UCS2, encoding_of, segments, utf16_length


@pytest.mark.parametrize(("text", "encoding", "units", "count"), [
    ("", GSM7, 0, 1),
    ("a" * 160, GSM7, 160, 1),
    ("a" * 161, GSM7, 161, 2),
    ("a" * 306, GSM7, 306, 2),
    ("a" * 307, GSM7, 307, 3),
    # The extension table costs two septets: 80 euro signs fill one segment.
    ("€" * 80, GSM7, 160, 1),
    ("€" * 81, GSM7, 162, 2),
    # An escape pair is never split: the euro sign moves whole into the next part.
    ("a" * 152 + "€" + "a" * 152, GSM7, 306, 3),
    ("Grüße aus Köln, Señor ¿?", GSM7, 24, 1),
    ("Grüße aus Köln, Ñandú ¿?", UCS2, 24, 1),  # ú is not in GSM-7 (ù is)
    ("ж" * 70, UCS2, 70, 1),
    ("ж" * 71, UCS2, 71, 2),
    ("ж" * 134, UCS2, 134, 2),
    ("ж" * 135, UCS2, 135, 3),
    # One character outside GSM-7 (here a typographic apostrophe) makes the whole text UCS-2.
    ("a" * 69 + "’", UCS2, 70, 1),
    # An emoji is a surrogate pair: two code units, never split across parts.
    ("😀" * 35, UCS2, 70, 1),
    ("😀" * 36, UCS2, 72, 2),
])
def test_segments(text, encoding, units, count):
    result = segments(text)
    assert (result.encoding, result.units, result.count) == (encoding, units, count)


def test_the_per_segment_capacity_shrinks_once_a_text_is_split():
    assert (segments("a").per_segment, segments("a" * 161).per_segment) == (160, 153)
    assert (segments("ж").per_segment, segments("ж" * 71).per_segment) == (70, 67)


def test_encoding_and_twilios_length():
    assert encoding_of("Hello {name} [1] ~ | ^ \\ €") == GSM7
    assert encoding_of("Hallo ç") == UCS2  # ç is not in GSM-7 (only Ç is)
    assert utf16_length("a😀") == 3
