"""Where the embedded hub listens: loopback names, which its developer conveniences require."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.1:8000", True), ("127.8.9.1", True), ("localhost:8000", True),
     ("[::1]:8000", True), ("::1", True), ("0.0.0.0", False), ("10.0.0.5:8000", False),
     ("evil.example:8000", False), ("localhost.evil.example", False), ("", False), (None, False), ("[::1", True)],
)
def test_loopback_hosts_are_told_from_every_other_name(host, loopback):
    from chalicelib.settings import is_loopback_host

    assert is_loopback_host(host) is loopback
