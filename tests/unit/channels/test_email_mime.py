"""The one MIME parser every email channel uses: hand-written raw emails in tests/fixtures/email,
tables for quote separation and header decoding, and properties over arbitrary bytes."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.adapters.channels.email import mime as email_mime
from chalicelib.adapters.channels.email import quotes as email_quotes
from chalicelib.adapters.channels.email.html import MAX_HTML_TO_TEXT, MAX_QUOTE_PREFIX, html_to_text
from chalicelib.adapters.channels.email.inbound import check_sender, ignore_reason, inbound_email
from chalicelib.adapters.channels.email.mime import (
    MAX_ADDRESS_LIST,
    MAX_DEPTH,
    MAX_PACKAGE_PARAMETERS,
    MAX_PARTS,
    ParsedEmail,
    decode_bytes,
    decode_header_value,
    msg_ids,
    parse_address_list,
    parse_email,
    parse_email_headers,
    thread_keys_for,
)
from chalicelib.adapters.channels.email.quotes import MAX_ATTRIBUTION_LINE, split_reply
from chalicelib.adapters.channels.email.form import parse_form
from chalicelib.domain.models import Channel, ContentType
from chalicelib.errors import MalformedPayloadError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "email"
OWN = frozenset({"support@mg.acme.example", "@acme.example"})
AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)


def eml(name: str, **kwargs) -> ParsedEmail:
    return parse_email((FIXTURES / f"{name}.eml").read_bytes(), **kwargs)


def mail(headers: str, body: str = "Hello", *, charset: str = "utf-8") -> bytes:
    head = headers.strip("\n").replace("\n", "\r\n")
    if "content-type" not in headers.lower():
        head += f"\r\nContent-Type: text/plain; charset={charset}"
    return (head + "\r\n\r\n").encode("ascii") + body.replace("\n", "\r\n").encode(charset if charset != "x-none" else "utf-8")


# --- the fixtures --------------------------------------------------------------------------------


def test_german_reply_quoted_printable_latin1():
    parsed = eml("german_reply_qp", own_addresses=OWN)
    assert parsed.from_name == "Jürgen Müller"
    assert parsed.from_address == "Juergen.Mueller@Kunde.example"
    assert parsed.subject == "AW: Bestellung #1042 – Größe passt nicht"  # 0x96 in ISO-8859-1 is cp1252's en dash
    assert parsed.text == (
        "Guten Tag,\n\ndie Schuhe sind leider zu groß. Können Sie mir bitte Größe 42 schicken?"
        "\n\nViele Grüße\nJürgen Müller"
    )
    assert "Am 31.12.2025 um 10:00 schrieb" in parsed.full_text
    assert "-- \nJürgen Müller\nMünchen" in parsed.full_text
    assert parsed.date == datetime(2026, 1, 1, 0, 59, tzinfo=timezone(timedelta(hours=1)))
    assert parsed.to == ["support@mg.acme.example"]
    assert parsed.dkim_domains == ["kunde.example"]
    assert parsed.headers["x-mailgun-spf"] == "Pass"
    assert not (parsed.is_auto_reply or parsed.is_bounce or parsed.from_own_address)


def test_references_chain_gives_thread_keys_newest_first():
    parsed = eml("german_reply_qp")
    assert parsed.message_id == "20260101005900.4711@kunde.example"
    assert parsed.in_reply_to == "order-1042.1767220000@acme.example"
    assert parsed.references == ["order-1042.1767000000@acme.example", "order-1042.1767220000@acme.example"]
    assert parsed.thread_keys == [
        "email:20260101005900.4711@kunde.example",
        "email:order-1042.1767220000@acme.example",
        "email:order-1042.1767000000@acme.example",
    ]


def test_a_reply_finds_the_case_of_the_message_it_answers():
    """The processor stores every thread key of a contact with its case and looks a new
    contact's keys up (`Store.find_threads`); a reply's keys must contain the first message's own key."""
    first = eml("english_reply_alternative")
    reply = parse_email(mail(
        "From: support@acme.example\nTo: ana@customer.example\nSubject: Re: Re: Order #1042\n"
        "Message-ID: <agent-reply-1@acme.example>\n"
        "In-Reply-To: <CAF=a1b2c3@mail.customer.example>\n"
        "References: <order-1042.1767220000@acme.example>\n <CAF=a1b2c3@mail.customer.example>"
    ))
    stored = {key: "case_1" for key in first.thread_keys}
    assert next(stored[k] for k in reply.thread_keys if k in stored) == "case_1"
    # The ids keep their case and lose their brackets, exactly as the other side quotes them.
    assert "email:CAF=a1b2c3@mail.customer.example" in reply.thread_keys


def test_english_alternative_prefers_plain_and_strips_wrapped_attribution():
    parsed = eml("english_reply_alternative")
    assert parsed.text == "Thanks, that works."
    assert parsed.cc == ["bruno@customer.example"]
    assert parsed.html is not None and "gmail_quote" in parsed.html
    assert parsed.full_text.startswith("Thanks, that works.\n\nOn Wed, Dec 31, 2025")


def test_outlook_original_message_windows_1252_base64():
    parsed = eml("outlook_reply_windows1252")
    assert parsed.text == "Hello,\n\nthe invoice shows € 120 – it should be “€ 100”.\n\nBest regards\nBob"
    assert "-----Original Message-----" in parsed.full_text


def test_html_only_becomes_readable_text():
    parsed = eml("html_only")
    assert parsed.subject == "Paket nicht angekommen 📦"
    assert parsed.text == (
        "Hallo Support-Team,\n\nmein Paket ist nicht angekommen.\nSendungsnummer: DE123\n\n"
        "- Bestellung 1042\n- Bestellt am 30.12.\n\n"
        "Details: Sendungsverfolgung (https://tracking.example/DE123)\n\nGrüße Erika"
    )
    assert "alert" not in parsed.full_text and "color" not in parsed.full_text and "Ignored title" not in parsed.full_text
    assert parsed.html is not None


