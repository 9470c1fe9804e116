"""Readable text from an email's HTML body (for HTML-only mail, and for quote detection).

Paragraphs and line breaks are kept, links become "text (url)", blockquotes become `> ` lines so
quoted history is recognized like plain-text quotes, scripts and styles are dropped. The
standard library's `html.parser` does the tokenizing; this module bounds what it sees
(`_bounded_html`), because the parser itself is quadratic on some unclosed markup.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

__all__ = ["html_to_text", "tidy"]

#: HTML characters converted to text (an HTML-only mail has no text/plain to read instead).
#: A person writes far less; what lies beyond is bulky markup or long quoted history at the end.
#: The cut only shortens `text`/`full_text` (of which the hub keeps `MAX_FULL_TEXT` anyway):
#: `ParsedEmail.html` keeps the whole HTML, and the raw message stays with the provider (or in
#: S3 for SES). It bounds the standard library's HTML parser, which is slow on some garbage.
MAX_HTML_TO_TEXT = 256 * 1024
#: A link's text longer than this is not searched for the link's own URL (it is shown after it).
MAX_LINK_LABEL = 1000
#: Blockquote levels shown as "> " prefixes; deeper ones look the same. Unbounded, each line of
#: HTML nested N deep would cost N characters of text.
MAX_QUOTE_PREFIX = 20

_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "thead", "tfoot", "tr", "ul",
}
_PARAGRAPH_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "hr"}
_SKIP_TAGS = {"script", "style", "title", "template", "noscript", "svg", "head"}


_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")
#: What an HTML signature delimiter looks like before spaces collapse: "-- " (Gmail's
#: `gmail_signature_prefix`), which must survive as the plain-text delimiter.
_HTML_SIGNATURE = re.compile(r"[ \t\r\n\f\v]*--[ \u00a0]")


class _HTMLText(HTMLParser):
    """Collects lines of text. Work stays linear in the HTML: the length of the current line is
    kept as a running count, and a link remembers where its text starts in the current line, so
    neither is recomputed from the whole line at every link."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.current_length = 0
        #: Lines flushed so far: a link whose text started before the last flush spans lines.
        self.flushes = 0
        self.skip = 0
        self.quote = 0
        self.pre = 0
        #: Open links: (href, index into `current`, `current_length` then, `flushes` then).
        self.links: list[tuple[str | None, int, int, int]] = []

    def _add(self, text: str) -> None:
        self.current.append(text)
        self.current_length += len(text)

    def _flush(self, *, force: bool = False) -> None:
        text = "".join(self.current)
        self.current = []
        self.current_length = 0
        self.flushes += 1
        if not self.pre:
            collapsed = _SPACES.sub(" ", text).strip()
            text = "-- " if collapsed == "--" and _HTML_SIGNATURE.match(text) else collapsed
        depth = min(self.quote, MAX_QUOTE_PREFIX)
        if text or force:
            self.lines.append("> " * depth + text if text else ">" * depth)

    def _blank(self) -> None:
        self._flush()
        if self.lines and self.lines[-1].strip("> ") != "":
            self.lines.append(">" * min(self.quote, MAX_QUOTE_PREFIX))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            if tag != "head" or not self.lines:
                self.skip += 1
            return
        if tag == "body" and self.skip:  # a <head> left open
            self.skip = 0
        if tag == "br":
            self._flush(force=True)
        elif tag in _PARAGRAPH_TAGS:
            self._blank()
        elif tag in _BLOCK_TAGS:
            self._flush()
        if tag == "blockquote":
            self.quote += 1
        elif tag == "pre":
            self.pre += 1
        elif tag == "li":
            self._add("- ")
        elif tag in ("td", "th"):
            self._add(" ")
        elif tag == "a":
            self.links.append((dict(attrs).get("href"), len(self.current), self.current_length, self.flushes))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
            return
        if tag == "a" and self.links:
            self._link_end(*self.links.pop())
            return
        if tag == "blockquote":
            self._flush()
            self.quote = max(0, self.quote - 1)
            self._blank()
        elif tag == "pre":
            self._flush()
            self.pre = max(0, self.pre - 1)
        elif tag in _PARAGRAPH_TAGS:
            self._blank()
        elif tag in _BLOCK_TAGS:
            self._flush()

    def _link_end(self, href: str | None, index: int, start: int, flushes: int) -> None:
        """Shows the URL after the link text, unless the text already shows it."""
        target = (href or "").strip()
        shown = target[7:] if target.lower().startswith("mailto:") else target
        if not shown or not re.match(r"(?i)(https?:|mailto:)", target):
            return
        within = flushes == self.flushes and self.current_length - start <= MAX_LINK_LABEL
        label = "".join(self.current[index:]) if within else ""
        if shown not in label:
            self._add(f" ({shown})")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre and "\n" in data:
            head, *rest = data.split("\n")
            self._add(head)
            for line in rest:
                self._flush(force=True)
                self._add(line)
            return
        self._add(data)

    def text(self) -> str:
        self._flush()
        return tidy("\n".join(self.lines))


