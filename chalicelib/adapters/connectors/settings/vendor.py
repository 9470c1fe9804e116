"""What every vendor destination's settings have (`connectors/vendor.py` builds the API client
from them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chalicelib.adapters.connectors.mapping import FieldMapping
from chalicelib.adapters.connectors.settings.auth import AUTH_FIELD, AuthSettings
from chalicelib.adapters.connectors.settings.callbacks import CallbackSettings
from chalicelib.adapters.connectors.settings.urls import secure_url

class VendorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The API's base URL (`https://acme.zendesk.com`); tests point it at a Prism mock.
    base_url: str
    auth: AuthSettings = AUTH_FIELD
    #: Per request; the deliver worker's own timeout bounds the whole delivery.
    timeout_seconds: float = Field(default=10.0, gt=0, le=30)
    mapping: FieldMapping = Field(default_factory=FieldMapping)
    #: Two-way sync: how the vendor's callbacks are verified and what they may change. None: the
    #: destination is one-way (`POST /callbacks/<name>` answers 404).
    callbacks: CallbackSettings | None = None

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        return secure_url(value).rstrip("/")
