"""Can every planned environment be solved? Checked before anything builds, as conda-forge's
check-solvable does: each output's build, host, run and test environments (and those of the
staging outputs it inherits) are solved with rattler's solver against the target channel,
the packages this plan builds, and the source channels.

The repodata is fetched once (one Gateway, its in-memory cache shared by every solve) and
each distinct set of specs is solved once: the 60 outputs of the matrix share most of them.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rattler import (
    Gateway,
    MatchSpec,
    RepoDataRecord,
)
from rattler import solve as rattler_solve
from rattler.exceptions import SolverError

from ..channel.solve import _source, write_channel
from ..defaults import PLATFORM
from ..rattler_run import run_rattler
from ..recipes.plan import Plan, PlannedBuild
from ..recipes.planned import planned_repodata
from ..recipes.render import RenderedOutput
from .environments import Environment, Kind, environments_of
from .reachability import DEFAULT_TIMEOUT, UnreachableChannel, channel_label, fetch_channels
from .report import Finding

# Versions shown per channel when a spec is not found; the newest ones matter most.
SHOWN_VERSIONS = 8
_NOT_FOUND = (
    re.compile(r"No candidates were found for (.+?)\.\s*$", re.MULTILINE),
    re.compile(r"[├└]─ (.+?), for which no candidates were found\.", re.MULTILINE),
    # Candidates exist but were excluded (strict channel priority, among others): the lookup
    # below keeps only those no channel satisfies.
    re.compile(r"[├└]─ (.+?), which cannot be installed because there are no viable options:", re.MULTILINE),
)
_ABSENT_MARK = "no channel has a package named {name}"
_SOLVER_PREFIX = "Cannot solve the request because of: "


@dataclass(frozen=True)
class Unsolvable:
    """Why one distinct environment has no solution."""

    # One line per spec that no channel satisfies, with what the channels do have.
    missing: tuple[str, ...]
    # The solver's own explanation, as it wrote it (a tree over several lines).
    explanation: str
    # True when every missing spec was asked for directly, so the explanation adds nothing.
    direct: bool = False

    @property
    def problems(self) -> tuple[str, ...]:
        if self.missing:
            return self.missing
        lines = self.explanation.removeprefix(_SOLVER_PREFIX).strip().splitlines()
        return (f"no installable set: {lines[0].rstrip(':') if lines else 'the solver gave no reason'}",)


@dataclass(frozen=True)
class Failure:
    build: PlannedBuild
    environment: Environment
    reason: Unsolvable


@dataclass(frozen=True)
class SolvabilityReport:
    failures: tuple[Failure, ...] = ()
    unreachable: tuple[UnreachableChannel, ...] = ()
    environments: int = 0
    distinct: int = 0
    # Distinct environments handed to the solver (a run environment whose package's test
    # environment solved needs no solve of its own).
    solved: int = 0
    outputs: int = 0
    channels: tuple[str, ...] = ()
    seconds: float = 0.0
    fetch_seconds: float = 0.0
    severity_of: dict[Kind, str] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        if self.unreachable:
            return (
                f"solvability: not checked, {len(self.unreachable)} of {len(self.channels)} channel(s) "
                f"unreachable ({self.seconds:.1f} s)"
            )
        problems = len(group_failures(self.failures))
        return (
            f"solvability: {self.environments} environments of {self.outputs} package(s), "
            f"{self.distinct} distinct, {self.solved} solves against {len(self.channels)} channel(s) in "
            f"{self.seconds:.1f} s (repodata {self.fetch_seconds:.1f} s): "
            + (f"{problems} problem(s)" if problems else "all solvable")
        )

    def findings(self) -> list[Finding]:
        if self.unreachable:
            return [Finding("error", u.line) for u in self.unreachable]
        return [Finding(self._severity(problem), problem.line()) for problem in group_failures(self.failures)]

    def _severity(self, problem: Problem) -> str:
        kinds = {self.severity_of.get(f.environment.kind, "error") for f in problem.failures}
        return "error" if "error" in kinds else "warning"


def check_solvable(
    plan: Plan,
    builds: Sequence[PlannedBuild],
    channel: Path,
    source_channels: Sequence[str],
    *,
    available: Sequence[PlannedBuild] | None = None,
    tests: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    platform: str = PLATFORM,
) -> SolvabilityReport:
    """Solve every environment of `builds` before any of them is built.

    Available are the target channel as it is, every package of `available` (default:
    `builds`; built in plan order, so earlier ones are there when later ones need them),
    and `source_channels`.
    Build and host failures stop a build; run and test failures stop it only when the
    tests run (`tests`), otherwise they are warnings.
    """
    started = time.monotonic()
    environments = [(build, env) for build in builds for env in environments_of(build)]
    distinct: dict[tuple, Environment] = {}
    for _, env in environments:
        distinct.setdefault(env.key(), env)
    # A test environment holds the package, so its run dependencies: where it solves, the
    # run environment does too. It is solved only to say which one failed.
    tests_of: dict[int, set[tuple]] = {}
    for build, env in environments:
        if env.kind == "test":
            tests_of.setdefault(build.position, set()).add(env.key())
    deferred: dict[tuple, set[tuple]] = {}
    needed_now: set[tuple] = set()
    for build, env in environments:
        if env.kind == "run" and build.position in tests_of:
            deferred.setdefault(env.key(), set()).update(tests_of[build.position])
        else:
            needed_now.add(env.key())
    first = [env for key, env in distinct.items() if key in needed_now]
    later = [(distinct[key], tests) for key, tests in deferred.items() if key not in needed_now]
    with tempfile.TemporaryDirectory(prefix="pascal-forge-preflight-") as scratch:
        planned = builds if available is None else available
        ours = write_channel(_available_repodata(plan, planned, channel), Path(scratch))
        sources = [str(ours), *(_source(c) for c in source_channels)]
        labels = [f"the target channel {channel.resolve()}", *(channel_label(c) for c in source_channels)]
        names = sorted({MatchSpec(s).name.normalized for env in distinct.values() for s in env.specs})
        names = [n for n in names if not n.startswith("__")]
        unreachable, fetched, outcome, solved = run_rattler(
            _solve_all(sources, labels, names, first, later, [platform, "noarch"], timeout)
        )
    severity = "error" if tests else "warning"
    failures = tuple(
        Failure(build, env, outcome[env.key()]) for build, env in environments if env.key() in outcome
    )
    return SolvabilityReport(
        failures=failures,
        unreachable=tuple(unreachable),
        environments=len(environments),
        distinct=len(distinct),
        solved=solved,
        outputs=len(builds),
        channels=tuple(labels),
        seconds=time.monotonic() - started,
        fetch_seconds=fetched,
        severity_of={"build": "error", "host": "error", "run": severity, "test": severity},
    )


def _available_repodata(
    plan: Plan, builds: Sequence[PlannedBuild], channel: Path
) -> dict[str, dict[str, Any]]:
    """The target channel's index plus the records of the packages `builds` will add to it."""
    repodata = planned_repodata(Plan(plan.channel, tuple(builds)))
    for subdir_dir in channel.glob("*/repodata.json") if channel.is_dir() else []:
        try:
            existing = json.loads(subdir_dir.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        merged = repodata.setdefault(
            subdir_dir.parent.name,
            {"info": {"subdir": subdir_dir.parent.name}, "packages": {}, "packages.conda": {}},
        )
        for key in ("packages", "packages.conda"):
            # What the channel holds describes the real file: it wins over the plan's record.
            merged[key] = {**merged.get(key, {}), **(existing.get(key) or {})}
    return repodata


async def _solve_all(
    sources: list[str],
    labels: list[str],
    names: list[str],
    first: list[Environment],
    later: list[tuple[Environment, set[tuple]]],
    platforms: list[str],
    timeout: float,
) -> tuple[list[UnreachableChannel], float, dict[tuple, Unsolvable], int]:
    """Fetch once, then solve `first`, then those of `later` whose test environments failed."""
    gateway = Gateway()
    fetch_started = time.monotonic()
    named = [labels[0], *(f"source channel {label}" for label in labels[1:])]
    unreachable = await fetch_channels(gateway, sources, named, names, platforms, timeout)
    fetched = time.monotonic() - fetch_started
    if unreachable:
        return unreachable, fetched, {}, 0
    outcome: dict[tuple, Unsolvable] = {}
    pending = first
    solved = 0
    while pending:
        solved += len(pending)
        results = await asyncio.gather(*(_solve_one(gateway, sources, env, platforms) for env in pending))
        for env, error in zip(pending, results, strict=True):
            if error is not None:
                outcome[env.key()] = await _explain(gateway, sources, labels, env, error, platforms)
        pending = [env for env, tests in later if tests & outcome.keys()]
        later = []
    return [], fetched, outcome, solved


async def _solve_one(
    gateway: Gateway, sources: list[str], env: Environment, platforms: list[str]
) -> str | None:
    try:
        await rattler_solve(
            sources=sources,
            specs=list(env.specs),
            gateway=gateway,
            platforms=platforms,
            virtual_packages=env.virtual_packages(),
            channel_relations="disabled",
        )
    except SolverError as exc:
        return str(exc)
    return None


async def _explain(
    gateway: Gateway,
    sources: list[str],
    labels: list[str],
    env: Environment,
    error: str,
    platforms: list[str],
) -> Unsolvable:
    """Which specs no channel satisfies, each with the versions the channels have.

    The solver names only the first spec it could not find, so every spec of the
    environment is looked up; the solver's names count when the culprit is a dependency.
    """
    direct = await _unsatisfied(gateway, sources, labels, list(env.specs), platforms)
    if direct:
        return Unsolvable(missing=tuple(direct), explanation=error.strip(), direct=True)
    named = list(dict.fromkeys(m.strip() for pattern in _NOT_FOUND for m in pattern.findall(error)))
    found = await _unsatisfied(gateway, sources, labels, named, platforms)
    return Unsolvable(missing=tuple(found), explanation=error.strip())


async def _unsatisfied(
    gateway: Gateway, sources: list[str], labels: list[str], specs: list[str], platforms: list[str]
) -> list[str]:
    """'spec: what the channels have' for each of `specs` that no channel satisfies."""
    virtual = [s for s in specs if MatchSpec(s).name.normalized.startswith("__")]
    real = [s for s in specs if s not in virtual]
    lines = [
        f"{s}: this environment has no {MatchSpec(s).name.normalized} (a virtual package)" for s in virtual
    ]
    if not real:
        return lines
    names = sorted({MatchSpec(s).name.normalized for s in real})
    found = await gateway.query(sources, platforms, names, recursive=False)
    # One list per channel and platform, in that order.
    per_channel = [
        [r for part in found[i : i + len(platforms)] for r in part]
        for i in range(0, len(found), len(platforms))
    ]
    for spec in real:
        name = MatchSpec(spec).name.normalized
        having = [[r for r in records if r.name.normalized == name] for records in per_channel]
        problem = availability(spec, name, labels, having)
        if problem:
            lines.append(f"{spec}: {problem}")
    return lines


def availability(
    spec: str, name: str, labels: Sequence[str], per_channel: Sequence[Sequence[RepoDataRecord]]
) -> str | None:
    """None if a channel satisfies `spec` under strict priority, else what they have instead:
    'no channel has it; conda-forge has 0.1.23, 0.1.32'."""
    match = MatchSpec(spec)
    having = [(label, records) for label, records in zip(labels, per_channel, strict=True) if records]
    if not having:
        return _ABSENT_MARK.format(name=name)
    first_label, first_records = having[0]
    if any(match.matches(r) for r in first_records):
        return None
    listed = "; ".join(f"{label} has {_versions(records)}" for label, records in having)
    later = [label for label, records in having[1:] if any(match.matches(r) for r in records)]
    if later:
        return (
            f"{listed}; {later[0]} has a match, but strict channel priority takes {name} "
            f"only from {first_label}"
        )
    return f"no channel has it; {listed}{_build_mismatch(match, name, having)}"


def _build_mismatch(match: MatchSpec, name: str, having: list[tuple[str, Sequence[RepoDataRecord]]]) -> str:
    """When the version is there and only the build string differs, say so: the versions
    alone would read as if the spec were satisfied."""
    if match.build is None or match.version is None:
        return ""
    version_only = MatchSpec(f"{name} {match.version}")
    builds = [str(r.build) for _, records in having for r in records if version_only.matches(r)]
    if not builds:
        return ""
    shown = ", ".join(sorted(set(builds))[:3]) + (", ..." if len(set(builds)) > 3 else "")
    return f" ({match.version} is there, but as builds {shown}, none matching {match.build})"


def _versions(records: Iterable[RepoDataRecord]) -> str:
    versions = sorted({r.version for r in records})
    shown = [str(v) for v in versions[-SHOWN_VERSIONS:]]
    more = len(versions) - len(shown)
    return (f"{more} older, " if more else "") + ", ".join(shown)


@dataclass(frozen=True)
class Problem:
    """One spec no channel satisfies (or one conflict), and every environment it stops."""

    text: str
    failures: tuple[Failure, ...]

    @property
    def kinds(self) -> list[str]:
        return list(dict.fromkeys(f.environment.label for f in self.failures))

    @property
    def explained(self) -> bool:
        """Whether the solver's tree says more than the line: a dependency's spec, a conflict."""
        return any(not f.reason.direct and _tree(f.reason.explanation) for f in self.failures)

    def line(self) -> str:
        """`<first output> <environments> [and N more: …]: <spec>: <what the channels have>`."""
        first = self.failures[0].build.output
        what = f"{first.name} {first.version} {first.build_string} ({describe_variant(first)})"
        others = list(dict.fromkeys(f.build.output for f in self.failures if f.build.output != first))
        if others:
            counts: dict[str, int] = {}
            for output in others:
                counts[output.name] = counts.get(output.name, 0) + 1
            listed = ", ".join(f"{name} x{n}" for name, n in counts.items())
            what += f" and {len(others)} more ({listed})"
        line = f"{what} {', '.join(self.kinds)}: {self.text}"
        if not self.explained:
            return line
        tree = next(
            f.reason.explanation for f in self.failures if not f.reason.direct and _tree(f.reason.explanation)
        )
        return line + "\n  the solver says:\n" + indent(tree, "    ")


def group_failures(failures: Sequence[Failure]) -> list[Problem]:
    """One problem per missing spec, so 16 variants lacking the same one read as one line;
    names no channel has at all, missed by the same environments, share one line too."""
    groups: dict[str, list[Failure]] = {}
    for failure in failures:
        for text in failure.reason.problems:
            groups.setdefault(text, []).append(failure)
    # Keyed by the problem text, or for absent names by the environments they stop.
    merged: dict[object, list[str]] = {}
    for text, group in groups.items():
        absent = text.endswith(_ABSENT_MARK.format(name=text.split(":", 1)[0].split()[0]))
        key = tuple((f.build.position, f.environment.label) for f in group) if absent else text
        merged.setdefault(key, []).append(text)
    problems = []
    for texts in merged.values():
        specs = ", ".join(t.split(":", 1)[0] for t in texts)
        text = texts[0] if len(texts) == 1 else f"{specs}: no channel has a package of these names"
        problems.append(Problem(text, tuple(groups[texts[0]])))
    return problems


def _tree(explanation: str) -> bool:
    return len(explanation.removeprefix(_SOLVER_PREFIX).strip().splitlines()) > 1


def describe_variant(output: RenderedOutput) -> str:
    parts = [f"cuda {output.cuda}" if output.cuda else "", f"python {output.python}" if output.python else ""]
    return ", ".join(p for p in parts if p) or "default variant"


def indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.removeprefix(_SOLVER_PREFIX).strip().splitlines())
