"""conda-forge.yml: the feedstock settings that `pascal-forge rerender` turns into CI.

The file keeps conda-smithy's shape, so its usual keys mean what conda-forge users expect;
keys of our own live under `pascal_forge:`. Only what the generated CI can honour is
accepted: anything else is refused with the key named, instead of being silently ignored.
"""

from __future__ import annotations

import difflib
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..defaults import SOURCE_CHANNEL
from ..errors import PascalForgeError
from ..util import read_yaml_mapping

# GitHub cancels a job on its hosted runners after six hours, whatever the workflow says.
HOSTED_RUNNER_MAX_MINUTES = 360
_SUPPORTED_PROVIDERS = {"linux_64": "github_actions"}


class ForgeConfigError(PascalForgeError):
    """conda-forge.yml asks for something the generated CI cannot do."""


@dataclass(frozen=True)
class RecipeJob:
    """How CI builds one recipe: where, for how long, and with which preparations."""

    runs_on: tuple[str, ...]
    timeout_minutes: int
    free_disk_space: bool
    sccache: bool


@dataclass(frozen=True)
class ForgeConfig:
    rattler_build_version: str
    # Variant keys that split the matrix into one .ci_support file (and one CI job) each.
    split_keys: tuple[str, ...]
    source_channels: tuple[str, ...]
    channel_priority: str
    upload_on_branch: str
    upload_packages: bool
    artifact_retention_days: int
    cancel_in_progress: bool
    build_python: str
    default_job: RecipeJob
    recipe_jobs: dict[str, RecipeJob]
    # Each setting's default is written once, where load_forge_config reads it.
    test_package: str
    test_timeout_minutes: int
    gpu_runs_on: tuple[str, ...]
    gpu_timeout_minutes: int
    gpu_python: str
    gpu_model: str
    publish_environment: str
    publish_timeout_minutes: int

    def job_for(self, recipe: str) -> RecipeJob:
        return self.recipe_jobs.get(recipe, self.default_job)


def _engine_version() -> str:
    """The rattler-build release of the py-rattler-build that pascal-forge drives (pyproject.toml
    pins it): CI's rattler-build builds what `pascal-forge build` builds here."""
    return "v" + importlib.metadata.version("py-rattler-build")


def load_forge_config(path: Path) -> ForgeConfig:
    """Read conda-forge.yml and refuse settings the generated workflow could not honour."""
    reader = _Reader(path, read_yaml_mapping(path, "feedstock settings", ForgeConfigError))

    tool = reader.text("conda_build_tool", "rattler-build")
    if tool != "rattler-build":
        raise ForgeConfigError(
            f"{path}: conda_build_tool: {tool!r} is not supported; pascal-forge builds with rattler-build "
            "(set conda_build_tool: rattler-build)."
        )
    providers = reader.mapping("providers")
    for platform, provider in providers.items():
        wanted = _SUPPORTED_PROVIDERS.get(platform)
        if provider is not None and provider != wanted:
            raise ForgeConfigError(
                f"{path}: providers: {platform}: {provider!r} is not supported; "
                f"the recipes build for {', '.join(f'{p}: {v}' for p, v in _SUPPORTED_PROVIDERS.items())}."
            )
    priority = reader.text("channel_priority", "strict")
    if priority not in ("strict", "disabled"):
        raise ForgeConfigError(f"{path}: channel_priority: {priority!r} must be strict or disabled.")

    actions = reader.section("github_actions")
    ours = reader.section("pascal_forge")
    default_timeout = actions.integer("timeout_minutes", HOSTED_RUNNER_MAX_MINUTES)
    default_runner = ours.runner("runs_on", ("ubuntu-24.04",))
    default_job = RecipeJob(default_runner, default_timeout, free_disk_space=False, sccache=False)
    recipe_jobs = {
        name: _recipe_job(ours.section(f"recipes.{name}", settings), default_job)
        for name, settings in ours.mapping("recipes").items()
    }
    for job in (default_job, *recipe_jobs.values()):
        _check_timeout(path, job)

    gpu = ours.section("gpu")
    publish = ours.section("publish")
    tests = ours.section("tests")
    config = ForgeConfig(
        rattler_build_version=ours.text("rattler_build_version", _engine_version()),
        split_keys=tuple(ours.strings("split_variants_by", ("cuda_compiler_version",))),
        source_channels=tuple(ours.strings("source_channels", (SOURCE_CHANNEL,))),
        channel_priority=priority,
        upload_on_branch=reader.text("upload_on_branch", "main"),
        upload_packages=actions.boolean("upload_packages", True),
        artifact_retention_days=actions.integer("artifact_retention_days", 7),
        cancel_in_progress=actions.boolean("cancel_in_progress", True),
        build_python=ours.text("build_python", "3.12"),
        default_job=default_job,
        recipe_jobs=recipe_jobs,
        test_package=tests.text("package", "vllm-pascal"),
        test_timeout_minutes=tests.integer("timeout_minutes", 60),
        gpu_runs_on=gpu.runner("runs_on", ("self-hosted", "linux", "x64", "pascal")),
        gpu_timeout_minutes=gpu.integer("timeout_minutes", 60),
        gpu_python=gpu.text("python", "3.12"),
        gpu_model=gpu.text("model", "facebook/opt-125m"),
        publish_environment=publish.text("environment", "channel-publish"),
        publish_timeout_minutes=publish.integer("timeout_minutes", 30),
    )
    reader.refuse_unread()
    return config


