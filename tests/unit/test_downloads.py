"""The downloader every outgoing download goes through: address checks without rebinding, no
inflating, the byte cap, one deadline, no redirects, host-only errors, TLS to a pinned address.

Hosts "resolve" through injected resolvers to public addresses, and `Origin.route` carries the
connection for the checked address to a local server, recording the endpoint."""

from __future__ import annotations

import ast
import datetime
import socket
import ssl
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from chalicelib.adapters.downloads import (
    Downloader,
    DownloadFailedError,
    DownloadRefusedError,
    Endpoint,
    Refusal,
    is_public_address,
)
from tests.support.origin import Origin, Reply, gzip_bomb

PUBLIC = "93.184.216.34"
HOST = "files.example.com"
MB = 1024 * 1024


@pytest.fixture
def origin():
    with Origin() as server:
        yield server


def public(host: str) -> list[str]:
    return [PUBLIC]


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


@pytest.mark.parametrize("address, expected", [
    ("93.184.216.34", True), ("8.8.8.8", True), ("2606:4700::6810:84e5", True),
    ("127.0.0.1", False), ("127.9.9.9", False), ("10.0.0.1", False), ("172.16.5.4", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("100.127.255.254", False), ("0.0.0.0", False),
    ("224.0.0.1", False), ("239.255.255.250", False), ("240.0.0.1", False), ("255.255.255.255", False),
    ("192.0.2.10", False), ("198.18.0.1", False),
    ("::1", False), ("::", False), ("fe80::1", False), ("fe80::1%eth0", False), ("fd00:ec2::254", False),
    ("fc00::1", False), ("ff02::1", False), ("fec0::1", False), ("2001:db8::1", False),
    ("::ffff:127.0.0.1", False), ("::ffff:169.254.169.254", False), ("::ffff:93.184.216.34", True),
    ("64:ff9b::a9fe:a9fe", False), ("64:ff9b::5db8:d822", True),  # NAT64 of 169.254.169.254 / a public address
    ("2002:7f00:1::1", False), ("2002:5db8:d822::1", True),      # 6to4 of 127.0.0.1 / a public address
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),            # Teredo
    ("not an address", False),
])
def test_public_addresses(address, expected):
    assert is_public_address(address) is expected


# --- where it connects ---------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [["127.0.0.1"], ["169.254.169.254"], ["10.1.2.3"], [PUBLIC, "10.1.2.3"],
                                    ["::ffff:127.0.0.1"], []])
def test_a_host_with_any_non_public_address_is_refused_before_connecting(origin, answer):
    with pytest.raises(DownloadRefusedError) as refused:
        origin.downloader(resolve=lambda host: answer).get(f"https://{HOST}/a.jpg", max_bytes=MB, deadline=soon())

    assert refused.value.reason == Refusal.HOST_NOT_ALLOWED and HOST in refused.value.message
    assert origin.endpoints == [] and origin.connections == 0


@pytest.mark.parametrize("url", ["https://127.0.0.1/a", "https://[::1]/a", "http://169.254.169.254/latest/meta-data/",
                                 "https://[::ffff:a9fe:a9fe]/a"])
def test_address_literals_are_checked_without_a_resolver(origin, url):
    asked = []

    with pytest.raises(DownloadRefusedError) as refused:
        origin.downloader(resolve=lambda host: asked.append(host) or [PUBLIC]).get(url, max_bytes=MB, deadline=soon())

    assert refused.value.reason == Refusal.HOST_NOT_ALLOWED
    assert asked == [] and origin.connections == 0


@pytest.mark.parametrize("host", ["0x7f.1", "2130706433", "017700000001", "localhost"])
def test_names_the_system_resolver_turns_into_loopback_are_refused(host):
    """Shorthand IPv4 forms are no address literals to Python, but the resolver reads them as
    127.0.0.1: the check runs on what the resolver answered."""
    with pytest.raises(DownloadRefusedError) as refused:
        Downloader().get(f"http://{host}/a", max_bytes=MB, deadline=soon())

    assert refused.value.reason == Refusal.HOST_NOT_ALLOWED


