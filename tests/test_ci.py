"""CI generation: .ci_support/ and the workflow follow the variant matrix and the build plan,
pass actionlint, the workflow schema, zizmor and shellcheck, and each check can fail."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml
from rattler_build import Stage0Recipe, VariantConfig
from rattler_build.render import RenderConfig
from support.ci import (
    checked_versions,
    copy_repo,
    job_instances,
    load_workflow,
    run_actionlint,
    run_blocks,
    run_shellcheck,
    run_zizmor,
    stack_versions,
    workflow_problems,
)
from support.repo import REPO, committed_text

from pascal_forge.ci.bump_workflow import BUMP_WORKFLOW_PATH
from pascal_forge.ci.forge_config import ForgeConfigError, load_forge_config
from pascal_forge.ci.rerender import CI_SUPPORT, StaleError, check, rerender, stale_files, write
from pascal_forge.ci.workflow import (
    ACTIONS,
    GPU_TEST_MARKER,
    RUNNERS_JOB,
    SELF_HOSTED_VARIABLE,
    WORKFLOW_PATH,
    recipe_needs,
    recipe_order,
    self_hosted_builds,
)
from pascal_forge.cli import main
from pascal_forge.recipes.plan import make_plan

PASCAL_GATE = 'nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | grep -q "^6\\."'
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
CI_SCRIPTS = [*sorted((REPO / ".ci").glob("*.sh")), REPO / ".ci" / "run"]
BUILD_SCRIPTS = sorted((REPO / "recipes").glob("*/*.sh"))


@pytest.fixture(scope="module")
def rendered():
    return rerender(REPO)


@pytest.fixture(scope="module")
def forge():
    return load_forge_config(REPO / "conda-forge.yml")


@pytest.fixture
def repo_copy(tmp_path):
    return copy_repo(tmp_path / "repo")


def _runner_labels(forge) -> list[str]:
    jobs = [forge.default_job, *forge.recipe_jobs.values()]
    return sorted({label for job in jobs for label in job.runs_on} | set(forge.gpu_runs_on))


# --- .ci_support/ and the workflow are generated, in sync, and stable -----------------------


def test_generated_files_are_in_sync_with_the_variant_matrix(rendered):
    problems = stale_files(REPO, rendered)
    assert not problems, f"{'; '.join(problems)}: run `pascal-forge rerender` and commit the result"
    assert sorted(p.name for p in (REPO / CI_SUPPORT).glob("*.yaml")) == [
        "linux_64_cuda_compiler_version12.6vllm_version0.14.0.yaml",
        "linux_64_cuda_compiler_version12.6vllm_version0.34.0.yaml",
        "linux_64_cuda_compiler_version12.9vllm_version0.14.0.yaml",
        "linux_64_cuda_compiler_version12.9vllm_version0.34.0.yaml",
    ]


def test_a_changed_variant_matrix_makes_ci_support_stale(repo_copy):
    cbc = repo_copy / "conda_build_config.yaml"
    cbc.write_text(cbc.read_text().replace('- "12.6"', '- "12.8"'))
    with pytest.raises(StaleError) as error:
        check(repo_copy)
    message = str(error.value)
    assert ".ci_support/linux_64_cuda_compiler_version12.8vllm_version0.14.0.yaml is missing" in message
    assert (
        ".ci_support/linux_64_cuda_compiler_version12.6vllm_version0.14.0.yaml matches no variant" in message
    )
    assert f"{WORKFLOW_PATH} is out of date" in message


def test_rerender_check_exits_non_zero_naming_the_stale_file(repo_copy, capsys):
    assert main(["rerender", "--check", "--root", str(repo_copy)]) == 0
    stale = repo_copy / CI_SUPPORT / "linux_64_cuda_compiler_version12.9vllm_version0.14.0.yaml"
    stale.write_text(stale.read_text().replace("3.13.*", "3.14.*"))
    capsys.readouterr()
    assert main(["rerender", "--check", "--root", str(repo_copy)]) == 1
    assert (
        "stale: .ci_support/linux_64_cuda_compiler_version12.9vllm_version0.14.0.yaml is out of date"
        in capsys.readouterr().out
    )


def test_rerender_writes_everything_once_and_then_changes_nothing(repo_copy):
    shutil.rmtree(repo_copy / CI_SUPPORT)
    (repo_copy / WORKFLOW_PATH).unlink()
    (repo_copy / BUMP_WORKFLOW_PATH).unlink()
    first = write(repo_copy, rerender(repo_copy))
    assert sorted(first) == sorted(rerender(REPO).files)
    snapshot = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (repo_copy / CI_SUPPORT).iterdir()}
    assert write(repo_copy, rerender(repo_copy)) == []
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (repo_copy / CI_SUPPORT).iterdir()} == snapshot
    check(repo_copy)


def test_rerender_removes_a_ci_support_file_no_variant_needs(repo_copy):
    leftover = repo_copy / CI_SUPPORT / "linux_64_cuda_compiler_version12.4.yaml"
    leftover.write_text("cuda_compiler_version: ['12.4']\n")
    assert write(repo_copy, rerender(repo_copy)) == [f"{CI_SUPPORT}/{leftover.name}"]
    assert not leftover.exists()


def test_each_ci_support_file_builds_exactly_its_part_of_the_plan(rendered, tmp_path):
    for config in rendered.configs:
        from_file = make_plan(REPO / "recipes", REPO / CI_SUPPORT / f"{config.name}.yaml", tmp_path)
        assert [b.output.filename for b in from_file.builds] == [
            b.output.filename for b in config.plan.builds
        ]
        assert {b.output.cuda for b in from_file.builds} == {config.selection["cuda_compiler_version"]}
    whole = make_plan(REPO / "recipes", REPO / "conda_build_config.yaml", tmp_path)
    assert sorted(b.output.filename for c in rendered.configs for b in c.plan.builds) == sorted(
        b.output.filename for b in whole.builds
    )


def test_a_ci_support_file_that_drops_a_variant_builds_less(repo_copy, rendered, tmp_path):
    config = rendered.configs[0]
    path = repo_copy / CI_SUPPORT / f"{config.name}.yaml"
    raw = yaml.safe_load(path.read_text())
    # Drop the last Python of the current stack, and its column of every key zipped to it.
    group = next(g for g in raw["zip_keys"] if "python" in g)
    for key in group:
        raw[key] = raw[key][:-1]
    path.write_text(yaml.safe_dump(raw))
    narrowed = make_plan(repo_copy / "recipes", path, tmp_path)
    assert len(narrowed.builds) < len(config.plan.builds)


# --- the workflow follows the plan ----------------------------------------------------------


def test_workflow_jobs_and_matrix_match_the_plan(rendered, forge):
    workflow = load_workflow(REPO / WORKFLOW_PATH)
    assert workflow_problems(workflow, rendered.configs, forge.upload_on_branch) == []
    assert [j for j in workflow["jobs"] if j in ("triton", "pytorch", "vllm")] == [
        "triton",
        "pytorch",
        "vllm",
    ]
    assert workflow["jobs"]["vllm"]["needs"] == ["triton", "pytorch", "torchaudio", "torchvision"]


def test_a_workflow_out_of_plan_order_is_caught(rendered, forge):
    workflow = load_workflow(REPO / WORKFLOW_PATH)
    jobs = workflow["jobs"]
    jobs["vllm"]["needs"] = ["triton"]
    jobs["pytorch"]["strategy"]["matrix"]["include"].pop()
    jobs["test"]["strategy"]["matrix"]["include"].pop()
    jobs["publish"]["if"] = "always()"
    jobs["triton"]["env"]["TOKEN"] = "${{ secrets.PREFIX_API_KEY }}"
    download = next(
        s for s in jobs["test"]["steps"] if s.get("uses", "").startswith("actions/download-artifact@")
    )
    download["with"]["pattern"] = "channel-vllm-*"
    workflow["jobs"] = {"pytorch": jobs.pop("pytorch"), **jobs}
    problems = "\n".join(workflow_problems(workflow, rendered.configs, forge.upload_on_branch))
    assert "build jobs are ['pytorch', 'triton', 'torchaudio', 'torchvision', 'vllm']" in problems
    assert "job vllm does not wait for ['pytorch', 'torchaudio', 'torchvision']" in problems
    assert "job pytorch builds configs ['linux_64_cuda_compiler_version12.6vllm_version0.14.0'," in problems
    assert "the test job covers" in problems
    assert "publish runs under 'always()'" in problems
    assert "job triton reads secrets" in problems
    assert (
        "job test does not download channel-pytorch-linux_64_cuda_compiler_version12.9vllm_version0.34.0"
        in problems
    )


def _github_view_problems(workflow, configs, forge) -> list[str]:
    """What each job GitHub starts would receive, against its own .ci_support file and the plan."""
    problems = []
    needs = recipe_needs(configs)
    for recipe in needs:
        for instance in job_instances(workflow, recipe):
            config = instance["env"]["CONFIG"]
            where = f"{recipe} ({config})"
            if not (REPO / ".ci_support" / f"{config}.yaml").is_file():
                problems.append(f"{where}: no .ci_support/{config}.yaml")
            settings = forge.job_for(recipe)
            runs_on = instance["runs-on"]
            if (runs_on if isinstance(runs_on, list) else [runs_on]) != list(settings.runs_on):
                problems.append(f"{where} runs on {runs_on}, conda-forge.yml says {list(settings.runs_on)}")
            if instance["timeout-minutes"] != settings.timeout_minutes:
                problems.append(f"{where} stops after {instance['timeout-minutes']} minutes")
            if not set(needs[recipe]) <= set(instance.get("needs") or []):
                problems.append(f"{where} starts before {needs[recipe]}")
    for instance in job_instances(workflow, "test"):
        config = instance["env"]["CONFIG"]
        expected = stack_versions(REPO / ".ci_support" / f"{config}.yaml")
        received = checked_versions(instance)
        if received != expected:
            python = instance["matrix"]["python"]
            problems.append(f"test ({config}, Python {python}) checks {received}, its stack is {expected}")
    publish = workflow["jobs"].get("publish")
    if publish:
        downloads = [s for s in publish["steps"] if "download-artifact" in s.get("uses", "")]
        patterns = [step["with"]["pattern"] for step in downloads]
        for config in configs:
            if not any(fnmatch(f"channel-vllm-{config.name}", p) for p in patterns):
                problems.append(f"publish does not download the stack of {config.name}")
    return problems


def test_each_job_github_starts_gets_its_own_config_stack_runner_and_needs(rendered, forge):
    workflow = load_workflow(REPO / WORKFLOW_PATH)
    assert _github_view_problems(workflow, rendered.configs, forge) == []
    # Every stack is tested: 4 configs, each for its stack's 4 Pythons.
    tested = {(i["env"]["CONFIG"], i["matrix"]["python"]) for i in job_instances(workflow, "test")}
    assert len(tested) == 16


def test_one_set_of_versions_for_every_test_entry_is_caught(rendered, forge):
    # The workflow before this check existed gave every entry the last config's versions.
    workflow = load_workflow(REPO / WORKFLOW_PATH)
    entries = workflow["jobs"]["test"]["strategy"]["matrix"]["include"]
    for entry in entries:
        entry["expected_versions"] = entries[-1]["expected_versions"]
    workflow["jobs"]["pytorch"]["timeout-minutes"] = 360
    problems = "\n".join(_github_view_problems(workflow, rendered.configs, forge))
    assert "test (linux_64_cuda_compiler_version12.6vllm_version0.14.0, Python 3.10) checks" in problems
    assert "its stack is ['torch==2.9.1'," in problems
    assert "pytorch (linux_64_cuda_compiler_version12.9vllm_version0.14.0) stops after 360" in problems


def test_self_hosted_runners_are_checked_first_and_named(rendered):
    workflow = load_workflow(REPO / WORKFLOW_PATH)
    jobs = workflow["jobs"]
    runners = jobs[RUNNERS_JOB]
    assert runners["runs-on"] == "ubuntu-24.04" and runners["timeout-minutes"] <= 5
    # Every build job waits for the check, directly or through a job it needs.
    roots = [job for job in recipe_needs(rendered.configs) if not recipe_needs(rendered.configs)[job]]
    assert roots == ["triton"] and jobs["triton"]["needs"] == [RUNNERS_JOB]
    step = runners["steps"][0]
    assert step["env"]["REGISTERED"] == f"${{{{ vars.{SELF_HOSTED_VARIABLE} }}}}"
    outcomes = {
        registered: subprocess.run(
            ["bash", "-c", step["run"]], env={"REGISTERED": registered}, capture_output=True, text=True
        )
        for registered in ("", "true")
    }
    assert outcomes["true"].returncode == 0
    assert outcomes[""].returncode == 1
    assert "::error::the workflow builds pytorch on [self-hosted, linux, x64, cpu-8x32]" in (
        outcomes[""].stdout
    )
    assert rendered.notices and "pytorch on [self-hosted, linux, x64, cpu-8x32]" in rendered.notices[0]


def test_hosted_runners_only_need_no_runner_check_and_self_hosted_refuses_free_disk_space(repo_copy):
    path = repo_copy / "conda-forge.yml"
    settings = yaml.safe_load(path.read_text())
    settings["pascal_forge"]["recipes"]["pytorch"]["runs_on"] = "ubuntu-24.04"
    settings["pascal_forge"]["recipes"]["pytorch"]["timeout_minutes"] = 360
    path.write_text(yaml.safe_dump(settings))
    hosted = rerender(repo_copy)
    assert RUNNERS_JOB not in yaml.safe_load(hosted.files[WORKFLOW_PATH])["jobs"] and not hosted.notices
    settings["pascal_forge"]["recipes"]["pytorch"]["runs_on"] = ["self-hosted", "big"]
    settings["pascal_forge"]["recipes"]["pytorch"]["free_disk_space"] = True
    path.write_text(yaml.safe_dump(settings))
    with pytest.raises(ForgeConfigError, match="would delete that machine's own packages"):
        rerender(repo_copy)


NUMBER_WORDS = {3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}


def _readme_ci_problems(readme: str, configs, forge) -> list[str]:
    """Where the README's CI section says other than the workflow rerender writes."""
    start = readme.index("## Running the channel's CI")
    section = " ".join(readme[start : readme.index("\n## ", start + 1)].split())
    problems = []
    files = f"({len(configs)} files;"
    if files not in section:
        problems.append(f"the README does not say {files!r} of .ci_support")
    order = recipe_order(configs)
    if f"{NUMBER_WORDS[len(order)]} build jobs" not in section:
        problems.append(f"the README does not count {len(order)} build jobs")
    problems += [f"the README does not name the {r} job" for r in order if r not in section]
    for recipe in forge.recipe_jobs:
        minutes = f"{recipe} {forge.job_for(recipe).timeout_minutes} minutes"
        if minutes not in section and f"{recipe} {forge.job_for(recipe).timeout_minutes} on" not in section:
            problems.append(f"the README does not give {minutes!r}")
    for recipe, labels in self_hosted_builds(configs, forge).items():
        if ", ".join(labels) not in section or SELF_HOSTED_VARIABLE not in section:
            problems.append(f"the README does not say how to register {recipe}'s runner {list(labels)}")
    return problems


