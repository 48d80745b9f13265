"""Checks that run before any build starts, so a long build does not stop hours in on
something that could have been seen at once: unreachable sources, too little disk, CUDA 13."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..pascal import FIRST_CUDA_WITHOUT_PASCAL
from ..recipes.plan import Plan, PlannedBuild
from ..recipes.variants import CUDA_KEY
from .engine import BuildOptions, pending_builds
from .report import Finding
from .solvability import check_solvable

# Recipes declare what their build needs on disk under `extra:`, e.g. `build-disk-gib: 30`.
DISK_KEY = "build-disk-gib"
# rattler-build keeps fetched sources in <output dir>/src_cache, described by these files.
_SOURCE_CACHE_METADATA = Path("src_cache") / ".metadata"
_GIB = 1024**3


@dataclass(frozen=True)
class Source:
    recipe: str
    url: str
    # What identifies the source in rattler-build's cache: a sha256, or the git revision.
    checksum: str | None = None
    git_rev: str | None = None


def preflight(
    builds: Sequence[PlannedBuild],
    work_dir: Path,
    *,
    check_sources: bool = True,
    timeout: float = 10.0,
) -> list[Finding]:
    """Everything wrong with building `builds` that can be seen before building."""
    findings = _cuda_findings(builds) + _disk_findings(builds, work_dir)
    if check_sources:
        findings += source_findings(builds, work_dir, timeout=timeout)
    return findings


def unbuilt_needs(plan: Plan, builds: Sequence[PlannedBuild]) -> list[Finding]:
    """Warnings for what `--only` leaves out: needed packages that are neither being built
    nor in the channel, so they must come from a source channel (or the build fails)."""
    chosen = {b.position for b in builds}
    findings = []
    for build in builds:
        for need in build.needs:
            needed = plan.builds[need]
            if need not in chosen and not needed.in_channel:
                findings.append(
                    Finding(
                        "warning",
                        f"recipe {build.output.recipe}: {build.output.name} {build.output.build_string} "
                        f"needs {needed.output.filename}, which is neither in the channel nor selected; "
                        "it will be looked for in the source channels.",
                    )
                )
    return findings


def _cuda_findings(builds: Sequence[PlannedBuild]) -> list[Finding]:
    findings = []
    for build in builds:
        cuda = build.output.cuda
        if cuda and cuda.split(".")[0].isdigit() and int(cuda.split(".")[0]) >= FIRST_CUDA_WITHOUT_PASCAL:
            findings.append(
                Finding(
                    "error",
                    f"recipe {build.output.recipe}: {build.output.name} is planned with {CUDA_KEY}={cuda}; "
                    "CUDA 13 cannot compile for sm_60/sm_61, use 12.x.",
                )
            )
    return findings


def disk_needs(builds: Sequence[PlannedBuild]) -> dict[str, float]:
    """GiB of free work-directory space each recipe declares under `extra:` (DISK_KEY), for the
    builds that compile something."""
    needs: dict[str, float] = {}
    for build in builds:
        if build.output.rendered is None:
            continue
        stage1 = build.output.rendered.recipe.to_dict()
        if not _source_entries(stage1):
            continue  # a metapackage or script-only output compiles nothing
        needed = (stage1.get("extra") or {}).get(DISK_KEY)
        if needed is not None:
            needs[build.output.recipe] = float(needed)
    return needs


def _disk_findings(builds: Sequence[PlannedBuild], work_dir: Path) -> list[Finding]:
    needs = disk_needs(builds)
    if not needs:
        return []
    recipe, needed = max(needs.items(), key=lambda item: item[1])
    free = shutil.disk_usage(_existing_parent(work_dir)).free / _GIB
    if free >= needed:
        return []
    return [
        Finding(
            "error",
            f"recipe {recipe}: its build needs about {needed:g} GiB of disk in {work_dir}, "
            f"but only {free:.1f} GiB is free. Free some space or pass --work-dir on a larger disk.",
        )
    ]


def source_findings(builds: Sequence[PlannedBuild], work_dir: Path, *, timeout: float) -> list[Finding]:
    """Sources that are neither in rattler-build's source cache nor reachable over the network."""
    cached_checksums, cached_git = _cached_sources(work_dir)
    findings = []
    checked: dict[str, str | None] = {}
    for source in _sources(builds):
        if source.checksum and source.checksum in cached_checksums:
            continue
        if source.git_rev and (source.url, source.git_rev) in cached_git:
            continue
        if source.url not in checked:
            checked[source.url] = _unreachable(source, timeout)
        problem = checked[source.url]
        if problem:
            findings.append(
                Finding(
                    "error",
                    f"recipe {source.recipe}: source {source.url} is not reachable ({problem}) and not "
                    "in the source cache. Check the network or proxy, or pass --no-preflight to "
                    "build what does not need it.",
                )
            )
    return findings


