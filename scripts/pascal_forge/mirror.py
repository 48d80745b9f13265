"""Copy a conda channel (http(s)://, file://, s3://) to a directory or an S3 bucket, trusting nothing.

A mirror run has four phases, and only the last one changes what a reader of the destination sees:
1. read and check every source repodata.json (names, sha256, size): any bad input stops the run;
2. plan: which files the destination lacks (unchanged files are not fetched again);
3. fetch into hidden partial files, bounded in parallel, each checked against the sha256 and size of
   the source repodata before it gets its visible name (a partial left by an interrupted run resumes);
4. if every file arrived intact, swap each subdir's repodata.json in atomically.
A failure in phases 1-3 leaves the destination's repodata, and so what installs see, as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from .errors import PascalForgeError
from .rattler_run import run_rattler

REPODATA = "repodata.json"
# Indexes derived from repodata.json; a copy left over from an older state would contradict the new one.
DERIVED_INDEXES = (
    "repodata.json.zst",
    "repodata.json.bz2",
    "repodata_shards.msgpack.zst",
    "current_repodata.json",
)
PARTIAL_SUFFIX = ".partial"
CHUNK = 1 << 20
HTTP_TIMEOUT = 60.0
PACKAGE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+!-]*\.(conda|tar\.bz2)$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
SUBDIR_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# Probed when an HTTP source does not list its subdirs in channeldata.json.
KNOWN_SUBDIRS = (
    "noarch",
    "linux-64",
    "linux-aarch64",
    "linux-ppc64le",
    "linux-s390x",
    "linux-32",
    "linux-armv7l",
    "osx-64",
    "osx-arm64",
    "win-64",
    "win-32",
    "win-arm64",
    "emscripten-wasm32",
    "wasi-wasm32",
)


class MirrorError(PascalForgeError):
    """The mirror refused the source or could not fetch it intact; the destination is unchanged."""

    def __init__(self, headline: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{headline}; the destination keeps its last good state:\n{lines}")


class MirrorInterrupted(MirrorError):
    """The run was stopped (Ctrl-C); verified files stay, partial ones resume on the next run."""


@dataclass(frozen=True)
class PackageEntry:
    """One package file as the source repodata describes it."""

    subdir: str
    filename: str
    sha256: str
    size: int
    origin: int = 0  # which channel: 0 is the source, 1.. the --with channels of a closure

    @property
    def label(self) -> str:
        return f"{self.subdir}/{self.filename}"


@dataclass
class SubdirIndex:
    """A checked source repodata.json: its raw bytes (kept verbatim when nothing is filtered) and entries."""

    subdir: str
    raw: bytes
    data: dict[str, Any]
    entries: dict[str, PackageEntry]


def merged_repodata(parts: Sequence[tuple[SubdirIndex, set[str] | None]]) -> bytes:
    """The destination's repodata for one subdir: the source's bytes verbatim when it is copied whole,
    else the records of the chosen files of every channel, in one document."""
    if len(parts) == 1 and parts[0][1] is None:
        return parts[0][0].raw
    merged = dict(parts[0][0].data)
    for key in ("packages", "packages.conda"):
        merged[key] = {}
        for index, names in parts:
            packages = index.data.get(key) or {}
            merged[key].update({n: r for n, r in packages.items() if names is None or n in names})
    return json.dumps(merged, indent=1, sort_keys=True).encode()


@dataclass
class MirrorReport:
    """What a run did; `fetched` lists files transferred, `kept` counts files already present."""

    subdirs: list[str]
    selected: list[PackageEntry]
    fetched: list[str] = field(default_factory=list)
    fetched_bytes: int = 0
    kept: int = 0
    seconds: float = 0.0

    @property
    def bytes_per_second(self) -> float:
        return self.fetched_bytes / self.seconds if self.seconds else 0.0


class Progress(Protocol):
    def start(self, files: int, total_bytes: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, label: str) -> None: ...


class SilentProgress:
    def start(self, files: int, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def file_done(self, label: str) -> None:
        pass


class RichProgress:
    """A terminal progress bar with bytes, rate and time left (on stderr, so stdout stays parsable)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task: Any = None
        self._files = 0
        self._done = 0

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def start(self, files: int, total_bytes: int) -> None:
        self._files = files
        self._task = self._bar.add_task(f"0/{files} files", total=total_bytes)

    def advance(self, nbytes: int) -> None:
        self._bar.advance(self._task, nbytes)

    def file_done(self, label: str) -> None:
        self._done += 1
        self._bar.update(self._task, description=f"{self._done}/{self._files} files")


