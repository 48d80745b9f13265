"""The upstream package index (PyPI, or a mirror of it): releases, their files, their metadata.

Everything goes through the `pypi-simple` client. `$PASCAL_FORGE_INDEX_URL` points it at
another simple index (a company mirror, or a test server on 127.0.0.1); without it the
client's own default endpoint is used, so no host name is written here.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import HeaderParser

from packaging.version import InvalidVersion, Version
from pypi_simple import PYPI_SIMPLE_ENDPOINT, DistributionPackage, NoSuchProjectError, PyPISimple

from ..errors import PascalForgeError
from ..util import one_line

INDEX_ENV = "PASCAL_FORGE_INDEX_URL"
# A wheel's central directory and its METADATA fit in a few reads of this size.
_RANGE_CHUNK = 1 << 16


class PackageIndexError(PascalForgeError):
    """The package index cannot be reached, or does not have what was asked for."""


class IndexUnreachable(PackageIndexError):
    """The index did not answer: DNS, refused connection, TLS or HTTP error."""


def index_url() -> str:
    """The simple index every upstream file comes from: `$PASCAL_FORGE_INDEX_URL` or PyPI's."""
    return os.environ.get(INDEX_ENV) or PYPI_SIMPLE_ENDPOINT


@contextmanager
def index_client() -> Iterator[PyPISimple]:
    with PyPISimple(endpoint=index_url()) as client:
        yield client


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release as the index lists it."""

    project: str
    version: str
    filename: str
    sha256: str
    package: DistributionPackage


def project_files(client: PyPISimple, project: str) -> list[ReleaseFile]:
    """Every non-yanked file of `project` that names its version, as the index lists it."""
    try:
        page = client.get_project_page(project)
    except NoSuchProjectError as exc:
        raise PackageIndexError(f"{index_url()}: has no project {project!r}") from exc
    except Exception as exc:  # requests' connection, TLS and HTTP errors
        raise IndexUnreachable(f"cannot reach the package index {index_url()}: {_reason(exc)}") from exc
    return [
        ReleaseFile(project, p.version, p.filename, p.digests.get("sha256", ""), p)
        for p in page.packages
        if p.version and not p.is_yanked
    ]


def releases(files: list[ReleaseFile]) -> list[str]:
    """Final release versions (no pre-, dev- or unparsable ones), oldest first."""
    found = set()
    for file in files:
        try:
            version = Version(file.version)
        except InvalidVersion:
            continue
        if not version.is_prerelease and not version.is_devrelease:
            found.add(version)
    return [str(v) for v in sorted(found)]


def newest_release(files: list[ReleaseFile], project: str) -> str:
    found = releases(files)
    if not found:
        raise PackageIndexError(f"{index_url()}: project {project!r} lists no final release")
    return found[-1]


def files_of(files: list[ReleaseFile], project: str, version: str) -> list[ReleaseFile]:
    """The files of one release, or an error naming the newest releases the index does have."""
    chosen = [f for f in files if _same_version(f.version, version)]
    if not chosen:
        known = releases(files)[-5:]
        raise PackageIndexError(
            f"{index_url()}: {project} has no release {version} "
            f"(newest: {', '.join(known) or 'none'}); check the version"
        )
    return chosen


def metadata_file(files: list[ReleaseFile]) -> ReleaseFile | None:
    """The file whose metadata stands for the release on Linux x86-64: a wheel, else the sdist."""
    wheels = [f for f in files if f.filename.endswith(".whl")]
    for wanted in ("manylinux", "linux"):
        linux = [f for f in wheels if wanted in f.filename and "x86_64" in f.filename]
        if linux:
            # One Python's wheel is enough: the requirements do not depend on it.
            return sorted(linux, key=lambda f: f.filename)[0]
    generic = [f for f in wheels if f.filename.endswith("-any.whl")]
    if generic:
        return generic[0]
    return next((f for f in files if f.filename.endswith((".tar.gz", ".zip"))), None)


def requirement_lines(client: PyPISimple, file: ReleaseFile) -> list[str]:
    """The `Requires-Dist` lines of a release file, read without downloading a whole wheel.

    The index's PEP 658 metadata when it offers it; else the wheel's METADATA member through
    HTTP range reads (a torch wheel is ~900 MB, its METADATA a few KB); else the whole file.
    """
    try:
        if file.package.has_metadata:
            text = client.get_package_metadata(file.package)
        elif file.filename.endswith(".whl"):
            text = _wheel_metadata(client, file)
        else:
            return []
    except PackageIndexError:
        raise
    except Exception as exc:
        raise IndexUnreachable(
            f"cannot read the metadata of {file.filename} from {index_url()}: {_reason(exc)}"
        ) from exc
    headers = HeaderParser().parsestr(text)
    return [" ".join(line.split()) for line in headers.get_all("Requires-Dist") or []]


def _wheel_metadata(client: PyPISimple, file: ReleaseFile) -> str:
    remote = io.BufferedReader(_RemoteFile(client, file.package.url), buffer_size=_RANGE_CHUNK)
    with zipfile.ZipFile(remote) as wheel:
        names = [n for n in wheel.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if not names:
            raise PackageIndexError(f"{file.filename}: a wheel without a .dist-info/METADATA")
        return wheel.read(names[0]).decode("utf-8")


def read_wheel_member(client: PyPISimple, file: ReleaseFile, member: str) -> str:
    """One text file of a remote wheel, read through HTTP range requests, not the whole wheel."""
    remote = io.BufferedReader(_RemoteFile(client, file.package.url), buffer_size=_RANGE_CHUNK)
    with zipfile.ZipFile(remote) as wheel:
        return wheel.read(member).decode("utf-8")


class _RemoteFile(io.RawIOBase):
    """A read-only, seekable view of a remote file through HTTP range requests.

    A server that ignores ranges (answers 200) is read whole, once, into memory: that is
    only the small files of a local test index, never a real wheel.
    """

    def __init__(self, client: PyPISimple, url: str) -> None:
        self._session = client.s
        self._url = url
        self._position = 0
        self._whole: bytes | None = None
        head = self._session.head(url, allow_redirects=True, timeout=60)
        head.raise_for_status()
        length = head.headers.get("Content-Length")
        if length is None or head.headers.get("Accept-Ranges", "").lower() != "bytes":
            self._load_whole()
        else:
            self._size = int(length)

    def _load_whole(self) -> None:
        answer = self._session.get(self._url, timeout=600)
        answer.raise_for_status()
        self._whole = answer.content
        self._size = len(self._whole)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int = -1) -> bytes:
        end = self._size if size < 0 else min(self._size, self._position + size)
        if end <= self._position:
            return b""
        if self._whole is not None:
            data = self._whole[self._position : end]
        else:
            answer = self._session.get(
                self._url, headers={"Range": f"bytes={self._position}-{end - 1}"}, timeout=120
            )
            answer.raise_for_status()
            data = answer.content
            if answer.status_code != 206:
                # The server sent the whole file after all: keep it and slice.
                self._whole = data
                self._size = len(data)
                data = data[self._position : end]
        self._position += len(data)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests error, in one line (not the whole retry chain)."""
    text = one_line(exc)
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if errno:
        return errno.group(0).strip()
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status:
        return f"HTTP {status}"
    return text or type(exc).__name__