def test_the_readme_ci_section_says_what_the_workflow_does(rendered, forge):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert _readme_ci_problems(readme, rendered.configs, forge) == []


def test_twin_the_readme_before_this_review_described_another_workflow(rendered, forge):
    before = committed_text("ea1b55a", "README.md")
    problems = _readme_ci_problems(before, rendered.configs, forge)
    assert "the README does not count 5 build jobs" in problems
    assert "the README does not give 'pytorch 1200 minutes'" in problems
    assert any("runner ['self-hosted', 'linux', 'x64', 'cpu-8x32']" in p for p in problems)


def _dry_run_selection(root: Path, command: str, config: str, recipe: str) -> list[str]:
    """The package file names the job's own build command would build, asked with --dry-run."""
    env = {**os.environ, "CONFIG": config, "RECIPE": recipe, "COLUMNS": "250"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        # --no-preflight: conda-forge, which the preflight would solve against, is out of reach here.
        ["bash", "-c", f"{command} --dry-run --no-preflight"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines()]
    return [f"{row[1]}-{row[2]}-{row[3]}.conda" for row in rows if len(row) > 5 and row[-1] == "build"]


def test_each_build_job_command_builds_exactly_its_recipes_packages(repo_copy, rendered):
    workflow = load_workflow(repo_copy / WORKFLOW_PATH)
    for config in rendered.configs:
        for recipe in ("triton", "pytorch", "vllm"):
            command = next(
                s["run"] for s in workflow["jobs"][recipe]["steps"] if s.get("name", "").startswith("Build")
            )
            planned = [b.output.filename for b in config.plan.builds if b.output.recipe == recipe]
            assert _dry_run_selection(repo_copy, command, config.name, recipe) == planned


def test_the_heavy_builds_get_a_compiler_cache_disk_space_and_time(forge):
    jobs = load_workflow(REPO / WORKFLOW_PATH)["jobs"]
    for recipe in ("triton", "pytorch", "vllm"):
        uses = [step.get("uses", "") for step in jobs[recipe]["steps"]]
        assert any(u.startswith("mozilla-actions/sccache-action@") for u in uses), recipe
        assert jobs[recipe]["env"]["CMAKE_CUDA_COMPILER_LAUNCHER"] == "sccache"
        assert jobs[recipe]["timeout-minutes"] == forge.job_for(recipe).timeout_minutes
    steps = [step.get("name", "") for step in jobs["triton"]["steps"]]
    assert steps.index("Free disk space for the C++/CUDA build") < steps.index("Build and test triton")
    # Not on the self-hosted pytorch runner: the action would delete that machine's own packages.
    assert "Free disk space for the C++/CUDA build" not in [s.get("name") for s in jobs["pytorch"]["steps"]]
    # pytorch's C++/CUDA build needs a larger, self-hosted runner, as conda-forge's does.
    assert jobs["pytorch"]["timeout-minutes"] == 1200
    assert "self-hosted" in jobs["pytorch"]["runs-on"]


def test_pull_requests_build_and_test_but_never_publish():
    workflow = load_workflow(REPO / WORKFLOW_PATH)
    assert "pull_request" in workflow["on"]
    assert "pull_request_target" not in workflow["on"]
    assert workflow["permissions"] == {}
    publish = workflow["jobs"]["publish"]
    assert publish["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert publish["environment"] == "channel-publish"
    gpu = workflow["jobs"]["gpu"]
    assert "github.event_name != 'pull_request'" in gpu["if"]
    assert "self-hosted" in gpu["runs-on"] and "pascal" in gpu["runs-on"]


def test_conda_forge_yml_settings_for_an_unknown_recipe_are_refused(repo_copy):
    path = repo_copy / "conda-forge.yml"
    settings = yaml.safe_load(path.read_text())
    settings["pascal_forge"]["recipes"]["pytroch"] = {"timeout_minutes": 300}
    path.write_text(yaml.safe_dump(settings))
    with pytest.raises(ForgeConfigError, match="pascal_forge.recipes names pytroch, which is no recipe"):
        rerender(repo_copy)


def _pinned_engine() -> str:
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(pin.split("==")[1] for pin in pins if pin.startswith("py-rattler-build=="))


def test_ci_builds_with_the_rattler_build_that_pyproject_pins(repo_copy):
    settings = yaml.safe_load((REPO / "conda-forge.yml").read_text())
    assert settings["pascal_forge"]["rattler_build_version"] == f"v{_pinned_engine()}"
    # Without the key the default is the pinned engine too, not a release that goes stale.
    del settings["pascal_forge"]["rattler_build_version"]
    (repo_copy / "conda-forge.yml").write_text(yaml.safe_dump(settings))
    assert load_forge_config(repo_copy / "conda-forge.yml").rattler_build_version == f"v{_pinned_engine()}"


def test_conda_forge_yml_settings_reach_the_workflow(repo_copy):
    settings = yaml.safe_load((repo_copy / "conda-forge.yml").read_text())
    settings["pascal_forge"]["recipes"]["pytorch"]["timeout_minutes"] = 300
    settings["pascal_forge"]["recipes"]["pytorch"]["runs_on"] = ["self-hosted", "linux", "x64", "big"]
    settings["pascal_forge"]["gpu"]["runs_on"] = ["self-hosted", "p40"]
    settings["github_actions"]["upload_packages"] = False
    (repo_copy / "conda-forge.yml").write_text(yaml.safe_dump(settings))
    workflow = yaml.safe_load(rerender(repo_copy).files[WORKFLOW_PATH])
    jobs = workflow["jobs"]
    assert jobs["pytorch"]["timeout-minutes"] == 300
    assert jobs["pytorch"]["runs-on"] == ["self-hosted", "linux", "x64", "big"]
    assert jobs["triton"]["runs-on"] == "ubuntu-24.04"
    assert jobs["gpu"]["runs-on"] == ["self-hosted", "p40"]
    assert "publish" not in jobs


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s.update(conda_build_tool="conda-build"), "conda_build_tool: 'conda-build'"),
        (lambda s: s["providers"].update(linux_64="azure"), "providers: linux_64: 'azure'"),
        (
            lambda s: s["pascal_forge"]["recipes"]["triton"].update(timeout_minutes=600),
            "timeout_minutes: 600 on the GitHub-hosted runner ubuntu-24.04 exceeds GitHub's limit of 360",
        ),
        (
            lambda s: s["pascal_forge"]["gpu"].update(python=3.10),
            "pascal_forge.gpu.python: expected a quoted string",
        ),
        (
            lambda s: s["pascal_forge"]["recipes"]["vllm"].update(sccache="yes"),
            "pascal_forge.recipes.vllm.sccache: expected true or false, got 'yes'",
        ),
    ],
)
def test_conda_forge_yml_refuses_what_ci_cannot_honour(repo_copy, change, named):
    path = repo_copy / "conda-forge.yml"
    settings = yaml.safe_load(path.read_text())
    change(settings)
    path.write_text(yaml.safe_dump(settings))
    with pytest.raises(ForgeConfigError, match="conda-forge.yml") as error:
        load_forge_config(path)
    assert named in str(error.value)


