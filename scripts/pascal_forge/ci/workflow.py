"""The generated GitHub Actions workflow that builds, tests and publishes the channel.

One job per recipe, in the order of the build plan, each a matrix over the .ci_support
configs; a job downloads the packages of the jobs it needs (the channel so far) and uploads
its own. Then a test job installs the top package from that channel for every Python, an
optional job on a self-hosted Pascal runner serves a tiny model, and a publish job uploads
the channel from the main branch only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from ..defaults import BUILD_LOGS, CHANNEL_DIR
from ..errors import PascalForgeError
from ..recipes.plan import Plan
from ..util import version_key
from .forge_config import ForgeConfig, RecipeJob

WORKFLOW_PATH = ".github/workflows/build.yml"
STAGING_DIR = "job-packages"
GPU_TEST_MARKER = "pascal-gpu-test:"
# The repository variable an operator sets to "true" once the self-hosted build runners that
# conda-forge.yml names are registered; until then the `runners` job fails at once, naming them,
# instead of the build jobs waiting a day for a runner that never comes.
SELF_HOSTED_VARIABLE = "PASCAL_FORGE_SELF_HOSTED_RUNNERS"
RUNNERS_JOB = "runners"
# What pascal-forge publish reads for each kind of target (prefix.dev, anaconda.org, quetz,
# artifactory, S3); only the one the target needs has to be set.
PUBLISH_SECRETS = (
    "PREFIX_API_KEY",
    "ANACONDA_API_KEY",
    "QUETZ_API_KEY",
    "ARTIFACTORY_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
# The Python module each package installs, for the import and version checks.
MODULES = {
    "triton": "triton",
    "pytorch": "torch",
    "torchvision": "torchvision",
    "torchaudio": "torchaudio",
    "vllm": "vllm",
}


@dataclass(frozen=True)
class ActionPin:
    repository: str
    commit: str
    tag: str

    @property
    def uses(self) -> str:
        return f"{self.repository}@{self.commit}"


# Full commit ids, as zizmor wants: a tag can be moved, a commit cannot. Each was read
# from the action's own repository (its tag points at this commit).
ACTIONS = {
    "checkout": ActionPin("actions/checkout", "3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "setup-python": ActionPin("actions/setup-python", "ece7cb06caefa5fff74198d8649806c4678c61a1", "v6.3.0"),
    "upload-artifact": ActionPin(
        "actions/upload-artifact", "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"
    ),
    "download-artifact": ActionPin(
        "actions/download-artifact", "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1"
    ),
    "rattler-build": ActionPin(
        "prefix-dev/rattler-build-action", "ca874f064b8716c9da7cb420cf9affa13a5899d8", "v0.2.38"
    ),
    "sccache": ActionPin(
        "mozilla-actions/sccache-action", "fc920bf0ec8de6ee65d409111f7ec508035751ba", "v0.0.11"
    ),
    "free-disk-space": ActionPin(
        "jlumbroso/free-disk-space", "54081f138730dfa15788a46383842cd2f914a1be", "v1.3.1"
    ),
    "setup-micromamba": ActionPin(
        "mamba-org/setup-micromamba", "d7c9bd84e824b79d2af72a2d4196c7f4300d3476", "v3.0.0"
    ),
}


@dataclass(frozen=True)
class CiConfig:
    """One .ci_support file: its name, the split-key values it holds, and its build plan."""

    name: str
    selection: dict[str, str]
    plan: Plan


def recipe_order(configs: tuple[CiConfig, ...]) -> list[str]:
    """Recipes in the order their first package appears in the plans."""
    return list(dict.fromkeys(b.output.recipe for c in configs for b in c.plan.builds))


def recipe_needs(configs: tuple[CiConfig, ...]) -> dict[str, list[str]]:
    """For each recipe, the other recipes whose packages its packages need (from the plans)."""
    order = recipe_order(configs)
    needs: dict[str, set[str]] = {recipe: set() for recipe in order}
    for config in configs:
        builds = config.plan.builds
        for build in builds:
            for position in build.needs:
                needed = builds[position].output.recipe
                if needed != build.output.recipe:
                    needs[build.output.recipe].add(needed)
    return {recipe: sorted(needs[recipe], key=order.index) for recipe in order}


def render_workflow(configs: tuple[CiConfig, ...], forge: ForgeConfig) -> str:
    """The workflow file's text; the same inputs always give the same text."""
    jobs: dict[str, Any] = {}
    needs = recipe_needs(configs)
    self_hosted = self_hosted_builds(configs, forge)
    if self_hosted:
        jobs[RUNNERS_JOB] = _runners_job(self_hosted, forge)
    for recipe in recipe_order(configs):
        # Jobs that wait for no other build wait for the runner check; the rest follow them.
        first = (RUNNERS_JOB,) if self_hosted and not needs[recipe] else ()
        jobs[recipe] = _build_job(recipe, needs[recipe], configs, forge, waits_for=first)
    jobs["test"] = _test_job(configs, forge, list(needs))
    jobs["gpu"] = _gpu_job(configs, forge, list(needs))
    if forge.upload_packages:
        jobs["publish"] = _publish_job(forge, [*needs, "test"])
    workflow = {
        "name": "build",
        "on": {
            "push": {"branches": [forge.upload_on_branch]},
            "pull_request": None,
            "workflow_dispatch": None,
        },
        # Nothing by default; each job asks for what it needs.
        "permissions": {},
        "concurrency": {
            "group": "${{ github.workflow }}-${{ github.ref }}",
            "cancel-in-progress": forge.cancel_in_progress,
        },
        "jobs": jobs,
    }
    header = (
        "# Generated by `pascal-forge rerender` from conda_build_config.yaml, conda-forge.yml and\n"
        "# the recipes; do not edit: change those and rerender (a test fails while this is stale).\n"
    )
    return header + _annotate_pins(yaml.dump(workflow, Dumper=_Dumper, sort_keys=False, width=1000))


