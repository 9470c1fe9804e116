"""The consumer API answers hostile input with a 4xx that names the problem, never a 5xx.

Through HTTP on the embedded hub (waitress and Chalice's gateway in front of the app, as API
Gateway is on AWS), and, for what HTTP cannot carry to the app (a decoded lone surrogate in a path
parameter, query value or body, as a Lambda event can), as API Gateway proxy events handed to the
Chalice app's Lambda entry point.
"""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.functional.conftest import API_KEY, RunningHub, start_hub
from tests.functional.test_ingest_edges import twilio_request
from tests.functional.v1_routes import CUSTOMER, ROUTES
from tests.support.receiver import Receiver

AUTH = {"Authorization": f"Bearer {API_KEY}"}
JSON = {**AUTH, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """One hub for the module, with one customer (and its contact and case) to aim at."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    with Receiver() as receiver:
        runtime = start_hub(tmp_path, receiver).start()
        try:
            running = RunningHub(runtime, receiver, tmp_path / "data")
            path, data, headers = twilio_request({
                "MessageSid": "SM" + "e" * 32, "AccountSid": "AC" + "a" * 32, "From": "+16505550100",
                "To": "+14155550100", "Body": "hi", "NumMedia": "0",
            })
            assert running.post(path, data, headers).status == 200
            running.wait_for(lambda: running.settled() and running.outbox(), message="the first contact")
            yield running
        finally:
            runtime.stop()


@pytest.fixture(scope="module")
def ids(hub) -> dict[str, str]:
    data = hub.outbox()[0]["data"]
    return {"customer": data["customer"]["id"], "contact": data["contact"]["id"], "case": data["case"]["id"]}


def error(response) -> dict:
    return json.loads(response.body)["error"]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- the defects as reported -------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/v1/customers/{customer}/contacts", "/v1/exceptions", "/v1/dead-letters", "/v1/unhandled-events",
])
@pytest.mark.parametrize("limit", ["%C2%B2", "%D9%A3", "%EF%BC%95"])  # ², Arabic-Indic 3, fullwidth 5
def test_a_limit_in_non_ascii_digits_is_a_400_naming_the_limit(hub, ids, path, limit):
    response = hub.request("GET", path.format(**ids) + f"?limit={limit}", headers=AUTH)

    assert response.status == 400, response.body
    assert error(response)["code"] == "bad_request"
    assert "limit must be a whole number" in error(response)["message"]
    assert error(response)["detail"] == {"parameter": "limit"}


@pytest.mark.parametrize("path", [
    "/v1/customers/{customer}/contacts", "/v1/exceptions", "/v1/dead-letters", "/v1/unhandled-events",
])
@pytest.mark.parametrize("cursor", [
    "%FF",                       # not UTF-8 at all (decoded to U+FFFD, which base64 refuses)
    "%ED%A0%80",                 # a surrogate's UTF-8 bytes
    "%C3%A9t%C3%A9",             # non-ASCII text
    b64(b"\xff\xfe\xfd"),        # base64 of bytes that are not UTF-8
    b64(b"ct_\xed\xa0\x80"),     # base64 of a surrogate
    b64(b"ct_\x00\x01"),         # base64 of control characters
    "a",                         # base64 that cannot be complete
    "%3D%3D%3D%3D",              # padding only
])
def test_a_cursor_this_api_did_not_return_is_a_400_naming_the_cursor(hub, ids, path, cursor):
    response = hub.request("GET", path.format(**ids) + f"?cursor={cursor}", headers=AUTH)

    assert response.status == 400, response.body
    assert error(response)["code"] == "bad_request"
    assert "cursor is not one this API returned" in error(response)["message"]
    assert error(response)["detail"] == {"parameter": "cursor"}


@pytest.mark.parametrize("day", ["2026-02-30", "%C2%B2", "2026-1-1", "%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-01-01", "%FF"])
def test_a_day_that_is_not_a_date_is_a_400_naming_the_day(hub, day):
    response = hub.request("GET", f"/v1/unhandled-events?day={day}", headers=AUTH)

    assert response.status == 400, response.body
    assert error(response)["detail"] == {"parameter": "day"}


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PATCH", "attributes", b'{"source": "crm", "attributes": {"tier": "\\ud800"}}'),
    ("PATCH", "attributes", b'{"source": "crm", "attributes": {"tier": "gold\\udfff"}}'),
    ("PATCH", "attributes", b'{"source": "crm", "attributes": {"\\ud800tier": "gold"}}'),
    ("PATCH", "attributes", b'{"source": "crm\\ud800", "attributes": {"tier": "gold"}}'),
    ("PATCH", "attributes", b'{"source": "crm", "attributes": {"tier": {"nested": ["\\udc00"]}}}'),
    ("POST", "identifiers", b'{"identifier": "external:CRM-\\ud800"}'),
    ("POST", "identifiers", b'{"identifier": "email:jana\\udfff@example.com"}'),
    ("POST", "identifiers", b'{"identifier": "\\ud83d"}'),
])
def test_a_lone_surrogate_in_a_customer_write_is_a_400_naming_it(hub, ids, method, path, body):
    response = hub.request(method, f"/v1/customers/{ids['customer']}/{path}", body, JSON)

    assert response.status == 400, response.body
    assert error(response)["code"] == "bad_request"
    assert "lone surrogate" in error(response)["message"]
    # Nothing was written: the customer still reads, without the attribute or identifier.
    customer = hub.api(f"/v1/customers/{ids['customer']}").json()
    assert "tier" not in customer["attributes"]
    assert not [i for i in customer["identifiers"] if i["kind"] == "external"]


def test_a_properly_paired_surrogate_escape_is_an_ordinary_character(hub, ids):
    response = hub.request("PATCH", f"/v1/customers/{ids['customer']}/attributes",
                           b'{"source": "crm", "attributes": {"nickname": "J\\ud83d\\ude00"}}', JSON)

    assert response.status == 200, response.body
    assert response.json()["attributes"]["nickname"]["value"] == "J\U0001f600"


@pytest.mark.parametrize("body", [b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity"])
def test_numbers_json_cannot_carry_are_a_400_not_a_stored_null(hub, ids, body):
    response = hub.request("PATCH", f"/v1/customers/{ids['customer']}/attributes",
                           b'{"source": "crm", "attributes": {"score": %s}}' % body, JSON)

    assert response.status == 400, response.body
    assert "number" in error(response)["message"]
    assert "score" not in hub.api(f"/v1/customers/{ids['customer']}").json()["attributes"]


# --- every route, a table of hostile inputs: a 4xx or a success, never a 5xx ----------------------

#: Query values, percent-encoded as they travel.
HOSTILE_QUERY = [
    "%C2%B2", "%FF", "%ED%A0%80", "%00", "-1", "0", "101", "1e3", "9" * 400, "%F0%9F%98%80", "", "a" * 3000,
    "2026-02-30", "0000-00-00", "99999-01-01", "%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-01-01",
    b64(b"\xff\xfe"), b64(b"ct_\x00"), b64(b"dlv_" + b"9" * 500), "%2E%2E%2F%2E%2E",
]
QUERY_NAMES = ["limit", "cursor", "day", "identifier", "destination", "provider", "expires", "signature"]

#: Request bodies.
HOSTILE_BODIES = [
    b"\xff\xfe\x00garbage", b"\xed\xa0\x80", b"[]", b"null", b"1", b'"text"', b"true", b"{", b"{}" * 2,
    b'{"a": "\\ud800"}', b'{"\\udfff": 1}', b"[" * 100_000 + b"]" * 100_000, b"1" * 5000, b'{"a": ' + b"9" * 4000 + b"}",
    b'{"a": 1e999}', b'{"a": NaN}', b'{"customer_id": 7}', b'{"customer_id": "cus_\\u0000"}',
    b'{"customer_id": "' + b"x" * 5000 + b'"}', b'{"merge_id": []}', b'{"merge_id": "mrg_\\ud800"}',
    b'{"identifier": 12345678901234567890123456789012345678901234567890}', b'{"identifier": "external:' + b"x" * 5000 + b'"}',
    b'{"identifier": "phone:\\u00b2\\u00b2\\u00b2"}', b'{"identifier": "email:a@\\ud800.com"}',
    b'{"source": "crm", "attributes": []}', b'{"source": "crm", "attributes": {"a": 1e308}}',
    b'{"source": 5, "attributes": {"a": 1}}', b'{"source": "crm", "attributes": {"' + b"a" * 5000 + b'": 1}}',
    b'{"contact": []}', b'{"contact": {"channel": 7, "text": ["x"]}}', b'{"contact": {}, "customer": "x", "case": 1}',
    b'{"contact": {"received_at": "99999-99-99"}}', b'{"queue": {"a": 1}, "priority": 1e400, "skills": "x"}',
    b'{"destinations": [' + b'"x",' * 1000 + b'"x"]}', b'{"note": "\\u0000"}',
]

#: Path parameters, percent-encoded as they travel (the local gateway, like API Gateway, passes them on).
HOSTILE_IDS = ["%FF", "%ED%A0%80", "%00", "x" * 3000, "%C2%B2", "..", "cus_%0A", "%F0%9F%98%80"]


def _hostile_requests():
    """(method, path, body) for every route with every hostile query value, body and path id."""
    for route in ROUTES:
        base, _, _ = route.path.partition("?")
        for name in QUERY_NAMES:
            for value in HOSTILE_QUERY:
                yield route.method, f"{base}?{name}={value}", route.body
        if route.method in ("POST", "PATCH", "DELETE"):
            for body in HOSTILE_BODIES:
                yield route.method, base, body
        if "{" in route.template:
            for value in HOSTILE_IDS:
                path = "/".join(value if part.startswith("{") else part for part in route.template.split("/"))
                yield route.method, path, route.body


def _sweep(hub, cases) -> list[str]:
    failures = []
    for method, path, body in cases:
        response = hub.request(method, path, body, JSON)
        if not 200 <= response.status < 500:
            failures.append(f"{response.status} {method} {path[:80]} {(body or b'')[:60]!r}: {response.body[:200]!r}")
        elif response.status >= 400:
            shape = json.loads(response.body)
            if not (shape.get("error", {}).get("code") and shape["error"].get("message")):
                failures.append(f"{response.status} without the error shape: {method} {path[:80]}")
    return failures


@pytest.mark.slow
def test_no_v1_route_answers_hostile_input_with_a_5xx(hub):
    cases = list(_hostile_requests())
    assert len(cases) > 2000

    failures = _sweep(hub, cases)

    assert not failures, f"{len(failures)} of {len(cases)} hostile requests failed:\n" + "\n".join(failures[:40])


def test_hostile_input_against_an_existing_customer_contact_and_case_never_gets_a_5xx(hub, ids):
    """The same bodies against records that exist, so validation past the lookup runs too."""
    targets = [
        ("PATCH", f"/v1/customers/{ids['customer']}/attributes"),
        ("POST", f"/v1/customers/{ids['customer']}/identifiers"),
        ("POST", f"/v1/customers/{ids['customer']}/merge"),
        ("POST", f"/v1/customers/{ids['customer']}/unmerge"),
        ("POST", f"/v1/exceptions/{ids['contact']}/resolve"),
        ("POST", "/v1/routing/explain"),
    ]
    cases = [(method, path, body) for method, path in targets for body in HOSTILE_BODIES]
    cases += [("GET", f"/v1/customers/{ids['customer']}/contacts?{name}={value}", None)
              for name in ("limit", "cursor") for value in HOSTILE_QUERY]

    failures = _sweep(hub, cases)

    assert not failures, "\n".join(failures[:40])
    assert hub.api(f"/v1/customers/{ids['customer']}").status == 200


def test_a_hostile_authorization_header_is_a_401(hub):
    for value in (b"Bearer \xff\xfe".decode("latin-1"), "Bearer " + "k" * 8000, "Basic abc", "Bearer", "Bearer  "):
        response = hub.request("GET", f"/v1/customers/{CUSTOMER}", headers={"Authorization": value})
        assert response.status == 401, (value[:20], response.body)
        assert error(response)["code"] == "unauthorized"


def test_a_non_ascii_authorization_header_on_no_route_is_the_json_404(hub):
    for path in ("/nowhere", "/v2/customers", "/webhooks"):
        response = hub.request("GET", path, headers={"Authorization": b"Bearer \xe4\xf6".decode("latin-1")})
        assert response.status == 404, (path, response.body)
        assert error(response)["code"] == "not_found"


# --- what only a Lambda event can carry: decoded lone surrogates and NULs in parameters -----------

DECODED_HOSTILE = ["\ud800", "cus_\udfff", "\x00", "x" * 3000, "\U0001f600", "²", "a\nb"]


def _short(value: str) -> str:
    return ascii(value[:12])


def lambda_event(route, *, path_value: str, query: dict[str, str], body: str | None, key: str = API_KEY) -> dict:
    """The API Gateway proxy event Chalice's Lambda handler receives, parameters already decoded."""
    names = re.findall(r"{(\w+)}", route.template)
    return {
        "resource": route.template, "path": route.template, "httpMethod": route.method,
        "headers": {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        "multiValueHeaders": None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {name: [value] for name, value in query.items()} or None,
        "pathParameters": {name: path_value for name in names} or None,
        "stageVariables": None,
        "requestContext": {"resourcePath": route.template, "httpMethod": route.method, "requestId": "req-hostile",
                           "path": route.template},
        "body": body, "isBase64Encoded": False,
    }


def invoke(event: dict) -> dict:
    from app import app

    return app(event, None)


@pytest.mark.parametrize("value", DECODED_HOSTILE, ids=_short)
def test_decoded_hostile_parameters_in_a_lambda_event_never_get_a_5xx(hub, value):
    failures = []
    for route in ROUTES:
        body = route.body.decode() if route.body else None
        for query in ({name: value for name in QUERY_NAMES}, {"identifier": f"phone:{value}"},
                      {"identifier": f"external:{value}"}, {value: "1"}, {}):
            response = invoke(lambda_event(route, path_value=value, query=query, body=body))
            if not 200 <= response["statusCode"] < 500:
                failures.append(f"{route.name} {query!r:.60}: {response['statusCode']} {response['body'][:200]}")
        if route.method != "GET":
            for hostile_body in ('{"a": "' + value + '"}', '{"customer_id": "' + value + '", "identifier": "external:'
                                 + value + '", "merge_id": "' + value + '", "contact": {"text": "' + value + '"}}'):
                response = invoke(lambda_event(route, path_value=CUSTOMER, query={}, body=hostile_body))
                if not 200 <= response["statusCode"] < 500:
                    failures.append(f"{route.name} body: {response['statusCode']} {response['body'][:200]}")
    assert not failures, "\n".join(failures)


def test_a_lone_surrogate_in_a_decoded_query_parameter_is_a_400_naming_it(hub):
    route = next(r for r in ROUTES if r.name == "GET /v1/customers")

    response = invoke(lambda_event(route, path_value="", query={"identifier": "external:CRM-\ud800"}, body=None))

    assert response["statusCode"] == 400, response["body"]
    error = json.loads(response["body"])["error"]
    assert "identifier" in error["message"] and "lone surrogate" in error["message"]
    assert error["detail"] == {"parameter": "identifier"}


@pytest.mark.parametrize("value", ["\ud800", "cus_\x00", "cus_" + "x" * 3000, "cus_é"], ids=_short)
def test_an_id_no_store_key_can_hold_is_a_404_without_a_lookup(hub, value, monkeypatch):
    route = next(r for r in ROUTES if r.name == "GET /v1/customers/{customer_id}")
    looked_up = []
    monkeypatch.setattr(hub.hub.store, "get_customer", lambda customer_id: looked_up.append(customer_id))

    response = invoke(lambda_event(route, path_value=value, query={}, body=None))

    assert response["statusCode"] == 404, response["body"]
    assert json.loads(response["body"])["error"]["code"] == "not_found"
    assert looked_up == []  # DynamoDB refuses keys over 2 KB with an error, not "no item"


@pytest.mark.parametrize("value", DECODED_HOSTILE, ids=_short)
def test_a_decoded_hostile_api_key_is_a_401(hub, value):
    route = next(r for r in ROUTES if r.name == "GET /v1/exceptions")

    response = invoke(lambda_event(route, path_value="", query={}, body=None, key=value))

    assert response["statusCode"] == 401, response["body"]
