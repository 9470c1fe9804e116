"""Mailgun's row in the channel-adapter contract: the signature lives in the body (HMAC over
`timestamp + token`), so `sign` only sets the content type and the payload strategy signs bodies
itself; only the signing triple is covered, hence `body_signed=False`."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import urlencode

from hypothesis import strategies as st

from tests.support.channel_contract import TEXT, WORDS, Case, fixture, mostly

KEY = "mailgun"
SIGNING_KEY = "test-mailgun-webhook-signing-key"
TIMESTAMP = "1767225600"
FORM = "application/x-www-form-urlencoded"

NAMES = ["recipient", "sender", "from", "subject", "body-plain", "body-html", "stripped-text", "message-headers",
         "Message-Id", "In-Reply-To", "References", "body-mime", "attachment-count", "content-id-map"]
MIME = [
    "From: Ana <ana@customer.example>\r\nMessage-ID: <m1@customer.example>\r\n\r\nHallo",
    "From: =?utf-8?q?J=C3=BCrgen?= <j@kunde.example>\r\nAuto-Submitted: auto-replied\r\n\r\naway",
    "From: MAILER-DAEMON@x.example\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b--",
    "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
    "",
]
VALUES = [
    "Ana Souza <ana@customer.example>", "support@mg.acme.example", "<m@customer.example>", "Grüße", "",
    '[["From","a@customer.example"],["Auto-Submitted","auto-replied"]]', "[1,2]", "{", '{"<c>":"attachment-1"}',
    *MIME,
]


def signature(timestamp: str, token: str) -> str:
    return hmac.new(SIGNING_KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


@st.composite
def payloads(draw) -> bytes:
    token = draw(mostly(st.sampled_from(["a" * 50, "b" * 50]), st.text(st.characters(codec="utf-8"), max_size=60)))
    timestamp = draw(mostly(st.just(TIMESTAMP), st.sampled_from(["1", "x", "1767225600.0"])))
    triple = [("timestamp", timestamp), ("token", token),
              ("signature", draw(mostly(st.just(signature(timestamp, token)), st.sampled_from(["", "0" * 64]))))]
    # Mostly a message the parser can use (raw MIME or the parsed fields), then anything.
    base = draw(mostly(st.sampled_from([[("body-mime", MIME[0])], [("from", VALUES[0]), ("body-plain", "Hallo")]]),
                       st.just([])))
    fields = base + draw(st.lists(st.tuples(st.sampled_from(NAMES) | WORDS, st.sampled_from(VALUES) | TEXT), max_size=6))
    if draw(st.booleans()):
        fields.append(("message-headers", json.dumps(draw(st.lists(st.lists(TEXT, min_size=2, max_size=2), max_size=3)))))
    try:
        return urlencode(draw(st.permutations(triple + fields))).encode()
    except UnicodeEncodeError:  # a lone surrogate cannot be sent
        return urlencode(triple).encode()


def strip(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    fields = [(k, v) for k, v in _pairs(body) if k != "signature"]
    return urlencode(fields).encode(), headers


def _pairs(body: bytes) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(body.decode(), keep_blank_values=True)


_body, _headers = fixture("mailgun", "parsed_text")

CASE = Case(
    settings={"webhook_signing_keys": [SIGNING_KEY], "own_addresses": ["support@mg.acme.example"]},
    secret_values=(SIGNING_KEY,),
    hook=None,
    sample=_body,
    sample_headers=_headers,
    sign=lambda body: {"content-type": FORM},
    tamper=lambda body: body.replace(b"token=c5b6e1f3", b"token=c5b6e1f4"),
    strip=strip,
    body_signed=False,
    payloads=payloads(),
)
