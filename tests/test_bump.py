"""`pascal-forge bump` offline: a real simple index on 127.0.0.1, the real pypi-simple client,
real GNU patch, and recipes in the two-stack layout (patches/<version>/, version blocks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from support.index import closed_port_url, make_wheel, serve_index, sha256, write_index
from support.repo import REPO, VARIANT_CONFIG

from pascal_forge.bump.check import UNCHECKABLE_EXIT, RequirementChange, check_bump, requirement_changes
from pascal_forge.bump.report import terminal_view, to_markdown
from pascal_forge.ci.bump_workflow import BUMP_WORKFLOW_PATH, REPORT_FILE
from pascal_forge.cli import main
from pascal_forge.errors import RecipeError
from pascal_forge.recipes.patches import PatchStatus, assess_series, patch_check_targets, unpack_artifact
from pascal_forge.recipes.recipe import PLACEHOLDER, Recipe, check_placeholders
from pascal_forge.upstream.index import INDEX_ENV

OLD_CORE = "".join(f"line {n}\n" for n in range(1, 31))
# 1.1.0 moved everything down three lines and made 0002's change itself.
NEW_CORE = "# one\n# two\n# three\n" + OLD_CORE.replace("line 25\n", "line twenty-five\n")

OFFSET_PATCH = """
    From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
    Subject: [PATCH 1/2] change line 10

    ---
    diff --git a/src/demo/core.py b/src/demo/core.py
    --- a/src/demo/core.py
    +++ b/src/demo/core.py
    @@ -9,3 +9,3 @@
     line 9
    -line 10
    +line ten
     line 11
"""
UPSTREAM_PATCH = """
    From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
    Subject: [PATCH 2/2] change line 25

    ---
    diff --git a/src/demo/core.py b/src/demo/core.py
    --- a/src/demo/core.py
    +++ b/src/demo/core.py
    @@ -24,3 +24,3 @@
     line 24
    -line 25
    +line twenty-five
     line 26
