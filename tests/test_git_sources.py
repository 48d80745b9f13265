"""Git sources keep their history out of the work dir (and so out of the staging caches).

rattler-build 0.73 ignores a git source's `depth:` (its git cache fetches the whole history) and
copies the checkout, `.git` included, into the work dir; a staging output's cache copies the
work dir again. For triton's LLVM fork and pytorch that is gigabytes per copy. A source
`filter` that excludes `.git/**` stops both copies: shown here with real rattler-build builds of
a small recipe whose source is a local git repository.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support.build import build_argv, offline_mirror, run_build
from support.repo import RECIPES, VARIANT_CONFIG, committed_text

from pascal_forge.recipes.plan import make_plan

# The recipes this review owns; vllm's sources are another series' (see the report).
CHECKED_RECIPES = ("triton", "pytorch", "torchvision")


def _git_repository(path: Path) -> str:
    path.mkdir(parents=True)
    (path / "hello.txt").write_text("hi\n")
    git = ["git", "-C", str(path), "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _recipe(tmp_path: Path, *, exclude_history: bool) -> Path:
    repository = tmp_path / "repository"
    source = {"git": str(repository), "rev": _git_repository(repository)}
    if exclude_history:
        source["filter"] = {"exclude": [".git/**"]}
    recipe = {
        "package": {"name": "gitfilter", "version": "1.0"},
        "source": [source],
        "build": {
            "number": 0,
            "script": [
                "test -f hello.txt",
                'if [ -e .git/HEAD ]; then echo "the git history was copied into the work dir"; exit 1; fi',
                'mkdir -p "$PREFIX/share" && cp hello.txt "$PREFIX/share/gitfilter.txt"',
            ],
        },
    }
    recipes = tmp_path / "recipes"
    (recipes / "gitfilter").mkdir(parents=True)
    (recipes / "gitfilter" / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return recipes


@pytest.mark.parametrize("exclude_history", [True, False], ids=["filtered", "twin-unfiltered"])
def test_a_git_source_filter_keeps_the_history_out_of_the_work_dir(tmp_path, capsys, exclude_history):
    recipes = _recipe(tmp_path, exclude_history=exclude_history)
    argv = build_argv(recipes, tmp_path / "channel", offline_mirror(tmp_path), "--no-preflight")
    code, out = run_build(capsys, *argv)
    if exclude_history:
        assert code == 0, out
    else:
        assert code == 1, out
        log = next((tmp_path / "build-logs").glob("gitfilter-*.log")).read_text()
        assert "the git history was copied into the work dir" in log


def _unfiltered_git_sources(plan) -> tuple[int, set[tuple[str, str]]]:
    """How many git sources the checked recipes' builds have, and which keep their history."""
    found, unfiltered = 0, set()
    for build in plan.builds:
        if build.output.recipe not in CHECKED_RECIPES:
            continue
        recipe = build.output.rendered.recipe.to_dict()
        sources = [*(recipe.get("source") or [])]
        sources += [s for cache in recipe.get("staging_caches") or [] for s in cache.get("source") or []]
        for source in (s for s in sources if "git" in s):
            found += 1
            if ".git/**" not in ((source.get("filter") or {}).get("exclude") or []):
                unfiltered.add((build.output.recipe, source["git"]))
    return found, unfiltered


def test_every_git_source_of_the_big_recipes_leaves_its_history_behind(tmp_path):
    found, unfiltered = _unfiltered_git_sources(make_plan(RECIPES, VARIANT_CONFIG, tmp_path / "channel"))
    assert found and not unfiltered, sorted(unfiltered)


def test_twin_the_recipes_before_this_review_copied_the_history(tmp_path):
    recipes = tmp_path / "recipes"
    shutil.copytree(RECIPES, recipes)
    for name in CHECKED_RECIPES:
        (recipes / name / "recipe.yaml").write_text(committed_text("ea1b55a", f"recipes/{name}/recipe.yaml"))
    _, unfiltered = _unfiltered_git_sources(make_plan(recipes, VARIANT_CONFIG, tmp_path / "channel"))
    assert {git for _, git in unfiltered} == {
        "https://github.com/triton-lang/llvm-project.git",
        "https://github.com/triton-lang/triton.git",
        "https://github.com/pytorch/pytorch.git",
        "https://github.com/pytorch/vision.git",
    }
