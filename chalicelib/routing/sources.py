"""Where routing rules come from: the configuration file, or a document on AWS that operators can
change without a redeploy (S3 object, SSM parameter, AppConfig configuration profile).

This module fetches and caches the raw document only. Parsing, validating and compiling the rules
belongs to the routing engine, which keeps its last valid rules when a new document is invalid.

The AWS clients are injected (`client_for`), never created here, and nothing imports boto3 or
botocore: `routing` stays free of SDK imports (tests/unit/test_architecture.py), so AWS failures are
recognised by shape (`ClientError.response`, botocore's `BotoCoreError` base) instead of by class.
"""

import hashlib
import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from chalicelib.errors import TransientError
from chalicelib.domain.policies import Strict
from chalicelib.domain.values import Value

logger = logging.getLogger(__name__)

SourceType = Literal["inline", "file", "s3", "ssm", "appconfig"]

#: The fields each source type needs; a field of another type is refused, so a typo in `type`
#: cannot silently fall back to the inline rules.
_FIELDS: dict[str, tuple[str, ...]] = {
    "inline": (),
    "file": ("path",),
    "s3": ("bucket", "key"),
    "ssm": ("parameter",),
    "appconfig": ("application", "environment", "profile"),
}
_ALL_FIELDS = tuple(field for fields in _FIELDS.values() for field in fields)

#: A rules document larger than this is refused before it is read (AppConfig's hosted store caps
#: a configuration at 2 MB; SSM at 8 KB): a key pointing at the wrong object must not fill memory.
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024

#: AppConfig refuses a session whose minimum poll interval is below 15 seconds.
_APPCONFIG_MIN_POLL_SECONDS = 15
_APPCONFIG_MAX_POLL_SECONDS = 86400


class RulesUnavailableError(TransientError):
    """No routing rules document could be fetched yet; the message names the source."""

    code = "rules_unavailable"


class RulesSourceSettings(Strict):
    """`routing.source`: where the routing rules document lives and how long a fetched copy is used.

    `inline` (the default) means the rules in the configuration file itself. SSM parameters may be
    SecureStrings; only the parameter name is configured here, never its value.
    """

    type: SourceType = "inline"
    #: file: a rules file beside the configuration (relative to it, or absolute). Read on first
    #: use and re-read when it changes, so the webhook Lambda never parses the rules at all.
    path: str | None = None
    #: s3: the bucket and object key (by convention `hub-<stage>-<account>-<region>`, `routing/...`).
    bucket: str | None = None
    key: str | None = None
    #: ssm: the parameter name (by convention `/hub/<stage>/routing...`), or its ARN.
    parameter: str | None = None
    #: appconfig: names or ids of the application, environment and configuration profile.
    application: str | None = None
    environment: str | None = None
    profile: str | None = None
    #: A fetched document is used this long before the source is asked again (and a failed fetch
    #: is retried no sooner). AppConfig additionally never polls faster than every 15 s.
    cache_seconds: int = Field(default=60, ge=5, le=3600)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith("s3://"):
            raise ValueError("the bucket name alone, without s3:// (the object goes in key)")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", value):
            raise ValueError("must be an S3 bucket name: 3-63 lower-case letters, digits, '.' or '-'")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value.startswith("/") or len(value.encode()) > 1024):
            raise ValueError("must be an object key such as routing/rules.yaml (no leading '/')")
        return value

    @field_validator("parameter")
    @classmethod
    def _parameter(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith("ssm:"):
            raise ValueError("the parameter name alone, without the ssm: prefix of secret references")
        if not re.fullmatch(r"[A-Za-z0-9_.\-/:]{1,2048}", value):
            raise ValueError("must be an SSM parameter name such as /hub/prod/routing/rules")
        return value

    @field_validator("application", "environment", "profile")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\S{1,128}", value):
            raise ValueError("must be an AppConfig name or id: 1-128 characters without spaces")
        return value

    @model_validator(mode="after")
    def _fields_of_type(self) -> "RulesSourceSettings":
        needed = _FIELDS[self.type]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"type {self.type} requires {', '.join(missing)}")
        foreign = [name for name in _ALL_FIELDS if name not in needed and getattr(self, name) is not None]
        if foreign:
            verb = "does" if len(foreign) == 1 else "do"
            raise ValueError(f"{', '.join(foreign)} {verb} not apply to type {self.type}")
        return self


class RulesDocument(Value):
    """A routing rules document as fetched: undecoded text (YAML or JSON) and its version.

    An unchanged document is returned as the same object, so callers may skip recompiling with
    `document is previous`; `fetched_at` is when this version was first fetched.
    """

    text: str
    #: S3 VersionId (ETag in an unversioned bucket), SSM parameter Version, AppConfig version
    #: label (`sha256:` + content hash when the version has no label).
    version: str
    fetched_at: datetime


class RulesSource(ABC):
    """Port: the routing rules document currently in force."""

    @abstractmethod
    def current(self) -> RulesDocument | None:
        """The current document, or None when the rules come from the configuration file.

        Raises `RulesUnavailableError` when no document has been fetched successfully yet.
        """