def test_attachments_filenames_inline_images_and_sizes():
    parsed = eml("attachments")
    assert parsed.subject == "Rechnung für März"
    assert parsed.text == "Anbei die Rechnung für März."
    by_name = {a.filename: a for a in parsed.attachments}
    assert set(by_name) == {"screenshot.png", "Rechnung-März.pdf", "Grüße.txt"}  # RFC 2231 and RFC 2047 names
    image = by_name["screenshot.png"]
    assert (image.inline, image.content_id, image.content_type) == (True, "screenshot.1@kunde.example", "image/png")
    assert image.content is not None and image.content.startswith(b"\x89PNG") and image.size == len(image.content)
    pdf = by_name["Rechnung-März.pdf"]
    assert (pdf.inline, pdf.content_type) == (False, "application/pdf")
    assert pdf.content is not None and pdf.content.startswith(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3")
    assert by_name["Grüße.txt"].content == "Schöne Grüße".encode()
    assert "Schöne" not in parsed.full_text, "a text/plain attachment is not body text"


def test_max_attachment_bytes_keeps_metadata_and_drops_content():
    parsed = eml("attachments", max_attachment_bytes=0)
    assert [a.content for a in parsed.attachments] == [None, None, None]
    assert all(a.size > 0 for a in parsed.attachments)


def test_auto_reply_by_headers():
    parsed = eml("auto_reply_ooo")
    assert parsed.is_auto_reply and parsed.auto_reply_reason == "Auto-Submitted: auto-replied"
    assert parsed.auto_reply_hint
    assert ignore_reason(parsed) == "automatic reply: Auto-Submitted: auto-replied"
    assert eml("auto_reply_x_autoreply").auto_reply_reason == "X-Autoreply header"


def test_auto_reply_subject_alone_is_only_a_hint():
    parsed = eml("subject_hint_only")
    assert parsed.auto_reply_hint and not parsed.is_auto_reply
    assert ignore_reason(parsed) is None


def test_bounce_report():
    parsed = eml("bounce_dsn")
    assert parsed.is_bounce and parsed.bounce_reason == "delivery status notification (multipart/report)"
    assert ignore_reason(parsed).startswith("bounce:")
    # The returned message is an attachment, not a forward, and not part of the text.
    assert parsed.forwarded == []
    assert "Your order shipped" not in parsed.full_text
    assert {a.content_type for a in parsed.attachments} == {"message/delivery-status", "message/rfc822"}


def test_forwarded_message_part():
    parsed = eml("forwarded_rfc822")
    assert parsed.text == "See below, this is the third delay."
    [forwarded] = parsed.forwarded
    assert (forwarded.from_address, forwarded.subject, forwarded.message_id) == (
        "noreply@carrier.example", "Your delivery is delayed", "delay-99@carrier.example"
    )
    assert forwarded.text == "Your parcel DE123 is delayed by 2 days."
    assert "---------- Forwarded message ----------" in parsed.full_text
    assert parsed.attachments[0].filename == "Your delivery is delayed.eml"


def test_unknown_charset_falls_back_to_utf8():
    parsed = eml("unknown_charset")
    assert parsed.subject == "Straße"
    assert parsed.text == "Die Straße heißt Königsallee."


def test_format_flowed_bottom_post():
    parsed = eml("flowed_bottom_post")
    assert parsed.text == (
        "It arrived today, this is a long line that was wrapped by the mail client into two lines with a soft break."
        "\n\nThanks"
    )


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.eml")))
def test_every_fixture_parses_with_crlf_and_lf(name):
    raw = (FIXTURES / f"{name}.eml").read_bytes()
    crlf, lf = parse_email(raw), parse_email(raw.replace(b"\r\n", b"\n"))
    assert (crlf.text, crlf.subject, crlf.thread_keys, crlf.from_address) == (
        lf.text, lf.subject, lf.thread_keys, lf.from_address
    )
    assert crlf.from_address


# --- quoted history --------------------------------------------------------------------------------

SPLITS = [
    ("no history", "Just a question.\nSecond line.", "Just a question.\nSecond line."),
    ("english attribution", "Yes.\n\nOn Mon, 5 Jan 2026, Acme <a@acme.example> wrote:\n> old", "Yes."),
    ("english attribution wrapped", "Yes.\n\nOn Mon, Jan 5, 2026 at 10:00 AM Acme Support <\nsupport@acme.example> wrote:\n> old", "Yes."),
    ("german attribution", "Ja, gerne.\n\nAm 05.01.2026 um 10:00 schrieb Acme <a@acme.example>:\n> alt", "Ja, gerne."),
    ("german thunderbird", "Danke!\n\nAm 05.01.26 um 10:00 schrieb Acme Support:\n> alt", "Danke!"),
    ("german schrieb am", "Passt.\n\nAcme Support schrieb am 05.01.2026 10:00:\n> alt", "Passt."),
    ("german hat geschrieben", "Ok.\n\nAm 05.01.2026 hat Acme Support geschrieben:\n> alt", "Ok."),
    ("outlook original message", "Fine.\n\n-----Original Message-----\nFrom: A\nSent: B\n\nold", "Fine."),
    ("german outlook", "Gut.\n\n-----Ursprüngliche Nachricht-----\nVon: A\nGesendet: B\n\nalt", "Gut."),
    ("outlook header block", "Fine.\n\n________________________________\nFrom: Acme\nSent: Monday\nTo: me\n\nold", "Fine."),
    ("german outlook header block", "Gut.\n\nVon: Acme <a@acme.example>\nGesendet: Montag, 5. Januar 2026 10:00\nAn: ich\nBetreff: x\n\nalt", "Gut."),
    ("forwarded marker", "FYI\n\n---------- Forwarded message ---------\nFrom: x\n\nold", "FYI"),
    ("apple forward", "FYI\n\nBegin forwarded message:\n\nFrom: x", "FYI"),
    ("quote without attribution", "Answer\n\n> question\n> more", "Answer"),
    ("bottom post", "> question?\n\nAnswer below.", "Answer below."),
    ("interleaved", "On Mon, X wrote:\n> q1\na1\n> q2\na2", "a1\na2"),
    ("signature", "Thanks\n-- \nBob\nACME Corp", "Thanks"),
    # Was "Thanks": only "-- " (RFC 3676 §4.3) delimits a signature; a bare "--" is text people
    # write ("Step 1 / -- / Step 2"), and cutting there lost everything after it.
    ("bare '--' is text, not a signature delimiter", "Thanks\n--\nBob", "Thanks\n--\nBob"),
    ("bare '--' between steps", "Step 1\n--\nStep 2: please also do X", "Step 1\n--\nStep 2: please also do X"),
    ("mobile footer", "On my way.\n\nSent from my iPhone", "On my way."),
    ("german mobile footer", "Bin unterwegs.\n\nVon meinem iPhone gesendet", "Bin unterwegs."),
    ("all quoted", "> only\n> history", ""),
    ("crlf", "Hi\r\n\r\nOn Mon, X wrote:\r\n> old", "Hi"),
    ("'on' in prose is not a marker", "On Monday I wrote: the parcel never came.\nPlease help.", "On Monday I wrote: the parcel never came.\nPlease help."),
    # Shaped like attributions or header blocks, but what the customer wrote now.
    ("From/To/Date lines of a booking", "Hello, please change my booking:\nFrom: Frankfurt\nTo: New York\nDate: 12 May\nThanks",
     "Hello, please change my booking:\nFrom: Frankfurt\nTo: New York\nDate: 12 May\nThanks"),
    ("Von/An lines of an address change", "Bitte ändern Sie die Lieferadresse.\nVon: Hauptstr. 1, Berlin\nAn: Nebenstr. 2, München\nDanke!",
     "Bitte ändern Sie die Lieferadresse.\nVon: Hauptstr. 1, Berlin\nAn: Nebenstr. 2, München\nDanke!"),
    ("'Am Montag schrieb ich' is a sentence", "Hallo,\nAm Montag schrieb ich Ihnen bereits:\nDie Lieferung ist beschädigt.\nGruß Ana",
     "Hallo,\nAm Montag schrieb ich Ihnen bereits:\nDie Lieferung ist beschädigt.\nGruß Ana"),
    ("'On Monday I wrote:' is a sentence", "Hi,\nOn Monday I wrote:\nthe box was damaged. Please refund order 1042.\nAna",
     "Hi,\nOn Monday I wrote:\nthe box was damaged. Please refund order 1042.\nAna"),
    ("a footer-like sentence", "Sent from my iPhone is what it said. Anyway, the box is broken.",
     "Sent from my iPhone is what it said. Anyway, the box is broken."),
    # Real ones still are history.
    ("attribution without a quote below", "Thanks!\n\nOn Wed, Dec 31, 2025 at 10:00 AM Acme <a@acme.example> wrote:\nYour order shipped.", "Thanks!"),
    ("dateless attribution with a quote below", "Hallo,\nAm Montag schrieb Acme:\n> alt\nneu", "Hallo,\nneu"),
    ("outlook block with a subject", "Fine.\n\nFrom: Acme Support\nSent: Monday, 5 January 2026 10:00\nTo: Ana\nSubject: Order\n\nold", "Fine."),
    ("french outlook block", "Merci.\n\nDe : Acme <a@acme.example>\nEnvoyé : lundi 5 janvier 2026 10:00\nÀ : Ana\nObjet : Commande\n\nold", "Merci."),
    ("outlook block with Cc", "Ok.\n\nFrom: Acme <a@acme.example>\nSent: Monday\nTo: Ana\nCc: Bruno\nSubject: x\n\nold", "Ok."),
]


@pytest.mark.parametrize(("text", "expected"), [s[1:] for s in SPLITS], ids=[s[0] for s in SPLITS])
def test_split_reply(text, expected):
    new, rest = split_reply(text)
    assert new == expected


def test_split_reply_returns_the_history():
    new, rest = split_reply("Yes.\n\n-----Original Message-----\nFrom: A\n\nold")
    assert new == "Yes." and rest.startswith("-----Original Message-----") and rest.endswith("old")


def test_a_request_shaped_like_a_header_block_reaches_the_case_whole():
    body = "Hello, please change my booking:\nFrom: Frankfurt\nTo: New York\nDate: 12 May\nThanks, Ana"
    parsed = parse_email(mail("From: Ana <ana@customer.example>\nMessage-ID: <b1@customer.example>", body))
    check = check_sender(parsed.from_address, spf=None, spf_domain=None, dkim=None)
    message = inbound_email(parsed, provider="mailgun", account=None, received_at=AT, sender=check, fallback_id="f")
    assert message.text == body
    assert message.metadata["quoted_text_removed"] is False


def test_a_line_over_the_cap_is_never_an_attribution():
    # The shape of the old quadratic backtracking ("<" + "a@" * n), as a real-looking attribution.
    line = "<" + "a" * MAX_ATTRIBUTION_LINE + "@customer.example> wrote:"
    assert split_reply(line + "\n> old")[0] == line
    assert split_reply("x" * (MAX_ATTRIBUTION_LINE - 40) + " <a@customer.example> wrote:\n> old")[0] == ""


class _Spy:
    """Stands in for a compiled pattern and records the length of every string it is run on."""

    def __init__(self, pattern, seen: list[int]) -> None:
        self.pattern, self.seen = pattern, seen

    def match(self, text, *args):
        self.seen.append(len(text))
        return self.pattern.match(text, *args)

    def search(self, text, *args):
        self.seen.append(len(text))
        return self.pattern.search(text, *args)


def test_attribution_patterns_never_see_a_line_over_the_cap(monkeypatch):
    seen: list[int] = []
    for name in ("_ATTRIBUTION", "_ATTRIBUTION_LINE"):
        forms = getattr(email_quotes, name)
        monkeypatch.setattr(email_quotes, name, tuple((_Spy(a, seen), _Spy(b, seen)) for a, b in forms))
    long = "On 5 Jan 2026 " + "<" + "a@" * 5000 + "> wrote:"
    new, _ = split_reply(f"Hi\n{long}\n{long}\nmore\n{long}\nOn Mon, 5 Jan 2026, Acme <a@acme.example> wrote:\n> old")
    assert new.startswith("Hi\n" + long)
    assert seen, "the short attribution was looked at"
    assert max(seen) <= MAX_ATTRIBUTION_LINE


def test_address_headers_are_read_up_to_the_cap():
    value = "a@customer.example, " * (MAX_ADDRESS_LIST // 20 + 10) + "last@customer.example"
    addresses = [a for _, a in parse_address_list(value)]
    assert addresses[0] == "a@customer.example" and "last@customer.example" not in addresses
    assert len(addresses) <= MAX_ADDRESS_LIST // 20
    # The fallback for a mangled header looks for bounded addresses, not across the whole value.
    assert parse_address_list("--" * 3000 + " x@customer.example") == [(None, "x@customer.example")]


# --- HTML ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>a</p><p>b</p>", "a\n\nb"),
        ("a<br>b<br/>c", "a\nb\nc"),
        ("<div>x</div><div>y</div>", "x\ny"),
        ('<a href="https://x.example/p">link</a>', "link (https://x.example/p)"),
        ('<a href="https://x.example/p">https://x.example/p</a>', "https://x.example/p"),
        ('<a href="mailto:a@b.example">a@b.example</a>', "a@b.example"),
        ('<a href="javascript:alert(1)">click</a>', "click"),
        ("<script>var x = '<p>';</script><style>p{}</style>ok", "ok"),
        ("<p>Gr&uuml;&szlig;e &amp; &#8364;</p>", "Grüße & €"),
        ("<blockquote>quoted<br>twice</blockquote>after", "> quoted\n> twice\n\nafter"),
        ("<pre>a\n  b</pre>", "a\n  b"),
        ("<table><tr><td>A</td><td>B</td></tr></table>", "A B"),
        ("<p>unclosed <b>bold", "unclosed bold"),
        ("<![if !supportLists]>x<![endif]>y", None),
        ("<!DOCTYPE html><html><head><meta charset=utf-8></head><body>z</body></html>", "z"),
    ],
)
def test_html_to_text(html, expected):
    text = html_to_text(html)
    if expected is not None:
        assert text == expected
    else:
        assert "y" in text