def _recipe_job(settings: _Reader, default: RecipeJob) -> RecipeJob:
    return RecipeJob(
        runs_on=settings.runner("runs_on", default.runs_on),
        timeout_minutes=settings.integer("timeout_minutes", default.timeout_minutes),
        free_disk_space=settings.boolean("free_disk_space", default.free_disk_space),
        sccache=settings.boolean("sccache", default.sccache),
    )


def _check_timeout(path: Path, job: RecipeJob) -> None:
    hosted = "self-hosted" not in job.runs_on
    if hosted and job.timeout_minutes > HOSTED_RUNNER_MAX_MINUTES:
        raise ForgeConfigError(
            f"{path}: timeout_minutes: {job.timeout_minutes} on the GitHub-hosted runner "
            f"{', '.join(job.runs_on)} exceeds GitHub's limit of {HOSTED_RUNNER_MAX_MINUTES}; "
            "lower it or use a self-hosted (or larger) runner."
        )


@dataclass(frozen=True)
class _Reader:
    """Typed access to one mapping of conda-forge.yml; errors name the full key."""

    path: Path
    raw: dict[str, Any]
    prefix: str = ""
    # What the loader asked for; any other key is a typo or a setting CI would ignore.
    read: set[str] = field(default_factory=set, compare=False)
    children: list[_Reader] = field(default_factory=list, compare=False)

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _get(self, key: str, default: object) -> Any:
        self.read.add(key.split(".")[0])
        return self.raw.get(key, default)

    def refuse_unread(self) -> None:
        """Raise naming the first key nobody read, with the known key it most likely means."""
        for key in self.raw:
            if key not in self.read:
                known = sorted(self.read)
                close = difflib.get_close_matches(str(key).replace("-", "_"), known, n=1, cutoff=0.6)
                hint = (
                    f"did you mean {self.prefix}{close[0]}?" if close else f"known here: {', '.join(known)}"
                )
                raise ForgeConfigError(
                    f"{self.path}: {self.prefix}{key}: not a setting pascal-forge knows ({hint})"
                )
        for child in self.children:
            child.refuse_unread()

    def _fail(self, key: str, expected: str, value: object) -> ForgeConfigError:
        return ForgeConfigError(f"{self.path}: {self._key(key)}: expected {expected}, got {value!r}")

    def section(self, key: str, value: object = None) -> _Reader:
        value = self._get(key, None) if value is None else value
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self._fail(key, "a mapping", value)
        child = _Reader(self.path, value, prefix=f"{self._key(key)}.")
        self.children.append(child)
        return child

    def mapping(self, key: str) -> dict[str, Any]:
        """The mapping under `key`, whose own keys are names (platforms, recipes), not settings."""
        section = self.section(key)
        section.read.update(section.raw)
        return dict(section.raw)

    def text(self, key: str, default: str) -> str:
        value = self._get(key, default)
        if isinstance(value, float):
            # YAML reads 3.10 as the number 3.1: a version must be written as a string.
            raise self._fail(key, f'a quoted string such as "{value}" (YAML reads it as a number)', value)
        if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
            raise self._fail(key, "a non-empty string", value)
        return str(value)

    def integer(self, key: str, default: int) -> int:
        value = self._get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise self._fail(key, "a positive whole number", value)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> list[str]:
        value = self._get(key, list(default))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise self._fail(key, "a non-empty list of strings", value)
        return value

    def runner(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(self.strings(key, default))
