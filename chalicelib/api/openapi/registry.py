"""What the route table cannot say about each route: summary, scope, request and response
shapes, error statuses, query parameters. One `Operation` per (method, path) of `app.routes`.

`tests/unit/test_openapi.py` fails when a route of the table has no entry here or an entry names a
route the table does not have, so a new route cannot ship without its contract.
"""

from __future__ import annotations

from typing import Any

from chalicelib.adapters.channels.registry import API_CONTRACTS, CHANNELS
from chalicelib.api.openapi import models as m
from chalicelib.api.openapi.spec import JSON, Body, Operation, Param, Reply  # noqa: F401 (the registry's vocabulary)
from chalicelib.domain.business_events import EventIn
from chalicelib.domain.models import Case
from chalicelib.domain.stored import MergeRecord
from chalicelib.service.consent import ConsentStatement
from chalicelib.service.dead_letters import DEAD_LETTER_KINDS
from chalicelib.service.exceptions import Release
from chalicelib.service.operations import KIND_SCAN_PAGE_SIZE, KIND_SCAN_PAGES
from chalicelib.service.send_request import SendRequest

#: Statuses every API-key route can answer: a bad parameter or body, no or a wrong key, a key
#: without the scope, the store briefly unavailable.
AUTH_ERRORS = (400, 401, 403, 503)


def provider_operations() -> list[Operation]:
    """What each provider package says of its own routes (`API_CONTRACTS` of the channel registry):
    the web chat's widget API and pages, named here by no provider."""
    from importlib import import_module

    operations: list[Operation] = []
    for target in API_CONTRACTS.values():
        module, _, name = target.partition(":")
        operations += getattr(import_module(module), name)()
    return operations


#: Routes of the table that are not operations: the JSON 404 for paths nothing else serves.
NOT_OPERATIONS = frozenset((method, "/{proxy+}") for method in ("GET", "POST", "PUT", "PATCH", "DELETE"))

LIMIT = Param("limit", "Page size, 1-100 (default 20).", {"type": "integer", "minimum": 1, "maximum": 100})
CURSOR = Param("cursor", "The `next_cursor` of the previous page; absent for the first page.")
PAGE_PARAMS = (LIMIT, CURSOR)

_CUSTOMER_ID = {"customer_id": Param("customer_id", "The customer's id (`cus_…`).")}


def _v1(method: str, path: str, operation_id: str, tag: str, scope: str, summary: str, replies: tuple[Reply, ...],
        errors: tuple[int, ...] = (), **more: Any) -> Operation:
    # Chalice answers 415 for a body that is not JSON.
    body_errors = {415} if more.get("body") is not None else set()
    return Operation(method, path, operation_id, tag, summary, replies,
                     tuple(sorted(set(AUTH_ERRORS) | set(errors) | body_errors)), scope=scope, **more)


def _webhook_operations() -> list[Operation]:
    provider = Param("provider", "A channel provider of the channel registry (answers 404 when not configured).",
                     {"type": "string", "enum": sorted(CHANNELS)})
    hook = Param("hook", "A provider's sub-endpoint (a site, account or hook name), as the provider's docs set it up.")
    raw = Body({JSON: {"type": "object"}, "application/x-www-form-urlencoded": {"type": "object"}},
               description="The provider's payload, verified over the raw bytes with the provider's signature scheme.")
    ack = Reply(200, "Accepted; the body is the provider's expected acknowledgement (JSON, text or TwiML).", media="*/*")
    queued = Reply(202, "Accepted from a browser channel (web chat): `{\"status\": \"accepted\", \"message_id\", "
                        "\"visitor_token\"}`.", {"type": "object"})
    operations = []
    for path, suffix in (("/webhooks/{provider}", ""), ("/webhooks/{provider}/{hook}", "_hook")):
        params = {"provider": provider, "hook": hook}
        operations += [
            Operation("POST", path, f"receive_webhook{suffix}", "webhooks", "Receive a provider's webhook",
                      (ack, queued), (400, 401, 403, 404, 413, 415, 422, 503), body=raw, path_params=params,
                      description="Verify, then parse, then queue: the adapter checks the signature over the raw "
                                  "body (a bad or missing signature answers 401 or 403) and answers as the "
                                  "provider expects."),
            Operation("GET", path, f"verify_webhook{suffix}", "webhooks", "Answer a provider's subscription handshake",
                      (Reply(200, "The handshake's answer (e.g. the echoed challenge).", media="*/*"),),
                      (400, 401, 403, 404, 405, 503), path_params=params,
                      description="Challenge GETs (Meta's `hub.challenge`, X's CRC) are explicit code paths of "
                                  "the adapter; a provider without one answers 405."),
            Operation("OPTIONS", path, f"preflight_webhook{suffix}", "webhooks", "CORS preflight for browser channels",
                      (Reply(204, "The CORS headers the provider's browser clients need.", media=None),),
                      (404, 405, 503), path_params=params,
                      description="Only browser channels (the web chat) answer; others answer 405."),
        ]
    return operations


OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/health", "health", "system", "Liveness and store reachability",
              (Reply(200, "The hub answers and reaches its store.", m.Health),), (503,)),
    Operation("GET", "/v1/openapi.json", "openapi_document", "system", "This document",
              (Reply(200, "The OpenAPI 3.1 document of the hub's API.", {"type": "object"}),), ()),
    Operation("GET", "/v1/me", "who_am_i", "operations", "The presented key's name and scopes (any valid key)",
              (Reply(200, "The key.", m.Me),), (401, 503), any_key=True,
              description="Any configured key may call it, whatever its scopes."),
    _v1("GET", "/v1/status", "hub_status", "operations", "operations",
        "Queue depths, open circuits, rules in force, parked and dead-letter counts",
        (Reply(200, "The status; unreadable parts are null with the reason.", m.HubStatus),)),
    *_webhook_operations(),
    Operation("POST", "/callbacks/{destination}", "receive_callback", "callbacks",
              "Receive a two-way destination's callback (agent reply, ticket status)",
              (Reply(200, "Accepted; the body is what the vendor expects.", media="*/*"),),
              (400, 401, 403, 404, 413, 415, 422, 503),
              body=Body({JSON: {"type": "object"}, "application/x-www-form-urlencoded": {"type": "object"}},
                        description="The vendor's payload, verified by the destination's callback side."),
              path_params={"destination": Param("destination", "A configured destination with a `callbacks` "
                                                               "section (else 404).")}),
    # --- customers -------------------------------------------------------------------------------
    _v1("GET", "/v1/customers", "find_customers", "customers", "customers:read",
        "Find the customer holding an identifier", (Reply(200, "Zero or one customer.", m.CustomerList),),
        query=(Param("identifier", "`kind:value`: `phone:+4915123456789`, `email:jane@example.com`, "
                                   "`webchat:<site>/<visitor>`.", required=True),)),
    _v1("GET", "/v1/customers/{customer_id}", "get_customer", "customers", "customers:read",
        "The golden record", (Reply(200, "The customer.", m.CustomerView),), (404,), path_params=_CUSTOMER_ID),
    _v1("DELETE", "/v1/customers/{customer_id}", "erase_customer", "customers", "customers:erase",
        "Erase the customer everywhere (GDPR Art. 17); idempotent", (Reply(200, "Erased.", m.Erasure),), (404, 409),
        path_params=_CUSTOMER_ID),
    _v1("GET", "/v1/customers/{customer_id}/export", "export_customer", "customers", "customers:read",
        "Everything held about the customer (GDPR Art. 15)", (Reply(200, "The export.", m.CustomerExport),), (404,),
        path_params=_CUSTOMER_ID),
    _v1("POST", "/v1/customers/{customer_id}/merge", "merge_customer", "customers", "customers:write",
        "Merge another customer with this one (the older survives); idempotent",
        (Reply(200, "The surviving customer and the merge.", m.MergeOutcome),), (404, 409, 413, 422),
        body=Body({JSON: m.MergeRequest}), path_params=_CUSTOMER_ID),
    _v1("POST", "/v1/customers/{customer_id}/unmerge", "unmerge_customer", "customers", "customers:write",
        "Take back a merge (the given one or the latest); idempotent",
        (Reply(200, "Both customers restored.", m.UnmergeOutcome),), (404, 409, 413, 422),
        body=Body({JSON: m.UnmergeRequest}, required=False), path_params=_CUSTOMER_ID),
    _v1("GET", "/v1/merges/{merge_id}", "get_merge", "customers", "customers:read", "A merge's audit record",
        (Reply(200, "The merge record.", MergeRecord),), (404,),
        path_params={"merge_id": Param("merge_id", "The merge's id (`mrg_…`).")}),
    _v1("POST", "/v1/customers/{customer_id}/identifiers", "link_identifier", "customers", "customers:write",
        "Link an identifier to the customer", (Reply(200, "The customer.", m.CustomerView),), (404, 409, 413, 422),
        body=Body({JSON: m.LinkRequest}), path_params=_CUSTOMER_ID),
    _v1("PATCH", "/v1/customers/{customer_id}/attributes", "set_attributes", "customers", "customers:write",
        "State attribute values from a source", (Reply(200, "The customer.", m.CustomerView),), (404, 409, 413, 422),
        body=Body({JSON: m.AttributesRequest}), path_params=_CUSTOMER_ID),
    _v1("PUT", "/v1/customers/{customer_id}/consent", "set_consent", "customers", "customers:write",
        "Record consent statements (one or a list)", (Reply(200, "The customer's consent ledger.", m.ConsentLedger),),
        (404, 409, 413, 422), path_params=_CUSTOMER_ID,
        body=Body({JSON: {"oneOf": [{"$ref": "#/components/schemas/ConsentStatement"},
                                    {"type": "array", "items": {"$ref": "#/components/schemas/ConsentStatement"}}]}},
                  refs=(ConsentStatement,))),
    _v1("GET", "/v1/customers/{customer_id}/contacts", "list_customer_contacts", "customers", "customers:read",
        "The customer's timeline, newest first (contacts and business events)",
        (Reply(200, "A page of the timeline.", m.TimelinePage),), (404,), query=PAGE_PARAMS, path_params=_CUSTOMER_ID),
    _v1("GET", "/v1/contacts/{contact_id}", "get_contact", "customers", "customers:read",
        "A contact with its routing decision and delivery log", (Reply(200, "The contact.", m.ContactView),), (404,),
        path_params={"contact_id": Param("contact_id", "The contact's id (`ct_…`).")}),
    _v1("GET", "/v1/cases/{case_id}", "get_case", "customers", "customers:read", "A case",
        (Reply(200, "The case (an idle case reads as closed).", Case),), (404,),
        path_params={"case_id": Param("case_id", "The case's id (`case_…`).")}),
    _v1("POST", "/v1/cases/{case_id}/close", "close_case", "customers", "customers:write", "Close a case; idempotent",
        (Reply(200, "The closed case.", Case),), (404, 409),
        path_params={"case_id": Param("case_id", "The case's id (`case_…`).")}),
    # --- operations ------------------------------------------------------------------------------
    _v1("GET", "/v1/exceptions", "list_exceptions", "operations", "operations",
        "The exception queue: parked contacts, oldest first", (Reply(200, "A page of parked contacts.", m.ParkedPage),),
        query=PAGE_PARAMS),
    _v1("POST", "/v1/exceptions/{contact_id}/resolve", "resolve_exception", "operations", "operations",
        "Release a parked contact with a chosen route; idempotent", (Reply(200, "The released contact.", m.ContactView),),
        (404, 409), body=Body({JSON: Release}, required=False),
        path_params={"contact_id": Param("contact_id", "The parked contact's id (`ct_…`).")}),
    _v1("POST", "/v1/routing/explain", "explain_routing", "operations", "operations",
        "The routing decision and trace for a contact; stores and sends nothing",
        (Reply(200, "The decision.", m.RoutingExplanation),), (422,), body=Body({JSON: m.RoutingExplainRequest})),
    _v1("GET", "/v1/dead-letters", "list_dead_letters", "operations", "operations",
        "Deliveries the hub gave up on", (Reply(200, "A page of dead letters.", m.DeadLetterPage),),
        query=(Param("destination", "Only this destination's dead letters."),
               Param("kind", f"Only letters of this kind. A filter over at most {KIND_SCAN_PAGES * KIND_SCAN_PAGE_SIZE} "
                     "letters per call: a page may hold fewer than `limit` letters, even none, with a `next_cursor` "
                     "to go on from.",
                     {"type": "string", "enum": list(DEAD_LETTER_KINDS)}), *PAGE_PARAMS)),
    _v1("POST", "/v1/dead-letters/replay", "replay_dead_letters", "operations", "operations",
        "Queue a destination's dead letters again, a bounded batch per call (repeat while `more`)",
        (Reply(202, "Queued.", m.ReplayBatch),), (), body=Body({JSON: m.ReplayBatchRequest})),
    _v1("POST", "/v1/dead-letters/{letter_id}/replay", "replay_dead_letter", "operations", "operations",
        "Queue a dead delivery again (same delivery id)", (Reply(202, "Queued.", m.Replayed),), (404,),
        path_params={"letter_id": Param("letter_id", "The dead letter's delivery id (`dlv_…`).")}),
    _v1("GET", "/v1/unhandled-events", "list_unhandled_events", "operations", "operations",
        "Webhook items no adapter could read, kept raw", (Reply(200, "A page of unhandled items.", m.UnhandledPage),),
        query=(Param("day", "The UTC day (default today).", {"type": "string", "format": "date"}),
               Param("provider", "Only this provider's items."), *PAGE_PARAMS)),
    # --- events and messages ---------------------------------------------------------------------
    _v1("POST", "/v1/events", "post_events", "events", "events:write",
        "Send business events (one, `{\"events\": [...]}` or an array of at most 100); all or nothing",
        (Reply(202, "Queued (or `duplicate`, with `check_duplicates=true`).", m.AcceptedEvents),), (413, 422),
        query=(Param("check_duplicates", "Answer events processed before with `duplicate`.",
                     {"type": "string", "enum": ["true", "false"]}),),
        body=Body({JSON: {"oneOf": [{"$ref": "#/components/schemas/EventIn"},
                                    {"type": "object", "properties": {"events": {
                                        "type": "array", "maxItems": 100,
                                        "items": {"$ref": "#/components/schemas/EventIn"}}}, "required": ["events"]},
                                    {"type": "array", "maxItems": 100, "items": {"$ref": "#/components/schemas/EventIn"}}]}},
                  refs=(EventIn,))),
    _v1("POST", "/v1/events/explain", "explain_event", "events", "operations",
        "Which event rules match an event and what they would do; writes and sends nothing",
        (Reply(200, "The explanation.", m.EventExplanation),), (404, 422), body=Body({JSON: m.EventExplainRequest})),
    _v1("POST", "/v1/messages", "send_message", "messages", "messages:send",
        "Send a customer a message on the channel they wrote on",
        (Reply(202, "Queued.", m.SentMessage), Reply(200, "A repeat of an idempotency key: the message queued before.",
                                                     m.SentMessage)),
        (404, 409, 413, 422), body=Body({JSON: SendRequest}),
        headers=(Param("Idempotency-Key", "The same key sends once (within 24 h); wins over the body's."),)),
    Operation("GET", "/v1/media/{contact_id}/{name}", "get_media", "media", "A downloaded attachment behind its signed link",
              (Reply(200, "The file with its own content type, always as a download (`Content-Disposition: attachment`).",
                     {"type": "string", "format": "binary"}, media="*/*"),
               Reply(307, "On AWS: a redirect to a presigned S3 URL.", media=None, headers=("Location",))),
              (400, 403, 404, 503),
              description="No API key: the link's signature is the credential.",
              query=(Param("expires", "The link's expiry (Unix seconds).", required=True),
                     Param("signature", "The link's signature.", required=True)),
              path_params={"contact_id": Param("contact_id", "The contact the attachment came with."),
                           "name": Param("name", "The attachment's file name.")}),
    # --- the operator console (static files) ----------------------------------------------------
    Operation("GET", "/console", "console_redirect", "console", "Redirect to the operator console",
              (Reply(302, "To `console/` (relative, so it works under a stage prefix).", media=None,
                     headers=("Location",)),), ()),
    Operation("GET", "/console/", "console_index", "console", "The operator console (index.html)",
              (Reply(200, "The console's page.", {"type": "string"}, media="text/html"),), (),
              served_by="/console"),
    Operation("GET", "/console/{file}", "console_file", "console", "A static file of the operator console",
              (Reply(200, "The file: text/javascript, text/css, text/html or image/svg+xml.", {"type": "string"},
                     media="*/*"),
               Reply(304, "Unchanged since the `If-None-Match` ETag.", media=None)), (404,),
              path_params={"file": Param("file", "The file's name, as the console's manifest lists it.")},
              headers=(Param("If-None-Match", "The ETag of the copy the browser holds."),)),
    # --- the channel providers' own routes (their browser clients' API and pages) ---------------
    *provider_operations(),
)