# --- linters: each passes on ours and fails on a broken twin --------------------------------


def test_workflows_pass_actionlint_and_the_workflow_schema(forge):
    assert WORKFLOWS
    result = run_actionlint(WORKFLOWS, _runner_labels(forge))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(WORKFLOWS)} workflow file(s), 0 finding(s)" in result.stdout


BROKEN_WORKFLOW = """\
name: broken
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    timeout-minutes: soon
    steps:
      - run: echo "${{ matrix.missing }}"
      - uses: actions/checkout@v4
        bogus: 1
"""


def test_actionlint_and_the_schema_reject_a_broken_workflow(tmp_path, forge):
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN_WORKFLOW)
    result = run_actionlint([broken], _runner_labels(forge))
    assert result.returncode == 1
    assert 'property "missing" is not defined' in result.stdout
    assert 'unexpected key "bogus" for "step" section' in result.stdout
    assert "[schema]" in result.stdout


def test_an_unknown_runner_label_still_fails_actionlint(tmp_path):
    workflow = tmp_path / "labels.yml"
    workflow.write_text(
        "on: push\njobs:\n  a:\n    runs-on: [self-hosted, volta]\n    steps:\n      - run: 'true'\n"
    )
    result = run_actionlint([workflow], ["pascal"])
    assert result.returncode == 1
    assert 'label "volta" is unknown' in result.stdout


