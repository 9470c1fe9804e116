"""A stand-in for the Twilio APIs a Flex destination calls: TaskRouter's task lookup, Flex's
Interactions (each one makes a Conversation, whose sid the test chooses), and the Conversations
participants and messages the callback side reads and writes. Form posts, JSON answers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeFlex:
    def __init__(self, conversation_sid: str) -> None:
        self.conversation_sid = conversation_sid
        #: The customer's participant: `None` for a chat identity, or a messaging binding.
        self.customer_binding: dict | None = None
        self.interactions: list[dict] = []
        self.messages: list[dict] = []
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

            def _form(self) -> dict[str, str]:
                raw = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
                return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

            def do_GET(self):  # noqa: N802
                path = urlsplit(self.path).path
                if path.endswith("/Tasks"):
                    return self._send(200, {"tasks": [], "meta": {}})
                if path.endswith("/Participants"):
                    customer = {"sid": "MB" + "2" * 32, "identity": None if fake.customer_binding else "cus_x",
                                "messaging_binding": fake.customer_binding}
                    agent = {"sid": "MB" + "1" * 32, "identity": "alice_40example_2Ecom", "messaging_binding": None}
                    return self._send(200, {"participants": [customer, agent], "meta": {}})
                return self._send(404, {"code": 20404, "message": "not found"})

            def do_POST(self):  # noqa: N802
                path, form = urlsplit(self.path).path, self._form()
                with fake._lock:
                    if path == "/v1/Interactions":
                        fake.interactions.append(form)
                        attributes = {"conversationSid": fake.conversation_sid, "hub_delivery_id": "x"}
                        return self._send(201, {"sid": f"KD{len(fake.interactions):032d}", "routing": {"properties": {
                            "sid": f"WT{len(fake.interactions):032d}", "attributes": json.dumps(attributes)}}})
                    if path.endswith("/Messages"):
                        fake.messages.append({"path": path, **form})
                        return self._send(201, {"sid": f"IM{len(fake.messages):032d}"})
                return self._send(404, {"code": 20404, "message": "not found"})

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeFlex:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