def self_hosted_builds(configs: tuple[CiConfig, ...], forge: ForgeConfig) -> dict[str, tuple[str, ...]]:
    """The build jobs that run on self-hosted runners, with the labels each asks for."""
    return {
        recipe: forge.job_for(recipe).runs_on
        for recipe in recipe_order(configs)
        if "self-hosted" in forge.job_for(recipe).runs_on
    }


def self_hosted_notice(self_hosted: dict[str, tuple[str, ...]]) -> str:
    """What an operator must do before the workflow can run, in one paragraph."""
    wanted = "; ".join(f"{recipe} on [{', '.join(labels)}]" for recipe, labels in self_hosted.items())
    return (
        f"the workflow builds {wanted}: register such a runner, then set the repository variable "
        f"{SELF_HOSTED_VARIABLE} to true; until then its first job fails at once. Or point "
        "pascal_forge.recipes.<recipe>.runs_on in conda-forge.yml at a runner you have and rerender "
        "(README, section CI)."
    )


def _runners_job(self_hosted: dict[str, tuple[str, ...]], forge: ForgeConfig) -> dict:
    # GitHub queues a job for a label no runner has for up to a day, then cancels it; this
    # job runs on a hosted runner in seconds and stops the whole run with the reason instead.
    return {
        "name": "self-hosted build runners are registered",
        "runs-on": _runner(forge.default_job.runs_on),
        "timeout-minutes": 5,
        "permissions": {},
        "steps": [
            {
                "name": "Check the repository variable",
                "env": {"REGISTERED": f"${{{{ vars.{SELF_HOSTED_VARIABLE} }}}}"},
                "run": (
                    'if [ "$REGISTERED" != "true" ]; then\n'
                    f"  echo '::error::{self_hosted_notice(self_hosted)}'\n"
                    "  exit 1\n"
                    "fi"
                ),
            }
        ],
    }


def _matrix(configs: tuple[CiConfig, ...]) -> dict[str, Any]:
    return {"include": [{"config": c.name, **c.selection} for c in configs]}


def _cuda_expression(configs: tuple[CiConfig, ...]) -> str | None:
    keys = set().union(*(c.selection for c in configs)) if configs else set()
    return "${{ matrix.cuda_compiler_version }}" if "cuda_compiler_version" in keys else None