def test_html_beyond_the_cap_is_not_converted():
    html = "<p>Hello</p><p>" + "words " * (MAX_HTML_TO_TEXT // 6) + "</p><p>TAIL</p>"
    text = html_to_text(html)
    assert text.startswith("Hello\n\nwords") and "TAIL" not in text


def test_html_only_mail_over_the_cap_keeps_its_html_and_says_so():
    html = "<p>Hello</p>" + "<p>history</p>" * (MAX_HTML_TO_TEXT // 14) + "<p>TAIL</p>"
    parsed = parse_email(mail("From: a@customer.example\nContent-Type: text/html; charset=utf-8", html))
    assert parsed.text.startswith("Hello") and "TAIL" not in parsed.full_text
    assert parsed.html is not None and parsed.html.endswith("<p>TAIL</p>")
    assert "HtmlTooLongForText" in parsed.defects


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        # Openers nothing closes are text, as the parser shows them (without its quadratic search).
        ("a<!b<!c", "a<!b<!c"),
        ("x<!--y>z", "x<!--y>z"),
        ("<p>x</p><![if y>z", "x\n\n<![if y>z"),
        ("a<b", "a<b"),
        ("<!--hidden--><p>shown</p>", "shown"),
        ("<![if !supportLists]>- <![endif]>item", "- item"),  # Outlook's conditional sections
    ],
)
def test_unclosed_markup_is_text(html, expected):
    assert html_to_text(html) == expected


