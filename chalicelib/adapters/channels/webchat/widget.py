"""The web chat widget's files: the script a site embeds and the embedded hub's demo page.

Both are text files next to this module (`static/`), read once per process. The script is the
committed, readable source itself (no build step, no minified copy to drift from it); its size
budget is a unit test. Imported only by the routes that serve them (`pages.py`).
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template

from chalicelib.errors import ForbiddenError, MalformedPayloadError, NotFoundError

STATIC = Path(__file__).resolve().parent / "static"
#: Short: a fixed widget reaches every site within minutes; the ETag makes the revalidation cheap.
SCRIPT_CACHE_CONTROL = "public, max-age=300"
#: The demo page may carry a freshly signed identity: never cached.
DEMO_CACHE_CONTROL = "no-store"
_CLAIM_LIMITS = {"external_id": 128, "email": 254, "phone": 32, "name": 256}


@dataclass(frozen=True)
class StaticFile:
    body: str
    content_type: str
    etag: str

    def not_modified(self, if_none_match: str | None) -> bool:
        """True when the browser's cached copy (`If-None-Match`) is this file."""
        if not if_none_match:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return self.etag in tags or "*" in tags


@cache
def script() -> StaticFile:
    return _read("widget.js", "text/javascript; charset=utf-8")


@cache
def _demo_template() -> Template:
    return Template(_read("demo.html", "text/html").body)


def _read(name: str, content_type: str) -> StaticFile:
    body = (STATIC / name).read_text(encoding="utf-8")
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]
    return StaticFile(body=body, content_type=content_type, etag=f'"{digest}"')


def demo_page(hub, query: dict[str, str], hub_url: str = "", *, may_sign: bool = False) -> str:
    """The demo page for the first configured site, embedding the widget as a site would.

    `?external_id=…` (or `email`, `phone`, plus `name`) makes the page act as the site's backend
    for a signed-in user: it signs the claim with the site's first identity secret, so the
    signed identity can be tried without writing a backend. `hub_url` makes the snippet one a
    site could copy (the script's address is absolute there). Raises `MalformedPayloadError` for an
    unknown parameter or a claim the hub would refuse, and when the site cannot sign;
    `NotFoundError` when the hub has no web chat site.
    `may_sign`: the caller checked that only this machine can ask (a hub on loopback, asked under a
    loopback name); otherwise a claim is refused (`ForbiddenError`), so a reachable hub never signs
    anyone's identity for anyone.
    """
    from chalicelib.adapters.channels.webchat.adapter import (
        WebchatAdapter,
        signed_claim,
        user_hash,
    )

    adapter = hub.adapter(WebchatAdapter.key)
    if adapter is None:
        raise NotFoundError("no web chat site is configured (channels.webchat.sites)")
    site = adapter.settings.sites[0]
    unknown = sorted(set(query) - set(_CLAIM_LIMITS) - {"lang"})
    if unknown:
        raise MalformedPayloadError(f"unknown query parameter {unknown[0]} (use external_id, email, phone, name, lang)")
    identity = {key: query[key] for key in _CLAIM_LIMITS if query.get(key, "").strip()}
    for key, value in identity.items():
        if len(value) > _CLAIM_LIMITS[key]:
            raise MalformedPayloadError(f"query parameter {key} is longer than {_CLAIM_LIMITS[key]} characters")
    lang = query.get("lang")
    if lang is not None and lang not in ("de", "en"):
        raise MalformedPayloadError("query parameter lang must be de or en")

    attributes = {"src": f"{hub_url}/webchat/widget.js", "data-site-id": site.id}
    if lang:
        attributes["data-lang"] = lang
    for key, value in identity.items():
        attributes["data-" + key.replace("_", "-")] = value
    claim = signed_claim(identity)
    if claim is not None:
        if not may_sign:
            raise ForbiddenError("the demo signs identities only on a hub listening on loopback "
                                 "(HUB_HOST=127.0.0.1), opened at http://127.0.0.1 or http://localhost")
        if not site.identity_secrets:
            raise MalformedPayloadError(f"site {site.id} has no identity_secrets: it cannot sign {claim[0]}")
        # What the site's backend does when it renders a page for a signed-in user.
        attributes["data-user-hash"] = user_hash(adapter.secrets.get(site.identity_secrets[0]), claim[1])
    tag = "<script " + " ".join(f'{name}="{html.escape(value)}"' for name, value in attributes.items()) + " async></script>"
    note = (f"Signed in as {html.escape(claim[1])}: the page carries <code>data-user-hash</code>, "
            "signed with the site's first identity secret." if claim else
            "Anonymous visitor. Add <code>?external_id=cust-1&amp;name=Jane</code> to the address to try a "
            "signed identity (the page then signs it, as the site's backend would).")
    return _demo_template().substitute(
        site_id=html.escape(site.id),
        snippet=html.escape(re.sub(r'data-user-hash="[0-9a-f]+"', 'data-user-hash="…"', tag)),
        identity_note=note,
        script_tag=tag,
    )
