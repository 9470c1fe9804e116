"""What the sender wrote now versus the quoted history below it, in an email's text.

`split_reply` cuts a body into what the sender wrote now (`ParsedEmail.text`) and the history below
it. Everything from the first reply attribution ("On <date> … wrote:", "Am <date> … schrieb …:"),
separator ("-----Original Message-----", "---------- Forwarded message ----------") or Outlook
header block ("From: …", then at least two of "Sent:", "To:", "Subject:") on is history, `>`-quoted
lines are dropped (so bottom-posted and interleaved answers survive), and a signature after the
"-- " line and mobile footers ("Sent from my iPhone") are cut. `ParsedEmail.full_text` keeps
everything. Detection errs towards keeping text: an attribution needs a date digit or an address
(or a quote right after it), a header block needs a Subject line or an address, and a bare "--"
line is text, not a signature delimiter. Signatures without the "-- " delimiter are not detected.
"""

from __future__ import annotations

import re

from chalicelib.adapters.channels.email.html import tidy

__all__ = ["split_reply"]

#: Lines longer than this are never taken for a reply attribution or header line: real ones
#: ("On <date>, <name> <address> wrote:") are short, and bounding what the patterns see keeps
#: quote detection linear in the body, whatever a hostile line looks like.
MAX_ATTRIBUTION_LINE = 1000

#: Reply attributions as (how it starts, what it must contain), matched on the line (or up to three
#: wrapped lines joined) ending in ":". Keyword-led forms: "On <date>, <name> wrote:".
_ATTRIBUTION = tuple(
    (re.compile(start, re.IGNORECASE), re.compile(verb, re.IGNORECASE))
    for start, verb in (
        (r"On\b", r"\bwrote\s*:$"),
        (r"Am\b", r"\bschrieb\b"),
        (r"Am\b", r"\bgeschrieben\s*:$"),  # "Am <date> hat <name> geschrieben:"
        (r"Le\b", r"\ba [ée]crit\s*:$"),
        (r"El\b", r"\bescribi[óo]\s*:$"),
        (r"Op\b", r"\bschreef\b"),
    )
)
#: Attributions without a leading keyword; matched on one line only, so a sentence followed by
#: a quote header is never taken for one. Address parts bounded: no backtracking across a line.
_ATTRIBUTION_LINE = tuple(
    (re.compile(""), re.compile(verb, re.IGNORECASE))
    for verb in (
        r"\bschrieb am\b",
        r"<[^<>\s@]{1,64}@[^<>\s@]{1,255}>\s*(?:wrote|schrieb|a [ée]crit|escribi[óo])\s*:$",
    )
)
#: What makes "… wrote:" an attribution and not a sentence: its date (a digit) or an address.
_ATTRIBUTION_EVIDENCE = re.compile(r"\d|[^\s<>@]@[^\s<>@]")
_SEPARATOR = re.compile(
    r"\s*(?:-{2,}\s*(?:Original(?:ly)? Message|Urspr[üu]ngliche Nachricht|Originalnachricht|Message d'origine"
    r"|Mensaje original|Forwarded message|Weitergeleitete Nachricht|Message transf[ée]r[ée])\s*-{2,}"
    r"|(?:Begin forwarded message|Anfang der weitergeleiteten Nachricht)\s*:)\s*$",
    re.IGNORECASE,
)
#: A line of a quoted header block: "Sent: …", "*Von:* …", "De : …" (bounded: one short word).
_HEADER_FIELD = re.compile(r"[ \t]{0,20}\*?([^\W\d_]{1,12})[ \t]?:\*?(?:\s|$)")
_FIELD_KINDS = {
    **dict.fromkeys(("from", "von", "de", "van", "fra"), "from"),
    **dict.fromkeys(("sent", "gesendet", "date", "datum", "envoyé", "enviado", "verzonden", "fecha"), "date"),
    **dict.fromkeys(("to", "an", "à", "para", "aan", "til"), "to"),
    **dict.fromkeys(("subject", "betreff", "objet", "asunto", "onderwerp", "emne"), "subject"),
    **dict.fromkeys(("cc", "bcc", "kopie", "cci", "cco"), "cc"),
}
_RULE = re.compile(r"\s*_{10,}\s*$")
_QUOTED = re.compile(r"\s*>")
#: Mobile footers: a device or app name of a few words, nothing after it.
_MOBILE_FOOTER = re.compile(
    r"\s*(?:Sent from my {w}|Sent from (?:Outlook|Mail|Yahoo Mail)(?: (?:for|on) {w})?|Get Outlook for {w}"
    r"|Von meinem {w} gesendet|Gesendet von meinem {w}|Gesendet mit der {w} App|Envoy[ée] de mon {w})\.?\s*$"
    .replace("{w}", r"[\w.'’&+-]{1,40}(?: [\w.'’&+-]{1,40}){0,3}"),
    re.IGNORECASE,
)


