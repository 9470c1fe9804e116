"""The web chat widget in Chromium on the embedded hub's demo page: a visitor writes, the message
becomes a contact, an API reply appears in the widget, and the conversation survives a reload;
German strings, the signed identity, retries under the same message_id, keyboard use."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

from tests.functional.conftest import API_KEY
from tests.support.browser import SCREENSHOTS, screenshot

STATE = """() => {
  const key = Object.keys(localStorage).find(k => k.startsWith("hub-webchat:"));
  return key ? JSON.parse(localStorage.getItem(key)) : null;
}"""


def _open_and_write(page, text: str, *, open_name: str = "Open chat", label: str = "Your message") -> None:
    page.get_by_role("button", name=open_name).click()
    box = page.get_by_label(label)
    expect(box).to_be_focused()
    box.fill(text)
    box.press("Enter")


def _customer(running, identifier: str) -> dict:
    found = running.wait_for(lambda: running.api(f"/v1/customers?identifier={identifier}").json()["data"],
                             message=f"the customer {identifier}")
    return found[0]


def _contacts(running, customer_id: str) -> list[dict]:
    return running.wait_for(lambda: running.api(f"/v1/customers/{customer_id}/contacts").json()["data"],
                            message="the customer's contacts")


def _reply(running, customer_id: str, text: str) -> dict:
    body = {"to": {"customer_id": customer_id}, "channel": "webchat", "text": text,
            "attachments": [{"url": "https://files.example.com/invoice-1042.pdf", "filename": "invoice-1042.pdf"}]}
    answer = running.request("POST", "/v1/messages", json.dumps(body).encode(),
                             {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    assert answer.status == 202, answer.body
    return answer.json()["data"]


def test_a_visitor_writes_an_api_reply_appears_and_a_reload_keeps_the_conversation(page, running):
    page.goto(running.url + "/webchat/demo.html")
    _open_and_write(page, "Where is order #1042?")
    log = page.get_by_role("log")
    expect(log.get_by_text("Sent", exact=True)).to_be_visible()

    visitor = page.evaluate(STATE)["visitorId"]
    customer = _customer(running, f"webchat:acme/{visitor}")
    inbound = _contacts(running, customer["id"])
    assert [(c["direction"], c["channel"], c["text"]) for c in inbound] == [("inbound", "webchat", "Where is order #1042?")]
    created = running.wait_for(lambda: [e["data"]["contact"] for e in running.outbox() if e["type"] == "contact.created"],
                               message="the contact.created event in the hub's outbox")
    assert [(c["text"], c["customer_id"]) for c in created] == [("Where is order #1042?", customer["id"])]

    _reply(running, customer["id"], "It ships tomorrow.")
    expect(log.get_by_text("It ships tomorrow.")).to_be_visible()
    expect(log.get_by_role("link", name="invoice-1042.pdf")).to_have_attribute(
        "href", "https://files.example.com/invoice-1042.pdf")
    screenshot(page, "webchat", "conversation")
    # The widget alone, small enough for the README (docs/images/webchat-widget.png is a copy).
    page.locator("[data-hub-webchat]").screenshot(path=str(SCREENSHOTS / "webchat" / "widget.png"))

    page.reload()
    log = page.get_by_role("log")
    expect(log.get_by_text("Where is order #1042?")).to_be_visible()
    expect(log.get_by_text("It ships tomorrow.")).to_be_visible()
    assert page.evaluate(STATE)["visitorId"] == visitor
    # Still one visitor, one customer: the reload sent nothing again.
    assert [c["direction"] for c in _contacts(running, customer["id"])] == ["outbound", "inbound"]


def _second_tab(first, running, *, fake_clock: bool = False):
    """The visitor's first message sent in `first`, and a second tab of the same site showing
    it, with its script errors collected (the `page` fixture checks only its own page). With
    `fake_clock`, the second tab's timers and `Date.now` move on only as the test says."""
    first.goto(running.url + "/webchat/demo.html")
    _open_and_write(first, "Erste Frage")
    expect(first.get_by_role("log").get_by_text("Sent", exact=True)).to_be_visible()
    second = first.context.new_page()
    errors: list[str] = []
    second.on("pageerror", lambda error: errors.append(str(error)))
    if fake_clock:
        second.clock.install()
    second.goto(running.url + "/webchat/demo.html")
    expect(second.get_by_role("log").get_by_text("Erste Frage")).to_be_visible()
    return second, errors


