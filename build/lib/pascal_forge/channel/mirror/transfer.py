"""One mirror run: read and check the sources, plan, fetch and verify, then swap the index in.

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
import errno
import hashlib
import http.client
import json
import os
import queue
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import PascalForgeError
from .checks import rattler_problems, read_source
from .closure import solve_closure
from .endpoints import (
    NOFOLLOW,
    Destination,
    Source,
    describe_transport_error,
    is_transport_error,
    open_destination,
    open_source,
)
from .model import (
    CHUNK,
    MAX_REPODATA_BYTES,
    REPODATA,
    ClosureRequest,
    MirrorDestinationError,
    MirrorError,
    MirrorInterrupted,
    MirrorReport,
    PackageEntry,
    Progress,
    S3Settings,
    SilentProgress,
    SubdirIndex,
    merged_repodata,
)


class _Stopped(Exception):
    pass


@dataclass
class _Fetcher:
    sources: Sequence[Source]
    destination: Destination
    progress: Progress
    stop: threading.Event
    hash_beside: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    fetched_bytes: int = 0

    def fetch(self, entry: PackageEntry) -> Path:
        """Download into a hidden partial file and check it; return the verified file, raise on damage.

        What is checked is the file on disk, read back through our own descriptor: a partial file a
        link points elsewhere, or that something else writes too, never passes for the package.
        """
        partial = self.destination.partial(entry.subdir, entry.filename)
        with _PartialFile(partial) as out:
            have, digest = out.resume(entry.size)
            if have < entry.size:
                have, digest = self._download(entry, out, have, digest)
            if have != entry.size:
                raise MirrorError(
                    "download cut short",
                    [f"{entry.label}: got {have} of {entry.size} bytes (truncated); run again to resume it"],
                )
            if not out.still_ours(entry.size):
                raise MirrorDestinationError(
                    "the destination changed under the mirror",
                    [f"{partial}: replaced, linked or grown by something else while the mirror wrote it"],
                )
            actual = digest.hexdigest()
            if actual != entry.sha256:
                out.discard()
                raise MirrorError(
                    "checksum mismatch",
                    [f"{entry.label}: sha256 {actual} does not match the source repodata's {entry.sha256}"],
                )
        return partial

    def _download(self, entry: PackageEntry, out: _PartialFile, have: int, digest: Any) -> tuple[int, Any]:
        receiving = False
        received = 0
        try:
            with self.sources[entry.origin].stream(entry.label, have) as (honoured, body):
                receiving = True
                if honoured != have:  # the source cannot resume: start over
                    have, digest = 0, hashlib.sha256()
                    out.truncate()
                with _BackgroundDigest(digest, entry.size - have, self.hash_beside) as hashing:
                    while True:
                        buffer = hashing.free_buffer()
                        count = body.readinto(buffer)
                        if not count:
                            break
                        if self.stop.is_set():
                            raise _Stopped(entry.label)
                        if have + count > entry.size:
                            raise MirrorError(
                                "download too long",
                                [f"{entry.label}: the source sends more than its {entry.size} bytes"],
                            )
                        out.write_and_reread(buffer, count, have)
                        hashing.update(buffer, count)
                        have += count
                        received += count
                        self.progress.advance(count)
        except Exception as exc:
            if not is_transport_error(exc):
                raise
            cut_mid_body = isinstance(exc, OSError | http.client.HTTPException) and not isinstance(
                exc, urllib.error.URLError
            )
            if receiving and cut_mid_body:
                # What arrived stays in the partial file for the next run.
                return have, digest
            raise MirrorError("download failed", [describe_transport_error(entry.label, exc)]) from exc
        finally:
            with self.lock:
                self.fetched_bytes += received
        return have, digest


class _PartialFile:
    """The hidden file a download goes to, opened without following links and kept open by fd.

    A link or anything but a plain file of ours at the partial name (planted by whoever can write in
    the destination) is removed, never written through; a new partial file is created with O_EXCL.
    An OSError here (disk full, read-only, permissions) is the destination's, and says so: told as a
    cut connection, it would send the user to run again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._refusals():
            self._fd = self._open_existing()
            if self._fd is None:
                self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o666)
        self._identity = _identity(os.fstat(self._fd))

    def _open_existing(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDWR | NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.ELOOP:  # ELOOP: a link, which we delete and do not follow
                raise
            os.unlink(self.path)
            return None
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            return fd
        # A fifo, device or a hard link to some other file: not a partial download of ours.
        os.close(fd)
        os.unlink(self.path)
        return None

    @contextlib.contextmanager
    def _refusals(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise MirrorDestinationError("cannot write the destination", [f"{self.path}: {reason}"]) from exc

    def resume(self, size: int) -> tuple[int, Any]:
        """How many bytes an earlier run left, and their digest (read from disk); too many: start over."""
        digest = hashlib.sha256()
        with self._refusals():
            have = os.fstat(self._fd).st_size
            if have > size:
                os.ftruncate(self._fd, 0)
                return 0, digest
            buffer = memoryview(bytearray(min(CHUNK, max(have, 1))))
            offset = 0
            while offset < have:
                count = os.preadv(self._fd, [buffer], offset)
                if not count:
                    break
                digest.update(buffer[:count])
                offset += count
        return offset, digest

    def truncate(self) -> None:
        with self._refusals():
            os.ftruncate(self._fd, 0)

    def write_and_reread(self, buffer: memoryview, count: int, offset: int) -> None:
        """Write `buffer[:count]` at `offset`, then read those bytes back into `buffer` from the file,
        so what gets hashed is what a reader of the file will get."""
        with self._refusals():
            written = 0
            while written < count:
                written += os.pwrite(self._fd, buffer[written:count], offset + written)
            if os.preadv(self._fd, [buffer[:count]], offset) != count:
                raise MirrorDestinationError(
                    "the destination changed under the mirror", [f"{self.path}: shrank while written"]
                )

    def still_ours(self, size: int) -> bool:
        """The partial name still names the file we wrote, of exactly `size` bytes, and nothing else."""
        try:
            info = os.lstat(self.path)
        except OSError:
            return False
        return _identity(info) == self._identity and info.st_size == size and info.st_nlink == 1

    def discard(self) -> None:
        if self.still_ours(os.fstat(self._fd).st_size):
            os.unlink(self.path)

    def __enter__(self) -> _PartialFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._refusals():
            os.close(self._fd)


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


class _BackgroundDigest:
    """Feeds a digest, on its own thread when asked, so sha256 runs beside the download.

    hashlib lets go of the GIL, so receiving, writing and hashing one file can use two cores: on
    16 cores, 4 jobs went from 65% to 77% of a 4-stream plain copy on loopback. Where the cores
    are already busy the extra thread only adds hand-overs (2 cores: 5-9% slower), so the caller
    asks for it only when there is a core for each job's hashing. A few buffers circulate: the
    download fills a free one, writes it and hands it over; the hashing thread frees it once
    hashed, so no buffer is refilled while it is being hashed. A download that fits one buffer
    (most packages in a channel are small) is always hashed inline.
    """

    def __init__(self, digest: Any, expected_bytes: int, beside: bool, depth: int = 4) -> None:
        self._digest = digest
        self._buffer_size = max(1, min(CHUNK, expected_bytes))
        self._unallocated = depth
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        self._filled: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if beside and expected_bytes > CHUNK:
            self._thread = threading.Thread(target=self._hash, name="mirror-sha256", daemon=True)

    def __enter__(self) -> _BackgroundDigest:
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Also on an error: no hashing thread outlives its download.
        if self._thread:
            self._filled.put(None)
            self._thread.join()

    def free_buffer(self) -> memoryview:
        if self._free.empty() and self._unallocated:
            self._unallocated -= 1
            return memoryview(bytearray(self._buffer_size))
        return self._free.get()

    def update(self, buffer: memoryview, count: int) -> None:
        """Hash the first `count` bytes of `buffer` (from free_buffer); it comes back free once hashed."""
        if self._thread:
            self._filled.put((buffer, count))
        else:
            self._digest.update(buffer[:count])
            self._free.put(buffer)

    def _hash(self) -> None:
        while (filled := self._filled.get()) is not None:
            buffer, count = filled
            self._digest.update(buffer[:count])
            self._free.put(buffer)


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
    except (ValueError, AttributeError, RecursionError):
        return {}


def _without(repodata: bytes | None, names: set[str]) -> bytes | None:
    """The destination's current repodata minus the records of `names`; None if there is none to change."""
    if not repodata:
        return None
    try:
        data = json.loads(repodata)
        for key in ("packages", "packages.conda"):
            for name in names & set(data.get(key) or {}):
                del data[key][name]
    except (ValueError, AttributeError, TypeError, RecursionError):
        return None  # an index no client can read promises nothing
    return json.dumps(data, indent=1, sort_keys=True).encode()


def plan_transfers(
    destination: Destination, entries: Sequence[PackageEntry], verify_existing: bool = False
) -> tuple[list, list, list]:
    """Split entries into (keep, fetch-new, fetch-replacing): replacing ones change a visible file, or a
    file the destination's index lists under another sha256, so they wait for the commit phase."""
    keep: list[PackageEntry] = []
    new: list[PackageEntry] = []
    replacing: list[PackageEntry] = []
    by_subdir: dict[str, list[PackageEntry]] = {}
    for entry in entries:
        by_subdir.setdefault(entry.subdir, []).append(entry)
    for subdir, subdir_entries in by_subdir.items():
        present = destination.present(subdir)
        listed = _known_sha256(destination.repodata(subdir))
        promised = {} if verify_existing else listed
        for entry in subdir_entries:
            size = present.get(entry.filename)
            if size is None:
                unlisted = listed.get(entry.filename, entry.sha256) == entry.sha256
                (new if unlisted else replacing).append(entry)
            elif size == entry.size and (
                promised.get(entry.filename) == entry.sha256
                or destination.has_sha256(subdir, entry.filename, entry.sha256)
            ):
                keep.append(entry)
            else:
                replacing.append(entry)
    return keep, new, replacing


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
    max_index_bytes: int = MAX_REPODATA_BYTES,
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
    sources = [open_source(url, s3, max_index_bytes) for url in (source_url, *with_channels)]
    try:
        # Subdirs the user names must exist; those a closure needs may be missing (conda and
        # rattler read a missing platform subdir as an empty one).
        explicit = bool(subdirs)
        if closure and not subdirs:
            subdirs = [closure.platform, "noarch"]
        channels = [read_source(sources[0], subdirs, explicit=explicit, jobs=jobs)] + [
            read_source(source, subdirs, origin, explicit=False, jobs=jobs)
            for origin, source in enumerate(sources[1:], start=1)
        ]
        chosen = solve_closure(channels, closure) if closure else None
        selected, parts = _select(channels, chosen)
        destination = open_destination(destination_url, s3, staging)
        report = MirrorReport(subdirs=sorted(parts), selected=selected)
        try:
            with destination.lock():
                indexes = _new_indexes(destination, parts)
                keep, new, replacing = plan_transfers(destination, selected, verify_existing)
                report.kept = len(keep)
                verified = _fetch_all(sources, destination, new, set(replacing), jobs, progress, report)
                _commit(destination, indexes, replacing, verified)
        except Exception as exc:
            # The downloads name the source's failures themselves; what is left is the destination's.
            if not is_transport_error(exc):
                raise
            problem = describe_transport_error(destination.label, exc)
            raise MirrorDestinationError("cannot use the destination", [problem]) from exc
    finally:
        for source in sources:
            source.close()
    report.seconds = time.monotonic() - started
    return report


def _new_indexes(
    destination: Destination, parts: dict[str, list[tuple[SubdirIndex, set[str] | None]]]
) -> dict[str, bytes]:
    """Each subdir's repodata.json as the run will write it, each one that changes read by rattler
    first: Python's parser takes what rattler refuses, and a mirror whose index no installer can
    read is no mirror. One the destination already serves was read when it was written."""
    indexes = {subdir: merged_repodata(parts[subdir]) for subdir in parts}
    problems = [
        problem
        for subdir, data in sorted(indexes.items())
        if data != destination.repodata(subdir)
        for problem in rattler_problems(data, f"the source's {subdir}/{REPODATA}")
    ]
    if problems:
        raise MirrorError("refusing the source channel", problems)
    return indexes


def _commit(
    destination: Destination,
    indexes: dict[str, bytes],
    replacing: Sequence[PackageEntry],
    verified: dict[PackageEntry, Path],
) -> None:
    """Phase 4. Every file is intact. A file that changes under a listed name leaves its index first,
    so that at no instant does an index list bytes other than its record's: old index, then the old
    index without those names, then the new files, then the new index."""
    changing: dict[str, set[str]] = {}
    for entry in replacing:
        changing.setdefault(entry.subdir, set()).add(entry.filename)
    for subdir, names in sorted(changing.items()):
        withdrawn = _without(destination.repodata(subdir), names)
        if withdrawn is not None:
            destination.publish_repodata(subdir, withdrawn)
    for entry in replacing:
        destination.publish_file(entry.subdir, entry.filename, verified[entry], entry.sha256)
    for subdir in sorted(indexes, key=lambda name: name == "noarch"):
        destination.publish_repodata(subdir, indexes[subdir])


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
    # Hashing beside each download pays only with a spare core for it (see _BackgroundDigest).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    fetcher = _Fetcher(sources, destination, progress, threading.Event(), hash_beside=cores >= 2 * jobs)
    verified: dict[PackageEntry, Path] = {}
    problems: list[str] = []
    in_flight: dict[Future, PackageEntry] = {}

    def fetch_and_publish(entry: PackageEntry) -> Path:
        path = fetcher.fetch(entry)
        if entry not in replacing:
            # On the worker, so a destination that takes its time (an S3 upload) also takes `jobs`
            # files at a time, rather than one at a time on the thread that hands out the work.
            destination.publish_file(entry.subdir, entry.filename, path, entry.sha256)
        return path

    def settle(future: Future, entry: PackageEntry) -> None:
        try:
            path = future.result()
        except MirrorDestinationError:
            raise
        except MirrorError as exc:
            problems.extend(exc.problems)
            return
        except _Stopped:
            return
        if entry in replacing:
            verified[entry] = path
        report.fetched.append(entry.label)
        progress.file_done(entry.label)

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mirror")
    try:
        pending = iter(entries)
        for entry in pending:
            in_flight[pool.submit(fetch_and_publish, entry)] = entry
            while len(in_flight) >= jobs * 2:
                done, _ = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    settle(future, in_flight.pop(future))
        while in_flight:
            done, _ = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                settle(future, in_flight.pop(future))
    except MirrorDestinationError:
        fetcher.stop.set()
        raise
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
