"""A local conda channel directory: what its index lists, and changing it atomically."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from rattler.index import index_fs

from ..errors import ChannelError
from ..rattler_run import run_rattler

REPODATA = "repodata.json"


def indexed_files(channel_dir: Path, subdir: str) -> set[str]:
    """File names the channel's repodata lists for `subdir` (empty if not indexed yet).

    A file on disk that the index does not list is not part of the channel: installs
    cannot see it, so it counts as not built.
    """
    repodata = channel_dir / subdir / REPODATA
    try:
        data = json.loads(repodata.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set()
    except (OSError, json.JSONDecodeError):
        return set()
    names = set(data.get("packages") or {}) | set(data.get("packages.conda") or {})
    return {name for name in names if (channel_dir / subdir / name).is_file()}


# Only repodata.json is written. A compressed or sharded copy cannot be swapped in together
# with it, and clients prefer those copies, so stale ones left by another indexer are
# deleted; publishing the channel elsewhere is where compression belongs.
_STALE_INDEX_FILES = (REPODATA + ".zst", "repodata_shards.msgpack.zst")
_STALE_SHARDS = "shards"
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
# Scratch names inside the channel start with a dot: indexers and installers ignore them.
_INDEX_SCRATCH = ".pascal-forge-index"
_LOCK = ".lock"
_PARTIAL_PREFIX = ".pascal-forge-partial-"


def index_channel(
    channel_dir: Path,
    subdirs: Iterable[str] = (),
    *,
    replaced: Iterable[str] = (),
    keep_scratch: bool = False,
) -> None:
    """(Re)write the repodata of `channel_dir` so that it lists exactly the packages on disk.

    Readers never see a half-written index: rattler indexes hard links of the packages in a
    dot-named scratch copy of the channel, then each finished repodata.json is swapped in
    with os.replace. Files named in `replaced` were overwritten since the last index and
    are read again; every other package keeps its existing record, so adding one package to
    a channel of large ones reads only that package. A build keeps the scratch copy between
    packages (`keep_scratch`), since creating and deleting folders is what costs most here.
    """
    channel_dir.mkdir(parents=True, exist_ok=True)
    wanted = {"noarch", *subdirs} | {p.name for p in package_subdirs(channel_dir)}
    replaced = set(replaced)
    scratch = channel_dir / _INDEX_SCRATCH
    scratch.mkdir(exist_ok=True)
    with (scratch / _LOCK).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one indexer at a time per channel
        for subdir in sorted(wanted):
            _stage_subdir(channel_dir / subdir, scratch / subdir, replaced)
        try:
            run_rattler(index_fs(scratch, write_zst=False, write_shards=False))
        except Exception as exc:  # rattler raises its own error types, and panics as exceptions
            raise ChannelError(
                f"{channel_dir}: rattler cannot index the channel: {exc}. "
                "Delete the package file it names and run the build again."
            ) from exc
        for subdir in sorted(wanted):
            (channel_dir / subdir).mkdir(exist_ok=True)
            for name in _STALE_INDEX_FILES:
                (channel_dir / subdir / name).unlink(missing_ok=True)
            os.replace(scratch / subdir / REPODATA, channel_dir / subdir / REPODATA)
            shutil.rmtree(channel_dir / subdir / _STALE_SHARDS, ignore_errors=True)
    if not keep_scratch:
        remove_scratch(channel_dir)


def package_subdirs(directory: Path) -> list[Path]:
    """Folders of `directory` that hold an index or packages (linux-64, noarch, ...)."""
    return [path for path in sorted(directory.iterdir()) if _holds_packages(path)]


def _holds_packages(path: Path) -> bool:
    if path.name.startswith(".") or not path.is_dir():
        return False
    return (path / REPODATA).is_file() or any(p.name.endswith(PACKAGE_SUFFIXES) for p in path.iterdir())


def _stage_subdir(subdir: Path, scratch: Path, replaced: set[str]) -> None:
    """Make `scratch` hold links to exactly the packages of `subdir`, and the old index minus
    the `replaced` records."""
    scratch.mkdir(parents=True, exist_ok=True)
    packages = {}
    if subdir.is_dir():
        packages = {p.name: p for p in subdir.iterdir() if p.name.endswith(PACKAGE_SUFFIXES) and p.is_file()}
    for staged in scratch.iterdir():
        if staged.name.endswith(PACKAGE_SUFFIXES) and not _same_file(staged, packages.get(staged.name)):
            staged.unlink()
    for name, package in packages.items():
        if not (scratch / name).exists():
            _link_or_copy(package, scratch / name)
    try:
        old = json.loads((subdir / REPODATA).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        (scratch / REPODATA).unlink(missing_ok=True)
        return
    for key in ("packages", "packages.conda"):
        for name in replaced & set(old.get(key) or {}):
            del old[key][name]
    (scratch / REPODATA).write_text(json.dumps(old), encoding="utf-8")


def _same_file(staged: Path, package: Path | None) -> bool:
    if package is None:
        return False
    if os.path.samefile(staged, package):
        return True
    # A copy (no hard links on this file system) is current if size and mtime still match.
    a, b = staged.stat(), package.stat()
    return (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system or no hard links: a copy is slower but just as correct
        shutil.copy2(source, target)


def publish_package(package: Path, channel_dir: Path, subdir: str) -> Path:
    """Move a finished package into the channel under its final name in one atomic step.

    Until the channel is indexed again the file is on disk but not listed, so installers
    cannot see it yet; a copy across file systems goes to a dot-named scratch file first.
    """
    target_dir = channel_dir / subdir
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / package.name
    try:
        os.replace(package, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        scratch = target_dir / f"{_PARTIAL_PREFIX}{package.name}"
        shutil.copy2(package, scratch)
        os.replace(scratch, target)
        package.unlink()
    return target


def remove_scratch(channel_dir: Path) -> None:
    """Delete what an interrupted run left behind: scratch indexes and partial copies."""
    if not channel_dir.is_dir():
        return
    for path in channel_dir.glob(f"{_INDEX_SCRATCH}*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in channel_dir.glob(f"*/{_PARTIAL_PREFIX}*"):
        path.unlink(missing_ok=True)


def channel_url(channel_dir: Path) -> str:
    """The file:// URL rattler-build and installers use for a local channel."""
    return channel_dir.resolve().as_uri()