@dataclass(frozen=True)
class S3Settings:
    """Where S3 lives; credentials come from the standard AWS chain (env, config files), never from here."""

    endpoint_url: str | None = None
    region: str | None = None

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        endpoint = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        region = region or "us-east-1"
        # Self-hosted S3 (MinIO, moto, Ceph) rarely resolves bucket subdomains.
        config = Config(s3={"addressing_style": "path"} if endpoint else {}, max_pool_connections=32)
        return boto3.client("s3", endpoint_url=endpoint, region_name=region, config=config)


@dataclass(frozen=True)
class ClosureRequest:
    """Mirror only what installing `specs` needs on one machine (platform, CUDA driver, Python)."""

    specs: list[str]
    platform: str = "linux-64"
    cuda: str | None = None
    python: str | None = None
    glibc: str = "2.28"


def split_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if not parsed.netloc:
        raise PascalForgeError(f"{url}: an S3 channel URL looks like s3://bucket/optional/prefix")
    return parsed.netloc, parsed.path.strip("/")


# ---------------------------------------------------------------------------------------------- sources


class Source(Protocol):
    label: str

    def list_subdirs(self) -> list[str]: ...
    def read(self, relpath: str) -> bytes | None: ...
    def stream(
        self, relpath: str, offset: int
    ) -> contextlib.AbstractContextManager[tuple[int, Iterator[bytes]]]:
        """Yield (offset honoured, chunks): 0 when the source cannot resume."""
        ...

    def close(self) -> None: ...


class HttpSource:
    """Plain urllib: it handles proxies and redirects, and `readinto` a reused buffer keeps the
    per-byte cost low enough that sha256, not Python, bounds the rate (httpx's chunk iterator ran
    at half the rate on loopback)."""

    def __init__(self, url: str) -> None:
        self.label = url.rstrip("/")
        self._opener = urllib.request.build_opener()
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
    def stream(self, relpath: str, offset: int) -> Iterator[tuple[int, Iterator[memoryview]]]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self._open(relpath, headers) as response:
            honoured = offset if offset and response.status == 206 else 0
            yield honoured, _read_into_buffer(response)

    def close(self) -> None:
        pass


def _read_into_buffer(response: Any) -> Iterator[memoryview]:
    """Chunks of one reused buffer: the consumer must use each before asking for the next."""
    buffer = memoryview(bytearray(CHUNK))
    while True:
        count = response.readinto(buffer)
        if not count:
            return
        yield buffer[:count]


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
    def stream(self, relpath: str, offset: int) -> Iterator[tuple[int, Iterator[bytes]]]:
        with open(self.root / relpath, "rb") as handle:
            handle.seek(offset)
            yield offset, iter(lambda: handle.read(CHUNK), b"")

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
    def stream(self, relpath: str, offset: int) -> Iterator[tuple[int, Iterator[bytes]]]:
        extra = {"Range": f"bytes={offset}-"} if offset else {}
        body = self._s3.get_object(Bucket=self.bucket, Key=self._key(relpath), **extra)["Body"]
        try:
            yield offset, body.iter_chunks(CHUNK)
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


# ------------------------------------------------------------------------------------------ destinations


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
        return file_sha256(self.root / subdir / name) == sha256

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


