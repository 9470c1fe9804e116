"""Downloads of files at URLs the hub does not choose: a provider's media URL, a web chat
visitor's attachment link. Every such GET goes through `Downloader.get`.

The shared connector client (`connectors/http.py`) suits vendor APIs: it reads whole bodies and
undoes gzip before anyone can count the bytes, so a 199 KB gzip body once grew the deliver
worker by 400 MB. A URL someone else chose needs more care, which is taken here once:

- The host is resolved once. Every address must be public, unless the caller names the host as
  configured (a local fake, a sandbox). The connection then goes to exactly the address that was
  checked, with TLS checking the certificate against the name and the Host header carrying it,
  so a second lookup cannot rebind the name to an internal address.
- `Accept-Encoding: identity` is sent. A body that arrives encoded anyway is refused, never
  inflated.
- The byte cap holds while reading. An announced Content-Length is checked first.
- One deadline covers the whole download: connecting, the TLS handshake, the headers and the
  body. Per-read timeouts never fire against a server that trickles a byte at a time, so a
  watchdog shuts the socket down when the deadline passes, whatever the read is blocked in.
- Redirects are returned, not followed. A caller that follows one calls `get` again, through the
  same checks.
- Errors name the host, never the URL: Telegram's file URLs carry the bot token.

urllib3 (in the Lambda runtime with botocore) is imported on the first download, not at import:
cold starts matter.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chalicelib.errors import HubError, TransientError

USER_AGENT = "omnichannel-hub/1"
#: How much of a non-2xx body is kept, for the caller to classify (a JSON error).
MAX_ERROR_BYTES = 4096
CHUNK_BYTES = 64 * 1024
#: Addresses of one name tried in turn when connecting fails (all of them checked).
MAX_ADDRESSES = 4

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: IPv6 prefixes that carry an IPv4 address, which must be public too.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_6TO4 = ipaddress.IPv6Network("2002::/16")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")


class Refusal:
    """Why a download was refused (permanent: asking again gets the same answer)."""

    BAD_URL = "bad_url"
    HOST_NOT_ALLOWED = "host_not_allowed"
    TOO_LARGE = "too_large"
    ENCODED = "encoded"


class DownloadRefusedError(HubError):
    """The download is not allowed (a URL we do not fetch, a host with a non-public address), or
    its answer is not acceptable (too large, encoded). `reason` is a `Refusal`."""

    code = "download_refused"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, detail={"reason": reason})
        self.reason = reason


class DownloadFailedError(TransientError):
    """The host could not be reached, a read timed out, or the deadline passed."""

    code = "download_failed"


@dataclass(frozen=True)
class Endpoint:
    """Where one download connects: the checked address, and the name TLS and Host carry."""

    scheme: str
    address: str
    port: int
    host: str


@dataclass(frozen=True)
class Download:
    """An HTTP answer: a download's, or (for media) a small JSON lookup's through the shared
    client, which connects by name and has no `address`."""

    status: int
    #: Header names lower-cased.
    headers: Mapping[str, str]
    #: The whole body of a 2xx answer; at most `error_bytes` of any other (empty when encoded).
    body: bytes
    host: str
    #: The address the download connected to.
    address: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_redirect(self) -> bool:
        return self.status in (301, 302, 303, 307, 308)

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def resolve_addresses(host: str) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order. Raises `OSError`."""
    return [info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]