def test_workflows_pass_zizmor():
    result = run_zizmor(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


INSECURE_WORKFLOW = """\
name: insecure
on: pull_request
jobs:
  greet:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
"""


def test_zizmor_rejects_an_unpinned_action_and_an_injected_title(tmp_path):
    insecure = tmp_path / ".github" / "workflows" / "insecure.yml"
    insecure.parent.mkdir(parents=True)
    insecure.write_text(INSECURE_WORKFLOW)
    result = run_zizmor([insecure])
    assert result.returncode != 0
    report = result.stdout + result.stderr
    assert "unpinned-uses" in report
    assert "template-injection" in report
    assert "artipacked" in report


def test_every_action_is_pinned_to_a_commit_from_the_one_pin_table():
    pins = {pin.uses: pin.tag for pin in ACTIONS.values()}
    used = set()
    for workflow in WORKFLOWS:
        for line in workflow.read_text().splitlines():
            if line.strip().startswith(("uses:", "- uses:")):
                reference, _, comment = line.split("uses:", 1)[1].strip().partition(" # ")
                assert reference in pins, f"{workflow.name}: {reference} is not in workflow.ACTIONS"
                assert comment == pins[reference], f"{workflow.name}: {reference} is {pins[reference]}"
                used.add(reference)
    assert used == set(pins)


def test_build_scripts_ci_scripts_and_workflow_steps_pass_shellcheck():
    scripts = {str(p.relative_to(REPO)): p.read_text() for p in BUILD_SCRIPTS + CI_SCRIPTS}
    # triton, pytorch, vllm, torchvision and torchaudio.
    assert len(BUILD_SCRIPTS) == 6  # five build.sh and triton's GSan stand-in
    for workflow in WORKFLOWS:
        scripts.update(run_blocks(load_workflow(workflow), workflow.name))
    scripts.update(_gpu_test_scripts())
    assert run_shellcheck(scripts) == {}


def test_shellcheck_rejects_a_broken_script():
    findings = run_shellcheck({"broken.sh": "#!/usr/bin/env bash\nfiles=$(ls *.conda)\nrm $files\n"})
    assert "SC2086" in findings["broken.sh"]


# --- GPU-only recipe tests are marked for the Pascal runner ----------------------------------


def _gpu_test_scripts() -> dict[str, str]:
    """The GPU-only test scripts of every rendered output (those that print the GPU job's marker)."""
    variants = VariantConfig.from_yaml(
        (REPO / CI_SUPPORT / "linux_64_cuda_compiler_version12.9vllm_version0.34.0.yaml").read_text()
    )
    scripts = {}
    for recipe in sorted((REPO / "recipes").glob("*/recipe.yaml")):
        for variant in Stage0Recipe.from_file(recipe).render(variants, RenderConfig()):
            stage1 = variant.recipe.to_dict()
            for index, test in enumerate(stage1.get("tests") or []):
                script = test.get("script")
                lines = script.get("content") if isinstance(script, dict) else script
                if isinstance(lines, str):
                    lines = [lines]
                if lines and GPU_TEST_MARKER in "".join(lines):
                    name = f"{recipe.parent.name}/{stage1['package']['name']} tests[{index}]"
                    scripts[name] = "#!/usr/bin/env bash\n" + "\n".join(lines) + "\n"
    return scripts


def test_gpu_only_recipe_tests_announce_themselves_to_the_gpu_job():
    scripts = _gpu_test_scripts()
    recipes = {name.split("/")[0] for name in scripts}
    assert recipes == {"triton", "pytorch", "vllm"}
    for name, text in scripts.items():
        recipe = name.split("/")[0]
        # The marker is assembled at run time, so only a test that ran prints it whole.
        assert f"'{GPU_TEST_MARKER}', '{recipe}'" in text, name
        assert f"{GPU_TEST_MARKER} {recipe}" not in text, name
        # rattler-build runs tests in a clean environment: the gate must ask the hardware.
        assert f"if {PASCAL_GATE}; then" in text, name


def test_gpu_only_recipe_tests_skip_without_a_pascal_gpu():
    """Run here (no GPU, no nvidia-smi), each gated script does nothing and succeeds."""
    assert shutil.which("nvidia-smi") is None
    for name, text in _gpu_test_scripts().items():
        result = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=False)
        assert (result.returncode, result.stdout) == (0, ""), name


