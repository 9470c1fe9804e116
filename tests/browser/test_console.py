"""The operator console in Chromium against the embedded hub: log in with a key, resolve a parked
contact, replay dead letters, find a customer and answer it, and what a key with fewer scopes,
an API error and a network failure look like. Each page leaves a screenshot in
build/screenshots/console/."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from tests.functional.conftest import API_KEY, RunningHub, start_hub
from tests.support.browser import screenshot
from tests.support.receiver import Answer

READER_KEY = "reader-console-key"
FULL_SCOPES = ["customers:read", "customers:write", "customers:erase", "operations", "messages:send"]
PARK_RULE = {"name": "bank-details", "when": {"text": {"contains": ["iban"]}},
             "then": {"park": "asks to change bank details"}, "stop": True}


@pytest.fixture
def hub(tmp_path, receiver):
    keys = [
        {"name": "night-shift", "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(), "scopes": FULL_SCOPES},
        {"name": "reader", "sha256": hashlib.sha256(READER_KEY.encode()).hexdigest(), "scopes": ["customers:read"]},
    ]
    runtime = start_hub(tmp_path, receiver, extra={"api_keys": keys, "routing": {"rules": [PARK_RULE]}}).start()
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data")
    finally:
        runtime.stop()


def visitor_writes(hub, text: str, *, visitor: str = "v-1", message: str = "m-1") -> None:
    body = json.dumps({"site_id": "acme", "visitor_id": visitor, "message_id": message, "text": text}).encode()
    answer = hub.post("/webhooks/webchat", body, {"Content-Type": "application/json"})
    assert answer.status == 202, answer.body


def customer_of(hub, visitor: str = "v-1") -> str:
    found = hub.wait_for(lambda: hub.api(f"/v1/customers?identifier=webchat:acme/{visitor}").json()["data"],
                         message="the visitor's customer")
    customer_id = found[0]["id"]
    hub.wait_for(lambda: hub.api(f"/v1/customers/{customer_id}/contacts").json()["data"], message="its contact")
    return customer_id


def log_in(page, hub, key: str = API_KEY, at: str = "") -> None:
    page.emulate_media(color_scheme="dark")  # the console as the night shift sees it
    page.goto(f"{hub.url}/console/{at}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.locator("#nav").wait_for(state="visible")


def test_log_in_see_the_key_and_log_out(page, hub):
    page.goto(f"{hub.url}/console")  # the redirect to /console/
    page.get_by_label("API key").fill("wrong-key")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("alert").filter(has_text="invalid API key").wait_for()
    screenshot(page, "console", "login")

    page.get_by_label("API key").fill(API_KEY)
    page.get_by_role("button", name="Log in").click()

    page.locator("#who").filter(has_text="night-shift").wait_for()
    assert page.evaluate("sessionStorage.getItem('hub-console-key')") == API_KEY
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("API key").wait_for()
    assert page.evaluate("sessionStorage.getItem('hub-console-key')") is None


def test_a_key_that_stops_working_leads_back_to_the_login_with_the_reason(page, hub):
    log_in(page, hub)
    page.evaluate("sessionStorage.setItem('hub-console-key', 'revoked-key')")

    page.get_by_role("link", name="Health").click()

    page.get_by_role("alert").filter(has_text="invalid API key").wait_for()
    page.get_by_label("API key").wait_for()
    assert page.evaluate("sessionStorage.getItem('hub-console-key')") is None


def test_resolve_a_parked_contact_with_a_route(page, hub):
    visitor_writes(hub, "Bitte meine IBAN ändern")
    hub.wait_for(lambda: hub.api("/v1/exceptions").json()["data"], message="the parked contact")
    log_in(page, hub)

    card = page.locator("article.card").filter(has_text="asks to change bank details (rule bank-details)")
    card.get_by_role("button", name="Show contact and trace").click()
    card.locator("ol.trace").filter(has_text="bank-details").wait_for()
    card.get_by_label("Queue").fill("fraud-check")
    card.get_by_label("Priority").select_option("high")
    card.get_by_label("Skills").fill("german:3")
    card.get_by_label("Destinations").fill("outbox")
    card.get_by_label("Note").fill("called the customer back")
    screenshot(page, "console", "exceptions")
    card.get_by_role("button", name="Resolve").click()

    card.get_by_role("status").filter(has_text="Released to queue fraud-check (high), delivering to outbox").wait_for()
    assert hub.api("/v1/exceptions").json()["data"] == []
    [contact] = hub.api(f"/v1/customers/{customer_of(hub)}/contacts").json()["data"]
    assert (contact["routing"]["queue"], contact["routing"]["skills"]) == ("fraud-check", {"german": 3})
    assert "called the customer back" in contact["routing"]["trace"][-1]["reason"]


def test_a_bad_route_is_shown_with_the_hubs_message_and_nothing_is_released(page, hub):
    visitor_writes(hub, "Neue IBAN bitte")
    hub.wait_for(lambda: hub.api("/v1/exceptions").json()["data"], message="the parked contact")
    log_in(page, hub)

    card = page.locator("article.card").first
    card.get_by_label("Destinations").fill("zendesk")
    card.get_by_role("button", name="Resolve").click()
    card.get_by_role("alert").filter(has_text="zendesk").wait_for()
    card.get_by_label("Skills").fill("german=3")
    card.get_by_role("button", name="Resolve").click()
    card.get_by_role("alert").filter(has_text='skills: "german=3" is not name:level').wait_for()
    card.get_by_label("Skills").fill("german:3:x")  # never cut short to german:3
    card.get_by_role("button", name="Resolve").click()
    card.get_by_role("alert").filter(has_text='skills: "german:3:x" is not name:level').wait_for()

    assert len(hub.api("/v1/exceptions").json()["data"]) == 1
    assert card.get_by_role("button", name="Resolve").is_enabled()


def test_replay_one_dead_letter_then_all_of_a_destination(page, hub):
    hub.receiver.default = Answer(400, b'{"error": "field priority is invalid"}')
    for n in (1, 2):
        visitor_writes(hub, f"Frage {n}", visitor=f"v-{n}", message=f"m-{n}")
    hub.wait_for(lambda: len(hub.api("/v1/dead-letters?destination=crm").json()["data"]) == 2, timeout=20,
                 message="two dead letters")
    log_in(page, hub, at="#/dead-letters")

    rows = page.locator("tbody tr")
    rows.first.wait_for()
    assert rows.count() == 2
    assert "field priority is invalid" in rows.first.inner_text()
    screenshot(page, "console", "dead-letters")

    hub.receiver.default = Answer(200, b'{"ok": true}')
    rows.first.get_by_role("button", name="Replay").click()
    page.get_by_role("status").filter(has_text="Queued 1 dead letter again.").wait_for()
    page.locator("caption").filter(has_text="1 dead letter").wait_for()

    # The hub filters by kind: the console asks for it rather than sifting pages itself.
    page.get_by_label("Kind").select_option("message")
    with page.expect_request(lambda request: "/v1/dead-letters?" in request.url) as asked:
        page.get_by_role("button", name="Filter").click()
    assert "kind=message" in asked.value.url
    page.get_by_text("No dead letters match this filter.").wait_for()
    page.get_by_label("Kind").select_option("contact")
    page.get_by_role("button", name="Filter").click()
    page.locator("caption").filter(has_text="1 dead letter").wait_for()

    page.get_by_label("Destination").fill("crm")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("button", name="Replay all of crm").click()
    page.get_by_role("button", name="Yes, replay every dead letter of crm").click()
    page.get_by_role("status").filter(has_text="Queued 1 dead letter of crm again.").wait_for()
    page.get_by_text("No dead letters match this filter.").wait_for()

    assert hub.api("/v1/dead-letters").json()["data"] == []
    hub.wait_for(lambda: sum(r.answered == 200 for r in hub.receiver.requests) == 2, timeout=20, message="redelivered")


def test_find_a_customer_read_the_timeline_and_reply_from_the_case(page, hub):
    # Imported here: without Playwright the browser tests skip rather than fail to import.
    from playwright.sync_api import expect

    visitor_writes(hub, "Hallo, wo bleibt mein <b>Paket</b>?<img src=x onerror=alert(1)>")
    customer_id = customer_of(hub)
    log_in(page, hub, at="#/customers")

    page.get_by_label("Identifier").fill("webchat:acme/v-1")
    page.get_by_role("button", name="Find").click()
    page.locator("h2.customer-name").filter(has_text=customer_id).wait_for()
    entry = page.locator("article.entry").filter(has_text="wo bleibt mein <b>Paket</b>?<img")
    assert entry.locator("b, img").count() == 0, "customer text is shown as text, never as markup"
    entry.get_by_role("button", name="Routing and delivery").click()
    entry.locator("table").filter(has_text="outbox").wait_for()
    entry.get_by_role("link", name="Explain again with the rules in force").click()
    expect(page.get_by_label("Request body")).to_have_value(re.compile("wo bleibt mein"))
    page.get_by_role("button", name="Explain").click()
    page.locator("ol.trace").filter(has_text="bank-details").wait_for()
    page.go_back()
    page.locator("h2.customer-name").filter(has_text=customer_id).wait_for()

    case = page.locator("article.case")
    case.get_by_label("Message").fill("Ihr Paket kommt morgen.")
    case.get_by_role("button", name="Send reply").click()
    case.get_by_role("status").filter(has_text="Queued on webchat via webchat to v-1").wait_for()
    screenshot(page, "console", "customers")

    timeline = hub.wait_for(lambda: len(t := hub.api(f"/v1/customers/{customer_id}/contacts").json()["data"]) == 2 and t,
                            message="the reply on the timeline")
    assert (timeline[0]["direction"], timeline[0]["text"]) == ("outbound", "Ihr Paket kommt morgen.")
    page.reload()
    page.locator("article.entry.outbound").filter(has_text="Ihr Paket kommt morgen.").wait_for()


def test_a_key_with_fewer_scopes_sees_disabled_buttons_and_why(page, hub):
    visitor_writes(hub, "Hallo")
    customer_of(hub)
    log_in(page, hub, key=READER_KEY, at="#/customers?identifier=webchat:acme/v-1")

    send = page.get_by_role("button", name="Send reply")
    send.wait_for()
    assert send.is_disabled()
    assert send.get_attribute("title") == "This API key lacks the scope messages:send"
    screenshot(page, "console", "fewer-scopes")

    page.get_by_role("link", name="Exceptions").click()
    page.get_by_role("alert").filter(has_text="this API key lacks the scope operations").wait_for()
    page.get_by_role("link", name="Routing").click()
    explain = page.get_by_role("button", name="Explain")
    assert explain.is_disabled() and explain.get_attribute("title") == "This API key lacks the scope operations"


def test_api_errors_and_network_failures_are_shown_not_thrown(page, hub):
    log_in(page, hub, at="#/routing")

    page.get_by_label("Request body").fill('{"contact": {"channel": "fax"}}')
    page.get_by_role("button", name="Explain").click()
    page.get_by_role("alert").filter(has_text="contact.channel").wait_for()
    page.get_by_label("Request body").fill("{not json")
    page.get_by_role("button", name="Explain").click()
    page.get_by_role("alert").filter(has_text="the request body is not JSON").wait_for()
    page.get_by_label("Request body").fill('{"contact": {"channel": "whatsapp", "text": "Bitte IBAN ändern"}}')
    page.get_by_role("button", name="Explain").click()
    page.locator("ol.trace").filter(has_text="bank-details").wait_for()
    screenshot(page, "console", "routing")

    page.goto(f"{hub.url}/console/#/customers?identifier=nonsense")
    page.get_by_role("alert").wait_for()
    assert "Could not search" in page.get_by_role("alert").inner_text()
    # A malformed escape in the address is the hub's to answer, not an error that stops the page.
    page.goto(f"{hub.url}/console/#/customers/%E0")
    page.get_by_role("alert").wait_for()

    page.route("**/v1/status", lambda route: route.abort())
    page.goto(f"{hub.url}/console/#/health")
    page.get_by_role("alert").filter(has_text="the hub could not be reached").wait_for()


def test_health_and_unhandled_events_pages(page, hub):
    log_in(page, hub, at="#/health")

    page.get_by_role("cell", name="delivery dead letters").wait_for()
    page.get_by_text("Every circuit is closed").wait_for()
    assert "inline" in page.locator("dl").nth(1).inner_text()
    screenshot(page, "console", "health")

    page.get_by_role("link", name="Unhandled events").click()
    page.get_by_text("Nothing unhandled on").wait_for()
    page.get_by_label("Day (UTC)").fill("2026-13-45")
    screenshot(page, "console", "unhandled")
