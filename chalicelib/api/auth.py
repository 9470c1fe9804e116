"""Consumer API keys: who is calling, and whether the key may do what the route does.

Keys are configured as SHA-256 hashes (`hubctl api-key` makes one), so the configuration never
holds a usable key. Every configured key is compared, in constant time, so the answer takes as
long for the first key as for the last, and for no match.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib.api.http import HttpRequest
from chalicelib.errors import InsufficientScopeError, UnauthorizedError

if TYPE_CHECKING:
    from chalicelib.hubconfig import ApiKey


@dataclass(frozen=True)
class Caller:
    """The API key a request authenticated with."""

    name: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        """How audit records name who did something (`api:<key name>`)."""
        return f"api:{self.name}"


class ApiKeys:
    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = [(key.sha256.encode("ascii"), Caller(key.name, key.granted)) for key in keys]

    def caller(self, presented: str) -> Caller | None:
        """The configured key matching `presented`; None when none does."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).hexdigest().encode("ascii")
        found = None
        for expected, caller in self._keys:
            if hmac.compare_digest(digest, expected):
                found = caller
        return found

    def authenticate(self, request: HttpRequest) -> Caller:
        """The caller of the request's key, whatever its scopes. Raises `UnauthorizedError` (401)
        for a missing or unknown key."""
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("missing API key: send Authorization: Bearer <key>")
        caller = self.caller(token.strip())
        if caller is None:
            raise UnauthorizedError("invalid API key")
        return caller

    def authorize(self, request: HttpRequest, scope: str) -> Caller:
        """The caller, if its key grants `scope`. Raises `UnauthorizedError` (401) for a missing
        or unknown key and `InsufficientScopeError` (403, naming the scope) for a key without it."""
        caller = self.authenticate(request)
        if scope not in caller.scopes:
            raise InsufficientScopeError(scope)
        return caller
