"""S3 implementation of the blob store, encrypted at rest (SSE-S3 unless a KMS key is given)."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.blobs.base import BlobStore
from chalicelib.errors import NotFoundError, TransientError

logger = logging.getLogger(__name__)

#: S3 answers a missing key with NoSuchKey (GetObject) or a bare 404 (HeadObject).
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})


class S3BlobStore(BlobStore):
    def __init__(self, client: Any, bucket: str, prefix: str = "", *, kms_key_id: str | None = None) -> None:
        if not bucket:
            raise ValueError("bucket is required")
        self._client = client
        self._bucket = bucket
        self._prefix = prefix
        self._encryption: dict[str, str] = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
            if kms_key_id
            else {"ServerSideEncryption": "AES256"}
        )

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self._call(
            "put_object", key, Bucket=self._bucket, Key=self._prefix + key, Body=data, ContentType=content_type,
            **self._encryption,
        )

    def get(self, key: str) -> bytes:
        response = self._call("get_object", key, Bucket=self._bucket, Key=self._prefix + key)
        try:
            return response["Body"].read()
        except (BotoCoreError, OSError) as exc:
            raise TransientError(f"blob {key} could not be read: {type(exc).__name__}") from exc

    def delete(self, key: str) -> None:
        # DeleteObject succeeds for a missing key.
        self._call("delete_object", key, Bucket=self._bucket, Key=self._prefix + key)

    def direct_url(self, key: str, ttl_seconds: int) -> str | None:
        return self._presigned_url(key, ttl_seconds)

    def _presigned_url(self, key: str, ttl_seconds: int) -> str:
        """Dies with the credentials that signed it (on Lambda, the role's session: hours), which
        is why long-lived links are hub links (`links.py`) that redirect to a fresh one."""
        # botocore presigns with SigV2 by default in regions that still accept it (us-east-1
        # among them); buckets created since 2020 refuse SigV2, and SSE-KMS objects need SigV4.
        # The handler changes only how this client presigns GetObject.
        self._client.meta.events.register(
            "choose-signer.s3.GetObject", _sigv4_for_presigned_urls, unique_id="hub-blobs-presign-sigv4"
        )
        try:
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": self._prefix + key}, ExpiresIn=ttl_seconds
            )
        except (BotoCoreError, ClientError) as exc:  # e.g. NoCredentialsError
            logger.warning("s3 presign failed: %s", type(exc).__name__)
            raise TransientError(f"blob store s3 presign failed: {type(exc).__name__}") from None

    def _call(self, operation: str, key: str, **params: Any) -> dict:
        try:
            return getattr(self._client, operation)(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _NOT_FOUND:
                raise NotFoundError(f"no blob {key}") from None
            # Without s3:ListBucket a missing key answers AccessDenied, which lands here: the
            # stage policies grant ListBucket so that "missing" stays distinguishable.
            logger.warning("s3 %s failed: %s", operation, code)
            raise TransientError(f"blob store s3 {operation} failed: {code}") from exc
        except BotoCoreError as exc:
            logger.warning("s3 %s failed: %s", operation, type(exc).__name__)
            raise TransientError(f"blob store s3 {operation} failed: {type(exc).__name__}") from exc


def _sigv4_for_presigned_urls(signature_version: str, **_: Any) -> str | None:
    if isinstance(signature_version, str) and signature_version.endswith("-query"):
        return "s3v4-query"
    return None
