"""Where a mirror reads from (HTTP, file, S3) and writes to (a directory or S3)."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import ssl
import stat
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit

from ...errors import PascalForgeError
from ...safe_text import redact_url
from .model import (
    CHUNK,
    DERIVED_INDEXES,
    HTTP_TIMEOUT,
    KNOWN_SUBDIRS,
    LOCK_NAME,
    MAX_NAME_BYTES,
    MAX_REPODATA_BYTES,
    PACKAGE_NAME,
    PARTIAL_SUFFIX,
    REPODATA,
    MirrorDestinationError,
    MirrorError,
    S3Settings,
    split_s3_url,
)

# Open no link that is not ours: a link planted in the destination would point our writes elsewhere.
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class SourceForbidden(Exception):
    """The source answered 403 Forbidden: some servers say so for what they do not have."""


class IndexTooLarge(MirrorError):
    """An index larger than any real channel's: refused before it fills the memory."""

    def __init__(self, where: str, limit: int) -> None:
        super().__init__(
            "refusing the source channel",
            [f"{where}: larger than {limit // (1 << 20)} MiB, which no channel's index is; the right URL?"],
        )


def read_capped(body: Any, where: str, limit: int) -> bytes:
    """All of `body` (a file-like object), refusing it once it grows past `limit` bytes."""
    data = body.read(limit + 1)
    if len(data) > limit:
        raise IndexTooLarge(where, limit)
    return data


class Body(Protocol):
    """A response body read into the caller's buffers, so a download allocates nothing per chunk."""

    def readinto(self, buffer: memoryview) -> int: ...


class Source(Protocol):
    label: str

    def list_subdirs(self) -> list[str]: ...
    def read(self, relpath: str) -> bytes | None: ...
    def stream(self, relpath: str, offset: int) -> contextlib.AbstractContextManager[tuple[int, Body]]:
        """Yield (offset honoured, body from there): the offset is 0 when the source cannot resume."""
        ...

    def close(self) -> None: ...


def is_transport_error(exc: BaseException) -> bool:
    """An error of the network or the other end (refused, timed out, untrusted, denied), not a bug."""
    return isinstance(exc, OSError | http.client.HTTPException) or type(exc).__module__.startswith(
        ("botocore", "urllib3")
    )


def describe_transport_error(where: str, exc: BaseException) -> str:
    """`where: what went wrong`, with what to do where the cause is a certificate we cannot check."""
    reason = getattr(exc, "reason", exc)
    text = f"{where}: {reason}"
    if isinstance(exc, urllib.error.HTTPError):
        text = f"{where}: HTTP {exc.code} {reason}"
    if isinstance(reason, ssl.SSLCertVerificationError):
        text += "; if your own CA signed the channel's certificate, set SSL_CERT_FILE to a bundle holding it"
    return text


class _SharedTLSContext(urllib.request.HTTPSHandler):
    """HTTPS with one TLS context per source, made at its first https:// request.

    urllib's handler makes a context for every connection (Python 3.11) or when the opener is built
    (3.12), and each loads the CA bundle: 20 ms on a Debian or Ubuntu machine. 200 small packages
    over https took 4.9 s instead of 0.8 s, and an http:// source paid it for nothing.
    """

    def __init__(self) -> None:
        # Not HTTPSHandler.__init__: on 3.12 that loads the CA bundle at once.
        urllib.request.AbstractHTTPHandler.__init__(self)
        self._made = threading.Lock()
        self._context: ssl.SSLContext | None = None

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        with self._made:
            if self._context is None:
                self._context = ssl.create_default_context()
                self._context.set_alpn_protocols(["http/1.1"])
        return self.do_open(http.client.HTTPSConnection, req, context=self._context)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class _CredentialsStayHome(urllib.request.HTTPRedirectHandler):
    """Follows redirects, sending the source's credential again only to the origin it was given for.

    The credential travels as an unredirected header, which urllib never copies to a redirect;
    this puts it back where the redirect stays on the source's scheme, host and port.
    """

    def __init__(self, origin: tuple[str, str, int | None], authorization: str | None) -> None:
        self._origin = origin
        self._authorization = authorization

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and self._authorization and _origin(newurl) == self._origin:
            new.add_unredirected_header("Authorization", self._authorization)
        return new


