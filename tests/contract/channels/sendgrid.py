"""SendGrid's row in the channel-adapter contract: basic auth and a path token in the URL, plus
the security policy's ECDSA signature over `timestamp + body` (made with `cryptography`, an
implementation independent of the adapter's), so every byte of the body is covered."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import strategies as st

from tests.support.channel_contract import TEXT, WORDS, Case, fixture, mostly, without

KEY = "sendgrid"
_FIXTURES = Path(__file__).parents[2] / "fixtures" / "sendgrid"
PASSWORD = "test-sendgrid-basic-password"
PATH_TOKEN = "parse-3f9c2d6e0b7a4d1c9e8f7a6b"
PUBLIC_KEY = (_FIXTURES / "public_key.txt").read_text().strip()
_PRIVATE_KEY = serialization.load_pem_private_key((_FIXTURES / "signing_key.pem").read_bytes(), password=None)
TIMESTAMP = "1767225600"
BOUNDARY = "contractBoundary"

NAMES = ["headers", "email", "from", "to", "subject", "text", "html", "envelope", "charsets", "dkim", "SPF",
         "attachment-info", "content-ids", "attachment1", "attachments"]
VALUES = [
    b"From: Ana <ana@customer.example>\r\nMessage-ID: <m1@customer.example>\r\n\r\nHallo",
    b"From: a@customer.example\nAuto-Submitted: auto-replied\n", "Grüße".encode("latin-1"), "Grüße".encode(),
    b'{"to":["support@parse.acme.example"],"from":"ana@customer.example"}', b'{"text":"iso-8859-1"}',
    b'{"attachment1":{"filename":"a.pdf","type":"application/pdf","content-id":"c1"}}', b"{@customer.example : pass}",
    b"pass", b"", b"{", b"[1]", b"\x00\xff",
]


def sign(body: bytes) -> dict[str, str]:
    signature = _PRIVATE_KEY.sign(TIMESTAMP.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "content-type": f"multipart/form-data; boundary={BOUNDARY}",
        "authorization": "Basic " + base64.b64encode(f"sendgrid:{PASSWORD}".encode()).decode(),
        "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
        "x-twilio-email-event-webhook-timestamp": TIMESTAMP,
    }


@st.composite
def payloads(draw) -> bytes:
    # Mostly a message the parser can use (raw or parsed mode), then anything.
    base = draw(mostly(st.sampled_from([[("email", VALUES[0])], [("from", b"ana@customer.example"), ("text", b"Hallo")]]),
                       st.just([])))
    fields = base + draw(st.lists(
        st.tuples(st.sampled_from(NAMES) | WORDS, st.sampled_from(VALUES) | st.binary(max_size=40)), max_size=6
    ))
    fields = draw(st.permutations(fields))
    body = b""
    for name, value in fields:
        filename = '; filename="f.bin"' if name.startswith("attachment") and draw(st.booleans()) else ""
        safe = name.replace('"', "").replace("\r", "").replace("\n", "")
        body += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{safe}"{filename}\r\n\r\n'.encode(
            "utf-8", "surrogateescape") + value + b"\r\n"
    ending = draw(st.sampled_from([f"--{BOUNDARY}--\r\n".encode(), b"", draw(TEXT).encode("utf-8", "replace")]))
    return body + ending


_body, _headers = fixture("sendgrid", "parsed_attachment")

CASE = Case(
    settings={
        "basic_auth": [{"username": "sendgrid", "password": PASSWORD}],
        "path_tokens": [PATH_TOKEN],
        "signature_public_keys": [PUBLIC_KEY],
        "own_addresses": ["support@parse.acme.example"],
    },
    secret_values=(PASSWORD, PATH_TOKEN),
    hook=PATH_TOKEN,
    sample=_body,
    sample_headers=_headers,
    sign=sign,
    tamper=lambda body: body.replace(b"Hi, the invoice", b"Hi, an invoice"),
    strip=lambda body, headers: (body, without(without(headers, "authorization"), "x-twilio-email-event-webhook-signature")),
    body_signed=True,
    payloads=payloads(),
)
