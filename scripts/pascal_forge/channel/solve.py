"""Dry-run installs with rattler's solver, and the check that a solution is one patched set.

The promise to Pascal owners is one install command that ends on our builds only. A real
solver (py-rattler) decides that, against our channel first and the channels after it,
for the machine described by its virtual packages (`__cuda`, `__cuda_arch`, `__glibc`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from rattler import (
    BuildString,
    Channel,
    ChannelPriority,
    Gateway,
    GenericVirtualPackage,
    PackageName,
    PrefixRecord,
    RepoDataRecord,
    Version,
    VirtualPackage,
    VirtualPackageOverrides,
)
from rattler import solve as rattler_solve
from rattler.exceptions import GatewayError, SolverError

from ..defaults import PLATFORM
from ..errors import PascalForgeError
from ..pascal import LAST_PASCAL_DRIVER, LAST_PASCAL_DRIVER_CUDA, MIN_DRIVER_CUDA, P40, PASCAL_MAJOR
from ..rattler_run import run_rattler
from ..util import one_line
from .doctor import version_key
from .ours import OUR_BUILD_MARK, is_ours

PRIORITIES = {
    "strict": ChannelPriority.Strict,
    "flexible": ChannelPriority.Flexible,
    "disabled": ChannelPriority.Disabled,
}


class SolveError(PascalForgeError):
    """No installable set exists for the specs on the described machine."""


class MixedSetError(PascalForgeError):
    """A solution mixes our patched builds with stock ones of the same family."""


@dataclass(frozen=True)
class System:
    """The machine a solve is for, as the virtual packages a conda client would report."""

    cuda: str | None
    cuda_arch: str | None = None
    glibc: str = "2.28"
    linux: str = "5.15"

    @classmethod
    def detect(cls, cuda: str | None = None, cuda_arch: str | None = None) -> System:
        """This host as rattler sees it (CONDA_OVERRIDE_* honoured), with explicit overrides."""
        found = {
            vp.name.normalized: str(vp.version)
            for vp in (p.into_generic() for p in VirtualPackage.detect(VirtualPackageOverrides.from_env()))
        }
        return cls(
            cuda=cuda or found.get("__cuda"),
            cuda_arch=cuda_arch or found.get("__cuda_arch"),
            glibc=found.get("__glibc", cls.glibc),
            linux=found.get("__linux", cls.linux),
        )

    def virtual_packages(self) -> list[GenericVirtualPackage]:
        present = {"__unix": "0", "__linux": self.linux, "__glibc": self.glibc}
        if self.cuda:
            present["__cuda"] = self.cuda
        if self.cuda_arch:
            present["__cuda_arch"] = self.cuda_arch
        return [
            GenericVirtualPackage(PackageName(n), Version(v), BuildString("0")) for n, v in present.items()
        ]


@dataclass(frozen=True)
class Resolved:
    """One package of a solution, with the channel named as the user named it."""

    name: str
    version: str
    build: str
    channel: str
    ours: bool

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "build": self.build, "channel": self.channel}


@dataclass(frozen=True)
class Solution:
    packages: tuple[Resolved, ...]
    records: tuple[RepoDataRecord, ...]

    def to_json(self) -> str:
        return json.dumps([p.as_dict() for p in self.packages], indent=2)

    def get(self, name: str) -> Resolved | None:
        return next((p for p in self.packages if p.name == name), None)

    def changes(self, installed: Sequence[RepoDataRecord]) -> list[str]:
        """The one transaction from `installed` to this solution, one line per package."""
        before = {r.name.normalized: r for r in installed}
        after = {r.name.normalized: r for r in self.records}
        lines = []
        for name in sorted(before.keys() | after.keys()):
            old, new = before.get(name), after.get(name)
            if old is None:
                lines.append(f"+ {name} {new.version} {new.build}")
            elif new is None:
                lines.append(f"- {name} {old.version} {old.build}")
            elif (str(old.version), str(old.build)) != (str(new.version), str(new.build)):
                lines.append(f"~ {name} {old.version} {old.build} -> {new.version} {new.build}")
        return lines

    def problems(self, family_names: Collection[str]) -> list[str]:
        """Why this is not one patched set (empty when it is).

        `family_names` are the packages we ship (recipes.recipe.shipped_names). Strict channel
        priority hides conda-forge's packages of these names, so as soon as one of ours is in,
        every package of the family must be ours, and all of ours must come from one CUDA build
        (cuda126_pascal or cuda129_pascal).
        """
        family = [p for p in self.packages if p.name in family_names]
        ours = [p for p in family if p.ours]
        if not ours:
            return []
        found = [
            f"{p.name} {p.version} {p.build} from {p.channel} is a stock build next to our patched set"
            for p in family
            if not p.ours or not is_ours(p.build)
        ]
        cuda_builds = {p.build.split(OUR_BUILD_MARK)[0] for p in ours}
        if len(cuda_builds) > 1:
            listing = ", ".join(f"{p.name} {p.build}" for p in ours)
            found.append(f"our packages come from different CUDA builds: {listing}")
        return found

    def check_consistent(self, family_names: Collection[str]) -> None:
        problems = self.problems(family_names)
        if problems:
            raise MixedSetError(
                "the solution mixes stock and Pascal builds: "
                + "; ".join(problems)
                + ". A pin in our recipes lets a stock build in: pin it by version and a "
                f"build string with {OUR_BUILD_MARK!r}"
            )


def solve(
    specs: Sequence[str],
    channels: Sequence[str],
    system: System,
    *,
    priority: str = "strict",
    installed: Sequence[RepoDataRecord] = (),
    python: str | None = None,
    platform: str = PLATFORM,
    labels: Sequence[str] | None = None,
) -> Solution:
    """Resolve `specs` against `channels` (ours first) as a conda install would.

    `installed` is the environment as it stands: the solver keeps what it can of it and
    replaces the rest, so the answer is the whole environment after one transaction.
    `labels` names the channels in the answer (default: as given).
    """
    if priority not in PRIORITIES:
        raise SolveError(f"channel priority {priority!r}: use one of {', '.join(PRIORITIES)}")
    request = _Request(specs, channels, priority, tuple(installed), platform)
    try:
        records = request.solve(system, python)
    except SolverError as exc:
        raise SolveError(_unsolvable_message(request, system, python, str(exc))) from exc
    except GatewayError as exc:
        raise SolveError(
            f"cannot read the channels {', '.join(channels)}: {one_line(exc)}; "
            "check each name, URL or path (a local channel needs <subdir>/repodata.json)"
        ) from exc
    sources = [_source(c) for c in channels]
    shown = {_base_url(s): c for s, c in zip(sources, labels or channels, strict=True)}
    ours = _base_url(sources[0])
    packages = tuple(
        sorted(
            (
                Resolved(
                    name=r.name.normalized,
                    version=str(r.version),
                    build=str(r.build),
                    channel=shown.get(_base_url(r.channel), r.channel),
                    ours=_base_url(r.channel) == ours,
                )
                for r in records
            ),
            key=lambda p: p.name,
        )
    )
    return Solution(packages=packages, records=tuple(records))


@dataclass(frozen=True)
class _Request:
    """One install request, solvable for several machines: how a failure finds its cause."""

    specs: Sequence[str]
    channels: Sequence[str]
    priority: str
    installed: tuple[RepoDataRecord, ...]
    platform: str

    def wanted(self, python: str | None) -> list[str]:
        return list(self.specs) + ([f"python {python}.*"] if python else [])

    def solve(self, system: System, python: str | None) -> list[RepoDataRecord]:
        return run_rattler(
            rattler_solve(
                sources=[_source(c) for c in self.channels],
                specs=self.wanted(python),
                gateway=Gateway(),
                platforms=[self.platform, "noarch"],
                locked_packages=list(self.installed),
                virtual_packages=system.virtual_packages(),
                channel_priority=PRIORITIES[self.priority],
                channel_relations="disabled",
            )
        )

    def solves(self, system: System, python: str | None) -> bool:
        try:
            self.solve(system, python)
        except SolverError:
            return False
        return True


def built_channel(directory: Path) -> Path:
    """Our channel as built: refused while it has no index or no package, which a solve would only
    report as a missing package."""
    indexes = [directory / subdir / "repodata.json" for subdir in (PLATFORM, "noarch")]
    if not any(index.is_file() for index in indexes):
        raise SolveError(f"{directory} holds no indexed channel: build it first, or pass --planned")
    if not any(_lists_packages(index) for index in indexes):
        raise SolveError(
            f"{directory} is an empty channel (its index lists no package): build into it first "
            "(pascal-forge build), or pass --planned to solve against what the recipes would build"
        )
    return directory


def _lists_packages(index: Path) -> bool:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(data.get("packages") or data.get("packages.conda"))


def installed_records(prefix: Path) -> list[PrefixRecord]:
    """The packages a conda environment holds, from its conda-meta/ records."""
    meta = prefix / "conda-meta"
    if not meta.is_dir():
        raise SolveError(f"{prefix} is not a conda environment: it has no conda-meta/ folder")
    return [PrefixRecord.from_path(path) for path in sorted(meta.glob("*.json"))]


def requested_specs(installed: Sequence[PrefixRecord]) -> list[str]:
    """What the user asked for in that environment: an install keeps asking for it."""
    return [spec for record in installed for spec in record.requested_specs]


def _source(channel: str) -> str:
    """A channel as rattler takes it: an existing local folder by its absolute path."""
    path = Path(channel).expanduser()
    return str(path.resolve()) if path.is_dir() else channel


def _base_url(channel: str) -> str:
    return Channel(channel).base_url.rstrip("/")


def _unsolvable_message(request: _Request, system: System, python: str | None, solver_text: str) -> str:
    """The solver's reason, with a hint only where changing that one thing makes the set installable."""
    hints = []
    driver_ok = replace(system, cuda=LAST_PASCAL_DRIVER_CUDA)
    if system.cuda is None and request.solves(driver_ok, python):
        hints.append(
            "no NVIDIA driver was seen (no __cuda): pass --cuda with the driver's CUDA version, "
            "or set CONDA_OVERRIDE_CUDA when installing for another machine"
        )
    elif (
        system.cuda is not None
        and version_key(system.cuda) < version_key(MIN_DRIVER_CUDA)
        and request.solves(driver_ok, python)
    ):
        hints.append(
            f"the driver supports CUDA {system.cuda}, our builds need {MIN_DRIVER_CUDA} or newer: "
            f"upgrade the NVIDIA driver to {LAST_PASCAL_DRIVER}, the last branch that supports Pascal"
        )
    # Would the set solve on a Pascal GPU (a P40's arch) instead?
    if (
        system.cuda_arch
        and not system.cuda_arch.startswith(f"{PASCAL_MAJOR}.")
        and request.solves(replace(system, cuda_arch=P40.arch), python)
    ):
        hints.append(
            f"the GPUs' compute capability is {system.cuda_arch}; this channel serves Pascal "
            "(6.x) only: install conda-forge's stock packages instead"
        )
    if python and not hints and request.solves(system, None):
        hints.append(
            f"nothing installable for Python {python}: drop --python or pick a Python the channel has"
        )
    hint = ("; " + "; ".join(hints)) if hints else ""
    tree = "\n".join(f"    {line.rstrip()}" for line in solver_text.strip().splitlines() if line.strip())
    return f"no installable set for {' '.join(request.wanted(python))}{hint}. The solver says:\n{tree}"