def _build_job(
    recipe: str,
    needs: list[str],
    configs: tuple[CiConfig, ...],
    forge: ForgeConfig,
    *,
    waits_for: tuple[str, ...] = (),
) -> dict:
    """One recipe's job; `needs` are the build jobs whose packages it takes, `waits_for` the rest."""
    settings = forge.job_for(recipe)
    env = {"CONFIG": "${{ matrix.config }}", "RECIPE": recipe}
    cuda = _cuda_expression(configs)
    if cuda:
        # No GPU on the builders: tell the solver which CUDA driver to assume.
        env["CONDA_OVERRIDE_CUDA"] = cuda
    steps: list[dict] = [_checkout()]
    if settings.free_disk_space:
        steps.append(_free_disk_space())
    steps += _tool_steps(forge)
    if settings.sccache:
        steps += _sccache_steps()
        env.update(_sccache_env())
    if needs:
        steps += _fetch_channel_steps("${{ matrix.config }}")
    else:
        steps.append({"name": "Start an empty channel", "run": f"mkdir -p {CHANNEL_DIR}/noarch"})
    steps += [
        # pascal-forge build runs each package's recipe tests (no GPU needed) before the
        # package enters the channel, so a package that fails them is never uploaded.
        {"name": f"Build and test {recipe}", "run": build_command(forge)},
        {
            "name": "Upload the build logs",
            "if": "${{ !cancelled() }}",
            "uses": ACTIONS["upload-artifact"].uses,
            "with": {
                "name": f"logs-{recipe}-${{{{ matrix.config }}}}",
                "path": BUILD_LOGS,
                "if-no-files-found": "ignore",
                "retention-days": forge.artifact_retention_days,
            },
        },
        {
            "name": "Collect the new packages",
            "run": f'.ci/job-packages.sh stage -c "$CONFIG" -r "$RECIPE" -o {STAGING_DIR}',
        },
        {
            "name": "Upload the new packages",
            "uses": ACTIONS["upload-artifact"].uses,
            "with": {
                "name": f"channel-{recipe}-${{{{ matrix.config }}}}",
                "path": STAGING_DIR,
                "if-no-files-found": "error",
                "retention-days": forge.artifact_retention_days,
            },
        },
    ]
    job: dict[str, Any] = {"name": f"{recipe} (${{{{ matrix.config }}}})"}
    if waits_for or needs:
        job["needs"] = [*waits_for, *needs]
    job.update(_placement(settings))
    job["permissions"] = {"contents": "read"}
    job["strategy"] = {"fail-fast": False, "matrix": _matrix(configs)}
    job["env"] = env
    job["steps"] = steps
    return job


def build_command(forge: ForgeConfig) -> str:
    """The command a build job runs: its recipe, for its config, into the channel so far."""
    sources = "".join(f" --source-channel {channel}" for channel in forge.source_channels)
    config = '".ci_support/${CONFIG}.yaml"'
    return f'pascal-forge build -m {config} --channel {CHANNEL_DIR}{sources} --only "$RECIPE"'


def _test_job(configs: tuple[CiConfig, ...], forge: ForgeConfig, needs: list[str]) -> dict:
    package = forge.test_package
    include = []
    for config in configs:
        pythons = sorted({b.output.python for b in config.plan.builds if b.output.python}, key=version_key)
        # Each config is one stack: its entries expect that stack's versions, not another's.
        common = {
            "config": config.name,
            **config.selection,
            "cuda_arch_list": _arch_list(config),
            "expected_versions": module_versions(config),
        }
        include += [{**common, "python": py} for py in pythons]
    env = {
        "CONFIG": "${{ matrix.config }}",
        "CUDA_ARCH_LIST": "${{ matrix.cuda_arch_list }}",
        "EXPECTED_VERSIONS": "${{ matrix.expected_versions }}",
    }
    checks = '--arch "$CUDA_ARCH_LIST" "${expected[@]}"'
    cuda = _cuda_expression(configs)
    if cuda:
        env["CONDA_OVERRIDE_CUDA"] = cuda
        checks = f'--cuda "$CONDA_OVERRIDE_CUDA" {checks}'
    return {
        "name": f"install {package} (${{{{ matrix.config }}}}, Python ${{{{ matrix.python }}}})",
        "needs": needs,
        "runs-on": _runner(forge.default_job.runs_on),
        "timeout-minutes": forge.test_timeout_minutes,
        "permissions": {"contents": "read"},
        "strategy": {"fail-fast": False, "matrix": {"include": include}},
        "env": env,
        "steps": [
            _checkout(),
            *_fetch_channel_steps("${{ matrix.config }}", setup_python=forge.build_python),
            _micromamba(package, "${{ matrix.python }}", forge),
            {
                "name": "pip check",
                "run": "micromamba run -n pascal-test python -m pip check",
            },
            {
                "name": "Import checks",
                "run": (
                    'read -ra expected <<< "$EXPECTED_VERSIONS"\n'
                    f"micromamba run -n pascal-test python .ci/check-install.py {checks}"
                ),
            },
        ],
    }