def test_links_in_one_long_line_are_each_checked_against_their_own_text():
    html = '<a href="https://x.example/p">https://x.example/p</a> ' * 3 + '<a href="https://y.example">y</a> ' * 2
    assert html_to_text(html) == ("https://x.example/p " * 3 + "y (https://y.example) " * 2).strip()
    assert html_to_text('<a href="https://z.example">one<br>two</a>') == "one\ntwo (https://z.example)"


def test_blockquote_depth_shown_is_bounded():
    text = html_to_text("<blockquote>" * (MAX_QUOTE_PREFIX + 30) + "deep")
    assert text == "> " * MAX_QUOTE_PREFIX + "deep"


def test_html_signature_delimiter_survives_conversion():
    text = html_to_text('<div>Thanks</div><span class="gmail_signature_prefix">-- </span><br><div>Ana<br>ACME</div>')
    assert text == "Thanks\n-- \nAna\nACME"
    assert split_reply(text)[0] == "Thanks"
    assert split_reply(html_to_text("<p>Step 1</p><p>--</p><p>Step 2</p>"))[0] == "Step 1\n\n--\n\nStep 2"


def test_html_reply_quotes_are_recognized():
    html = ('<div>Sounds good.</div><div class="gmail_quote">On Mon, Jan 5, 2026 Acme &lt;a@acme.example&gt; wrote:<br>'
            "<blockquote>Shall we ship?</blockquote></div>")
    raw = mail("From: a@customer.example\nContent-Type: text/html; charset=utf-8", html)
    assert parse_email(raw).text == "Sounds good."


