"""A stateful stand-in for Zendesk Support's ticket API, for tests that need the vendor to
remember what it accepted (a worker crash after Zendesk created a ticket): users by external
id, tickets with their comments, lookup by external id, idempotency keys, and the comments list
(`GET /api/v2/tickets/{id}/comments?include=users`) the two-way sync reads back. Comments the
hub writes are authored by the API user (`HUB_USER_ID`); a test adds an agent's with
`agent_comment`. Shapes as in Zendesk's Ticket Comments API reference
(https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/)."""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qs, urlsplit

from tests.support.vendor_fake import JsonHandler, VendorFake


#: The API user the hub authenticates as, and an agent of the account.
HUB_USER_ID = 5000
AGENT_ID = 5001
_STAFF = [{"id": HUB_USER_ID, "name": "Hub Integration", "email": "hub@acme.example", "role": "admin"},
          {"id": AGENT_ID, "name": "Alex Agent", "email": "alex@acme.example", "role": "agent"}]


class FakeZendesk(VendorFake):
    def __init__(self) -> None:
        self.tickets: dict[int, dict] = {}
        self.users: dict[str, dict] = {}
        self.idempotency: dict[str, int] = {}
        #: Webhooks and triggers created through the API (`hubctl callbacks setup --create`).
        self.webhooks: dict[str, dict] = {}
        self.triggers: list[dict] = []
        #: Every request as (method, path, JSON body or None).
        self.log: list[tuple[str, str, dict | None]] = []
        self._lock = threading.Lock()
        self._clock = 1767225600  # 2026-01-01T00:00:00Z, one second per comment
        fake = self

        class Handler(JsonHandler):


            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                fake.log.append(("GET", self.path, None))
                comments = re.fullmatch(r"/api/v2/tickets/(\d+)/comments", url.path)
                if comments:
                    with fake._lock:
                        ticket = fake.tickets.get(int(comments.group(1)))
                        if ticket is None:
                            return self._send(404, {"error": "RecordNotFound"})
                        listed = list(ticket["comments"])
                    if parse_qs(url.query).get("sort_order", ["asc"])[0] == "desc":
                        listed.reverse()
                    users = [*_STAFF, *({**u, "role": "end-user"} for u in fake.users.values())]
                    return self._send(200, {"comments": listed, "users": users, "count": len(listed)})
                secret = re.fullmatch(r"/api/v2/webhooks/(\w+)/signing_secret", url.path)
                if secret and secret.group(1) in fake.webhooks:
                    return self._send(200, {"signing_secret": {"algorithm": "SHA256",
                                                               "secret": f"zd-secret-{secret.group(1)}"}})
                if url.path == "/api/v2/tickets":
                    wanted = parse_qs(url.query).get("external_id", [""])[0]
                    with fake._lock:
                        found = [t for t in fake.tickets.values() if t["external_id"] == wanted]
                    return self._send(200, {"tickets": found, "count": len(found)})
                return self._send(404, {"error": "RecordNotFound"})

            def do_POST(self):  # noqa: N802
                body = self._body()
                fake.log.append(("POST", self.path, body))
                with fake._lock:
                    if self.path == "/api/v2/users/create_or_update":
                        user = body["user"]
                        stored = fake.users.setdefault(user["external_id"], {"id": 900 + len(fake.users), **user})
                        return self._send(200, {"user": stored})
                    if self.path == "/api/v2/webhooks":
                        webhook_id = f"01HQ{len(fake.webhooks):022d}"
                        fake.webhooks[webhook_id] = {**body["webhook"], "id": webhook_id}
                        return self._send(201, {"webhook": fake.webhooks[webhook_id]})
                    if self.path == "/api/v2/triggers":
                        trigger = {**body["trigger"], "id": 360000 + len(fake.triggers), "active": True}
                        fake.triggers.append(trigger)
                        return self._send(201, {"trigger": trigger})
                    if self.path == "/api/v2/tickets":
                        key = self.headers.get("idempotency-key")
                        if key in fake.idempotency:
                            return self._send(201, {"ticket": fake.tickets[fake.idempotency[key]]})
                        ticket_id = 35436 + len(fake.tickets)
                        ticket = {**body["ticket"], "id": ticket_id, "status": "new",
                                  "description": body["ticket"]["comment"].get("body", ""), "comments": []}
                        fake._add_comment(ticket, body["ticket"]["comment"])
                        fake.tickets[ticket_id] = ticket
                        if key:
                            fake.idempotency[key] = ticket_id
                        return self._send(201, {"ticket": ticket})
                return self._send(404, {"error": "RecordNotFound"})

            def do_PUT(self):  # noqa: N802
                match = re.fullmatch(r"/api/v2/tickets/(\d+)", urlsplit(self.path).path)
                body = self._body()
                fake.log.append(("PUT", self.path, body))
                with fake._lock:
                    ticket = fake.tickets.get(int(match.group(1))) if match else None
                    if ticket is None:
                        return self._send(404, {"error": "RecordNotFound"})
                    if ticket["status"] == "closed":
                        return self._send(422, {"error": "RecordInvalid", "description": "Status: closed prevents "
                                                "ticket update"})
                    if "status" in body["ticket"]:
                        ticket["status"] = body["ticket"]["status"]
                    comment = fake._add_comment(ticket, body["ticket"]["comment"]) if "comment" in body["ticket"] else None
                    events = [{"id": comment["id"], "type": "Comment"}] if comment else []
                    audit = {"id": 7000 + len(ticket["comments"]), "events": events}
                    return self._send(200, {"ticket": ticket, "audit": audit})


        self._serve(Handler)

    def _add_comment(self, ticket: dict, comment: dict, *, author_id: int = HUB_USER_ID) -> dict:
        """Store a comment as Zendesk returns it (callers hold the lock)."""
        from datetime import datetime, timezone

        self._clock += 1
        body = comment.get("body") or comment.get("html_body") or ""
        stored = {"id": 8000 + sum(len(t["comments"]) for t in self.tickets.values()) + 1,
                  "type": "Comment", "author_id": comment.get("author_id", author_id), "body": body,
                  "html_body": f"<div class=\"zd-comment\"><p>{body}</p></div>", "plain_body": body,
                  "public": comment.get("public", True), "attachments": comment.get("attachments", []),
                  "created_at": datetime.fromtimestamp(self._clock, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        ticket["comments"].append(stored)
        return stored

    def agent_comment(self, ticket_id: int, body: str, *, public: bool = True, author_id: int = AGENT_ID,
                      attachments: list[dict] | None = None) -> dict:
        """An agent writes on the ticket in Zendesk's agent workspace; the stored comment."""
        with self._lock:
            return self._add_comment(self.tickets[ticket_id], {"body": body, "public": public, "author_id": author_id,
                                                               "attachments": attachments or []})

    def set_status(self, ticket_id: int, status: str) -> None:
        with self._lock:
            self.tickets[ticket_id]["status"] = status

    def comments(self, ticket_id: int) -> list[dict]:
        with self._lock:
            return list(self.tickets[ticket_id]["comments"])