"""
PATCHES = {"0001-change-line-10.patch": OFFSET_PATCH, "0002-change-line-25.patch": UPSTREAM_PATCH}


def _recipe_text(version: str, wheel: Path, sdist: Path, pypi: str, patches: list[str]) -> str:
    listed = "\n".join(["        patches:"] + [f"          - patches/{version}/{name}" for name in patches])
    listed = listed if patches else ""
    return textwrap.dedent(
        f"""\
        context:
          version: "{version}"

        package:
          name: {pypi}
          version: ${{{{ version }}}}

        source:
          - if: version == "{version}"
            then:
              # the released sdist: bump can read its sha256 from the index
              - url: https://index.invalid/files/{pypi}-${{{{ version }}}}.tar.gz
                sha256: {sha256(sdist)}
        SERIES
              # a repository archive by commit: nothing here can know the next one
              - url: https://forge.invalid/archive/{"ab" * 20}.tar.gz
                sha256: {"cd" * 32}
                target_directory: vendored

        build:
          noarch: python

        extra:
          patch-check:
            "{version}":
              pypi: {pypi}
              file: {wheel.name}
              sha256: {sha256(wheel)}
              path-map:
                src/demo/: demo/
        """
    ).replace("SERIES\n", listed + "\n" if listed else "")


@pytest.fixture
def world(tmp_path, monkeypatch):
    """An index with demo 1.0.0 and 1.1.0 (and basepkg), a recipes folder carrying demo 1.0.0."""
    dist = tmp_path / "dist"
    demo_old = make_wheel(dist, "demo", "1.0.0", {"demo/core.py": OLD_CORE}, ["basepkg==1.0.0", "gonedep"])
    demo_new = make_wheel(dist, "demo", "1.1.0", {"demo/core.py": NEW_CORE}, ["basepkg==2.0.0", "newdep>=1"])
    sdists = {}
    for version in ("1.0.0", "1.1.0"):
        sdists[version] = dist / f"demo-{version}.tar.gz"
        sdists[version].write_bytes(f"sdist {version}".encode())
    base = make_wheel(dist, "basepkg", "1.0.0", {"basepkg/__init__.py": ""}, [])
    write_index(
        tmp_path / "index",
        {"demo": [demo_old, demo_new, *sdists.values()], "basepkg": [base]},
    )
    recipes = tmp_path / "recipes"
    demo = recipes / "demo"
    (demo / "patches" / "1.0.0").mkdir(parents=True)
    for name, body in PATCHES.items():
        (demo / "patches" / "1.0.0" / name).write_text(textwrap.dedent(body).lstrip())
    (demo / "recipe.yaml").write_text(_recipe_text("1.0.0", demo_old, sdists["1.0.0"], "demo", list(PATCHES)))
    (recipes / "base" / "patches" / "1.0.0").mkdir(parents=True)
    (recipes / "base" / "recipe.yaml").write_text(_recipe_text("1.0.0", base, sdists["1.0.0"], "basepkg", []))
    monkeypatch.setenv("PASCAL_FORGE_CACHE", str(tmp_path / "cache"))
    with serve_index(tmp_path / "index") as url:
        monkeypatch.setenv(INDEX_ENV, url)
        yield recipes


def _bump(recipes: Path, *args: str) -> int:
    return main(["bump", "--recipes", str(recipes), *args])


def test_check_reports_each_patch_in_series_order_and_changes_nothing(world, tmp_path, capsys):
    before = {p: p.read_bytes() for p in world.rglob("*") if p.is_file()}
    report_file = tmp_path / "report.md"
    assert _bump(world, "demo", "--check", "--report", str(report_file)) == 1
    assert {p: p.read_bytes() for p in world.rglob("*") if p.is_file()} == before
    markdown = report_file.read_text()
    assert "| 1 | `0001-change-line-10.patch` | applies with offset 3 (refreshed) |" in markdown
    assert "| 2 | `0002-change-line-25.patch` | already upstream (it reverse-applies) |" in markdown
    out = capsys.readouterr().out
    assert "applies with offset 3 (refreshed)" in out and "already upstream" in out


def test_version_defaults_to_the_newest_release_on_the_index(world):
    report = check_bump(world, "demo")
    assert (report.old_version, report.new_version) == ("1.0.0", "1.1.0")
    assert report.artifact.filename == "demo-1.1.0-py3-none-any.whl"
    assert [o.status for o in report.outcomes] == [PatchStatus.OFFSET, PatchStatus.UPSTREAM]


def test_pins_on_our_recipes_and_new_requirement_lines_are_reported(world):
    report = check_bump(world, "demo", "1.1.0")
    [pin] = report.pins
    assert (pin.requirement, pin.recipe, pin.carried, pin.satisfied) == (
        "basepkg==2.0.0",
        "base",
        ("1.0.0",),
        False,
    )
    assert report.also_bump == (pin,)
    assert report.new_requirements == (
        RequirementChange(project="basepkg", old="basepkg==1.0.0", new="basepkg==2.0.0"),
        RequirementChange(project="newdep", old=None, new="newdep>=1"),
    )
    assert report.dropped_requirements == ("gonedep",)


def test_new_requirement_lines_are_listed_not_only_counted(world, tmp_path, capsys):
    """The terminal and the Markdown name each line, beside the line it replaces."""
    report_file = tmp_path / "report.md"
    _bump(world, "demo", "1.1.0", "--check", "--report", str(report_file))
    out = capsys.readouterr().out
    assert "2 requirement line(s) new since 1.0.0:" in out
    assert "basepkg==2.0.0 (was basepkg==1.0.0)" in out and "newdep>=1 (new)" in out
    assert "dropped: gonedep" in out
    markdown = report_file.read_text()
    assert "- `basepkg==2.0.0` (was `basepkg==1.0.0`)" in markdown
    assert "- `newdep>=1` (new project)" in markdown and "- `gonedep`" in markdown


def test_twin_unchanged_requirements_list_nothing():
    """Twin: the same lines in both releases give no change, so the listing above is not a dump."""
    lines = ["basepkg==2.0.0", "newdep>=1; python_version > '3.11'"]
    assert requirement_changes(lines, lines) == ([], [])
    changes, dropped = requirement_changes(lines[:1], lines)
    assert [c.describe() for c in changes] == ["newdep>=1; python_version > '3.11' (new)"] and dropped == []


def test_twin_a_pin_the_recipes_already_meet_asks_for_no_other_bump(world):
    base = world / "base" / "recipe.yaml"
    base.write_text(base.read_text().replace('"1.0.0"', '"2.0.0"'))
    report = check_bump(world, "demo", "1.1.0")
    assert [p.satisfied for p in report.pins] == [True]
    assert report.also_bump == ()


def _stack_from_variant_config(world: Path, versions: list[str]) -> None:
    """The demo recipe takes its version from conda_build_config.yaml, as vllm's does."""
    recipe = world / "demo" / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace('version: "1.0.0"', "version: ${{ demo_version }}", 1))
    (world.parent / "conda_build_config.yaml").write_text(
        "demo_version:\n" + "".join(f'  - "{v}"\n' for v in versions)
    )


def test_bump_says_the_stack_does_not_name_the_new_version_yet(world, capsys):
    _stack_from_variant_config(world, ["1.0.0", "1.0.0"])
    _bump(world, "demo", "1.1.0")
    out = " ".join(capsys.readouterr().out.split())
    assert "next, by hand: conda_build_config.yaml's demo_version names 1.0.0, not 1.1.0" in out
    assert "pascal-forge rerender" in out and "patches/1.0.0/" in out


