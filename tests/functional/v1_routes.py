"""Every consumer API route under `/v1`, with the scope it requires and a request that passes
authorization: the table the scope and hostile-input tests run over.

`test_the_route_table_lists_every_v1_route` (test_api_scopes.py) compares it with the app's routes,
so a new route cannot go untested.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Ids of the right shape that name nothing (the routes answer 404 after authorization).
CUSTOMER = "cus_01JAAAAAAAAAAAAAAAAAAAAAAA"
OTHER_CUSTOMER = "cus_01JBBBBBBBBBBBBBBBBBBBBBBB"
CONTACT = "ct_01JAAAAAAAAAAAAAAAAAAAAAAA"
CASE = "case_AAAAAAAAAAAAAAAAAAAAAAAAAA"
MERGE = "mrg_AAAAAAAAAAAAAAAAAAAAAAAAAA"
LETTER = "dlv_AAAAAAAAAAAAAAAAAAAAAAAAAA"


@dataclass(frozen=True)
class Route:
    method: str
    #: The route as Chalice declares it (`{customer_id}`...).
    template: str
    #: The scope the route requires; None for routes without an API key (hub media links).
    scope: str | None
    #: A concrete path (with query) that gets past parameter checks.
    path: str
    body: bytes | None = None

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


ROUTES = [
    Route("GET", "/v1/customers", "customers:read", "/v1/customers?identifier=phone:+16505550100"),
    Route("GET", "/v1/customers/{customer_id}", "customers:read", f"/v1/customers/{CUSTOMER}"),
    Route("DELETE", "/v1/customers/{customer_id}", "customers:erase", f"/v1/customers/{CUSTOMER}"),
    Route("GET", "/v1/customers/{customer_id}/export", "customers:read", f"/v1/customers/{CUSTOMER}/export"),
    Route("POST", "/v1/customers/{customer_id}/merge", "customers:write", f"/v1/customers/{CUSTOMER}/merge",
          b'{"customer_id": "%s"}' % OTHER_CUSTOMER.encode()),
    Route("POST", "/v1/customers/{customer_id}/unmerge", "customers:write", f"/v1/customers/{CUSTOMER}/unmerge", b"{}"),
    Route("GET", "/v1/merges/{merge_id}", "customers:read", f"/v1/merges/{MERGE}"),
    Route("POST", "/v1/customers/{customer_id}/identifiers", "customers:write",
          f"/v1/customers/{CUSTOMER}/identifiers", b'{"identifier": "external:CRM-1"}'),
    Route("PATCH", "/v1/customers/{customer_id}/attributes", "customers:write",
          f"/v1/customers/{CUSTOMER}/attributes", b'{"source": "crm", "attributes": {"tier": "gold"}}'),
    Route("PUT", "/v1/customers/{customer_id}/consent", "customers:write", f"/v1/customers/{CUSTOMER}/consent",
          b'{"channel": "sms", "purpose": "marketing", "state": "opted_in"}'),
    Route("GET", "/v1/customers/{customer_id}/contacts", "customers:read", f"/v1/customers/{CUSTOMER}/contacts?limit=5"),
    Route("GET", "/v1/contacts/{contact_id}", "customers:read", f"/v1/contacts/{CONTACT}"),
    Route("GET", "/v1/cases/{case_id}", "customers:read", f"/v1/cases/{CASE}"),
    Route("POST", "/v1/cases/{case_id}/close", "customers:write", f"/v1/cases/{CASE}/close", b"{}"),
    Route("GET", "/v1/exceptions", "operations", "/v1/exceptions?limit=5"),
    Route("POST", "/v1/exceptions/{contact_id}/resolve", "operations", f"/v1/exceptions/{CONTACT}/resolve", b"{}"),
    Route("POST", "/v1/routing/explain", "operations", "/v1/routing/explain",
          b'{"contact": {"channel": "sms", "text": "hello"}}'),
    Route("GET", "/v1/dead-letters", "operations", "/v1/dead-letters?limit=5"),
    Route("POST", "/v1/dead-letters/{letter_id}/replay", "operations", f"/v1/dead-letters/{LETTER}/replay", b"{}"),
    Route("POST", "/v1/dead-letters/replay", "operations", "/v1/dead-letters/replay", b'{"destination": "crm"}'),
    Route("GET", "/v1/unhandled-events", "operations", "/v1/unhandled-events?day=2026-01-02&limit=5"),
    Route("POST", "/v1/messages", "messages:send", "/v1/messages",
          b'{"to": {"customer_id": "%s"}, "text": "Hallo"}' % CUSTOMER.encode()),
    Route("POST", "/v1/events", "events:write", "/v1/events",
          b'{"type": "parcel.late", "id": "scopes-1", "occurred_at": "2026-01-02T10:00:00Z", "customer": null}'),
    # An event the hub refuses: explain answers 400 after authorization, before any rule runs.
    Route("POST", "/v1/events/explain", "operations", "/v1/events/explain", b'{"event": {"type": "parcel.late"}}'),
    Route("GET", "/v1/media/{contact_id}/{name}", None, f"/v1/media/{CONTACT}/photo.jpg?expires=1&signature=abc"),
    Route("GET", "/v1/status", "operations", "/v1/status"),
    # Any valid key, whatever its scopes (tests/functional/test_operator_api.py checks the 401s).
    Route("GET", "/v1/me", None, "/v1/me"),
    Route("GET", "/v1/openapi.json", None, "/v1/openapi.json"),
]

KEYED = [route for route in ROUTES if route.scope is not None]