# --- headers and charsets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?utf-8?q?M=C3=BCller?=", "Müller"),
        ("=?ISO-8859-1?Q?Gr=FC=DFe?=", "Grüße"),
        ("=?utf-8?b?w6Q=?= =?utf-8?b?w7Y=?=", "äö"),  # whitespace between words dropped
        ("=?utf-8?b?w6?= =?utf-8?b?pA==?=", "ä"),  # a UTF-8 character split across two words
        ("Re: =?utf-8?q?Bestellung_f=C3=BCr?= Anna", "Re: Bestellung für Anna"),
        ("=?x-bogus?q?Stra=C3=9Fe?=", "Straße"),
        ("=?utf-8?b?!!!?=", "=?utf-8?b?!!!?="),
        ("folded\r\n value", "folded value"),
        ("", ""),
        ("=?utf-8*de?q?Tsch=C3=BCss?=", "Tschüss"),
    ],
)
def test_decode_header_value(value, expected):
    assert decode_header_value(value) == expected


def test_raw_utf8_headers_rfc6532():
    raw = "From: Zoë <zoe@customer.example>\r\nSubject: Größe\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo".encode()
    parsed = parse_email(raw)
    assert (parsed.subject, parsed.from_name) == ("Größe", "Zoë")


def test_encoded_display_name_with_comma_stays_one_address():
    parsed = parse_email(mail("From: =?utf-8?q?M=C3=BCller=2C_Hans?= <hans@kunde.example>\nTo: a@x.example, b@x.example"))
    assert (parsed.from_name, parsed.from_address) == ("Müller, Hans", "hans@kunde.example")
    assert parsed.to == ["a@x.example", "b@x.example"]


@pytest.mark.parametrize(
    ("data", "charset", "expected"),
    [
        ("Grüße".encode("latin-1"), "iso-8859-1", "Grüße"),
        (b"\x93quoted\x94 \x80", "iso-8859-1", "“quoted” €"),  # declared Latin-1, written by Windows
        ("Grüße".encode(), "us-ascii", "Grüße"),
        ("Grüße".encode(), None, "Grüße"),
        ("Grüße".encode("cp1252"), None, "Grüße"),
        # Was "ok \ufffd": text declared UTF-8 that is not is 8-bit Windows text (see below).
        (b"ok \xff", "utf-8", "ok ÿ"),
        (b"Gr\xfc\xdfe", "utf-8", "Grüße"),
        (b"\x93quoted\x94", "us-ascii", "“quoted”"),
        (b"\x81", "utf-8", "\x81"),  # undefined in Windows-1252: Latin-1 maps every byte
        ("日本".encode("shift_jis") + b"\xff", "shift_jis", "日本\ufffd"),  # a declared legacy charset stays
        ("Grüße".encode(), "base64", "Grüße"),  # a bytes codec is not a charset
        ("Grüße".encode(), "unicode-escape", "Grüße"),
        ("日本".encode("shift_jis"), "shift_jis", "日本"),
    ],
)
def test_decode_bytes(data, charset, expected):
    assert decode_bytes(data, charset) == expected


def test_latin1_text_declared_utf8_is_read_as_windows_1252_and_noted():
    raw = (b"From: a@customer.example\r\nSubject: =?utf-8?q?Gr=FC=DFe?=\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe aus M\xfcnchen\r\n")
    parsed = parse_email(raw)
    assert (parsed.subject, parsed.text) == ("Grüße", "Grüße aus München")
    assert "TextNotInDeclaredCharset" in parsed.defects
    assert "TextNotInDeclaredCharset" not in eml("german_reply_qp").defects


def test_msg_ids_tolerate_missing_brackets_and_duplicates():
    assert msg_ids("<a@x> <b@x>\r\n <a@x>") == ["a@x", "b@x"]
    assert msg_ids("a@x") == ["a@x"]
    assert msg_ids("garbage") == []
    assert msg_ids("<" + "x" * 300 + "@y>") == []


def test_thread_keys_are_bounded_and_unique():
    references = [f"r{i}@x" for i in range(50)]
    keys = thread_keys_for("m@x", ["r49@x"], references)
    assert keys[:3] == ["email:m@x", "email:r49@x", "email:r48@x"]
    assert len(keys) == len(set(keys)) == 1 + email_mime.MAX_REFERENCES


# --- classification ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "auto"),
    [
        ("Auto-Submitted: no", False),
        ("Auto-Submitted: no (sent by a person)", False),  # RFC 3834 §5: comments around the keyword
        ("Auto-Submitted: (a person) No", False),
        ("Auto-Submitted: auto-generated", True),
        ("Auto-Submitted: auto-replied (vacation)", True),
        ("Auto-Submitted: auto-replied; owner-email=x@y", True),
        ("Precedence: junk", True),
        ("Precedence: list", True),
        ("X-Precedence: bulk", True),
        ("Precedence: first-class", False),
        ("X-Autorespond: yes", True),
        ("X-Auto-Response-Suppress: All", False),  # set on ordinary Outlook mail too
    ],
)
def test_auto_reply_headers(header, auto):
    assert parse_email(mail(f"From: a@customer.example\n{header}")).is_auto_reply is auto