def _gpu_job(configs: tuple[CiConfig, ...], forge: ForgeConfig, needs: list[str]) -> dict:
    python = forge.gpu_python
    return {
        "name": "Pascal GPU (${{ matrix.config }})",
        "needs": [*needs, "test"],
        # Opt-in: only where an operator registered a Pascal runner and said so, and never
        # for pull requests, whose code must not run on a machine that outlives the job.
        "if": "vars.PASCAL_GPU_RUNNER == 'true' && github.event_name != 'pull_request'",
        "runs-on": list(forge.gpu_runs_on),
        "timeout-minutes": forge.gpu_timeout_minutes,
        "permissions": {"contents": "read"},
        "strategy": {"fail-fast": False, "matrix": _matrix(configs)},
        "env": {"CONFIG": "${{ matrix.config }}"},
        "steps": [
            _checkout(),
            *_fetch_channel_steps("${{ matrix.config }}", setup_python=forge.build_python),
            _rattler_build(forge),
            {
                "name": "Run the recipe tests on the GPU",
                # The GPU-only recipe tests run where they see a Pascal GPU; -g fails the step
                # unless each of them printed its marker line.
                "run": f'.ci/job-packages.sh test -c "$CONFIG" -p {python} -g {_channels_argument(forge)}',
            },
            _micromamba(forge.test_package, python, forge, persistent_runner=True),
            {
                "name": "Serve a tiny model and check a completion",
                "env": {"MODEL": forge.gpu_model},
                "run": 'micromamba run -n pascal-test bash .ci/gpu-smoke.sh "$MODEL"',
            },
        ],
    }


def _publish_job(forge: ForgeConfig, needs: list[str]) -> dict:
    return {
        "name": "publish the channel",
        "needs": needs,
        "if": f"github.event_name == 'push' && github.ref == 'refs/heads/{forge.upload_on_branch}'",
        "runs-on": _runner(forge.default_job.runs_on),
        "timeout-minutes": forge.publish_timeout_minutes,
        # A protected environment holds the upload secrets, so only this job, on the main
        # branch, can read them.
        "environment": forge.publish_environment,
        "permissions": {"contents": "read"},
        "steps": [
            _checkout(),
            *_fetch_channel_steps("*", setup_python=forge.build_python),
            {
                "name": "Publish the channel",
                # The target and the credential its service needs; pascal-forge publish names
                # a missing one before uploading anything, and never prints them.
                "env": {"PASCAL_FORGE_PUBLISH_TO": "${{ vars.PASCAL_FORGE_PUBLISH_TO }}"}
                | {name: f"${{{{ secrets.{name} }}}}" for name in PUBLISH_SECRETS},
                "run": (
                    'if [ -z "$PASCAL_FORGE_PUBLISH_TO" ]; then\n'
                    '  echo "::error::set the repository variable PASCAL_FORGE_PUBLISH_TO"\n'
                    "  exit 1\n"
                    "fi\n"
                    f'pascal-forge publish --channel {CHANNEL_DIR} --to "$PASCAL_FORGE_PUBLISH_TO"'
                ),
            },
        ],
    }


def _placement(settings: RecipeJob) -> dict:
    return {"runs-on": _runner(settings.runs_on), "timeout-minutes": settings.timeout_minutes}


def _runner(labels: tuple[str, ...]) -> str | list[str]:
    return labels[0] if len(labels) == 1 else list(labels)


def _checkout() -> dict:
    return {
        "name": "Check out the recipes",
        "uses": ACTIONS["checkout"].uses,
        "with": {"persist-credentials": False},
    }


def _free_disk_space() -> dict:
    # The pytorch build tree and the CUDA packages need tens of GB; the hosted image's
    # Android, .NET and Haskell tools are what can go. Swap stays: the link steps use it.
    return {
        "name": "Free disk space for the C++/CUDA build",
        "uses": ACTIONS["free-disk-space"].uses,
        "with": {"tool-cache": False, "swap-storage": False},
    }


def _tool_steps(forge: ForgeConfig) -> list[dict]:
    # pascal-forge drives rattler-build's engine through py-rattler-build, the Python
    # package the rattler-build project publishes; pip installs it with pascal-forge.
    return [
        {
            "name": "Set up Python",
            "uses": ACTIONS["setup-python"].uses,
            "with": {"python-version": forge.build_python},
        },
        {"name": "Install pascal-forge", "run": "python -m pip install -e ."},
    ]