class HttpSource:
    """Plain urllib: it handles proxies and redirects, and its `readinto` fills the mirror's own
    buffers, so the per-byte cost stays low enough that sha256, not Python, bounds the rate
    (httpx's chunk iterator ran at half the rate on loopback).

    `user:password@host` becomes HTTP basic authentication for that host alone; `label`, which every
    message shows, has no password and no conda token (/t/<token>/) in it.
    """

    def __init__(self, url: str, max_index_bytes: int = MAX_REPODATA_BYTES) -> None:
        parts = urlsplit(url.rstrip("/"))
        self._authorization: str | None = None
        if parts.username is not None or parts.password is not None:
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            self._authorization = "Basic " + base64.b64encode(pair.encode()).decode()
            host = parts.netloc.rsplit("@", 1)[1]
            parts = parts._replace(netloc=host)
        self._base = urlunsplit(parts)
        self.label = redact_url(url.rstrip("/"))
        self._max_index_bytes = max_index_bytes
        self._opener = urllib.request.build_opener(
            _SharedTLSContext(), _CredentialsStayHome(_origin(self._base), self._authorization)
        )
        self._opener.addheaders = [("User-Agent", "pascal-forge-mirror"), ("Accept-Encoding", "identity")]

    def _open(self, relpath: str, headers: dict[str, str]) -> Any:
        request = urllib.request.Request(f"{self._base}/{relpath}", headers=headers)
        if self._authorization:
            request.add_unredirected_header("Authorization", self._authorization)
        return self._opener.open(request, timeout=HTTP_TIMEOUT)

    def list_subdirs(self) -> list[str]:
        try:
            channeldata = self.read("channeldata.json")
        except SourceForbidden:
            channeldata = None
        if channeldata:
            with contextlib.suppress(ValueError, AttributeError, RecursionError):
                subdirs = json.loads(channeldata).get("subdirs")
                if isinstance(subdirs, list) and subdirs:
                    return [s for s in subdirs if isinstance(s, str)]
        return list(KNOWN_SUBDIRS)

    def read(self, relpath: str) -> bytes | None:
        try:
            with self._open(relpath, {}) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > self._max_index_bytes:
                    raise IndexTooLarge(f"{self.label}/{relpath}", self._max_index_bytes)
                return read_capped(response, f"{self.label}/{relpath}", self._max_index_bytes)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code == 403:
                raise SourceForbidden(f"HTTP 403 {exc.reason}") from exc
            raise

    @contextlib.contextmanager
    def stream(self, relpath: str, offset: int) -> Iterator[tuple[int, Body]]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self._open(relpath, headers) as response:
            honoured = offset if offset and response.status == 206 else 0
            yield honoured, response

    def close(self) -> None:
        pass


class FileSource:
    def __init__(self, root: Path, max_index_bytes: int = MAX_REPODATA_BYTES) -> None:
        self.root = root
        self.label = str(root)
        self._max_index_bytes = max_index_bytes

    def list_subdirs(self) -> list[str]:
        if not self.root.is_dir():
            raise PascalForgeError(f"source channel {self.root} is not a directory")
        return sorted(p.name for p in self.root.iterdir() if (p / REPODATA).is_file())

    def read(self, relpath: str) -> bytes | None:
        try:
            with open(self.root / relpath, "rb") as handle:
                return read_capped(handle, f"{self.root / relpath}", self._max_index_bytes)
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def stream(self, relpath: str, offset: int) -> Iterator[tuple[int, Body]]:
        with open(self.root / relpath, "rb") as handle:
            handle.seek(offset)
            yield offset, handle

    def close(self) -> None:
        pass