def test_a_host_the_caller_allows_may_be_internal(origin):
    origin.routes["/a.txt"] = Reply(200, b"hello")

    answer = Downloader().get(f"{origin.base}/a.txt", max_bytes=MB, deadline=soon(), allow_private={"127.0.0.1"})

    assert (answer.status, answer.body, answer.address) == (200, b"hello", "127.0.0.1")


def test_without_the_callers_allowance_a_local_server_is_refused(origin):
    origin.routes["/a.txt"] = Reply(200, b"hello")

    with pytest.raises(DownloadRefusedError):
        Downloader().get(f"{origin.base}/a.txt", max_bytes=MB, deadline=soon(), allow_private={"localhost"})
    assert origin.connections == 0


def test_the_name_is_resolved_once_and_the_checked_address_is_the_one_connected_to(origin):
    asked, answers = [], iter([[PUBLIC], ["127.0.0.1"]])

    def rebinding(host):
        asked.append(host)
        return next(answers, ["127.0.0.1"])

    origin.routes["/a.jpg"] = Reply(200, b"\xff\xd8\xff")

    answer = origin.downloader(resolve=rebinding).get(f"https://{HOST}/a.jpg", max_bytes=MB, deadline=soon())

    assert answer.body == b"\xff\xd8\xff" and answer.address == PUBLIC
    assert asked == [HOST]
    assert origin.endpoints == [Endpoint("https", PUBLIC, 443, HOST)]
    assert origin.requests[0].headers["host"] == HOST


def test_when_one_checked_address_refuses_the_next_is_tried(origin):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    seen = []

    def route(endpoint):
        seen.append(endpoint.address)
        port = dead_port if endpoint.address == PUBLIC else origin.port
        return Endpoint("http", "127.0.0.1", port, endpoint.host)

    origin.routes["/a"] = Reply(200, b"ok")
    downloads = Downloader(resolve=lambda host: [PUBLIC, "93.184.216.35", "10.0.0.1"][:2], route=route)

    assert downloads.get(f"https://{HOST}/a", max_bytes=MB, deadline=soon()).body == b"ok"
    assert seen == [PUBLIC, "93.184.216.35"]


# --- what it reads -------------------------------------------------------------------------------


def test_a_compressed_body_is_refused_unread_and_never_inflated(origin):
    bomb = gzip_bomb(200 * MB)
    origin.routes["/bomb"] = Reply(200, bomb, {"Content-Encoding": "gzip", "Content-Type": "image/jpeg"})

    tracemalloc.start()
    try:
        with pytest.raises(DownloadRefusedError) as refused:
            origin.downloader(resolve=public).get(f"https://{HOST}/bomb", max_bytes=16 * MB, deadline=soon())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert refused.value.reason == Refusal.ENCODED and "gzip" in refused.value.message
    assert peak < 8 * MB, f"peak {peak} bytes (the body inflates to 200 MB)"
    assert origin.requests[0].headers["accept-encoding"] == "identity"


def test_identity_is_asked_for_whatever_the_caller_sends_and_the_callers_headers_go_along(origin):
    origin.routes["/a"] = Reply(200, b"ok")

    origin.downloader(resolve=public).get(
        f"https://{HOST}:8443/a?x=1", max_bytes=MB, deadline=soon(),
        headers={"accept-encoding": "gzip, br", "Host": "evil.example", "Authorization": "Bearer t"},
    )

    [seen] = origin.requests
    assert seen.path == "/a?x=1"
    assert (seen.headers["accept-encoding"], seen.headers["host"], seen.headers["authorization"]) == (
        "identity", f"{HOST}:8443", "Bearer t")


