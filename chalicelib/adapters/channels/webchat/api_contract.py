"""The web chat's own HTTP API in the OpenAPI document (`GET /v1/openapi.json`): what its widget,
or any client of the protocol (docs/channels/webchat.md), calls, and the widget's own pages.

The generic webhook operations say "a provider's payload"; a browser client needs the real shapes,
so these operations name the concrete paths, answered by the generic routes (`served_by`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from chalicelib.adapters.channels.webchat.adapter import WebchatMessage
from chalicelib.api.openapi.spec import JSON, Body, Operation, Param, Reply
from chalicelib.service.visitor_outbox import OutboxEntry

_ETAG = Param("If-None-Match", "The ETag of the copy the browser holds.")


class WebchatAccepted(BaseModel):
    """The answer to a visitor's message: queued, with what the widget polls replies with."""

    status: Literal["accepted"]
    message_id: str | None = Field(default=None, description="The widget's own `message_id`, echoed.")
    visitor_token: str | None = Field(default=None, description="The bearer token for `GET /webhooks/webchat/messages`.")


class WebchatReplies(BaseModel):
    """A visitor's replies after the cursor, oldest first."""

    data: list[OutboxEntry]
    cursor: str | None = Field(description="Pass as `after` next time; unchanged when there is nothing new.")


def operations() -> list[Operation]:
    return [
        Operation("POST", "/webhooks/webchat", "webchat_send", "webchat", "A visitor's message from the widget",
                  (Reply(202, "Queued (a repeated `message_id` is the same message).", WebchatAccepted),),
                  (400, 401, 403, 404, 413, 415, 503), body=Body({JSON: WebchatMessage}),
                  served_by="/webhooks/{provider}",
                  headers=(Param("Origin", "The page's origin, checked against the site's `allowed_origins`."),),
                  description="401 for an unknown site or a `user_hash` that does not match; 403 for an origin "
                              "the site does not allow; 400 names the field at fault."),
        Operation("GET", "/webhooks/webchat/messages", "webchat_replies", "webchat",
                  "The visitor's replies, polled by the widget",
                  (Reply(200, "The replies after `after`.", WebchatReplies),), (400, 401, 404, 503),
                  served_by="/webhooks/{provider}/{hook}",
                  query=(Param("site_id", "The site.", required=True), Param("visitor_id", "The visitor.", required=True),
                         Param("after", "The `cursor` of the previous answer.")),
                  headers=(Param("Authorization", "`Bearer <visitor_token>` from the message's answer.", required=True),),
                  description="404 where the hub serves no web chat replies."),
        Operation("GET", "/webchat/widget.js", "webchat_widget", "webchat", "The web chat widget script",
                  (Reply(200, "The script; embed with one `<script>` tag and the site id (docs/channels/webchat.md).",
                         {"type": "string"}, media="text/javascript"),
                   Reply(304, "Unchanged since the `If-None-Match` ETag.", media=None)), (),
                  headers=(_ETAG,)),
        Operation("GET", "/webchat/demo.html", "webchat_demo", "webchat",
                  "The web chat widget's demo page (embedded runtime only)",
                  (Reply(200, "The demo page, embedding the widget for the first configured site.", {"type": "string"},
                         media="text/html"),), (400, 403, 404),
                  description="404 on AWS and when no web chat site is configured; 400 names a parameter it cannot "
                              "use; 403 for a claim to sign unless only this machine can ask (a hub on loopback).",
                  query=tuple(Param(name, text) for name, text in (
                      ("external_id", "A claim the demo signs with the site's first identity secret, as a site's backend would."),
                      ("email", "An e-mail claim to sign."), ("phone", "A phone claim to sign."),
                      ("name", "The visitor's name."), ("lang", "`de` or `en`.")))),
    ]
