"""Object storage over URLs: one small async interface for `s3://`, `gs://` and local files.

Workers, the aggregator, the sync Job and the local backend all read and write a run's files
through `ObjectStore`, whatever the backend. Every write is atomic: an object is either there
whole or not at all (S3 and GCS PUTs are; local files are written under a temporary name and
renamed). `put(..., if_absent=True)` is a conditional create (`If-None-Match: *` on S3 and GCS,
a no-clobber link locally), so a part of a trajectory shard is written at most once even when
two pods race.

Credentials come from the environment (`AWS_*` for S3, `GOOGLE_APPLICATION_CREDENTIALS` or the
metadata server for GCS), never from the URL, and never appear in an error message.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

import obstore
from obstore import exceptions as obstore_errors
from obstore.store import GCSStore, LocalStore, S3Store

from rollout_operator.runtime.errors import LocalExecutionError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

Scheme = Literal["s3", "gs", "file"]

SUPPORTED_SCHEMES: tuple[str, ...] = ("s3://", "gs://", "file://")

# A worker that loses its object store for longer than this fails; the Job's retry resumes it.
_RETRY: RetryConfig = {"max_retries": 6, "retry_timeout": timedelta(seconds=60)}
_MESSAGE_CHARS = 300


class StorageError(LocalExecutionError):
    """An object-storage operation or URL failed; the message says what to fix."""


class StorageConfigError(StorageError):
    """The storage URL or its credentials are unusable before any request is made."""


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """The object does not exist (also a `FileNotFoundError`)."""


class ObjectStore:
    """A bucket or directory at `url`; keys are relative to it and use `/` separators."""

    def __init__(
        self,
        url: str,
        scheme: Scheme,
        store: Any,
        *,
        endpoint: str | None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.url = url.rstrip("/")
        self.scheme: Scheme = scheme
        self.endpoint = endpoint
        self._store = store
        self._environ = environ

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    def url_for(self, key: str) -> str:
        """The full URL of `key` (`s3://bucket/prefix/key`)."""
        key = _check_key(key)
        return f"{self.url}/{key}" if key else self.url

    def child(self, prefix: str) -> ObjectStore:
        """The same store rooted at `prefix` below this one."""
        prefix = _check_key(prefix).strip("/")
        if not prefix:
            return self
        return open_store(self.url_for(prefix), endpoint=self.endpoint, environ=self._environ)

    async def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Write `data` at `key` atomically.

        With `if_absent`, the write happens only when nothing is at `key`: returns False (and
        leaves the existing object alone) if something is. Otherwise returns True.
        """
        key = _check_key(key)
        mode: Literal["create", "overwrite"] = "create" if if_absent else "overwrite"
        try:
            await obstore.put_async(self._store, key, data, mode=mode, use_multipart=False)
        except obstore_errors.AlreadyExistsError:
            return False
        except Exception as exc:
            raise self._error("write", key, exc) from None
        return True

    async def put_file(self, key: str, path: str | os.PathLike[str]) -> None:
        """Upload a local file (large ones in parts; still atomic: visible only when complete)."""
        key = _check_key(key)
        try:
            await obstore.put_async(self._store, key, Path(path))
        except Exception as exc:
            raise self._error("upload", key, exc) from None

    async def get(self, key: str) -> bytes:
        key = _check_key(key)
        try:
            result = await obstore.get_async(self._store, key)
            return bytes(await result.bytes_async())
        except Exception as exc:
            raise self._error("read", key, exc) from None

    async def signed_get_url(self, key: str, expires_s: int) -> str:
        """A URL that lets anyone holding it read `key` (and nothing else) for `expires_s`
        seconds, without credentials: how user-code pods get their bundle. A `file://`
        store answers the object's own URL, which needs no credential either."""
        key = _check_key(key)
        if self.scheme == "file":
            return self.url_for(key)
        from datetime import timedelta

        try:
            return str(await obstore.sign_async(self._store, "GET", key,
                                                timedelta(seconds=expires_s)))
        except Exception as exc:
            raise self._error("sign a URL for", key, exc) from None

    async def get_text(self, key: str) -> str:
        return (await self.get(key)).decode("utf-8")

    async def download(self, key: str, path: str | os.PathLike[str]) -> Path:
        """Stream `key` into the local file `path` (written under a temporary name first)."""
        key = _check_key(key)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                try:
                    result = await obstore.get_async(self._store, key)
                    async for chunk in result.stream():
                        handle.write(chunk)
                except Exception as exc:
                    raise self._error("download", key, exc) from None
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        return target

    async def exists(self, key: str) -> bool:
        key = _check_key(key)
        try:
            await obstore.head_async(self._store, key)
        except FileNotFoundError as exc:
            if _missing_bucket(exc):
                raise self._error("read", key, exc) from None
            return False
        except Exception as exc:
            raise self._error("read", key, exc) from None
        return True

    async def list(self, prefix: str = "") -> list[str]:
        """Every key under `prefix` (a folder-like prefix such as `shards/0/`), sorted."""
        prefix = _check_key(prefix)
        try:
            stream = obstore.list(self._store, prefix.rstrip("/") or None, chunk_size=1000)
            keys = [meta["path"] for meta in await stream.collect_async()]
        except FileNotFoundError as exc:
            if _missing_bucket(exc):
                raise self._error("list", prefix, exc) from None
            return []
        except Exception as exc:
            raise self._error("list", prefix, exc) from None
        if prefix.endswith("/"):
            keys = [key for key in keys if key.startswith(prefix)]
        return sorted(keys)

    async def delete(self, key: str) -> None:
        """Remove `key`; removing a key that is not there is not an error."""
        key = _check_key(key)
        try:
            await obstore.delete_async(self._store, key)
        except FileNotFoundError as exc:
            if _missing_bucket(exc):
                raise self._error("delete", key, exc) from None
        except Exception as exc:
            raise self._error("delete", key, exc) from None

    def _error(self, action: str, key: str, exc: BaseException) -> StorageError:
        where = self.url_for(key)
        via = f" through {self.endpoint}" if self.endpoint else ""
        if _missing_bucket(exc):
            bucket = urlsplit(self.url).netloc
            return StorageError(
                f"Cannot {action} {where}: bucket {bucket!r} does not exist{via}; "
                "create it, or fix the bucket in output.url"
            )
        if isinstance(exc, FileNotFoundError):
            return ObjectNotFoundError(f"{where} does not exist")
        text = str(exc)
        if self.scheme != "file" and _no_credentials(exc):
            return StorageError(
                f"Cannot {action} {where}: no credentials were found{via}. "
                f"{_credential_hint(self.scheme)}"
            )
        if isinstance(exc, obstore_errors.PermissionDeniedError | PermissionError) or (
            "403 Forbidden" in text
        ):
            return StorageError(
                f"Cannot {action} {where}: permission denied{via}. {_credential_hint(self.scheme)}"
            )
        if isinstance(exc, obstore_errors.UnauthenticatedError) or "401 Unauthorized" in text:
            return StorageError(
                f"Cannot {action} {where}: the credentials were not accepted{via}. "
                f"{_credential_hint(self.scheme)}"
            )
        return StorageError(f"Cannot {action} {where}{via}: {_first_line(exc)}")