def tidy(text: str) -> str:
    # "-- " keeps its space: it is the signature delimiter (RFC 3676 §4.3).
    lines = [line if line == "-- " else line.rstrip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if not line.strip("> ") and out and not out[-1].strip("> "):
            continue
        out.append(line)
    return "\n".join(out).strip("\n")


#: What closes a comment, an Outlook marked section (<![if …]>) and a standard one (<![CDATA[…]]>),
#: as `html.parser` searches for them.
_COMMENT_CLOSE = re.compile(r"--\s*>")
_MS_SECTION_CLOSE = re.compile(r"]\s*>")
_SECTION_CLOSE = re.compile(r"]\s*]\s*>")
_SECTION_OPEN = re.compile(r"<!\[([a-zA-Z][-_.a-zA-Z0-9]*)")


def _last_start(pattern: re.Pattern[str], text: str) -> int:
    return max((m.start() for m in pattern.finditer(text)), default=-1)


def _bounded_html(html: str) -> str:
    """At most `MAX_HTML_TO_TEXT` characters of `html` (no tag cut in half), with every markup
    opener that nothing after it can close written as text (`&lt;`). `html.parser` shows such an
    opener as text too, but only after searching the rest of the document for its closer, once
    per opener: quadratic on "<!<!<!…", "<!--x><!--x>…" or "<![if x><![if x>…"."""
    if len(html) > MAX_HTML_TO_TEXT:
        html = html[:MAX_HTML_TO_TEXT]
        last_open = html.rfind("<")
        if last_open > html.rfind(">"):
            html = html[:last_open]
    end = html.rfind(">") + 1
    if "<" in html[end:]:
        html = html[:end] + html[end:].replace("<", "&lt;")
    if "<!--" in html:
        comments_closed_before = _last_start(_COMMENT_CLOSE, html) - 3
        html = re.sub("<!--", lambda m: m[0] if m.start() < comments_closed_before else "&lt;!--", html)
    if "<![" in html:
        closed_before = {"ms": _last_start(_MS_SECTION_CLOSE, html) - 2, "standard": _last_start(_SECTION_CLOSE, html) - 2}

        def section(match: re.Match[str]) -> str:
            kind = "ms" if match[1].lower() in ("if", "else", "endif") else "standard"
            return match[0] if match.start() < closed_before[kind] else "&lt;" + match[0][1:]

        html = _SECTION_OPEN.sub(section, html)
    return html


def html_to_text(html: str) -> str:
    """Readable text from an HTML body: paragraphs and line breaks kept, links as "text (url)",
    blockquotes as `> ` lines (so quoted history is recognized), scripts and styles dropped.
    Only the first `MAX_HTML_TO_TEXT` characters are converted."""
    html = _bounded_html(html)
    parser = _HTMLText()
    try:
        parser.feed(html)
        parser.close()
        return parser.text()
    except (AssertionError, ValueError, IndexError, RecursionError):  # _markupbase on broken declarations
        stripped = _without_scripts(html)
        stripped = re.sub(r"(?i)<br\s*/?>|</p\s*>|</div\s*>", "\n", stripped)
        return tidy(unescape(re.sub(r"<[^<>]*>", " ", stripped)))


_SCRIPT_START = re.compile(r"<(script|style)\b", re.IGNORECASE)
_SCRIPT_END = {name: re.compile(f"</{name}", re.IGNORECASE) for name in ("script", "style")}


def _without_scripts(html: str) -> str:
    """`html` without <script> and <style> elements (an unclosed one runs to the end). A loop, not
    one lazy regular expression, which would rescan the rest of the text for every unclosed one."""
    out: list[str] = []
    position = 0
    while (match := _SCRIPT_START.search(html, position)) is not None:
        out.append(html[position:match.start()] + " ")
        close = _SCRIPT_END[match.group(1).lower()].search(html, match.end())
        if close is None:
            return "".join(out)
        end = html.find(">", close.end())
        position = len(html) if end < 0 else end + 1
    out.append(html[position:])
    return "".join(out)
