"""One MIME parser for every email channel (Mailgun, SendGrid, SES): RFC 5322/2045-2049 on the
standard library's `email` package (https://docs.python.org/3/library/email.html).

Pure and I/O-free: bytes in, a frozen `ParsedEmail` out. It is lenient the way mail software must
be (unknown charsets, broken encodings, HTML-only mail) and raises nothing but
`MalformedPayloadError`, so a webhook carrying hostile MIME gets a 400, never a 500.

What it decides, and why:
- **New text vs history**: `quotes.split_reply`. **HTML-only mail**: `html`.
- **Threading.** `thread_keys` are `email:<message-id>` for this message, then the ids in
  In-Reply-To, then References newest first. The processor stores every key of a contact with its
  case, so a reply whose In-Reply-To/References names an earlier message's Message-ID (ours or the
  customer's) finds that case, whatever the time gap. Ids keep their case (RFC 5322 compares them
  literally) and lose their angle brackets.
- **Automatic mail.** `is_auto_reply` comes from headers only: Auto-Submitted other than "no"
  (RFC 3834), X-Autoreply, X-Autorespond, Precedence/X-Precedence bulk, junk, list or auto_reply,
  read receipts (multipart/report; report-type=disposition-notification), and Exchange's
  out-of-office replies, which carry none of these (X-MS-Exchange-Inbox-Rules-Loop with
  X-Auto-Response-Suppress: All, or an "Automatic reply:" subject on mail that came through
  Exchange). A subject such as
  "Out of office" or "Automatische Antwort" alone is only a weak signal: it sets
  `auto_reply_hint`, never `is_auto_reply`, because customers do write "Re: Out of office"
  subjects. Note that Precedence: list also marks mail relayed through a mailing list or a
  Google Group used as a support alias.
- **Bounces.** `is_bounce` for multipart/report with a message/delivery-status part, senders
  mailer-daemon@ / postmaster@, X-Failed-Recipients, and a null Return-Path (`<>`). (RFC 3834
  auto-replies also use a null Return-Path; either way no case is opened.) Spam complaints
  (RFC 5965 ARF, multipart/report; report-type=feedback-report) count as bounces too: reports
  about mail we sent, noise for a support queue.
- **Hostile input.** Everything here runs on customer-controlled text, so work stays linear in
  its size: no regular expression backtracks over more than a bounded stretch (bounded
  repetition, or lines of at most `MAX_ATTRIBUTION_LINE`), the HTML converter and the standard
  library's address and parameter parsers get bounded input (`MAX_HTML_TO_TEXT`,
  `MAX_ADDRESS_LIST`, `MAX_PACKAGE_PARAMETERS`), and at most `MAX_PARTS` MIME parts are
  looked at. `bench/email_parsing.py` measures it. The body is parsed with the `compat32` policy: the header registry of
  `policy.default` is slow on hostile headers, and this module reads raw headers itself anyway.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import email.utils
import quopri
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.message import Message

from chalicelib.adapters.channels.email.html import MAX_HTML_TO_TEXT, html_to_text
from chalicelib.adapters.channels.email.quotes import split_reply
from chalicelib.errors import MalformedPayloadError

__all__ = [
    "ForwardedEmail",
    "ParsedAttachment",
    "ParsedEmail",
    "classify_automatic",
    "decode_bytes",
    "decode_header_value",
    "first_header",
    "header_pairs",
    "msg_ids",
    "parse_address_list",
    "parse_email",
    "parse_email_headers",
    "parse_header_block",
    "part_content_type",
    "part_param",
    "safe_filename",
    "thread_keys_for",
]

#: Deeper nesting than any mail client produces; beyond it parts are not descended into.
MAX_DEPTH = 24
#: Parts looked at per message; the rest are skipped (a zip bomb of empty parts costs nothing).
MAX_PARTS = 500
#: References kept for thread keys: the newest ones, which are the ones a case can be found by.
MAX_REFERENCES = 20
#: Message ids longer than this are garbage, not ids (they would bloat every thread key).
MAX_MSG_ID_LENGTH = 250
#: Header values kept in `ParsedEmail.headers`.
MAX_HEADER_VALUE = 998
#: Characters of an address header (From, To, Cc) parsed: about 150 addresses, of which the hub
#: keeps 20. The standard library's address parser is quadratic on some garbage.
MAX_ADDRESS_LIST = 8192
#: Characters of Content-Type / Content-Disposition the `email` package's own parameter parser
#: sees (it only needs the boundary; `_Part`). Real ones are a few hundred characters.
MAX_PACKAGE_PARAMETERS = 2048

THREAD_KEY_PREFIX = "email:"

#: Headers copied to `ParsedEmail.headers` (lower-case names, decoded values).
KEPT_HEADERS = (
    "message-id", "in-reply-to", "references", "from", "sender", "reply-to", "to", "cc", "subject",
    "date", "return-path", "auto-submitted", "precedence", "x-precedence", "x-autoreply",
    "x-autorespond", "x-auto-response-suppress", "x-failed-recipients", "list-id", "content-type",
    # Exchange's loop guard: set on what an inbox rule or the out-of-office assistant sent.
    "x-ms-exchange-inbox-rules-loop",
    # Verdicts the receiving provider adds on top (the first occurrence is the topmost, theirs).
    "received-spf", "authentication-results", "x-mailgun-spf", "x-mailgun-dkim-check-result",
)

#: Charsets declared as Latin-1 are nearly always Windows-1252 in practice (the WHATWG
#: encoding standard maps them the same way): smart quotes and € survive.
_CHARSET_ALIASES = {"latin-1": "cp1252", "iso8859-1": "cp1252", "ascii": "ascii"}
#: Codecs Python knows that no mail charset means: they would reinterpret the text.
_UNSAFE_CODECS = {"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined", "unicode-internal"}

_AUTO_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
_BOUNCE_LOCALPARTS = {"mailer-daemon", "postmaster"}
#: Weak signal only (see the module docstring).
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:(?:auto(?:matic)?(?:[ _-]?reply)|autoreply|auto-response|out of (?:the )?office|abwesenheit\w*"
    r"|automatische antwort|automatische r[üu]ckantwort|r[ée]ponse automatique|absence|vacation(?: reply)?"
    r"|respuesta autom[áa]tica|fuera de la oficina)\b|auto:)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str | None
    content_type: str
    #: Decoded size in bytes.
    size: int
    #: Content-ID without angle brackets: what an HTML body's `cid:` links point to.
    content_id: str | None = None
    #: Shown inside the body (an inline image) rather than offered as a file.
    inline: bool = False
    #: The decoded bytes; None when over the caller's `max_attachment_bytes`.
    content: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ForwardedEmail:
    """A message/rfc822 part: an email forwarded as an attachment."""

    message_id: str | None
    from_address: str | None
    from_name: str | None
    subject: str | None
    date: datetime | None
    text: str


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    thread_keys: list[str]
    from_address: str | None
    from_name: str | None
    to: list[str]
    cc: list[str]
    reply_to: list[str]
    subject: str | None
    date: datetime | None
    #: What the sender wrote now, without quoted history and signature.
    text: str
    #: The whole body as text (HTML converted when there is no text/plain).
    full_text: str
    html: str | None
    attachments: list[ParsedAttachment]
    forwarded: list[ForwardedEmail]
    is_auto_reply: bool
    auto_reply_reason: str | None
    #: A subject that looks automatic; a weak signal that never ignores a message by itself.
    auto_reply_hint: bool
    is_bounce: bool
    bounce_reason: str | None
    from_own_address: bool
    #: The headers above that were present, lower-case names, decoded values.
    headers: dict[str, str]
    #: Names of the MIME defects the parser worked around (for inspection, never fatal).
    defects: list[str] = field(default_factory=list)
    #: The `d=` signing domain of every DKIM-Signature header (claims; the provider's verdict
    #: says whether they passed).
    dkim_domains: list[str] = field(default_factory=list)


# --- decoding helpers ---------------------------------------------------------------------------


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    name = charset.strip().strip('"').split("*")[0].lower()  # RFC 2231 language suffix: utf-8*de
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _UNSAFE_CODECS:
        return None
    return _CHARSET_ALIASES.get(info.name, info.name)


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Text from bytes in a declared (possibly wrong or unknown) charset; never raises.

    The declared charset first, strictly; then UTF-8; then Windows-1252 (see `_decode`).
    """
    return _decode(data, charset)[0]


