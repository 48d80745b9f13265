"""The environments rattler-build creates for one planned output: build and host (its own
and those of the staging outputs it inherits), run, and one per test, each as the specs
rattler-build solves, with the variant applied as rattler-build applies it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rattler import GenericVirtualPackage

from ..channel.solve import System
from ..recipes.plan import PlannedBuild
from ..recipes.planned import planned_record

Kind = Literal["build", "host", "run", "test"]
# The sysroot our packages are built against: what they promise about the user's glibc.
DEFAULT_GLIBC = "2.17"
LINUX = "5.10"


@dataclass(frozen=True)
class Environment:
    """One environment rattler-build would create for an output."""

    kind: Kind
    specs: tuple[str, ...]
    # Where it comes from beyond the output itself, e.g. a staging output's name.
    origin: str = ""
    cuda: str | None = None
    glibc: str = DEFAULT_GLIBC

    @property
    def label(self) -> str:
        return f"{self.origin} {self.kind}" if self.origin else self.kind

    def key(self) -> tuple:
        return (tuple(sorted(self.specs)), self.cuda, self.glibc)

    def virtual_packages(self) -> list[GenericVirtualPackage]:
        # A build machine needs no GPU: __cuda only where the package is installed and tested.
        return System(cuda=self.cuda, glibc=self.glibc, linux=LINUX).virtual_packages()


def environments_of(build: PlannedBuild) -> list[Environment]:
    """The environments rattler-build creates for this output, as specs after the variant."""
    output = build.output
    if output.rendered is None:
        return []
    stage1 = output.rendered.recipe.to_dict()
    variant = output.variant
    glibc = str(variant.get("c_stdlib_version") or DEFAULT_GLIBC)
    envs: list[Environment] = []
    sections = [
        (f"staging {c.get('name', '')}".strip(), c.get("requirements") or {}) for c in _staging(stage1)
    ]
    sections.append(("", stage1.get("requirements") or {}))
    for origin, requirements in sections:
        for kind in ("build", "host"):
            specs = [_build_time_spec(s, variant) for s in requirements.get(kind) or []]
            if specs:
                envs.append(Environment(kind, tuple(specs), origin=origin, glibc=glibc))
    run = planned_record(output)["depends"]
    if run:
        envs.append(Environment("run", tuple(run), cuda=output.cuda, glibc=glibc))
    itself = f"{output.name} =={output.version} {output.build_string}"
    for specs in _test_specs(stage1.get("tests") or []):
        envs.append(Environment("test", (itself, *specs), cuda=output.cuda, glibc=glibc))
    return list({(e.label, e.key()): e for e in envs}.values())


def _staging(stage1: dict[str, Any]) -> list[dict[str, Any]]:
    return list(stage1.get("staging_caches") or [])


def _build_time_spec(spec: Any, variant: dict[str, str]) -> str:
    """A build or host spec as rattler-build applies the variant to it (apply_variant)."""
    if isinstance(spec, dict):
        if "pin_subpackage" in spec:
            pin = spec["pin_subpackage"]
            pinned = variant.get(pin["name"])
            if not pinned:
                return str(pin["name"])
            version, _, build = pinned.partition(" ")
            return f"{pin['name']} =={version} {build}" if pin.get("exact") else f"{pin['name']} >={version}"
        if "pin_compatible" in spec:
            return str(spec["pin_compatible"]["name"])  # pinned to what the host gets: any here
        raise ValueError(f"unknown requirement {spec!r}")
    text = str(spec).strip()
    if " " in text or any(c in text for c in "=<>!~*["):
        return text
    value = _variant_value(variant, text)
    if value is None:
        return text
    # A bare version means "starts with", as rattler-build reads it.
    return f"{text} ={value}" if all(c.isalnum() or c == "." for c in value) else f"{text} {value}"


def _variant_value(variant: dict[str, str], name: str) -> str | None:
    wanted = _normalized(name)
    return next((v for k, v in variant.items() if _normalized(k) == wanted), None)


def _normalized(key: str) -> str:
    return key.lower().replace("-", "_").replace(".", "_")


def _test_specs(tests: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """What each test adds to the package in its test environment (rattler-build's run_test)."""
    found: list[tuple[str, ...]] = []
    for test in tests:
        if "python" in test:
            python = test["python"] or {}
            found.append(("python", "pip") if python.get("pip_check", True) else ("python",))
        elif "script" in test:
            requirements = test.get("requirements") or {}
            found.append(tuple(str(s) for s in requirements.get("run") or []))
    return list(dict.fromkeys(found))