def _sources(builds: Iterable[PlannedBuild]) -> list[Source]:
    sources: dict[tuple[str, str], Source] = {}
    for build in builds:
        if build.output.rendered is None:
            continue
        for entry in _source_entries(build.output.rendered.recipe.to_dict()):
            for source in _as_sources(build.output.recipe, entry):
                sources.setdefault((source.recipe, source.url), source)
    return list(sources.values())


def _source_entries(stage1: dict[str, Any]) -> list[dict[str, Any]]:
    """The sources an output fetches itself or through the staging output it inherits."""
    entries: list[dict[str, Any]] = list(stage1.get("source") or [])
    for cache in stage1.get("staging_caches") or []:
        entries += cache.get("source") or []
    return entries


def _as_sources(recipe: str, entry: dict[str, Any]) -> list[Source]:
    if "git" in entry:
        return [Source(recipe, str(entry["git"]), git_rev=str(entry.get("rev") or entry.get("tag") or ""))]
    if "url" in entry:
        # Mirrors: one of the listed URLs is enough, rattler-build tries them in turn.
        urls = entry["url"] if isinstance(entry["url"], list) else [entry["url"]]
        return [Source(recipe, str(urls[0]), checksum=entry.get("sha256"))]
    return []  # path sources are local files


def _cached_sources(work_dir: Path) -> tuple[set[str], set[tuple[str, str]]]:
    checksums: set[str] = set()
    git: set[tuple[str, str]] = set()
    for metadata in (work_dir / _SOURCE_CACHE_METADATA).glob("*.json"):
        try:
            data = json.loads(metadata.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if data.get("checksum"):
            checksums.add(data["checksum"])
        if data.get("git_rev"):
            git.add((data.get("url", ""), data["git_rev"]))
    return checksums, git


def _unreachable(source: Source, timeout: float) -> str | None:
    """Why `source` cannot be fetched now, or None if the server answers."""
    url = source.url
    if source.git_rev is not None and url.startswith(("http://", "https://")):
        url = url.rstrip("/") + "/info/refs?service=git-upload-pack"
    if not url.startswith(("http://", "https://")):
        return None  # ssh and other schemes: only the fetch itself can tell
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        # Some servers refuse HEAD but serve GET; a 404 or 410 really means missing.
        return f"HTTP {exc.code}" if exc.code in (404, 410) else None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(reason)


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def run_preflight(
    plan: Plan, selected: Sequence[PlannedBuild], options: BuildOptions
) -> tuple[list[Finding], str]:
    """Every pre-build check of the selected builds: what each found, and the solvability
    summary line. An error among the findings stops the build."""
    pending = pending_builds(selected, options.channel, force=options.force)
    findings = preflight(pending, options.work_dir) + unbuilt_needs(plan, selected)
    tests = options.test_strategy == "native"
    report = check_solvable(
        plan, pending, options.channel, options.source_channels, available=selected, tests=tests
    )
    return findings + report.findings(), report.summary
