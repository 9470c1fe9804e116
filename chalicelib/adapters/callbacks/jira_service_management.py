"""Jira Service Management: agents' public comments and issue transitions come back through a Jira
admin webhook with a secret (https://developer.atlassian.com/cloud/jira/platform/webhooks/).

What Jira sends, and where each fact comes from (docs/destinations/jira-service-management.md,
"Answering from Jira Service Management", lists the sources):

- the body is Jira's own JSON, not a template an admin typed, so a reply is relayed as the
  webhook states it (`confirmed`): `webhookEvent`, `timestamp` (ms), `issue.{id, key, fields}`,
  `comment.{id, body, author, created, jsdPublic}` and `changelog.{id, items[]}`;
- `X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>` on webhooks registered with a
  secret. Every source read (Atlassian's Data Center page, jira.js, Hookdeck) shows the `sha256=`
  prefix and none says Cloud drops it, so it is required;
- nothing with a time is signed: there is no replay window, a replay is dropped by its id instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

from chalicelib.adapters.connectors.settings.jira_service_management import (  # noqa: F401 (re-exported)
    JiraCallbackSettings,
)
from chalicelib.adapters.callbacks.base import (
    CallbackRequest,
    CallbackSetup,
    ParsedCallback,
    SetupStep,
    VendorCallbacks,
    event_digest,
    parse_time,
)
from chalicelib.domain.models import AgentAuthor, AgentReply, CaseStatusChange
from chalicelib.errors import ConfigError, MalformedPayloadError, PermanentDeliveryError, SignatureError
from chalicelib.signing.compare import hmac_sha256, signed_by_any

SIGNATURE_HEADER = "X-Hub-Signature"
#: Unique per delivery and unchanged across Jira's retries (jira.js `WebhookHeaders`).
IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
#: The events the hub subscribes to: a new comment, and an issue's field changes.
EVENTS = ("comment_created", "jira:issue_updated")
#: Admin webhooks: the Jira REST resource behind System → WebHooks.
WEBHOOKS = "/rest/webhooks/1.0/webhook"
#: Jira's status category of finished work; its key is `done` whatever the status is named.
DONE = "done"
#: The hub case id the connector ends a request's summary with (`case_id_in_summary`).
_CASE_IN_SUMMARY = re.compile(r"\[(case_[0-9A-Za-z]{1,64})\]\s*$")
#: Comments by these account types are the customer's own (a portal or email reply).
_CUSTOMER_ACCOUNTS = frozenset({"customer"})
#: Events that reach the hub's URL when an admin subscribed to more than it needs: skipped with
#: a reason, not kept as unhandled.
_NOT_FOLLOWED = {
    "comment_updated": "an edited comment is not a new reply (the first version was already relayed)",
    "comment_deleted": "a deleted comment cannot be taken back from the customer",
    "jira:issue_created": "a new issue is not an answer (the hub raised its own requests)",
    "jira:issue_deleted": "a deleted issue is not a status the case follows",
}


class JiraServiceManagementCallbacks(VendorCallbacks):
    takes_notes = True
    settings: JiraCallbackSettings

    # --- request path ----------------------------------------------------------------------------

    def verify(self, request: CallbackRequest) -> None:
        header = (request.header(SIGNATURE_HEADER) or "").strip()
        if not header:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header (the Jira webhook needs a secret)")
        match = _SIGNATURE.fullmatch(header)
        if match is None:
            raise SignatureError(f"{SIGNATURE_HEADER} must be 'sha256=' followed by 64 hex digits")
        # Over the raw bytes: Jira's JSON re-serialised would not be the bytes it signed.
        if not signed_by_any(lambda secret: hmac_sha256(secret, request.body).hex(), self.secrets(), match[1].lower()):
            raise SignatureError(f"{SIGNATURE_HEADER} does not match the body for any of callbacks.secrets")

    def parse(self, request: CallbackRequest) -> ParsedCallback:
        try:
            payload = json.loads(request.body)
        except ValueError:
            raise MalformedPayloadError("the body is not JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("webhookEvent"), str):
            raise MalformedPayloadError("webhookEvent: missing (not a Jira webhook body)")
        event = payload["webhookEvent"]
        parsed = ParsedCallback()
        if event in _NOT_FOLLOWED:
            parsed.ignored.append(f"{event}: {_NOT_FOLLOWED[event]}")
            return parsed
        issue = payload.get("issue")
        key = issue.get("key") if isinstance(issue, dict) else None
        if event not in EVENTS or not isinstance(key, str) or not key:
            reason = f"{event}: not an event the hub follows" if event not in EVENTS else f"{event}: issue.key missing"
            parsed.unhandled.append(self.unhandled(reason, payload, request))
            return parsed
        if event == "comment_created":
            self._comment(payload, issue, request, parsed)
        else:
            self._issue_updated(payload, issue, request, parsed)
        return parsed

    def _comment(self, payload: dict, issue: dict, request: CallbackRequest, parsed: ParsedCallback) -> None:
        comment = payload.get("comment")
        if not isinstance(comment, dict) or comment.get("id") in (None, ""):
            parsed.unhandled.append(self.unhandled("comment_created: comment.id missing", payload, request))
            return
        author = comment.get("author") if isinstance(comment.get("author"), dict) else {}
        author_id = _text(author.get("accountId"))
        text = comment_text(comment.get("body"))
        skipped = self._not_a_reply(comment, author, author_id, issue, text)
        if skipped is not None:
            parsed.ignored.append(f"comment {comment['id']} on {issue['key']}: {skipped}")
            return
        parsed.items.append(AgentReply(
            destination=self.destination, ticket=issue["key"], case_id=_case_hint(issue),
            # The comment id, not the delivery id: the same comment reported twice (Jira's retry,
            # or two webhooks an admin registered for the same URL) is one reply.
            event_id=f"comment:{comment['id']}",
            comment_id=str(comment["id"]),
            author=AgentAuthor(id=author_id, name=_text(author.get("displayName")),
                               email=_text(author.get("emailAddress"))),
            text=text, confirmed=True,
            occurred_at=parse_time(comment.get("created")) or parse_time(payload.get("timestamp")),
            received_at=request.received_at,
        ))

    def _not_a_reply(self, comment: dict, author: dict, author_id: str | None, issue: dict,
                     text: str | None) -> str | None:
        """Why a new comment must not reach the customer, else None."""
        # `jsdPublic` is what JSM shows the customer; a comment without it (restricted to a role
        # or group, or outside a service project) is treated as internal.
        if comment.get("jsdPublic") is not True or comment.get("visibility"):
            return "internal comment"
        echo = self.echo_reason(text, author_id)
        if echo is not None:
            return echo
        reporter = _fields(issue).get("reporter")
        reporter_id = reporter.get("accountId") if isinstance(reporter, dict) else None
        if author.get("accountType") in _CUSTOMER_ACCOUNTS or (author_id and author_id == reporter_id):
            return "the customer's own comment (portal or email)"
        if not text:
            return "no text (attachments are not relayed)"
        return None

    def _issue_updated(self, payload: dict, issue: dict, request: CallbackRequest, parsed: ParsedCallback) -> None:
        changelog = payload.get("changelog") if isinstance(payload.get("changelog"), dict) else {}
        items = [i for i in changelog.get("items") or [] if isinstance(i, dict)]
        changed = {str(i.get("fieldId") or i.get("field") or "").lower(): i for i in items}
        status, assignee, priority = changed.get("status"), changed.get("assignee"), changed.get("priority")
        if status is None and assignee is None and priority is None:
            parsed.ignored.append(f"jira:issue_updated on {issue['key']}: no status, assignee or priority change")
            return
        vendor_status = _text(status.get("toString")) if status is not None else None
        parsed.items.append(CaseStatusChange(
            destination=self.destination, ticket=issue["key"], case_id=_case_hint(issue),
            # The changelog id names this change across retries and duplicate registrations.
            event_id=f"changelog:{changelog['id']}" if changelog.get("id") else _delivery_id(request, payload),
            state=self._state(vendor_status, issue) if status is not None else None,
            vendor_status=vendor_status,
            # Unassigned is "" (recorded), not None (which would keep the earlier assignee).
            assignee=(_text(assignee.get("toString")) or _text(assignee.get("to")) or "") if assignee else None,
            priority=_text(priority.get("toString")) if priority is not None else None,
            occurred_at=parse_time(payload.get("timestamp")), received_at=request.received_at,
        ))

    def _state(self, vendor_status: str | None, issue: dict) -> str | None:
        """`closed` for a status the destination counts as closing, `open` for any other; None
        when Jira did not say which category the new status is in."""
        if self.settings.closed_statuses:
            closing = {name.casefold() for name in self.settings.closed_statuses}
            return "closed" if (vendor_status or "").casefold() in closing else "open"
        status = _fields(issue).get("status")
        category = status.get("statusCategory") if isinstance(status, dict) else None
        key = category.get("key") if isinstance(category, dict) else None
        if not isinstance(key, str):
            return None
        return "closed" if key == DONE else "open"

    # --- worker ----------------------------------------------------------------------------------

    def note(self, ticket: str, text: str, *, reply_ref: str | None = None) -> str | None:
        """An internal comment (`public: false`): agents see it, the customer never does."""
        from urllib.parse import quote

        from chalicelib.adapters.connectors.jira_service_management import REQUESTS, wiki_text

        response = self.connector.api.call(  # type: ignore[attr-defined]
            "POST", f"{REQUESTS}/{quote(ticket, safe='')}/comment",
            json_body={"body": wiki_text(text), "public": False})
        comment_id = response.data.get("id") if isinstance(response.data, dict) else None
        return f"{ticket}/comment/{comment_id}" if comment_id is not None else None

    # --- operator --------------------------------------------------------------------------------

    def setup(self) -> CallbackSetup:
        jql = self.settings.jql_filter or "project = <the service project's key>"
        return CallbackSetup(
            vendor="Jira Service Management",
            steps=[
                SetupStep(
                    title="Create a Jira webhook with a secret",
                    values={"Name": self.settings.webhook_name, "URL": self.callback_url(),
                            "Secret": "the first of callbacks.secrets", "Issue related events (JQL)": jql,
                            "Events": "Comment: created; Issue: updated", "Exclude body": "no"},
                    text="Jira settings → System → WebHooks → Create a WebHook (Jira administrators only). "
                         "Jira signs each delivery with the secret (X-Hub-Signature).",
                ),
                SetupStep(
                    title="Tell the hub which account it writes as",
                    values={"callbacks.hub_author_ids": ", ".join(self.settings.hub_author_ids)
                            or "accountId of the connector's API user (not set yet)"},
                    text="GET /rest/api/3/myself as that user shows its accountId. Its comments (the "
                         "customer's messages and the hub's outbound messages) are never sent back.",
                ),
            ],
            limits=[
                "Attachments of an agent's comment do not reach the customer; only its text does.",
                "An edited comment is not sent again; a deleted one cannot be taken back.",
                "Jira signs no timestamp: a replayed delivery is recognised by its comment or changelog "
                "id, not by its age.",
            ],
            can_create=True,
        )

    def create_setup(self) -> list[str]:
        """Registers the admin webhook, unless one already posts to the hub's URL. Needs the
        connector's API user to be a Jira administrator."""
        url = self.callback_url()
        if "<" in url:
            raise ConfigError("callbacks.public_url: needed to register the Jira webhook")
        api = self.connector.api  # type: ignore[attr-defined]
        try:
            existing = api.call("GET", WEBHOOKS).data
            for webhook in existing if isinstance(existing, list) else []:
                if isinstance(webhook, dict) and webhook.get("url") == url:
                    # `hubctl` prints each line after "created ".
                    return [f"nothing: Jira webhook {webhook.get('name')!r} already posts to {url} "
                            f"({webhook.get('self')})"]
            body = {"name": self.settings.webhook_name, "url": url, "events": list(EVENTS),
                    "filters": {"issue-related-events-section": self.settings.jql_filter or self._desk_jql()},
                    "excludeBody": False, "secret": self.secrets()[0]}
            created = api.call("POST", WEBHOOKS, json_body=body).data
        except PermanentDeliveryError as refused:
            raise ConfigError(f"Jira refused the webhook (the API user must be a Jira administrator): "
                              f"{refused.message}") from None
        where = created.get("self") if isinstance(created, dict) else None
        return [f"Jira webhook {self.settings.webhook_name!r} → {url}, events {', '.join(EVENTS)}"
                + (f" ({where})" if where else "")]

    def _desk_jql(self) -> str:
        """`project = <key>` of the destination's service desk."""
        desk = self.connector.settings.service_desk_id  # type: ignore[attr-defined]
        data = self.connector.api.call("GET", f"/rest/servicedeskapi/servicedesk/{desk}").data  # type: ignore[attr-defined]
        key = data.get("projectKey") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key:
            raise ConfigError(f"service desk {desk} has no projectKey; set callbacks.jql_filter")
        return f'project = "{key}"'