def test_two_tabs_share_one_conversation_and_neither_overwrites_the_other(page, running):
    first = page
    second, errors = _second_tab(first, running)

    # Each tab writes while the other is open: each sees the other's message without a reload.
    second.get_by_label("Your message").fill("Zweite Frage")
    second.get_by_label("Your message").press("Enter")
    expect(first.get_by_role("log").get_by_text("Zweite Frage")).to_be_visible()
    first.get_by_label("Your message").fill("Dritte Frage")
    first.get_by_label("Your message").press("Enter")
    expect(second.get_by_role("log").get_by_text("Dritte Frage")).to_be_visible()
    expect(first.get_by_role("log").get_by_text("Sent", exact=True)).to_have_count(3)
    expect(second.get_by_role("log").get_by_text("Sent", exact=True)).to_have_count(3)

    visitor = first.evaluate(STATE)["visitorId"]
    customer = _customer(running, f"webchat:acme/{visitor}")
    running.wait_for(lambda: len(_contacts(running, customer["id"])) == 3, message="three contacts")
    _reply(running, customer["id"], "Wir kümmern uns.")
    for tab in (first, second):
        expect(tab.get_by_role("log").get_by_text("Wir kümmern uns.")).to_be_visible()

    expected = ["Erste Frage", "Zweite Frage", "Dritte Frage", "Wir kümmern uns."]
    assert [m["text"] for m in first.evaluate(STATE)["messages"]] == expected
    for tab in (first, second):
        tab.reload()
        texts = tab.get_by_role("log").locator("li").all_inner_texts()
        assert [next(t for t in expected if t in text) for text in texts] == expected, texts
    # One visitor, one contact per message: neither tab sent another's message again.
    assert sorted(c["text"] for c in _contacts(running, customer["id"]) if c["direction"] == "inbound") == \
        ["Dritte Frage", "Erste Frage", "Zweite Frage"]
    assert errors == []


def test_a_message_whose_tab_closed_while_sending_is_sent_by_another_tab(page, running):
    first = page
    second, errors = _second_tab(first, running, fake_clock=True)

    held = []
    first.route("**/webhooks/webchat", lambda route: held.append(route))
    first.get_by_label("Your message").fill("Verwaist")
    first.get_by_label("Your message").press("Enter")
    expect(second.get_by_role("log").get_by_text("Verwaist")).to_be_visible()
    expect(second.get_by_role("log").get_by_text("Sending…")).to_be_visible()
    first.close()  # its request never got an answer

    second.clock.run_for(91_000)
    # The next poll (every 3 s while open, time flowing on from there) adopts it.
    expect(second.get_by_role("log").get_by_text("Sent", exact=True)).to_have_count(2, timeout=15_000)
    visitor = second.evaluate(STATE)["visitorId"]
    customer = _customer(running, f"webchat:acme/{visitor}")
    running.wait_for(lambda: len(_contacts(running, customer["id"])) == 2, message="both messages stored")
    assert sorted(c["text"] for c in _contacts(running, customer["id"])) == ["Erste Frage", "Verwaist"]
    assert errors == []


def test_a_failed_send_is_retried_with_the_same_message_id_and_makes_one_contact(page, running):
    attempts: list[dict] = []

    def flaky(route):
        attempts.append(json.loads(route.request.post_data))
        if len(attempts) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/webhooks/webchat", flaky)
    page.goto(running.url + "/webchat/demo.html")
    _open_and_write(page, "Hello after a network error")

    expect(page.get_by_role("log").get_by_text("Sent", exact=True)).to_be_visible()
    assert len(attempts) == 2
    assert attempts[0]["message_id"] == attempts[1]["message_id"]
    assert attempts[0]["visitor_id"] == attempts[1]["visitor_id"]
    customer = _customer(running, f"webchat:acme/{attempts[0]['visitor_id']}")
    assert len(_contacts(running, customer["id"])) == 1


def test_a_refused_message_says_why_and_offers_to_send_again(page, running):
    def forged(route):
        # A page whose user_hash was not made with the site's secret (say, copied from another user).
        response = route.fetch()
        route.fulfill(response=response, body=re.sub(r'data-user-hash="[0-9a-f]{64}"', 'data-user-hash="' + "f" * 64 + '"',
                                                     response.text()))

    page.route(re.compile(r"/webchat/demo\.html"), forged)
    page.goto(running.url + "/webchat/demo.html?external_id=cust-7")
    _open_and_write(page, "Forged identity")

    log = page.get_by_role("log")
    expect(log.get_by_text("user_hash does not match", exact=False)).to_be_visible()
    again = log.get_by_role("button", name="Send again")
    expect(again).to_be_visible()
    # Sending again repeats the refusal (the page's hash is still wrong) under the same message_id.
    sent: list[str] = []
    page.on("request", lambda r: sent.append(json.loads(r.post_data)["message_id"])
            if r.method == "POST" and r.url.endswith("/webhooks/webchat") else None)
    again.click()
    expect(log.get_by_role("button", name="Send again")).to_be_visible()
    assert len(sent) == 1 and sent[0] == page.evaluate(STATE)["messages"][0]["id"]


