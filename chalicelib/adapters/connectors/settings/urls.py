"""The one rule for a URL the hub calls or gives a vendor to call: https with a host, or plain
http on this machine only (local development and the tests' fakes)."""

from __future__ import annotations

from urllib.parse import urlsplit

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def secure_url(value: str) -> str:
    """`value` when it is such a URL; else `ValueError` for the field's validator. The host is
    compared whole, so `http://localhost.example.com` is refused."""
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return value
    raise ValueError("must be an https:// URL (http:// only for localhost)")