# --- comment bodies ----------------------------------------------------------------------------------


def comment_text(body: Any) -> str | None:
    """A comment body as the plain text a customer's channel shows: Jira webhooks render it as
    wiki markup (a string); an Atlassian Document Format document (a dict, what the v3 API
    returns) is read too."""
    if isinstance(body, dict):
        text = _adf_text(body)
    elif isinstance(body, str):
        text = wiki_plain(body)
    else:
        return None
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() or None


#: Wiki markup, read left to right: an escaped character, a forced line break, a mention, an
#: attachment or embedded image, a link, a macro tag, a heading or list marker.
_WIKI = re.compile(
    r"(?P<escaped>\\(?P<char>[^\\\n]))"
    r"|(?P<linebreak>\\\\)"
    r"|(?P<mention>\[~[^\]\n]*\])"
    r"|(?P<attachment>\[\^[^\]\n]*\]|![^\s!|]+\.[A-Za-z0-9]{2,5}(?:\|[^!\n]*)?!)"
    r"|\[(?P<alias>[^\]|\n]*)\|(?P<target>[^\]\n]+)\]"
    r"|\[(?P<bare>(?:https?|mailto):[^\]\n]+)\]"
    r"|(?P<macro>\{(?:code|noformat|quote|panel|color)(?::[^}\n]*)?\})"
    r"|(?P<heading>^h[1-6]\.\s+)"
    r"|(?P<bullet>^[*#-]+\s+)",
    re.MULTILINE,
)


