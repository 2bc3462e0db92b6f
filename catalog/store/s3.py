"""S3 backend (AWS S3 or any S3-compatible endpoint) on boto3.

Put-if-absent is a HEAD followed by a PUT with `If-None-Match: *`, so an
existing object is never overwritten by a sequential writer, and the
endpoint refuses the second of two concurrent writers (412). Residual race:
an endpoint that ignores the header (or a store opened with
conditional_writes=False) lets two writers that both passed the HEAD write
the same key; the last one wins and both report True. For content-addressed
objects both wrote the same bytes, so only records can be affected.

Retries are not done here (botocore is told to make one attempt): wrap the
store in catalog.store.retry.RetryingStore, which open_store does.
This module imports boto3; it is imported only when an s3:// URL is opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from catalog.errors import CatalogError, ObjectNotFound, StorageError, TransientStorageError
from catalog.store.base import ObjectInfo, ObjectStore, check_key

MiB = 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last
READ_CHUNK = 1 * MiB

# Error codes that say "try again later" whatever their HTTP status.
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "RequestLimitExceeded",
        "TooManyRequests",
    }
)
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def make_client(endpoint_url: str | None) -> Any:
    """An S3 client with botocore's own retries off (the wrapper retries)."""
    options: dict[str, Any] = {
        "retries": {"max_attempts": 1, "mode": "standard"},
        "connect_timeout": 5,
        "read_timeout": 60,
    }
    if endpoint_url:
        options["s3"] = {"addressing_style": "path"}
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=Config(**options))


def error_code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", "") or "")


def http_status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def map_error(action: str, e: Exception) -> CatalogError:
    """One-line catalog error for a boto failure; never includes credentials."""
    if isinstance(e, ClientError):
        code, status = error_code(e), http_status(e)
        message = str(e.response.get("Error", {}).get("Message", "") or "")
        message = " ".join(message.split())[:160]
        detail = f"{code or 'error'} (http {status}{': ' + message if message else ''})"
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientStorageError(f"{action}: {detail}")
        return StorageError(f"{action}: {detail}")
    text = " ".join(str(e).split())[:200]
    if isinstance(e, BotoConnectionError | HTTPClientError | IncompleteReadError):
        return TransientStorageError(f"{action}: {text}")
    return StorageError(f"{action}: {text}")


class S3Store(ObjectStore):
    # list() yields keys in ascending byte order (S3 guarantees it), which
    # lets RetryingStore resume a listing without remembering every key.
    lists_sorted = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        client: Any = None,
        *,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        conditional_writes: bool = True,
    ) -> None:
        if not bucket:
            raise ValueError("s3 repository url needs a bucket: s3://bucket/prefix")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"s3 part size {part_size}: must be at least {MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.conditional_writes = conditional_writes
        self._owns_client = client is None
        self.client = make_client(endpoint_url) if client is None else client

    # -- names -------------------------------------------------------------------

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    # -- operations ----------------------------------------------------------------

    def put_if_absent(self, key: str, data: bytes) -> bool:
        full = self._full(check_key(key))
        action = f"put {self._where(key)}"
        if self._head(full, action) is not None:
            return False
        try:
            if len(data) > self.multipart_threshold:
                self._put_multipart(full, data)
            else:
                self.client.put_object(Bucket=self.bucket, Key=full, Body=data, **self._condition())
        except ClientError as e:
            code, status = error_code(e), http_status(e)
            if code == "PreconditionFailed" or status == 412:
                return False  # another writer got there first
            if code == "ConditionalRequestConflict" or status == 409:
                # A concurrent operation on the key: stored only if it is there now.
                if self._head(full, action) is not None:
                    return False
                raise TransientStorageError(f"{action}: conflicting concurrent write") from e
            raise map_error(action, e) from e
        except BotoCoreError as e:
            raise map_error(action, e) from e
        return True

    def _condition(self) -> dict[str, str]:
        return {"IfNoneMatch": "*"} if self.conditional_writes else {}

    def _put_multipart(self, full: str, data: bytes) -> None:
        """Upload in parts; abort the upload on any failure so no parts linger."""
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=full)["UploadId"]
        try:
            view = memoryview(data)
            parts = []
            for number, start in enumerate(range(0, len(data), self.part_size), start=1):
                body = view[start : start + self.part_size]
                resp = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=bytes(body),
                )
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **self._condition(),
            )
        except BaseException:
            # Best effort: the upload may be completed or gone; the original error matters.
            with suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise

    def get(self, key: str) -> bytes:
        return self._read(key, None)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Up to length bytes of key from offset start (short at the end)."""
        if start < 0 or length < 0:
            raise ValueError(f"get range of {key}: negative start or length")
        if length == 0:
            check_key(key)
            return b""
        return self._read(key, f"bytes={start}-{start + length - 1}")

    def _read(self, key: str, byte_range: str | None) -> bytes:
        full = self._full(check_key(key))
        action = f"get {self._where(key)}"
        extra = {"Range": byte_range} if byte_range else {}
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=full, **extra)
        except ClientError as e:
            if error_code(e) in NOT_FOUND_CODES:
                raise ObjectNotFound(f"get {key}: no such object") from None
            if error_code(e) == "InvalidRange":
                return b""  # start at or past the end: nothing to read
            raise map_error(action, e) from e
        except BotoCoreError as e:
            raise map_error(action, e) from e
        body = resp["Body"]
        expected = resp.get("ContentLength")
        buf = bytearray()
        try:
            # Read in chunks so a dropped connection surfaces as a mapped error.
            for chunk in body.iter_chunks(READ_CHUNK):
                buf += chunk
        except (ClientError, BotoCoreError) as e:
            raise map_error(action, e) from e
        finally:
            body.close()
        if expected is not None and len(buf) != expected:
            raise TransientStorageError(f"{action}: short read ({len(buf)} of {expected} bytes)")
        return bytes(buf)

    def stat(self, key: str) -> ObjectInfo | None:
        full = self._full(check_key(key))
        resp = self._head(full, f"stat {self._where(key)}")
        if resp is None:
            return None
        return ObjectInfo(key, int(resp["ContentLength"]), resp["LastModified"].timestamp())

    def _head(self, full: str, action: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=full))
        except ClientError as e:
            if error_code(e) in NOT_FOUND_CODES or http_status(e) == 404:
                return None
            raise map_error(action, e) from e
        except BotoCoreError as e:
            raise map_error(action, e) from e

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.list_after(prefix, "")

    def list_after(self, prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        """Keys starting with prefix that sort after start_after, in order;
        lets a failed listing resume where it stopped."""
        root = f"{self.prefix}/" if self.prefix else ""
        action = f"list s3://{self.bucket}/{root}{prefix}"
        paginator = self.client.get_paginator("list_objects_v2")
        extra = {"StartAfter": root + start_after} if start_after else {}
        pages = paginator.paginate(Bucket=self.bucket, Prefix=root + prefix, **extra)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        item["Key"][len(root) :],
                        int(item["Size"]),
                        item["LastModified"].timestamp(),
                    )
        except (ClientError, BotoCoreError) as e:
            raise map_error(action, e) from e

    def delete(self, key: str) -> None:
        full = self._full(check_key(key))
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except ClientError as e:
            if error_code(e) in NOT_FOUND_CODES:
                return
            raise map_error(f"delete {self._where(key)}", e) from e
        except BotoCoreError as e:
            raise map_error(f"delete {self._where(key)}", e) from e

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