class S3Source:
    def __init__(self, url: str, settings: S3Settings, max_index_bytes: int = MAX_REPODATA_BYTES) -> None:
        self.label = url.rstrip("/")
        self.bucket, self.prefix = split_s3_url(url)
        self._s3 = settings.client()
        self._max_index_bytes = max_index_bytes

    def _key(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def list_subdirs(self) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base, Delimiter="/"
        )
        subdirs = [
            p["Prefix"][len(base) :].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])
        ]
        return sorted(s for s in subdirs if self.read(f"{s}/{REPODATA}") is not None)

    def read(self, relpath: str) -> bytes | None:
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self._key(relpath))["Body"]
        except self._s3.exceptions.NoSuchKey:
            return None
        try:
            return read_capped(body, f"{self.label}/{relpath}", self._max_index_bytes)
        finally:
            body.close()

    @contextlib.contextmanager
    def stream(self, relpath: str, offset: int) -> Iterator[tuple[int, Body]]:
        extra = {"Range": f"bytes={offset}-"} if offset else {}
        body = self._s3.get_object(Bucket=self.bucket, Key=self._key(relpath), **extra)["Body"]
        try:
            yield offset, body
        finally:
            body.close()

    def close(self) -> None:
        pass


def open_source(url: str, s3: S3Settings, max_index_bytes: int = MAX_REPODATA_BYTES) -> Source:
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return HttpSource(url, max_index_bytes)
    if parsed.scheme == "s3":
        return S3Source(url, s3, max_index_bytes)
    if parsed.scheme == "file":
        return FileSource(Path(unquote(parsed.path)), max_index_bytes)
    if not parsed.scheme:
        return FileSource(Path(url), max_index_bytes)
    raise PascalForgeError(
        f"{redact_url(url)}: a mirror source is an http(s)://, file:// or s3:// channel URL"
    )


class Destination(Protocol):
    label: str

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the destination for this run alone; raises MirrorBusy naming the run that holds it."""
        ...

    def present(self, subdir: str) -> dict[str, int]:
        """Visible package files and their sizes."""
        ...

    def repodata(self, subdir: str) -> bytes | None: ...
    def has_sha256(self, subdir: str, name: str, sha256: str) -> bool:
        """Slow path: does the visible file hold exactly this content?"""
        ...

    def partial(self, subdir: str, name: str) -> Path: ...
    def publish_file(self, subdir: str, name: str, verified: Path, sha256: str) -> None: ...
    def publish_repodata(self, subdir: str, data: bytes) -> None:
        """Swap in `data` as the subdir's repodata.json, the derived indexes gone first."""
        ...


class MirrorBusy(MirrorDestinationError):
    """Another run holds the destination; two writers would mix their files."""


def readable_by_all(fd: int) -> None:
    """Give an open file the mode a new file would get (0644 under the usual umask), not 0600."""
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)


