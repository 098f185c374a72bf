"""Where lake objects go: an object-store interface with an S3 and a local-directory implementation.

Both are blocking (boto3, file I/O); the sink calls them from its bounded executor. `put` with
`if_none_match=True` is a conditional create: it returns `created=False` when the key already
exists instead of overwriting it (S3's If-None-Match: *, or a hard link for files). Metadata is a
small str -> str map kept with the object (S3 user metadata, or a hidden sidecar file).
"""
from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import orjson

MIN_PART_SIZE = 5 << 20  # S3's minimum for every part but the last


@dataclass
class PutResult:
    created: bool  # False: the key existed and the conditional put left it alone
    size: int
    etag: str | None = None


class ObjectStore:
    url: str

    def put(self, key: str, body: bytes, metadata: dict[str, str], if_none_match: bool = False,
            content_type: str | None = None, content_encoding: str | None = None,
            lock: tuple[str, datetime] | None = None) -> PutResult:
        """`lock`: S3 Object Lock (mode, retain until), for stores that have it."""
        raise NotImplementedError

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix`, in key order."""
        raise NotImplementedError

    def head(self, key: str) -> dict[str, str] | None:
        """The object's metadata, or None when it does not exist."""
        raise NotImplementedError

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def check(self) -> None:
        """Raise with a clear message when the store is unusable (missing bucket or directory)."""

    def close(self) -> None:
        pass


class StoreUnavailable(Exception):
    """A transient failure (endpoint down, throttled, 5xx): retry with back-off."""


class FileStore(ObjectStore):
    """A local directory as a lake: each object is written to a temporary file and moved into place."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.url = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not str(path).startswith(str(self.root.resolve())):
            raise ValueError(f"key {key!r} escapes the lake directory")
        return path

    @staticmethod
    def _meta_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.meta")  # hidden: Athena, Spark and DuckDB skip dot files

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise PermissionError(f"lake directory {self.root} is not writable")

    def _write_tmp(self, directory: Path, data: bytes) -> Path:
        tmp = directory / f".tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def keys(self, prefix):
        found = []
        for path in self.root.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith("."):
                found.append(key)
        return sorted(found)

    def put(self, key, body, metadata, if_none_match=False, content_type=None, content_encoding=None, lock=None):
        if lock is not None:
            raise ValueError("a file:// lake has no Object Lock")
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if if_none_match and path.exists():
            return PutResult(False, len(body))
        meta_tmp = self._write_tmp(path.parent, orjson.dumps(metadata))
        os.replace(meta_tmp, self._meta_path(path))  # metadata first: an object never lacks it
        tmp = self._write_tmp(path.parent, body)
        try:
            if if_none_match:
                try:
                    os.link(tmp, path)  # atomic create-if-absent
                except FileExistsError:
                    return PutResult(False, len(body))
            else:
                os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return PutResult(True, len(body))

    def head(self, key):
        path = self._path(key)
        if not path.exists():
            return None
        meta = self._meta_path(path)
        return orjson.loads(meta.read_bytes()) if meta.exists() else {}

    def get(self, key):
        path = self._path(key)
        return path.read_bytes() if path.exists() else None


class S3Store(ObjectStore):
    def __init__(self, bucket: str, endpoint_url: str | None = None, region: str | None = None,
                 sse: str = "AES256", kms_key_id: str | None = None, part_size: int = 8 << 20,
                 max_parallel_parts: int = 4, timeout_s: float = 10.0, client=None):
        import boto3
        from botocore.config import Config as BotoConfig

        self.bucket = bucket
        self.url = f"s3://{bucket}"
        self.part_size = max(part_size, MIN_PART_SIZE)
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            config=BotoConfig(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=timeout_s,
                              read_timeout=timeout_s * 3, max_pool_connections=32),
        )
        self._parts = ThreadPoolExecutor(max_workers=max_parallel_parts, thread_name_prefix="s3-part")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._parts.shutdown(wait=False, cancel_futures=True)

    def _errors(self, exc: Exception) -> Exception:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or code in ("SlowDown", "RequestTimeout", "Throttling", "ServiceUnavailable",
                                         "InternalError", "ConditionalRequestConflict"):
                return StoreUnavailable(f"{code or status}: {exc}")
            return exc
        if isinstance(exc, BotoCoreError):
            return StoreUnavailable(f"{type(exc).__name__}: {exc}")
        return exc

    def _sse_args(self) -> dict:
        if self.sse == "aws:kms":
            args = {"ServerSideEncryption": "aws:kms"}
            if self.kms_key_id:
                args["SSEKMSKeyId"] = self.kms_key_id
            return args
        return {"ServerSideEncryption": "AES256"}

    @staticmethod
    def _precondition_failed(exc) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return False
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code == "PreconditionFailed" or status == 412

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # a config mistake: say which bucket and where
            raise RuntimeError(f"bucket {self.bucket!r} is not reachable at {self.client.meta.endpoint_url}: {exc}") from None

    def lock_enabled(self) -> bool:
        """Whether the bucket has S3 Object Lock enabled (only a bucket created with it can)."""
        from botocore.exceptions import ClientError

        try:
            found = self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
                return False
            raise self._errors(exc) from exc
        return found.get("ObjectLockEnabled") == "Enabled"

    def keys(self, prefix):
        return sorted(self.sizes(prefix))

    def sizes(self, prefix: str) -> dict[str, int]:
        """Each object's key under `prefix` -> its size in bytes, from the listing alone."""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", ())}
        except Exception as exc:
            raise self._errors(exc) from exc

    def put(self, key, body, metadata, if_none_match=False, content_type=None, content_encoding=None, lock=None):
        args = {"Bucket": self.bucket, "Key": key, "Metadata": metadata, **self._sse_args()}
        if lock is not None:  # S3 Object Lock: the version cannot be deleted or overwritten before then
            args["ObjectLockMode"], args["ObjectLockRetainUntilDate"] = lock
        if content_type:
            args["ContentType"] = content_type
        if content_encoding:
            args["ContentEncoding"] = content_encoding
        try:
            if len(body) > self.part_size:
                etag = self._multipart(args, body, if_none_match)
            else:
                extra = {"IfNoneMatch": "*"} if if_none_match else {}
                etag = self.client.put_object(Body=body, **args, **extra).get("ETag")
        except Exception as exc:
            if if_none_match and self._precondition_failed(exc):
                return PutResult(False, len(body))
            raise self._errors(exc) from exc
        return PutResult(True, len(body), etag)

    def _multipart(self, args: dict, body: bytes, if_none_match: bool) -> str:
        upload = self.client.create_multipart_upload(**args)["UploadId"]
        base = {"Bucket": self.bucket, "Key": args["Key"], "UploadId": upload}
        try:
            chunks = [body[i:i + self.part_size] for i in range(0, len(body), self.part_size)]
            futures = [
                self._parts.submit(self.client.upload_part, Body=chunk, PartNumber=n, **base)
                for n, chunk in enumerate(chunks, 1)
            ]
            parts = [{"PartNumber": n, "ETag": f.result()["ETag"]} for n, f in enumerate(futures, 1)]
            extra = {"IfNoneMatch": "*"} if if_none_match else {}
            return self.client.complete_multipart_upload(MultipartUpload={"Parts": parts}, **base, **extra).get("ETag")
        except BaseException:
            try:  # never leave parts behind: they are billed until aborted
                self.client.abort_multipart_upload(**base)
            except Exception:
                pass
            raise

    def head(self, key):
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)["Metadata"]
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise self._errors(exc) from exc
        except Exception as exc:
            raise self._errors(exc) from exc

    def get(self, key):
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._errors(exc) from exc
        except Exception as exc:
            raise self._errors(exc) from exc


def open_store(url: str, **s3_options) -> ObjectStore:
    """`s3://bucket` or `file:///path/to/lake` (the same sink code path writes either)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileStore((parsed.netloc or "") + parsed.path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{url!r}: expected s3://bucket")
        return S3Store(parsed.netloc, **s3_options)
    raise ValueError(f"{url!r}: expected an s3://bucket or file:///directory URL")