def wiki_plain(text: str) -> str:
    """Jira wiki markup as plain text. *Bold* and _italic_ stay as typed: WhatsApp and most chat
    channels read the same marks."""

    def plain(match: re.Match[str]) -> str:
        if match["escaped"]:
            return match["char"]
        if match["linebreak"]:
            return "\n"
        if match["mention"] or match["attachment"] or match["macro"] or match["heading"]:
            return ""
        if match["bullet"]:
            return "• "
        if match["target"] is not None:
            alias, target = match["alias"].strip(), match["target"].strip()
            target = target.removeprefix("mailto:")
            return target if not alias or alias == target else f"{alias} ({target})"
        return match["bare"].removeprefix("mailto:")

    return _WIKI.sub(plain, text.replace("\r\n", "\n"))


#: ADF nodes that end a line.
_ADF_BLOCKS = frozenset({"paragraph", "heading", "blockquote", "codeBlock", "listItem", "panel", "rule", "tableRow"})


def _adf_text(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    attrs = node.get("attrs") if isinstance(node.get("attrs"), dict) else {}
    if kind == "text":
        text = str(node.get("text") or "")
        links = [m.get("attrs", {}).get("href") for m in node.get("marks") or []
                 if isinstance(m, dict) and m.get("type") == "link" and isinstance(m.get("attrs"), dict)]
        href = next((h for h in links if isinstance(h, str) and h), None)
        return f"{text} ({href})" if href and href != text else text
    if kind == "hardBreak":
        return "\n"
    if kind in ("emoji", "date", "status"):
        return str(attrs.get("text") or "")
    if kind in ("inlineCard", "blockCard"):
        return str(attrs.get("url") or "")
    if kind in ("mention", "media", "mediaGroup", "mediaSingle"):
        return ""
    inner = "".join(_adf_text(child) for child in node.get("content") or [])
    if kind == "listItem":
        inner = "• " + inner.strip("\n")
    return inner + "\n" if kind in _ADF_BLOCKS else inner


# --- payload helpers ---------------------------------------------------------------------------------


def _fields(issue: dict) -> dict:
    fields = issue.get("fields")
    return fields if isinstance(fields, dict) else {}


def _case_hint(issue: dict) -> str | None:
    summary = _fields(issue).get("summary")
    match = _CASE_IN_SUMMARY.search(summary) if isinstance(summary, str) else None
    return match[1] if match else None


def _delivery_id(request: CallbackRequest, payload: dict) -> str:
    """Jira's delivery id, the same on its retries; a digest of what identifies the event when
    the header is missing (a proxy that drops it)."""
    given = (request.header(IDENTIFIER_HEADER) or "").strip()
    if given:
        return f"delivery:{given}"
    issue = payload.get("issue") if isinstance(payload.get("issue"), dict) else {}
    return "digest:" + event_digest(payload.get("webhookEvent"), issue.get("id"), payload.get("timestamp"),
                                    json.dumps(payload.get("changelog"), sort_keys=True))


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