def test_exchange_out_of_office_is_automatic():
    parsed = eml("exchange_oof")
    assert parsed.is_auto_reply and parsed.auto_reply_reason.startswith("Exchange automatic reply")
    assert ignore_reason(parsed).startswith("automatic reply: Exchange")
    assert parsed.text.startswith("Vielen Dank für Ihre Nachricht")


@pytest.mark.parametrize(
    ("headers", "auto"),
    [
        ("Subject: Automatic reply: Order\nX-MS-Exchange-Inbox-Rules-Loop: a@customer.example", True),
        ("Subject: Automatische Antwort: Bestellung\nX-MS-Exchange-CrossTenant-fromentityheader: Hosted", True),
        ("Subject: Automatic reply: Order", False),  # no sign of Exchange: a subject alone is a hint
        ("Subject: RE: Automatic reply: Order\nX-MS-Exchange-CrossTenant-fromentityheader: Hosted", False),
        ("Subject: FW: Order\nX-MS-Exchange-Inbox-Rules-Loop: a@customer.example", False),  # a rule's forward
        ("Subject: Order\nX-Auto-Response-Suppress: All", False),
        ("Subject: Order\nX-Auto-Response-Suppress: All\nX-MS-Exchange-Inbox-Rules-Loop: a@customer.example", True),
    ],
)
def test_exchange_automatic_reply_signals(headers, auto):
    assert parse_email(mail(f"From: a@customer.example\n{headers}")).is_auto_reply is auto


def test_spam_complaint_is_ignored_like_a_bounce():
    parsed = eml("arf_complaint")
    assert parsed.is_bounce and parsed.bounce_reason == "spam complaint (RFC 5965 feedback report)"
    assert ignore_reason(parsed).startswith("bounce: spam complaint")
    assert parsed.forwarded == [], "the reported message is evidence, not a forward"
    parsed_mode = parse_email_headers(
        [("From", "abuse@isp.example"), ("Content-Type", 'multipart/report; report-type="feedback-report"; boundary=x')],
    )
    assert parsed_mode.is_bounce


def test_read_receipt_is_automatic():
    raw = mail(
        'From: a@customer.example\nContent-Type: multipart/report; report-type=disposition-notification; boundary="b"',
        "--b\nContent-Type: text/plain\n\nYour message was read.\n--b\nContent-Type: message/disposition-notification\n\n"
        "Final-Recipient: rfc822; a@customer.example\nDisposition: manual-action/MDN-sent-manually; displayed\n--b--\n",
    )
    assert parse_email(raw).auto_reply_reason == "read receipt (disposition notification)"


@pytest.mark.parametrize(
    "headers",
    [
        "From: postmaster@kunde.example",
        "From: MAILER-DAEMON@kunde.example",
        "From: a@customer.example\nReturn-Path: <>",
        "From: a@customer.example\nX-Failed-Recipients: b@kunde.example",
    ],
)
def test_bounce_signals(headers):
    assert parse_email(mail(headers)).is_bounce


@pytest.mark.parametrize(
    ("sender", "own"),
    [("support@mg.acme.example", True), ("SUPPORT@MG.ACME.EXAMPLE", True), ("billing@acme.example", True),
     ("a@sub.acme.example", False), ("a@acme.example.evil", False), ("a@customer.example", False)],
)
def test_from_own_address(sender, own):
    assert parse_email(mail(f"From: {sender}"), own_addresses=OWN).from_own_address is own


def test_parsed_mode_headers_detect_bounces_from_content_type():
    parsed = parse_email_headers(
        [("From", "x@kunde.example"), ("Content-Type", 'multipart/report; report-type="delivery-status"; boundary=x')],
    )
    assert parsed.is_bounce


# --- structure ------------------------------------------------------------------------------------


def test_deep_nesting_is_cut_not_fatal():
    depth = MAX_DEPTH + 10
    head = "From: a@customer.example\nSubject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n"
    body = "".join(f"--b{i}\nContent-Type: multipart/mixed; boundary=b{i + 1}\n\n" for i in range(depth))
    body += f"--b{depth}\nContent-Type: text/plain\n\ndeep text\n"
    body += "".join(f"--b{i}--\n" for i in reversed(range(depth + 1)))
    parsed = parse_email((head + body).encode())
    assert "TooManyPartsOrTooDeep" in parsed.defects
    assert parsed.subject == "deep"


def test_multipart_without_boundary_is_read_as_text():
    parsed = parse_email(b"From: a@customer.example\r\nContent-Type: multipart/mixed\r\n\r\nplain words\r\n")
    assert parsed.text == "plain words"


def test_broken_base64_body_does_not_fail():
    parsed = parse_email(b"From: a@customer.example\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8gV29y!!bGQ\r\n")
    assert parsed.from_address == "a@customer.example"


def test_text_attachment_with_inline_filename_is_an_attachment():
    raw = mail(
        'From: a@customer.example\nContent-Type: multipart/mixed; boundary="b"',
        "--b\nContent-Type: text/plain\n\nbody\n--b\nContent-Type: text/plain\nContent-Disposition: inline; "
        'filename="notes.txt"\n\nnotes\n--b--\n',
    )
    parsed = parse_email(raw)
    assert parsed.text == "body" and [a.filename for a in parsed.attachments] == ["notes.txt"]


@pytest.mark.parametrize("raw", [b"", b"   \r\n", b"\r\n\r\nbody without headers"], ids=repr)
def test_not_a_message_is_malformed(raw):
    with pytest.raises(MalformedPayloadError):
        parse_email(raw)


def test_wrong_type_is_malformed():
    with pytest.raises(MalformedPayloadError):
        parse_email("From: a@b.example\n\nx")  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=8192))
