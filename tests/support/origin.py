"""A local origin for download tests: a raw TCP server on 127.0.0.1 that answers each path with
scripted bytes, so a test can send what no well-behaved server would (a gzip bomb, headers or a
body trickled byte by byte, a Content-Length it never honours), and that records every
connection and request it got.

`route` stands in for the network between the downloader and the address it checked: it records
the endpoint the downloader chose and reaches this server instead, so a test can make a host
"resolve" to a public address and still serve it locally.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from chalicelib.adapters.downloads import Downloader, Endpoint


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Announce this length instead of the body's (None: the body's; False: none, close to end).
    length: int | None | bool = None
    #: Send the body (and with `trickle_head` the head) in pieces of this many bytes, `pause`
    #: seconds apart.
    piece: int | None = None
    pause: float = 0.0
    #: Also trickle the status line and headers (else they go at once).
    trickle_head: bool = False
    #: Seconds to wait after the head before the body.
    stall: float = 0.0


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    peer: str


def gzip_bomb(inflated_bytes: int) -> bytes:
    """A gzip stream of `inflated_bytes` zeros, about a thousandth of that size, made without
    ever holding the inflated bytes."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: the gzip container
    zeros = bytes(1024 * 1024)
    parts, left = [], inflated_bytes
    while left:
        parts.append(deflate.compress(zeros[: min(left, len(zeros))]))
        left -= min(left, len(zeros))
    parts.append(deflate.flush())
    return b"".join(parts)


class Origin:
    def __init__(self) -> None:
        self.routes: dict[str, Reply] = {}
        self.requests: list[Request] = []
        self.connections = 0
        #: Endpoints the downloader connected to, through `route`.
        self.endpoints: list[Endpoint] = []
        #: Body bytes actually written to the socket, per path (a client that stops reading
        #: stops this count, up to what the kernel buffers).
        self.sent: dict[str, int] = {}
        self._lock = threading.Lock()
        origin = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with origin._lock:
                    origin.connections += 1
                try:
                    request_line = self.rfile.readline(8192).decode("latin-1")
                    if not request_line:
                        return
                    headers = {}
                    while (line := self.rfile.readline(8192)) not in (b"\r\n", b"\n", b""):
                        name, _, value = line.decode("latin-1").partition(":")
                        headers[name.strip().lower()] = value.strip()
                    path = request_line.split(" ")[1] if " " in request_line else "/"
                    with origin._lock:
                        origin.requests.append(Request(path, headers, self.client_address[0]))
                    origin._answer(self.connection, path, origin.routes.get(path, Reply(404, b"no such file")))
                except OSError:
                    pass  # the client hung up (a broken pipe, a reset): what a limit or a deadline does

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _answer(self, conn: socket.socket, path: str, reply: Reply) -> None:
        lines = [f"HTTP/1.1 {reply.status} X"]
        if reply.length is not False:
            lines.append(f"Content-Length: {len(reply.body) if reply.length is None else reply.length}")
        lines += [f"{k}: {v}" for k, v in reply.headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if reply.trickle_head:
            self._send(conn, head, reply.piece or 1, reply.pause)
        else:
            conn.sendall(head)
        if reply.stall:
            time.sleep(reply.stall)
        self._send(conn, reply.body, reply.piece or len(reply.body) or 1, reply.pause if reply.piece else 0.0,
                   count=path)
        conn.shutdown(socket.SHUT_WR)

    def _send(self, conn: socket.socket, data: bytes, piece: int, pause: float, count: str | None = None) -> None:
        for start in range(0, len(data), piece):
            conn.sendall(data[start:start + piece])
            if count is not None:
                with self._lock:
                    self.sent[count] = self.sent.get(count, 0) + len(data[start:start + piece])
            if pause:
                time.sleep(pause)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, endpoint: Endpoint) -> Endpoint:
        with self._lock:
            self.endpoints.append(endpoint)
        return Endpoint("http", "127.0.0.1", self.port, endpoint.host)

    def downloader(self, resolve: Callable[[str], list[str]], **options) -> Downloader:
        """A downloader whose checked endpoints all lead here."""
        return Downloader(resolve=resolve, route=self.route, **options)

    def __enter__(self) -> Origin:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