# ----------------------------------------------------------------------------------------------- checks


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def unsafe_name_reason(name: object) -> str | None:
    """Why a file name from a repodata must not become a path on our side, or None when it is safe."""
    if not isinstance(name, str):
        return "is not a string"
    if "/" in name or "\\" in name or "\x00" in name:
        return "contains a path separator"
    if ".." in name:
        return "contains '..'"
    if not PACKAGE_NAME.match(name):
        return "is not a .conda or .tar.bz2 package file name"
    return None


def parse_repodata(
    subdir: str, raw: bytes, source_label: str, origin: int = 0
) -> tuple[SubdirIndex | None, list[str]]:
    where = f"{source_label}/{subdir}/{REPODATA}"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, [f"{where} does not parse as JSON ({exc}); fix or re-index the source channel"]
    if not isinstance(data, dict):
        return None, [f"{where} is not a JSON object; fix or re-index the source channel"]
    problems: list[str] = []
    entries: dict[str, PackageEntry] = {}
    for key in ("packages", "packages.conda"):
        packages = data.get(key) or {}
        if not isinstance(packages, dict):
            problems.append(f"{where}: '{key}' is not an object")
            continue
        for name, record in packages.items():
            reason = unsafe_name_reason(name)
            if reason:
                problems.append(f"{subdir}/{name!r}: file name {reason}; refusing to write it anywhere")
                continue
            sha256 = record.get("sha256") if isinstance(record, dict) else None
            size = record.get("size") if isinstance(record, dict) else None
            if not isinstance(sha256, str) or not SHA256.match(sha256):
                problems.append(f"{subdir}/{name}: no valid sha256 in the source repodata to check against")
                continue
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                problems.append(f"{subdir}/{name}: no valid size in the source repodata to check against")
                continue
            entries[name] = PackageEntry(subdir, name, sha256, size, origin)
    base_url = (data.get("info") or {}).get("base_url") if isinstance(data.get("info"), dict) else None
    if base_url:
        problems.append(f"{where}: packages live under info.base_url {base_url}; mirror that instead")
    return SubdirIndex(subdir, raw, data, entries), problems


def read_source(
    source: Source, subdirs: Sequence[str] | None, origin: int = 0, explicit: bool | None = None
) -> dict[str, SubdirIndex]:
    """Phase 1: every requested subdir's repodata, checked; raises MirrorError listing every problem.

    With `explicit`, a requested subdir the source lacks is a problem (default: when subdirs are named).
    """
    explicit = bool(subdirs) if explicit is None else explicit
    wanted = list(subdirs) if subdirs else source.list_subdirs()
    problems: list[str] = []
    indexes: dict[str, SubdirIndex] = {}
    for subdir in wanted:
        if not SUBDIR_NAME.match(subdir):
            problems.append(f"{subdir!r}: not a subdir name (like linux-64 or noarch)")
            continue
        try:
            raw = source.read(f"{subdir}/{REPODATA}")
        except (OSError, http.client.HTTPException) as exc:
            problems.append(f"{source.label}/{subdir}/{REPODATA}: could not be read ({exc})")
            continue
        if raw is None:
            if explicit:
                problems.append(f"{source.label}/{subdir}/{REPODATA}: not found; is {subdir} a subdir of it?")
            continue
        index, found = parse_repodata(subdir, raw, source.label, origin)
        problems.extend(found)
        if index:
            indexes[subdir] = index
    if problems:
        raise MirrorError(f"refusing the source channel {source.label}", problems)
    if not indexes:
        raise MirrorError(f"nothing to mirror from {source.label}", ["no subdir with a repodata.json found"])
    return indexes


# ---------------------------------------------------------------------------------------------- closure