def open_store(
    url: str, *, endpoint: str | None = None, environ: Mapping[str, str] = os.environ
) -> ObjectStore:
    """The store at `url`: `s3://bucket/prefix`, `gs://bucket/prefix`, `file:///abs/path` or a
    local path.

    For S3, credentials and region come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    `AWS_SESSION_TOKEN` and `AWS_REGION` (or `AWS_DEFAULT_REGION`) in `environ`; `endpoint`
    (else `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`) points at an S3-compatible server such as
    MinIO, and may be plain `http://`. Raises `StorageConfigError` for an unusable URL.
    """
    if not isinstance(url, str) or not url.strip():
        raise StorageConfigError(
            "A storage URL is required: s3://bucket/prefix, gs://bucket/prefix or file:///path"
        )
    url = url.strip()
    if "://" not in url:
        return _local_store(Path(url).expanduser().resolve())
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StorageConfigError(
                f"{_redact(url)}: a file URL has no host; write file:///absolute/path"
            )
        return _local_store(Path(unquote(parts.path)))
    if scheme not in ("s3", "gs"):
        raise StorageConfigError(
            f"Unsupported storage URL scheme {scheme + '://'!r} in {_redact(url)}; use one of "
            f"{', '.join(SUPPORTED_SCHEMES)} (or a local path)"
        )
    if parts.username or parts.password:
        raise StorageConfigError(
            f"{_redact(url)}: do not put credentials in the storage URL; give them as "
            "environment variables from output.credentialsSecret"
        )
    bucket = parts.netloc
    if not bucket:
        raise StorageConfigError(
            f"{_redact(url)} names no bucket; write {scheme}://BUCKET/optional/prefix"
        )
    if parts.query or parts.fragment:
        raise StorageConfigError(f"{_redact(url)}: a storage URL takes no ?query or #fragment")
    prefix = parts.path.strip("/")
    clean = f"{scheme}://{bucket}" + (f"/{prefix}" if prefix else "")
    if scheme == "s3":
        return _s3_store(clean, bucket, prefix, endpoint, environ)
    return _gcs_store(clean, bucket, prefix, endpoint, environ)


