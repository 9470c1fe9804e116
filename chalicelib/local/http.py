"""The embedded runtime's HTTP server: waitress in front of the Chalice app, as API Gateway is on AWS.

Chalice's development server (`chalice local`) answers from a `socketserver` with a listen backlog
of 5 and a thread per connection: bursts of providers' webhooks got connection resets. waitress
is a maintained production WSGI server: an event loop accepts and buffers every connection (a
large backlog, no thread per idle keep-alive connection) and a fixed pool of threads runs the
app. Each request becomes the API Gateway proxy event Chalice expects, through Chalice's own
`LocalGateway` (route matching, binary bodies, CORS preflights), so views see exactly what they
see on Lambda; `HubApp` keeps each thread's request to itself.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from chalice import Chalice
from chalice.config import Config
from chalice.local import LocalGateway, LocalGatewayException

logger = logging.getLogger(__name__)

#: API Gateway's payload limit: larger requests never reach a Lambda, so they never reach the app.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
#: Connections waiting to be accepted; the kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 2048
#: Open connections at once (idle keep-alive ones included) before new ones wait in the backlog.
CONNECTION_LIMIT = 1000

_NOT_FOUND = json.dumps({"error": {"code": "not_found", "message": "no route for this path", "detail": {}}})


class GatewayApplication:
    """A WSGI application that hands each request to the Chalice app as API Gateway would."""

    def __init__(self, app: Chalice, config: Config) -> None:
        self._gateway = _Gateway(app, config)

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        headers = _headers(environ)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else None
        # The raw request target, as API Gateway matches it (PATH_INFO is already %-decoded).
        target = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        try:
            response = self._gateway.handle_request(
                method=environ["REQUEST_METHOD"], path=target, headers=headers, body=body,
            )
        except LocalGatewayException as error:
            # The app has no authorizers, so the local gateway's only 403 is "no route matched":
            # the hub answers that with its JSON 404, as its catch-all route does on AWS.
            if error.CODE == 403:
                return _not_found(start_response)
            return _respond(start_response, error.CODE, dict(error.headers), error.body or b"")
        except UnicodeEncodeError:
            # Also "no route matched": the local gateway quotes an Authorization header into that
            # 403 as ASCII, and fails on a non-ASCII one. Views never raise here (Chalice turns
            # their exceptions into responses), so nothing else reaches this line.
            return _not_found(start_response)
        response_headers = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            response_headers[name] = values
        data = response.get("body") or b""
        if response.get("isBase64Encoded"):
            data = base64.b64decode(data)
        elif isinstance(data, str):
            data = data.encode("utf-8")
        response_headers.setdefault("Content-Type", "application/json")
        return _respond(start_response, response["statusCode"], response_headers, data)


def _not_found(start_response: Callable) -> list[bytes]:
    return _respond(start_response, 404, {"Content-Type": "application/json"}, _NOT_FOUND.encode())


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


class _Gateway(LocalGateway):
    def _generate_lambda_event(self, method: str, path: str, headers: dict, body: bytes | None) -> dict:
        event = super()._generate_lambda_event(method, path, headers, body)
        # API Gateway gives every request an id; views put it into error bodies and logs.
        event["requestContext"]["requestId"] = str(uuid.uuid4())
        return event


def _respond(start_response: Callable, status: int, headers: dict[str, Any], body: bytes) -> list[bytes]:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    pairs = []
    for name, value in headers.items():
        if name.lower() == "content-length":
            continue
        for one in value if isinstance(value, list) else [value]:
            pairs.append((str(name), str(one)))
    pairs.append(("Content-Length", str(len(body))))
    start_response(f"{status} {reason}", pairs)
    return [body]


class HttpServer:
    """waitress serving `app` on `host:port` (0 picks a free port) with `threads` app threads."""

    def __init__(self, app: Chalice, host: str, port: int, *, threads: int, stage: str = "local") -> None:
        from waitress.server import create_server

        self._server = create_server(
            GatewayApplication(app, Config(chalice_stage=stage)),
            host=host, port=port, threads=threads, backlog=LISTEN_BACKLOG, connection_limit=CONNECTION_LIMIT,
            max_request_body_size=MAX_REQUEST_BYTES, asyncore_use_poll=True, expose_tracebacks=False,
            ident="omnichannel-hub", clear_untrusted_proxy_headers=True, channel_timeout=60,
        )
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self._server.effective_host, int(self._server.effective_port)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.run()
        except OSError:  # the listening socket was closed by stop()
            pass

    def stop(self) -> None:
        """Let the app threads finish the requests they hold, then close every socket (the
        listening one and kept-alive connections), which ends the event loop."""
        from waitress import wasyncore

        self._server.task_dispatcher.shutdown(cancel_pending=False, timeout=10)
        wasyncore.close_all(self._server._map)
        if self._thread is not None:
            self._thread.join(timeout=10)