def solve_closure(
    channels: Sequence[dict[str, SubdirIndex]], request: ClosureRequest
) -> set[tuple[int, str, str]]:
    """(channel, subdir, file name) of every package that installing the request needs, solved by
    rattler over the channels in priority order (strict: a name found in one hides the later ones)."""
    from rattler import BuildString, Channel, GenericVirtualPackage, PackageName, SparseRepoData, Version
    from rattler.exceptions import SolverError
    from rattler.solver import solve_with_sparse_repodata

    virtual = [
        ("__unix", "0", "0"),
        ("__linux", "5.10", "0"),
        ("__glibc", request.glibc, "0"),
        ("__archspec", "1", "x86_64"),
    ]
    if request.cuda:
        virtual.append(("__cuda", request.cuda, "0"))
    constraints = []
    if request.cuda:
        constraints.append(f"cuda-version {request.cuda}.*")
    if request.python:
        constraints.append(f"python {request.python}.*")
    with tempfile.TemporaryDirectory(prefix="pascal-forge-closure-") as scratch:
        sparse = []
        for origin, indexes in enumerate(channels):
            channel = Channel((Path(scratch) / str(origin)).as_uri())
            for subdir in (request.platform, "noarch"):
                if subdir in indexes:
                    path = Path(scratch) / str(origin) / subdir / REPODATA
                    path.parent.mkdir(parents=True)
                    path.write_bytes(indexes[subdir].raw)
                    sparse.append(SparseRepoData(channel, subdir, path))
        if not sparse:
            raise PascalForgeError(f"no channel has {request.platform} or noarch to solve the closure from")
        packages = [
            GenericVirtualPackage(PackageName(name), Version(version), BuildString(build))
            for name, version, build in virtual
        ]
        try:
            records = run_rattler(
                solve_with_sparse_repodata(
                    request.specs, sparse, virtual_packages=packages, constraints=constraints
                )
            )
        except SolverError as exc:
            raise PascalForgeError(
                f"cannot solve {' '.join(request.specs)} from the source"
                f"{' and the --with channels' if len(channels) > 1 else ''} (constraints: "
                f"{', '.join(constraints) or 'none'}): {exc}. A package from another channel (conda-forge) "
                "needs that channel passed with --with"
            ) from exc
        base = Path(scratch).as_uri()
    return {(int(r.url[len(base) + 1 :].split("/")[0]), r.subdir, r.file_name) for r in records}


# ------------------------------------------------------------------------------------------------ fetch


class _Stopped(Exception):
    pass