def split_object_url(url: str) -> tuple[str, str]:
    """`s3://b/data/x.jsonl` -> (`s3://b/data`, `x.jsonl`): the folder URL and the object key."""
    stripped = url.strip()
    if "://" not in stripped:
        path = Path(stripped).expanduser().resolve()
        return str(path.parent), path.name
    head, sep, name = stripped.rpartition("/")
    if not sep or not name or head.endswith(":/") or head.endswith("://"):
        raise StorageConfigError(f"{_redact(url)} does not name an object (a file in a bucket)")
    return head, name


async def download_url(
    url: str,
    path: str | os.PathLike[str],
    *,
    endpoint: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Path:
    """Download the object at `url` into the local file `path`; an `http(s)://` URL (a signed
    one) is fetched as it is, with no credential."""
    if url.lower().startswith(("http://", "https://")):
        return await _download_http(url, Path(path))
    folder, key = split_object_url(url)
    return await open_store(folder, endpoint=endpoint, environ=environ).download(key, path)


async def _download_http(url: str, path: Path) -> Path:
    import aiohttp

    shown = url.split("?", 1)[0]  # a signed URL's query is its credential: never shown
    partial = path.with_name(path.name + ".partial")
    try:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(url) as response:
            if response.status != 200:
                raise StorageError(f"Cannot download {shown}: HTTP {response.status}"
                                   + (" (the signed URL may have expired)"
                                      if response.status in (400, 403) else ""))
            with partial.open("wb") as out:
                async for chunk in response.content.iter_chunked(1 << 20):
                    out.write(chunk)
        partial.replace(path)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        raise StorageError(f"Cannot download {shown}: {_first_line(exc)}") from None
    return path


def _local_store(path: Path) -> ObjectStore:
    if not path.is_absolute():
        raise StorageConfigError(f"file:// URLs need an absolute path, got {str(path)!r}")
    if path.exists() and not path.is_dir():
        raise StorageConfigError(f"{path} is a file; a storage URL names a folder")
    try:
        store = LocalStore(prefix=path, mkdir=True)
    except Exception as exc:
        raise StorageConfigError(f"Cannot use folder {path}: {_first_line(exc)}") from None
    return ObjectStore(path.as_uri(), "file", store, endpoint=None)


def _s3_store(
    url: str, bucket: str, prefix: str, endpoint: str | None, environ: Mapping[str, str]
) -> ObjectStore:
    key_id = environ.get("AWS_ACCESS_KEY_ID")
    secret = environ.get("AWS_SECRET_ACCESS_KEY")
    if bool(key_id) != bool(secret):
        missing = "AWS_SECRET_ACCESS_KEY" if key_id else "AWS_ACCESS_KEY_ID"
        raise StorageConfigError(
            f"{url}: {missing} is not set but its partner is; set both (the keys of "
            "output.credentialsSecret) or neither (to use the pod's own identity)"
        )
    config: dict[str, Any] = {}
    if key_id and secret:
        config["access_key_id"] = key_id
        config["secret_access_key"] = secret
        if token := environ.get("AWS_SESSION_TOKEN"):
            config["session_token"] = token
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region:
        config["region"] = region
    endpoint = endpoint or environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    client: ClientConfig = {}
    if endpoint:
        endpoint = _check_endpoint(endpoint)
        config["endpoint"] = endpoint
        if endpoint.startswith("http://"):
            client["allow_http"] = True
    try:
        store = S3Store(
            bucket, prefix=prefix or None, config=config,  # type: ignore[arg-type]
            client_options=client, retry_config=_RETRY,
        )
    except Exception as exc:
        raise StorageConfigError(f"Cannot use {url}: {_first_line(exc)}") from None
    return ObjectStore(url, "s3", store, endpoint=endpoint, environ=environ)


def _gcs_store(
    url: str, bucket: str, prefix: str, endpoint: str | None, environ: Mapping[str, str]
) -> ObjectStore:
    config: dict[str, Any] = {}
    credentials = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if credentials:
        config["application_credentials"] = credentials
    client: ClientConfig = {}
    if endpoint:
        endpoint = _check_endpoint(endpoint)
        config["base_url"] = endpoint
        if endpoint.startswith("http://"):
            client["allow_http"] = True
    try:
        store = GCSStore(
            bucket, prefix=prefix or None, config=config,  # type: ignore[arg-type]
            client_options=client, retry_config=_RETRY,
        )
    except Exception as exc:
        raise StorageConfigError(f"Cannot use {url}: {_first_line(exc)}") from None
    return ObjectStore(url, "gs", store, endpoint=endpoint, environ=environ)


def _check_endpoint(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StorageConfigError(
            f"Storage endpoint {_redact(endpoint)!r} is not an http(s):// URL; write it like "
            "http://minio.storage.svc:9000"
        )
    if parts.username or parts.password:
        raise StorageConfigError(
            "Do not put credentials in the storage endpoint URL; use environment variables"
        )
    return endpoint.rstrip("/")


def _check_key(key: str) -> str:
    if key.startswith("/") or any(part in ("..", ".") for part in key.split("/")):
        raise StorageError(f"Invalid object key {key!r}: use a relative key without '.' or '..'")
    return key


def _missing_bucket(exc: BaseException) -> bool:
    text = str(exc)
    # Listing a prefix never answers 404 for a bucket that exists.
    return "NoSuchBucket" in text or ("list request" in text and "404 Not Found" in text)


def _no_credentials(exc: BaseException) -> bool:
    """The client fell back to the cloud metadata server and found no identity there."""
    text = str(exc)
    return "169.254.169.254" in text or "metadata.google.internal" in text


def _credential_hint(scheme: Scheme) -> str:
    if scheme == "s3":
        return (
            "Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the keys of "
            "output.credentialsSecret) and that they may use this bucket."
        )
    if scheme == "gs":
        return (
            "Check GOOGLE_APPLICATION_CREDENTIALS (from output.credentialsSecret) or the "
            "pod's workload identity, and that it may use this bucket."
        )
    return "Check the folder's permissions."


def _first_line(exc: BaseException) -> str:
    """The first line of an error, without response bodies or debug dumps."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.split(": <?xml", 1)[0]
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."


def _redact(url: str) -> str:
    """`url` without any user:password part."""
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=f"***@{host}").geturl()
