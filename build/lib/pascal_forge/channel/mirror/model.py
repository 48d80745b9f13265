"""The data a mirror run works with: entries, reports, settings, progress and errors."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlparse

from ...errors import PascalForgeError

REPODATA = "repodata.json"
# Indexes derived from repodata.json; a copy left over from an older state would contradict the new one.
DERIVED_INDEXES = (
    "repodata.json.zst",
    "repodata.json.bz2",
    "repodata_shards.msgpack.zst",
    "current_repodata.json",
)
PARTIAL_SUFFIX = ".partial"
# One writer per destination: a second run finds this file locked and names the holder's PID.
LOCK_NAME = ".pascal-forge-mirror.lock"
# The longest file name Linux, macOS and Windows file systems take, in bytes.
MAX_NAME_BYTES = 255
# conda-forge's largest repodata.json (linux-64) is about 300 MB; anything much past that is a
# server streaming without end, and would take memory without bound.
MAX_REPODATA_BYTES = 1 << 30
CHUNK = 1 << 20
HTTP_TIMEOUT = 60.0
# \Z, not $: `$` also matches before a final newline, and "x.conda\n" is not a package name.
PACKAGE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+!-]*\.(conda|tar\.bz2)\Z")
SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
SUBDIR_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\Z")
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


class MirrorDestinationError(MirrorError):
    """The destination refused a write (disk full, read-only, permissions): no other file can land."""


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