def test_arbitrary_bytes_parse_or_are_malformed(raw):
    try:
        parsed = parse_email(raw)
    except MalformedPayloadError as exc:
        assert "unparseable" not in exc.message, f"an unexpected exception was masked: {exc.message}"
        return
    for value in (parsed.text, parsed.full_text, parsed.subject or "", *parsed.headers.values()):
        value.encode("utf-8")  # no lone surrogates escape: everything must be storable and loggable


_FRAGMENTS = st.sampled_from([
    b"From: =?utf-8?b?w6?= <a@b.example>\r\n", b"Subject: =?x-unknown?q?=FF?=\r\n", b"To: ,,,<>@@,\r\n",
    b"Content-Type: multipart/mixed; boundary=x\r\n", b"Content-Type: multipart/alternative; boundary=\"y\"\r\n",
    b"Content-Type: multipart/related; start=\"<a>\"; boundary=x\r\n", b"Content-Type: message/rfc822\r\n",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n",
    b"Content-Type: message/delivery-status\r\n", b"Content-Type: text/html; charset=bogus\r\n",
    b"Content-Type: text/plain; format=flowed; delsp=yes\r\n", b"Content-Type: text/plain; charset*=utf-8'de'%C3\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename*=utf-8''%C3%BC.pdf\r\n", b"Content-ID: <\r\n",
    b"Message-ID: <<<>>>\r\n", b"References: <a@b> <c\r\n", b"Date: Mon, 99 Foo 99999 99:99:99 +9999\r\n",
    b"--x\r\n", b"--x--\r\n", b"--y\r\n", b"\r\n", b"> quoted \r\n", b"a line \r\n", b"-- \r\n",
    b"<![if x]><p>hi<blockquote>q</blockquote>", b"<script>", b"=?", b"?=", b"\xff\xfe\x00", b"=C3=",
])


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_FRAGMENTS | st.binary(max_size=16), max_size=80))
def test_mime_shaped_garbage_parses_or_is_malformed(fragments):
    try:
        parse_email(b"From: a@b.example\r\n" + b"".join(fragments))
    except MalformedPayloadError as exc:
        assert "unparseable" not in exc.message, exc.message


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=1000))
def test_split_reply_and_html_never_fail(text):
    new, _ = split_reply(text)
    assert len(new) <= len(text)
    html_to_text(text)


# --- webhook forms ----------------------------------------------------------------------------------


def multipart(fields: list[tuple[str, bytes, str | None]], boundary: str = "B0undary") -> bytes:
    out = b""
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600))
def test_multipart_keeps_binary_content_exactly(data):
    body = multipart([("text", "Grüße".encode(), None), ("attachment-1", data, "Rechnung-März.pdf")])
    form = parse_form(body, "multipart/form-data; boundary=B0undary")
    assert form.text("text") == "Grüße"
    [file] = form.files()
    assert (file.data, file.filename, file.content_type) == (data, "Rechnung-März.pdf", "application/octet-stream")


def test_urlencoded_keeps_8bit_bytes_exactly():
    form = parse_form(b"body-mime=Subject%3A+x%0D%0A%0D%0A%E4%F6&subject=Gr%C3%BC%C3%9Fe", "application/x-www-form-urlencoded")
    assert form.data("body-mime") == b"Subject: x\r\n\r\n\xe4\xf6"
    assert form.text("subject") == "Grüße"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nv", "multipart/form-data; boundary=x"),
        (b"no boundary here", "multipart/form-data; boundary=x"),
        (b"--x\r\n\r\n", "multipart/form-data"),
        (b"{}", "application/json"),
    ],
)
def test_bad_forms_are_malformed(body, content_type):
    with pytest.raises(MalformedPayloadError):
        parse_form(body, content_type)


# --- to the hub's model -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spf", "spf_domain", "dkim", "dkim_domains", "verified"),
    [
        ("pass", "customer.example", None, (), True),
        ("Pass", "bounces.customer.example", None, (), True),
        ("pass", "evil.example", None, (), False),
        ("softfail", "customer.example", None, (), False),
        (None, None, "pass", ("customer.example",), True),
        (None, None, "pass", ("evil.example",), False),
        (None, None, "pass", ("example",), False),  # a bare TLD never aligns
        (None, None, "fail", ("customer.example",), False),
    ],
)
def test_check_sender_needs_a_pass_aligned_with_from(spf, spf_domain, dkim, dkim_domains, verified):
    check = check_sender("ana@customer.example", spf=spf, spf_domain=spf_domain, dkim=dkim, dkim_pass_domains=dkim_domains)
    assert check.verified is verified


def test_inbound_email_maps_the_parsed_message():
    parsed = eml("attachments")
    check = check_sender(parsed.from_address, spf="pass", spf_domain="kunde.example", dkim=None)
    message = inbound_email(parsed, provider="mailgun", account="Support@MG.acme.example", received_at=AT,
                            sender=check, fallback_id="f" * 64)
    assert message.channel is Channel.EMAIL and message.content_type is ContentType.MEDIA
    assert message.provider_message_id == "attachments-1@kunde.example"
    assert message.account == "support@mg.acme.example"
    assert message.sender.handles[0].model_dump() == {
        "kind": "email", "value": "juergen@kunde.example", "scope": None, "verified": True
    }
    assert message.sender.display_name == "Jürgen Müller"
    assert message.subject == "Rechnung für März" and message.text == "Anbei die Rechnung für März."
    assert [(a.filename, a.size) for a in message.attachments] == [
        ("screenshot.png", 69), ("Rechnung-März.pdf", 54), ("Grüße.txt", 15)
    ]
    assert message.metadata["inline_attachments"] == ["screenshot.1@kunde.example"]
    assert message.thread_keys == ["email:attachments-1@kunde.example"]
    assert message.conversation_key == "email:attachments-1@kunde.example"
    message.model_dump_json()  # survives the queue


