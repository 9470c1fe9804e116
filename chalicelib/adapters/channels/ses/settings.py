"""`channels.ses`: the section's model, apart from the adapter.

The hub types every configured provider's section at start-up, so this module imports pydantic
and shared settings helpers only: a webhook function serving another provider pays nothing for
this one's parser (`adapter.py` imports the settings from here).
"""

from __future__ import annotations

import re

from pydantic import ConfigDict, Field, field_validator

from chalicelib.adapters.channels.email.outbound import OutboundEmailSettings
from chalicelib.secrets import Secret

#: A message's SNS `Timestamp` may lag this much behind its delivery: SNS retries an HTTPS endpoint
#: for at most 3600 s (a hard limit, https://docs.aws.amazon.com/sns/latest/dg/sns-message-delivery-retries.html),
#: plus margin for throttled deliveries and clock skew.
DEFAULT_MAX_AGE_SECONDS = 7200
_TOPIC_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:sns:[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}:[0-9]{12}:[A-Za-z0-9_-]{1,256}(?:\.fifo)?")
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")


class SesSettings(OutboundEmailSettings):
    model_config = ConfigDict(extra="forbid")

    #: SNS topics whose messages are accepted and whose subscriptions are confirmed; every other
    #: topic gets 403. Empty when only the S3 delivery is used.
    topic_arns: list[str] = Field(default_factory=list)
    #: Our own mailboxes (`support@acme.example`) or domains (`@acme.example`): mail from them is
    #: ignored, so a reply we sent that loops back never opens a case.
    own_addresses: list[str] = Field(default_factory=list)
    #: Oldest SNS `Timestamp` accepted, in seconds before receipt (replay window).
    max_message_age_seconds: int = Field(default=DEFAULT_MAX_AGE_SECONDS, ge=300, le=7 * 24 * 3600)
    #: S3 delivery: the receipt rule's object key prefix; the SES message id follows it.
    s3_prefix: str = Field(default="", max_length=512)
    #: S3 delivery: larger objects are acknowledged and ignored, not downloaded (SES accepts up to 40 MB).
    max_email_bytes: int = Field(default=40 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    #: PEM RSA private keys (2048 bits or more) that sign simulated SNS messages whose
    #: `SigningCertURL` path is `SIMULATED_CERT_PATH`. For `hubctl simulate` and tests only: anyone
    #: holding one can post email to this hub, so leave it empty in production.
    test_signing_keys: list[Secret] = Field(default_factory=list)
    #: Sending: the configuration set whose event destination publishes Send, Delivery, Bounce,
    #: Complaint... to an SNS topic in `topic_arns` (docs/channels/ses.md). Without one, only the
    #: identity's own Bounce/Complaint/Delivery notifications report statuses.
    configuration_set_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    #: Sending: the domain of the Message-ID SES puts on every mail it sends (it replaces ours):
    #: `<ses-id@{domain}>`. Default: `email.amazonses.com` in us-east-1, `<region>.amazonses.com`
    #: elsewhere (as observed on delivered mail; AWS documents only that it is replaced).
    message_id_domain: str | None = Field(default=None, pattern=r"^[a-z0-9.-]{3,253}$")

    @field_validator("topic_arns")
    @classmethod
    def _topics(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _TOPIC_ARN.fullmatch(value):
                raise ValueError(f"{value!r} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)")
        return list(dict.fromkeys(values))

    @field_validator("own_addresses")
    @classmethod
    def _own(cls, values: list[str]) -> list[str]:
        cleaned = []
        for value in values:
            value = value.strip().lower()
            if not (_ADDRESS.fullmatch(value) or re.fullmatch(r"@[^@\s<>]+\.[^@\s<>]+", value)):
                raise ValueError(f"{value!r} is neither an email address nor an @domain")
            cleaned.append(value)
        return cleaned
