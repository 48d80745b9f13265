"""What a source channel must pass before anything of it is trusted: names, repodata, checksums."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .endpoints import Source, SourceForbidden, describe_transport_error, is_transport_error
from .model import (
    MAX_NAME_BYTES,
    PACKAGE_NAME,
    PARTIAL_SUFFIX,
    REPODATA,
    SHA256,
    SUBDIR_NAME,
    MirrorError,
    PackageEntry,
    SubdirIndex,
)


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
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"is longer than the {MAX_NAME_BYTES} bytes a file name may have"
    if name.endswith(PARTIAL_SUFFIX):
        return "ends like the mirror's own partial files"
    return None


class _StrictJSONError(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _StrictJSONError(f"the key {twice!r} appears twice in one object")
    return data


def _no_constant(name: str) -> Any:
    raise _StrictJSONError(f"{name} is not JSON")


def strict_json(raw: bytes) -> Any:
    """JSON as rattler and conda read it: UTF-8 only, no key twice in an object, no NaN or Infinity.

    Python's own parser takes all three (it even guesses UTF-16), so a mirror checked by it alone
    would pass on a repodata.json that every installer then refuses.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _StrictJSONError(f"not UTF-8: {exc}") from exc
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except RecursionError as exc:
        raise _StrictJSONError("nested too deeply") from exc


def parse_repodata(
    subdir: str, raw: bytes, source_label: str, origin: int = 0
) -> tuple[SubdirIndex | None, list[str]]:
    where = f"{source_label}/{subdir}/{REPODATA}"
    try:
        data = strict_json(raw)
    except ValueError as exc:
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
            entry = PackageEntry(subdir, name, sha256, size, origin)
            if entries.setdefault(name, entry) != entry:
                # One file cannot match two records; whichever a client read would be wrong.
                problems.append(
                    f"{subdir}/{name}: listed in both 'packages' and 'packages.conda' with different "
                    "sha256 or size; re-index the source channel"
                )
    base_url = (data.get("info") or {}).get("base_url") if isinstance(data.get("info"), dict) else None
    if base_url:
        problems.append(f"{where}: packages live under info.base_url {base_url}; mirror that instead")
    return SubdirIndex(subdir, raw, data, entries), problems


def read_source(
    source: Source,
    subdirs: Sequence[str] | None,
    origin: int = 0,
    explicit: bool | None = None,
    jobs: int = 4,
) -> dict[str, SubdirIndex]:
    """Phase 1: every requested subdir's repodata, checked; raises MirrorError listing every problem.

    With `explicit`, a requested subdir the source lacks is a problem (default: when subdirs are named).
    At most `jobs` requests are open at a time, as for the downloads.
    """
    explicit = bool(subdirs) if explicit is None else explicit
    try:
        wanted = list(subdirs) if subdirs else source.list_subdirs()
    except Exception as exc:
        if not is_transport_error(exc):
            raise
        problem = describe_transport_error(f"{source.label}: listing its subdirs", exc)
        raise MirrorError(f"cannot read the source channel {source.label}", [problem]) from exc
    misnamed = [name for name in wanted if not SUBDIR_NAME.match(name)]
    problems = [f"{name!r}: not a subdir name (like linux-64 or noarch)" for name in misnamed]
    wanted = [name for name in wanted if name not in misnamed]

    def fetch(subdir: str) -> bytes | Exception | None:
        try:
            return source.read(f"{subdir}/{REPODATA}")
        except SourceForbidden as exc:
            # Like conda: a server that forbids what it does not have (S3 behind a CDN does) has
            # no such subdir, when we only probe for it.
            return exc if explicit else None
        except Exception as exc:
            if not is_transport_error(exc):
                raise
            return exc

    # A source without channeldata.json is probed for each of 14 known subdirs: asking `jobs` at a
    # time makes that four round trips to a distant channel instead of fourteen.
    workers = max(1, min(len(wanted), jobs))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="repodata") as pool:
        answers = list(pool.map(fetch, wanted))
    indexes: dict[str, SubdirIndex] = {}
    for subdir, raw in zip(wanted, answers, strict=True):
        if isinstance(raw, SourceForbidden):
            problems.append(
                f"{source.label}/{subdir}/{REPODATA}: {raw}; if the channel has no {subdir}, "
                "leave it out of --subdir"
            )
            continue
        if isinstance(raw, Exception):
            problems.append(describe_transport_error(f"{source.label}/{subdir}/{REPODATA}", raw))
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
        raise MirrorError(
            f"nothing to mirror from {source.label}",
            ["no subdir with a repodata.json found; name the subdirs with --subdir (like --subdir noarch)"],
        )
    return indexes


def rattler_problems(raw: bytes, where: str) -> list[str]:
    """What rattler (and so every installer built on it) finds wrong with a repodata.json, if anything."""
    from rattler import RepoData

    with tempfile.TemporaryDirectory(prefix="pascal-forge-repodata-") as scratch:
        path = Path(scratch) / REPODATA
        path.write_bytes(raw)
        try:
            RepoData.from_path(path)
        except Exception as exc:  # rattler raises its own error types
            return [f"{where}: rattler cannot read it ({exc}); fix or re-index the source channel"]
    return []
