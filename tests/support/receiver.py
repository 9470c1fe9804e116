"""A real HTTP server on 127.0.0.1 that plays a destination: records requests, answers as scripted."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    #: When it arrived (time.monotonic), to check delays between attempts.
    at: float = 0.0
    #: The status the receiver answered with.
    answered: int = 0


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    """`script` answers are used in order; when it runs out, `default` answers."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: list[Answer] = []
        self.default = Answer(200, b'{"ok":true}')
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - stdlib name
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    answer = receiver.script.pop(0) if receiver.script else receiver.default
                    receiver.requests.append(Received(
                        self.path, self.command, {k.lower(): v for k, v in self.headers.items()}, body,
                        time.monotonic(), answer.status,
                    ))
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            # Vendor connectors look objects up (GET) and update them (PUT, PATCH) too.
            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST  # noqa: N815

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll: `shutdown` waits for the loop to notice, once per test that uses a receiver.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
