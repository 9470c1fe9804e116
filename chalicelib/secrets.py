"""Secrets by reference: `env:NAME`, `ssm:/path`, `secretsmanager:name`.

Configuration holds references, not values, so a deployed configuration file can be read by anyone
who may read the code. Values are fetched on first use and cached (Powertools Parameters on AWS),
never logged, and never part of an error message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, SecretStr

from chalicelib.errors import SecretResolutionError

logger = logging.getLogger(__name__)

SCHEMES = ("env:", "ssm:", "secretsmanager:")

#: How long a fetched SSM / Secrets Manager value is reused before it is fetched again, so a
#: rotated secret is picked up without a redeploy.
CACHE_SECONDS = 300


def _not_empty(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().strip():
        raise ValueError("secret must not be empty")
    return value


#: The type every secret field in the configuration uses: masked in reprs and dumps.
Secret = Annotated[SecretStr, AfterValidator(_not_empty)]


def is_reference(value: str) -> bool:
    return value.startswith(SCHEMES)


class SecretResolver:
    """Resolves secret references. `environ` is injected so only settings reads the process env."""

    def __init__(self, environ: Mapping[str, str], *, allow_inline: bool = True) -> None:
        self._environ = environ
        self._allow_inline = allow_inline

    def get(self, secret: SecretStr | str) -> str:
        raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if raw.startswith("env:"):
            name = raw[4:]
            value = self._environ.get(name)
            if not value:
                raise SecretResolutionError(f"environment variable {name} is not set")
            return value
        if raw.startswith("ssm:"):
            return self._fetch_ssm(raw[4:])
        if raw.startswith("secretsmanager:"):
            return self._fetch_secretsmanager(raw[len("secretsmanager:"):])
        if not self._allow_inline:
            raise SecretResolutionError("inline secrets are not allowed here; use env:, ssm: or secretsmanager:")
        return raw

    def get_all(self, secrets: list[SecretStr]) -> list[str]:
        """Every secret of a rotation list that resolves. One that does not (an old SSM parameter
        deleted before the configuration dropped it, a throttled read) is logged and skipped, so
        the others keep verifying requests. Raises `SecretResolutionError` only when none resolves."""
        values: list[str] = []
        failure: SecretResolutionError | None = None
        for secret in secrets:
            try:
                values.append(self.get(secret))
            except SecretResolutionError as exc:
                logger.warning("a secret of a rotation list is skipped: %s", exc.message)
                failure = failure or exc
        if not values and failure is not None:
            raise failure
        return values

    def _fetch_ssm(self, path: str) -> str:
        from aws_lambda_powertools.utilities import parameters

        try:
            return str(parameters.get_parameter(path, decrypt=True, max_age=CACHE_SECONDS))
        except Exception as exc:  # Powertools wraps every failure; the name is safe to report.
            raise SecretResolutionError(f"SSM parameter {path} could not be read: {type(exc).__name__}") from None

    def _fetch_secretsmanager(self, name: str) -> str:
        from aws_lambda_powertools.utilities import parameters

        try:
            return str(parameters.get_secret(name, max_age=CACHE_SECONDS))
        except Exception as exc:
            raise SecretResolutionError(f"secret {name} could not be read: {type(exc).__name__}") from None