@dataclass
class _Fetcher:
    sources: Sequence[Source]
    destination: Destination
    progress: Progress
    stop: threading.Event
    lock: threading.Lock = field(default_factory=threading.Lock)
    fetched_bytes: int = 0

    def fetch(self, entry: PackageEntry) -> Path:
        """Download into a hidden partial file and check it; return the verified file, raise on damage."""
        partial = self.destination.partial(entry.subdir, entry.filename)
        have = partial.stat().st_size if partial.exists() else 0
        if have > entry.size:
            partial.unlink()
            have = 0
        digest = hashlib.sha256()
        if have:
            with open(partial, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
        if have < entry.size or not partial.exists():
            have, digest = self._download(entry, partial, have, digest)
        if have != entry.size:
            raise MirrorError(
                "download cut short",
                [f"{entry.label}: got {have} of {entry.size} bytes (truncated); run again to resume it"],
            )
        actual = digest.hexdigest()
        if actual != entry.sha256:
            partial.unlink()
            raise MirrorError(
                "checksum mismatch",
                [f"{entry.label}: sha256 {actual} does not match the source repodata's {entry.sha256}"],
            )
        return partial

    def _download(self, entry: PackageEntry, partial: Path, have: int, digest: Any) -> tuple[int, Any]:
        receiving = False
        try:
            with self.sources[entry.origin].stream(entry.label, have) as (honoured, chunks):
                receiving = True
                if honoured != have:  # the source cannot resume: start over
                    have, digest = 0, hashlib.sha256()
                with open(partial, "ab" if have else "wb") as out:
                    for chunk in chunks:
                        if self.stop.is_set():
                            raise _Stopped(entry.label)
                        if have + len(chunk) > entry.size:
                            raise MirrorError(
                                "download too long",
                                [f"{entry.label}: the source sends more than its {entry.size} bytes"],
                            )
                        out.write(chunk)
                        digest.update(chunk)
                        have += len(chunk)
                        with self.lock:
                            self.fetched_bytes += len(chunk)
                        self.progress.advance(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, urllib.error.URLError) or not receiving:
                raise MirrorError("download failed", [f"{entry.label}: {exc}"]) from exc
            # A connection cut mid-body: what arrived stays in the partial file for the next run.
            return have, digest
        except Exception as exc:
            if type(exc).__module__.startswith(("botocore", "urllib3")):
                raise MirrorError("download failed", [f"{entry.label}: {exc}"]) from exc
            raise
        return have, digest


# ------------------------------------------------------------------------------------------------- plan


def _known_sha256(repodata: bytes | None) -> dict[str, str]:
    """name -> sha256 the destination's current repodata promises (trusted: we checked them on arrival)."""
    if not repodata:
        return {}
    try:
        data = json.loads(repodata)
        return {
            name: record["sha256"]
            for key in ("packages", "packages.conda")
            for name, record in (data.get(key) or {}).items()
            if isinstance(record, dict) and isinstance(record.get("sha256"), str)
        }
    except (ValueError, AttributeError):
        return {}


def plan_transfers(
    destination: Destination, entries: Sequence[PackageEntry], verify_existing: bool = False
) -> tuple[list, list, list]:
    """Split entries into (keep, fetch-new, fetch-replacing): replacing ones change a visible file."""
    keep: list[PackageEntry] = []
    new: list[PackageEntry] = []
    replacing: list[PackageEntry] = []
    by_subdir: dict[str, list[PackageEntry]] = {}
    for entry in entries:
        by_subdir.setdefault(entry.subdir, []).append(entry)
    for subdir, subdir_entries in by_subdir.items():
        present = destination.present(subdir)
        promised = {} if verify_existing else _known_sha256(destination.repodata(subdir))
        for entry in subdir_entries:
            size = present.get(entry.filename)
            if size is None:
                new.append(entry)
            elif size == entry.size and (
                promised.get(entry.filename) == entry.sha256
                or destination.has_sha256(subdir, entry.filename, entry.sha256)
            ):
                keep.append(entry)
            else:
                replacing.append(entry)
    return keep, new, replacing


# ------------------------------------------------------------------------------------------------- run


def mirror_channel(
    source_url: str,
    destination_url: str,
    *,
    subdirs: Sequence[str] | None = None,
    closure: ClosureRequest | None = None,
    with_channels: Sequence[str] = (),
    jobs: int = 4,
    progress: Progress | None = None,
    s3: S3Settings | None = None,
    staging: Path | None = None,
    verify_existing: bool = False,
) -> MirrorReport:
    """Mirror `source_url` into `destination_url`; raises MirrorError with the destination unchanged.

    With `closure`, only what installing its specs needs is copied; `with_channels` (say, a
    conda-forge mirror) are solved together with the source, after it, and the packages the
    solution takes from them land in the same destination, so it installs on its own.
    """
    if jobs < 1:
        raise PascalForgeError(f"--jobs {jobs}: at least one download at a time is needed")
    if with_channels and not closure:
        raise PascalForgeError("--with adds channels to a closure's solve; add --closure SPEC")
    progress = progress or SilentProgress()
    s3 = s3 or S3Settings()
    started = time.monotonic()
    sources = [open_source(url, s3) for url in (source_url, *with_channels)]
    try:
        if closure and not subdirs:
            subdirs = [closure.platform, "noarch"]
        channels = [read_source(sources[0], subdirs)] + [
            read_source(source, subdirs, origin, explicit=False)
            for origin, source in enumerate(sources[1:], start=1)
        ]
        chosen = solve_closure(channels, closure) if closure else None
        selected, parts = _select(channels, chosen)
        destination = open_destination(destination_url, s3, staging)
        report = MirrorReport(subdirs=sorted(parts), selected=selected)
        keep, new, replacing = plan_transfers(destination, selected, verify_existing)
        report.kept = len(keep)
        verified = _fetch_all(sources, destination, new, set(replacing), jobs, progress, report)
        # Every file is intact: make replacements visible, then swap each repodata in.
        for entry in replacing:
            destination.publish_file(entry.subdir, entry.filename, verified[entry], entry.sha256)
        for subdir in sorted(parts, key=lambda name: name == "noarch"):
            destination.publish_repodata(subdir, merged_repodata(parts[subdir]))
    finally:
        for source in sources:
            source.close()
    report.seconds = time.monotonic() - started
    return report


def _select(
    channels: Sequence[dict[str, SubdirIndex]], chosen: set[tuple[int, str, str]] | None
) -> tuple[list[PackageEntry], dict[str, list[tuple[SubdirIndex, set[str] | None]]]]:
    """The entries to copy, and per subdir which records of which channel its repodata lists."""
    selected: dict[tuple[str, str], PackageEntry] = {}
    parts: dict[str, list[tuple[SubdirIndex, set[str] | None]]] = {}
    problems = []
    for origin, indexes in enumerate(channels):
        for subdir, index in indexes.items():
            names = None if chosen is None else {n for o, s, n in chosen if (o, s) == (origin, subdir)}
            if names is not None and not names and origin:
                continue
            parts.setdefault(subdir, []).append((index, names))
            for entry in index.entries.values():
                if names is not None and entry.filename not in names:
                    continue
                earlier = selected.setdefault((subdir, entry.filename), entry)
                if earlier.sha256 != entry.sha256:
                    problems.append(f"{entry.label}: two channels hold different files under this name")
    if problems:
        raise MirrorError("the channels disagree", problems)
    return list(selected.values()), parts


def _fetch_all(
    sources: Sequence[Source],
    destination: Destination,
    new: list[PackageEntry],
    replacing: set[PackageEntry],
    jobs: int,
    progress: Progress,
    report: MirrorReport,
) -> dict[PackageEntry, Path]:
    """Phase 3. New files get their visible name at once; replacements wait for the commit phase."""
    entries = new + sorted(replacing, key=lambda e: e.label)
    progress.start(len(entries), sum(e.size for e in entries))
    fetcher = _Fetcher(sources, destination, progress, threading.Event())
    verified: dict[PackageEntry, Path] = {}
    problems: list[str] = []
    in_flight: dict[Future, PackageEntry] = {}

    def settle(future: Future, entry: PackageEntry) -> None:
        try:
            path = future.result()
        except MirrorError as exc:
            problems.extend(exc.problems)
            return
        except _Stopped:
            return
        if entry in replacing:
            verified[entry] = path
        else:
            destination.publish_file(entry.subdir, entry.filename, path, entry.sha256)
        report.fetched.append(entry.label)
        progress.file_done(entry.label)

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mirror")
    try:
        pending = iter(entries)
        for entry in pending:
            in_flight[pool.submit(fetcher.fetch, entry)] = entry
            while len(in_flight) >= jobs * 2:
                done, _ = wait(in_flight, timeout=0.5, return_when=FIRST_EXCEPTION)
                for future in done:
                    settle(future, in_flight.pop(future))
        while in_flight:
            done, _ = wait(in_flight, timeout=0.5, return_when=FIRST_EXCEPTION)
            for future in done:
                settle(future, in_flight.pop(future))
    except KeyboardInterrupt:
        fetcher.stop.set()
        stopped = sorted(entry.label for future, entry in in_flight.items() if not future.done())
        pool.shutdown(wait=True, cancel_futures=True)
        raise MirrorInterrupted(
            "interrupted",
            [f"{label}: stopped mid-transfer; its partial file resumes on the next run" for label in stopped]
            or ["stopped between files; the next run continues where this one ended"],
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report.fetched_bytes = fetcher.fetched_bytes
    if problems:
        origins = ", ".join(source.label for source in sources)
        raise MirrorError(f"{len(problems)} file(s) did not arrive intact from {origins}", problems)
    return verified