class InlineRulesSource(RulesSource):
    def current(self) -> None:
        return None


class _FetchFailed(Exception):
    """A document was reached but cannot be used (too large, not UTF-8, empty)."""


class CachingRulesSource(RulesSource):
    """Caches, retries and serializes fetches; backends implement `_fetch` and `describe`.

    A document is served for `cache_seconds`; then the next `current()` asks the backend, which
    returns the previous document object when nothing changed. On failure the last good document
    stays in force and the backend is asked again no sooner than `cache_seconds` later. One thread
    fetches at a time; while it does, other threads get the document they would have had anyway
    (they wait only when there is none yet).
    """

    def __init__(self, *, cache_seconds: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below; never held during a fetch
        self._fetching = threading.Lock()  # one fetch at a time; backend state is touched only under it
        self._document: RulesDocument | None = None
        self._next_check: float | None = None
        self._failure: str | None = None

    @property
    @abstractmethod
    def describe(self) -> str:
        """The source in operator terms (s3://bucket/key...), safe for logs and error messages."""

    @abstractmethod
    def _fetch(self, previous: RulesDocument | None) -> RulesDocument:
        """Fetch from AWS; return `previous` itself when the document is unchanged."""

    def _interval(self) -> float:
        return self._cache_seconds

    def current(self) -> RulesDocument:
        with self._lock:
            if self._fresh():
                return self._served()
            stale = self._document
        if not self._fetching.acquire(blocking=stale is None):
            return stale  # another thread is refreshing it
        try:
            with self._lock:
                if self._fresh():  # refreshed by the thread we waited for
                    return self._served()
            previous = stale
            try:
                document, failure = self._fetch(previous), None
            except AssertionError:
                raise
            except Exception as exc:
                failure = _failure_reason(exc)
                if failure is None:
                    raise  # a bug, not an unreachable source
                document = previous
                self._log_failure(failure, previous)
            with self._lock:
                self._document, self._failure = document, failure
                self._next_check = self._clock() + self._interval()
                return self._served()
        finally:
            self._fetching.release()

    def _fresh(self) -> bool:
        return self._next_check is not None and self._clock() < self._next_check

    def _served(self) -> RulesDocument:
        if self._document is None:
            raise RulesUnavailableError(
                f"routing rules unavailable: {self.describe} could not be read ({self._failure})",
                detail={"source": self.describe},
            )
        return self._document

    def _log_failure(self, failure: str, previous: RulesDocument | None) -> None:
        if previous is None:
            logger.warning("routing rules: %s could not be read (%s); no document yet", self.describe, failure)
        else:
            logger.warning(
                "routing rules: %s could not be read (%s); keeping version %s", self.describe, failure, previous.version,
            )

    @staticmethod
    def _document_of(text: str, version: str, previous: RulesDocument | None) -> RulesDocument:
        if previous is not None and previous.version == version and previous.text == text:
            return previous
        return RulesDocument(text=text, version=version, fetched_at=datetime.now(timezone.utc))


class S3RulesSource(CachingRulesSource):
    """An S3 object, fetched with `If-None-Match` on the last ETag: unchanged costs no transfer.

    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
    """

    def __init__(self, client: Any, *, bucket: str, key: str, cache_seconds: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(cache_seconds=cache_seconds, clock=clock)
        self._client = client
        self._bucket = bucket
        self._key = key
        self._etag: str | None = None

    @property
    def describe(self) -> str:
        return f"s3://{self._bucket}/{self._key}"

    def _fetch(self, previous: RulesDocument | None) -> RulesDocument:
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key}
        if previous is not None and self._etag:
            params["IfNoneMatch"] = self._etag
        try:
            response = self._client.get_object(**params)
        except Exception as exc:
            # botocore raises a ClientError with code "304" for Not Modified.
            if previous is not None and _status(exc) == 304:
                return previous
            raise
        body = response["Body"]
        try:
            if response.get("ContentLength", 0) > MAX_DOCUMENT_BYTES:
                raise _FetchFailed(f"object larger than {MAX_DOCUMENT_BYTES} bytes")
            text = _text(body.read())
        finally:
            body.close()
        etag = response.get("ETag") or ""
        self._etag = etag or None
        return self._document_of(text, response.get("VersionId") or etag.strip('"'), previous)


class FileRulesSource(CachingRulesSource):
    """A rules file shipped with the configuration (in the Lambda package, or edited locally):
    the rules stay out of the configuration every process reads at start-up."""

    def __init__(self, path: Path, *, cache_seconds: int, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(cache_seconds=cache_seconds, clock=clock)
        self._path = path

    @property
    def describe(self) -> str:
        return f"rules file {self._path}"

    def _fetch(self, previous: RulesDocument | None) -> RulesDocument:
        try:
            data = self._path.read_bytes()
        except OSError as exc:
            raise _FetchFailed(exc.strerror or type(exc).__name__) from None
        return self._document_of(_text(data), "sha256:" + hashlib.sha256(data).hexdigest()[:16], previous)


class SsmRulesSource(CachingRulesSource):
    """An SSM parameter (String or SecureString, decrypted); its value is never logged."""

    def __init__(self, client: Any, *, parameter: str, cache_seconds: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(cache_seconds=cache_seconds, clock=clock)
        self._client = client
        self._parameter = parameter

    @property
    def describe(self) -> str:
        return f"SSM parameter {self._parameter}"

    def _fetch(self, previous: RulesDocument | None) -> RulesDocument:
        parameter = self._client.get_parameter(Name=self._parameter, WithDecryption=True)["Parameter"]
        return self._document_of(parameter["Value"], str(parameter["Version"]), previous)


class AppConfigRulesSource(CachingRulesSource):
    """An AppConfig configuration profile through AppConfig Data.

    One session, then `GetLatestConfiguration` with each response's `NextPollConfigurationToken`,
    never sooner than its `NextPollIntervalInSeconds`. An empty body means "unchanged since the last
    poll of this session". After a failed poll the session is dropped and the next attempt starts a
    new one, because a token is meant to be used once and may have expired (24 h).
    https://docs.aws.amazon.com/appconfig/latest/userguide/appconfig-retrieving-the-configuration.html
    """

    def __init__(self, client: Any, *, application: str, environment: str, profile: str, cache_seconds: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(cache_seconds=cache_seconds, clock=clock)
        self._client = client
        self._application = application
        self._environment = environment
        self._profile = profile
        self._token: str | None = None
        self._poll_seconds: float = 0

    @property
    def describe(self) -> str:
        return f"AppConfig {self._application}/{self._environment}/{self._profile}"

    def _interval(self) -> float:
        return max(self._cache_seconds, self._poll_seconds)

    def _fetch(self, previous: RulesDocument | None) -> RulesDocument:
        new_session = self._token is None
        if new_session:
            self._poll_seconds = 0
            self._token = self._client.start_configuration_session(
                ApplicationIdentifier=self._application,
                EnvironmentIdentifier=self._environment,
                ConfigurationProfileIdentifier=self._profile,
                RequiredMinimumPollIntervalInSeconds=min(
                    max(self._cache_seconds, _APPCONFIG_MIN_POLL_SECONDS), _APPCONFIG_MAX_POLL_SECONDS,
                ),
            )["InitialConfigurationToken"]
        try:
            response = self._client.get_latest_configuration(ConfigurationToken=self._token)
        except Exception:
            self._token = None
            raise
        self._token = response["NextPollConfigurationToken"]
        self._poll_seconds = response.get("NextPollIntervalInSeconds") or 0
        body = response["Configuration"]
        try:
            data = body.read()
        finally:
            body.close()
        if not data:
            if previous is None or new_session:
                # A new session's first answer is the whole configuration: empty means empty.
                raise _FetchFailed("empty configuration")
            return previous
        text = _text(data)
        version = response.get("VersionLabel") or "sha256:" + hashlib.sha256(data).hexdigest()[:16]
        return self._document_of(text, version, previous)


def rules_source(settings: RulesSourceSettings, client_for: Callable[[str], Any],
                 clock: Callable[[], float] = time.monotonic, *, base_dir: Path | None = None) -> RulesSource:
    """The source `settings` describes, with its boto3 client from `client_for(service)`
    (`Hub.aws_client` in production); a relative rules file is found from `base_dir` (the
    configuration file's directory). The inline and file sources create no client."""
    common = {"cache_seconds": settings.cache_seconds, "clock": clock}
    if settings.type == "file":
        path = Path(settings.path)
        return FileRulesSource(path if path.is_absolute() or base_dir is None else base_dir / path, **common)
    if settings.type == "s3":
        return S3RulesSource(client_for("s3"), bucket=settings.bucket, key=settings.key, **common)
    if settings.type == "ssm":
        return SsmRulesSource(client_for("ssm"), parameter=settings.parameter, **common)
    if settings.type == "appconfig":
        return AppConfigRulesSource(
            client_for("appconfigdata"), application=settings.application, environment=settings.environment,
            profile=settings.profile, **common,
        )
    return InlineRulesSource()


def _text(data: bytes) -> str:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _FetchFailed(f"document larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return data.decode("utf-8-sig")  # tolerate the BOM some editors write
    except UnicodeDecodeError:
        raise _FetchFailed("document is not UTF-8") from None


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = str(response.get("Error", {}).get("Code", ""))
    if code in ("304", "NotModified"):
        return 304
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _failure_reason(exc: Exception) -> str | None:
    """A loggable reason when `exc` means "the source cannot be read now"; None for anything else.

    ClientError carries the AWS error code (NoSuchKey, ParameterNotFound, AccessDenied...);
    BotoCoreError subclasses (timeouts, connection errors) are named by class. Neither message is
    used: an AWS message may echo request details, and reasons end up in logs.
    """
    if isinstance(exc, _FetchFailed):
        return str(exc)
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and isinstance(response.get("Error"), dict):
        return str(response["Error"].get("Code") or "unknown error")
    if any(cls.__name__ == "BotoCoreError" and cls.__module__ == "botocore.exceptions" for cls in type(exc).__mro__):
        return type(exc).__name__
    return None