def test_the_pascal_gate_opens_only_for_compute_capability_6():
    for capability, opens in (("6.1", True), ("6.0", True), ("7.5", False), ("", False)):
        gate = PASCAL_GATE.replace(
            "nvidia-smi --query-gpu=compute_cap --format=csv,noheader", f"echo {capability}"
        )
        result = subprocess.run(
            ["bash", "-c", f"if {gate}; then echo open; fi"], capture_output=True, text=True
        )
        assert (result.stdout.strip() == "open") is opens, capability


def test_gpu_test_python_code_compiles():
    for name, text in _gpu_test_scripts().items():
        code = text.split('python -c "', 1)[1].rsplit('"', 1)[0]
        compile(code, name, "exec")


# --- the CI scripts -------------------------------------------------------------------------


def _planned_files(root: Path, config: str, recipe: str) -> list[Path]:
    plan = make_plan(root / "recipes", root / CI_SUPPORT / f"{config}.yaml", root / "channel")
    return [
        root / "channel" / b.output.subdir / b.output.filename
        for b in plan.builds
        if b.output.recipe == recipe
    ]


def _job_packages(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", ".ci/job-packages.sh", *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )


def test_job_packages_lists_and_stages_exactly_one_jobs_packages(repo_copy):
    config = "linux_64_cuda_compiler_version12.9vllm_version0.14.0"
    expected = _planned_files(repo_copy, config, "pytorch")
    # One stack: one libtorch, a pytorch for each of its four Pythons, one pytorch-gpu.
    names = [p.name.rsplit("-", 2)[0] for p in expected]
    assert names == ["libtorch"] + ["pytorch"] * 4 + ["pytorch-gpu"]
    for path in expected:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(path.name.encode())
    listed = _job_packages(repo_copy, "list", "-c", config, "-r", "pytorch")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [str(p.relative_to(repo_copy)) for p in expected]
    staged = _job_packages(repo_copy, "stage", "-c", config, "-r", "pytorch", "-o", "out")
    assert staged.returncode == 0, staged.stderr
    assert sorted((repo_copy / "out" / "linux-64").iterdir()) == sorted(
        repo_copy / "out" / "linux-64" / p.name for p in expected
    )
    one_python = _job_packages(repo_copy, "list", "-c", config, "-r", "pytorch", "-p", "3.12")
    assert len(one_python.stdout.split()) == 3  # libtorch, pytorch py312, pytorch-gpu


def test_job_packages_names_a_package_the_job_did_not_build(repo_copy):
    config = "linux_64_cuda_compiler_version12.6vllm_version0.14.0"
    expected = _planned_files(repo_copy, config, "triton")
    for path in expected[1:]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    result = _job_packages(repo_copy, "stage", "-c", config, "-r", "triton", "-o", "out")
    assert result.returncode == 1
    assert (
        f"{expected[0].relative_to(repo_copy)} is in the plan for {config} but was not built" in result.stderr
    )
    unknown = _job_packages(repo_copy, "list", "-c", "linux_64_cuda_compiler_version11.8")
    assert unknown.returncode == 2
    assert "run pascal-forge rerender" in unknown.stderr


def _build_tiny_package(tmp_path: Path) -> Path:
    recipe = tmp_path / "tiny" / "recipe.yaml"
    recipe.parent.mkdir(parents=True)
    recipe.write_text(
        "package: {name: pascal-ci-tiny, version: '1.0'}\n"
        "build:\n  noarch: generic\n  script: [mkdir -p $PREFIX/share, echo hi > $PREFIX/share/tiny.txt]\n"
    )
    output = tmp_path / "built"
    for variant in Stage0Recipe.from_file(recipe).render(VariantConfig(), RenderConfig()):
        variant.run_build(output_dir=output, channels=[])
    return next(output.glob("noarch/*.conda"))


def test_index_channel_makes_downloaded_packages_installable(tmp_path):
    package = _build_tiny_package(tmp_path)
    channel = tmp_path / "channel"
    (channel / "noarch").mkdir(parents=True)
    shutil.copy2(package, channel / "noarch" / package.name)
    result = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "index-channel.py"), str(channel)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    repodata = yaml.safe_load((channel / "noarch" / "repodata.json").read_text())
    assert list(repodata["packages.conda"]) == [package.name]

    from rattler import solve

    records = asyncio.run(solve([channel.as_uri()], ["pascal-ci-tiny"], platforms=["noarch"]))
    assert [r.name.normalized for r in records] == ["pascal-ci-tiny"]


def test_index_channel_refuses_a_missing_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "index-channel.py"), str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "is not a folder" in result.stderr


def _check_install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / ".ci" / "check-install.py"), *args], capture_output=True, text=True
    )


def test_check_install_accepts_the_installed_versions():
    version = importlib.metadata.version("pyyaml")
    result = _check_install(f"yaml=={version}")
    assert result.returncode == 0, result.stderr
    assert f"yaml {version}" in result.stdout


def test_check_install_names_a_wrong_version_and_a_missing_module():
    result = _check_install("yaml==0.0", "torch_that_is_not_there==2.9.1")
    assert result.returncode == 1
    assert "yaml reports version" in result.stderr and "expected 0.0" in result.stderr
    assert "import torch_that_is_not_there failed: ModuleNotFoundError" in result.stderr
