"""A stateful stand-in for Freshdesk's ticket API, for two-way tests: tickets the connector creates,
the notes it adds (the customer's messages, the hub's outbound notes, failure notes), and the
conversations an agent writes (`agent_writes`), listed back as `GET …/conversations` lists them
(oldest first; fields as in tests/fixtures/callbacks/freshdesk/conversations.json)."""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qs, urlsplit

from chalicelib.adapters.callbacks.base import plain_text

from tests.support.vendor_fake import JsonHandler, VendorFake

#: The agent whose API key the hub uses: the author of the notes the hub writes.
API_AGENT_ID = 7
AGENT_ID = 42


class FakeFreshdesk(VendorFake):
    def __init__(self) -> None:
        self.tickets: dict[int, dict] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        #: `created_at` of the next conversation (the hub's test clock starts at 00:00:30).
        self.now = "2026-01-01T00:00:20Z"
        self._ids = iter(range(3000000001, 3999999999))
        self._lock = threading.Lock()
        fake = self

        class Handler(JsonHandler):


            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                with fake._lock:
                    fake.requests.append(("GET", self.path, None))
                    match = re.fullmatch(r"/api/v2/tickets/(\d+)/conversations", url.path)
                    ticket = fake.tickets.get(int(match.group(1))) if match else None
                    if ticket is None:
                        return self._send(404, {"code": "access_denied"})
                    page = int(parse_qs(url.query).get("page", ["1"])[0])
                    return self._send(200, list(ticket["conversations"]) if page == 1 else [])

            def do_POST(self):  # noqa: N802
                body = self._body()
                with fake._lock:
                    fake.requests.append(("POST", self.path, body))
                    if self.path == "/api/v2/tickets":
                        ticket_id = 43 + len(fake.tickets)
                        fake.tickets[ticket_id] = {**body, "id": ticket_id, "conversations": []}
                        return self._send(201, {"id": ticket_id, "status": 2, "priority": 2, "source": 7,
                                                "requester_id": 129})
                    match = re.fullmatch(r"/api/v2/tickets/(\d+)/notes", self.path)
                    ticket = fake.tickets.get(int(match.group(1))) if match else None
                    if ticket is None:
                        return self._send(404, {"code": "access_denied"})
                    note = fake._conversation(ticket["id"], body["body"], private=body.get("private", True),
                                              incoming=body.get("incoming", False),
                                              user_id=body.get("user_id", API_AGENT_ID), source=2)
                    return self._send(201, note)


        self._serve(Handler)

    def _conversation(self, ticket_id: int, body: str, *, private: bool, incoming: bool, user_id: int, source: int,
                      attachments: list | None = None) -> dict:
        conversation = {"id": next(self._ids), "body": body, "body_text": plain_text(body) or "",
                        "incoming": incoming, "private": private, "user_id": user_id, "source": source,
                        "support_email": None, "ticket_id": ticket_id, "to_emails": [],
                        "attachments": attachments or [], "created_at": self.now, "updated_at": self.now}
        self.tickets[ticket_id]["conversations"].append(conversation)
        return conversation

    def agent_writes(self, ticket_id: int | str, body: str, *, private: bool = False, source: int = 0,
                     user_id: int = AGENT_ID) -> dict:
        """An agent's reply (`source` 0) or note (2) on the ticket, as Freshdesk would store it."""
        with self._lock:
            return self._conversation(int(ticket_id), body, private=private, incoming=False, user_id=user_id,
                                      source=source)

    def notes(self, ticket_id: int | str) -> list[dict]:
        """What the hub posted as notes on the ticket, in order."""
        return [body for method, path, body in self.requests
                if method == "POST" and path == f"/api/v2/tickets/{ticket_id}/notes"]

    def conversation_reads(self) -> int:
        return sum(1 for method, path, _ in self.requests if method == "GET" and "/conversations" in path)