def is_public_address(address: str) -> bool:
    """Whether `address` is routable on the internet: not loopback, private, link-local (the
    instance metadata service at 169.254.169.254), CGNAT, multicast, reserved, unspecified,
    documentation, IPv6 ULA or link-local, nor any of these inside an IPv6 form (IPv4-mapped,
    NAT64, 6to4). Teredo is refused as a whole."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(str(ip.ipv4_mapped))
        if ip in _NAT64:
            return is_public_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        if ip in _6TO4:
            return is_public_address(str(ip.sixtofour))
        if ip.teredo is not None or ip in _NAT64_LOCAL or ip.is_site_local:
            return False
    elif ip in _CGNAT:
        return False
    # is_global alone lets multicast through, and its lists differ between Python versions.
    return ip.is_global and not (
        ip.is_multicast or ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_unspecified
    )


class Downloader:
    """GETs one URL within a byte cap and a deadline, at a checked address. Thread-safe; one
    connection per download, closed after it."""

    def __init__(
        self,
        *,
        resolve: Callable[[str], Sequence[str]] | None = None,
        route: Callable[[Endpoint], Endpoint] | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        user_agent: str = USER_AGENT,
        ca_certs: str | None = None,
    ) -> None:
        #: Host name → addresses; tests answer for names that do not resolve offline.
        self._resolve = resolve or resolve_addresses
        #: Where a checked endpoint is reached: itself, except in tests, which map public
        #: addresses onto local servers (a NAT, in effect).
        self._route = route or (lambda endpoint: endpoint)
        self._connect_timeout = connect_timeout
        #: Per read, within the deadline: a stalled server fails before the deadline does.
        self._read_timeout = read_timeout
        self._user_agent = user_agent
        #: A CA bundle to trust instead of the system's (a sandbox with its own CA); None: the system's.
        self._ca_certs = ca_certs

    def get(
        self,
        url: str,
        *,
        max_bytes: int,
        deadline: float,
        headers: Mapping[str, str] | None = None,
        allow_private: Collection[str] = (),
        error_bytes: int = MAX_ERROR_BYTES,
    ) -> Download:
        """GET `url` by `deadline` (`time.monotonic()`), without following redirects.

        `allow_private` names hosts (lower case) whose addresses need not be public: hosts an
        operator configured, such as a sandbox on 127.0.0.1. Every other host must resolve to
        public addresses only.

        Raises `DownloadRefusedError` for a URL that is not http(s) or carries credentials, a
        host that resolves to no or a non-public address, a 2xx body over `max_bytes`
        (announced or counted) or one sent encoded; `DownloadFailedError` when the host cannot
        be reached, a read times out or the deadline passes. Any status is returned, a non-2xx
        body cut to `error_bytes`.
        """
        scheme, host, port, target = _split(url)
        self._check_time(host, deadline)
        addresses = self._checked_addresses(host, {h.lower() for h in allow_private})
        unreachable: Exception | None = None
        for address in addresses[:MAX_ADDRESSES]:
            try:
                return self._fetch(Endpoint(scheme, address, port, host), target, headers or {}, max_bytes, deadline,
                                   error_bytes)
            except _UnreachableError as exc:
                unreachable = exc.cause
        raise DownloadFailedError(f"download from {host} failed: {type(unreachable).__name__}")

    def _checked_addresses(self, host: str, allow_private: set[str]) -> list[str]:
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                found = self._resolve(host)
            except OSError as exc:
                raise DownloadFailedError(f"{host} could not be resolved: {type(exc).__name__}") from None
            addresses = list(dict.fromkeys(a.split("%", 1)[0] for a in found))
        if not addresses:
            raise DownloadRefusedError(Refusal.HOST_NOT_ALLOWED, f"{host} resolves to no address")
        if host not in allow_private and not all(is_public_address(a) for a in addresses):
            raise DownloadRefusedError(Refusal.HOST_NOT_ALLOWED, f"{host} resolves to a non-public address")
        return addresses

    def _fetch(
        self, endpoint: Endpoint, target: str, headers: Mapping[str, str], max_bytes: int, deadline: float,
        error_bytes: int,
    ) -> Download:
        import urllib3

        host = endpoint.host
        remaining = self._check_time(host, deadline)
        reach = self._route(endpoint)
        watchdog = _Watchdog(remaining)
        connection = _connection(reach, min(self._connect_timeout, remaining), watchdog, self._ca_certs)
        try:
            try:
                connection.connect()
            except urllib3.exceptions.ConnectTimeoutError as exc:  # NewConnectionError too
                if watchdog.fired:
                    raise _out_of_time(host) from None
                raise _UnreachableError(exc) from None
            connection.timeout = min(self._read_timeout, self._check_time(host, deadline))
            connection.request("GET", target, headers=self._headers(endpoint, headers),
                               preload_content=False, decode_content=False)
            response = connection.getresponse()
            download = self._read(response, endpoint, max_bytes, error_bytes)
            if watchdog.fired:
                # The socket was shut at the deadline: what looked like the end was not.
                raise _out_of_time(host)
            return download
        except (urllib3.exceptions.HTTPError, OSError, _http_exceptions(), ValueError) as exc:
            # ValueError: urllib3's CertificateError, when the certificate does not name the host.
            if watchdog.fired or time.monotonic() >= deadline:
                # A read timeout cut to the time left is the deadline too.
                raise _out_of_time(host) from None
            # The exception text may quote the URL (and with it a Telegram token): the type only.
            raise DownloadFailedError(f"download from {host} failed: {type(exc).__name__}") from None
        finally:
            watchdog.stop()
            connection.close()

    def _headers(self, endpoint: Endpoint, headers: Mapping[str, str]) -> dict[str, str]:
        fixed = {"host", "accept-encoding", "connection"}
        sent = {k: v for k, v in headers.items() if k.lower() not in fixed}
        if not any(k.lower() == "user-agent" for k in sent):
            sent["User-Agent"] = self._user_agent
        name = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        default = _DEFAULT_PORTS[endpoint.scheme] == endpoint.port
        return {**sent, "Host": name if default else f"{name}:{endpoint.port}", "Accept-Encoding": "identity",
                "Connection": "close"}

    def _read(self, response, endpoint: Endpoint, max_bytes: int, error_bytes: int) -> Download:
        host = endpoint.host
        headers = {k.lower(): v for k, v in response.headers.items()}
        encoding = headers.get("content-encoding", "").strip().lower()
        encoded = encoding not in ("", "identity")
        if not 200 <= response.status < 300:
            body = b"" if encoded else _read_upto(response, error_bytes)[:error_bytes]
            return Download(response.status, headers, body, host, endpoint.address)
        if encoded:
            raise DownloadRefusedError(
                Refusal.ENCODED, f"{host} sent a {encoding[:40]}-encoded body though identity was asked for"
            )
        announced = headers.get("content-length", "").strip()
        if announced.isdigit() and int(announced) > max_bytes:
            raise DownloadRefusedError(
                Refusal.TOO_LARGE, f"{host} announced {int(announced)} bytes, more than the {max_bytes} allowed"
            )
        body = _read_upto(response, max_bytes)
        if len(body) > max_bytes:
            raise DownloadRefusedError(Refusal.TOO_LARGE, f"the file from {host} exceeds {max_bytes} bytes")
        return Download(response.status, headers, body, host, endpoint.address)

    @staticmethod
    def _check_time(host: str, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _out_of_time(host)
        return remaining


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of a URL we may fetch."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        raise DownloadRefusedError(Refusal.BAD_URL, "the URL is malformed") from None
    if parts.scheme not in _DEFAULT_PORTS or not host:
        raise DownloadRefusedError(Refusal.BAD_URL, "only http and https URLs with a host are downloaded")
    if parts.username is not None or parts.password is not None:
        raise DownloadRefusedError(Refusal.BAD_URL, f"the URL for {host} carries credentials")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in target):
        raise DownloadRefusedError(Refusal.BAD_URL, f"the URL for {host} has spaces or control characters")
    return parts.scheme, host, port, target


def _read_upto(response, limit: int) -> bytes:
    """The raw body (never decoded), stopping once it is longer than `limit`."""
    chunks, total = [], 0
    while total <= limit and (chunk := response.read1(CHUNK_BYTES, decode_content=False)):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _out_of_time(host: str) -> DownloadFailedError:
    return DownloadFailedError(f"download from {host} ran out of time")


class _UnreachableError(Exception):
    """Connecting to one address failed: the next checked address may answer."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


