"""A newcomer's first hour, run for real: a fresh clone, a fresh venv, the README's set-up
command exactly as README.md writes it, then the README's quick-test command.

CI runs the same two commands, from the README, on its own clean clone (.ci/run), and so
skips this test, which would repeat that. Here the
quick-test command is narrowed to the test files that depend on what the set-up installs
(the workflow linters from npm, GNU patch, the test tools), so that the check costs minutes:
pip and npm reuse their caches and the machine's wheel sources.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.repo import REPO

# What the set-up must provide: tests/test_ci.py (actionlint, the schema validator, zizmor,
# shellcheck), tests/test_patches.py (GNU patch), tests/test_first_hour.py (the tool itself).
SET_UP_DEPENDENT_TESTS = ("tests/test_ci.py", "tests/test_patches.py", "tests/test_first_hour.py")


def readme_command(name: str) -> str:
    """The README's command `name`, read the way .ci/run reads it."""
    result = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "readme_command.py"), name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.rstrip("\n")


def _outside_any_venv() -> dict[str, str]:
    """This environment minus the test run's venv, as a newcomer's shell would be."""
    env = dict(os.environ)
    venv = env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    if venv:
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(venv))
    return env


def test_the_readme_names_its_set_up_and_quick_tests() -> None:
    set_up = readme_command("set-up")
    assert "pip install -e '.[test]'" in set_up and "npm ci --prefix .ci" in set_up
    assert "vllm-checks" not in set_up, "the quick tests must not need the slow checks' torch"
    assert readme_command("quick-tests") == 'pytest -m "not slow"'


def test_ci_runs_the_readmes_commands_not_its_own() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert "readme set-up" in script and "readme quick-tests" in script
    assert "npm ci" not in script, "npm ci belongs in the README's set-up, which CI runs"


def test_the_slow_checks_torch_is_the_cpu_wheel() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "torch==2.13.0+cpu" in extras["vllm-checks"]
    assert not any(r.startswith("torch") for r in extras["test"])


@pytest.mark.slow
def test_a_fresh_clone_passes_the_readmes_quick_tests_after_the_readmes_set_up(tmp_path: Path) -> None:
    clone = tmp_path / "pascal-forge"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = _outside_any_venv()
    set_up = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_command("set-up")],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert set_up.returncode == 0, (
        f"the README's set-up failed:\n{set_up.stdout[-3000:]}{set_up.stderr[-3000:]}"
    )
    quick = f". .venv/bin/activate && {readme_command('quick-tests')} -q {' '.join(SET_UP_DEPENDENT_TESTS)}"
    tests = subprocess.run(
        ["bash", "-c", quick], cwd=clone, env=env, capture_output=True, text=True, check=False
    )
    assert tests.returncode == 0, (
        f"the README's quick tests failed:\n{tests.stdout[-5000:]}{tests.stderr[-2000:]}"
    )
