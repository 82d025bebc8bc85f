"""Object storage: one interface over a local folder and S3, chosen by URI.

Keys are ``/``-separated paths relative to the store's root (a folder, or ``s3://bucket/prefix``).
Every key is validated before use, writes are atomic, and :meth:`Store.write_if_absent` is the
primitive that lets flows publish something exactly once.

Use :func:`open_store` to get a store from a URI. Error messages never carry credentials: every
endpoint they name goes through :func:`mlci.redact.redact_url`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from mlci.clipref import decode_clip_path, is_literal_url, label_studio_local_path
from mlci.layout import CLIP_PREFIX
from mlci.redact import redact_text, redact_url

__all__ = [
    "Store",
    "LocalStore",
    "S3Store",
    "ObjectInfo",
    "open_store",
    "validate_key",
    "StorageError",
    "InvalidKeyError",
    "ObjectNotFoundError",
    "BucketNotFoundError",
    "AccessDeniedError",
    "EndpointUnreachableError",
    "StoreNotWritableError",
    "StoreNotFoundError",
    "InvalidStoreURIError",
    "MissingCredentialsError",
    "UnresolvableReferenceError",
    "check_bucket_name",
    "check_endpoint_url",
]

_COPY_CHUNK = 1 << 20
_TMP_PREFIX = ".mlci-tmp-"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# S3's bucket naming rules (general purpose buckets): 3-63 characters, lowercase letters, digits,
# '.' and '-', a letter or digit at both ends, no '..', not an IPv4 address.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_STORE_HINT = "check --store / MLCI_STORE"


class StorageError(Exception):
    """Base class of every storage error."""


class InvalidKeyError(StorageError, ValueError):
    """A key or clip reference is malformed or points outside the store."""

    def __init__(self, key: str, reason: str):
        self.key, self.reason = key, reason
        super().__init__(f"invalid key {key!r}: {reason}")


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """No object under the key."""


class BucketNotFoundError(StorageError):
    """The S3 bucket does not exist at the endpoint."""


class AccessDeniedError(StorageError, PermissionError):
    """Credentials were refused for the operation."""


class EndpointUnreachableError(StorageError, ConnectionError):
    """The S3 endpoint did not answer (after retries)."""


class StoreNotWritableError(StorageError, PermissionError):
    """A local store root cannot be created or written."""


class UnresolvableReferenceError(StorageError, ValueError):
    """A clip reference from a label file cannot be mapped to a store key."""


class StoreNotFoundError(StorageError, FileNotFoundError):
    """No store where the URI points: a local folder that does not exist, an empty S3 prefix."""


class InvalidStoreURIError(StorageError, ValueError):
    """A store URI or S3 endpoint URL that cannot name a store (scheme, bucket name, credentials in it)."""


class MissingCredentialsError(AccessDeniedError):
    """The AWS credential chain found no usable credentials for S3."""


def check_bucket_name(bucket: str, uri: str) -> str:
    """Return ``bucket`` if S3 accepts it as a bucket name, else raise :class:`InvalidStoreURIError`."""
    if "@" in bucket or ":" in bucket:
        raise InvalidStoreURIError(
            f"credentials do not belong in the store URI, but got {redact_url(uri)!r}: use s3://bucket/prefix; "
            "S3 credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
        )
    if not _BUCKET.match(bucket) or ".." in bucket or _IPV4.match(bucket):
        raise InvalidStoreURIError(
            f"invalid S3 bucket name {bucket!r} in {redact_url(uri)!r}: a bucket name is 3-63 lowercase letters, "
            f"digits, '.' and '-', starting and ending with a letter or digit; {_STORE_HINT}"
        )
    return bucket


def check_endpoint_url(endpoint_url: str | None) -> str | None:
    """Return ``endpoint_url`` if it can name an S3 endpoint (http(s), a host, no credentials), else raise."""
    if endpoint_url is None:
        return None
    parsed = urlparse(endpoint_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidStoreURIError(
            f"the S3 endpoint must look like http(s)://host[:port], but got {redact_url(endpoint_url)!r}; "
            "check MLCI_S3_ENDPOINT_URL"
        )
    if parsed.username is not None or parsed.password is not None:
        # botocore would send 'user:password@host' as the Host header; S3 signs with AWS credentials instead.
        raise InvalidStoreURIError(
            f"the S3 endpoint must not contain credentials, but got {redact_url(endpoint_url)!r}; put them in "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an AWS profile and remove them from MLCI_S3_ENDPOINT_URL"
        )
    return endpoint_url


@dataclass(frozen=True)
class ObjectInfo:
    """Size and content identity of one stored object.

    ``identity`` is the S3 ETag (without quotes) or the sha256 hex digest of a local file: equal
    identities mean equal content within one backend.
    """

    key: str
    size: int
    identity: str


def validate_key(key: str, *, allow_empty: bool = False) -> str:
    """Return ``key`` if it is a safe relative key, else raise :class:`InvalidKeyError`.

    Rejected: absolute paths, ``.``/``..`` and empty segments, backslashes, NUL and other control
    characters. A trailing ``/`` is allowed (prefixes are keys too).
    """
    if not isinstance(key, str):
        raise InvalidKeyError(repr(key), f"expected a string, got {type(key).__name__}")
    if key == "":
        if allow_empty:
            return key
        raise InvalidKeyError(key, "empty key")
    if _CONTROL.search(key):
        raise InvalidKeyError(key, "contains NUL or control characters")
    if "\\" in key:
        raise InvalidKeyError(key, "contains a backslash")
    if key.startswith("/") or re.match(r"^[A-Za-z]:", key):
        raise InvalidKeyError(key, "absolute path")
    parts = key[:-1].split("/") if key.endswith("/") else key.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidKeyError(key, f"path segment {part!r} is not allowed")
    return key


def _decoded(ref: str, path: str) -> str:
    """``path`` percent-decoded once; malformed escapes make ``ref`` an invalid key."""
    try:
        return decode_clip_path(path)
    except ValueError as exc:
        raise InvalidKeyError(ref, str(exc)) from None


def _clip_key(ref: str, path: str, *, under: str) -> str:
    """The clip key that ``path`` (resolved from ``ref``) names, validated.

    ``under`` says how ``path`` relates to ``clips/``: ``"always"`` (``clips/<path>``),
    ``"already"`` (``path`` is the key) or ``"unless_prefixed"`` (``clips/<path>`` unless ``path``
    starts with ``clips/``). ``path`` must be a valid key also after one more percent-decoding:
    that catches double-encoded traversal (``%252e%252e/``), which would escape the store if any
    tool on the way decoded it again.
    """
    if not path:
        raise UnresolvableReferenceError(f"clip reference {ref!r} names no clip")
    for candidate, how in ((path, "resolves to"), (unquote(path), "decodes again to")):
        try:
            validate_key(candidate)
        except InvalidKeyError as exc:
            raise InvalidKeyError(ref, f"{how} {candidate!r}: {exc.reason}") from None
    if under == "always" or (under == "unless_prefixed" and not path.startswith(CLIP_PREFIX)):
        path = CLIP_PREFIX + path
    if not path.startswith(CLIP_PREFIX) or path == CLIP_PREFIX or path.endswith("/"):
        raise UnresolvableReferenceError(f"clip reference {ref!r} names {path!r}, which is not a clip under {CLIP_PREFIX!r}")
    return path


#: Default of :attr:`Store.io_threads` (botocore's own pool is 10 connections).
DEFAULT_IO_THREADS = 16


class Store(ABC):
    """A flat key space of immutable-by-convention objects.

    Subclasses implement the primitives; the shared helpers (text, clip reference resolution)
    live here.
    """

    uri: str
    #: Calls a caller may make at once on this store (its thread pools use this many threads);
    #: an S3 store keeps as many pooled connections, so no connection is ever discarded.
    io_threads: int = DEFAULT_IO_THREADS

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """All keys under ``prefix``, sorted. Listing is paginated, so there is no size limit."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The whole object in memory."""

    @abstractmethod
    def download(self, key: str, path: str | os.PathLike) -> Path:
        """Stream the object to ``path`` in chunks (never whole in memory); return the path."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write atomically: readers see the old object or the new one, never a part."""

    @abstractmethod
    def upload(self, key: str, path: str | os.PathLike) -> None:
        """Atomically store the file at ``path`` under ``key``, streaming it."""

    @abstractmethod
    def write_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only if no object has the key; return whether this call wrote it."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size and content identity of the object."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object. Only for objects that are meant to expire, such as locks."""

    @abstractmethod
    def url_for(self, key: str) -> str:
        """A URI that names the object outside mlci (``file://...`` or ``s3://...``)."""

    @abstractmethod
    def check_exists(self) -> None:
        """Raise :class:`StoreNotFoundError` unless the store is there; create nothing."""

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """A local file with the object's content, valid inside the ``with`` block."""
        with tempfile.TemporaryDirectory(prefix="mlci-") as tmp:
            yield self.download(key, Path(tmp) / Path(key).name)

    def resolve_clip_ref(
        self, ref: str, *, base_url: str | None = None, files_root: str | os.PathLike | None = None
    ) -> str:
        """Turn a clip reference from a label file into a key under ``clips/``.

        Accepted forms, each mapped to one key:

        - a URL starting with ``base_url``: ``clips/`` + its remainder, cut at ``?``/``#`` and
          percent-decoded once (:func:`mlci.clipref.decode_clip_path`); under an ``s3://`` base
          the remainder is a literal key, as S3 tools read it;
        - this store's own URI: ``s3://bucket/prefix/<key>`` (literal, as Label Studio's S3 storage
          writes it) or ``file://...`` (decoded);
        - a Label Studio local files URL, ``[host]/data/local-files/?d=<path>``, for a folder store
          under ``files_root`` (Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT`` as seen from here):
          ``<path>`` is relative to ``files_root``, a leading ``/`` included, as Label Studio reads it;
        - a relative reference, percent-decoded once and taken under ``clips/`` unless it already
          starts with ``clips/``.

        Raises
        ------
        InvalidKeyError
            The reference is malformed or points outside the store: ``..`` (also percent-encoded,
            once or twice), another bucket or prefix, a ``file://`` or local files path outside the root.
        UnresolvableReferenceError
            Empty, a URL whose base is not ``base_url`` and not this store, or a local files URL
            without ``files_root`` or for an S3 store.
        """
        if not isinstance(ref, str) or not ref.strip():
            raise UnresolvableReferenceError(f"empty or non-string clip reference: {ref!r}")
        ref = ref.strip()
        base = (base_url if base_url.endswith("/") else base_url + "/") if base_url else None
        if base and ref.startswith(base):
            rest = ref[len(base) :]
            if not is_literal_url(base):
                rest = _decoded(ref, rest.split("?", 1)[0].split("#", 1)[0])
            # Always clips/<rest>, even when rest starts with 'clips/': mlci.clipref.clip_url inverts this.
            return _clip_key(ref, rest, under="always")
        try:
            local = label_studio_local_path(ref)
        except ValueError as exc:
            raise InvalidKeyError(ref, str(exc)) from None
        if local is not None:
            return _clip_key(ref, self._relative_to_files_root(ref, local, files_root), under="already")
        if "://" in ref:
            return _clip_key(ref, self._relative_to_store(ref), under="already")
        return _clip_key(ref, _decoded(ref, ref), under="unless_prefixed")

    @abstractmethod
    def _relative_to_store(self, uri: str) -> str:
        """Key of a URI naming an object of this store; raise if it names something else."""

    @abstractmethod
    def _relative_to_files_root(self, ref: str, path: str, files_root: str | os.PathLike | None) -> str:
        """Key of the file ``files_root/path`` (from a local files URL ``ref``); raise if outside the store."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.uri)!r})"


class LocalStore(Store):
    """A store in a local folder.

    Atomic writes go to a hidden temporary file in the target folder and are renamed into place;
    create-if-absent links the finished temporary file to its name, which fails if the name exists
    (``O_EXCL`` semantics, but the object appears complete).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()
        self._hash_cache: dict[tuple[str, int, int, int], str] = {}
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _ensure_dir(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (OSError, PermissionError) as exc:
            raise StoreNotWritableError(
                f"cannot create folder {folder} in store {self.root}: {exc.strerror or exc}"
            ) from exc

    def list(self, prefix: str = "") -> list[str]:
        validate_key(prefix, allow_empty=True)
        start = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not start.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(_TMP_PREFIX)]
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFoundError(f"no object {key!r} in {self.uri}") from None

    def download(self, key: str, path: str | os.PathLike) -> Path:
        src, dest = self._path(key), Path(path)
        try:
            shutil.copyfile(src, dest)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            if not src.is_file():
                raise ObjectNotFoundError(f"no object {key!r} in {self.uri}") from None
            raise
        return dest

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        # The object already is a local file; copying it would only cost time.
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError(f"no object {key!r} in {self.uri}")
        yield path

    def _atomic_write(self, key: str, writer, *, exclusive: bool) -> bool:
        final = self._path(key)
        self._ensure_dir(final.parent)
        tmp = final.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            with open(tmp, "xb") as fh:
                writer(fh)
                fh.flush()
                os.fsync(fh.fileno())
            if exclusive:
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, final)
            return True
        except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            raise StoreNotWritableError(f"cannot write {key!r} in {self.root}: {exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def write_bytes(self, key: str, data: bytes) -> None:
        self._atomic_write(key, lambda fh: fh.write(data), exclusive=False)

    def upload(self, key: str, path: str | os.PathLike) -> None:
        def copy(fh: BinaryIO) -> None:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, fh, _COPY_CHUNK)

        self._atomic_write(key, copy, exclusive=False)

    def write_if_absent(self, key: str, data: bytes) -> bool:
        return self._atomic_write(key, lambda fh: fh.write(data), exclusive=True)

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"no object {key!r} in {self.uri}") from None
        if not path.is_file():
            raise ObjectNotFoundError(f"no object {key!r} in {self.uri} (a folder)")
        # The hash is cached per (path, size, mtime, inode): a rewrite renames a new inode in.
        cache_key = (key, st.st_size, st.st_mtime_ns, st.st_ino)
        digest = self._hash_cache.get(cache_key)
        if digest is None:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                while chunk := fh.read(_COPY_CHUNK):
                    h.update(chunk)
            digest = h.hexdigest()
            with self._lock:
                self._hash_cache[cache_key] = digest
        return ObjectInfo(key=key, size=st.st_size, identity=digest)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def url_for(self, key: str) -> str:
        return self._path(key).as_uri()

    def check_exists(self) -> None:
        if not self.root.exists():
            raise StoreNotFoundError(
                f"no store at {self.root}: {_STORE_HINT} (only `mlci demo-data` and `mlci demo` create a new store)"
            )
        if not self.root.is_dir():
            raise StoreNotFoundError(f"no store at {self.root}: it is a file, not a folder; {_STORE_HINT}")

    def _relative_to_store(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise UnresolvableReferenceError(
                f"reference {redact_url(uri)!r} is not under the clip base URL and not in store {self.uri}"
            )
        path = Path(_decoded(uri, parsed.path))
        # Compare on the lexical path so that '..' is caught as an escape, not normalised away.
        try:
            rel = path.relative_to(self.root).as_posix()
        except ValueError:
            raise InvalidKeyError(uri, f"outside the store root {self.root}") from None
        return rel

    def _relative_to_files_root(self, ref: str, path: str, files_root: str | os.PathLike | None) -> str:
        if files_root is None:
            raise UnresolvableReferenceError(
                f"clip reference {redact_url(ref)!r} is a Label Studio local files URL: set "
                "MLCI_LABEL_STUDIO_FILES_ROOT to Label Studio's LOCAL_FILES_DOCUMENT_ROOT as seen from mlci"
            )
        # Label Studio strips a leading '/' and reads the rest under its document root.
        rel = path.lstrip("/")
        if not rel:
            return rel
        for candidate, how in ((rel, "names"), (unquote(rel), "decodes again to")):
            try:
                validate_key(candidate)
            except InvalidKeyError as exc:
                raise InvalidKeyError(ref, f"{how} {candidate!r}: {exc.reason}") from None
        root = Path(files_root).expanduser().resolve()
        try:
            folder = self.root.relative_to(root).as_posix()
        except ValueError:
            raise InvalidKeyError(ref, f"outside the store root {self.root}, which is not under the Label Studio "
                                       f"files root {root}") from None
        if folder == ".":
            return rel
        if not rel.startswith(folder + "/"):
            raise InvalidKeyError(ref, f"names {root / rel}, outside the store root {self.root}")
        return rel[len(folder) + 1 :]


class S3Store(Store):
    """A store under ``s3://bucket/prefix`` through boto3.

    The client uses botocore's standard retry mode, path-style addressing and checksums only when
    required, so S3-compatible servers (MinIO, moto) behave like AWS. Credentials come from the
    standard AWS chain and are never stored on this object.
    """

    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        max_attempts: int = 5,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        io_threads: int = DEFAULT_IO_THREADS,
    ):
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidStoreURIError(f"no bucket in {redact_url(uri)!r}: use s3://bucket/prefix; {_STORE_HINT}")
        self.bucket = check_bucket_name(parsed.netloc, uri)
        self.prefix = parsed.path.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = check_endpoint_url(endpoint_url)
        self.region = region
        self.max_attempts = max_attempts
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self.io_threads = io_threads
        self._client = None
        self._client_lock = threading.Lock()

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                region_name=self.region,
                # total_max_attempts counts the first request; botocore's "max_attempts" would count retries only.
                retries={"mode": "standard", "total_max_attempts": self.max_attempts},
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=self._connect_timeout,
                read_timeout=self._read_timeout,
                max_pool_connections=self.io_threads,
            )
            with self._client_lock:
                if self._client is None:
                    self._client = boto3.session.Session().client(
                        "s3", endpoint_url=self.endpoint_url, config=config
                    )
        return self._client

    def _full(self, key: str, *, allow_empty: bool = False) -> str:
        validate_key(key, allow_empty=allow_empty)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _strip(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Translate botocore exceptions into specific, actionable storage errors (credentials redacted)."""
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            ConnectTimeoutError,
            CredentialRetrievalError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
            ProfileNotFound,
            ReadTimeoutError,
        )

        where = f"s3://{self.bucket}/{self._full(key, allow_empty=True)}" if key else self.uri
        endpoint = redact_url(self.endpoint_url) or "the AWS default endpoint"
        try:
            yield
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                raise BucketNotFoundError(
                    f"bucket {self.bucket!r} does not exist at {endpoint}: create it or fix the store URI "
                    f"({_STORE_HINT}, MLCI_S3_ENDPOINT_URL)"
                ) from None
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFoundError(f"no object at {where}") from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") or status == 403:
                raise AccessDeniedError(
                    f"access denied ({code}) to {where} at {endpoint}; check the AWS credentials "
                    "in the environment/profile and the bucket policy"
                ) from None
            message = redact_text(str(err.get("Message", exc)))
            raise StorageError(f"S3 error {code or status} on {where} at {endpoint}: {message}") from None
        except (NoCredentialsError, PartialCredentialsError, ProfileNotFound, CredentialRetrievalError) as exc:
            raise MissingCredentialsError(
                f"no usable AWS credentials for {where} ({type(exc).__name__}): set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            ) from None
        except (ConnectionError, HTTPClientError) as exc:
            # The botocore message repeats the request URL; the reason is enough and leaks nothing.
            if isinstance(exc, ReadTimeoutError):
                reason = f"no answer within {self._read_timeout:g} s"
            elif isinstance(exc, ConnectTimeoutError):
                reason = f"no connection within {self._connect_timeout:g} s"
            else:
                reason = {"EndpointConnectionError": "could not connect",
                          "ConnectionClosedError": "connection closed"}.get(type(exc).__name__, type(exc).__name__)
            raise EndpointUnreachableError(
                f"S3 endpoint {endpoint} unreachable for {where} after {self.max_attempts} attempts ({reason}): "
                "check MLCI_S3_ENDPOINT_URL and that the server is up"
            ) from None

    def list(self, prefix: str = "") -> list[str]:
        full = self._full(prefix, allow_empty=True)
        if self.prefix and not prefix:
            full = self.prefix + "/"
        keys: list[str] = []
        with self._errors(prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(self._strip(obj["Key"]) for obj in page.get("Contents", ()))
        return sorted(keys)

    def read_bytes(self, key: str) -> bytes:
        with self._errors(key):
            return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read()

    def download(self, key: str, path: str | os.PathLike) -> Path:
        dest = Path(path)
        with self._errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]
            with open(dest, "wb") as fh:
                for chunk in body.iter_chunks(_COPY_CHUNK):
                    fh.write(chunk)
        return dest

    def write_bytes(self, key: str, data: bytes) -> None:
        # A single PUT is atomic in S3: the object appears whole or not at all.
        with self._errors(key):
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)

    def upload(self, key: str, path: str | os.PathLike) -> None:
        from boto3.s3.transfer import TransferConfig

        # Multipart uploads become visible only when completed, so they are atomic too.
        config = TransferConfig(multipart_threshold=16 * _COPY_CHUNK, multipart_chunksize=16 * _COPY_CHUNK)
        with self._errors(key):
            self.client.upload_file(str(path), self.bucket, self._full(key), Config=config)

    def write_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        with self._errors(key):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, IfNoneMatch="*")
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                # 409 is S3's answer when a concurrent conditional write of the same key is in flight.
                if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                    return False
                raise
        return True

    def stat(self, key: str) -> ObjectInfo:
        with self._errors(key):
            head = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        return ObjectInfo(key=key, size=int(head["ContentLength"]), identity=head["ETag"].strip('"'))

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def check_exists(self) -> None:
        # S3 has no folders: a store is a bucket that exists with at least one object under the prefix.
        with self._errors(""):
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "",
                                               MaxKeys=1)
        if not page.get("KeyCount", len(page.get("Contents", ()))):
            raise StoreNotFoundError(
                f"no store at {self.uri} on {redact_url(self.endpoint_url) or 'the AWS default endpoint'}: "
                f"nothing under that prefix; {_STORE_HINT} (only `mlci demo-data` and `mlci demo` create a new store)"
            )

    def _relative_to_store(self, uri: str) -> str:
        if not is_literal_url(uri):
            raise UnresolvableReferenceError(
                f"reference {redact_url(uri)!r} is not under the clip base URL and not in store {self.uri}"
            )
        # The key is read literally, as the AWS CLI and Label Studio's S3 storage read it: a '#',
        # '?' or '%' in it is part of the key (and url_for writes keys the same way).
        bucket, _, full = uri[len("s3://") :].partition("/")
        if bucket != self.bucket:
            raise InvalidKeyError(uri, f"bucket {bucket!r} is outside the store {self.uri}")
        if self.prefix:
            if not full.startswith(self.prefix + "/"):
                raise InvalidKeyError(uri, f"outside the store prefix {self.prefix!r}")
            return full[len(self.prefix) + 1 :]
        return full

    def _relative_to_files_root(self, ref: str, path: str, files_root: str | os.PathLike | None) -> str:
        raise UnresolvableReferenceError(
            f"clip reference {redact_url(ref)!r} is a file on the Label Studio server (local files URL), not in "
            f"store {self.uri}: connect the bucket as S3 storage in Label Studio so that tasks carry s3:// URIs"
        )


def open_store(
    uri: str,
    *,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    max_attempts: int = 5,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    must_exist: bool = False,
    io_threads: int = DEFAULT_IO_THREADS,
) -> Store:
    """Open the store named by ``uri``: ``s3://bucket/prefix``, ``file:///path`` or a plain path.

    Parameters
    ----------
    uri : str
    endpoint_url : str, default=None
        S3 endpoint (``http(s)://host[:port]``, no credentials); None is AWS.
    region : str, default="us-east-1"
    max_attempts : int, default=5
        Attempts per S3 call.
    connect_timeout, read_timeout : float, default=5.0, 60.0
        Seconds an S3 call waits for a connection and for an answer, per attempt.
    io_threads : int, default=DEFAULT_IO_THREADS
        Calls made at once on the store (:attr:`Store.io_threads`): an S3 store pools as many connections.
    must_exist : bool, default=False
        Check now that the store is there (a local folder, or an S3 prefix holding objects) and raise
        :class:`StoreNotFoundError` if not. Without it a local folder is created by the first write.

    Raises
    ------
    InvalidStoreURIError
        Unsupported scheme, no or an invalid bucket name, credentials in the URI or endpoint.
    StoreNotFoundError
        ``must_exist`` and nothing is there.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidStoreURIError(f"the store URI must be a folder path, file:// or s3:// URI, but got {uri!r}")
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        store: Store = S3Store(uri, endpoint_url=endpoint_url, region=region, max_attempts=max_attempts,
                               connect_timeout=connect_timeout, read_timeout=read_timeout, io_threads=io_threads)
    elif parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidStoreURIError(
                f"a file:// store URI names a local folder (file:///abs/path), but got {redact_url(uri)!r}"
            )
        store = LocalStore(unquote(parsed.path))
    elif parsed.scheme and len(parsed.scheme) > 1:  # 'C:' style drive letters are paths
        raise InvalidStoreURIError(
            f"unsupported store URI scheme {parsed.scheme!r} in {redact_url(uri)!r}: use a folder path, "
            f"file:///abs/path or s3://bucket/prefix; {_STORE_HINT}"
        )
    else:
        store = LocalStore(uri)
    if must_exist:
        store.check_exists()
    return store
