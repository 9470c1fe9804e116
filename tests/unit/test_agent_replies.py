"""`AgentReplies` decisions without a network: what is read back, what is refused, what is sent,
and the worker's time guard (on an in-memory SQLite store, a stand-in vendor side and a
recording message service)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest

from chalicelib.adapters.callbacks.base import CallbackSettings, ParsedCallback, VendorCallbacks
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.models import AgentAuthor, AgentReply, Case, Contact, Customer
from chalicelib.errors import NotFoundError, RetryableDeliveryError, SendRefusedError
from chalicelib.observability import Counters
from chalicelib.service.agent_replies import AgentReplies, ReplyOutcome, VendorUnavailableError
from chalicelib.service.messages import Accepted

NOW = datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc)


@dataclass
class Settings:
    callbacks: CallbackSettings
    timeout_seconds: float = 10.0


@dataclass
class Connector:
    settings: Settings
    name: str = "helpdesk"
    key: str = "fake"
    secrets: object = None


class Side(VendorCallbacks):
    """A vendor whose read-back and notes are scripted."""

    takes_notes = True

    def __init__(self, confirm=None, **settings) -> None:
        super().__init__(Connector(Settings(CallbackSettings(secrets=["s"], hub_author_ids=["5000"], **settings))))
        self.confirm_with = confirm
        self.confirmed: list[AgentReply] = []
        self.notes: list[tuple[str, str, str | None]] = []

    def verify(self, request) -> None:  # pragma: no cover - not on the worker's path
        raise AssertionError

    def parse(self, request) -> ParsedCallback:  # pragma: no cover
        raise AssertionError

    def setup(self):  # pragma: no cover
        raise AssertionError

    def confirm(self, reply: AgentReply):
        self.confirmed.append(reply)
        if isinstance(self.confirm_with, Exception):
            raise self.confirm_with
        return self.confirm_with(reply) if self.confirm_with else reply.model_copy(update={"confirmed": True})

    def note(self, ticket: str, text: str, *, reply_ref: str | None = None) -> str | None:
        self.notes.append((ticket, text, reply_ref))
        return "note-1"


@dataclass
class Messages:
    refuse: Exception | None = None
    sent: list = field(default_factory=list)

    def customer(self, customer_id: str) -> Customer:
        if customer_id != "cus_1":
            raise NotFoundError("gone")
        return Customer(id="cus_1")

    def send(self, request, **kwargs) -> Accepted:
        if self.refuse is not None:
            raise self.refuse
        self.sent.append((request, kwargs))
        return Accepted(Contact.model_construct(id=kwargs["message_id"], channel=type("C", (), {"value": "sms"})()))


def world(side: Side, messages: Messages | None = None):
    store = SqliteStore(":memory:")
    store.create_customer(Customer(id="cus_1"))
    store.update_customer(Customer(id="cus_1", version=1), cases=(Case(id="case_1", customer_id="cus_1", opened_at=NOW,
                                                                        last_activity_at=NOW),))
    store.put_case_ref("case_1", "helpdesk", "35436")
    messages = messages or Messages()
    replies = AgentReplies(store=store, callbacks=lambda name: side if name == "helpdesk" else None,
                           messages=lambda: messages, events=lambda: pytest.fail("no event expected"),
                           counters=Counters(emit_emf=False), clock=lambda: NOW)
    return replies, messages


def reply(**fields) -> AgentReply:
    values = dict(destination="helpdesk", ticket="35436", event_id="c-1", comment_id="c-1", text="Kommt morgen.",
                  author=AgentAuthor(id="5001", name="Alex"), occurred_at=NOW)
    return AgentReply(**{**values, **fields})


def test_a_confirmed_reply_is_sent_on_the_case_with_its_agent_and_a_stable_id():
    side = Side()
    replies, messages = world(side)
    outcome, message_id = replies.relay(reply())
    assert outcome == ReplyOutcome.SENT
    [(request, kwargs)] = messages.sent
    assert (request.to.case_id, request.channel, request.text) == ("case_1", "reply", "Kommt morgen.")
    assert kwargs["agent_reply"] == {"destination": "helpdesk", "vendor_ref": "35436", "author": "Alex",
                                     "author_id": "5001", "comment_id": "c-1"}
    assert kwargs["origin"] == "callback:helpdesk" and kwargs["human"] is True
    # The vendor's retry derives the same id (the conditional write then refuses it).
    assert world(Side())[0].relay(reply())[1] == message_id
    assert side.confirmed == []  # already confirmed: no read-back


def test_a_hint_is_read_back_and_what_the_read_back_refuses_is_not_sent():
    side = Side(confirm=lambda r: "ticket 35436: the newest public comment is the requester's")
    replies, messages = world(side)
    assert replies.relay(reply(confirmed=False)) == (ReplyOutcome.IGNORED, None)
    assert len(side.confirmed) == 1 and messages.sent == []


@pytest.mark.parametrize("changed", [
    {"author": AgentAuthor(id="5000")},
    {"text": "Wir kümmern uns.\n\nSent to the customer on sms by the hub [hub:ct_01JD0000000000000000000001]"},
    {"text": "Ada via sms:\n\nHallo\n\nHub: contact ct_01JD0000000000000000000002, case case_1"},
    {"text": "   ", "attachments": []},
])
def test_the_hubs_own_comments_and_empty_replies_are_never_sent(changed):
    replies, messages = world(Side())
    assert replies.relay(reply(**changed))[0] == ReplyOutcome.IGNORED
    assert messages.sent == []


def test_a_ticket_no_case_has_is_counted_not_sent():
    replies, messages = world(Side())
    assert replies.relay(reply(ticket="99999")) == (ReplyOutcome.UNKNOWN_TICKET, None)
    assert messages.sent == []


def test_a_case_hint_naming_another_ticket_is_not_trusted():
    replies, messages = world(Side())
    assert replies.relay(reply(ticket="99999", case_id="case_1"))[0] == ReplyOutcome.UNKNOWN_TICKET


def test_an_unavailable_vendor_retries_and_a_refusing_one_drops_the_reply():
    replies, _ = world(Side(confirm=RetryableDeliveryError("zendesk answered 503")))
    with pytest.raises(VendorUnavailableError, match="503"):
        replies.relay(reply(confirmed=False))
    from chalicelib.errors import PermanentDeliveryError

    replies, _ = world(Side(confirm=PermanentDeliveryError("zendesk answered 403")))
    assert replies.relay(reply(confirmed=False))[0] == ReplyOutcome.IGNORED


def test_a_vendor_read_that_might_outlast_the_worker_is_not_started():
    side = Side()
    replies, messages = world(side)
    with pytest.raises(VendorUnavailableError, match="s left in this worker"):
        replies.relay(reply(confirmed=False), seconds_left=lambda: 12.0)  # 10 s timeout + 3 s margin
    assert side.confirmed == [] and messages.sent == []
    assert replies.relay(reply(confirmed=False), seconds_left=lambda: 14.0)[0] == ReplyOutcome.SENT


def test_a_refusal_with_no_conversation_to_record_it_on_is_noted_on_the_ticket_directly():
    side = Side()
    replies, _ = world(side, Messages(refuse=SendRefusedError("no_reachable_channel", "no channel")))
    outcome, _ = replies.relay(reply())
    assert outcome == ReplyOutcome.REFUSED
    [(ticket, text, reply_ref)] = side.notes
    assert (ticket, reply_ref) == ("35436", "c-1")
    assert text.startswith("Not delivered to the customer: no channel (no_reachable_channel)")
    assert "Kommt morgen." in text
