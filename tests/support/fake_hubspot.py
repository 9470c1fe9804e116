"""A stateful stand-in for the HubSpot CRM calls the connector makes (contacts, tickets, notes),
for the two-way tests: it remembers what it accepted, so a test can read the notes written on a
ticket. Ticket ids start at 512, as in tests/fixtures/callbacks/hubspot/."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from tests.support.vendor_fake import JsonHandler, VendorFake

FIRST_TICKET = 512


class FakeHubSpot(VendorFake):
    def __init__(self) -> None:
        self.contacts: dict[str, dict] = {}
        self.tickets: dict[str, dict] = {}
        self.notes: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(JsonHandler):


            def do_POST(self):  # noqa: N802
                path, body = urlsplit(self.path).path, self._body()
                with fake._lock:
                    fake.requests.append(("POST", path, body))
                    if path == "/crm/v3/objects/contacts/batch/upsert":
                        contact = fake._add(fake.contacts, 701, body["inputs"][0]["properties"])
                        return self._send(200, {"status": "COMPLETE", "results": [contact]})
                    if path.endswith("/search"):
                        return self._send(200, {"total": 0, "results": fake._search(path, body)})
                    store = {"/crm/v3/objects/contacts": (fake.contacts, 701),
                             "/crm/v3/objects/tickets": (fake.tickets, FIRST_TICKET),
                             "/crm/v3/objects/notes": (fake.notes, 88001)}.get(path)
                    if store is None:
                        return self._send(404, {"status": "error", "message": f"no route {path}"})
                    record = fake._add(store[0], store[1], body.get("properties", {}), body.get("associations", []))
                    return self._send(201, record)

            def do_PATCH(self):  # noqa: N802
                with fake._lock:
                    fake.requests.append(("PATCH", urlsplit(self.path).path, self._body()))
                return self._send(200, {"id": urlsplit(self.path).path.rsplit("/", 1)[1]})


        self._serve(Handler)

    def _add(self, store: dict, first: int, properties: dict, associations: list | None = None) -> dict:
        record = {"id": str(first + len(store)), "properties": dict(properties), "associations": associations or []}
        store[record["id"]] = record
        return record

    def _search(self, path: str, body: dict) -> list[dict]:
        if path != "/crm/v3/objects/notes/search":
            return []
        wanted = body["filterGroups"][0]["filters"][0]["value"]
        return [n for n in self.notes.values() if any(a["to"]["id"] == wanted for a in n["associations"])]

    def ticket_notes(self, ticket_id: str) -> list[str]:
        """The bodies of the notes associated with the ticket, oldest first."""
        with self._lock:
            return [n["properties"].get("hs_note_body", "") for n in self.notes.values()
                    if any(a["to"]["id"] == ticket_id for a in n["associations"])]
