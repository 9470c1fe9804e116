"""A stateful stand-in for the HubSpot CRM calls the connector makes (contacts, tickets, notes),
for the two-way tests: it remembers what it accepted, so a test can read the notes written on a
ticket. Ticket ids start at 512, as in tests/fixtures/callbacks/hubspot/."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FIRST_TICKET = 512


class FakeHubSpot:
    def __init__(self) -> None:
        self.contacts: dict[str, dict] = {}
        self.tickets: dict[str, dict] = {}
        self.notes: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> dict:
                return json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")

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

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

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

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHubSpot:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