def test_twin_a_stack_that_names_the_new_version_gets_no_such_step(world, capsys):
    _stack_from_variant_config(world, ["1.0.0", "1.1.0"])
    _bump(world, "demo", "1.1.0")
    assert "next, by hand" not in capsys.readouterr().out


def test_bump_adds_the_version_refreshes_the_offset_and_leaves_the_upstream_patch(world, capsys):
    assert _bump(world, "demo", "1.1.0") == 1
    recipe = Recipe("demo", world / "demo")
    new_folder = world / "demo" / "patches" / "1.1.0"
    assert sorted(p.name for p in new_folder.iterdir()) == sorted(PATCHES)
    refreshed = (new_folder / "0001-change-line-10.patch").read_text()
    assert "@@ -12,3 +12,3 @@" in refreshed
    targets = patch_check_targets(recipe)
    assert sorted(targets) == ["1.0.0", "1.1.0"]
    new_wheel = targets["1.1.0"].artifact
    assert new_wheel.filename == "demo-1.1.0-py3-none-any.whl"
    # The new series applies to the new wheel: the refreshed patch without any offset.
    tree = unpack_artifact(targets["1.1.0"], world.parent / "tree")
    outcomes = assess_series(recipe.patch_series("1.1.0"), tree, targets["1.1.0"].path_map)
    assert [o.status for o in outcomes] == [PatchStatus.APPLIES, PatchStatus.UPSTREAM]
    out = capsys.readouterr().out
    assert "by hand: 0002-change-line-25.patch (already upstream (it reverse-applies))" in out


def test_twin_the_unrefreshed_series_on_the_new_wheel_still_has_the_offset(world):
    _bump(world, "demo", "1.1.0")
    recipe = Recipe("demo", world / "demo")
    new_target = patch_check_targets(recipe)["1.1.0"]
    tree = unpack_artifact(new_target, world.parent / "tree")
    outcomes = assess_series(recipe.patch_series("1.0.0"), tree, new_target.path_map)
    assert outcomes[0].status is PatchStatus.OFFSET


def test_the_sha256_is_written_where_known_and_a_placeholder_plan_refuses_where_not(world):
    _bump(world, "demo", "1.1.0")
    text = (world / "demo" / "recipe.yaml").read_text()
    new_sdist = world.parent / "index" / "files" / "demo-1.1.0.tar.gz"
    assert f"sha256: {sha256(new_sdist)}" in text
    assert f"url: https://forge.invalid/archive/{PLACEHOLDER}-commit.tar.gz" in text
    with pytest.raises(RecipeError) as error:
        check_placeholders(Recipe("demo", world / "demo"))
    message = str(error.value)
    assert str(world / "demo" / "recipe.yaml") in message
    assert "url" in message and "sha256" in message


def test_twin_the_recipe_before_the_bump_has_nothing_to_fill_in(world):
    check_placeholders(Recipe("demo", world / "demo"))


def test_a_release_the_index_lacks_is_a_usage_error_naming_it(world, capsys):
    assert _bump(world, "demo", "9.9.9", "--check") == 2
    err = capsys.readouterr().err
    assert "demo has no release 9.9.9 (newest: 1.0.0, 1.1.0)" in " ".join(err.split())


def test_twin_a_release_the_index_has_is_checked(world):
    assert _bump(world, "demo", "1.1.0", "--check") == 1


def test_a_version_the_recipe_already_has_is_nothing_to_bump(world, tmp_path, capsys):
    report = tmp_path / "report.md"
    assert _bump(world, "demo", "1.0.0", "--check", "--report", str(report)) == 0
    assert "nothing to bump" in capsys.readouterr().out
    # The weekly workflow files no issue when there is no report.
    assert not report.exists()


def test_an_unreachable_index_gives_one_line_naming_it(world, monkeypatch, capsys):
    url = closed_port_url()
    monkeypatch.setenv(INDEX_ENV, url)
    assert _bump(world, "demo", "--check") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"cannot reach the package index {url}" in err[0]


def test_twin_the_served_index_is_reached(world, capsys):
    assert _bump(world, "demo", "--check") == 1
    assert "cannot reach" not in capsys.readouterr().err


def test_untrusted_text_reaches_markdown_and_terminal_literally(world, tmp_path):
    # An upstream requirement line with a backtick, a pipe and rich markup in it.
    hostile = 'basepkg==2.0.0; platform_release != "`|[bold red]x[/]"'
    files = world.parent / "index" / "files"
    make_wheel(files, "demo", "1.1.0", {"demo/core.py": NEW_CORE}, [hostile])
    write_index(world.parent / "index", {"demo": sorted(files.glob("demo-*"))})
    report = check_bump(world, "demo", "1.1.0", tmp_path / "cache")
    assert [p.requirement for p in report.pins] == [hostile]
    assert f"- ``{hostile}``: NOT satisfied" in to_markdown(report)
    console = Console(record=True, width=300)
    console.print(terminal_view(report))
    assert f"pin {hostile}: NOT satisfied" in console.export_text()