def test_an_error_answer_is_returned_with_a_capped_body_and_an_encoded_one_with_none(origin):
    origin.routes["/big-error"] = Reply(503, b"e" * 100_000, {"Retry-After": "7"})
    origin.routes["/gz-error"] = Reply(500, gzip_bomb(50 * MB), {"Content-Encoding": "gzip"})
    downloads = origin.downloader(resolve=public)

    big = downloads.get(f"https://{HOST}/big-error", max_bytes=MB, deadline=soon(), error_bytes=4096)
    gz = downloads.get(f"https://{HOST}/gz-error", max_bytes=MB, deadline=soon())

    assert (big.status, len(big.body), big.headers["retry-after"]) == (503, 4096, "7")
    assert (gz.status, gz.body) == (500, b"")


def test_a_redirect_is_returned_not_followed(origin):
    origin.routes["/moved"] = Reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})

    answer = origin.downloader(resolve=public).get(f"https://{HOST}/moved", max_bytes=MB, deadline=soon())

    assert answer.is_redirect and answer.headers["location"].startswith("http://169.254.169.254/")
    assert len(origin.requests) == 1


def test_an_announced_length_over_the_cap_is_refused_before_the_body_arrives(origin):
    origin.routes["/huge"] = Reply(200, b"", length=500 * MB, stall=3)

    started = time.monotonic()
    with pytest.raises(DownloadRefusedError) as refused:
        origin.downloader(resolve=public).get(f"https://{HOST}/huge", max_bytes=MB, deadline=soon())

    assert refused.value.reason == Refusal.TOO_LARGE and "announced 524288000 bytes" in refused.value.message
    assert time.monotonic() - started < 1


def test_an_unannounced_body_is_cut_off_at_the_cap(origin):
    origin.routes["/stream"] = Reply(200, b"x" * (8 * MB), length=False)

    with pytest.raises(DownloadRefusedError) as refused:
        origin.downloader(resolve=public).get(f"https://{HOST}/stream", max_bytes=MB, deadline=soon())

    assert refused.value.reason == Refusal.TOO_LARGE and "exceeds" in refused.value.message
    assert origin.sent.get("/stream", 0) < 8 * MB, "the client stopped reading"


def test_a_body_exactly_at_the_cap_is_taken(origin):
    origin.routes["/exact"] = Reply(200, b"x" * 1000, length=False)

    assert len(origin.downloader(resolve=public).get(f"https://{HOST}/exact", max_bytes=1000, deadline=soon()).body) == 1000


# --- one deadline --------------------------------------------------------------------------------


@pytest.mark.parametrize("reply", [
    Reply(200, b"x" * 2000, piece=10, pause=0.02),                                         # the body trickles
    Reply(200, b"x" * 10, {"X-Pad": "p" * 300}, trickle_head=True, piece=1, pause=0.02),   # the head trickles
    Reply(200, b"x" * 10, length=False, stall=10),                                         # the body never comes
], ids=["body", "head", "stall"])
def test_one_deadline_bounds_the_whole_download_whatever_the_server_trickles(origin, reply):
    origin.routes["/slow"] = reply
    downloads = origin.downloader(resolve=public, read_timeout=5.0)

    started = time.monotonic()
    with pytest.raises(DownloadFailedError, match="ran out of time"):
        downloads.get(f"https://{HOST}/slow", max_bytes=MB, deadline=time.monotonic() + 0.4)
    elapsed = time.monotonic() - started

    assert elapsed < 0.8, f"{elapsed:.2f} s for a 0.4 s deadline"


def test_a_passed_deadline_connects_nowhere(origin):
    with pytest.raises(DownloadFailedError, match="ran out of time"):
        origin.downloader(resolve=public).get(f"https://{HOST}/a", max_bytes=MB, deadline=time.monotonic() - 1)
    assert origin.connections == 0


def test_no_watchdog_outlives_its_download(origin):
    origin.routes["/a"] = Reply(200, b"ok")
    before = threading.active_count()

    for _ in range(5):
        origin.downloader(resolve=public).get(f"https://{HOST}/a", max_bytes=MB, deadline=soon(30))
    time.sleep(0.1)

    assert threading.active_count() <= before


