"""What every stateful vendor fake shares: a real HTTP server on 127.0.0.1 (the hub's connectors
and callback sides call it over the network, as they call the vendor) and a request handler with
JSON answers, JSON or form bodies and quiet logs. A fake subclasses `VendorFake`, keeps its state,
and serves its own `JsonHandler` subclass with `_serve`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs


class JsonHandler(BaseHTTPRequestHandler):
    #: Salesforce answers `application/json;charset=UTF-8`; most vendors plain JSON.
    content_type = "application/json"

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", self.content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _raw(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length", "0")))

    def _body(self) -> dict:
        return json.loads(self._raw() or b"{}")

    def _form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self._raw().decode(), keep_blank_values=True).items()}

    def log_message(self, *args) -> None:
        pass


class VendorFake:
    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # A short poll: `shutdown` waits for the loop to notice, once per test that uses a fake.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