def test_twin_markup_text_printed_as_markup_loses_its_brackets():
    console = Console(record=True, width=200)
    console.print("[bold red]x[/] literal")
    assert "[bold red]" not in console.export_text()


def _plan(recipes: Path) -> int:
    channel = recipes.parent / "channel"
    return main(["plan", "--recipes", str(recipes), "-m", str(VARIANT_CONFIG), "--channel", str(channel)])


def test_plan_refuses_the_bumped_recipe_until_the_placeholders_are_filled_in(world, capsys):
    _bump(world, "demo", "1.1.0")
    capsys.readouterr()
    assert _plan(world) == 2
    err = " ".join(capsys.readouterr().err.split())
    recipe = world / "demo" / "recipe.yaml"
    assert f"{recipe}: values to fill in before anything is built" in err
    assert "sha256" in err and "url" in err and PLACEHOLDER in err
    text = recipe.read_text()
    filled = text.replace(f"{PLACEHOLDER}-commit", "ef" * 20)
    filled = re.sub(rf"{PLACEHOLDER} sha256 of \S+", "ab" * 32, filled)
    recipe.write_text(filled)
    assert _plan(world) == 0


def test_twin_plan_accepts_the_recipe_before_the_bump(world):
    assert _plan(world) == 0


# --------------------------------------------------------------------------- a release bump cannot check


def _checked_on_a_wheel_the_new_release_lacks(world: Path) -> None:
    """The series is checked on a cp310 wheel, as pytorch's once was; 1.1.0 publishes none."""
    recipe = world / "demo" / "recipe.yaml"
    recipe.write_text(
        recipe.read_text().replace("demo-1.0.0-py3-none-any.whl", "demo-1.0.0-cp310-cp310-linux_x86_64.whl")
    )


def test_a_release_without_a_file_to_check_is_reported_not_failed(world, tmp_path, capsys):
    _checked_on_a_wheel_the_new_release_lacks(world)
    report_file = tmp_path / "report.md"
    assert _bump(world, "demo", "--check", "--report", str(report_file)) == UNCHECKABLE_EXIT
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "demo 1.1.0 is out but cannot be checked: the index has no demo-1.1.0-cp310-cp310-linux_x86_64.whl"
        in out
    )
    markdown = report_file.read_text()
    assert "## pascal-forge bump demo 1.1.0" in markdown
    assert "the 1.0.0 series could not be checked against it" in markdown
    assert "- `demo-1.1.0-py3-none-any.whl`" in markdown


def test_twin_a_release_with_its_counterpart_file_gets_the_patch_report(world, tmp_path):
    report_file = tmp_path / "report.md"
    assert _bump(world, "demo", "--check", "--report", str(report_file)) == 1
    assert "could not be checked" not in report_file.read_text()
    assert "| 1 | `0001-change-line-10.patch` |" in report_file.read_text()


def _run_weekly_job(world: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The bump workflow's two run steps, in bash as the runner runs them, in a checkout whose
    recipes/ is `world`. `gh` (GitHub's CLI, which cannot reach GitHub here) is a script that
    records its arguments; pascal-forge is the real one against the local index."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "gh-calls"
    (bin_dir / "gh").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "gh").chmod(0o755)
    workflow = yaml.safe_load((REPO / BUMP_WORKFLOW_PATH).read_text())
    steps = {step.get("name"): step.get("run") for step in workflow["jobs"]["bump"]["steps"]}
    script = steps["Check the newest upstream release"] + "\n" + steps["Open or update the recipe's issue"]
    env = {
        **os.environ,
        "RECIPE": "demo",
        "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["bash", "-e", "-c", script], cwd=world.parent, env=env, capture_output=True, text=True
    )
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_the_weekly_job_files_an_uncheckable_release_in_the_recipes_issue(world, tmp_path):
    _checked_on_a_wheel_the_new_release_lacks(world)
    result, calls = _run_weekly_job(world, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(call.startswith("issue create --title pascal-forge bump: demo --body-file") for call in calls)
    assert "could not be checked" in (world.parent / REPORT_FILE).read_text()


def test_twin_the_weekly_job_fails_and_files_nothing_when_the_index_is_unreachable(
    world, tmp_path, monkeypatch
):
    monkeypatch.setenv(INDEX_ENV, closed_port_url())
    result, calls = _run_weekly_job(world, tmp_path)
    assert result.returncode == 2 and calls == []
