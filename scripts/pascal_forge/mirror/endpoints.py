"""Where a mirror reads from (HTTP, file, S3) and writes to (a directory or S3)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import ssl
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from ..errors import PascalForgeError
from ..sources import sha256_of
from .model import (
    DERIVED_INDEXES,
    HTTP_TIMEOUT,
    KNOWN_SUBDIRS,
    PACKAGE_NAME,
    PARTIAL_SUFFIX,
    REPODATA,
    S3Settings,
    split_s3_url,
)


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


class HttpSource:
    """Plain urllib: it handles proxies and redirects, and its `readinto` fills the mirror's own
    buffers, so the per-byte cost stays low enough that sha256, not Python, bounds the rate
    (httpx's chunk iterator ran at half the rate on loopback)."""

    def __init__(self, url: str) -> None:
        self.label = url.rstrip("/")
        self._opener = urllib.request.build_opener(_SharedTLSContext())
        self._opener.addheaders = [("User-Agent", "pascal-forge-mirror"), ("Accept-Encoding", "identity")]

    def _open(self, relpath: str, headers: dict[str, str]) -> Any:
        request = urllib.request.Request(f"{self.label}/{relpath}", headers=headers)
        return self._opener.open(request, timeout=HTTP_TIMEOUT)

    def list_subdirs(self) -> list[str]:
        channeldata = self.read("channeldata.json")
        if channeldata:
            with contextlib.suppress(ValueError, AttributeError):
                subdirs = json.loads(channeldata).get("subdirs")
                if isinstance(subdirs, list) and subdirs:
                    return [s for s in subdirs if isinstance(s, str)]
        return list(KNOWN_SUBDIRS)

    def read(self, relpath: str) -> bytes | None:
        try:
            with self._open(relpath, {}) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
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
    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def list_subdirs(self) -> list[str]:
        if not self.root.is_dir():
            raise PascalForgeError(f"source channel {self.root} is not a directory")
        return sorted(p.name for p in self.root.iterdir() if (p / REPODATA).is_file())

    def read(self, relpath: str) -> bytes | None:
        try:
            return (self.root / relpath).read_bytes()
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
    def __init__(self, url: str, settings: S3Settings) -> None:
        self.label = url.rstrip("/")
        self.bucket, self.prefix = split_s3_url(url)
        self._s3 = settings.client()

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
            return self._s3.get_object(Bucket=self.bucket, Key=self._key(relpath))["Body"].read()
        except self._s3.exceptions.NoSuchKey:
            return None

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


def open_source(url: str, s3: S3Settings) -> Source:
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return HttpSource(url)
    if parsed.scheme == "s3":
        return S3Source(url, s3)
    if parsed.scheme == "file":
        return FileSource(Path(unquote(parsed.path)))
    if not parsed.scheme:
        return FileSource(Path(url))
    raise PascalForgeError(f"{url}: a mirror source is an http(s)://, file:// or s3:// channel URL")


class Destination(Protocol):
    label: str

    def present(self, subdir: str) -> dict[str, int]:
        """Visible package files and their sizes."""
        ...

    def repodata(self, subdir: str) -> bytes | None: ...
    def has_sha256(self, subdir: str, name: str, sha256: str) -> bool:
        """Slow path: does the visible file hold exactly this content?"""
        ...

    def partial(self, subdir: str, name: str) -> Path: ...
    def publish_file(self, subdir: str, name: str, verified: Path, sha256: str) -> None: ...
    def publish_repodata(self, subdir: str, data: bytes) -> None: ...


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; a channel is read by others (web servers, other users).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


class DirectoryDestination:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def present(self, subdir: str) -> dict[str, int]:
        folder = self.root / subdir
        if not folder.is_dir():
            return {}
        return {
            p.name: p.stat().st_size for p in folder.iterdir() if PACKAGE_NAME.match(p.name) and p.is_file()
        }

    def repodata(self, subdir: str) -> bytes | None:
        try:
            return (self.root / subdir / REPODATA).read_bytes()
        except FileNotFoundError:
            return None

    def has_sha256(self, subdir: str, name: str, sha256: str) -> bool:
        return sha256_of(self.root / subdir / name) == sha256

    def partial(self, subdir: str, name: str) -> Path:
        folder = self.root / subdir
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f".{name}{PARTIAL_SUFFIX}"

    def publish_file(self, subdir: str, name: str, verified: Path, sha256: str) -> None:
        os.replace(verified, self.root / subdir / name)

    def publish_repodata(self, subdir: str, data: bytes) -> None:
        _write_atomically(self.root / subdir / REPODATA, data)
        for derived in DERIVED_INDEXES:
            with contextlib.suppress(FileNotFoundError):
                (self.root / subdir / derived).unlink()


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

    def partial(self, subdir: str, name: str) -> Path:
        folder = self.staging / subdir
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f".{name}{PARTIAL_SUFFIX}"

    def publish_file(self, subdir: str, name: str, verified: Path, sha256: str) -> None:
        self._s3.upload_file(
            str(verified),
            self.bucket,
            self._key(f"{subdir}/{name}"),
            ExtraArgs={"Metadata": {"sha256": sha256}},
        )
        verified.unlink()

    def publish_repodata(self, subdir: str, data: bytes) -> None:
        self._s3.put_object(
            Bucket=self.bucket,
            Key=self._key(f"{subdir}/{REPODATA}"),
            Body=data,
            ContentType="application/json",
        )
        for derived in DERIVED_INDEXES:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(f"{subdir}/{derived}"))


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
