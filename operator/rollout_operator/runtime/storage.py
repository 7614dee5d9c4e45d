"""Object storage over URLs: one small async interface for `s3://`, `gs://` and local files.

Workers, the aggregator, the sync Job and the local backend all read and write a run's files
through `ObjectStore`, whatever the backend. Every write is atomic: an object is either there
whole or not at all (S3 and GCS PUTs are; local files are written under a temporary name and
renamed). `put(..., if_absent=True)` is a conditional create (`If-None-Match: *` on S3 and GCS,
a no-clobber link locally), so a part of a trajectory shard is written at most once even when
two pods race.

A store opened with an outage gate (`open_store(..., outage=gate)`, as workers and the
aggregate do) waits out storage that cannot be reached or answers 5xx, for the gate's budget,
and then sends the same request again; obstore's own retries only cover a second or two.
Permission, credential and missing-bucket errors are not outages: they fail at once.

Credentials come from the environment (`AWS_*` for S3, `GOOGLE_APPLICATION_CREDENTIALS` or the
metadata server for GCS), never from the URL, and never appear in an error message.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit

import obstore
from obstore import exceptions as obstore_errors
from obstore.store import GCSStore, LocalStore, S3Store

from rollout_operator.runtime.errors import LocalExecutionError
from rollout_operator.runtime.outage import OutageGate

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

Scheme = Literal["s3", "gs", "file"]

SUPPORTED_SCHEMES: tuple[str, ...] = ("s3://", "gs://", "file://")

T = TypeVar("T")

# obstore's own retries ride out a blip (about 1-2.5 s in all); a longer outage is waited out by
# the store's outage gate, when it has one (workers and the aggregate: the run's budget).
_RETRY: RetryConfig = {"max_retries": 6, "retry_timeout": timedelta(seconds=60)}
_PERMANENT = (
    obstore_errors.NotFoundError, obstore_errors.AlreadyExistsError,
    obstore_errors.PreconditionError, obstore_errors.NotModifiedError,
    obstore_errors.PermissionDeniedError, obstore_errors.UnauthenticatedError,
    obstore_errors.InvalidPathError, obstore_errors.NotSupportedError,
    obstore_errors.UnknownConfigurationKeyError, FileNotFoundError, PermissionError,
)
_TRANSIENT_MARKS = (
    "error sending request", "timed out", "timeout", "connection", "reset by peer",
    "broken pipe", "error decoding response body", "500 internal server error",
    "502 bad gateway", "503 service unavailable", "504 gateway timeout", "429 too many",
    "slowdown", "serviceunavailable", "internalerror",
)
_MESSAGE_CHARS = 300


class StorageError(LocalExecutionError):
    """An object-storage operation or URL failed; the message says what to fix. `outage`:
    storage could not be reached (or answered 5xx), so the same operation may work later."""

    outage: bool = False


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
        outage: OutageGate | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.scheme: Scheme = scheme
        self.endpoint = endpoint
        self._store = store
        self._environ = environ
        self.outage = outage
        """Waits out storage outages for every operation (None: they fail at once)."""

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
        return open_store(self.url_for(prefix), endpoint=self.endpoint, environ=self._environ,
                          outage=self.outage)

    async def _run(self, op: Callable[[], Awaitable[T]]) -> T:
        """`op` through the outage gate, if there is one."""
        if self.outage is None:
            return await op()
        return await self.outage.call(op, storage_outage)

    async def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Write `data` at `key` atomically.

        With `if_absent`, the write happens only when nothing is at `key`: returns False (and
        leaves the existing object alone) if something is. Otherwise returns True.
        """
        key = _check_key(key)
        mode: Literal["create", "overwrite"] = "create" if if_absent else "overwrite"
        try:
            await self._run(lambda: obstore.put_async(self._store, key, data, mode=mode,
                                                      use_multipart=False))
        except obstore_errors.AlreadyExistsError:
            return False
        except Exception as exc:
            raise self._error("write", key, exc) from None
        return True

    async def put_file(self, key: str, path: str | os.PathLike[str]) -> None:
        """Upload a local file (large ones in parts; still atomic: visible only when complete)."""
        key = _check_key(key)
        try:
            await self._run(lambda: obstore.put_async(self._store, key, Path(path)))
        except Exception as exc:
            raise self._error("upload", key, exc) from None

    async def get(self, key: str) -> bytes:
        key = _check_key(key)
        async def read() -> bytes:
            result = await obstore.get_async(self._store, key)
            return bytes(await result.bytes_async())

        try:
            return await self._run(read)
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
            return str(await self._run(lambda: obstore.sign_async(
                self._store, "GET", key, timedelta(seconds=expires_s))))
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
        os.close(fd)

        async def fetch() -> None:
            # From the start again after an outage.
            with os.fdopen(os.open(partial, os.O_WRONLY | os.O_TRUNC), "wb") as handle:
                result = await obstore.get_async(self._store, key)
                async for chunk in result.stream():
                    handle.write(chunk)

        try:
            try:
                await self._run(fetch)
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
            await self._run(lambda: obstore.head_async(self._store, key))
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
            def listing() -> Awaitable[Sequence[Any]]:
                stream = obstore.list(self._store, prefix.rstrip("/") or None, chunk_size=1000)
                return stream.collect_async()

            keys = [meta["path"] for meta in await self._run(listing)]
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
            await self._run(lambda: obstore.delete_async(self._store, key))
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
        error = StorageError(f"Cannot {action} {where}{via}: {_first_line(exc)}")
        error.outage = storage_outage(exc)
        return error


def open_store(
    url: str, *, endpoint: str | None = None, environ: Mapping[str, str] = os.environ,
    outage: OutageGate | None = None,
) -> ObjectStore:
    """The store at `url`: `s3://bucket/prefix`, `gs://bucket/prefix`, `file:///abs/path` or a
    local path.

    For S3, credentials and region come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    `AWS_SESSION_TOKEN` and `AWS_REGION` (or `AWS_DEFAULT_REGION`) in `environ`; `endpoint`
    (else `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`) points at an S3-compatible server such as
    MinIO, and may be plain `http://`. With `outage`, storage outages are waited out (see the
    module docstring). Raises `StorageConfigError` for an unusable URL.
    """
    store = _open_store(url, endpoint, environ)
    store.outage = outage
    return store


def storage_outage(exc: BaseException) -> bool:
    """An error of an object-store request that another try may not meet: no connection, a
    timeout, a 5xx or a throttling answer. Permissions, credentials, a missing bucket or
    object are not."""
    if isinstance(exc, _PERMANENT) or _missing_bucket(exc) or _no_credentials(exc):
        return False
    if not isinstance(exc, obstore_errors.BaseError | OSError | TimeoutError):
        return False
    text = str(exc).lower()
    if "403 forbidden" in text or "401 unauthorized" in text:
        return False
    return isinstance(exc, TimeoutError | ConnectionError) or any(
        mark in text for mark in _TRANSIENT_MARKS)


def _open_store(url: str, endpoint: str | None, environ: Mapping[str, str]) -> ObjectStore:
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
    outage: OutageGate | None = None,
) -> Path:
    """Download the object at `url` into the local file `path`; an `http(s)://` URL (a signed
    one) is fetched as it is, with no credential."""
    if url.lower().startswith(("http://", "https://")):
        return await _download_http(url, Path(path))
    folder, key = split_object_url(url)
    store = open_store(folder, endpoint=endpoint, environ=environ, outage=outage)
    return await store.download(key, path)


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
