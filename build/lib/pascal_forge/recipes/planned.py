"""The plan as a channel: the repodata records of the packages it would build, before a build.

The preflight solves against them to find an unsatisfiable spec before hours are spent, and
`pascal-forge solve --planned` installs from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..channel.solve import write_channel
from ..defaults import PLATFORM
from ..errors import RecipeError
from .plan import Plan, make_plan
from .render import RenderedOutput

# Where planned records' timestamps start (2023-11-14), older than any stock record.
PLANNED_TIMESTAMP = 1_700_000_000_000


def planned_repodata(plan: Plan) -> dict[str, dict[str, Any]]:
    """repodata.json content, per subdir, for the packages the plan would build.

    A built package also depends on what its host libraries export at build time
    (cudnn, nccl, libcublas ...). Those pins are not known before the build; the planned
    record carries what the recipe states, plus the Python pins the build adds.
    """
    repodata: dict[str, dict[str, Any]] = {
        subdir: {"info": {"subdir": subdir}, "packages": {}, "packages.conda": {}}
        for subdir in (PLATFORM, "noarch", *{b.output.subdir for b in plan.builds})
    }
    for build in plan.builds:
        output = build.output
        record = planned_record(output)
        # Packages built in plan order get rising timestamps; solvers break ties by them.
        record["timestamp"] = PLANNED_TIMESTAMP + 1000 * build.position
        repodata[output.subdir]["packages.conda"][output.filename] = record
    return repodata


def planned_record(output: RenderedOutput) -> dict[str, Any]:
    """The repodata entry rattler-build would write for one rendered output."""
    if output.rendered is None:
        raise RecipeError(f"{output.recipe}: {output.name} was not rendered by rattler-build")
    stage1 = output.rendered.recipe.to_dict()
    requirements = stage1.get("requirements") or {}
    depends: list[str] = []
    for spec in requirements.get("run") or []:
        depends += _run_specs(spec, output)
    record: dict[str, Any] = {
        "name": output.name,
        "version": output.version,
        "build": output.build_string,
        "build_number": int(stage1.get("build", {}).get("number") or 0),
        "subdir": output.subdir,
        "depends": depends,
        "constrains": [str(s) for s in requirements.get("run_constraints") or []],
        "license": str((stage1.get("about") or {}).get("license") or ""),
    }
    if output.subdir == "noarch":
        record["noarch"] = "generic"
    return record


def _run_specs(spec: Any, output: RenderedOutput) -> list[str]:
    if isinstance(spec, dict) and "pin_subpackage" in spec:
        pin = spec["pin_subpackage"]
        pinned = output.variant.get(pin["name"])
        if not pin.get("exact") or not pinned:
            raise RecipeError(
                f"recipes/{output.recipe}/recipe.yaml: {output.name} pins {pin['name']} without "
                "exact=True; planned records only know exact subpackage pins"
            )
        version, build = pinned.split(" ", 1)
        return [f"{pin['name']} =={version} {build}"]
    text = str(spec)
    if text.strip() == "python" and output.python:
        # What pin_run_as_build (x.x) and python's run_exports add at build time.
        major, minor = output.python.split(".")[:2]
        return [
            f"python >={major}.{minor},<{major}.{int(minor) + 1}.0a0",
            f"python_abi {major}.{minor}.* *_cp{major}{minor}",
        ]
    return [text]


def planned_channel(recipes: Path, variant_config: Path, directory: Path) -> Path:
    """An index-only channel in `directory` holding the records the plan would build."""
    plan = make_plan(recipes, variant_config, directory)
    return write_channel(planned_repodata(plan), directory)


# Python distributions our conda packages install, and where the build takes their version.
_DISTRIBUTIONS = {
    "pytorch": ("torch", "PYTORCH_BUILD_VERSION"),
    "triton": ("triton", None),
    "vllm": ("vllm", "SETUPTOOLS_SCM_PRETEND_VERSION"),
}


def declared_python_versions(plan: Plan) -> dict[str, str]:
    """The versions our builds give their Python distributions: what `pip check` compares.

    A plan of one stack (narrowed with e.g. `vllm_version`) has one version per distribution.
    """
    versions: dict[str, str] = {}
    for build in plan.builds:
        output = build.output
        if output.name not in _DISTRIBUTIONS or output.rendered is None:
            continue
        distribution, variable = _DISTRIBUTIONS[output.name]
        script = (output.rendered.recipe.to_dict().get("build") or {}).get("script")
        env = script.get("env") or {} if isinstance(script, dict) else {}
        version = str(env.get(variable, output.version)) if variable else output.version
        if versions.setdefault(distribution, version) != version:
            raise RecipeError(
                f"recipes/{output.recipe}/recipe.yaml: {distribution} reports {version} in one "
                f"variant and {versions[distribution]} in another; narrow the plan to one stack"
            )
    return versions