def test_sending_again_after_a_reload_shows_the_new_try_and_gets_through(page, running):
    page.route("**/webhooks/webchat", lambda route: route.fulfill(
        status=400, content_type="application/json", body='{"error": {"message": "try later"}}'))
    page.goto(running.url + "/webchat/demo.html")
    _open_and_write(page, "Refused once")
    log = page.get_by_role("log")
    expect(log.get_by_role("button", name="Send again")).to_be_visible()
    page.unroute("**/webhooks/webchat")

    page.reload()
    held = []
    page.route("**/webhooks/webchat", lambda route: held.append(route))
    log = page.get_by_role("log")
    log.get_by_role("button", name="Send again").click()

    # While the new try is on its way, the message says so; the stored refusal does not come back.
    expect(log.get_by_text("Sending…")).to_be_visible()
    expect(log.get_by_role("button", name="Send again")).to_have_count(0)
    assert page.evaluate(STATE)["messages"][0]["state"] == "pending"
    for _ in range(100):  # the held request reaches the route handler when Playwright next listens
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1
    held[0].continue_()
    expect(log.get_by_text("Sent", exact=True)).to_be_visible()
    assert page.evaluate(STATE)["messages"][0]["state"] == "sent"


def test_the_signed_identity_links_the_visitor_to_a_verified_customer(page, running):
    page.goto(running.url + "/webchat/demo.html?external_id=cust-42&name=Jane%20Doe")
    _open_and_write(page, "Signed in and asking")
    expect(page.get_by_role("log").get_by_text("Sent", exact=True)).to_be_visible()

    customer = _customer(running, "external:cust-42")
    contact = _contacts(running, customer["id"])[0]
    assert contact["text"] == "Signed in and asking"
    detail = running.api(f"/v1/customers/{customer['id']}").json()
    # Only a verified claim becomes one of the customer's identifiers (unverified ones are kept apart).
    assert ("external", "cust-42") in {(i["kind"], i["value"]) for i in detail["identifiers"]}
    assert not detail["unverified_identifiers"]


def test_signing_out_or_in_as_someone_else_starts_a_new_conversation(page, running):
    page.goto(running.url + "/webchat/demo.html?external_id=cust-1")
    _open_and_write(page, "Private question of cust-1")
    expect(page.get_by_role("log").get_by_text("Sent", exact=True)).to_be_visible()
    first_visitor = page.evaluate(STATE)["visitorId"]

    page.goto(running.url + "/webchat/demo.html")  # the same browser, signed out
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("log").get_by_text("Ask us anything", exact=False)).to_be_visible()
    expect(page.get_by_text("Private question of cust-1")).to_have_count(0)
    assert page.evaluate(STATE)["visitorId"] != first_visitor

    # An anonymous visitor who signs in keeps the conversation they started.
    page.get_by_label("Your message").fill("Anonymous first")
    page.get_by_label("Your message").press("Enter")
    expect(page.get_by_role("log").get_by_text("Sent", exact=True)).to_be_visible()
    page.goto(running.url + "/webchat/demo.html?external_id=cust-2")
    expect(page.get_by_role("log").get_by_text("Anonymous first")).to_be_visible()