def test_inbound_email_without_message_id_uses_the_fallback():
    parsed = parse_email(mail("From: a@customer.example\nSubject: hi"))
    check = check_sender(parsed.from_address, spf=None, spf_domain=None, dkim=None)
    message = inbound_email(parsed, provider="sendgrid", account=None, received_at=AT, sender=check, fallback_id="abc")
    assert message.provider_message_id == "sha256:abc"
    assert message.sender.handles[0].verified is False
    assert message.thread_keys == [] and message.conversation_key is None


def test_inbound_email_ignores_automatic_and_own_mail():
    check = check_sender(None, spf=None, spf_domain=None, dkim=None)
    for name in ("auto_reply_ooo", "bounce_dsn"):
        reason = inbound_email(eml(name), provider="x", account=None, received_at=AT, sender=check, fallback_id="f")
        assert isinstance(reason, str)
    own = parse_email(mail("From: support@mg.acme.example"), own_addresses=OWN)
    assert "own addresses" in inbound_email(own, provider="x", account=None, received_at=AT, sender=check, fallback_id="f")


def test_fixtures_are_exact_bytes_with_non_ascii():
    # The fixtures are the wire format: 8-bit bodies stay 8-bit, encoded words stay encoded.
    assert "für März".encode() in (FIXTURES / "attachments.eml").read_bytes()
    assert b"=?ISO-8859-1?Q?J=FCrgen_M=FCller?=" in (FIXTURES / "german_reply_qp.eml").read_bytes()
    assert base64.b64decode((FIXTURES / "html_only.eml").read_bytes().split(b"\r\n\r\n", 1)[1]).startswith(b"<html>")


def test_raw_utf8_attachment_filename():
    raw = (
        b'From: a@customer.example\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nsee file\r\n--b\r\nContent-Type: application/pdf\r\n"
        + 'Content-Disposition: attachment; filename="Übersicht März.pdf"\r\n\r\n%PDF\r\n--b--\r\n'.encode()
    )
    assert [a.filename for a in parse_email(raw).attachments] == ["Übersicht März.pdf"]


def test_part_count_is_bounded_across_related_resources():
    resources = "".join(f"--b\nContent-Type: image/png\nContent-ID: <i{i}@x>\n\nx\n" for i in range(MAX_PARTS + 50))
    raw = mail('From: a@customer.example\nContent-Type: multipart/related; boundary="b"', resources + "--b--\n")
    parsed = parse_email(raw)
    assert "TooManyPartsOrTooDeep" in parsed.defects
    assert len(parsed.attachments) < MAX_PARTS


def test_the_email_package_reads_a_bounded_content_type():
    padded = f'multipart/mixed; x-pad="{"p" * MAX_PACKAGE_PARAMETERS}"; boundary="b"'
    raw = mail(f"From: a@customer.example\nContent-Type: {padded}", "--b\nContent-Type: text/plain\n\nhidden\n--b--\n")
    parsed = parse_email(raw)
    assert "NoBoundaryInMultipartDefect" in parsed.defects  # the boundary lies beyond what it reads
    assert parse_email(raw.replace(b"p" * MAX_PACKAGE_PARAMETERS, b"p")).text == "hidden"


def test_parameters_are_read_past_what_the_package_reads():
    name = "Grüße-" + "x" * MAX_PACKAGE_PARAMETERS + ".pdf"
    encoded = "".join(f"%{b:02X}" for b in name.encode())
    raw = mail(
        'From: a@customer.example\nContent-Type: multipart/mixed; boundary="b"',
        "--b\nContent-Type: text/plain; charset=iso-8859-1\n\nx\n--b\nContent-Type: application/pdf\n"
        f"Content-Disposition: attachment; size=1; filename*=utf-8''{encoded}\n\n%PDF\n--b--\n",
    )
    assert [a.filename for a in parse_email(raw).attachments] == [name[:255]]


_PARAMETER_FRAGMENTS = st.sampled_from([
    "text/plain", "; ", ";", "charset=", "utf-8", '"utf-8"', "name=", "filename=", "filename*=", "utf-8''%C3%BC.pdf",
    "filename*0*=", "filename*1*=", "filename*0=", '"a b.pdf"', '"a;b"', '"', '\\"', "\\", " ", "x", "=",
    "iso-8859-1'de'%FC", "Charset=UTF-8", "*", "'", "%", "=?utf-8?q?a?=", "ü",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PARAMETER_FRAGMENTS, max_size=12), st.sampled_from(["charset", "name", "filename"]))
def test_parameters_read_as_the_email_package_reads_them(fragments, name):
    """The linear parameter splitter answers what `Message.get_param` answers."""
    from email.message import Message
    from email.policy import compat32
    from email.utils import collapse_rfc2231_value

    raw = "".join(fragments)
    holder = Message(policy=compat32)
    holder["content-type"] = raw
    try:
        expected = holder.get_param(name)
        expected = collapse_rfc2231_value(expected) if isinstance(expected, tuple) else expected
    except Exception:  # noqa: BLE001 - then the module's answer is None or its own
        return
    assert email_mime._param_of(raw, name) == (None if expected is None else str(expected))


def test_part_count_is_bounded_across_alternatives():
    leaves = "".join("--b\nContent-Type: text/plain\n\nx\n" for _ in range(email_mime.MAX_PARTS + 50))
    raw = mail('From: a@customer.example\nContent-Type: multipart/mixed; boundary="b"', leaves + "--b--\n")
    parsed = parse_email(raw)
    assert "TooManyPartsOrTooDeep" in parsed.defects
    assert parsed.full_text.count("x") < email_mime.MAX_PARTS
