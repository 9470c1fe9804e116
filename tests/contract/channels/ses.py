"""The Amazon SES (through SNS) row of the channel-adapter contract suite.

The suite builds adapters without a fetcher, so every message here names the simulated
certificate path and is signed with the row's `test_signing_keys`: nothing is ever fetched.
The credential is inside the body (SNS's `Signature` field), so `sign` only sets the content
type, and `body_signed` is False: a body the helper did not sign must fail, which the payload
strategy exercises with unsigned and wrongly signed messages. (No module-level `KEY` here: the
suite reads that name as the registry key.)
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from hypothesis import strategies as st

from chalicelib.adapters.channels.ses import sns_signature as sns
from chalicelib.adapters.channels.ses.adapter import SIMULATED_CERT_PATH
from tests.support.channel_contract import LEAF, TEXT, WORDS, Case, fixture, mostly

KEY_PEM = (Path(__file__).parents[2] / "fixtures" / "ses" / "signing_key.pem").read_text()
SIGNING_KEY = sns.load_private_key(KEY_PEM)
TOPIC = "arn:aws:sns:eu-central-1:123456789012:ses-inbound"
CERT_URL = f"https://sns.eu-central-1.amazonaws.com{SIMULATED_CERT_PATH}"

_header_names = st.sampled_from(
    ["From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "References", "Date", "Auto-Submitted",
     "Precedence", "Content-Type", "Content-Transfer-Encoding", "Return-Path", "X-Failed-Recipients"]
)  # fmt: skip
_header_values = st.sampled_from(
    ["Ana <ana@customer.example>", "support@inbound.acme.example", "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=", "<m1@x.example>",
     "auto-replied", "bulk", "text/plain; charset=utf-8", 'multipart/mixed; boundary="b"', "base64",
     "quoted-printable", "<>", "Thu, 1 Jan 2026 00:00:00 +0000", "MAILER-DAEMON@mx.example", "agent@acme.example"]
) | WORDS  # fmt: skip


@st.composite
def _mime(draw) -> str:
    sender = draw(mostly(st.sampled_from(["Ana Souza <ana@customer.example>", "=?UTF-8?Q?J=C3=BCrgen?= <j@k.example>"]),
                         st.just(None) | _header_values))  # fmt: skip
    headers = ([("From", sender)] if sender else []) + draw(st.lists(st.tuples(_header_names, _header_values), max_size=6))
    body = draw(st.sampled_from(["Hallo, wo bleibt mein Paket?", "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",
                                 "=C3=BC", "> quoted\r\nnew"]) | TEXT)  # fmt: skip
    return "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n" + body


_verdict = mostly(st.fixed_dictionaries({"status": st.sampled_from(["PASS", "PASS", "FAIL", "GRAY", "PROCESSING_FAILED"])}), LEAF)


@st.composite
def _ses_message(draw) -> str:
    encoding = draw(mostly(st.sampled_from(["BASE64", "UTF8", "Base64"]), LEAF))
    mime = draw(_mime())
    raw = mime.encode("utf-8", "surrogatepass")
    content = base64.b64encode(raw).decode() if encoding in ("BASE64", "Base64") else mime
    notification = draw(
        st.fixed_dictionaries(
            {
                "notificationType": mostly(st.just("Received"), st.sampled_from(["Bounce", "Complaint"]) | LEAF),
                "mail": mostly(
                    st.fixed_dictionaries(
                        {"messageId": mostly(st.sampled_from(["ses1", "ses2"]), TEXT | LEAF)},
                        optional={"source": mostly(st.just("ana@customer.example"), LEAF),
                                  "destination": st.lists(TEXT, max_size=2)},
                    ),
                    LEAF,
                ),
                "receipt": mostly(
                    st.fixed_dictionaries(
                        {"action": mostly(st.fixed_dictionaries({"type": st.just("SNS"), "encoding": st.just(encoding)}),
                                          st.fixed_dictionaries({"type": st.just("S3")}) | LEAF)},
                        optional={"recipients": mostly(st.lists(st.just("support@inbound.acme.example"), max_size=2), LEAF),
                                  **{f"{v}Verdict": _verdict for v in ("spam", "virus", "spf", "dkim", "dmarc")}},
                    ),
                    LEAF,
                ),
                "content": mostly(st.just(content), LEAF),
            },
        )
    )  # fmt: skip
    return json.dumps(notification)


@st.composite
def _payload(draw) -> bytes:
    kind = draw(mostly(st.just("Notification"), st.just("UnsubscribeConfirmation") | LEAF))
    message = {
        "Type": kind,
        "MessageId": draw(mostly(st.sampled_from(["m-1", "m-2"]), LEAF)),
        "TopicArn": draw(mostly(st.just(TOPIC), st.just(TOPIC.replace("ses-inbound", "other")) | LEAF)),
        "Message": draw(mostly(_ses_message(), TEXT | LEAF)),
        "Timestamp": draw(mostly(st.just("2026-01-01T00:00:01.200Z"), st.just("2025-01-01T00:00:00Z") | TEXT)),
    }
    if kind == "UnsubscribeConfirmation":
        message["Token"] = "t"
        message["SubscribeURL"] = f"https://sns.eu-central-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}"
    if draw(st.booleans()):
        message["Subject"] = draw(mostly(st.just("Amazon SES Email Receipt Notification"), LEAF))
    how = draw(st.sampled_from(["v2", "v2", "v1", "unsigned", "wrong"]))
    if how in ("v1", "v2"):
        try:
            message = sns.sign_message(message, SIGNING_KEY, version=how[1])
        except ValueError:  # a field SNS never sends as non-string: no signature possible
            pass
    elif how == "wrong":
        message.update(SignatureVersion="2", Signature=base64.b64encode(b"\x01" * 256).decode())
    message["SigningCertURL"] = draw(mostly(st.just(CERT_URL), st.just("https://attacker.example/cert.pem") | LEAF))
    return json.dumps(message).encode()


def _strip(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    message = json.loads(body)
    del message["Signature"]
    return json.dumps(message).encode(), headers


_body, _headers = fixture("ses", "received_simulated")
#: A correctly signed SNS notification whose SES notification type this adapter does not know.
_unknown = json.dumps({
    **sns.sign_message({
        "Type": "Notification", "MessageId": "m-unknown", "TopicArn": TOPIC, "Timestamp": "2026-01-01T00:00:01.200Z",
        "Message": json.dumps({"notificationType": "BrandNew", "mail": {"messageId": "ses-new"}}),
    }, SIGNING_KEY, version="2"),
    "SigningCertURL": CERT_URL,
}).encode()

CASE = Case(
    settings={"topic_arns": [TOPIC], "own_addresses": ["@acme.example"], "test_signing_keys": [KEY_PEM]},
    secret_values=(KEY_PEM,),
    hook=None,
    sample=_body,
    sample_headers=_headers,
    sign=lambda body: {"content-type": "text/plain; charset=UTF-8"},
    tamper=lambda body: body.replace(b'"6e5d4c3b-4444', b'"6e5d4c3b-4445'),
    strip=_strip,
    body_signed=False,
    payloads=_payload(),
    unknown=_unknown,
)