# --- URLs and errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://files.example.com/a", "file:///etc/passwd", "https://user:pw@files.example.com/a",
                                 "https:///nohost", "https://files.example.com:99999/a", "https://files.example.com/a b"])
def test_urls_that_are_not_plain_http_downloads_are_refused(origin, url):
    with pytest.raises(DownloadRefusedError) as refused:
        origin.downloader(resolve=public).get(url, max_bytes=MB, deadline=soon())

    assert refused.value.reason == Refusal.BAD_URL and "pw" not in refused.value.message
    assert origin.connections == 0


def test_errors_name_the_host_never_the_url():
    token_url = "https://api.telegram.org/file/bot123456:SECRET-token/documents/a.pdf"

    with pytest.raises(DownloadFailedError) as unreachable:
        Downloader(resolve=public, route=lambda e: Endpoint("http", "127.0.0.1", 9, e.host)).get(
            token_url, max_bytes=MB, deadline=soon())
    with pytest.raises(DownloadFailedError) as unresolved:
        Downloader(resolve=lambda host: (_ for _ in ()).throw(socket.gaierror("no"))).get(
            token_url, max_bytes=MB, deadline=soon())

    for error in (unreachable.value, unresolved.value):
        assert "api.telegram.org" in error.message and "SECRET" not in str(error) and error.__cause__ is None


# --- TLS to a pinned address ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A CA and a certificate it signed for `HOST` only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    directory = tmp_path_factory.mktemp("tls")

    def certificate(subject, issuer, key, signer, *, ca: bool, names=()):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False), critical=True)
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub test CA")])
    ca = certificate(ca_name, ca_name, ca_key, ca_key, ca=True)
    leaf = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]), ca_name, key, ca_key, ca=False,
                       names=[HOST])
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (directory / "leaf.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return directory


@pytest.fixture
def tls_origin(tls_files):
    """One-request-per-connection TLS server on 127.0.0.1 with the certificate for `HOST`;
    records the SNI name each handshake carried."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files / "leaf.pem", tls_files / "leaf.key")
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecret")
            except (ssl.SSLError, OSError):
                pass  # the client refused our certificate

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], names
    stop.set()
    thread.join()
    listener.close()


def test_tls_to_the_pinned_address_checks_the_certificate_against_the_name(tls_origin, tls_files):
    port, names = tls_origin
    downloads = Downloader(resolve=public, route=lambda e: Endpoint("https", "127.0.0.1", port, e.host),
                           ca_certs=str(tls_files / "ca.pem"))

    answer = downloads.get(f"https://{HOST}/a", max_bytes=MB, deadline=soon())
    with pytest.raises(DownloadFailedError) as mismatch:
        downloads.get("https://other.example.com/a", max_bytes=MB, deadline=soon())

    assert (answer.body, answer.address) == (b"secret", PUBLIC)
    assert names[0] == HOST, "SNI carries the name, though the connection went to an address"
    assert "other.example.com" in mismatch.value.message


def test_tls_is_verified_against_the_system_store_by_default(tls_origin):
    port, _ = tls_origin
    downloads = Downloader(resolve=public, route=lambda e: Endpoint("https", "127.0.0.1", port, e.host))

    with pytest.raises(DownloadFailedError):
        downloads.get(f"https://{HOST}/a", max_bytes=MB, deadline=soon())


@pytest.mark.parametrize("module", ["adapters/downloads.py", "adapters/media/http.py", "adapters/connectors/zendesk.py"])
def test_urllib3_is_imported_on_the_first_download_not_at_import(module):
    """Cold start: the webhook Lambda imports these modules and never downloads."""
    tree = ast.parse((Path(__file__).parents[2] / "chalicelib" / module).read_text())
    top_level = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top_level |= {node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)}

    assert not {name for name in top_level if name.split(".")[0] in ("urllib3", "http", "ssl")}