def write_atomically(path: Path, data: bytes) -> None:
    """Put `data` at `path` in one step: a reader sees the old file or the new one, never part of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; a channel is read by others (web servers, other users).
        readable_by_all(handle)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def partial_name(name: str) -> str:
    """The hidden name a download of `name` goes to; a hash where `.NAME.partial` is too long a name."""
    hidden = f".{name}{PARTIAL_SUFFIX}"
    if len(hidden.encode()) <= MAX_NAME_BYTES:
        return hidden
    return f".{hashlib.sha256(name.encode()).hexdigest()}{PARTIAL_SUFFIX}"


@contextlib.contextmanager
def locked(folder: Path, what: str) -> Iterator[None]:
    """An advisory lock (flock) on `folder`'s lock file, which holds the holder's PID.

    The kernel lets go of it when the holder dies, so a killed run never leaves the destination
    locked. The file stays: deleting it would let a third run lock a new file beside a held one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise MirrorBusy(
                "another mirror run is writing to the destination",
                [
                    f"{what}: locked by the run with PID {holder} ({path}); wait for it to end, or "
                    "stop it, and run again"
                ],
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _real_folder(folder: Path) -> Path:
    """`folder`, made if missing; a link there (planted, not made by us) is refused, never followed."""
    try:
        folder.mkdir(exist_ok=True)
        info = os.lstat(folder)
    except OSError as exc:
        raise MirrorDestinationError("cannot write the destination", [f"{folder}: {exc.strerror}"]) from exc
    if not stat.S_ISDIR(info.st_mode):
        raise MirrorDestinationError(
            "cannot write the destination",
            [f"{folder}: not a directory (a symbolic link?); the mirror follows no link it did not make"],
        )
    return folder


def _sha256_no_follow(path: Path) -> str | None:
    """sha256 of the regular file at `path`, or None where it is missing or a link."""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        digest = hashlib.sha256()
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DirectoryDestination:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return locked(self.root, self.label)

    def present(self, subdir: str) -> dict[str, int]:
        folder = self.root / subdir
        if not folder.is_dir():
            return {}
        found = {}
        with os.scandir(folder) as entries:
            for entry in entries:
                # Not following links: a link under a package's name is not the package.
                if PACKAGE_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                    found[entry.name] = entry.stat(follow_symlinks=False).st_size
        return found

    def repodata(self, subdir: str) -> bytes | None:
        try:
            return (self.root / subdir / REPODATA).read_bytes()
        except FileNotFoundError:
            return None

    def has_sha256(self, subdir: str, name: str, sha256: str) -> bool:
        return _sha256_no_follow(self.root / subdir / name) == sha256

    def partial(self, subdir: str, name: str) -> Path:
        return _real_folder(self.root / subdir) / partial_name(name)

    def publish_file(self, subdir: str, name: str, verified: Path, sha256: str) -> None:
        # rename replaces a link at the name itself, never what the link points to
        os.replace(verified, self.root / subdir / name)

    def publish_repodata(self, subdir: str, data: bytes) -> None:
        folder = _real_folder(self.root / subdir)  # also where nothing was fetched into it
        # Derived indexes first: clients prefer them, and until the new repodata.json is in,
        # an old one would list a replaced file under its old sha256.
        for derived in DERIVED_INDEXES:
            with contextlib.suppress(FileNotFoundError):
                (folder / derived).unlink()
        write_atomically(folder / REPODATA, data)


class S3Destination:
    """An S3 PUT is atomic per object, so verified files go up whole and repodata.json goes up last."""

    def __init__(self, url: str, settings: S3Settings, staging: Path) -> None:
        self.label = url.rstrip("/")
        self.bucket, self.prefix = split_s3_url(url)
        self._s3 = settings.client()
        self.staging = staging

    def _key(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def present(self, subdir: str) -> dict[str, int]:
        base = self._key(f"{subdir}/")
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base, Delimiter="/"
        )
        found = {}
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"][len(base) :]
                if PACKAGE_NAME.match(name):
                    found[name] = int(item["Size"])
        return found

    def repodata(self, subdir: str) -> bytes | None:
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=self._key(f"{subdir}/{REPODATA}"))[
                "Body"
            ].read()
        except self._s3.exceptions.NoSuchKey:
            return None

    def has_sha256(self, subdir: str, name: str, sha256: str) -> bool:
        head = self._s3.head_object(Bucket=self.bucket, Key=self._key(f"{subdir}/{name}"))
        return head.get("Metadata", {}).get("sha256") == sha256

    def lock(self) -> contextlib.AbstractContextManager[None]:
        # The partial files are local, so a lock on the staging folder keeps two runs on this
        # machine from writing the same one; runs on two machines must not share a prefix.
        return locked(self.staging, self.label)

    def partial(self, subdir: str, name: str) -> Path:
        self.staging.mkdir(parents=True, exist_ok=True)
        return _real_folder(self.staging / subdir) / partial_name(name)

    def publish_file(self, subdir: str, name: str, verified: Path, sha256: str) -> None:
        self._s3.upload_file(
            str(verified),
            self.bucket,
            self._key(f"{subdir}/{name}"),
            ExtraArgs={"Metadata": {"sha256": sha256}},
        )
        verified.unlink()

    def publish_repodata(self, subdir: str, data: bytes) -> None:
        for derived in DERIVED_INDEXES:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(f"{subdir}/{derived}"))
        self._s3.put_object(
            Bucket=self.bucket,
            Key=self._key(f"{subdir}/{REPODATA}"),
            Body=data,
            ContentType="application/json",
        )


def open_destination(url: str, s3: S3Settings, staging: Path | None) -> Destination:
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        bucket, prefix = split_s3_url(url)
        default_staging = Path(tempfile.gettempdir()) / "pascal-forge-mirror" / bucket / prefix
        return S3Destination(url, s3, staging or default_staging)
    if parsed.scheme == "file":
        return DirectoryDestination(Path(unquote(parsed.path)))
    if not parsed.scheme:
        return DirectoryDestination(Path(url))
    raise PascalForgeError(f"{url}: a mirror destination is a directory, file:// or s3:// URL")
