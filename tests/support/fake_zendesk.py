"""A stateful stand-in for Zendesk Support's ticket API, for tests that need the vendor to
remember what it accepted (a worker crash after Zendesk created a ticket): users by external
id, tickets with their comments, lookup by external id, idempotency keys."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeZendesk:
    def __init__(self) -> None:
        self.tickets: dict[int, dict] = {}
        self.users: dict[str, dict] = {}
        self.idempotency: dict[str, int] = {}
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

            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                if url.path == "/api/v2/tickets":
                    wanted = parse_qs(url.query).get("external_id", [""])[0]
                    with fake._lock:
                        found = [t for t in fake.tickets.values() if t["external_id"] == wanted]
                    return self._send(200, {"tickets": found, "count": len(found)})
                return self._send(404, {"error": "RecordNotFound"})

            def do_POST(self):  # noqa: N802
                body = self._body()
                with fake._lock:
                    if self.path == "/api/v2/users/create_or_update":
                        user = body["user"]
                        stored = fake.users.setdefault(user["external_id"], {"id": 900 + len(fake.users), **user})
                        return self._send(200, {"user": stored})
                    if self.path == "/api/v2/tickets":
                        key = self.headers.get("idempotency-key")
                        if key in fake.idempotency:
                            return self._send(201, {"ticket": fake.tickets[fake.idempotency[key]]})
                        ticket_id = 35436 + len(fake.tickets)
                        ticket = {**body["ticket"], "id": ticket_id, "status": "new",
                                  "description": body["ticket"]["comment"].get("body", ""),
                                  "comments": [body["ticket"]["comment"]]}
                        fake.tickets[ticket_id] = ticket
                        if key:
                            fake.idempotency[key] = ticket_id
                        return self._send(201, {"ticket": ticket})
                return self._send(404, {"error": "RecordNotFound"})

            def do_PUT(self):  # noqa: N802
                match = re.fullmatch(r"/api/v2/tickets/(\d+)", urlsplit(self.path).path)
                body = self._body()
                with fake._lock:
                    ticket = fake.tickets.get(int(match.group(1))) if match else None
                    if ticket is None:
                        return self._send(404, {"error": "RecordNotFound"})
                    ticket["comments"].append(body["ticket"]["comment"])
                    audit = {"id": 7000 + len(ticket["comments"]),
                             "events": [{"id": 8000 + len(ticket["comments"]), "type": "Comment"}]}
                    return self._send(200, {"ticket": ticket, "audit": audit})

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeZendesk:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