def _sccache_steps() -> list[dict]:
    return [
        {"name": "Set up sccache for the C++/CUDA compiles", "uses": ACTIONS["sccache"].uses},
        {
            # rattler-build runs build scripts in a clean environment without the cache
            # service's credentials; a server started here has them, and the compilers'
            # sccache clients inside the build only talk to it.
            "name": "Start the sccache server",
            "run": "sccache --start-server\nsccache --show-stats",
        },
    ]


def _rattler_build(forge: ForgeConfig) -> dict:
    return {
        "name": "Install rattler-build",
        "uses": ACTIONS["rattler-build"].uses,
        "with": {"rattler-build-version": forge.rattler_build_version, "setup-only": True},
    }


def _sccache_env() -> dict[str, str]:
    # CMake (triton's LLVM, pytorch, vLLM) takes the launcher from these once the recipe
    # forwards them into the build; the cache lives in GitHub's cache service.
    return {
        "SCCACHE_GHA_ENABLED": "true",
        # Stay up through the long stretches without compiles (solves, downloads, tests).
        "SCCACHE_IDLE_TIMEOUT": "0",
        "CMAKE_C_COMPILER_LAUNCHER": "sccache",
        "CMAKE_CXX_COMPILER_LAUNCHER": "sccache",
        "CMAKE_CUDA_COMPILER_LAUNCHER": "sccache",
    }


def _fetch_channel_steps(config: str, *, setup_python: str | None = None) -> list[dict]:
    steps = []
    if setup_python:
        steps += [
            {
                "name": "Set up Python",
                "uses": ACTIONS["setup-python"].uses,
                "with": {"python-version": setup_python},
            },
            {"name": "Install pascal-forge", "run": "python -m pip install -e ."},
        ]
    steps += [
        {
            "name": "Fetch the packages built so far",
            "uses": ACTIONS["download-artifact"].uses,
            "with": {"pattern": f"channel-*-{config}", "path": CHANNEL_DIR, "merge-multiple": True},
        },
        {"name": "Index the channel", "run": f"python .ci/index-channel.py {CHANNEL_DIR}"},
    ]
    return steps


def _micromamba(package: str, python: str, forge: ForgeConfig, *, persistent_runner: bool = False) -> dict:
    channels = [f"file://${{{{ github.workspace }}}}/{CHANNEL_DIR}", *forge.source_channels]
    condarc = yaml.safe_dump(
        {"channels": channels, "channel_priority": forge.channel_priority}, sort_keys=False
    )
    return {
        "name": f"Install {package} from the new channel",
        "uses": ACTIONS["setup-micromamba"].uses,
        "with": {
            "environment-name": "pascal-test",
            "create-args": f"{package} python={python} pip",
            "condarc": condarc,
            # A self-hosted runner keeps its disk between jobs: leave no environment behind.
            "post-cleanup": "environment" if persistent_runner else "none",
        },
    }


def _channels_argument(forge: ForgeConfig) -> str:
    return " ".join(f"-s {channel}" for channel in forge.source_channels)


def module_versions(config: CiConfig) -> str:
    """MODULE==VERSION for each package of `config`'s stack that the import checks know."""
    versions: dict[str, set[str]] = {}
    for build in config.plan.builds:
        module = MODULES.get(build.output.name)
        if module:
            versions.setdefault(module, set()).add(build.output.version)
    several = {module: sorted(found) for module, found in versions.items() if len(found) > 1}
    if several:
        raise PascalForgeError(
            f".ci_support/{config.name}.yaml builds more than one version of {several}; "
            "split_variants_by in conda-forge.yml must give each config one stack"
        )
    return " ".join(f"{module}=={found.pop()}" for module, found in sorted(versions.items()))


def _arch_list(config: CiConfig) -> str:
    """The one cuda_arch_list the config's builds were rendered with."""
    found = {
        b.output.variant["cuda_arch_list"] for b in config.plan.builds if "cuda_arch_list" in b.output.variant
    }
    if len(found) != 1:
        raise PascalForgeError(
            f".ci_support/{config.name}.yaml: expected one cuda_arch_list among its builds, found "
            f"{sorted(found) or 'none'}"
        )
    return found.pop()


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (run scripts, condarc) so the file reads like YAML."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
_USES = re.compile(r"^(\s*(?:- )?uses: )(\S+)$", re.MULTILINE)


def _annotate_pins(text: str) -> str:
    tags = {pin.uses: pin.tag for pin in ACTIONS.values()}
    return _USES.sub(lambda m: f"{m.group(1)}{m.group(2)} # {tags[m.group(2)]}", text)
