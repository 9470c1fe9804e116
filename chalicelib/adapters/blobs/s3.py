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