def write_channel(repodata: dict[str, dict[str, Any]], directory: Path) -> Path:
    """Write an index-only channel (no package files: a solve needs none) into `directory`."""
    for subdir, content in repodata.items():
        (directory / subdir).mkdir(parents=True, exist_ok=True)
        (directory / subdir / "repodata.json").write_text(
            json.dumps(content, indent=1, sort_keys=True) + "\n"
        )
    return directory


def unmet_requirements(
    lines: Iterable[str], provided: dict[str, str], environment: dict[str, str] | None = None
) -> list[str]:
    """Requirement lines, for this environment's markers, that `provided` versions fail.

    Lines naming a distribution not in `provided` are not judged here.
    """
    have = {canonicalize_name(name): version for name, version in provided.items()}
    unmet = []
    for text, requirement in _requirements(lines, environment):
        version = have.get(canonicalize_name(requirement.name))
        if version is not None and not requirement.specifier.contains(version, prereleases=True):
            unmet.append(f"{text} (our build reports {requirement.name} {version})")
    return unmet


def _requirements(
    lines: Iterable[str], environment: dict[str, str] | None
) -> Iterator[tuple[str, Requirement]]:
    """The requirements of a pip requirements file whose markers hold in `environment`."""
    for line in lines:
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise PascalForgeError(f"cannot read the requirement {text!r}: {exc}") from exc
        if not requirement.marker or requirement.marker.evaluate(environment):
            yield text, requirement


# conda-forge packages that install a program but no Python distribution metadata, so
# `pip check` reports a requirement on them as missing whatever conda installed.
WITHOUT_PYTHON_METADATA = frozenset({"ninja"})
# PyPI distributions whose conda-forge package has another name.
CONDA_NAMES = {"torch": "pytorch", "opencv-python-headless": "opencv", "ray": "ray-cgraph"}


def requirements_without_conda_package(
    lines: Iterable[str], run_specs: Iterable[str], environment: dict[str, str] | None = None
) -> list[str]:
    """Requirement lines (for this environment's markers) that no conda run dependency provides.

    `pip check` in the installed environment fails on each of them.
    """
    provided = {canonicalize_name(spec.split()[0]) for spec in run_specs} - WITHOUT_PYTHON_METADATA
    missing = []
    for text, requirement in _requirements(lines, environment):
        name = canonicalize_name(requirement.name)
        if canonicalize_name(CONDA_NAMES.get(name, name)) not in provided:
            missing.append(text)
    return missing