def _field(line: str) -> str | None:
    """The kind of header line `line` is ('from', 'date', 'to', 'subject', 'cc'), or None."""
    match = _HEADER_FIELD.match(line)
    return _FIELD_KINDS.get(match.group(1).lower()) if match else None


def _header_block(lines: list[str], i: int, *, after_rule: bool = False) -> bool:
    """Whether line i starts a quoted header block, as Outlook and Apple Mail write one: "From:",
    then on the lines right below at least two of date ("Sent:"/"Date:"), "To:" and "Subject:".
    Without a rule line above it, it also needs a Subject line or an address in From:, so a
    customer's "From: Frankfurt / To: New York / Date: 12 May" stays text."""
    line = lines[i]
    if _field(line) != "from" or not line.split(":", 1)[1].strip(" \t*"):
        return False
    kinds = set()
    for following in lines[i + 1:i + 7]:
        kind = _field(following)
        if kind is None or kind == "from":
            break
        kinds.add(kind)
    found = len(kinds & {"date", "to", "subject"})
    if after_rule:
        return found >= 1
    return found >= 2 and ("subject" in kinds or "@" in line)


def _next_text(lines: list[str], start: int) -> str:
    return next((x for x in lines[start:] if x.strip()), "")


def _attribution(lines: list[str], i: int) -> int:
    """How many lines (1-3: clients wrap long ones) the reply attribution at line i spans, or 0.
    A line shaped like one ("Am Montag schrieb ich Ihnen bereits:") must carry a date digit or an
    address, or be followed by a quote, to count."""
    for span in (1, 2, 3):
        if i + span > len(lines):
            break
        last = lines[i + span - 1]
        if span > 1 and (not last.strip() or _QUOTED.match(last) or len(last) > MAX_ATTRIBUTION_LINE):
            break
        joined = " ".join(x.strip() for x in lines[i:i + span])
        if len(joined) > MAX_ATTRIBUTION_LINE:
            break
        if not joined.endswith(":"):
            continue
        forms = _ATTRIBUTION + _ATTRIBUTION_LINE if span == 1 else _ATTRIBUTION
        if not any(start.match(joined) and verb.search(joined) for start, verb in forms):
            continue
        if _ATTRIBUTION_EVIDENCE.search(joined) or _QUOTED.match(_next_text(lines, i + span)):
            return span
    return 0


def _marker(lines: list[str], i: int) -> tuple[str, int] | None:
    """('attribution' | 'history', lines spanned) when history starts at line i. Lines longer
    than `MAX_ATTRIBUTION_LINE` are never markers, so no pattern ever runs on one."""
    line = lines[i]
    if not line.strip() or len(line) > MAX_ATTRIBUTION_LINE or _QUOTED.match(line):
        return None
    if _SEPARATOR.match(line):
        return "history", 1
    below = range(i + 1, min(i + 3, len(lines)))
    if _RULE.match(line) and any(_header_block(lines, j, after_rule=True) for j in below):
        return "history", 1
    if _header_block(lines, i):
        return "history", 1
    span = _attribution(lines, i)
    return ("attribution", span) if span else None


def split_reply(text: str) -> tuple[str, str]:
    """(new text, the rest) of a plain-text body. See the module docstring for the rules."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    keep: list[str] = []
    i = 0
    cut = len(lines)
    while i < len(lines):
        found = _marker(lines, i)
        if found is not None:
            kind, span = found
            if kind == "attribution" and _QUOTED.match(_next_text(lines, i + span)):
                # A quote follows: drop it below, and keep answers written under or between it.
                i += span
                continue
            cut = i
            break
        if not _QUOTED.match(lines[i]):
            keep.append(lines[i])
        i += 1
    if "-- " in keep:  # RFC 3676 §4.3; a bare "--" is text ("Step 1 / -- / Step 2")
        keep = keep[:keep.index("-- ")]
    while keep and (not keep[-1].strip() or _MOBILE_FOOTER.match(keep[-1])):
        keep.pop()
    new = tidy("\n".join(keep)).strip()
    return new, "\n".join(lines[cut:]).strip("\n")