def test_german_strings_from_the_browser_language_and_from_data_lang(chromium, running):
    context = chromium.new_context(locale="de-DE")
    try:
        page = context.new_page()
        page.goto(running.url + "/webchat/demo.html")
        _open_and_write(page, "Hallo", open_name="Chat öffnen", label="Ihre Nachricht")
        expect(page.get_by_role("log").get_by_text("Gesendet", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Chat schließen").first).to_be_visible()
        expect(page.locator("[data-hub-webchat]")).to_have_attribute("lang", "de")
        screenshot(page, "webchat", "german")
    finally:
        context.close()


def test_data_lang_overrides_the_browser_language(page, running):
    page.goto(running.url + "/webchat/demo.html?lang=de")
    expect(page.get_by_role("button", name="Chat öffnen")).to_be_visible()


def test_keyboard_opens_sends_and_escape_closes_with_focus_back_on_the_button(page, running):
    page.goto(running.url + "/webchat/demo.html")
    launcher = page.get_by_role("button", name="Open chat")
    launcher.focus()
    expect(launcher).to_have_attribute("aria-expanded", "false")

    page.keyboard.press("Enter")
    box = page.get_by_label("Your message")
    expect(box).to_be_focused()
    page.keyboard.type("Typed without a mouse")
    page.keyboard.press("Enter")
    expect(page.get_by_role("log").get_by_text("Typed without a mouse")).to_be_visible()
    expect(box).to_have_value("")

    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "false")


def test_new_messages_are_announced_politely_and_the_controls_are_labelled(page, running):
    page.goto(running.url + "/webchat/demo.html")
    page.get_by_role("button", name="Open chat").click()

    log = page.get_by_role("log", name="Conversation")
    expect(log).to_have_attribute("aria-live", "polite")
    expect(page.get_by_role("dialog", name="Chat with us")).to_be_visible()
    expect(page.get_by_role("button", name="Close chat").first).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    page.get_by_role("button", name="Add a link").click()
    expect(page.get_by_label("Link to a file (https://…)")).to_be_focused()
    screenshot(page, "webchat", "open")


def test_an_attachment_link_is_sent_and_a_bad_link_is_refused_in_the_widget(page, running):
    sent: list[dict] = []
    page.on("request", lambda r: sent.append(json.loads(r.post_data))
            if r.method == "POST" and r.url.endswith("/webhooks/webchat") else None)
    page.goto(running.url + "/webchat/demo.html")
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("button", name="Add a link").click()

    page.get_by_label("Link to a file (https://…)").fill("javascript:alert(1)")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_have_text("Enter a link that starts with https:// or http://")

    page.get_by_label("Link to a file (https://…)").fill("https://files.example.com/photo.jpg")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("log").get_by_text("Sent", exact=True)).to_be_visible()
    assert [body.get("attachments") for body in sent] == [[{"url": "https://files.example.com/photo.jpg"}]]


def test_the_pages_styles_cannot_reach_into_the_widget(page, running):
    page.goto(running.url + "/webchat/demo.html")
    size = page.get_by_role("button", name="Open chat").evaluate("b => getComputedStyle(b).fontSize")
    # The demo page sets every button to 40px !important; the shadow root keeps the widget's own.
    assert size != "40px"


class _ShopPage:
    """A shop's page on its own origin (another port on loopback), embedding the hub's script."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                body = shop.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.html = ""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_site_with_allowed_origins_works_on_its_pages_and_on_the_embedded_hubs_demo(chromium, tmp_path, receiver):
    from tests.functional.conftest import WEBCHAT_SECRET, RunningHub, start_hub

    shop = _ShopPage()
    site = {"id": "acme", "identity_secrets": [WEBCHAT_SECRET], "allowed_origins": [shop.origin]}
    runtime = start_hub(tmp_path, receiver, extra={"channels": {"webchat": {"sites": [site]}}}).start()
    context = chromium.new_context(locale="en-US")
    try:
        running = RunningHub(runtime, receiver, tmp_path / "data")
        shop.html = (f'<!doctype html><html lang="en"><title>Shop</title><body><h1>Shop</h1>'
                     f'<script src="{running.url}/webchat/widget.js" data-site-id="acme" async></script></body></html>')
        page = context.new_page()
        page.goto(f"{shop.origin}/product/1042")
        _open_and_write(page, "Written on the shop's page")
        expect(page.get_by_role("log").get_by_text("Sent", exact=True)).to_be_visible()

        # The demo page is on the hub's own origin, which the site does not list: the embedded hub
        # accepts its own pages all the same.
        demo = context.new_page()
        demo.goto(running.url + "/webchat/demo.html")
        _open_and_write(demo, "Written on the demo page")
        expect(demo.get_by_role("log").get_by_text("Sent", exact=True)).to_be_visible()

        texts = running.wait_for(lambda: len(found := [e["data"]["contact"]["text"] for e in running.outbox()
                                                      if e["type"] == "contact.created"]) == 2 and found,
                                 message="both contacts")
        assert sorted(texts) == ["Written on the demo page", "Written on the shop's page"]
        # Any other page is still refused (a non-browser client naming a foreign Origin, here).
        body = json.dumps({"site_id": "acme", "visitor_id": "v-1", "message_id": "m-1", "text": "x"}).encode()
        refused = running.post("/webhooks/webchat", body, {"Content-Type": "application/json",
                                                           "Origin": "http://evil.example"})
        assert refused.status == 403
    finally:
        context.close()
        runtime.stop()
        shop.close()
