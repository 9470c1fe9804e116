"""Webhook form bodies (RFC 7578 multipart/form-data and urlencoded), as Mailgun and SendGrid post
inbound mail. Values stay bytes until a field is read as text, so raw MIME stays exact and text
fields decode in the charset the provider names.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from dataclasses import dataclass, field
from email.message import Message

from chalicelib.adapters.channels.email.mime import (
    decode_bytes,
    decode_header_value,
    first_header,
    header_pairs,
    part_content_type,
    part_param,
    safe_filename,
)
from chalicelib.errors import MalformedPayloadError

__all__ = ["FormData", "FormPart", "media_type", "parse_form"]

#: Form fields per request; Mailgun and SendGrid send a few dozen plus one per attachment.
MAX_FORM_PARTS = 1000


@dataclass(frozen=True)
class FormPart:
    name: str
    #: The exact bytes of the value (a file's content, or text in the part's or sender's charset).
    data: bytes = field(repr=False)
    filename: str | None = None
    content_type: str | None = None
    charset: str | None = None


class FormData:
    """A provider's form POST, values kept as bytes so text fields can be decoded in the charset
    the provider names (SendGrid's `charsets`) and raw MIME (`body-mime`, `email`) stays exact."""

    def __init__(self, parts: list[FormPart]) -> None:
        self.parts = parts
        self._by_name: dict[str, list[FormPart]] = {}
        for part in parts:
            self._by_name.setdefault(part.name, []).append(part)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return list(self._by_name)

    def part(self, name: str) -> FormPart | None:
        parts = self._by_name.get(name)
        return parts[0] if parts else None

    def data(self, name: str) -> bytes | None:
        part = self.part(name)
        return part.data if part is not None else None

    def text(self, name: str, charset: str | None = None) -> str | None:
        """The field as text: in `charset`, else the part's own charset, else UTF-8 (with the
        lenient fallbacks of `decode_bytes`)."""
        part = self.part(name)
        if part is None:
            return None
        return decode_bytes(part.data, charset or part.charset).replace("\x00", "")

    def texts(self, name: str) -> list[str]:
        return [decode_bytes(p.data, p.charset).replace("\x00", "") for p in self._by_name.get(name, [])]

    def files(self) -> list[FormPart]:
        return [p for p in self.parts if p.filename is not None]


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_form(body: bytes, content_type: str | None) -> FormData:
    """A urlencoded or multipart/form-data body. Raises `MalformedPayloadError`."""
    kind = media_type(content_type)
    if kind == "multipart/form-data":
        return FormData(_multipart(body, content_type or ""))
    if kind in ("application/x-www-form-urlencoded", ""):
        return FormData(_urlencoded(body))
    raise MalformedPayloadError(f"expected a form body, not {kind}")


def _urlencoded(body: bytes) -> list[FormPart]:
    from urllib.parse import parse_qsl

    # Latin-1 maps every byte to one character and back: %-escaped 8-bit MIME survives exactly.
    try:
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1",
                          max_num_fields=MAX_FORM_PARTS)
    except ValueError:
        raise MalformedPayloadError(f"form body has more than {MAX_FORM_PARTS} fields") from None
    return [
        FormPart(name=decode_bytes(name.encode("latin-1")), data=value.encode("latin-1"))
        for name, value in pairs
    ]


def _multipart(body: bytes, content_type: str) -> list[FormPart]:
    header = Message(policy=email.policy.compat32)
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if isinstance(boundary, tuple):
        boundary = email.utils.collapse_rfc2231_value(boundary)
    if not boundary or not isinstance(boundary, str) or len(boundary) > 200:
        raise MalformedPayloadError("multipart/form-data without a boundary")
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    if body.startswith(delimiter):
        position = 0
    else:
        position = body.find(b"\n" + delimiter)
        if position < 0:
            raise MalformedPayloadError("multipart body does not contain its boundary")
        position += 1
    newline = b"\r\n" if body[position + len(delimiter):].lstrip(b" \t").startswith(b"\r\n") else b"\n"
    parts: list[FormPart] = []
    while True:
        position += len(delimiter)
        if body[position:position + 2] == b"--":
            return parts
        line_end = body.find(newline, position)
        if line_end < 0:
            raise MalformedPayloadError("multipart body ends inside a boundary line")
        start = line_end + len(newline)
        end = body.find(newline + delimiter, start)
        if end < 0:
            raise MalformedPayloadError("multipart body is not terminated by its closing boundary")
        if len(parts) >= MAX_FORM_PARTS:
            raise MalformedPayloadError(f"form body has more than {MAX_FORM_PARTS} parts")
        part = _form_part(body[start:end], newline)
        if part is not None:
            parts.append(part)
        position = end + len(newline)


def _form_part(chunk: bytes, newline: bytes) -> FormPart | None:
    separator = newline + newline
    if chunk.startswith(newline):
        head, data = b"", chunk[len(newline):]
    else:
        cut = chunk.find(separator)
        if cut < 0:
            raise MalformedPayloadError("multipart part without a blank line after its headers")
        head, data = chunk[:cut], chunk[cut + len(separator):]
    headers = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.compat32)
    name = part_param(headers, "name", "content-disposition")
    if not name:
        return None
    filename = part_param(headers, "filename", "content-disposition")
    ctype = first_header(header_pairs(headers), "content-type")
    return FormPart(
        name=name,
        data=data,
        filename=(safe_filename(decode_header_value(filename)) or "attachment") if filename is not None else None,
        content_type=part_content_type(headers) if ctype else None,
        charset=part_param(headers, "charset") if ctype else None,
    )