class _Watchdog:
    """Shuts the download's socket down when its deadline passes. A blocked read (a TLS
    handshake, a header line trickled byte by byte) then returns at once, which no per-read
    timeout achieves against a server that keeps sending a little."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            # A duplicate: shutting it down reaches the same connection, and closing it later
            # can never close a descriptor the process has reused meanwhile.
            self._socket = sock.dup()
            if self.fired:
                self._shut()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _connection(endpoint: Endpoint, connect_timeout: float, watchdog: _Watchdog, ca_certs: str | None):
    """An unopened urllib3 connection to `endpoint.address`; over TLS the certificate is checked
    against `endpoint.host`, which SNI also carries."""
    plain, tls = _connection_classes()
    if endpoint.scheme == "https":
        connection = tls(endpoint.address, endpoint.port, timeout=connect_timeout, server_hostname=endpoint.host,
                         assert_hostname=endpoint.host, cert_reqs="CERT_REQUIRED", ca_certs=ca_certs)
    else:
        connection = plain(endpoint.address, endpoint.port, timeout=connect_timeout)
    connection.watchdog = watchdog
    return connection


@functools.cache
def _connection_classes():
    from urllib3.connection import HTTPConnection, HTTPSConnection

    class _Watched:
        watchdog: _Watchdog | None = None

        def _new_conn(self):
            # The TCP socket, before any TLS: from here on the deadline can interrupt anything.
            sock = super()._new_conn()
            if self.watchdog is not None:
                self.watchdog.watch(sock)
            return sock

    return (type("WatchedHTTPConnection", (_Watched, HTTPConnection), {}),
            type("WatchedHTTPSConnection", (_Watched, HTTPSConnection), {}))


@functools.cache
def _http_exceptions() -> type[Exception]:
    import http.client

    return http.client.HTTPException
