"""How connectors authenticate: API tokens, basic auth, bearer tokens and OAuth2 client credentials.

Secrets are references (`env:`, `ssm:`, `secretsmanager:`) resolved per use through the hub's
`SecretResolver`, which caches them for minutes: a rotated secret is picked up without a redeploy.
Client-credentials tokens are cached until shortly before they expire and fetched again once when
the vendor answers 401, so an access token revoked early costs one retry, not a dead letter.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode

from chalicelib.adapters.connectors.http import HttpClient, raise_for_status
from chalicelib.adapters.connectors.settings.auth import (  # noqa: F401 (re-exported)
    AUTH_FIELD,
    ApiTokenAuth,
    AuthSettings,
    BasicAuth,
    BearerAuth,
    OAuth2ClientCredentials,
)
from chalicelib.errors import PermanentDeliveryError
from chalicelib.secrets import SecretResolver

#: A token is renewed this long before the expiry the vendor announced.
EXPIRY_MARGIN_SECONDS = 60


class TokenCache:
    """Client-credentials tokens per (token URL, client id), shared by a process's connectors."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], tuple[str, float, dict]] = {}

    def get(self, key: tuple[str, str]) -> tuple[str, dict] | None:
        with self._lock:
            entry = self._tokens.get(key)
            if entry is None or self._clock() >= entry[1]:
                return None
            return entry[0], entry[2]

    def put(self, key: tuple[str, str], token: str, expires_in: float, extra: dict) -> None:
        with self._lock:
            self._tokens[key] = (token, self._clock() + max(0.0, expires_in - EXPIRY_MARGIN_SECONDS), extra)

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._tokens.pop(key, None)


class Authenticator:
    """Turns auth settings into request headers."""

    def __init__(self, settings: AuthSettings, secrets: SecretResolver, http: HttpClient, tokens: TokenCache,
                 *, vendor: str) -> None:
        self._settings = settings
        self._secrets = secrets
        self._http = http
        self._tokens = tokens
        self._vendor = vendor

    def headers(self) -> dict[str, str]:
        settings = self._settings
        if isinstance(settings, ApiTokenAuth):
            return {settings.header: settings.prefix + self._secrets.get(settings.token)}
        if isinstance(settings, BearerAuth):
            return {"Authorization": "Bearer " + self._secrets.get(settings.token)}
        if isinstance(settings, BasicAuth):
            pair = f"{settings.username}:{self._secrets.get(settings.password)}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {"Authorization": "Bearer " + self.token()[0]}

    def token(self) -> tuple[str, dict]:
        """The client-credentials access token and the token response's other fields (Salesforce
        returns its `instance_url` there)."""
        settings = self._settings
        if not isinstance(settings, OAuth2ClientCredentials):
            raise PermanentDeliveryError(f"{self._vendor}: this destination does not use OAuth2")
        key = (settings.token_url, settings.client_id)
        cached = self._tokens.get(key)
        if cached is not None:
            return cached
        form = {"grant_type": "client_credentials"}
        headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
        secret = self._secrets.get(settings.client_secret)
        if settings.client_auth == "basic":
            headers["authorization"] = "Basic " + base64.b64encode(f"{settings.client_id}:{secret}".encode()).decode()
        else:
            form |= {"client_id": settings.client_id, "client_secret": secret}
        if settings.scope:
            form["scope"] = settings.scope
        response = self._http.request("POST", settings.token_url, headers=headers, body=urlencode(form).encode())
        raise_for_status(response, vendor=f"{self._vendor} token endpoint")
        try:
            data = json.loads(response.body)
            token = data["access_token"]
        except (ValueError, KeyError, TypeError):
            raise PermanentDeliveryError(f"{self._vendor} token endpoint answered without an access_token") from None
        extra = {k: v for k, v in data.items() if k not in ("access_token", "refresh_token")}
        # Salesforce's client-credentials flow omits expires_in (the session lasts hours): assume 15 min.
        self._tokens.put(key, token, float(data.get("expires_in") or 900), extra)
        return token, extra

    def forget_token(self) -> None:
        """After a 401: the next `headers()` fetches a new token."""
        if isinstance(self._settings, OAuth2ClientCredentials):
            self._tokens.forget((self._settings.token_url, self._settings.client_id))

    @property
    def uses_oauth(self) -> bool:
        return isinstance(self._settings, OAuth2ClientCredentials)
