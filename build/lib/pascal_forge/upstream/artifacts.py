"""Upstream artifacts from PyPI (wheels, sdists), fetched once and cached by sha256.

Patch checks and compile suites run against the real released files. They come through
the `pypi-simple` client, which knows the index endpoint, and are verified against the
sha256 we record, so a changed upload can never slip in.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import PascalForgeError

CACHE_ENV = "PASCAL_FORGE_CACHE"
_CHUNK = 1 << 20
_LOG = logging.getLogger(__name__)
# A download reports its progress this often (a fraction of its size).
_PROGRESS_STEP = 0.1


class SourceError(PascalForgeError):
    """An upstream artifact cannot be fetched or does not match its recorded sha256."""


@dataclass(frozen=True)
class UpstreamArtifact:
    """One released file of a PyPI project, pinned by its sha256."""

    project: str
    filename: str
    sha256: str


def default_cache_dir() -> Path:
    """`$PASCAL_FORGE_CACHE`, else `.cache/upstream` under the current directory."""
    return Path(os.environ.get(CACHE_ENV) or Path.cwd() / ".cache" / "upstream")


def fetch(artifact: UpstreamArtifact, cache_dir: Path | None = None) -> Path:
    """Path of the verified artifact, downloading it on first use."""
    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / artifact.sha256 / artifact.filename
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Imported here: only fetching needs the network client.
    from .index import index_client, index_url

    try:
        with index_client() as client:
            page = client.get_project_page(artifact.project)
            package = next((p for p in page.packages if p.filename == artifact.filename), None)
            if package is None:
                raise SourceError(f"{artifact.project}: the index lists no file {artifact.filename}")
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as part:
                partial = Path(part.name)
            try:
                _LOG.info(
                    "downloading %s (%s) from the %s project",
                    artifact.filename,
                    _megabytes(package.size),
                    artifact.project,
                )
                progress = functools.partial(_LoggedProgress, artifact.filename)
                client.download_package(package, path=partial, verify=False, progress=progress)
                _verify(partial, artifact)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
    except SourceError:
        raise
    except Exception as exc:  # network and HTTP errors from the client
        raise SourceError(
            f"cannot download {artifact.filename} from the {artifact.project} project on "
            f"{index_url()}: {exc}; "
            f"or place the file at {target}"
        ) from exc
    return target


class _LoggedProgress:
    """pypi-simple's progress tracker, as log lines every tenth of the file: a wheel of
    hundreds of MB must not look like a hang, and a log file should not fill with bars."""

    def __init__(self, filename: str, total: int | None) -> None:
        self._filename = filename
        self._total = total
        self._done = 0
        self._reported = 0.0

    def __enter__(self) -> _LoggedProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            _LOG.info("downloaded %s (%s)", self._filename, _megabytes(self._done))

    def update(self, increment: int) -> None:
        self._done += increment
        if not self._total:
            return
        fraction = self._done / self._total
        if fraction - self._reported >= _PROGRESS_STEP and fraction < 1:
            self._reported = fraction
            _LOG.info("  %s: %d%% of %s", self._filename, fraction * 100, _megabytes(self._total))


def _megabytes(size: int | None) -> str:
    return f"{size / 1e6:.0f} MB" if size else "size unknown"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, artifact: UpstreamArtifact) -> None:
    actual = sha256_of(path)
    if actual != artifact.sha256:
        raise SourceError(
            f"{artifact.filename}: sha256 is {actual}, expected {artifact.sha256}; "
            "the upload changed or the download is corrupt"
        )