def _decode(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """(text, the name of the defect worked around or None).

    Text that is not in its declared charset is nearly always 8-bit Windows text labelled UTF-8
    or ASCII (or not labelled): after UTF-8 it is read as Windows-1252, then Latin-1, which maps
    every byte. A declared legacy charset that fails (a Shift_JIS text with one broken byte) keeps
    that charset with replacement characters: read as Windows-1252, all of it would be garbled.
    """
    codec = _codec(charset)
    defect = "UnknownCharset" if charset and codec is None else None
    if codec is not None:
        try:
            return data.decode(codec), None
        except (UnicodeError, LookupError):
            defect = "TextNotInDeclaredCharset"
    if codec != "utf-8":
        try:
            return data.decode("utf-8"), defect
        except UnicodeError:
            pass
    if codec not in (None, "ascii", "utf-8", "cp1252"):
        return data.decode(codec, "replace"), defect
    try:
        return data.decode("cp1252"), defect
    except UnicodeError:  # the five bytes Windows-1252 leaves undefined
        return data.decode("latin-1"), defect


_SURROGATES = re.compile("[\ud800-\udfff]")


def _scrub(value: str) -> str:
    """Undo `surrogateescape` (8-bit bytes in headers) and drop anything not encodable."""
    if not _SURROGATES.search(value):
        return value
    try:
        return decode_bytes(value.encode("utf-8", "surrogateescape"))
    except UnicodeError:
        return value.encode("utf-8", "replace").decode("utf-8")


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([qQbB])\?([^?\s]*)\?=")


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        if encoding in "bB":
            payload = payload.rstrip("=")
            return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
        return quopri.decodestring(payload.replace("_", " ").encode("ascii"), header=False)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def decode_header_value(value: str | None) -> str:
    """A header value as text: unfolded, 8-bit bytes and RFC 2047 encoded words decoded.

    Adjacent encoded words in one charset are joined before decoding, because senders split
    UTF-8 characters across words; whitespace between encoded words is dropped (RFC 2047 §6.2).
    """
    if not value:
        return ""
    value = re.sub(r"\r?\n[ \t]", " ", _scrub(str(value))).replace("\r", "").replace("\n", " ")
    if "=?" not in value:
        return value.strip()
    out: list[str] = []
    pending: tuple[str, bytearray] | None = None
    position = 0
    for match in _ENCODED_WORD.finditer(value):
        gap = value[position:match.start()]
        charset, encoding, payload = match.groups()
        decoded = _word_bytes(encoding, payload)
        if decoded is None:  # not decodable: keep the literal text
            if pending:
                out.append(decode_bytes(bytes(pending[1]), pending[0]))
                pending = None
            out.append(gap + match.group(0))
            position = match.end()
            continue
        if pending is not None and not gap.strip():
            if pending[0].lower() == charset.lower():
                pending[1].extend(decoded)
            else:
                out.append(decode_bytes(bytes(pending[1]), pending[0]))
                pending = (charset, bytearray(decoded))
        else:
            if pending is not None:
                out.append(decode_bytes(bytes(pending[1]), pending[0]))
            out.append(gap)
            pending = (charset, bytearray(decoded))
        position = match.end()
    if pending is not None:
        out.append(decode_bytes(bytes(pending[1]), pending[0]))
    out.append(value[position:])
    return "".join(out).strip()


_MSG_ID = re.compile(r"<\s*([^<>\s]+?)\s*>")


def msg_ids(value: str | None) -> list[str]:
    """The message ids in a Message-ID / In-Reply-To / References value, without angle brackets,
    in order, duplicates removed. Tolerates ids sent without brackets."""
    if not value:
        return []
    text = _scrub(value)
    found = _MSG_ID.findall(text)
    if not found:
        found = [token.strip("<>,;") for token in text.split() if "@" in token]
    return list(dict.fromkeys(i for i in found if i and len(i) <= MAX_MSG_ID_LENGTH))


def thread_keys_for(message_id: str | None, in_reply_to: Iterable[str] = (), references: Iterable[str] = ()) -> list[str]:
    """`email:<id>` keys: this message first, then what it replies to, then references newest first."""
    ids = [message_id] if message_id else []
    ids += list(in_reply_to)
    ids += list(reversed(list(references)))[:MAX_REFERENCES]
    return [THREAD_KEY_PREFIX + i for i in dict.fromkeys(ids)]


def parse_address_list(value: str | None) -> list[tuple[str | None, str]]:
    """(display name, address) pairs of an address header; names RFC 2047 decoded.

    Parsed before decoding, so an encoded name with a comma ("Müller, Hans") stays one address.
    Only the first `MAX_ADDRESS_LIST` characters are read (see there).
    """
    if not value:
        return []
    raw = re.sub(r"\r?\n[ \t]", " ", _scrub(str(value)))
    if len(raw) > MAX_ADDRESS_LIST:
        raw = raw[:MAX_ADDRESS_LIST]
        raw = raw[:raw.rfind(",")] if "," in raw else raw  # no address cut in half
    try:
        pairs = email.utils.getaddresses([raw])
    except Exception:  # noqa: BLE001 - getaddresses has raised on hostile input in past releases
        pairs = []
    result = []
    for name, address in pairs:
        address = address.strip()
        if "@" not in address or len(address) > 320 or any(c.isspace() for c in address):
            continue
        result.append((decode_header_value(name) or None, address))
    if not result:  # "user@example.com" mangled by a display name getaddresses refused
        match = _BRACKETED_ADDRESS.search(raw) or _BARE_ADDRESS.search(raw)
        if match:
            result.append((None, match.group(1)))
    return result


#: Address parts bounded (RFC 5321: 64 + 255) and without "@": unbounded, every start position
#: rescanned the rest of a long header, quadratic in its length.
_BRACKETED_ADDRESS = re.compile(r"<([^<>@\s]{1,64}@[^<>@\s]{1,255})>")
_BARE_ADDRESS = re.compile(r"([^<>\s,;:\"@]{1,64}@[^<>\s,;:\"@]{1,255})")


def _datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: join soft line breaks (a line ending in a space)."""
    out: list[str] = []
    buffer: str | None = None
    depth_of_buffer = -1
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        body = line[depth:]
        if body.startswith(" "):
            body = body[1:]  # space-stuffing
        if buffer is not None and depth == depth_of_buffer:
            body = buffer + body
        elif buffer is not None:
            out.append(">" * depth_of_buffer + (" " if depth_of_buffer else "") + buffer)
        buffer = None
        if body.endswith(" ") and body != "-- ":
            buffer = body[:-1] if delsp else body
            depth_of_buffer = depth
            continue
        out.append(">" * depth + (" " if depth and body else "") + body)
    if buffer is not None:
        out.append(">" * depth_of_buffer + (" " if depth_of_buffer else "") + buffer)
    return "\n".join(out)

# --- the MIME tree ------------------------------------------------------------------------------


class _Walk:
    """Collects the bodies, attachments and report parts of one MIME tree."""

    def __init__(
        self, max_attachment_bytes: int | None, counter: list[int] | None = None, defects: list[str] | None = None
    ) -> None:
        self.max_attachment_bytes = max_attachment_bytes
        self.texts: list[str] = []
        self.htmls: list[str] = []
        self.attachments: list[ParsedAttachment] = []
        self.forwarded: list[ForwardedEmail] = []
        self.report_types: set[str] = set()
        self.delivery_status = False
        #: Parts seen in the whole message, shared with every child walk.
        self.counter = counter if counter is not None else [0]
        self.truncated = False
        #: Defects of the bodies (charsets), shared with every child walk like the counter.
        self.defects = defects if defects is not None else []

    def child(self) -> _Walk:
        return _Walk(self.max_attachment_bytes, self.counter, self.defects)

    def _count(self) -> bool:
        """Counts one more part; False, and the walk marked truncated, past `MAX_PARTS`."""
        self.counter[0] += 1
        if self.counter[0] > MAX_PARTS:
            self.truncated = True
            return False
        return True

    def absorb(self, sub: _Walk, *, texts: bool = True, htmls: bool = True) -> None:
        if texts:
            self.texts += sub.texts
        if htmls:
            self.htmls += sub.htmls
        self.attachments += sub.attachments
        self.forwarded += sub.forwarded
        self.report_types |= sub.report_types
        self.delivery_status |= sub.delivery_status
        self.truncated |= sub.truncated

    def walk(self, part: Message, depth: int = 0, *, in_report: bool = False) -> None:
        if not self._count() or depth > MAX_DEPTH:
            self.truncated = True
            return
        ctype = part_content_type(part)
        if ctype == "message/delivery-status":
            self.delivery_status = True
            self._attach(part, ctype)
            return
        if ctype in ("message/rfc822", "message/global") and part.is_multipart():
            inner = part.get_payload(0)
            if isinstance(inner, Message) and not in_report:
                self.forwarded.append(self._forwarded(inner, depth))
            self._attach(part, ctype)
            return
        if part.is_multipart():
            children = [c for c in part.get_payload() if isinstance(c, Message)]
            if ctype == "multipart/alternative":
                self._alternative(children, depth)
                return
            if ctype == "multipart/report":
                report_type = part_param(part, "report-type")
                if report_type:
                    self.report_types.add(report_type.lower())
                in_report = True
            if ctype == "multipart/related" and children:
                start = part_param(part, "start")
                first = next((c for c in children if start and _content_id(c) == start.strip("<> ")), children[0])
                self.walk(first, depth + 1, in_report=in_report)
                for resource in children:
                    if resource is not first:
                        if not self._count():
                            return
                        self._attach(resource, part_content_type(resource), inline=True)
                return
            for sub in children:
                self.walk(sub, depth + 1, in_report=in_report)
            return
        disposition = _disposition(part)
        filename = _filename(part)
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            body = _text_payload(part, self.defects)
            if ctype == "text/plain":
                if (part_param(part, "format") or "").lower() == "flowed":
                    body = _unflow(body, (part_param(part, "delsp") or "").lower() == "yes")
                self.texts.append(body)
            else:
                self.htmls.append(body)
            return
        if part.get_content_maintype() == "multipart":  # declared multipart, no boundary found
            self.texts.append(_text_payload(part, self.defects))
            return
        self._attach(part, ctype, filename=filename, disposition=disposition)

    def _alternative(self, children: list[Message], depth: int) -> None:
        subs = []
        for child in children:
            sub = self.child()
            sub.walk(child, depth + 1)
            subs.append(sub)
        plain = next((s for s in reversed(subs) if s.texts), None)
        rich = next((s for s in reversed(subs) if s.htmls), None)
        for sub in subs:
            self.absorb(sub, texts=sub is plain, htmls=sub is rich)

    def _forwarded(self, inner: Message, depth: int) -> ForwardedEmail:
        sub = self.child()
        sub.walk(inner, depth + 1)
        self.truncated |= sub.truncated
        headers = header_pairs(inner)
        sender = parse_address_list(first_header(headers, "from"))
        ids = msg_ids(first_header(headers, "message-id"))
        return ForwardedEmail(
            message_id=ids[0] if ids else None,
            from_address=sender[0][1] if sender else None,
            from_name=sender[0][0] if sender else None,
            subject=decode_header_value(first_header(headers, "subject")) or None,
            date=_datetime(decode_header_value(first_header(headers, "date"))),
            text=_body_text(sub),
        )

    def _attach(
        self, part: Message, ctype: str, *, filename: str | None = None, disposition: str | None = None,
        inline: bool = False,
    ) -> None:
        if filename is None:
            filename = _filename(part)
        if disposition is None:
            disposition = _disposition(part)
        content_id = _content_id(part)
        if part.is_multipart():
            payload = _serialize(part)
            if filename is None and ctype in ("message/rfc822", "message/global"):
                inner = part.get_payload(0)
                subject = decode_header_value(first_header(header_pairs(inner), "subject")) if isinstance(inner, Message) else ""
                filename = safe_filename(f"{subject or 'forwarded'}.eml")
        else:
            payload = _payload_bytes(part)
        keep = self.max_attachment_bytes is None or len(payload) <= self.max_attachment_bytes
        self.attachments.append(
            ParsedAttachment(
                filename=filename,
                content_type=ctype,
                size=len(payload),
                content_id=content_id,
                inline=disposition != "attachment" and (inline or disposition == "inline" or content_id is not None),
                content=payload if keep else None,
            )
        )


def part_content_type(part: Message) -> str:
    """The part's media type, lower-case; `text/plain` (RFC 2045's default) when unreadable and
    `application/octet-stream` when it is not a well-formed type."""
    try:
        ctype = part.get_content_type()
    except Exception:  # noqa: BLE001 - a header the registry cannot parse: RFC 2045's default
        return "text/plain"
    return ctype if re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", ctype) else "application/octet-stream"


def part_param(part: Message, name: str, header: str = "content-type") -> str | None:
    """A header parameter, RFC 2231 decoded, read from the raw header: the package's own
    accessors turn 8-bit (raw UTF-8) parameter values into U+FFFD."""
    raw = first_header(header_pairs(part), header)
    return _param_of(raw, name) if raw is not None else None


def _param_of(raw: str, name: str) -> str | None:
    """What `Message.get_param` answers, RFC 2231 collapsed, but split in linear time: the
    package's splitter (`email.message._parseparam`) rescans the rest of the header once per
    parameter, and once per semicolon while a quote is open."""
    pairs = []
    for piece in _split_params(re.sub(r"\r?\n[ \t]", " ", _scrub(raw))):
        key, equals, value = piece.partition("=")
        pairs.append((key.strip().lower(), value.strip()) if equals else (piece.strip(), ""))
    try:
        # The first piece (the type) is looked at too, undecoded, as the package does.
        params = email.utils.decode_params(pairs)
        value = next((v for k, v in params if k.lower() == name.lower()), None)
        if isinstance(value, tuple):
            value = email.utils.collapse_rfc2231_value((value[0], value[1], email.utils.unquote(value[2])))
        elif value is not None:
            value = email.utils.unquote(value)
    except Exception:  # noqa: BLE001 - a parameter list the package cannot decode
        return None
    return _scrub(str(value)) if value is not None else None


_QUOTE_OR_SEMICOLON = re.compile('[";]')


def _split_params(value: str) -> list[str]:
    """`value` split at the semicolons outside quoted strings, by the package's rule: a quote
    preceded by a backslash neither opens nor closes one."""
    pieces: list[str] = []
    start = 0
    quoted = False
    for match in _QUOTE_OR_SEMICOLON.finditer(value):
        at = match.start()
        if value[at] == '"':
            if at == 0 or value[at - 1] != "\\":
                quoted = not quoted
        elif not quoted:
            pieces.append(value[start:at])
            start = at + 1
    pieces.append(value[start:])
    return pieces


class _Part(Message):
    """A compat32 message whose Content-Type and Content-Disposition, as the `email` package
    reads them (for the boundary, while parsing), end after `MAX_PACKAGE_PARAMETERS`
    characters: its parameter splitter is quadratic in a header's length. This module reads
    parameters from the raw headers itself (`_param`)."""

    def get(self, name: str, failobj: object = None) -> object:
        value = super().get(name, failobj)
        if value is failobj or name.lower() not in ("content-type", "content-disposition"):
            return value
        text = str(value)
        if len(text) <= MAX_PACKAGE_PARAMETERS:
            return value
        cut = text.rfind(";", 0, MAX_PACKAGE_PARAMETERS)
        return text[:cut if cut > 0 else MAX_PACKAGE_PARAMETERS]


def _disposition(part: Message) -> str | None:
    raw = first_header(header_pairs(part), "content-disposition")
    if not raw:
        return None
    value = raw.split(";", 1)[0].strip().lower()
    return value if value in ("inline", "attachment") else None


def _content_id(part: Message) -> str | None:
    ids = msg_ids(first_header(header_pairs(part), "content-id"))
    return ids[0] if ids else None


def safe_filename(name: str) -> str | None:
    """A sender's file name without directories or control characters, at most 255 characters:
    it ends up in blob keys and in vendors' upload forms."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:255] or None


def _filename(part: Message) -> str | None:
    name = None
    for header in ("content-disposition", "content-type"):
        try:
            name = part_param(part, "filename" if header == "content-disposition" else "name", header)
        except Exception:  # noqa: BLE001
            name = None
        if name:
            break
    if not name:
        return None
    # RFC 2047 words inside a quoted parameter are not standard, but Outlook and Gmail send them.
    return safe_filename(decode_header_value(name) if "=?" in name else name)


def _payload_bytes(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - a transfer encoding the package cannot undo: keep raw text
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return b""


def _serialize(part: Message) -> bytes:
    try:
        return part.as_bytes(policy=email.policy.compat32)
    except Exception:  # noqa: BLE001 - a tree the generator cannot rebuild
        return b""


def _text_payload(part: Message, defects: list[str]) -> str:
    text, defect = _decode(_payload_bytes(part), part_param(part, "charset"))
    if defect:
        defects.append(defect)
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _html_text(html: str, defects: list[str]) -> str:
    if len(html) > MAX_HTML_TO_TEXT:
        defects.append("HtmlTooLongForText")
    return html_to_text(html)


def _body_text(walk: _Walk) -> str:
    if any(t.strip() for t in walk.texts):
        body = "\n\n".join(t.strip("\n") for t in walk.texts if t.strip())
    elif walk.htmls:
        body = _html_text("\n".join(walk.htmls), walk.defects)
    else:
        body = ""
    for fwd in walk.forwarded:
        lines = ["---------- Forwarded message ----------"]
        if fwd.from_address:
            lines.append(f"From: {fwd.from_name} <{fwd.from_address}>" if fwd.from_name else f"From: {fwd.from_address}")
        if fwd.subject:
            lines.append(f"Subject: {fwd.subject}")
        body = (body.rstrip("\n") + "\n\n" if body.strip() else "") + "\n".join(lines) + "\n\n" + fwd.text
    return body.strip("\n")


def header_pairs(part: Message) -> list[tuple[str, str]]:
    """Header names (lower-case) and raw values, without the header registry's parsing."""
    try:
        return [(_scrub(str(name)).lower(), str(value)) for name, value in part.raw_items()]
    except Exception:  # noqa: BLE001
        return []


def parse_header_block(block: bytes) -> list[tuple[str, str]]:
    """Header (name, raw value) pairs of a bare header block, such as SendGrid's `headers` field.
    Never raises; values are decoded later by `parse_email_headers`."""
    try:
        message = email.message_from_bytes(block.strip(b"\r\n") + b"\r\n\r\n", policy=email.policy.compat32)
    except Exception:  # noqa: BLE001
        return []
    return [(name, value) for name, value in header_pairs(message)]


def first_header(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of header `name` (lower-case): the topmost, the one the last hop added."""
    return next((value for key, value in pairs if key == name), None)


# --- classification -----------------------------------------------------------------------------


#: The subjects Exchange gives out-of-office replies, in the languages quote detection knows.
_EXCHANGE_AUTO_SUBJECT = re.compile(
    r"\s*(?:automatic reply|automatische antwort|r[ée]ponse automatique|respuesta autom[áa]tica"
    r"|automatisch antwoord|risposta automatica)\s?:",
    re.IGNORECASE,
)
_COMMENT = re.compile(r"\([^()]*\)")


def _auto_submitted(value: str | None) -> str:
    """The keyword of an Auto-Submitted value. RFC 3834 §5 allows comments around it and
    parameters after it: "no (sent by a person)" is "no", a person's mail."""
    text = value or ""
    for _ in range(3):  # comments nest
        text = _COMMENT.sub(" ", text)
    words = text.split(";", 1)[0].split()
    return words[0].lower() if words else ""


def _exchange_auto_reply(headers: Mapping[str, str], exchange: bool) -> str | None:
    """Exchange's out-of-office replies carry no RFC 3834 header. X-MS-Exchange-Inbox-Rules-Loop
    marks what an inbox rule or the out-of-office assistant sent, and they ask for no answer
    (X-Auto-Response-Suppress: All); alone, either is ordinary mail (a rule's forward, a mail
    merge). Their localized subject counts only on mail that came through Exchange: customers
    write "Out of office?" subjects too.
    https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-oxcmail/ced68690-498a-4567-9d14-5c01f974d8b1"""
    suppress = {v.strip().lower() for v in (headers.get("x-auto-response-suppress") or "").split(",")}
    if headers.get("x-ms-exchange-inbox-rules-loop") is not None and "all" in suppress:
        return "Exchange automatic reply (X-MS-Exchange-Inbox-Rules-Loop, X-Auto-Response-Suppress: All)"
    if exchange and _EXCHANGE_AUTO_SUBJECT.match(headers.get("subject") or ""):
        return "Exchange automatic reply (subject)"
    return None


def classify_automatic(
    headers: Mapping[str, str], *, from_address: str | None, report_type: str | None = None,
    delivery_status: bool = False, exchange: bool = False,
) -> tuple[str | None, str | None]:
    """(auto-reply reason, bounce reason) from decoded headers (lower-case names); None when not.
    `exchange`: the mail has X-MS-Exchange-* headers (it came through Microsoft Exchange).

    Shared by the raw-MIME path and the providers' parsed-field paths, so every email adapter
    ignores the same mail.
    """
    auto = bounce = None
    local = (from_address or "").rsplit("@", 1)[0].lower()
    if delivery_status or report_type == "delivery-status":
        bounce = "delivery status notification (multipart/report)"
    elif report_type == "feedback-report":
        bounce = "spam complaint (RFC 5965 feedback report)"
    elif local in _BOUNCE_LOCALPARTS:
        bounce = f"sent by {local}"
    elif headers.get("x-failed-recipients"):
        bounce = "X-Failed-Recipients header"
    elif (headers.get("return-path") or "").replace(" ", "") == "<>":
        bounce = "null Return-Path (<>)"
    submitted = _auto_submitted(headers.get("auto-submitted"))
    precedence = (headers.get("precedence") or headers.get("x-precedence") or "").strip().lower()
    exchange_reply = _exchange_auto_reply(headers, exchange)
    if submitted and submitted != "no":
        auto = f"Auto-Submitted: {submitted[:40]}"
    elif headers.get("x-autoreply") is not None:
        auto = "X-Autoreply header"
    elif headers.get("x-autorespond") is not None:
        auto = "X-Autorespond header"
    elif precedence in _AUTO_PRECEDENCE:
        auto = f"Precedence: {precedence}"
    elif report_type == "disposition-notification":
        auto = "read receipt (disposition notification)"
    elif exchange_reply is not None:
        auto = exchange_reply
    return auto, bounce


_DKIM_DOMAIN = re.compile(r"(?:^|;)\s*d\s*=\s*([A-Za-z0-9.-]+)")


def _dkim_domains(pairs: list[tuple[str, str]]) -> list[str]:
    found = []
    for name, value in pairs:
        if name == "dkim-signature":
            match = _DKIM_DOMAIN.search(re.sub(r"\s+", " ", _scrub(value)))
            if match:
                found.append(match.group(1).lower().rstrip("."))
    return list(dict.fromkeys(found))[:10]


def _report_type(content_type: str | None) -> str | None:
    """The report-type of a `multipart/report` Content-Type value (the parsed modes have no MIME tree)."""
    if not content_type or not content_type.strip().lower().startswith("multipart/report"):
        return None
    match = re.search(r'(?i)report-type\s*=\s*"?([A-Za-z0-9._-]+)', content_type)
    return match.group(1).lower() if match else None


def _own(address: str | None, own_addresses: frozenset[str]) -> bool:
    """Exact addresses, case-insensitive; an entry "@domain" matches the whole domain."""
    if not address or not own_addresses:
        return False
    address = address.lower()
    domain = "@" + address.rsplit("@", 1)[-1]
    return any(address == own.lower() or (own.startswith("@") and domain == own.lower()) for own in own_addresses)


def parse_email_headers(
    headers: Iterable[tuple[str, str]],
    *,
    text: str = "",
    html: str | None = None,
    attachments: Iterable[ParsedAttachment] = (),
    own_addresses: frozenset[str] = frozenset(),
    report_type: str | None = None,
    delivery_status: bool = False,
    defects: Iterable[str] = (),
) -> ParsedEmail:
    """A `ParsedEmail` from header pairs and already-decoded bodies: what the providers' parsed
    modes (Mailgun fields, SendGrid's default mode) hand over instead of raw MIME. `text` is the
    full plain body; HTML is converted when it is empty."""
    pairs = [(name.lower(), value) for name, value in headers]
    if report_type is None:
        report_type = _report_type(first_header(pairs, "content-type"))
    decoded = {}
    for name in KEPT_HEADERS:
        value = first_header(pairs, name)
        if value is not None:
            decoded[name] = decode_header_value(value)[:MAX_HEADER_VALUE]
    sender = parse_address_list(first_header(pairs, "from"))
    from_name, from_address = sender[0] if sender else (None, None)
    ids = msg_ids(first_header(pairs, "message-id"))
    replies_to = msg_ids(first_header(pairs, "in-reply-to"))
    references = msg_ids(first_header(pairs, "references"))
    defects = list(defects)
    full_text = (text or "").replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    if not full_text.strip() and html:
        full_text = _html_text(html, defects)
    new_text, _ = split_reply(full_text)
    subject = decoded.get("subject") or None
    auto, bounce = classify_automatic(
        decoded, from_address=from_address, report_type=report_type, delivery_status=delivery_status,
        exchange=any(name.startswith("x-ms-exchange-") for name, _ in pairs),
    )
    return ParsedEmail(
        message_id=ids[0] if ids else None,
        in_reply_to=replies_to[0] if replies_to else None,
        references=references,
        thread_keys=thread_keys_for(ids[0] if ids else None, replies_to, references),
        from_address=from_address,
        from_name=from_name,
        to=[a for _, a in parse_address_list(first_header(pairs, "to"))],
        cc=[a for _, a in parse_address_list(first_header(pairs, "cc"))],
        reply_to=[a for _, a in parse_address_list(first_header(pairs, "reply-to"))],
        subject=subject,
        date=_datetime(decoded.get("date")),
        text=new_text,
        full_text=full_text,
        html=html or None,
        attachments=list(attachments),
        forwarded=[],
        is_auto_reply=auto is not None,
        auto_reply_reason=auto,
        auto_reply_hint=bool(subject and _AUTO_SUBJECT.match(subject)),
        is_bounce=bounce is not None,
        bounce_reason=bounce,
        from_own_address=_own(from_address, own_addresses),
        headers=decoded,
        defects=defects,
        dkim_domains=_dkim_domains(pairs),
    )


def parse_email(
    raw: bytes, *, own_addresses: frozenset[str] = frozenset(), max_attachment_bytes: int | None = None
) -> ParsedEmail:
    """Parse one RFC 5322 message. Raises `MalformedPayloadError` for input that is not a
    message (empty, no header block) or that the parser cannot take apart; everything else is
    parsed leniently, with the defects listed in `ParsedEmail.defects`."""
    if isinstance(raw, (bytearray, memoryview)):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise MalformedPayloadError("raw MIME must be bytes")
    if not raw.strip():
        raise MalformedPayloadError("empty email message")
    try:
        # compat32: see "Hostile input" in the module docstring; headers are read raw below.
        message = email.message_from_bytes(raw, _class=_Part, policy=email.policy.compat32)
        if not message.keys():
            raise MalformedPayloadError("not an email message: no header block")
        walk = _Walk(max_attachment_bytes)
        walk.walk(message)
        text = _body_text(walk)
        defects = [type(d).__name__ for d in message.defects] + walk.defects
        if walk.truncated:
            defects.append("TooManyPartsOrTooDeep")
        report_type = next(iter(sorted(walk.report_types)), None)
        html = "\n".join(walk.htmls) or None
        parsed = parse_email_headers(
            header_pairs(message),
            text=text,
            html=html,
            attachments=walk.attachments,
            own_addresses=own_addresses,
            report_type=report_type,
            delivery_status=walk.delivery_status,
            defects=defects,
        )
        return replace(parsed, forwarded=walk.forwarded) if walk.forwarded else parsed
    except MalformedPayloadError:
        raise
    except (Exception, RecursionError) as exc:  # noqa: BLE001 - the promise: nothing but a 400
        raise MalformedPayloadError(f"unparseable MIME message ({type(exc).__name__})") from None
